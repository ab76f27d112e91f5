//! Per-op timing of the layers of a `seed-cnn` training step (batch 64, 48×48×1 input) with
//! Burn's own ops on its flex CPU backend: the ferrite side of bench/ops.sh, whose peer is
//! bench/peers/op_timing_torch.py (same ops, same shapes, same table). This is the smallest
//! reproduction of the backend's slow paths; the models now run `ferrite_models::ops` instead
//! (bench/kernels.sh compares the two).
//!
//!   op_timing [--reps N] [--warmup N] [--filter SUBSTR] [--tsv PATH] [--batch N]
//!             [--stat median|min] [--alt]
//!
//! Threads: rayon's global pool (RAYON_NUM_THREADS, else every core). Every op is timed as the
//! median of `reps` runs after `warmup` runs (`--stat min`: the minimum, steadier on a loaded
//! machine; the TSV gets both):
//!
//! - `fwd inf`: forward on the inference device `Device::flex()` (batch norm with running
//!   statistics, dropout the identity: what evaluation runs);
//! - `fwd train`: forward on `Device::flex().autodiff()` with the input requiring a gradient
//!   (batch norm on batch statistics, dropout drawing its mask, the graph recorded); each timed
//!   forward is followed by an untimed backward, which is what frees Burn's graphs;
//! - `fwd+bwd`: the same forward, `.sum()`, `.backward()` and dropping the gradients;
//!   `bwd` = `fwd+bwd` − `fwd train` (the `sum` and its backward included: see the `sum` row);
//! - convs only, `dX` and `dW`: the two halves of the conv backward called directly on the
//!   inference device, exactly as Burn's autodiff calls them: the input gradient is
//!   `conv_transpose2d` (burn-backend's `conv2d_x_backward`), the weight gradient is
//!   `burn::tensor::module::conv2d_weight_backward` (a conv2d of the batch-swapped input with the
//!   batch-swapped output gradient as its kernel).
//!
//! GFLOP/s counts 2 FLOP per multiply-add of the conv (dense convs: c_out·c_in·9 per output
//! position): fwd ×1, fwd+bwd ×3 (×2 where the input needs no gradient: the first conv).
//! The `seed` column marks the ops of one seed-cnn step (with how many times each occurs), so
//! bench/ops.sh can add them up.
//!
//! `--alt` adds candidate reformulations of our own code path, marked "(alt)": a 3×3 conv as
//! pad + nine strided slices + one matmul, and a dropout whose mask carries the 1/keep scale.
//!
//! Uses the system allocator (ferrite-models has no mimalloc dependency; the ferrite binary and
//! ferrite-train's throughput example use mimalloc). bench/ops.sh preloads mimalloc, built
//! from the libmimalloc-sys sources in the cargo registry, to match them: with glibc's malloc
//! the large activations are mmapped and page-faulted afresh on every call.

use std::fmt::Write as _;
use std::time::Instant;

use burn::nn::conv::{Conv2d, Conv2dConfig};
use burn::nn::pool::MaxPool2dConfig;
use burn::nn::{BatchNormConfig, DropoutConfig};
use burn::prelude::*;
use burn::tensor::activation::relu;
use burn::tensor::module::{conv_transpose2d, conv2d_weight_backward};
use burn::tensor::ops::PadMode;
use burn::tensor::ops::{ConvOptions, ConvTransposeOptions};
use burn::tensor::{Distribution, Slice};
use ferrite_models::blocks::pad1;
use ferrite_models::seed::SeedCnn;

struct Args {
    reps: usize,
    warmup: usize,
    batch: usize,
    filter: Option<String>,
    tsv: Option<String>,
    /// Print the minimum instead of the median (both go to the TSV).
    min: bool,
    /// Also time candidate reformulations (rows marked "(alt)").
    alt: bool,
}

