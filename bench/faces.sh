#!/usr/bin/env bash
# Faces in frames: detection + classification of 640×480 frames with 1 and 5 faces, per stage,
# ferrite vs the `fer` Python package (its own detector and model) on the same pictures.
#   bench/faces.sh [rounds]        (fer lives in the peer venv: bench/peers/install.sh)
set -euo pipefail
cd "$(dirname "$0")/.."
rounds="${1:-30}"
venv="${FERRITE_PEERS_VENV:-$HOME/.cache/ferrite-bench/peers}"
cargo build --release --quiet -p ferrite-vision --example sample_frames --example face_timing
work="$(mktemp -d)"
trap 'rm -f "$work"/*; rmdir "$work"' EXIT
target/release/examples/sample_frames "$work" >/dev/null
frames=("$work/one-face.jpg" "$work/five-faces.jpg")
{
  # ferrite with its default minimum face (20 px) and with 80 px, which lets the detector
  # work on a picture shrunk by half (the frames' faces are 85 px and larger).
  target/release/examples/face_timing models/default.ferrite "$rounds" 20 "${frames[@]}"
  target/release/examples/face_timing models/default.ferrite "$rounds" 80 "${frames[@]}"
  if [ -x "$venv/bin/python" ]; then
    "$venv/bin/python" bench/peers/fer_faces.py "${frames[@]}" --rounds "$rounds" \
      || echo "the fer peer failed: its rows are missing" >&2
  else
    echo "no peer venv at $venv: the fer rows are missing (bench/peers/install.sh)" >&2
  fi
} >"$work/results.jsonl"
python3 - "$work/results.jsonl" "$rounds" <<'PY'
import json, os, sys
rows = [json.loads(l) for l in open(sys.argv[1]) if l.startswith("{")]
print(f"640x480 frames, median of {sys.argv[2]} rounds, {os.cpu_count()} cores\n")
print("| pipeline | frame | faces found | detect ms | classify ms | total ms | frames/s | fer/ferrite time |")
print("|---|---|---|---|---|---|---|---|")
fer = {os.path.basename(r["image"]): r["total_ms"] for r in rows if r.get("framework") == "fer"}
for r in rows:
    frame = os.path.basename(r["image"])
    name = "fer (OpenCV Haar + its CNN)" if r.get("framework") == "fer" else f"ferrite (min face {r['min_face_size']} px)"
    ratio = f"{fer[frame] / r['total_ms']:.2f}×" if frame in fer and r.get("framework") != "fer" else ""
    print(f"| {name} | {frame} | {r['faces']} | {r['detect_ms']:.1f} | {r['classify_ms']:.1f} | {r['total_ms']:.1f} | {1000 / r['total_ms']:.1f} | {ratio} |")
PY
