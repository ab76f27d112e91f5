//! Deterministic test tensors and a tolerance check shared by the ops' tests.

use burn::prelude::*;
use burn::tensor::TensorData;

/// Deterministic values in [-1, 1).
pub fn values(len: usize, seed: u64) -> Vec<f32> {
    let step = |s: u64| {
        s.wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407)
    };
    let mut state = step(seed);
    (0..len)
        .map(|_| {
            state = step(state);
            ((state >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
        })
        .collect()
}

pub fn tensor<const D: usize>(shape: [usize; D], seed: u64, device: &Device) -> Tensor<D> {
    Tensor::from_data(
        TensorData::new(values(shape.iter().product(), seed), shape),
        device,
    )
}

/// Deterministic 3×3 conv weights `[outs][ins][3][3]` as a burn-flex tensor.
pub fn weights_3x3(outs: usize, ins: usize, seed: u64) -> burn::backend::flex::FlexTensor {
    let shape = [outs, ins, 3, 3];
    crate::ops::flex_tensor(values(shape.iter().product(), seed), shape)
}

/// Whether this CPU has AVX-512F, for tests of kernels that need it (saying so when not).
#[cfg(target_arch = "x86_64")]
pub fn avx512_or_skip() -> bool {
    let has = crate::ops::conv::has_avx512f();
    if !has {
        eprintln!("skipped: this CPU has no AVX-512F");
    }
    has
}

/// `ours` equals `reference` in shape and, relative to the reference's largest magnitude, to
/// within `tolerance`.
pub fn assert_close(ours: &TensorData, reference: &TensorData, tolerance: f32, what: &str) {
    assert_eq!(ours.shape(), reference.shape(), "{what}: shape");
    let a = ours.clone().try_into_vec::<f32>().expect("f32");
    let b = reference.clone().try_into_vec::<f32>().expect("f32");
    assert_close_values(&a, &b, tolerance, what);
}

/// [`assert_close`] on plain values.
pub fn assert_close_values(ours: &[f32], reference: &[f32], tolerance: f32, what: &str) {
    let worst = worst_difference(ours, reference, what);
    assert!(
        worst <= tolerance,
        "{what}: differs by {worst} of the largest value"
    );
}

/// The largest difference of `ours` from `reference`, relative to the reference's largest
/// magnitude (at least 1); infinite where only one of a pair is NaN.
pub fn worst_difference(ours: &[f32], reference: &[f32], what: &str) -> f32 {
    assert_eq!(ours.len(), reference.len(), "{what}: length");
    let scale = reference.iter().fold(1.0f32, |m, v| m.max(v.abs()));
    let worst = ours
        .iter()
        .zip(reference)
        .map(|(p, q)| match (p.is_nan(), q.is_nan()) {
            (false, false) => (p - q).abs(),
            (true, true) => 0.0,
            // `f32::max` would drop a NaN, and a kernel that reads uninitialised scratch
            // (NaN in tests) would pass.
            _ => f32::INFINITY,
        })
        .fold(0.0, f32::max);
    worst / scale
}
