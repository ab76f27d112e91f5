//! Batch norm over NCHW `f32` slices: per-channel statistics, the normalising affine map (with
//! an optional ReLU folded in), and the backward pass. Statistics are per channel in parallel;
//! the element-wise passes are per (image, channel) plane in parallel.

use multiversion::multiversion;
use rayon::prelude::*;

use crate::ops::{affine_into, lane_sum, lane_sums2, min_items, output};

/// `[batch, channels, plane]` view of an NCHW tensor (`plane` = height × width).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Layout {
    pub batch: usize,
    pub channels: usize,
    pub plane: usize,
}

impl Layout {
    /// Values each channel's statistics are taken over.
    fn per_channel(&self) -> usize {
        self.batch * self.plane
    }

    /// The planes of channel `c`, one per image.
    fn planes<'a>(&self, data: &'a [f32], c: usize) -> impl Iterator<Item = &'a [f32]> {
        let (channels, plane) = (self.channels, self.plane);
        (0..self.batch)
            .map(move |n| &data[(n * channels + c) * plane..(n * channels + c + 1) * plane])
    }
}

/// Per-channel mean and biased variance, in one pass over each channel's planes: the sums of
/// `x − k` and `(x − k)²` for a value `k` of the channel (so that `E[(x − k)²] − E[x − k]²`
/// does not cancel the way raw moments do when the mean is large against the spread), each
/// plane summed in vectorised `f32` lanes and the planes in `f64`.
pub fn channel_stats(x: &[f32], l: &Layout) -> (Vec<f32>, Vec<f32>) {
    let count = l.per_channel() as f64;
    (0..l.channels)
        .into_par_iter()
        .with_min_len(min_items(l.per_channel()))
        .map(|c| {
            let k = l
                .planes(x, c)
                .find_map(|p| p.first().copied())
                .unwrap_or(0.0);
            let (shifted, squares) = l
                .planes(x, c)
                .map(|p| shifted_moments(p, k))
                .fold((0.0f64, 0.0f64), |(s, q), (u, v)| {
                    (s + u as f64, q + v as f64)
                });
            let offset = shifted / count;
            let variance = (squares / count - offset * offset).max(0.0);
            ((k as f64 + offset) as f32, variance as f32)
        })
        .unzip()
}

/// `(Σ (v − k), Σ (v − k)²)` over one plane: two passes, the second from L1 (one pass with
/// both sums compiled to scalar code, LLVM pairing the two sums instead of the lanes).
fn shifted_moments(plane: &[f32], k: f32) -> (f32, f32) {
    (
        lane_sum(plane, |v| v - k),
        lane_sum(plane, |v| (v - k) * (v - k)),
    )
}

/// `y = x · scale[c] + shift[c]`, then `max(y, 0)` when `relu`.
pub fn affine(x: &[f32], scale: &[f32], shift: &[f32], relu: bool, l: &Layout) -> Vec<f32> {
    output::par_chunks(x.len(), l.plane, min_items(l.plane), |p, out| {
        let c = p % l.channels;
        affine_into(out, &x[p * l.plane..], scale[c], shift[c], relu);
    })
}

/// What the forward pass keeps for the backward one.
#[derive(Debug, Clone)]
pub struct Saved {
    pub gamma: Vec<f32>,
    pub mean: Vec<f32>,
    pub inv_std: Vec<f32>,
    /// The affine map the forward applied (for the ReLU mask).
    pub scale: Vec<f32>,
    pub shift: Vec<f32>,
    pub relu: bool,
}

/// Gradients `(dx, dgamma, dbeta)` of training-mode batch norm (+ ReLU) given `dy`.
pub fn backward(x: &[f32], dy: &[f32], s: &Saved, l: &Layout) -> (Vec<f32>, Vec<f32>, Vec<f32>) {
    // The gradient through the ReLU: zero where the output was clipped (a select, so the
    // loops stay vectorised).
    let passed = |c: usize, v: f32, g: f32| {
        if !s.relu || v * s.scale[c] + s.shift[c] > 0.0 {
            g
        } else {
            0.0
        }
    };
    let (dbeta, dgamma): (Vec<f32>, Vec<f32>) = (0..l.channels)
        .into_par_iter()
        .with_min_len(min_items(l.per_channel()))
        .map(|c| {
            let (mut sum, mut dot) = (0.0f64, 0.0f64);
            for (xp, gp) in l.planes(x, c).zip(l.planes(dy, c)) {
                let (plane_sum, plane_dot) = lane_sums2(xp, gp, |v, g| {
                    let g = passed(c, v, g);
                    (g, g * (v - s.mean[c]))
                });
                sum += plane_sum as f64;
                dot += plane_dot as f64;
            }
            (sum as f32, (dot as f32) * s.inv_std[c])
        })
        .unzip();

    let count = l.per_channel() as f32;
    let dx = output::par_chunks(x.len(), l.plane, min_items(l.plane), |p, out| {
        let c = p % l.channels;
        let xp = &x[p * l.plane..(p + 1) * l.plane];
        let gp = &dy[p * l.plane..(p + 1) * l.plane];
        let k = s.gamma[c] * s.inv_std[c];
        let mean_grad = dbeta[c] / count;
        let slope = dgamma[c] * s.inv_std[c] / count;
        let affine = (s.scale[c], s.shift[c], s.relu);
        plane_input_grad(out, xp, gp, affine, [k, mean_grad, s.mean[c], slope]);
    });
    (dx, dgamma, dbeta)
}

/// One plane of `dx = k·(g − mean_grad − (x − mean)·slope)`, with `g` zeroed where the ReLU
/// after the affine map `(a, b)` clipped.
#[multiversion(targets = "simd")]
fn plane_input_grad(
    out: &mut [f32],
    x: &[f32],
    dy: &[f32],
    (a, b, relu): (f32, f32, bool),
    [k, mean_grad, mean, slope]: [f32; 4],
) {
    for ((o, &v), &g) in out.iter_mut().zip(x).zip(dy) {
        let g = if !relu || v * a + b > 0.0 { g } else { 0.0 };
        *o = k * (g - mean_grad - (v - mean) * slope);
    }
}
