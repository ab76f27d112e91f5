//! Dense layers at inference on batches smaller than the thread count (batch-1 serving).
//!
//! Why: Burn's `Linear` runs a batch-1 forward as one `gemm` call on one thread. VGG's
//! 4608→512 layer then reads its 9.4 MB of weights at one core's share of the memory
//! bandwidth while the other core waits. Here the weights' rows go in fixed chunks to all
//! threads. Each chunk adds its rows, scaled by the inputs, to partial sums that are then
//! added in order, so the result does not depend on the thread count. Under `--precision
//! bf16` the weights are read as bf16 (half the bytes; kept per weight tensor, as the
//! convolutions' filters are), and the sums stay `f32`.

use std::sync::Arc;

use burn::backend::Flex;
use burn::backend::flex::FlexTensor;
use burn::nn::Linear;
use burn::prelude::*;
use multiversion::multiversion;
use rayon::prelude::*;

use super::filter_cache::{Cached, FilterCache};
use super::{Precision, Route, bf16_bits, contiguous, f32s, flex_tensor, host_f32, operand, route};

/// Weight rows per task: 256 rows of VGG's 512 outputs are 512 KB of `f32`.
const CHUNK_ROWS: usize = 256;

/// Weights below which Burn's op stays: a task costs more than such a layer (VGG's 512→7).
const MIN_WEIGHTS: usize = 1 << 16;

/// bf16 weights of the live models' dense layers, as many values as their weights (VGG's
/// 4608→512 holds 2.4 M): 32 MB.
const MAX_CACHED: usize = 1 << 24;

static BF16_WEIGHTS: FilterCache<Bf16Rows> = FilterCache::new(MAX_CACHED);

/// `y = x·W + b` as `Linear::forward`, on this module's kernel where it runs the layer.
pub fn forward(linear: &Linear, x: Tensor<2>) -> Tensor<2> {
    let w = linear.weight.val();
    let [rows, ins] = x.dims();
    let [weight_rows, outs] = w.dims();
    // A width that does not match the weights gets Burn's own error.
    let ours = route(&[operand(&x), operand(&w)]) == Route::Flex
        && ins == weight_rows
        && runs_here(rows, ins, outs);
    if !ours {
        return linear.forward(x);
    }
    let bias = linear.bias.as_ref().map(|b| host_f32(b.val()));
    let flex = |t: Tensor<2>| t.try_into_primitive::<Flex>().expect("routed as flex");
    let (x, w) = (contiguous(&flex(x)), contiguous(&flex(w)));
    let y = match super::precision() {
        Precision::F32 => dense(f32s(&x), Weights::F32(f32s(&w)), bias.as_deref(), outs),
        Precision::Bf16 => {
            let rows16 = bf16_rows(&w, [ins, outs]);
            dense(f32s(&x), Weights::Bf16(&rows16.0), bias.as_deref(), outs)
        }
    };
    Tensor::from_primitive::<Flex>(flex_tensor(y, [rows, outs]))
}

/// Whether a layer of `ins`→`outs` on `rows` inputs (plain burn-flex tensors) runs here: batch
/// 1 (fewer rows than threads) and large enough to repay the tasks.
fn runs_here(rows: usize, ins: usize, outs: usize) -> bool {
    rows < rayon::current_num_threads() && ins * outs >= MIN_WEIGHTS
}

/// The weights' values rounded to bf16 (the top halves of their bits), `[in][out]` as the
/// weights.
struct Bf16Rows(Vec<u16>);

impl Cached for Bf16Rows {
    fn len(&self) -> usize {
        self.0.len()
    }
}

fn bf16_rows(w: &FlexTensor, [ins, outs]: [usize; 2]) -> Arc<Bf16Rows> {
    BF16_WEIGHTS.get(w, [outs, ins], 0, |values| {
        Bf16Rows(values.iter().map(|&v| bf16_bits(v) as u16).collect())
    })
}

