//! The models' hot layers with ferrite's own kernels where tensors live on burn-flex, Burn's
//! ops everywhere else.
//!
//! Why: on burn-flex 0.22.1 a training step spent most of its time outside the useful
//! arithmetic (`docs/performance.md`): the convolution weight gradient ran as a convolution
//! with the output gradient as kernel after single-threaded layout copies (5.8× slower than
//! PyTorch's), batch norm ran as a dozen element-wise passes with transposing copies, and
//! dropout drew its mask on one thread. Here each of [`conv`], [`batch_norm`], [`max_pool`]
//! is one differentiable op of Burn's autodiff whose forward and backward are a few parallel
//! passes over plain `f32` slices, and [`dropout`] multiplies by a mask filled in parallel.
//! `docs/performance.md` has the measurements (`bench/kernels.sh`: 1.9–4.9× Burn's ops).
//!
//! The element-wise loops are `#[multiversion(targets = "simd")]`: compiled for AVX-512,
//! AVX2 and the older sets as well as the baseline x86-64 (SSE2) the crate is built for, the
//! best one the CPU has chosen at run time. burn-flex and `gemm` dispatch their own kernels the
//! same way; ours otherwise ran 4 lanes wide (with everything built for the host CPU instead,
//! mini-Xception trained 15 % faster).
//!
//! Set `FERRITE_KERNELS=burn` to use Burn's ops everywhere, `FERRITE_KERNELS=im2col` to keep
//! ferrite's kernels but run every dense convolution by im2col, one product per image (no
//! Winograd, no direct kernels, no grouped 1×1 products), or `FERRITE_KERNELS=f23` to keep Winograd to F(2×2, 3×3), for A/B benchmarks.
//!
//! The convolutions' matrix products run in `f32` unless [`set_precision`] (or
//! `FERRITE_PRECISION=bf16`) asks for bf16 operands with `f32` sums, on CPUs with AVX-512 BF16;
//! batch-1 dense layers ([`linear`]) then read bf16 weights on any CPU.

pub mod batch_norm;
pub mod conv;
pub mod dropout;
mod filter_cache;
pub mod linear;
pub mod max_pool;
pub mod norm_pool;
mod output;
#[cfg(target_arch = "x86_64")]
mod prefetch;
mod scratch;
#[cfg(test)]
pub(crate) mod test_util;

use std::sync::OnceLock;
use std::sync::atomic::{AtomicU8, Ordering};

use multiversion::multiversion;

use burn::backend::flex::FlexTensor;
use burn::backend::{DispatchDevice, GradientCheckpointingStrategy};
use burn::prelude::*;
use burn::tensor::{DType, TensorData};

/// Where an op's operands live, and so whose kernels run it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Route {
    /// All operands are plain burn-flex `f32` tensors.
    Flex,
    /// All operands are burn-flex `f32` tensors under autodiff without gradient checkpointing.
    TrackedFlex,
    /// Anything else: Burn's own op.
    Burn,
}

/// `FERRITE_KERNELS`: `burn` for Burn's ops everywhere, `im2col` for ferrite's kernels without
/// Winograd, direct or channels-last convolutions, `f23` for F(2×2, 3×3) alone; anything else
/// (or unset) for all of ferrite's kernels.
fn kernels_setting() -> &'static str {
    static SETTING: OnceLock<String> = OnceLock::new();
    SETTING.get_or_init(|| std::env::var("FERRITE_KERNELS").unwrap_or_default())
}

fn burn_forced() -> bool {
    kernels_setting() == "burn"
}

fn im2col_forced() -> bool {
    kernels_setting() == "im2col"
}

/// `FERRITE_KERNELS=f23`: Winograd F(2×2, 3×3) only, for A/B benchmarks of F(4×4, 3×3).
fn f23_forced() -> bool {
    kernels_setting() == "f23"
}

/// The operand precision of the convolutions' matrix products, and of the weights of dense
/// layers at batch 1 ([`linear`]). Sums, stored weights, activations and every other op stay
/// `f32` either way.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Precision {
    #[default]
    F32,
    /// bf16 operands (8 bits of mantissa), `f32` sums, where the CPU has AVX-512 BF16 and the
    /// product is large enough to gain; `f32` elsewhere.
    Bf16,
}

/// 0 until first read or set, then 1 + the `Precision` discriminant.
static PRECISION: AtomicU8 = AtomicU8::new(0);

/// The precision in force: the last [`set_precision`], else `FERRITE_PRECISION` (`bf16` or
/// `f32`, default `f32`).
pub fn precision() -> Precision {
    match PRECISION.load(Ordering::Relaxed) {
        0 => {
            let from_env = match std::env::var("FERRITE_PRECISION").as_deref() {
                Ok("bf16") => Precision::Bf16,
                _ => Precision::F32,
            };
            let _ = PRECISION.compare_exchange(
                0,
                1 + from_env as u8,
                Ordering::Relaxed,
                Ordering::Relaxed,
            );
            precision()
        }
        2 => Precision::Bf16,
        _ => Precision::F32,
    }
}

