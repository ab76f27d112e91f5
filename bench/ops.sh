#!/usr/bin/env bash
# Per-op timing of a seed-cnn training step's layers (batch 64, 48×48×1): Burn's own ops on the
# flex backend (crates/ferrite-models/examples/op_timing.rs; the reproduction of the slow paths
# that ferrite's ops module now replaces, see bench/kernels.sh) vs PyTorch CPU
# (bench/peers/op_timing_torch.py), then the ratio ferrite / PyTorch per op and how much of the
# summed seed-cnn layer time each op's difference accounts for.
#   bench/ops.sh [reps] [warmup]
# Environment: THREADS (2; rayon's and torch's), STAT (median | min: min is steadier on a loaded
# machine), FILTER (a substring of the op names both programs take, e.g. "conv"), NICE (0),
# ALT=1 (also time candidate reformulations, rows marked "(alt)"), MIMALLOC (1: run ferrite's
# side with mimalloc, as the ferrite binary does, by preloading an override build of the
# libmimalloc-sys v3 sources from the cargo registry; 0: glibc malloc, whose mmap/munmap of the
# large activations page-faults on every call). PyTorch keeps its default (glibc) allocator.
set -euo pipefail
cd "$(dirname "$0")/.."
reps="${1:-20}"
warmup="${2:-3}"
threads="${THREADS:-2}"
stat="${STAT:-median}"
nice_level="${NICE:-0}"
venv="${FERRITE_PEERS_VENV:-$HOME/.cache/ferrite-bench/peers}"
filter=()
[ -n "${FILTER:-}" ] && filter=(--filter "$FILTER")
[ "${ALT:-0}" = 1 ] && filter+=(--alt)

nice -n "$nice_level" cargo build --release --quiet -p ferrite-models --example op_timing
target_dir="$(cargo metadata --format-version 1 --no-deps | python3 -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])')"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

preload=()
allocator="glibc malloc"
if [ "${MIMALLOC:-1}" = 1 ]; then
  manifest="$(cargo metadata --format-version 1 | python3 -c '
import json, sys
print(next((p["manifest_path"] for p in json.load(sys.stdin)["packages"] if p["name"] == "libmimalloc-sys"), ""))')"
  src="$(dirname "${manifest:-.}")/c_src/mimalloc/v3"
  if [ -f "$src/src/static.c" ] && command -v cc >/dev/null \
    && cc -O2 -shared -fPIC -DNDEBUG -DMI_MALLOC_OVERRIDE -DMI_BUILD_RELEASE -I"$src/include" \
      "$src/src/static.c" -o "$work/libmimalloc.so" -lpthread; then
    preload=(env LD_PRELOAD="$work/libmimalloc.so")
    allocator="mimalloc v3 (preloaded)"
  else
    echo "could not build mimalloc from $src: ferrite runs on glibc malloc" >&2
  fi
fi

echo "$(nproc) cores, load average $(cut -d' ' -f1-3 /proc/loadavg); ferrite allocator: $allocator"
echo
RAYON_NUM_THREADS="$threads" nice -n "$nice_level" "${preload[@]}" "$target_dir/release/examples/op_timing" \
  --reps "$reps" --warmup "$warmup" --stat "$stat" --tsv "$work/ferrite.tsv" "${filter[@]}" 2>/dev/null
echo
nice -n "$nice_level" "$venv/bin/python" bench/peers/op_timing_torch.py \
  --reps "$reps" --warmup "$warmup" --threads "$threads" --stat "$stat" --tsv "$work/torch.tsv" "${filter[@]}"
echo
echo "load average after: $(cut -d' ' -f1-3 /proc/loadavg)"
echo

python3 - "$work/ferrite.tsv" "$work/torch.tsv" "$stat" <<'EOF'
import csv, sys

def load(path):
    with open(path, newline="") as f:
        return {(r["op"], r["shape"]): r for r in csv.DictReader(f, delimiter="\t")}

ferrite, torch = load(sys.argv[1]), load(sys.argv[2])
suffix = "min" if sys.argv[3] == "min" else "med"
cols = ["fwd_inf", "fwd_train", "fwd_bwd", "dx", "dw"]

def value(row, col):
    v = row.get(f"{col}_{suffix}", "")
    return float(v) if v else None

def ratio(a, b):
    return "–" if a is None or b is None or b == 0 else f"{a / b:.2f}"

keys = [k for k in ferrite if k in torch]
# The gap of one seed-cnn step's layers: ferrite minus PyTorch fwd+bwd time of the rows marked
# seed (one occurrence each), and each row's share of it.
gap = {}
for k in keys:
    if int(ferrite[k]["seed"]) > 0:
        f, t = value(ferrite[k], "fwd_bwd"), value(torch[k], "fwd_bwd")
        gap[k] = int(ferrite[k]["seed"]) * (f - t)
total_gap = sum(gap.values())
f_total = sum(int(ferrite[k]["seed"]) * value(ferrite[k], "fwd_bwd") for k in gap)
t_total = sum(int(torch[k]["seed"]) * value(torch[k], "fwd_bwd") for k in gap)

print(f"ferrite / PyTorch time ({sys.argv[3]}); > 1: ferrite slower. "
      "'gap ms': ferrite − PyTorch fwd+bwd, for the seed-cnn rows; '% of gap': its share of their sum.")
print()
print("| op | shape | fwd inf | fwd train | fwd+bwd | bwd | dX | dW | gap ms | % of gap |")
print("|---|---|--:|--:|--:|--:|--:|--:|--:|--:|")
for k in keys:
    f, t = ferrite[k], torch[k]
    fb = lambda r: (None if value(r, "fwd_bwd") is None or value(r, "fwd_train") is None
                    else value(r, "fwd_bwd") - value(r, "fwd_train"))
    cells = [ratio(value(f, c), value(t, c)) for c in cols[:3]]
    cells.append(ratio(fb(f), fb(t)))
    cells += [ratio(value(f, c), value(t, c)) for c in cols[3:]]
    g = gap.get(k)
    share = "" if g is None or total_gap == 0 else f"{100 * g / total_gap:.0f}%"
    print(f"| {k[0]} | {k[1]} | " + " | ".join(cells)
          + f" | {'' if g is None else f'{g:.2f}'} | {share} |")
print(f"| **seed-cnn layers, fwd+bwd summed** | ferrite {f_total:.1f} ms, PyTorch {t_total:.1f} ms "
      f"| | | {ratio(f_total, t_total)} | | | | {total_gap:.1f} | 100% |")

# The three kernels of seed-cnn's convs, each summed over its seven convs (the first has no dX).
convs = [k for k in gap if k[0].startswith("conv")]
if convs:
    print()
    print("seed-cnn's 7 convs, each kernel summed over them (called directly, as autodiff calls them):")
    print()
    print("| kernel | ferrite ms | PyTorch ms | ratio | gap ms | % of layer gap |")
    print("|---|--:|--:|--:|--:|--:|")
    for col, name in [("fwd_train", "forward (train)"), ("dx", "input grad dX"), ("dw", "weight grad dW")]:
        f = sum(value(ferrite[k], col) or 0 for k in convs)
        t = sum(value(torch[k], col) or 0 for k in convs)
        share = "" if total_gap == 0 else f"{100 * (f - t) / total_gap:.0f}%"
        print(f"| {name} | {f:.1f} | {t:.1f} | {ratio(f, t)} | {f - t:.1f} | {share} |")
EOF