fn parse_args() -> Args {
    let mut args = Args {
        reps: 20,
        warmup: 3,
        batch: 64,
        filter: None,
        tsv: None,
        min: false,
        alt: false,
    };
    let mut it = std::env::args().skip(1);
    while let Some(a) = it.next() {
        let mut value = || it.next().expect("missing value");
        match a.as_str() {
            "--reps" => args.reps = value().parse().expect("--reps N"),
            "--warmup" => args.warmup = value().parse().expect("--warmup N"),
            "--batch" => args.batch = value().parse().expect("--batch N"),
            "--filter" => args.filter = Some(value()),
            "--tsv" => args.tsv = Some(value()),
            "--stat" => args.min = value() == "min",
            "--alt" => args.alt = true,
            _ => {
                eprintln!(
                    "usage: op_timing [--reps N] [--warmup N] [--batch N] [--filter S] [--tsv PATH] [--stat median|min] [--alt]"
                );
                std::process::exit(2);
            }
        }
    }
    args
}

/// Median and minimum wall time of `f`, in milliseconds.
#[derive(Clone, Copy)]
struct Timing {
    median: f64,
    min: f64,
}

fn median_ms(reps: usize, warmup: usize, device: &Device, mut f: impl FnMut()) -> Timing {
    for _ in 0..warmup {
        f();
    }
    let mut times: Vec<f64> = (0..reps.max(1))
        .map(|_| {
            let started = Instant::now();
            f();
            // flex is eager; the sync costs nothing and keeps this honest on any backend.
            device.sync().expect("sync");
            started.elapsed().as_secs_f64() * 1e3
        })
        .collect();
    times.sort_by(f64::total_cmp);
    Timing {
        median: times[times.len() / 2],
        min: times[0],
    }
}

/// Like [`median_ms`] for a training forward: times `f` alone, then (untimed) runs `.sum()` and
/// `.backward()` on its output. Burn's autodiff frees the graphs of outputs dropped without a
/// backward only during a later backward, so a loop of bare training forwards piles up graphs
/// (the whole seed-cnn's training forward went from ~30 ms to ~200 ms that way).
fn forward_ms(
    reps: usize,
    warmup: usize,
    device: &Device,
    mut f: impl FnMut() -> Tensor<4>,
) -> Timing {
    for _ in 0..warmup {
        drop(f().sum().backward());
    }
    let mut times: Vec<f64> = (0..reps.max(1))
        .map(|_| {
            let started = Instant::now();
            let y = f();
            device.sync().expect("sync");
            let ms = started.elapsed().as_secs_f64() * 1e3;
            drop(y.sum().backward());
            ms
        })
        .collect();
    times.sort_by(f64::total_cmp);
    Timing {
        median: times[times.len() / 2],
        min: times[0],
    }
}

#[derive(Default)]
struct Row {
    op: String,
    shape: String,
    seed: usize,
    fwd_inf: Option<Timing>,
    fwd_train: Option<Timing>,
    fwd_bwd: Option<Timing>,
    dx: Option<Timing>,
    dw: Option<Timing>,
    /// Multiply-adds of the forward (convs only).
    macs: Option<f64>,
    /// Convs: whether the input gradient is computed (all but the first conv).
    needs_dx: bool,
}

fn pick(t: Option<Timing>, min: bool) -> Option<f64> {
    t.map(|t| if min { t.min } else { t.median })
}

impl Row {
    fn bwd(&self, min: bool) -> Option<f64> {
        Some(pick(self.fwd_bwd, min)? - pick(self.fwd_train, min)?)
    }
    fn gflops_fwd(&self, min: bool) -> Option<f64> {
        Some(2.0 * self.macs? / (pick(self.fwd_inf, min)? * 1e-3) / 1e9)
    }
    fn gflops_fwd_bwd(&self, min: bool) -> Option<f64> {
        let passes = if self.needs_dx { 3.0 } else { 2.0 };
        Some(passes * 2.0 * self.macs? / (pick(self.fwd_bwd, min)? * 1e-3) / 1e9)
    }
}

fn cell(v: Option<f64>, decimals: usize) -> String {
    v.map_or("–".into(), |v| format!("{v:.decimals$}"))
}

struct ConvCase {
    cin: usize,
    cout: usize,
    side: usize,
    stride: usize,
    groups: usize,
    needs_dx: bool,
    seed: usize,
}

