#!/usr/bin/env bash
# One full training epoch of DeXpression on the real 28,709 FER2013 Training rows, data
# loading and the recipe's augmentation included: ferrite vs PyTorch with its standard
# DataLoader (bench/peers/epoch_torch.py), alternating, ROUNDS each.
#   bench/epoch.sh [rounds]
set -euo pipefail
cd "$(dirname "$0")/.."
rounds="${1:-1}"
csv="${CSV:-${FERRITE_DATA:-../shared/data/fer2013}/fer2013-train-publictest.csv.gz}"
venv="${FERRITE_PEERS_VENV:-$HOME/.cache/ferrite-bench/peers}"
[ -f "$csv" ] || { echo "no FER2013 CSV at $csv"; exit 1; }
cargo build --release --quiet -p ferrite-cli
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
echo "DeXpression, one epoch of FER2013 Training (batch 64, Adam, recipe augmentation), $(nproc) cores"
printf '| %-34s | %8s | %8s | %10s |\n' run "load s" "epoch s" "images/s"
printf '|%s|%s|%s|%s|\n' ------------------------------------ ---------- ---------- ------------
for ((r = 0; r < rounds; r++)); do
  # ferrite: wall time of the whole command; validation cut to 64 images so it costs ~nothing.
  start=$(date +%s.%N)
  target/release/ferrite train "$csv" --model dexpression --epochs 1 --limit-validation 64 \
    --out "$work/ferrite-$r" --quiet >"$work/ferrite.log" 2>&1
  end=$(date +%s.%N)
  load=$(grep -o 'in [0-9.]* s' "$work/ferrite.log" | head -1 | awk '{print $2}')
  total=$(echo "$end - $start" | bc)
  printf '| %-34s | %8.1f | %8.1f | %10.0f |\n' "ferrite (whole command)" "$load" "$(echo "$total - $load" | bc)" "$(echo "28709 / ($total - $load)" | bc -l)"
  for workers in 0 2; do
    line=$("$venv/bin/python" bench/peers/epoch_torch.py --csv "$csv" --workers "$workers" 2>/dev/null | tail -1)
    python3 -c 'import json,sys; r=json.loads(sys.argv[1]); print("| %-34s | %8.1f | %8.1f | %10.0f |" % ("PyTorch DataLoader, %d workers" % r["workers"], r["load_s"], r["epoch_s"], r["images_per_second"]))' "$line"
  done
done
