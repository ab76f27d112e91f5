//! Both gradients of dense 3×3 convolutions (any stride, padding and dilation) from multiples
//! of 16 input channels, in a channels-last layout, at batch ≥ the thread count.
//!
//! Each image's input (for the weight gradient) or input gradient (being summed) is held
//! zero-padded and channels last, so that the 16 input channels of one pixel are one vector:
//!
//! - weight gradient, `dW[o][c][tap] = Σ_p dY[o][p] · X[pixel(p, tap)][c]`: for every output
//!   position the 9 taps' pixels are loaded once and multiplied by 3 output channels' gradient
//!   values, broadcast; the 27 vectors of sums stay in registers across all positions.
//! - input gradient, `dX[pixel(p, tap)][c] += Σ_o W[o][c][tap] · dY[o][p]`: for 3 neighbouring
//!   output positions the 9 taps' sums stay in registers while every output channel's 9 filter
//!   vectors are loaded once for all three, then they are added onto their pixels.
//!
//! Either way 9 vector loads feed 27 multiply-adds.
//!
//! Why: with the positions along the vector lanes (im2col's product, the direct kernels) both
//! operands of every multiply-add are vector loads, and this CPU (Zen 4) loads about one
//! 512-bit vector per cycle, as many as it multiplies; unaligned taps cost two. im2col also
//! copied every input value once per tap, which `gemm` packed again, and its input gradient was
//! a product of only `out_channels` deep followed by col2im's scatter.

use multiversion::multiversion;
use rayon::prelude::*;

use super::kernels::{Geometry, sum_parts};
use super::wide::{LANES, TAPS, lanes};
use crate::ops::output;
use crate::ops::scratch::with_scratch;

/// Output channels (weight gradient) or output positions (input gradient) per tile: with the
/// 9 taps, 27 vectors of sums in registers.
const TILE: usize = 3;

/// Whether `g`'s gradients run here.
pub(super) fn applies(g: &Geometry) -> bool {
    g.groups == 1
        && g.kernel == [3, 3]
        && g.in_channels.is_multiple_of(LANES)
        && g.batch >= rayon::current_num_threads()
        && super::direct::fused_multiply_add()
        && !crate::ops::im2col_forced()
}

/// One image zero-padded, channels last: every pixel any tap of any output reads.
#[derive(Debug, Clone, Copy)]
struct ChannelsLast {
    rows: usize,
    cols: usize,
    channels: usize,
}

impl ChannelsLast {
    fn new(g: &Geometry) -> Self {
        let span = |axis: usize| (g.out_size[axis] - 1) * g.stride[axis] + 2 * g.dilation[axis] + 1;
        Self {
            rows: span(0),
            cols: span(1),
            channels: g.in_channels,
        }
    }

    fn len(&self) -> usize {
        self.rows * self.cols * self.channels
    }

    /// Where each tap's pixel lies from its output's first tap.
    fn offsets(&self, g: &Geometry) -> [usize; TAPS] {
        std::array::from_fn(|t| {
            let (ky, kx) = (t / 3 * g.dilation[0], t % 3 * g.dilation[1]);
            (ky * self.cols + kx) * self.channels
        })
    }

    /// Where output `(oy, ox)`'s first tap lies.
    #[inline(always)]
    fn origin(&self, g: &Geometry, oy: usize, ox: usize) -> usize {
        (oy * g.stride[0] * self.cols + ox * g.stride[1]) * self.channels
    }

    /// The input rows and columns inside the layout (those past it no tap reads).
    fn inside(&self, g: &Geometry) -> [usize; 2] {
        let [in_h, in_w] = g.in_size;
        [
            in_h.min(self.rows.saturating_sub(g.pad[0])),
            in_w.min(self.cols.saturating_sub(g.pad[1])),
        ]
    }

    /// Where input row `y` starts.
    fn row_start(&self, g: &Geometry, y: usize) -> usize {
        ((y + g.pad[0]) * self.cols + g.pad[1]) * self.channels
    }

    /// `image` (`[channels][in_h][in_w]`) into `out`, padding zeroed.
    fn fill(&self, image: &[f32], g: &Geometry, out: &mut [f32]) {
        out.fill(0.0);
        let [rows, cols] = self.inside(g);
        let planes: Vec<&[f32]> = image.chunks_exact(g.in_plane()).collect();
        for y in 0..rows {
            let row = &mut out[self.row_start(g, y)..];
            for (block, planes) in planes.chunks_exact(LANES).enumerate() {
                let planes: &[&[f32]; LANES] = planes.try_into().expect("16 planes");
                let out = &mut row[block * LANES..];
                to_channels_last(planes, y * g.in_size[1], cols, out, self.channels);
            }
        }
    }

    /// The inverse of [`Self::fill`]: `layout`'s pixels into `image` (`[channels][in_h][in_w]`,
    /// zeroed), padding dropped.
    fn drain(&self, layout: &[f32], g: &Geometry, image: &mut [f32]) {
        let [rows, cols] = self.inside(g);
        let mut planes: Vec<&mut [f32]> = image.chunks_exact_mut(g.in_plane()).collect();
        for y in 0..rows {
            let row = &layout[self.row_start(g, y)..];
            for (block, planes) in planes.chunks_exact_mut(LANES).enumerate() {
                let planes: &mut [&mut [f32]; LANES] = planes.try_into().expect("16 planes");
                let row = &row[block * LANES..];
                from_channels_last(row, cols, self.channels, planes, y * g.in_size[1]);
            }
        }
    }
}