/// Sets the precision of the convolutions' matrix products for the whole process.
pub fn set_precision(precision: Precision) {
    PRECISION.store(1 + precision as u8, Ordering::Relaxed);
}

fn route_of(device: &Device, dtype: DType) -> Route {
    if dtype != DType::F32 {
        return Route::Burn;
    }
    match device.as_dispatch() {
        DispatchDevice::Flex(_) => Route::Flex,
        DispatchDevice::Autodiff(ad)
            if ad.gradient_checkpointing_strategy() == GradientCheckpointingStrategy::Disabled
                && matches!(ad.clone().inner(), DispatchDevice::Flex(_)) =>
        {
            Route::TrackedFlex
        }
        _ => Route::Burn,
    }
}

/// The common route of all operands, given as (device, dtype); mixed operands go to Burn.
fn route(operands: &[(Device, DType)]) -> Route {
    if burn_forced() {
        return Route::Burn;
    }
    let mut routes = operands
        .iter()
        .map(|(device, dtype)| route_of(device, *dtype));
    let Some(first) = routes.next() else {
        return Route::Burn;
    };
    if routes.all(|r| r == first) {
        first
    } else {
        Route::Burn
    }
}

/// The fewest items of `item_len` values one rayon task should get: below about 16k values a
/// task costs more to hand to another thread than to run (batch-1 inference is all such).
fn min_items(item_len: usize) -> usize {
    ((1 << 14) / item_len.max(1)).max(1)
}

/// `Σ f(v)` over `values`, in 16 independent partial sums so the loop vectorises.
fn lane_sum(values: &[f32], f: impl Fn(f32) -> f32) -> f32 {
    lane_sum2(values, values, |v, _| f(v))
}

/// `Σ f(a[i], b[i])` over slices of equal length, in 16 independent partial sums so the loop
/// vectorises (an `f32` sum in order cannot be reordered by the compiler).
#[multiversion(targets = "simd")]
fn lane_sum2(a: &[f32], b: &[f32], f: impl Fn(f32, f32) -> f32) -> f32 {
    const LANES: usize = 16;
    debug_assert_eq!(a.len(), b.len());
    let mut acc = [0.0f32; LANES];
    let (a16, b16) = (a.chunks_exact(LANES), b.chunks_exact(LANES));
    let tail: f32 = a16
        .remainder()
        .iter()
        .zip(b16.remainder())
        .map(|(&p, &q)| f(p, q))
        .sum();
    for (ca, cb) in a16.zip(b16) {
        for i in 0..LANES {
            acc[i] += f(ca[i], cb[i]);
        }
    }
    acc.iter().sum::<f32>() + tail
}

/// `(Σ f(a[i], b[i]).0, Σ f(a[i], b[i]).1)`: two sums in one pass over the slices, each in
/// 16 independent partial sums.
#[multiversion(targets = "simd")]
fn lane_sums2(a: &[f32], b: &[f32], f: impl Fn(f32, f32) -> (f32, f32)) -> (f32, f32) {
    const LANES: usize = 16;
    debug_assert_eq!(a.len(), b.len());
    let (mut first, mut second) = ([0.0f32; LANES], [0.0f32; LANES]);
    let (a16, b16) = (a.chunks_exact(LANES), b.chunks_exact(LANES));
    let tail = a16
        .remainder()
        .iter()
        .zip(b16.remainder())
        .map(|(&p, &q)| f(p, q))
        .fold((0.0, 0.0), |(s, t), (u, v)| (s + u, t + v));
    for (ca, cb) in a16.zip(b16) {
        for i in 0..LANES {
            let (u, v) = f(ca[i], cb[i]);
            first[i] += u;
            second[i] += v;
        }
    }
    (
        first.iter().sum::<f32>() + tail.0,
        second.iter().sum::<f32>() + tail.1,
    )
}

/// `out[i] = src[i·step]` for every `i` both hold. Stride 2, the common case, as exact pairs:
/// that loop vectorizes, where `step_by` and runtime-sized chunks compile to scalar loops.
#[inline(always)]
pub(crate) fn every_nth(out: &mut [f32], src: &[f32], step: usize) {
    if step == 2 {
        for (o, pair) in out.iter_mut().zip(src.chunks_exact(2)) {
            *o = pair[0];
        }
        if let ([.., last], Some(o)) = (src.chunks_exact(2).remainder(), out.get_mut(src.len() / 2))
        {
            *o = *last;
        }
    } else {
        for (o, chunk) in out.iter_mut().zip(src.chunks(step)) {
            *o = chunk[0];
        }
    }
}

