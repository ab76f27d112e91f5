//! Direct 3×3, stride-1 convolutions to few output channels (mini-Xception's 8→8 stem, the
//! 7-class heads of seed-cnn and mini-Xception), and stride-2 forwards (seed-cnn's
//! down-sampling layers, on phase planes), at batch ≥ the thread count (from 16 input
//! channels the gradients run in [`super::channels_last`] instead); and, at inference, 3×3
//! forwards at stride 1 or 2 on fewer images than threads ([`few_images`]).
//!
//! Why: with few output channels im2col's column matrix costs as much as the work it feeds
//! (72 values copied per 8 multiply-adds for 8→8), and mini-Xception's 8→8 stem ran at 25 G
//! multiply-adds/s (`conv_layers`, batch 64), about a sixth of the machine's peak. Here each
//! image's planes are zero-padded once into the [`Wide`] layout, where every kernel tap of 16
//! neighbouring outputs is one 16-wide load at a fixed offset, and 8 output channels' sums stay
//! in registers across all input channels and taps. The input gradient is the same correlation
//! of the padded output gradient with the filters turned by 180° and transposed; the weight
//! gradient keeps, per input channel and tap, 8 output channels' sums in registers.

#[cfg(target_arch = "x86_64")]
mod few_images;

use burn::backend::flex::FlexTensor;
use multiversion::multiversion;
use rayon::prelude::*;

use super::kernels::{Epilogue, Geometry, Phases, split_phases, sum_parts};
use super::wide::{LANES, TAPS, Wide, lanes, narrow_rows};
use crate::ops::output;
use crate::ops::scratch::with_scratch;

/// Output channels summed at once (their accumulators stay in registers).
const BLOCK: usize = 8;

/// Whether `g` runs on these kernels: one block of output channels from at least a block of
/// inputs. Measured against im2col (Zen 4, batch 64, forward + both gradients, ms,
/// `conv_layers`): mini-Xception's 8→8 at 46² 7.6–8.0 → 4.9–5.5, seed-cnn's 64→7 at 6²
/// 1.7 → 1.4; but 16→32 at 24² 8.7–9.5 → 10.1, and from one input channel (1→16 at 48², 1→8
/// at 48²) level or slower, im2col's columns being cheap there.
pub(super) fn applies(g: &Geometry) -> bool {
    g.groups == 1
        && g.out_channels <= BLOCK
        && g.in_channels >= BLOCK
        && g.batch >= rayon::current_num_threads()
        && fused_multiply_add()
        && !crate::ops::im2col_forced()
        && Wide::forward(g).is_some()
        && Wide::input_grad(g).is_some()
}

/// Whether [`infer`] runs `g`: at inference (filters fixed), a 3×3 convolution at stride 1 or
/// 2 on a batch smaller than the thread count ([`few_images`], x86-64 with AVX-512).
pub(super) fn applies_at_inference(g: &Geometry) -> bool {
    #[cfg(target_arch = "x86_64")]
    return few_images::applies(g);
    #[cfg(not(target_arch = "x86_64"))]
    {
        let _ = g;
        false
    }
}

/// `y = epilogue(conv(x, w))` at inference, where `w` stays the same from call to call: for
/// `g` where [`applies_at_inference`].
pub(super) fn infer(x: &[f32], w: &FlexTensor, post: &Epilogue, g: &Geometry) -> Vec<f32> {
    #[cfg(target_arch = "x86_64")]
    return few_images::forward(x, w, post, g);
    #[cfg(not(target_arch = "x86_64"))]
    {
        let w = w.as_slice::<f32>().expect("contiguous f32 weights");
        super::kernels::dense_forward(x, w, post, g)
    }
}

/// The kernels sum with `mul_add`, one instruction where the CPU has FMA and a slow library
/// call where it has not.
pub(super) fn fused_multiply_add() -> bool {
    #[cfg(target_arch = "x86_64")]
    return std::is_x86_feature_detected!("fma");
    #[cfg(not(target_arch = "x86_64"))]
    return cfg!(target_feature = "fma") || cfg!(target_arch = "aarch64");
}

