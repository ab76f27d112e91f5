#!/usr/bin/env bash
# The input pipeline alone (batching + augmentation, no model), one epoch of Training rows.
#   bench/pipeline.sh [csv] [side]
set -euo pipefail
cd "$(dirname "$0")/.."
csv="${1:-${FERRITE_DATA:-../shared/data/fer2013}/fer2013-train-publictest.csv.gz}"
[ -f "$csv" ] || { echo "no FER2013 CSV at $csv (pass one, or set FERRITE_DATA)"; exit 1; }
cargo build --release --quiet --example pipeline_timing -p ferrite-data
echo "input pipeline on $(nproc) cores"
target/release/examples/pipeline_timing "$csv" "${2:-48}"