fn conv_case(args: &Args, c: &ConvCase) -> Row {
    let b = args.batch;
    let (reps, warmup) = (args.reps, args.warmup);
    let inf = Device::flex();
    let ad = Device::flex().autodiff();
    let out = (c.side + 2 - 3) / c.stride + 1;
    let make = |device: &Device| -> Conv2d {
        Conv2dConfig::new([c.cin, c.cout], [3, 3])
            .with_stride([c.stride, c.stride])
            .with_padding(pad1())
            .with_groups(c.groups)
            .with_bias(false)
            .init(device)
    };
    let normal = Distribution::Normal(0.0, 1.0);
    let mut row = Row {
        op: if c.groups > 1 {
            format!("conv dw 3x3/{}", c.stride)
        } else {
            format!("conv 3x3/{}", c.stride)
        },
        shape: format!(
            "{}->{} @{} -> {}{}",
            c.cin,
            c.cout,
            c.side,
            out,
            if c.needs_dx { "" } else { " (no dX)" }
        ),
        seed: c.seed,
        macs: Some((c.cout * (c.cin / c.groups) * 9 * b * out * out) as f64),
        needs_dx: c.needs_dx,
        ..Row::default()
    };

    let conv = make(&inf);
    let x = Tensor::<4>::random([b, c.cin, c.side, c.side], normal, &inf);
    row.fwd_inf = Some(median_ms(reps, warmup, &inf, || {
        let y = conv.forward(x.clone());
        drop(y);
    }));

    // The two halves of the backward, as burn-autodiff calls them.
    let weight = conv.weight.val();
    let grad = Tensor::<4>::random([b, c.cout, out, out], normal, &inf);
    let options = ConvOptions::new([c.stride; 2], [1, 1], [1, 1], c.groups);
    let base = (out - 1) * c.stride + 3 - 2;
    let padding_out = if c.stride > 1 {
        c.side.saturating_sub(base)
    } else {
        0
    };
    let t_options =
        ConvTransposeOptions::new([c.stride; 2], [1, 1], [padding_out; 2], [1, 1], c.groups);
    if c.needs_dx {
        let dx = conv_transpose2d(grad.clone(), weight.clone(), None, t_options.clone());
        assert_eq!(dx.dims(), [b, c.cin, c.side, c.side], "dX shape");
        row.dx = Some(median_ms(reps, warmup, &inf, || {
            let dx = conv_transpose2d(grad.clone(), weight.clone(), None, t_options.clone());
            drop(dx);
        }));
    }
    let dw = conv2d_weight_backward(x.clone(), weight.clone(), grad.clone(), options.clone());
    assert_eq!(dw.dims(), weight.dims(), "dW shape");
    row.dw = Some(median_ms(reps, warmup, &inf, || {
        let dw = conv2d_weight_backward(x.clone(), weight.clone(), grad.clone(), options.clone());
        drop(dw);
    }));
    drop((conv, x, grad, weight));

    let conv = make(&ad);
    let mut x = Tensor::<4>::random([b, c.cin, c.side, c.side], normal, &ad);
    if c.needs_dx {
        x = x.require_grad();
    }
    row.fwd_train = Some(forward_ms(reps, warmup, &ad, || conv.forward(x.clone())));
    row.fwd_bwd = Some(median_ms(reps, warmup, &ad, || {
        let grads = conv.forward(x.clone()).sum().backward();
        drop(grads);
    }));
    row
}

