"""Per-op timing of the layers of a seed-cnn training step (batch 64, 48x48x1 input) in PyTorch
on the CPU: the peer of ferrite's `op_timing` example (crates/ferrite-models/examples/
op_timing.rs), same ops, same shapes, same table, for bench/ops.sh.

usage:
  op_timing_torch.py [--reps 20] [--warmup 3] [--batch 64] [--threads 2] [--filter S] [--tsv PATH]
                     [--stat median|min] [--alt]

Every op is timed as the median (--stat min: the minimum, steadier on a loaded machine; the TSV
gets both) of `reps` runs after `warmup` runs, NCHW float32 (PyTorch's
default layout and its default CPU convolution backend choice):

  fwd inf    forward under torch.no_grad(), modules in eval() (batch norm on running statistics,
             dropout the identity);
  fwd train  forward in train() with the input requiring grad (the first conv's input does not:
             it is the image), graph recorded; an untimed .sum().backward() follows each;
  fwd+bwd    the same forward, .sum().backward(); gradients set to None before each run;
  dX, dW     (convs) the two halves of the conv backward called directly:
             torch.ops.aten.convolution_backward with output_mask [True, False, False] and
             [False, True, False] (what autograd calls for nn.Conv2d).

GFLOP/s counts 2 FLOP per multiply-add; fwd+bwd counts 3 passes (2 for the first conv).
"""
import argparse
import os
import sys
import time

import torch
import torch.nn as nn


def parse_args():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--reps", type=int, default=20)
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--filter", default=None)
    p.add_argument("--tsv", default=None)
    p.add_argument("--stat", choices=["median", "min"], default="median")
    p.add_argument("--alt", action="store_true", help="also the candidate reformulations (alt)")
    return p.parse_args()