/// Filters `[out][in][3][3]` regrouped for [`correlate_block`]: per block of 8 output
/// channels, per (input channel, tap), the 8 weights side by side (zeros past the last
/// channel). `turned` gives the input gradient's filters instead: `in` and `out` swapped and
/// each filter turned by 180°.
fn blocked_filters(w: &[f32], outs: usize, ins: usize, turned: bool) -> Vec<f32> {
    blocked_filters_by(w, outs, ins, turned, BLOCK)
}

/// [`blocked_filters`] by blocks of `block` output channels.
fn blocked_filters_by(w: &[f32], outs: usize, ins: usize, turned: bool, block: usize) -> Vec<f32> {
    let blocks = outs.div_ceil(block);
    let mut packed = vec![0.0; blocks * ins * TAPS * block];
    for o in 0..outs {
        for i in 0..ins {
            for t in 0..TAPS {
                let value = if turned {
                    w[(i * outs + o) * TAPS + TAPS - 1 - t]
                } else {
                    w[(o * ins + i) * TAPS + t]
                };
                packed[blocked_index_by(o, i, t, ins, block)] = value;
            }
        }
    }
    packed
}

/// Where [`blocked_filters`] puts the weight of output `o`, input `i` (of `ins`), tap `t`.
fn blocked_index(o: usize, i: usize, t: usize, ins: usize) -> usize {
    blocked_index_by(o, i, t, ins, BLOCK)
}

/// Where [`blocked_filters_by`] puts that weight with blocks of `block` channels.
fn blocked_index_by(o: usize, i: usize, t: usize, ins: usize, block: usize) -> usize {
    ((o / block * ins + i) * TAPS + t) * block + o % block
}

/// `out[b][p] = Σ_(i, t) filters[i][t][b] · padded[i·plane + p + offsets[t]]` for one block of
/// 8 output channels: `padded` holds the source planes (`plane` values apart per channel),
/// `out` 8 wide planes of `wide` values.
#[multiversion(targets = "simd")]
fn correlate_block(
    padded: &[f32],
    plane: usize,
    offsets: [usize; TAPS],
    filters: &[f32],
    out: &mut [f32],
    wide: usize,
) {
    for step in 0..wide / LANES {
        let p = step * LANES;
        let mut acc = [[0.0f32; LANES]; BLOCK];
        for (c, taps) in filters.chunks_exact(TAPS * BLOCK).enumerate() {
            // The rest of the buffer from the channel's planes on: a step's farthest taps may
            // read past them (into the next channel or the slack), for outputs that are dropped.
            let source = &padded[c * plane..];
            for (&offset, weights) in offsets.iter().zip(taps.chunks_exact(BLOCK)) {
                let weights = weights.first_chunk().expect("blocks of 8 weights");
                multiply_add_block(&mut acc, lanes(&source[p + offset..]), weights);
            }
        }
        for (b, acc) in acc.iter().enumerate() {
            out[b * wide + p..][..LANES].copy_from_slice(acc);
        }
    }
}

/// `acc[b] += src · w[b]` for the block's 8 channels, written out: as a loop over `b`, LLVM
/// vectorised across the channels (8 wide, with gathers) instead of along the lanes.
#[inline(always)]
fn multiply_add_block(acc: &mut [[f32; LANES]; BLOCK], src: &[f32; LANES], w: &[f32; BLOCK]) {
    let [a0, a1, a2, a3, a4, a5, a6, a7] = acc;
    multiply_add(a0, src, w[0]);
    multiply_add(a1, src, w[1]);
    multiply_add(a2, src, w[2]);
    multiply_add(a3, src, w[3]);
    multiply_add(a4, src, w[4]);
    multiply_add(a5, src, w[5]);
    multiply_add(a6, src, w[6]);
    multiply_add(a7, src, w[7]);
}

/// `acc += src · w`, lane by lane.
#[inline(always)]
fn multiply_add(acc: &mut [f32; LANES], src: &[f32; LANES], w: f32) {
    for l in 0..LANES {
        acc[l] = src[l].mul_add(w, acc[l]);
    }
}

/// `acc += a · b`, lane by lane.
#[inline(always)]
fn multiply_add_lanes(acc: &mut [f32; LANES], a: &[f32; LANES], b: &[f32; LANES]) {
    for l in 0..LANES {
        acc[l] = a[l].mul_add(b[l], acc[l]);
    }
}