/// Candidate formulation of the same 3×3 conv (padding 1, groups 1) out of plain tensor ops:
/// zero-pad, nine strided slices concatenated on the channel axis (im2col as `[b, 9·c_in, out²]`),
/// one broadcast matmul with the `[c_out, 9·c_in]` weight. Autodiff then differentiates a matmul
/// (two gemms) and slices instead of calling conv_transpose2d and conv2d_weight_backward.
fn conv_im2col(x: Tensor<4>, weight: Tensor<3>, stride: usize) -> Tensor<4> {
    let [b, c, side, _] = x.dims();
    let out = (side + 2 - 3) / stride + 1;
    let padded = x.pad((1, 1, 1, 1), PadMode::Constant(0.0));
    let span = stride * (out - 1) + 1;
    let cols: Vec<Tensor<4>> = (0..9)
        .map(|k| {
            let (kh, kw) = ((k / 3) as isize, (k % 3) as isize);
            padded.clone().slice([
                Slice::full(),
                Slice::full(),
                Slice::new(kh, Some(kh + span as isize), stride as isize),
                Slice::new(kw, Some(kw + span as isize), stride as isize),
            ])
        })
        .collect();
    let cols = Tensor::cat(cols, 1).reshape([b, 9 * c, out * out]);
    let [_, c_out, _] = weight.dims();
    weight.matmul(cols).reshape([b, c_out, out, out])
}

fn conv_im2col_case(args: &Args, c: &ConvCase) -> Row {
    let b = args.batch;
    let (reps, warmup) = (args.reps, args.warmup);
    let inf = Device::flex();
    let ad = Device::flex().autodiff();
    let out = (c.side + 2 - 3) / c.stride + 1;
    let normal = Distribution::Normal(0.0, 1.0);
    let mut row = Row {
        op: format!("conv 3x3/{} im2col+matmul (alt)", c.stride),
        shape: format!("{}->{} @{} -> {}", c.cin, c.cout, c.side, out),
        macs: Some((c.cout * c.cin * 9 * b * out * out) as f64),
        needs_dx: true,
        ..Row::default()
    };
    let w = Tensor::<3>::random([1, c.cout, 9 * c.cin], normal, &inf);
    let x = Tensor::<4>::random([b, c.cin, c.side, c.side], normal, &inf);
    row.fwd_inf = Some(median_ms(reps, warmup, &inf, || {
        drop(conv_im2col(x.clone(), w.clone(), c.stride))
    }));
    let w = Tensor::<3>::random([1, c.cout, 9 * c.cin], normal, &ad).require_grad();
    let x = Tensor::<4>::random([b, c.cin, c.side, c.side], normal, &ad).require_grad();
    let y = conv_im2col(x.clone(), w.clone(), c.stride);
    assert_eq!(y.dims(), [b, c.cout, out, out]);
    let grads = y.sum().backward();
    assert_eq!(w.grad(&grads).expect("dW").dims(), w.dims());
    assert_eq!(x.grad(&grads).expect("dX").dims(), x.dims());
    row.fwd_train = Some(forward_ms(reps, warmup, &ad, || {
        conv_im2col(x.clone(), w.clone(), c.stride)
    }));
    row.fwd_bwd = Some(median_ms(reps, warmup, &ad, || {
        drop(conv_im2col(x.clone(), w.clone(), c.stride).sum().backward())
    }));
    row
}

/// A non-conv op: `fwd_inf` on the inference device (None to skip), then train forward and
/// forward+backward on the autodiff device.
fn simple_case(
    args: &Args,
    op: &str,
    [c, side]: [usize; 2],
    seed: usize,
    inference: bool,
    f: &dyn Fn(Tensor<4>) -> Tensor<4>,
) -> Row {
    let b = args.batch;
    let (reps, warmup) = (args.reps, args.warmup);
    let inf = Device::flex();
    let ad = Device::flex().autodiff();
    let normal = Distribution::Normal(0.0, 1.0);
    let mut row = Row {
        op: op.into(),
        shape: format!("{c} @{side}"),
        seed,
        ..Row::default()
    };
    if inference {
        let x = Tensor::<4>::random([b, c, side, side], normal, &inf);
        row.fwd_inf = Some(median_ms(reps, warmup, &inf, || drop(f(x.clone()))));
    }
    let x = Tensor::<4>::random([b, c, side, side], normal, &ad).require_grad();
    row.fwd_train = Some(forward_ms(reps, warmup, &ad, || f(x.clone())));
    row.fwd_bwd = Some(median_ms(reps, warmup, &ad, || {
        drop(f(x.clone()).sum().backward())
    }));
    row
}

