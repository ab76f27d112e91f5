#!/usr/bin/env bash
# `ferrite serve` under load: requests/s and p50/p99 latency of POST /v1/analyze with a
# 640×480 photo of one face, at 1, 4 and 16 concurrent clients, measured with wrk on loopback.
#   bench/serve.sh [seconds per level]          (needs wrk: apt-get install wrk)
set -euo pipefail
cd "$(dirname "$0")/.."
seconds="${1:-15}"
command -v wrk >/dev/null || { echo "needs wrk (apt-get install wrk)"; exit 1; }
cargo build --release --quiet -p ferrite-cli
cargo build --release --quiet -p ferrite-vision --example sample_frames
work="$(mktemp -d)"
trap 'kill "$server" 2>/dev/null; rm -rf "$work"' EXIT
target/release/examples/sample_frames "$work" >/dev/null
port=18080
# A queue as deep as the most clients, so the table measures queueing rather than 503s.
target/release/ferrite serve --bind "127.0.0.1:$port" --queue 16 2>"$work/server.log" &
server=$!
for _ in $(seq 50); do curl -sf "127.0.0.1:$port/healthz" >/dev/null && break; sleep 0.1; done
url="http://127.0.0.1:$port/v1/analyze"
faces=$(curl -s -H 'content-type: image/jpeg' --data-binary "@$work/one-face.jpg" "$url" | grep -o '"emotion"' | wc -l)
echo "ferrite serve on $(nproc) cores ($(head -1 "$work/server.log" | sed 's/.*(\(.*workers\).*/\1/')), one 640x480 JPEG with $faces face, ${seconds}s per level, wrk"
printf '| %-8s | %10s | %9s | %9s | %8s |\n' clients "requests/s" "p50 ms" "p99 ms" "non-2xx"
printf '|%s|%s|%s|%s|%s|\n' ---------- ------------ ----------- ----------- ----------
for clients in 1 4 16; do
  threads=$((clients < 2 ? clients : 2))
  out=$(FERRITE_PICTURE="$work/one-face.jpg" wrk -t "$threads" -c "$clients" -d "${seconds}s" --latency \
    -s bench/serve_post.lua "$url")
  rps=$(echo "$out" | awk '/Requests\/sec/ {print $2}')
  p50=$(echo "$out" | awk '$1 == "50%" {print $2}')
  p99=$(echo "$out" | awk '$1 == "99%" {print $2}')
  bad=$(echo "$out" | awk '/Non-2xx/ {print $5}')
  ms() { awk -v v="$1" 'BEGIN { if (v ~ /us$/) printf "%.1f", v / 1000; else if (v ~ /ms$/) printf "%.1f", v + 0; else printf "%.1f", v * 1000 }'; }
  printf '| %-8s | %10s | %9s | %9s | %8s |\n' "$clients" "$rps" "$(ms "$p50")" "$(ms "$p99")" "${bad:-0}"
done