/// Where one image's correlation reads and writes: each source channel `plane` values apart,
/// each tap at its offset from its output, `wide` outputs per wide plane (whole steps) in rows
/// `row_width` apart, of which each map keeps the first `out_w` per row.
struct Sweep {
    plane: usize,
    offsets: [usize; TAPS],
    wide: usize,
    row_width: usize,
    out_w: usize,
    out_plane: usize,
}

impl Sweep {
    /// A block's wide planes (`wide` values apart) narrowed into its `maps`, the first of
    /// them output channel `first`, then `post`.
    fn narrow_block(&self, wide_out: &[f32], maps: &mut [f32], first: usize, post: &Epilogue) {
        for (b, map) in maps.chunks_exact_mut(self.out_plane).enumerate() {
            narrow_rows(&wide_out[b * self.wide..], self.row_width, self.out_w, map);
            post.apply_map(map, first + b);
        }
    }

    fn of(layout: &Wide) -> Self {
        Self {
            plane: layout.padded_len(),
            offsets: layout.offsets(),
            wide: layout.wide_len(),
            row_width: layout.width,
            out_w: layout.out_w(),
            out_plane: layout.out_plane(),
        }
    }
}

/// All output maps of one image: the `padded` source planes correlated with the blocked
/// `filters`, each block's wide planes narrowed into `maps` (`outs` of them), then `post`.
fn correlate_image(
    sweep: &Sweep,
    padded: &[f32],
    filters: &[f32],
    outs: usize,
    wide_out: &mut [f32],
    maps: &mut [f32],
    post: &Epilogue,
) {
    let per_block = filters.len() / outs.div_ceil(BLOCK);
    let block_maps = BLOCK * sweep.out_plane;
    for (block, (filters, maps)) in filters
        .chunks_exact(per_block)
        .zip(maps.chunks_mut(block_maps))
        .enumerate()
    {
        correlate_block(
            padded,
            sweep.plane,
            sweep.offsets,
            filters,
            wide_out,
            sweep.wide,
        );
        sweep.narrow_block(wide_out, maps, block * BLOCK, post);
    }
}

/// `y = epilogue(conv(x, w))`.
pub(super) fn forward(x: &[f32], w: &[f32], post: &Epilogue, g: &Geometry) -> Vec<f32> {
    let layout = Wide::forward(g).expect("checked by applies");
    let filters = blocked_filters(w, g.out_channels, g.in_channels, false);
    correlate_images(
        &layout,
        x,
        g.in_channels,
        &filters,
        g.out_channels,
        g.output_len(),
        post,
    )
}

/// Whether `g`'s forward runs on [`strided_forward`]: a 3×3, stride-2 convolution from at
/// least a block of input channels, at batch ≥ the thread count (its gradients run in
/// [`super::channels_last`] from 16 input channels).
pub(super) fn strided_applies(g: &Geometry) -> bool {
    g.groups == 1
        && g.kernel == [3, 3]
        && g.stride == [2, 2]
        && g.dilation == [1, 1]
        && g.in_channels >= BLOCK
        && g.batch >= rayon::current_num_threads()
        && fused_multiply_add()
        && !crate::ops::im2col_forced()
}

/// `y = epilogue(conv(x, w))` at stride 2: each image's channels split into their four phase
/// planes ([`Phases`]), where every tap of 16 neighbouring outputs is again one 16-wide load at
/// a fixed offset, then correlated as at stride 1. (im2col's forward ran at 35–49 G
/// multiply-adds/s on seed-cnn's stride-2 layers.)
pub(super) fn strided_forward(x: &[f32], w: &[f32], post: &Epilogue, g: &Geometry) -> Vec<f32> {
    let spread = Spread::of(g).expect("checked by strided_applies");
    let sweep = spread.sweep(g);
    let padded_len = spread.image_len(g, &sweep);
    let filters = blocked_filters(w, g.out_channels, g.in_channels, false);
    let (image_in, image_out) = (g.in_channels * g.in_plane(), g.out_channels * g.out_plane());
    output::par_chunks(g.output_len(), image_out, 1, |n, maps| {
        with_scratch(padded_len + BLOCK * sweep.wide, |buf| {
            let (padded, wide_out) = buf.split_at_mut(padded_len);
            spread.spread_image(&x[n * image_in..][..image_in], g, padded);
            correlate_image(
                &sweep,
                padded,
                &filters,
                g.out_channels,
                wide_out,
                maps,
                post,
            );
        })
    })
}

