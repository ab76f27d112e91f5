#!/usr/bin/env bash
# The recipe's experiments on the real FER2013 rows, then docs/experiments.md from what they
# measured. Every run keeps its folder under $RUNS; rerunning skips finished runs and resumes
# an interrupted one from its checkpoint.
#
#   bench/experiments.sh                       # EPOCHS=3 VGG_EPOCHS=1 SEEDS=1
#   EPOCHS=20 SEEDS=3 bench/experiments.sh     # the same table with longer, repeated runs
set -euo pipefail
cd "$(dirname "$0")/.."
csv="${CSV:-${FERRITE_DATA:-../shared/data/fer2013}/fer2013-train-publictest.csv.gz}"
[ -f "$csv" ] || { echo "no FER2013 CSV at $csv (set CSV or FERRITE_DATA)"; exit 1; }
EPOCHS="${EPOCHS:-3}"
VGG_EPOCHS="${VGG_EPOCHS:-1}"
SEEDS="${SEEDS:-1}"
RUNS="${RUNS:-runs/experiments}"
DOC="${DOC:-docs/experiments.md}"

cargo build --release --quiet -p ferrite-cli
# A copy, so rebuilding the workspace while the experiments run does not change the binary.
mkdir -p "$RUNS"
ferrite="$RUNS/ferrite"
cp target/release/ferrite "$ferrite"
common=(--data "$csv" --quiet --seed 1)

# A run with the same config as one already finished elsewhere is copied, not trained again:
# the sweep recognises it by its checkpointed config.
reuse() { [ -e "$2" ] || { mkdir -p "$(dirname "$2")" && cp -r "$1" "$2"; }; }

echo "== models, $EPOCHS epochs each"
$ferrite sweep "${common[@]}" --epochs "$EPOCHS" --seeds "$SEEDS" --out "$RUNS/models" \
  --models seed-cnn,seed-wide,dexpression,mini-xception
echo "== vgg, $VGG_EPOCHS epochs"
$ferrite sweep "${common[@]}" --epochs "$VGG_EPOCHS" --seeds "$SEEDS" --out "$RUNS/vgg" --models vgg

for k in $(seq 1 "$SEEDS"); do
  base="$RUNS/models/model-seed-cnn-seed$k"
  reuse "$base" "$RUNS/batch/batch_size-64-seed$k"
  reuse "$base" "$RUNS/augment/augment-on-seed$k"
done
echo "== seed-cnn: batch size 32 vs 64"
$ferrite sweep "${common[@]}" --epochs "$EPOCHS" --seeds "$SEEDS" --out "$RUNS/batch" \
  --model seed-cnn --batch-sizes 32,64
echo "== seed-cnn: augmentation off vs on"
$ferrite sweep "${common[@]}" --epochs "$EPOCHS" --seeds "$SEEDS" --out "$RUNS/augment" \
  --model seed-cnn --augment off,on
echo "== seed-cnn: hard-data mining from the trained seed-cnn (1 hard epoch, $EPOCHS rebalancing)"
$ferrite train "${common[@]}" --model seed-cnn --epochs "$EPOCHS" --out "$RUNS/hard-mining" \
  --hard-mining --mine-from "$RUNS/models/model-seed-cnn-seed1/best.ferrite" \
  --hard-epochs 1 --rebalance-epochs "$EPOCHS"
echo "== seed-cnn: the control for hard mining, as many normal epochs as mining's three phases"
$ferrite sweep "${common[@]}" --epochs "$((2 * EPOCHS + 1))" --seeds "$SEEDS" --out "$RUNS/control" \
  --models seed-cnn
echo "== seed-cnn: 5 classes (angry and disgust dropped)"
$ferrite sweep "${common[@]}" --epochs "$EPOCHS" --seeds "$SEEDS" --out "$RUNS/five-classes" \
  --models seed-cnn --exclude angry,disgust

mkdir -p "$(dirname "$DOC")/experiments"
for s in models vgg batch augment five-classes; do
  cp "$RUNS/$s/sweep.png" "$(dirname "$DOC")/experiments/$s.png"
done
cp "$RUNS/hard-mining/hard-mining.png" "$(dirname "$DOC")/experiments/hard-mining.png"
$ferrite models >"$RUNS/models.txt"
python3 bench/experiments_table.py "$RUNS" "$EPOCHS" "$VGG_EPOCHS" "$SEEDS" >"$DOC.tmp"
mv "$DOC.tmp" "$DOC"
echo "wrote $DOC"