/// `out[x·stride + c] = planes[c][first + x]` for `x < cols`: one row of 16 channels turned channels-last, 16 pixels at a time so that the
/// moves compile to register shuffles.
#[multiversion(targets = "simd")]
fn to_channels_last(
    planes: &[&[f32]; LANES],
    first: usize,
    cols: usize,
    out: &mut [f32],
    stride: usize,
) {
    let mut x = 0;
    while x + LANES <= cols {
        let block: [&[f32; LANES]; LANES] = std::array::from_fn(|c| lanes(&planes[c][first + x..]));
        for i in 0..LANES {
            let pixel: &mut [f32; LANES] = (&mut out[(x + i) * stride..][..LANES])
                .try_into()
                .expect("16 channels");
            for c in 0..LANES {
                pixel[c] = block[c][i];
            }
        }
        x += LANES;
    }
    for x in x..cols {
        for (c, plane) in planes.iter().enumerate() {
            out[x * stride + c] = plane[first + x];
        }
    }
}

/// The inverse of [`to_channels_last`]: `planes[c][first + x] = row[x·stride + c]`.
#[multiversion(targets = "simd")]
fn from_channels_last(
    row: &[f32],
    cols: usize,
    stride: usize,
    planes: &mut [&mut [f32]; LANES],
    first: usize,
) {
    let mut x = 0;
    while x + LANES <= cols {
        let block: [&[f32; LANES]; LANES] =
            std::array::from_fn(|i| lanes(&row[(x + i) * stride..]));
        for (c, plane) in planes.iter_mut().enumerate() {
            let out: &mut [f32; LANES] = (&mut plane[first + x..][..LANES])
                .try_into()
                .expect("16 pixels");
            for i in 0..LANES {
                out[i] = block[i][c];
            }
        }
        x += LANES;
    }
    for x in x..cols {
        for (c, plane) in planes.iter_mut().enumerate() {
            plane[first + x] = row[x * stride + c];
        }
    }
}

/// `dL/dW` (`[out][in][3][3]`): images split over the threads, each summing into its own
/// `[out][tap][in]` gradient.
pub(super) fn weight_grad(x: &[f32], dy: &[f32], g: &Geometry) -> Vec<f32> {
    let layout = ChannelsLast::new(g);
    let (ins, outs) = (g.in_channels, g.out_channels);
    let (image_in, image_out) = (ins * g.in_plane(), outs * g.out_plane());
    let per_thread = (g.batch / rayon::current_num_threads()).max(1);
    let parts: Vec<Vec<f32>> = (0..g.batch)
        .into_par_iter()
        .with_min_len(per_thread)
        .fold(
            || vec![0.0; outs * TAPS * ins],
            |mut dw, n| {
                with_scratch(layout.len(), |image| {
                    layout.fill(&x[n * image_in..][..image_in], g, image);
                    let dy = &dy[n * image_out..][..image_out];
                    weight_sums(image, &layout, dy, g, &mut dw);
                });
                dw
            },
        )
        .collect();
    let by_tap = sum_parts(parts);
    let mut dw = vec![0.0; outs * ins * TAPS];
    for o in 0..outs {
        for t in 0..TAPS {
            for c in 0..ins {
                dw[(o * ins + c) * TAPS + t] = by_tap[(o * TAPS + t) * ins + c];
            }
        }
    }
    dw
}

/// Adds one image's products into `dw` (`[out][tap][in]`), per block of 16 input channels and
/// tile of output channels.
#[multiversion(targets = "simd")]
fn weight_sums(image: &[f32], layout: &ChannelsLast, dy: &[f32], g: &Geometry, dw: &mut [f32]) {
    for c0 in (0..g.in_channels).step_by(LANES) {
        let mut o0 = 0;
        while o0 + TILE <= g.out_channels {
            weight_tile::<TILE>(image, layout, dy, g, o0, c0, dw);
            o0 += TILE;
        }
        match g.out_channels - o0 {
            2 => weight_tile::<2>(image, layout, dy, g, o0, c0, dw),
            1 => weight_tile::<1>(image, layout, dy, g, o0, c0, dw),
            _ => {}
        }
    }
}