/// How an image's source planes are laid out so that every tap of 16 neighbouring outputs
/// is one 16-wide load at a fixed offset: zero-padded at stride 1 ([`Wide`]), split into
/// phase planes at stride 2 ([`Phases`]).
enum Spread {
    Padded(Wide),
    Phases(Phases),
}

impl Spread {
    /// `g`'s layout, for 3×3 filters at stride 1 or 2.
    fn of(g: &Geometry) -> Option<Self> {
        if g.kernel != [3, 3] || g.dilation != [1, 1] {
            return None;
        }
        match g.stride {
            [1, 1] => Wide::forward(g).map(Self::Padded),
            [2, 2] => Some(Self::Phases(Phases::new(g))),
            _ => None,
        }
    }

    fn sweep(&self, g: &Geometry) -> Sweep {
        match self {
            Self::Padded(layout) => Sweep::of(layout),
            Self::Phases(ph) => Sweep {
                plane: ph.channel_len(),
                offsets: std::array::from_fn(|t| ph.tap_offset(g, t / 3, t % 3)),
                wide: ph.wide_len(g).next_multiple_of(LANES),
                row_width: ph.width(),
                out_w: g.out_size[1],
                out_plane: g.out_plane(),
            },
        }
    }

    /// Values of one image's spread channels (`sweep.plane` apart), with room for the last
    /// channel's farthest tap of the last step.
    fn image_len(&self, g: &Geometry, sweep: &Sweep) -> usize {
        let farthest = sweep.offsets.iter().max().copied().unwrap_or(0) + sweep.wide;
        (g.in_channels - 1) * sweep.plane + farthest.max(sweep.plane)
    }

    /// An image's channels into `out` (`image_len` values).
    fn spread_image(&self, image: &[f32], g: &Geometry, out: &mut [f32]) {
        let plane = self.channel_len();
        let (planes, slack) = out.split_at_mut(g.in_channels * plane);
        for (channel, planes) in image
            .chunks_exact(g.in_plane())
            .zip(planes.chunks_mut(plane))
        {
            match self {
                Self::Padded(layout) => layout.pad(channel, planes),
                Self::Phases(ph) => split_phases(channel, g, ph, planes),
            }
        }
        slack.fill(0.0);
    }

    fn channel_len(&self) -> usize {
        match self {
            Self::Padded(layout) => layout.padded_len(),
            Self::Phases(ph) => ph.channel_len(),
        }
    }
}

/// `dL/dx`: the output gradient correlated with the filters turned by 180°, `in` and `out`
/// swapped.
pub(super) fn input_grad(w: &[f32], dy: &[f32], g: &Geometry) -> Vec<f32> {
    let layout = Wide::input_grad(g).expect("checked by applies");
    let filters = blocked_filters(w, g.in_channels, g.out_channels, true);
    let none = Epilogue::default();
    correlate_images(
        &layout,
        dy,
        g.out_channels,
        &filters,
        g.in_channels,
        g.input_len(),
        &none,
    )
}

/// Every image's `outs` maps from its `ins` source planes, images in parallel.
fn correlate_images(
    layout: &Wide,
    sources: &[f32],
    ins: usize,
    filters: &[f32],
    outs: usize,
    len: usize,
    post: &Epilogue,
) -> Vec<f32> {
    let image_in = ins * layout.source_plane();
    let image_out = outs * layout.out_plane();
    let padded_len = ins * layout.padded_len();
    let wide_len = BLOCK * layout.wide_len();
    let sweep = Sweep::of(layout);
    output::par_chunks(len, image_out, 1, |n, maps| {
        with_scratch(padded_len + wide_len, |buf| {
            let (padded, wide_out) = buf.split_at_mut(padded_len);
            layout.pad(&sources[n * image_in..(n + 1) * image_in], padded);
            correlate_image(&sweep, padded, filters, outs, wide_out, maps, post);
        })
    })
}

