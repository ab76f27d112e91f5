#!/usr/bin/env bash
# Training and inference speed: ferrite vs PyTorch (CPU) vs Keras/TensorFlow on this machine,
# in one run, alternating, median of ROUNDS; random 48×48 batches, f32, Adam; threads = cores.
# ferrite also runs with its opt-in bf16 matrix products (FERRITE_PRECISION=bf16), in a table of
# its own.
#   bench/train.sh                     # ROUNDS=3 STEPS=20 MODELS="seed-cnn dexpression mini-xception vgg"
# The peers live in a venv outside the repo ($FERRITE_PEERS_VENV, default
# ~/.cache/ferrite-bench/peers); bench/peers/install.sh makes it (several GB).
set -euo pipefail
cd "$(dirname "$0")/.."
ROUNDS="${ROUNDS:-3}"
STEPS="${STEPS:-20}"
MODELS="${MODELS:-seed-cnn dexpression mini-xception vgg}"
venv="${FERRITE_PEERS_VENV:-$HOME/.cache/ferrite-bench/peers}"
[ -x "$venv/bin/python" ] || { echo "no peer venv at $venv: run bench/peers/install.sh"; exit 1; }
cargo build --release --quiet -p ferrite-train --example throughput
ferrite=target/release/examples/throughput
threads=$(nproc)
results="$(mktemp)"
trap 'rm -f "$results"' EXIT
peer() { nice -n 0 "$venv/bin/python" bench/peers/train_peers.py --threads "$threads" "$@" 2>/dev/null | tail -1; }

$ferrite peak >>"$results"
for model in $MODELS; do
  steps=$STEPS
  [ "$model" = vgg ] && steps=$((STEPS / 4 > 2 ? STEPS / 4 : 2))
  for ((r = 0; r < ROUNDS; r++)); do
    # Alternate the order so no framework always runs on a warmer or cooler machine.
    for fw in ferrite torch torch-cl keras ferrite-bf16; do
      case $fw in
        ferrite) $ferrite train "$model" 64 "$steps" 2 ;;
        ferrite-bf16) FERRITE_PRECISION=bf16 $ferrite train "$model" 64 "$steps" 2 ;;
        torch-cl) peer --framework torch --channels-last --model "$model" --batch 64 --steps "$steps" --warmup 2 ;;
        *) peer --framework "$fw" --model "$model" --batch 64 --steps "$steps" --warmup 2 ;;
      esac
    done >>"$results"
    for batch in 1 64; do
      n=$((batch == 1 ? 200 : steps))
      $ferrite infer "$model" "$batch" "$n" 5 >>"$results"
      FERRITE_PRECISION=bf16 $ferrite infer "$model" "$batch" "$n" 5 >>"$results"
      peer --framework torch --model "$model" --batch "$batch" --steps "$n" --warmup 5 --infer >>"$results"
      peer --framework torch --channels-last --model "$model" --batch "$batch" --steps "$n" --warmup 5 --infer >>"$results"
      peer --framework keras --model "$model" --batch "$batch" --steps "$n" --warmup 5 --infer >>"$results"
    done
  done
done
python3 bench/train_table.py "$results" "$threads" "$ROUNDS"