/// The sums of output channels `o0..o0 + R` with input channels `c0..c0 + 16`, all taps, over
/// every output position, added into `dw`.
#[inline(always)]
fn weight_tile<const R: usize>(
    image: &[f32],
    layout: &ChannelsLast,
    dy: &[f32],
    g: &Geometry,
    o0: usize,
    c0: usize,
    dw: &mut [f32],
) {
    let [out_h, out_w] = g.out_size;
    let plane = g.out_plane();
    let grads: [&[f32]; R] = std::array::from_fn(|r| &dy[(o0 + r) * plane..][..plane]);
    let offsets = layout.offsets(g);
    let mut acc = [[[0.0f32; LANES]; TAPS]; R];
    for oy in 0..out_h {
        for ox in 0..out_w {
            let p = oy * out_w + ox;
            let d: [f32; R] = std::array::from_fn(|r| grads[r][p]);
            let origin = layout.origin(g, oy, ox) + c0;
            for (t, &offset) in offsets.iter().enumerate() {
                let pixel = lanes(&image[origin + offset..]);
                for r in 0..R {
                    multiply_add(&mut acc[r][t], pixel, d[r]);
                }
            }
        }
    }
    let ins = g.in_channels;
    for (r, acc) in acc.iter().enumerate() {
        for (t, acc) in acc.iter().enumerate() {
            add_lanes(&mut dw[((o0 + r) * TAPS + t) * ins + c0..], acc);
        }
    }
}

/// `dL/dx`: per image, the output gradient spread back over the padded channels-last input,
/// then turned into planes.
pub(super) fn input_grad(w: &[f32], dy: &[f32], g: &Geometry) -> Vec<f32> {
    let layout = ChannelsLast::new(g);
    let filters = filters_by_channel_block(w, g);
    let (image_in, image_out) = (g.in_channels * g.in_plane(), g.out_channels * g.out_plane());
    output::par_chunks(g.input_len(), image_in, 1, |n, dx| {
        with_scratch(layout.len(), |spread| {
            spread.fill(0.0);
            let dy = &dy[n * image_out..][..image_out];
            input_sums(spread, &layout, &filters, dy, g);
            layout.drain(spread, g, dx);
        })
    })
}

/// Filters `[out][in][3][3]` regrouped `[in / 16][out][tap][16]`: per block of 16 input
/// channels, each (output channel, tap)'s 16 weights side by side.
fn filters_by_channel_block(w: &[f32], g: &Geometry) -> Vec<f32> {
    let (ins, outs) = (g.in_channels, g.out_channels);
    let mut blocked = vec![0.0; w.len()];
    for o in 0..outs {
        for c in 0..ins {
            for t in 0..TAPS {
                let at = (((c / LANES) * outs + o) * TAPS + t) * LANES + c % LANES;
                blocked[at] = w[(o * ins + c) * TAPS + t];
            }
        }
    }
    blocked
}

/// Adds every output position's products onto its taps' pixels of `spread`, per block of 16
/// input channels and tile of neighbouring positions.
#[multiversion(targets = "simd")]
fn input_sums(
    spread: &mut [f32],
    layout: &ChannelsLast,
    filters: &[f32],
    dy: &[f32],
    g: &Geometry,
) {
    let [out_h, out_w] = g.out_size;
    let block_len = g.out_channels * TAPS * LANES;
    for (block, filters) in filters.chunks_exact(block_len).enumerate() {
        for oy in 0..out_h {
            let mut ox = 0;
            while ox + TILE <= out_w {
                input_tile::<TILE>(spread, layout, filters, dy, g, [oy, ox], block);
                ox += TILE;
            }
            match out_w - ox {
                2 => input_tile::<2>(spread, layout, filters, dy, g, [oy, ox], block),
                1 => input_tile::<1>(spread, layout, filters, dy, g, [oy, ox], block),
                _ => {}
            }
        }
    }
}

/// The products of output positions `(oy, ox..ox + P)` for input channel block `block`, summed
/// over all output channels, added onto their taps' pixels.
#[inline(always)]
fn input_tile<const P: usize>(
    spread: &mut [f32],
    layout: &ChannelsLast,
    filters: &[f32],
    dy: &[f32],
    g: &Geometry,
    [oy, ox]: [usize; 2],
    block: usize,
) {
    let plane = g.out_plane();
    let first = oy * g.out_size[1] + ox;
    let mut acc = [[[0.0f32; LANES]; TAPS]; P];
    for (o, taps) in filters.chunks_exact(TAPS * LANES).enumerate() {
        let d: &[f32; P] = dy[o * plane + first..]
            .first_chunk()
            .expect("positions inside the map");
        for (t, weights) in taps.chunks_exact(LANES).enumerate() {
            let weights = lanes(weights);
            for q in 0..P {
                multiply_add(&mut acc[q][t], weights, d[q]);
            }
        }
    }
    let offsets = layout.offsets(g);
    for (q, acc) in acc.iter().enumerate() {
        let origin = layout.origin(g, oy, ox + q) + block * LANES;
        for (&offset, acc) in offsets.iter().zip(acc) {
            add_lanes(&mut spread[origin + offset..], acc);
        }
    }
}

/// `acc += src · w`, lane by lane.
#[inline(always)]
fn multiply_add(acc: &mut [f32; LANES], src: &[f32; LANES], w: f32) {
    for l in 0..LANES {
        acc[l] = src[l].mul_add(w, acc[l]);
    }
}

/// `dst[..16] += values`.
#[inline(always)]
fn add_lanes(dst: &mut [f32], values: &[f32; LANES]) {
    let dst: &mut [f32; LANES] = dst.first_chunk_mut().expect("16 values");
    for l in 0..LANES {
        dst[l] += values[l];
    }
}
