#!/usr/bin/env bash
# Batch-1 inference latency, alternating within each round: ferrite f32 and bf16
# (FERRITE_PRECISION), PyTorch NCHW and channels-last, each in f32 and under CPU autocast to
# bf16; median of ROUNDS per framework and the ratios, per round too. Odd rounds run the
# frameworks in the reverse order, so neither always gets the warmer or cooler minute.
# Steadier than bench/train.sh's single batch-1 run per round on a VM that moves between minutes.
#   bench/batch1.sh                    # ROUNDS=7 IMAGES=300 MODELS="vgg seed-cnn"
set -euo pipefail
cd "$(dirname "$0")/.."
ROUNDS="${ROUNDS:-7}"
IMAGES="${IMAGES:-300}"
MODELS="${MODELS:-vgg seed-cnn}"
venv="${FERRITE_PEERS_VENV:-$HOME/.cache/ferrite-bench/peers}"
[ -x "$venv/bin/python" ] || { echo "no peer venv at $venv: run bench/peers/install.sh"; exit 1; }
cargo build --release --quiet -p ferrite-train --example throughput
ferrite=target/release/examples/throughput
threads=$(nproc)
results="$(mktemp)"
errors="$(mktemp --suffix=.log)"
trap 'rm -f "$results"' EXIT
peer() {
  "$venv/bin/python" bench/peers/train_peers.py --threads "$threads" "$@" 2>>"$errors" | tail -1 ||
    { echo "peer run failed ($*): see $errors" >&2; exit 1; }
}
run() { # model, which of the six runs
  case $2 in
    0) $ferrite infer "$1" 1 "$IMAGES" 10 ;;
    1) FERRITE_PRECISION=bf16 $ferrite infer "$1" 1 "$IMAGES" 10 ;;
    2) peer --framework torch --model "$1" --batch 1 --steps "$IMAGES" --warmup 10 --infer ;;
    3) peer --framework torch --channels-last --model "$1" --batch 1 --steps "$IMAGES" --warmup 10 --infer ;;
    4) peer --framework torch --bf16 --model "$1" --batch 1 --steps "$IMAGES" --warmup 10 --infer ;;
    5) peer --framework torch --channels-last --bf16 --model "$1" --batch 1 --steps "$IMAGES" --warmup 10 --infer ;;
  esac
}
for model in $MODELS; do
  for ((r = 0; r < ROUNDS; r++)); do
    order="0 1 2 3 4 5"
    [ $((r % 2)) = 1 ] && order="5 4 3 2 1 0"
    for i in $order; do run "$model" "$i"; done >>"$results"
  done
done
rm -f "$errors"
python3 - "$results" "$ROUNDS" <<'EOF'
import json, statistics, sys
from collections import defaultdict

path, rounds = sys.argv[1], sys.argv[2]
ms = defaultdict(list)  # (model, framework) -> per-round latency
for line in open(path):
    r = json.loads(line)
    fw = r["framework"]
    ms[(r["model"], fw)].append(r.get("median_ms", r.get("median_latency_ms")))
print(f"Batch-1 latency, ms (median over {rounds} alternating rounds; PyTorch: its faster layout each round)\n")
print("| model | ferrite f32 | ferrite bf16 | PyTorch f32 | PyTorch bf16 | f32 vs PyTorch f32 | per round | bf16 vs PyTorch f32 | bf16 vs PyTorch bf16 |")
print("|---|---|---|---|---|---|---|---|---|")
med = statistics.median
for model in dict.fromkeys(m for m, _ in ms):
    f32, bf16 = ms[(model, "ferrite")], ms[(model, "ferrite-bf16")]
    best = lambda suffix: [min(a, b) for a, b in zip(ms[(model, "torch" + suffix)],
                                                     ms[(model, "torch-channels-last" + suffix)])]
    torch32, torch16 = best(""), best("-bf16")
    per_round = sorted(t / f for t, f in zip(torch32, f32))
    print(f"| {model} | {med(f32):.2f} | {med(bf16):.2f} | {med(torch32):.2f} | {med(torch16):.2f} "
          f"| {med(torch32) / med(f32):.2f}× | {per_round[0]:.2f}–{per_round[-1]:.2f}× "
          f"| {med(torch32) / med(bf16):.2f}× | {med(torch16) / med(bf16):.2f}× |")
EOF
