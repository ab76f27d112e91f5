#!/usr/bin/env bash
# Loading FER2013: ferrite vs pandas on this machine, in one run, alternating, median of N.
#   bench/load.sh [csv] [rounds]
# Installs pandas into a venv outside the repo ($FERRITE_BENCH_VENV, default ~/.cache/ferrite-bench/venv).
set -euo pipefail
cd "$(dirname "$0")/.."
csv="${1:-${FERRITE_DATA:-../shared/data/fer2013}/fer2013-train-publictest.csv.gz}"
rounds="${2:-5}"
venv="${FERRITE_BENCH_VENV:-$HOME/.cache/ferrite-bench/venv}"
[ -f "$csv" ] || { echo "no FER2013 CSV at $csv (pass one, or set FERRITE_DATA)"; exit 1; }
if [ ! -x "$venv/bin/python" ]; then
  python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet pandas numpy
fi
cargo build --release --quiet --example load_timing -p ferrite-data
ferrite=target/release/examples/load_timing
declare -A times
for ((r = 0; r < rounds; r++)); do
  times[ferrite]+="$($ferrite "$csv" | cut -d' ' -f1) "
  times[pandas-fromstring]+="$("$venv/bin/python" bench/peers/load_pandas.py fromstring "$csv" 2>/dev/null | cut -d' ' -f1) "
  times[pandas-split]+="$("$venv/bin/python" bench/peers/load_pandas.py split "$csv" | cut -d' ' -f1) "
done
median() { tr ' ' '\n' | grep -v '^$' | sort -g | awk '{a[NR]=$1} END {print (NR%2) ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2}'; }
f=$(echo "${times[ferrite]}" | median)
echo "FER2013 load: $csv, $rounds rounds, $(nproc) cores, $(python3 -c 'import platform; print(platform.processor() or platform.machine())')"
echo "pandas $("$venv/bin/python" -c 'import pandas; print(pandas.__version__)'), numpy $("$venv/bin/python" -c 'import numpy; print(numpy.__version__)')"
printf '| %-32s | %10s | %14s |\n' "loader" "median s" "pandas/ferrite"
printf '|%s|%s|%s|\n' "----------------------------------" "------------" "----------------"
for name in ferrite pandas-fromstring pandas-split; do
  m=$(echo "${times[$name]}" | median)
  printf '| %-32s | %10.3f | %13.1fx |\n' "$name" "$m" "$(awk -v m="$m" -v f="$f" 'BEGIN {print m / f}')"
done