/// `src`'s even-indexed values into `even` (`src.len().div_ceil(2)` of them) and its
/// odd-indexed ones into `odd` (`src.len() / 2`): a stride-2 split of a row, as exact pairs so
/// it vectorises.
#[inline(always)]
pub(crate) fn deinterleave(src: &[f32], even: &mut [f32], odd: &mut [f32]) {
    let pairs = src.chunks_exact(2);
    if let ([last], Some(e)) = (pairs.remainder(), even.get_mut(src.len() / 2)) {
        *e = *last;
    }
    for ((pair, e), o) in pairs.zip(even.iter_mut()).zip(odd.iter_mut()) {
        *e = pair[0];
        *o = pair[1];
    }
}

/// The inverse of [`deinterleave`]: `dst`'s even positions from `even`, odd ones from `odd`.
#[inline(always)]
pub(crate) fn interleave(even: &[f32], odd: &[f32], dst: &mut [f32]) {
    let len = dst.len();
    let mut pairs = dst.chunks_exact_mut(2);
    for ((pair, e), o) in pairs.by_ref().zip(even).zip(odd) {
        pair[0] = *e;
        pair[1] = *o;
    }
    if let ([last], Some(e)) = (pairs.into_remainder(), even.get(len / 2)) {
        *last = *e;
    }
}

/// `v = v·a + b`, then `max(v, 0)` when `relu`: batch norm's map, and a convolution's
/// epilogue.
#[multiversion(targets = "simd")]
fn affine_in_place(values: &mut [f32], a: f32, b: f32, relu: bool) {
    if relu {
        values.iter_mut().for_each(|v| *v = (*v * a + b).max(0.0));
    } else {
        values.iter_mut().for_each(|v| *v = *v * a + b);
    }
}

/// `out = x·a + b`, then `max(·, 0)` when `relu`, for the first `out.len()` values of `x`: the
/// map of [`affine_in_place`] in one pass where the input must be kept (a copy first cost a
/// second pass: 1.4 % of mini-Xception's training step).
#[multiversion(targets = "simd")]
fn affine_into(out: &mut [f32], x: &[f32], a: f32, b: f32, relu: bool) {
    let x = &x[..out.len()];
    if relu {
        out.iter_mut()
            .zip(x)
            .for_each(|(o, v)| *o = (v * a + b).max(0.0));
    } else {
        out.iter_mut().zip(x).for_each(|(o, v)| *o = v * a + b);
    }
}

/// `x` rounded to the nearest bf16 (ties to even), as the top half of its bits.
#[inline(always)]
pub(crate) fn bf16_bits(x: f32) -> u32 {
    let bits = x.to_bits();
    if bits & 0x7fff_ffff > 0x7f80_0000 {
        return 0x7fc0; // NaN stays NaN
    }
    (bits + 0x7fff + ((bits >> 16) & 1)) >> 16
}

/// A small tensor's values on the host (statistics, parameters), as `f32`.
fn host_f32(t: Tensor<1>) -> Vec<f32> {
    t.into_data().try_into_vec::<f32>().expect("f32 values")
}

fn operand<const D: usize>(t: &Tensor<D>) -> (Device, DType) {
    (t.device(), t.dtype())
}

/// `t`, copied into row-major order if it is a strided view.
fn contiguous(t: &FlexTensor) -> FlexTensor {
    if t.as_slice::<f32>().is_some() {
        t.clone()
    } else {
        t.to_contiguous()
    }
}

fn f32s(t: &FlexTensor) -> &[f32] {
    t.as_slice::<f32>().expect("contiguous f32 tensor")
}

fn flex_tensor<const D: usize>(values: Vec<f32>, shape: [usize; D]) -> FlexTensor {
    FlexTensor::from_data(TensorData::new(values, shape))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stride_two_splits_and_merges_rows_of_either_parity() {
        for len in [2usize, 5, 6, 33] {
            let row: Vec<f32> = (0..len).map(|i| i as f32).collect();
            let (mut even, mut odd) = (vec![-1.0; len.div_ceil(2)], vec![-1.0; len / 2]);
            deinterleave(&row, &mut even, &mut odd);
            let want_even: Vec<f32> = row.iter().copied().step_by(2).collect();
            let want_odd: Vec<f32> = row.iter().copied().skip(1).step_by(2).collect();
            assert_eq!(
                (&even, &odd),
                (&want_even, &want_odd),
                "split, {len} values"
            );
            let mut every = vec![-1.0; len.div_ceil(2)];
            every_nth(&mut every, &row, 2);
            assert_eq!(every, want_even, "every other value, {len} values");
            let mut merged = vec![-1.0; len];
            interleave(&even, &odd, &mut merged);
            assert_eq!(merged, row, "merge, {len} values");
        }
    }
}
