//! Depthwise convolutions (one filter per channel, `groups == in == out channels`), planes
//! in parallel.
//!
//! 3×3 filters at stride 1 without dilation, what mini-Xception's separable convolutions use,
//! run on the [`Wide`] layout ([`super::wide`]): all nine taps of 16 outputs summed in
//! registers, one pass over the plane. Other filters, strides and dilations go one output row
//! and tap at a time.

use multiversion::multiversion;
use rayon::prelude::*;

use super::kernels::{Epilogue, Geometry};
use super::wide::{LANES, TAPS, Wide, lanes};
use crate::ops::{lane_sum2, min_items, output};

/// `wide[i] = Σₜ w[t] · padded[i + offsets[t]]`, 16 outputs at a time.
#[multiversion(targets = "simd")]
fn correlate(padded: &[f32], offsets: [usize; TAPS], w: [f32; TAPS], wide: &mut [f32]) {
    for (i, out) in wide.chunks_exact_mut(LANES).enumerate() {
        let mut acc = [0.0f32; LANES];
        for (&offset, &weight) in offsets.iter().zip(&w) {
            let src = lanes(&padded[i * LANES + offset..]);
            for l in 0..LANES {
                acc[l] += weight * src[l];
            }
        }
        out.copy_from_slice(&acc);
    }
}

/// Channel `c`'s 3×3 filter, as is or turned by 180° (for the input gradient).
fn filter(w: &[f32], c: usize, turned: bool) -> [f32; TAPS] {
    let f = &w[c * TAPS..(c + 1) * TAPS];
    std::array::from_fn(|t| if turned { f[TAPS - 1 - t] } else { f[t] })
}

/// `y = epilogue(conv(x, w))`.
pub fn forward(x: &[f32], w: &[f32], post: &Epilogue, g: &Geometry) -> Vec<f32> {
    let Some(wide) = Wide::forward(g) else {
        return forward_rows(x, w, post, g);
    };
    // Tasks of at least 64 k outputs: at batch 1, waking the other thread for less cost more
    // than it saved (mini-Xception 0.45 → 0.41 ms per image, measured; no change at batch 64).
    let min_planes = 4 * min_items(g.out_plane());
    correlate_planes(&wide, x, w, false, post, g, min_planes)
}

/// `dL/dx`: the output gradient correlated with each channel's filter turned by 180°.
pub fn input_grad(w: &[f32], dy: &[f32], g: &Geometry) -> Vec<f32> {
    let Some(wide) = Wide::input_grad(g) else {
        return input_grad_rows(w, dy, g);
    };
    let none = Epilogue::default();
    correlate_planes(&wide, dy, w, true, &none, g, min_items(g.in_plane()))
}

/// Every plane of `sources` correlated on `wide` with its channel's filter (`turned` by 180°
/// or not), then `post`; planes in parallel, at least `min_planes` a task.
fn correlate_planes(
    wide: &Wide,
    sources: &[f32],
    w: &[f32],
    turned: bool,
    post: &Epilogue,
    g: &Geometry,
    min_planes: usize,
) -> Vec<f32> {
    let (source, out) = (wide.source_plane(), wide.out_plane());
    let planes = sources.len() / source.max(1);
    output::par_chunks_init(
        planes * out,
        out,
        min_planes,
        || (vec![0.0; wide.padded_len()], vec![0.0; wide.wide_len()]),
        |(padded, acc), p, map| {
            let c = p % g.in_channels;
            wide.pad(&sources[p * source..(p + 1) * source], padded);
            correlate(padded, wide.offsets(), filter(w, c, turned), acc);
            wide.narrow(acc, map);
            post.apply_map(map, c);
        },
    )
}

/// `dL/dW`: per channel, each tap's dot product of the output gradient with the input it
/// saw, summed over images.
pub fn weight_grad(x: &[f32], dy: &[f32], g: &Geometry) -> Vec<f32> {
    let Some(wide) = Wide::forward(g) else {
        return weight_grad_rows(x, dy, g);
    };
    let (plane_in, plane_out) = (g.in_plane(), g.out_plane());
    let mut dw = vec![0.0; g.in_channels * TAPS];
    dw.par_chunks_mut(TAPS)
        .with_min_len(min_items(g.batch * plane_out))
        .enumerate()
        .for_each_init(
            || (vec![0.0; wide.padded_len()], vec![0.0; wide.wide_len()]),
            |(padded, grad), (c, dw_c)| {
                for n in 0..g.batch {
                    let p = n * g.in_channels + c;
                    wide.pad(&x[p * plane_in..(p + 1) * plane_in], padded);
                    wide.widen(&dy[p * plane_out..(p + 1) * plane_out], grad);
                    for (d, offset) in dw_c.iter_mut().zip(wide.offsets()) {
                        *d += lane_sum2(grad, &padded[offset..][..grad.len()], |p, q| p * q);
                    }
                }
            },
        );
    dw
}