def median_ms(reps, warmup, f):
    for _ in range(warmup):
        f()
    times = []
    for _ in range(max(reps, 1)):
        t = time.perf_counter()
        f()
        times.append((time.perf_counter() - t) * 1e3)
    times.sort()
    return Timing(times[len(times) // 2], times[0])


class Timing:
    def __init__(self, median, minimum):
        self.median, self.min = median, minimum


STAT = "median"


def pick(t, stat=None):
    if t is None:
        return None
    return t.min if (stat or STAT) == "min" else t.median


def forward_ms(reps, warmup, f):
    """median_ms of a training forward, each followed by an untimed .sum().backward() (as the
    Rust side, whose autodiff frees graphs only in a backward)."""
    for _ in range(warmup):
        f().sum().backward()
    times = []
    for _ in range(max(reps, 1)):
        t = time.perf_counter()
        y = f()
        times.append((time.perf_counter() - t) * 1e3)
        y.sum().backward()
    times.sort()
    return Timing(times[len(times) // 2], times[0])


class Row:
    def __init__(self, op, shape, seed, macs=None, needs_dx=True):
        self.op, self.shape, self.seed, self.macs, self.needs_dx = op, shape, seed, macs, needs_dx
        self.fwd_inf = self.fwd_train = self.fwd_bwd = self.dx = self.dw = None

    def bwd(self):
        if self.fwd_bwd is None or self.fwd_train is None:
            return None
        return pick(self.fwd_bwd) - pick(self.fwd_train)

    def gflops_fwd(self):
        if self.macs is None or self.fwd_inf is None:
            return None
        return 2 * self.macs / (pick(self.fwd_inf) * 1e-3) / 1e9

    def gflops_fwd_bwd(self):
        if self.macs is None or self.fwd_bwd is None:
            return None
        passes = 3 if self.needs_dx else 2
        return passes * 2 * self.macs / (pick(self.fwd_bwd) * 1e-3) / 1e9


def cell(v, decimals):
    return "–" if v is None else f"{v:.{decimals}f}"


def conv_case(args, cin, cout, side, stride, groups, needs_dx, seed):
    b = args.batch
    out = (side + 2 - 3) // stride + 1
    op = f"conv dw 3x3/{stride}" if groups > 1 else f"conv 3x3/{stride}"
    shape = f"{cin}->{cout} @{side} -> {out}" + ("" if needs_dx else " (no dX)")
    row = Row(op, shape, seed, macs=cout * (cin // groups) * 9 * b * out * out, needs_dx=needs_dx)
    conv = nn.Conv2d(cin, cout, 3, stride=stride, padding=1, groups=groups, bias=False)

    x = torch.randn(b, cin, side, side)
    conv.eval()
    with torch.no_grad():
        row.fwd_inf = median_ms(args.reps, args.warmup, lambda: conv(x))

    weight = conv.weight.detach()
    grad = torch.randn(b, cout, out, out)

    def half(mask):
        return lambda: torch.ops.aten.convolution_backward(
            grad, x, weight, None, [stride, stride], [1, 1], [1, 1], False, [0, 0], groups, mask)

    with torch.no_grad():
        if needs_dx:
            dx = half([True, False, False])()[0]
            assert tuple(dx.shape) == (b, cin, side, side)
            row.dx = median_ms(args.reps, args.warmup, half([True, False, False]))
        dw = half([False, True, False])()[1]
        assert dw.shape == weight.shape
        row.dw = median_ms(args.reps, args.warmup, half([False, True, False]))

    conv.train()
    xt = torch.randn(b, cin, side, side, requires_grad=needs_dx)
    row.fwd_train = forward_ms(args.reps, args.warmup, lambda: conv(xt))

    def fwd_bwd():
        conv.weight.grad = None
        xt.grad = None
        conv(xt).sum().backward()

    row.fwd_bwd = median_ms(args.reps, args.warmup, fwd_bwd)
    return row


def simple_case(args, op, c, side, seed, inference, module):
    b = args.batch
    row = Row(op, f"{c} @{side}", seed)
    params = list(module.parameters()) if isinstance(module, nn.Module) else []
    if inference:
        x = torch.randn(b, c, side, side)
        if isinstance(module, nn.Module):
            module.eval()
        with torch.no_grad():
            row.fwd_inf = median_ms(args.reps, args.warmup, lambda: module(x))
    if isinstance(module, nn.Module):
        module.train()
    xt = torch.randn(b, c, side, side, requires_grad=True)
    row.fwd_train = forward_ms(args.reps, args.warmup, lambda: module(xt))

    def fwd_bwd():
        for p in params:
            p.grad = None
        xt.grad = None
        module(xt).sum().backward()

    row.fwd_bwd = median_ms(args.reps, args.warmup, fwd_bwd)
    return row


def main():
    global STAT
    args = parse_args()
    STAT = args.stat
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)

    def wanted(name):
        return args.filter is None or args.filter in name

    rows = []
    convs = [  # cin, cout, side, stride, groups, needs_dx, seed (as op_timing.rs)
        (1, 16, 48, 1, 1, False, 1),
        (16, 16, 48, 1, 1, True, 0),
        (16, 16, 48, 2, 1, True, 1),
        (16, 32, 24, 1, 1, True, 1),
        (32, 32, 24, 1, 1, True, 0),
        (32, 32, 24, 2, 1, True, 1),
        (32, 64, 12, 1, 1, True, 1),
        (64, 64, 12, 1, 1, True, 0),
        (64, 64, 12, 2, 1, True, 1),
        (64, 7, 6, 1, 1, True, 1),
        (32, 32, 24, 1, 32, True, 0),
    ]
    for cin, cout, side, stride, groups, needs_dx, seed in convs:
        if wanted(f"conv {cin}->{cout} @{side} s{stride} g{groups}"):
            rows.append(conv_case(args, cin, cout, side, stride, groups, needs_dx, seed))

    maps = [(16, 48), (16, 24), (32, 24), (32, 12), (64, 12), (64, 6), (7, 6)]
    for i, (c, side) in enumerate(maps):
        if wanted(f"batchnorm {c} @{side}"):
            rows.append(simple_case(args, "batchnorm", c, side, 1, True, nn.BatchNorm2d(c)))
        if i + 1 < len(maps) and wanted(f"relu {c} @{side}"):
            rows.append(simple_case(args, "relu", c, side, 1, True, torch.relu))
    for c, side in [(16, 24), (32, 12)]:
        if wanted(f"dropout {c} @{side}"):
            rows.append(simple_case(args, "dropout 0.25", c, side, 1, False, nn.Dropout(0.25)))
    for c, side in [(16, 24), (32, 12)] if args.alt else []:
        if wanted(f"dropout-prescaled {c} @{side}"):
            def prescaled(x):
                return x * (torch.bernoulli(torch.full_like(x, 0.75)) / 0.75)
            rows.append(simple_case(args, "dropout 0.25 prescaled (alt)", c, side, 0, False, prescaled))
    if wanted("maxpool 16 @48"):
        rows.append(simple_case(args, "maxpool 2x2/2", 16, 48, 0, True, nn.MaxPool2d(2)))
    if wanted("model seed-cnn"):
        # The whole seed-cnn of train_peers.py (the PyTorch port of seed.rs), no loss/optimizer.
        sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
        from train_peers import torch_models
        rows.append(simple_case(args, "model seed-cnn", 1, 48, 0, True, torch_models()["seed-cnn"]()))
    if wanted("sum 16 @48"):
        rows.append(simple_case(args, "x*1 (sum+backward baseline)", 16, 48, 0, True, lambda x: x * 1.0))

    print(f"PyTorch {torch.__version__} CPU, batch {args.batch}, {torch.get_num_threads()} threads, "
          f"mkldnn {torch.backends.mkldnn.is_available()}, {args.stat} of {args.reps} after {args.warmup} warm-up")
    print()
    print("| op | shape | seed | ms fwd inf | ms fwd train | ms fwd+bwd | ms bwd | ms dX | ms dW "
          "| GFLOP/s fwd | GFLOP/s fwd+bwd |")
    print("|---|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|")
    for r in rows:
        print(f"| {r.op} | {r.shape} | {r.seed} | {cell(pick(r.fwd_inf), 3)} | {cell(pick(r.fwd_train), 3)} "
              f"| {cell(pick(r.fwd_bwd), 3)} | {cell(r.bwd(), 3)} | {cell(pick(r.dx), 3)} | {cell(pick(r.dw), 3)} "
              f"| {cell(r.gflops_fwd(), 1)} | {cell(r.gflops_fwd_bwd(), 1)} |")
    if args.tsv:
        def f(v):
            return "" if v is None else f"{v:.4f}"
        with open(args.tsv, "w") as out:
            cols = ["fwd_inf", "fwd_train", "fwd_bwd", "dx", "dw"]
            out.write("\t".join(["op", "shape", "seed"] + [f"{c}_{s}" for s in ("med", "min") for c in cols]
                                + ["macs"]) + "\n")
            for r in rows:
                times = [f(pick(getattr(r, c), s)) for s in ("median", "min") for c in cols]
                out.write("\t".join([r.op, r.shape, str(r.seed)] + times + [f(r.macs)]) + "\n")


if __name__ == "__main__":
    main()
