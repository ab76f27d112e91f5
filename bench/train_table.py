"""Tables for bench/train.sh from its JSON lines: medians per (mode, model, batch, framework),
ratios ferrite/peer, and training multiply-adds per second as a share of the matmul roofline.

    python3 bench/train_table.py RESULTS THREADS ROUNDS
"""

import json
import statistics
import sys
from collections import defaultdict

path, threads, rounds = sys.argv[1], sys.argv[2], sys.argv[3]
runs = defaultdict(list)
peak = None
macs = {}
for line in open(path):
    line = line.strip()
    if not line.startswith("{"):
        continue
    r = json.loads(line)
    if "peak_gmacs" in r:
        peak = r["peak_gmacs"]
        continue
    mode = r.get("mode") or ("infer" if r.get("infer") else "train")
    runs[(mode, r["model"], int(r["batch"]), r["framework"])].append(r)
    if r["framework"] == "ferrite":
        macs[r["model"]] = r["macs"]


def median(mode, model, batch, framework, key="images_per_second"):
    """Median over rounds; for PyTorch, of the faster layout (NCHW or channels-last) per round."""
    if framework == "torch":
        a = median(mode, model, batch, "torch-nchw", key)
        b = median(mode, model, batch, "torch-channels-last", key)
        if key == "images_per_second":
            return max((v for v in (a, b) if v is not None), default=None)
        return min((v for v in (a, b) if v is not None), default=None)
    framework = "torch" if framework == "torch-nchw" else framework
    values = [r.get(key, r.get("median_latency_ms")) if key == "median_ms" else r.get(key)
              for r in runs.get((mode, model, batch, framework), [])]
    values = [v for v in values if v is not None]
    return statistics.median(values) if values else None


def fmt(value, digits=0):
    return "–" if value is None else f"{value:,.{digits}f}"


def ratio(a, b):
    return "–" if a is None or b is None else f"{a / b:.2f}×"


models = list(dict.fromkeys(key[1] for key in runs))
print(f"Median of {rounds} rounds, {threads} threads each; images/s (higher is better).")
print("PyTorch: the faster of its NCHW and channels-last layouts, per model.\n")
print("Training (batch 64: forward + backward + Adam step)\n")
print("| model | ferrite | PyTorch | Keras | ferrite/PyTorch | ferrite/Keras | ferrite % of roofline | peak RSS MB ferrite / PyTorch / Keras |")
print("|---|---|---|---|---|---|---|---|")
for model in models:
    f, t, k = (median("train", model, 64, fw) for fw in ("ferrite", "torch", "keras"))
    # Training costs about 3× the forward multiply-adds (forward, input and weight gradients).
    share = None if f is None or peak is None else 100 * 3 * macs[model] * f / (peak * 1e9)
    rss = " / ".join(fmt(median("train", model, 64, fw, "peak_rss_mb")) for fw in ("ferrite", "torch", "keras"))
    print(f"| {model} | {fmt(f)} | {fmt(t)} | {fmt(k)} | {ratio(f, t)} | {ratio(f, k)} | {fmt(share, 1)} % | {rss} |")
print(f"\nRoofline: a 2048² f32 matmul on all cores, best of 5: {fmt(peak, 1)} G multiply-adds/s.\n")
print("Inference (eval mode, forward only)\n")
print("| model | batch | ferrite | PyTorch | Keras | ferrite/PyTorch | ferrite/Keras | latency ms ferrite / PyTorch / Keras |")
print("|---|---|---|---|---|---|---|---|")
for model in models:
    for batch in (1, 64):
        f, t, k = (median("infer", model, batch, fw) for fw in ("ferrite", "torch", "keras"))
        latency = " / ".join(fmt(median("infer", model, batch, fw, "median_ms"), 2) for fw in ("ferrite", "torch", "keras"))
        print(f"| {model} | {batch} | {fmt(f)} | {fmt(t)} | {fmt(k)} | {ratio(f, t)} | {ratio(f, k)} | {latency} |")

if any(key[3] == "ferrite-bf16" for key in runs):
    print("\nOpt-in bf16 matrix products (`--precision bf16`: bf16 operands, f32 sums), same rounds\n")
    print("| model | mode | batch | ferrite bf16 | ferrite f32 | bf16/f32 | bf16/PyTorch | bf16/Keras |")
    print("|---|---|---|---|---|---|---|---|")
    for model in models:
        for mode, batch in (("train", 64), ("infer", 1), ("infer", 64)):
            b, f, t, k = (median(mode, model, batch, fw) for fw in ("ferrite-bf16", "ferrite", "torch", "keras"))
            print(f"| {model} | {mode} | {batch} | {fmt(b)} | {fmt(f)} | {ratio(b, f)} | {ratio(b, t)} | {ratio(b, k)} |")
