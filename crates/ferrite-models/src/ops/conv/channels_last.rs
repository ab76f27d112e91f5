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
        let [rows, cols] = self.inside(g);
        self.zero_padding(g, out);
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

    /// Zeros in every pixel of `out` outside the input's rows and columns.
    fn zero_padding(&self, g: &Geometry, out: &mut [f32]) {
        let [rows, cols] = self.inside(g);
        let (row_len, c) = (self.cols * self.channels, self.channels);
        let (top, bottom) = (g.pad[0] * row_len, (g.pad[0] + rows) * row_len);
        out[..top].fill(0.0);
        out[bottom..].fill(0.0);
        for row in out[top..bottom].chunks_exact_mut(row_len) {
            row[..g.pad[1] * c].fill(0.0);
            row[(g.pad[1] + cols) * c..].fill(0.0);
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

/// `out[x·stride + c] = planes[c][first + x]` for `x < cols`: one row of 16 channels turned
/// channels-last (16×16 blocks transposed in registers where the CPU has AVX-512).
fn to_channels_last(
    planes: &[&[f32]; LANES],
    first: usize,
    cols: usize,
    out: &mut [f32],
    stride: usize,
) {
    #[cfg(target_arch = "x86_64")]
    if avx512::available() {
        for x in (0..cols).step_by(LANES) {
            let n = LANES.min(cols - x);
            avx512::planes_to_pixels(planes, first + x, n, &mut out[x * stride..], stride);
        }
        return;
    }
    to_channels_last_scalar(planes, first, cols, out, stride);
}

/// [`to_channels_last`] value by value: CPUs without AVX-512.
fn to_channels_last_scalar(
    planes: &[&[f32]; LANES],
    first: usize,
    cols: usize,
    out: &mut [f32],
    stride: usize,
) {
    for x in 0..cols {
        for (c, plane) in planes.iter().enumerate() {
            out[x * stride + c] = plane[first + x];
        }
    }
}

/// The inverse of [`to_channels_last`]: `planes[c][first + x] = row[x·stride + c]`.
fn from_channels_last(
    row: &[f32],
    cols: usize,
    stride: usize,
    planes: &mut [&mut [f32]; LANES],
    first: usize,
) {
    #[cfg(target_arch = "x86_64")]
    if avx512::available() {
        for x in (0..cols).step_by(LANES) {
            let n = LANES.min(cols - x);
            avx512::pixels_to_planes(&row[x * stride..], stride, n, planes, first + x);
        }
        return;
    }
    from_channels_last_scalar(row, cols, stride, planes, first);
}

/// [`from_channels_last`] value by value: CPUs without AVX-512.
fn from_channels_last_scalar(
    row: &[f32],
    cols: usize,
    stride: usize,
    planes: &mut [&mut [f32]; LANES],
    first: usize,
) {
    for x in 0..cols {
        for (c, plane) in planes.iter_mut().enumerate() {
            plane[first + x] = row[x * stride + c];
        }
    }
}

/// 16 pixels × 16 channels transposed in AVX-512 registers: the element-by-element loops
/// compiled to scalar moves, 9 % of seed-cnn's training step.
#[cfg(target_arch = "x86_64")]
mod avx512 {
    use std::arch::x86_64::{
        __m512, __mmask16, _mm512_castpd_ps, _mm512_castps_pd, _mm512_loadu_ps,
        _mm512_mask_storeu_ps, _mm512_maskz_loadu_ps, _mm512_setzero_ps, _mm512_shuffle_f32x4,
        _mm512_storeu_ps, _mm512_unpackhi_pd, _mm512_unpackhi_ps, _mm512_unpacklo_pd,
        _mm512_unpacklo_ps,
    };

    use super::LANES;

    pub(super) use crate::ops::conv::has_avx512f as available;

    fn mask(n: usize) -> __mmask16 {
        ((1u32 << n) - 1) as __mmask16
    }

    /// `out[i·stride..][..16] = (planes[c][at + i] for c)` for the `n ≤ 16` pixels `i < n`.
    pub(super) fn planes_to_pixels(
        planes: &[&[f32]; LANES],
        at: usize,
        n: usize,
        out: &mut [f32],
        stride: usize,
    ) {
        assert!(
            (1..=LANES).contains(&n)
                && planes.iter().all(|p| p.len() >= at + n)
                && out.len() >= (n - 1) * stride + LANES
                && available(),
            "a block inside its planes and output"
        );
        // SAFETY: AVX-512F is present, and the block lies inside the slices (asserted).
        unsafe { planes_to_pixels_unchecked(planes, at, n, out, stride) }
    }

    /// [`planes_to_pixels`] without its checks.
    #[target_feature(enable = "avx512f")]
    unsafe fn planes_to_pixels_unchecked(
        planes: &[&[f32]; LANES],
        at: usize,
        n: usize,
        out: &mut [f32],
        stride: usize,
    ) {
        let mut rows = [_mm512_setzero_ps(); LANES];
        for (row, plane) in rows.iter_mut().zip(planes) {
            // SAFETY: `n` values of the plane from `at` (the caller's checks); masked past them.
            *row = unsafe { _mm512_maskz_loadu_ps(mask(n), plane.as_ptr().add(at)) };
        }
        for (i, pixel) in transpose(rows).iter().take(n).enumerate() {
            // SAFETY: 16 values of `out` from `i·stride`, `i < n` (the caller's checks).
            unsafe { _mm512_storeu_ps(out.as_mut_ptr().add(i * stride), *pixel) };
        }
    }

    /// `planes[c][at + i] = row[i·stride + c]` for the `n ≤ 16` pixels `i < n`.
    pub(super) fn pixels_to_planes(
        row: &[f32],
        stride: usize,
        n: usize,
        planes: &mut [&mut [f32]; LANES],
        at: usize,
    ) {
        assert!(
            (1..=LANES).contains(&n)
                && row.len() >= (n - 1) * stride + LANES
                && planes.iter().all(|p| p.len() >= at + n)
                && available(),
            "a block inside its row and planes"
        );
        // SAFETY: AVX-512F is present, and the block lies inside the slices (asserted).
        unsafe { pixels_to_planes_unchecked(row, stride, n, planes, at) }
    }

    /// [`pixels_to_planes`] without its checks.
    #[target_feature(enable = "avx512f")]
    unsafe fn pixels_to_planes_unchecked(
        row: &[f32],
        stride: usize,
        n: usize,
        planes: &mut [&mut [f32]; LANES],
        at: usize,
    ) {
        let mut pixels = [_mm512_setzero_ps(); LANES];
        for (i, pixel) in pixels.iter_mut().take(n).enumerate() {
            // SAFETY: 16 values of `row` from `i·stride`, `i < n` (the caller's checks).
            *pixel = unsafe { _mm512_loadu_ps(row.as_ptr().add(i * stride)) };
        }
        for (plane, channel) in planes.iter_mut().zip(transpose(pixels)) {
            // SAFETY: `n` values of the plane from `at` (the caller's checks); masked past them.
            unsafe { _mm512_mask_storeu_ps(plane.as_mut_ptr().add(at), mask(n), channel) };
        }
    }

    /// `out[j][i] = rows[i][j]`: pairs of 32-bit values interleaved, then pairs of 64-bit
    /// ones, then 128-bit lanes gathered in two rounds.
    #[inline]
    #[target_feature(enable = "avx512f")]
    fn transpose(r: [__m512; LANES]) -> [__m512; LANES] {
        // t[2m], t[2m + 1]: rows 2m and 2m + 1 interleaved, low and high halves of each lane.
        let mut t = [_mm512_setzero_ps(); LANES];
        for m in 0..LANES / 2 {
            t[2 * m] = _mm512_unpacklo_ps(r[2 * m], r[2 * m + 1]);
            t[2 * m + 1] = _mm512_unpackhi_ps(r[2 * m], r[2 * m + 1]);
        }
        // u[4g + k] holds, in 128-bit lane l, rows 4g..4g + 4 of column 4l + k.
        let mut u = [_mm512_setzero_ps(); LANES];
        for g in 0..4 {
            for k in 0..4 {
                let a = _mm512_castps_pd(t[4 * g + k / 2]);
                let b = _mm512_castps_pd(t[4 * g + 2 + k / 2]);
                u[4 * g + k] = _mm512_castpd_ps(if k % 2 == 0 {
                    _mm512_unpacklo_pd(a, b)
                } else {
                    _mm512_unpackhi_pd(a, b)
                });
            }
        }
        // Column 4l + k: lane l of u[k], u[4 + k], u[8 + k], u[12 + k].
        let mut out = [_mm512_setzero_ps(); LANES];
        for k in 0..4 {
            let even_low = _mm512_shuffle_f32x4::<0x88>(u[k], u[4 + k]);
            let odd_low = _mm512_shuffle_f32x4::<0xdd>(u[k], u[4 + k]);
            let even_high = _mm512_shuffle_f32x4::<0x88>(u[8 + k], u[12 + k]);
            let odd_high = _mm512_shuffle_f32x4::<0xdd>(u[8 + k], u[12 + k]);
            out[k] = _mm512_shuffle_f32x4::<0x88>(even_low, even_high);
            out[4 + k] = _mm512_shuffle_f32x4::<0x88>(odd_low, odd_high);
            out[8 + k] = _mm512_shuffle_f32x4::<0xdd>(even_low, even_high);
            out[12 + k] = _mm512_shuffle_f32x4::<0xdd>(odd_low, odd_high);
        }
        out
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

#[cfg(test)]
mod tests {
    use super::*;

    /// 16 planes of `len` distinct values.
    fn planes(len: usize) -> Vec<Vec<f32>> {
        (0..LANES)
            .map(|c| (0..len).map(|x| (c * 1000 + x) as f32).collect())
            .collect()
    }

    #[test]
    fn both_ways_match_the_scalar_loops() {
        // One whole block of 16 pixels and a masked one of 5, from column 3, into a row of
        // pixels 32 values apart (a second block of channels between them).
        let (first, cols, stride) = (3, 21, 32);
        let sources = planes(first + cols);
        let refs: Vec<&[f32]> = sources.iter().map(Vec::as_slice).collect();
        let refs: &[&[f32]; LANES] = refs.as_slice().try_into().expect("16 planes");
        let mut fast = vec![-1.0; cols * stride];
        let mut slow = fast.clone();
        to_channels_last(refs, first, cols, &mut fast, stride);
        to_channels_last_scalar(refs, first, cols, &mut slow, stride);
        assert_eq!(fast, slow);
        assert_eq!(slow[20 * stride + 7], (7 * 1000 + first + 20) as f32);

        let mut back = vec![vec![-1.0; first + cols]; LANES];
        let mut back_slow = back.clone();
        for (out, scalar) in [(&mut back, false), (&mut back_slow, true)] {
            let mut outs: Vec<&mut [f32]> = out.iter_mut().map(Vec::as_mut_slice).collect();
            let outs: &mut [&mut [f32]; LANES] = outs.as_mut_slice().try_into().expect("16 planes");
            match scalar {
                false => from_channels_last(&slow, cols, stride, outs, first),
                true => from_channels_last_scalar(&slow, cols, stride, outs, first),
            }
        }
        assert_eq!(back, back_slow);
        for (plane, source) in back.iter().zip(&sources) {
            assert_eq!(
                plane[first..],
                source[first..],
                "the round trip restores the rows"
            );
            assert!(
                plane[..first].iter().all(|&v| v == -1.0),
                "columns before are kept"
            );
        }
    }
}