fn main() {
    let args = parse_args();
    let wanted = |name: &str| args.filter.as_deref().is_none_or(|f| name.contains(f));
    let mut rows: Vec<Row> = Vec::new();

    // seed-cnn's seven convs (seed = 1), the brief's extra stride-1 shapes, mini-Xception's
    // depthwise 3×3.
    // (cin, cout, side, stride, groups, needs_dx, times in one seed-cnn step)
    let convs = [
        (1, 16, 48, 1, 1, false, 1),
        (16, 16, 48, 1, 1, true, 0),
        (16, 16, 48, 2, 1, true, 1),
        (16, 32, 24, 1, 1, true, 1),
        (32, 32, 24, 1, 1, true, 0),
        (32, 32, 24, 2, 1, true, 1),
        (32, 64, 12, 1, 1, true, 1),
        (64, 64, 12, 1, 1, true, 0),
        (64, 64, 12, 2, 1, true, 1),
        (64, 7, 6, 1, 1, true, 1),
        (32, 32, 24, 1, 32, true, 0),
    ]
    .map(
        |(cin, cout, side, stride, groups, needs_dx, seed)| ConvCase {
            cin,
            cout,
            side,
            stride,
            groups,
            needs_dx,
            seed,
        },
    );
    for c in &convs {
        let name = format!(
            "conv {}->{} @{} s{} g{}",
            c.cin, c.cout, c.side, c.stride, c.groups
        );
        if wanted(&name) {
            rows.push(conv_case(&args, c));
            eprintln!("done: {name}");
        }
    }

    // --alt: the im2col + matmul formulation of seed-cnn's dense convs that take an input
    // gradient.
    for c in convs
        .iter()
        .filter(|c| args.alt && c.seed > 0 && c.needs_dx && c.groups == 1)
    {
        let name = format!("alt conv {}->{} @{} s{}", c.cin, c.cout, c.side, c.stride);
        if wanted(&name) {
            rows.push(conv_im2col_case(&args, c));
            eprintln!("done: {name}");
        }
    }

    // Batch norm and ReLU after every seed-cnn conv (the head has no ReLU).
    let maps = [
        [16, 48],
        [16, 24],
        [32, 24],
        [32, 12],
        [64, 12],
        [64, 6],
        [7, 6],
    ];
    let ad = Device::flex().autodiff();
    for (i, &[c, side]) in maps.iter().enumerate() {
        if wanted(&format!("batchnorm {c} @{side}")) {
            let ad_norm = BatchNormConfig::new(c).init(&ad);
            let inf_norm = BatchNormConfig::new(c).init(&Device::flex());
            let f = |x: Tensor<4>| {
                if x.is_autodiff() {
                    ad_norm.forward(x)
                } else {
                    inf_norm.forward(x)
                }
            };
            rows.push(simple_case(&args, "batchnorm", [c, side], 1, true, &f));
        }
        if i + 1 < maps.len() && wanted(&format!("relu {c} @{side}")) {
            rows.push(simple_case(&args, "relu", [c, side], 1, true, &relu));
        }
    }
    // seed-cnn's dropouts: after conv 2 (16 @24²) and conv 4 (32 @12²).
    let dropout = DropoutConfig::new(0.25).init();
    for [c, side] in [[16, 24], [32, 12]] {
        if wanted(&format!("dropout {c} @{side}")) {
            let f = |x: Tensor<4>| dropout.forward(x);
            rows.push(simple_case(&args, "dropout 0.25", [c, side], 1, false, &f));
        }
    }
    // --alt: the same dropout with the 1/keep scale folded into the (untracked) mask: one
    // tracked multiply instead of two. Not used by the models; a candidate fix.
    for [c, side] in [[16, 24], [32, 12]].into_iter().filter(|_| args.alt) {
        if wanted(&format!("dropout-prescaled {c} @{side}")) {
            let f = |x: Tensor<4>| {
                let mask = x
                    .random_like(Distribution::Bernoulli(0.75))
                    .detach()
                    .mul_scalar(1.0 / 0.75);
                x * mask
            };
            rows.push(simple_case(
                &args,
                "dropout 0.25 prescaled (alt)",
                [c, side],
                0,
                false,
                &f,
            ));
        }
    }
    // seed-wide's 2×2 max-pool, 16 channels at 48².
    if wanted("maxpool 16 @48") {
        let pool = MaxPool2dConfig::new([2, 2]).init();
        let f = |x: Tensor<4>| pool.forward(x);
        rows.push(simple_case(&args, "maxpool 2x2/2", [16, 48], 0, true, &f));
    }
    // The whole seed-cnn (ferrite_models::seed::SeedCnn, 7 classes, dropout 0.25) on a
    // [64, 1, 48, 48] batch: how far the rows above add up to the model. No loss, no optimizer.
    if wanted("model seed-cnn") {
        let inf_model = SeedCnn::new(7, 0.25, &Device::flex());
        let ad_model = SeedCnn::new(7, 0.25, &ad);
        let f = |x: Tensor<4>| {
            let logits = if x.is_autodiff() {
                ad_model.forward(x)
            } else {
                inf_model.forward(x)
            };
            logits.unsqueeze::<4>()
        };
        rows.push(simple_case(&args, "model seed-cnn", [1, 48], 0, true, &f));
    }
    // The `.sum().backward()` every fwd+bwd above includes, alone.
    if wanted("sum 16 @48") {
        let f = |x: Tensor<4>| x * 1.0;
        rows.push(simple_case(
            &args,
            "x*1 (sum+backward baseline)",
            [16, 48],
            0,
            true,
            &f,
        ));
    }

    print_table(&args, &rows);
    if let Some(path) = &args.tsv {
        std::fs::write(path, tsv(&rows)).expect("write tsv");
    }
}