/// Visits every (output row, kernel tap) pair of one depthwise plane whose input row exists:
/// `visit(out_row, in_row_start, tap_index, x-range, x-offset)`.
fn depthwise_taps(g: &Geometry, mut visit: impl FnMut(usize, usize, usize, (usize, usize, isize))) {
    let in_w = g.in_size[1];
    for ky in 0..g.kernel[0] {
        let (y0, y1, dy) = g.valid(0, ky);
        for kx in 0..g.kernel[1] {
            let xs = g.valid(1, kx);
            if xs.0 == xs.1 {
                continue;
            }
            for oy in y0..y1 {
                let in_row = (oy as isize * g.stride[0] as isize + dy) as usize * in_w;
                visit(oy, in_row, ky * g.kernel[1] + kx, xs);
            }
        }
    }
}

/// Input column of output column `x0` under tap offset `dx`.
fn first_input(x0: usize, dx: isize, stride: usize) -> usize {
    (x0 as isize * stride as isize + dx) as usize
}

/// [`forward`] for any stride and dilation, one output row and tap at a time.
fn forward_rows(x: &[f32], w: &[f32], post: &Epilogue, g: &Geometry) -> Vec<f32> {
    let (plane_in, plane_out, taps) = (g.in_plane(), g.out_plane(), g.kernel_area());
    let (out_w, sx) = (g.out_size[1], g.stride[1]);
    let mut y = vec![0.0; g.output_len()];
    y.par_chunks_mut(plane_out)
        .with_min_len(min_items(plane_out))
        .enumerate()
        .for_each(|(p, out)| {
            let c = p % g.in_channels;
            let image = &x[p * plane_in..(p + 1) * plane_in];
            let filter = &w[c * taps..(c + 1) * taps];
            depthwise_taps(g, |oy, in_row, tap, (x0, x1, dx)| {
                let weight = filter[tap];
                let out = &mut out[oy * out_w + x0..oy * out_w + x1];
                axpy(out, weight, &image[in_row + first_input(x0, dx, sx)..], sx);
            });
            post.apply_map(out, c);
        });
    y
}

/// [`input_grad`] for any stride and dilation.
fn input_grad_rows(w: &[f32], dy: &[f32], g: &Geometry) -> Vec<f32> {
    let (plane_in, plane_out, taps) = (g.in_plane(), g.out_plane(), g.kernel_area());
    let (out_w, sx) = (g.out_size[1], g.stride[1]);
    let mut dx = vec![0.0; g.input_len()];
    dx.par_chunks_mut(plane_in)
        .with_min_len(min_items(plane_in))
        .enumerate()
        .for_each(|(p, dx_p)| {
            let c = p % g.in_channels;
            let grad = &dy[p * plane_out..(p + 1) * plane_out];
            let filter = &w[c * taps..(c + 1) * taps];
            depthwise_taps(g, |oy, in_row, tap, (x0, x1, dx)| {
                let weight = filter[tap];
                let grad = &grad[oy * out_w + x0..oy * out_w + x1];
                let line = &mut dx_p[in_row + first_input(x0, dx, sx)..];
                if sx == 1 {
                    axpy(&mut line[..grad.len()], weight, grad, 1);
                } else {
                    for (p, v) in line.iter_mut().step_by(sx).zip(grad) {
                        *p += weight * v;
                    }
                }
            });
        });
    dx
}

/// [`weight_grad`] for any stride and dilation.
fn weight_grad_rows(x: &[f32], dy: &[f32], g: &Geometry) -> Vec<f32> {
    let (plane_in, plane_out, taps) = (g.in_plane(), g.out_plane(), g.kernel_area());
    let (out_w, sx) = (g.out_size[1], g.stride[1]);
    let mut dw = vec![0.0; g.in_channels * taps];
    let channels = dw
        .par_chunks_mut(taps)
        .with_min_len(min_items(g.batch * plane_out));
    channels.enumerate().for_each(|(c, dw_c)| {
        for n in 0..g.batch {
            let p = n * g.in_channels + c;
            let image = &x[p * plane_in..(p + 1) * plane_in];
            let grad = &dy[p * plane_out..(p + 1) * plane_out];
            depthwise_taps(g, |oy, in_row, tap, (x0, x1, dx)| {
                let grad = &grad[oy * out_w + x0..oy * out_w + x1];
                let line = &image[in_row + first_input(x0, dx, sx)..];
                dw_c[tap] += dot(grad, line, sx);
            });
        }
    });
    dw
}

/// `out[i] += a · x[i·stride]`; the stride-1 case is a plain slice loop, which vectorises.
#[multiversion(targets = "simd")]
fn axpy(out: &mut [f32], a: f32, x: &[f32], stride: usize) {
    if stride == 1 {
        let x = &x[..out.len()];
        for (o, v) in out.iter_mut().zip(x) {
            *o += a * v;
        }
    } else {
        for (o, v) in out.iter_mut().zip(x.iter().step_by(stride)) {
            *o += a * v;
        }
    }
}

/// `Σ a[i] · x[i·stride]`; the stride-1 case in vectorised lanes.
fn dot(a: &[f32], x: &[f32], stride: usize) -> f32 {
    if stride == 1 {
        return lane_sum2(a, &x[..a.len()], |p, q| p * q);
    }
    a.iter()
        .zip(x.iter().step_by(stride))
        .map(|(p, q)| p * q)
        .sum()
}