/// `dL/dW`: per image, each (output channel, input channel, tap) dot product of the output
/// gradient with the input it saw; one partial sum per thread.
pub(super) fn weight_grad(x: &[f32], dy: &[f32], g: &Geometry) -> Vec<f32> {
    let layout = Wide::forward(g).expect("checked by applies");
    let (ins, outs) = (g.in_channels, g.out_channels);
    let blocks = outs.div_ceil(BLOCK);
    let (image_in, image_out) = (ins * g.in_plane(), outs * g.out_plane());
    let padded_len = ins * layout.padded_len();
    // The output gradient's wide planes, with zero planes up to a whole block.
    let grads_len = blocks * BLOCK * layout.wide_len();
    let per_thread = (g.batch / rayon::current_num_threads()).max(1);
    let parts: Vec<Vec<f32>> = (0..g.batch)
        .into_par_iter()
        .with_min_len(per_thread)
        .fold(
            || vec![0.0; blocks * ins * TAPS * BLOCK],
            |mut dw, n| {
                with_scratch(padded_len + grads_len, |buf| {
                    let (padded, grads) = buf.split_at_mut(padded_len);
                    layout.pad(&x[n * image_in..(n + 1) * image_in], padded);
                    layout.widen(&dy[n * image_out..(n + 1) * image_out], grads);
                    grads[outs * layout.wide_len()..].fill(0.0);
                    let per_block = BLOCK * layout.wide_len();
                    for (block, grads) in grads.chunks_exact(per_block).enumerate() {
                        let dw = &mut dw[block * ins * TAPS * BLOCK..][..ins * TAPS * BLOCK];
                        tap_sums(padded, &layout, grads, dw);
                    }
                });
                dw
            },
        )
        .collect();
    unblock_filters(&sum_parts(parts), outs, ins)
}

/// Steps of [`tap_sums`] per strip: the block's 8 gradient strips (16 KiB) stay in L1 while
/// every input channel and tap passes over them.
const STRIP: usize = 32;

/// `dw[i][t][b] += Σ_p grads[b][p] · padded[i][p + offsets[t]]` for one block of 8 output
/// channels: strip by strip, per input channel and tap, the block's 8 sums in registers, each
/// step one load of the source and 8 of the gradients. (Summing a kernel row's 3 taps at once
/// instead spilled registers and built the shifted windows from permutes, at a third of the
/// speed.)
#[multiversion(targets = "simd")]
fn tap_sums(padded: &[f32], layout: &Wide, grads: &[f32], dw: &mut [f32]) {
    let steps = layout.wide_len() / LANES;
    for first in (0..steps).step_by(STRIP) {
        let strip = first..(first + STRIP).min(steps);
        strip_sums(padded, layout, grads, dw, strip);
    }
}

/// [`tap_sums`] over the steps `strip`.
#[inline(always)]
fn strip_sums(
    padded: &[f32],
    layout: &Wide,
    grads: &[f32],
    dw: &mut [f32],
    strip: std::ops::Range<usize>,
) {
    let wide = layout.wide_len();
    for (source, dw) in padded
        .chunks_exact(layout.padded_len())
        .zip(dw.chunks_exact_mut(TAPS * BLOCK))
    {
        for (&offset, dw) in layout.offsets().iter().zip(dw.chunks_exact_mut(BLOCK)) {
            let mut acc = [[0.0f32; LANES]; BLOCK];
            for step in strip.clone() {
                let p = step * LANES;
                let src = lanes(&source[p + offset..]);
                let grad = |b: usize| lanes(&grads[b * wide + p..]);
                let [a0, a1, a2, a3, a4, a5, a6, a7] = &mut acc;
                multiply_add_lanes(a0, grad(0), src);
                multiply_add_lanes(a1, grad(1), src);
                multiply_add_lanes(a2, grad(2), src);
                multiply_add_lanes(a3, grad(3), src);
                multiply_add_lanes(a4, grad(4), src);
                multiply_add_lanes(a5, grad(5), src);
                multiply_add_lanes(a6, grad(6), src);
                multiply_add_lanes(a7, grad(7), src);
            }
            for (d, acc) in dw.iter_mut().zip(&acc) {
                *d += acc.iter().sum::<f32>();
            }
        }
    }
}

/// The inverse of [`blocked_filters`] (not turned): `[out][in][3][3]`.
fn unblock_filters(packed: &[f32], outs: usize, ins: usize) -> Vec<f32> {
    let mut w = vec![0.0; outs * ins * TAPS];
    for o in 0..outs {
        for i in 0..ins {
            for t in 0..TAPS {
                w[(o * ins + i) * TAPS + t] = packed[blocked_index(o, i, t, ins)];
            }
        }
    }
    w
}