fn print_table(args: &Args, rows: &[Row]) {
    println!(
        "ferrite / Burn 0.22.1 flex, batch {}, {} rayon threads, {} of {} after {} warm-up",
        args.batch,
        rayon_threads(),
        if args.min { "minimum" } else { "median" },
        args.reps,
        args.warmup
    );
    let m = args.min;
    println!();
    println!(
        "| op | shape | seed | ms fwd inf | ms fwd train | ms fwd+bwd | ms bwd | ms dX | ms dW | GFLOP/s fwd | GFLOP/s fwd+bwd |"
    );
    println!("|---|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|");
    for r in rows {
        println!(
            "| {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} |",
            r.op,
            r.shape,
            r.seed,
            cell(pick(r.fwd_inf, m), 3),
            cell(pick(r.fwd_train, m), 3),
            cell(pick(r.fwd_bwd, m), 3),
            cell(r.bwd(m), 3),
            cell(pick(r.dx, m), 3),
            cell(pick(r.dw, m), 3),
            cell(r.gflops_fwd(m), 1),
            cell(r.gflops_fwd_bwd(m), 1),
        );
    }
}

/// The threads rayon's global pool runs (RAYON_NUM_THREADS, else the cores).
fn rayon_threads() -> usize {
    std::env::var("RAYON_NUM_THREADS")
        .ok()
        .and_then(|v| v.parse().ok())
        .filter(|&n| n > 0)
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()))
}

/// One line per row: op, shape, seed, then median and minimum (ms, empty when not measured) of
/// fwd_inf, fwd_train, fwd_bwd, dx, dw, then macs.
fn tsv(rows: &[Row]) -> String {
    let mut s = String::from("op\tshape\tseed");
    for stat in ["med", "min"] {
        for col in ["fwd_inf", "fwd_train", "fwd_bwd", "dx", "dw"] {
            let _ = write!(s, "\t{col}_{stat}");
        }
    }
    s.push_str("\tmacs\n");
    let f = |v: Option<f64>| v.map_or(String::new(), |v| format!("{v:.4}"));
    for r in rows {
        let _ = write!(s, "{}\t{}\t{}", r.op, r.shape, r.seed);
        for min in [false, true] {
            for t in [r.fwd_inf, r.fwd_train, r.fwd_bwd, r.dx, r.dw] {
                let _ = write!(s, "\t{}", f(pick(t, min)));
            }
        }
        let _ = writeln!(s, "\t{}", f(r.macs));
    }
    s
}
