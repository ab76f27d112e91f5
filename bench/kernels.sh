#!/usr/bin/env bash
# ferrite's own kernels (crates/ferrite-models/src/ops: convolution, batch norm + ReLU, max
# pool, dropout) against Burn's ops on the same burn-flex backend: the same binary, switched
# with FERRITE_KERNELS=burn, alternating, median of ROUNDS; ferrite's kernels with Winograd
# F(2×2, 3×3) only, no F(4×4, 3×3) (FERRITE_KERNELS=f23); and without the Winograd or direct
# convolutions (FERRITE_KERNELS=im2col). Training (batch 64) and inference (batch 1 and 64)
# images/s.
#   bench/kernels.sh                 # ROUNDS=3 STEPS=20 MODELS="seed-cnn dexpression mini-xception vgg"
set -euo pipefail
cd "$(dirname "$0")/.."
ROUNDS="${ROUNDS:-3}"
STEPS="${STEPS:-20}"
MODELS="${MODELS:-seed-cnn dexpression mini-xception vgg}"
cargo build --release --quiet -p ferrite-train --example throughput
ferrite=target/release/examples/throughput
rate() { grep -o '"images_per_second": [0-9.]*' | awk '{print $2}'; }
median() { sort -n | awk '{v[NR] = $1} END {print v[int((NR + 1) / 2)]}'; }

echo "burn-flex on $(nproc) cores: ferrite's kernels vs the same with Winograd F(2×2) only (FERRITE_KERNELS=f23), without Winograd or direct kernels (FERRITE_KERNELS=im2col) and vs Burn's ops (FERRITE_KERNELS=burn), median of $ROUNDS, images/s"
printf '| %-14s | %-11s | %9s | %9s | %9s | %9s | %9s | %9s | %9s |\n' model run ferrite "F(2x2)" im2col Burn "/ F(2x2)" "/ im2col" "/ Burn"
printf '|%s|%s|%s|%s|%s|%s|%s|%s|%s|\n' ---------------- ------------- ----------- ----------- ----------- ----------- ----------- ----------- -----------
for model in $MODELS; do
  steps=$STEPS
  [ "$model" = vgg ] && steps=$((STEPS / 4 > 2 ? STEPS / 4 : 2))
  for run in "train 64" "infer 1" "infer 64"; do
    set -- $run
    n=$steps
    [ "$2" = 1 ] && n=200
    ours=() f23s=() im2cols=() burns=()
    for ((r = 0; r < ROUNDS; r++)); do
      ours+=("$($ferrite "$1" "$model" "$2" "$n" 2 | rate)")
      f23s+=("$(FERRITE_KERNELS=f23 $ferrite "$1" "$model" "$2" "$n" 2 | rate)")
      im2cols+=("$(FERRITE_KERNELS=im2col $ferrite "$1" "$model" "$2" "$n" 2 | rate)")
      burns+=("$(FERRITE_KERNELS=burn $ferrite "$1" "$model" "$2" "$n" 2 | rate)")
    done
    a=$(printf '%s\n' "${ours[@]}" | median)
    f=$(printf '%s\n' "${f23s[@]}" | median)
    i=$(printf '%s\n' "${im2cols[@]}" | median)
    b=$(printf '%s\n' "${burns[@]}" | median)
    printf '| %-14s | %-11s | %9.0f | %9.0f | %9.0f | %9.0f | %8.2fx | %8.2fx | %8.2fx |\n' \
      "$model" "$1 b$2" "$a" "$f" "$i" "$b" \
      "$(echo "$a / $f" | bc -l)" "$(echo "$a / $i" | bc -l)" "$(echo "$a / $b" | bc -l)"
  done
done
