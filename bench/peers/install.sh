#!/usr/bin/env bash
# The Python peers for bench/train.sh and bench/faces.sh, in a venv outside the repo
# ($FERRITE_PEERS_VENV, default ~/.cache/ferrite-bench/peers). About 7 GB: PyPI's torch is
# the CUDA build (it runs on the CPU here); download.pytorch.org's CPU wheels are smaller where
# that host is reachable.
set -euo pipefail
venv="${FERRITE_PEERS_VENV:-$HOME/.cache/ferrite-bench/peers}"
python3 -m venv "$venv"
pip="$venv/bin/pip"
"$pip" install --quiet --upgrade pip
"$pip" install --quiet torch --index-url https://download.pytorch.org/whl/cpu 2>/dev/null \
  || "$pip" install --quiet torch
"$pip" install --quiet tensorflow-cpu numpy pandas pillow "opencv-python-headless<5" "setuptools<81"
# fer without its declared dependencies: they would add full tensorflow, opencv-contrib 5
# (which lost CascadeClassifier, fer's default detector), facenet-pytorch and moviepy.
"$pip" install --quiet --no-deps fer
"$venv/bin/python" -c 'from fer.fer import FER; FER(mtcnn=False); print("peers ready")'