/// A layer's weights, `[in][out]`.
#[derive(Clone, Copy)]
enum Weights<'a> {
    F32(&'a [f32]),
    Bf16(&'a [u16]),
}

/// `y[n] = b + Σ_i x[n][i] · W[i]` for every row `n` of `x`, `W`'s rows by chunks in parallel.
fn dense(x: &[f32], w: Weights, bias: Option<&[f32]>, outs: usize) -> Vec<f32> {
    let ins = match w {
        Weights::F32(w) => w.len(),
        Weights::Bf16(w) => w.len(),
    } / outs;
    let rows = x.len() / ins;
    let partials: Vec<Vec<f32>> = (0..ins.div_ceil(CHUNK_ROWS))
        .into_par_iter()
        .map(|chunk| {
            let span = chunk * CHUNK_ROWS..((chunk + 1) * CHUNK_ROWS).min(ins);
            let mut sums = vec![0.0; rows * outs];
            for (n, sums) in sums.chunks_exact_mut(outs).enumerate() {
                let xs = &x[n * ins..][span.clone()];
                let at = span.start * outs..span.end * outs;
                match w {
                    Weights::F32(w) => add_rows(sums, xs, &w[at], |v| v),
                    Weights::Bf16(w) => {
                        add_rows(sums, xs, &w[at], |v| f32::from_bits(u32::from(v) << 16))
                    }
                }
            }
            sums
        })
        .collect();
    let mut y = match bias {
        Some(b) => b.repeat(rows),
        None => vec![0.0; rows * outs],
    };
    for partial in &partials {
        y.iter_mut().zip(partial).for_each(|(y, p)| *y += p);
    }
    y
}

/// `sums += Σ_r xs[r] · rows[r]`, `rows` holding `xs.len()` rows of `sums.len()` weights
/// (`value` makes each an `f32`), one row per pass: one stream of weights for the hardware
/// prefetcher. (Four rows a pass, four streams, read cold weights at 19 against 31 GB/s.)
#[multiversion(targets = "simd")]
fn add_rows<T: Copy>(sums: &mut [f32], xs: &[f32], rows: &[T], value: impl Fn(T) -> f32) {
    for (row, &x) in rows.chunks_exact(sums.len()).zip(xs) {
        for (s, &v) in sums.iter_mut().zip(row) {
            *s += x * value(v);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ops::test_util::{assert_close_values, values, worst_difference};
    use burn::nn::LinearConfig;

    /// Burn's forward and ours of one layer, on `threads` threads.
    fn both(ins: usize, outs: usize, rows: usize, threads: usize) -> (Vec<f32>, Vec<f32>) {
        let device = Device::flex();
        let linear = LinearConfig::new(ins, outs).init(&device);
        let x =
            Tensor::<2>::from_data(TensorData::new(values(rows * ins, 3), [rows, ins]), &device);
        let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build();
        let ours = pool.expect("thread pool").install(|| {
            assert!(runs_here(rows, ins, outs), "{ins}→{outs} × {rows}");
            forward(&linear, x.clone())
        });
        let reference = linear.forward(x);
        let host = |t: Tensor<2>| t.into_data().try_into_vec::<f32>().expect("f32");
        (host(ours), host(reference))
    }

    #[test]
    fn matches_burn() {
        // Rows by whole chunks and a short last chunk; one and three images (on four
        // threads). Under FERRITE_PRECISION=bf16 the weights are rounded.
        let tolerance = match crate::ops::precision() {
            Precision::F32 => 1e-5,
            Precision::Bf16 => 5e-3,
        };
        for (ins, outs, rows, threads) in [(512, 128, 1, 2), (601, 130, 1, 2), (259, 256, 3, 4)] {
            let (ours, reference) = both(ins, outs, rows, threads);
            assert_close_values(
                &ours,
                &reference,
                tolerance,
                &format!("{ins}→{outs} × {rows}"),
            );
        }
    }

    #[test]
    fn bf16_weights() {
        let device = Device::flex();
        let linear = LinearConfig::new(700, 96).init(&device);
        let x = Tensor::<2>::from_data(TensorData::new(values(700, 3), [1, 700]), &device);
        let w = contiguous(
            &linear
                .weight
                .val()
                .try_into_primitive::<Flex>()
                .expect("flex"),
        );
        let bias = host_f32(linear.bias.as_ref().expect("bias").val());
        let reference = linear.forward(x.clone());
        let reference = reference.into_data().try_into_vec::<f32>().expect("f32");
        let rows16 = bf16_rows(&w, [700, 96]);
        let ours = dense(&values(700, 3), Weights::Bf16(&rows16.0), Some(&bias), 96);
        // Weights rounded to 8 bits of mantissa (so the bf16 weights were read), sums in f32.
        let worst = worst_difference(&ours, &reference, "700→96 bf16");
        assert!((1e-5..5e-3).contains(&worst), "{worst}");
    }
}
