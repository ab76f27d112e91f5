//! Convolution on plain `f32` slices in NCHW order: forward, input gradient, weight gradient
//! and bias gradient.
//!
//! Dense convolutions are im2col + one matrix product per image (`gemm`, the crate burn-flex
//! itself multiplies with): the forward is `W · cols`, the weight gradient `dY · colsᵀ` summed
//! over the batch, the input gradient `Wᵀ · dY` scattered back by col2im. The column matrix
//! is built from zero-padded, stride-split copies of each channel ([`Phases`]), one contiguous
//! copy per row. A 1×1 stride-1 convolution needs no im2col at all: the image already is its
//! column matrix.
//!
//! Work is split over images (or channels) across rayon's threads, with one single-threaded
//! matrix product each. A batch smaller than the thread count (batch-1 inference) splits each
//! image's forward over the threads by bands of output rows or by output channels while a pool
//! thread spins, or lets `gemm` use the threads for large products. Everything here is safe
//! code except the one `gemm` call, whose bounds
//! [`gemm_into`] checks first.

use gemm::Parallelism;
use std::ops::Range;

use multiversion::multiversion;
use rayon::prelude::*;

use crate::ops::scratch::with_scratch;
use crate::ops::{
    Precision, affine_in_place, deinterleave, every_nth, interleave, lane_sum, min_items, output,
    precision,
};

/// Shapes, strides and padding of one 2-D convolution.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Geometry {
    pub batch: usize,
    pub in_channels: usize,
    pub in_size: [usize; 2],
    pub out_channels: usize,
    pub kernel: [usize; 2],
    pub stride: [usize; 2],
    /// Padding before the first row / column (the padding after is implied by `out_size`).
    pub pad: [usize; 2],
    pub dilation: [usize; 2],
    pub out_size: [usize; 2],
    /// 1 (dense) or `in_channels` (depthwise).
    pub groups: usize,
}

impl Geometry {
    pub fn is_depthwise(&self) -> bool {
        self.groups > 1
    }

    pub(super) fn in_plane(&self) -> usize {
        self.in_size[0] * self.in_size[1]
    }

    pub(super) fn out_plane(&self) -> usize {
        self.out_size[0] * self.out_size[1]
    }

    pub(super) fn kernel_area(&self) -> usize {
        self.kernel[0] * self.kernel[1]
    }

    /// Rows of a dense convolution's column matrix: one per (input channel, kernel tap).
    fn patch_len(&self) -> usize {
        self.in_channels * self.kernel_area()
    }

    pub fn input_len(&self) -> usize {
        self.batch * self.in_channels * self.in_plane()
    }

    /// Multiply-adds of the forward pass (each gradient costs the same).
    fn macs(&self) -> usize {
        self.output_len() * self.patch_len()
    }

    pub fn output_len(&self) -> usize {
        self.batch * self.out_channels * self.out_plane()
    }

    /// A 1×1, stride-1, unpadded convolution: a plain matrix product per image.
    pub(super) fn is_pointwise(&self) -> bool {
        self.kernel == [1, 1] && self.stride == [1, 1] && self.pad == [0, 0]
    }

    /// Output positions `o` of one axis whose input `o·stride + offset` lies inside the image,
    /// for the kernel tap `tap`.
    pub(super) fn valid(&self, axis: usize, tap: usize) -> (usize, usize, isize) {
        let offset = (tap * self.dilation[axis]) as isize - self.pad[axis] as isize;
        let stride = self.stride[axis] as isize;
        let size = self.in_size[axis] as isize;
        let first = if offset >= 0 {
            0
        } else {
            (-offset + stride - 1) / stride
        };
        let end = if size - offset <= 0 {
            0
        } else {
            (size - offset + stride - 1) / stride
        };
        let end = (end as usize).min(self.out_size[axis]);
        ((first as usize).min(end), end, offset)
    }
}

/// A row-major or transposed view of a matrix inside a slice.
#[derive(Clone, Copy)]
pub(super) struct Mat<'a> {
    data: &'a [f32],
    rows: usize,
    cols: usize,
    row_stride: usize,
    col_stride: usize,
}

impl<'a> Mat<'a> {
    pub(super) fn rows(data: &'a [f32], rows: usize, cols: usize) -> Self {
        Self {
            data,
            rows,
            cols,
            row_stride: cols,
            col_stride: 1,
        }
    }

    /// `rows × cols` with rows `row_stride` apart.
    pub(super) fn strided(data: &'a [f32], rows: usize, cols: usize, row_stride: usize) -> Self {
        Self {
            row_stride,
            ..Self::rows(data, rows, cols)
        }
    }

    pub(super) fn t(self) -> Self {
        Self {
            rows: self.cols,
            cols: self.rows,
            row_stride: self.col_stride,
            col_stride: self.row_stride,
            ..self
        }
    }

    pub(super) fn height(&self) -> usize {
        self.rows
    }

    pub(super) fn width(&self) -> usize {
        self.cols
    }

    pub(super) fn col_stride(&self) -> usize {
        self.col_stride
    }

    /// Element `(i, j)`.
    #[inline(always)]
    pub(super) fn at(&self, i: usize, j: usize) -> f32 {
        self.data[i * self.row_stride + j * self.col_stride]
    }

    /// `len` values of row `i` from column `j`, when columns are adjacent (`col_stride == 1`).
    #[inline(always)]
    pub(super) fn row_slice(&self, i: usize, j: usize, len: usize) -> &'a [f32] {
        debug_assert_eq!(self.col_stride, 1);
        &self.data[i * self.row_stride + j..][..len]
    }

    /// `len` values of column `j` from row `i`, when rows are adjacent (`row_stride == 1`).
    #[inline(always)]
    pub(super) fn col_slice(&self, j: usize, i: usize, len: usize) -> &'a [f32] {
        debug_assert_eq!(self.row_stride, 1);
        &self.data[j * self.col_stride + i..][..len]
    }

    pub(super) fn row_stride(&self) -> usize {
        self.row_stride
    }

    fn fits(&self) -> bool {
        self.rows == 0
            || self.cols == 0
            || (self.rows - 1) * self.row_stride + (self.cols - 1) * self.col_stride
                < self.data.len()
    }
}

/// `dst (row-major, a.rows × b.cols) = a · b`, or `+= a · b` when `accumulate`.
pub(super) fn gemm_into(
    dst: &mut [f32],
    a: Mat,
    b: Mat,
    accumulate: bool,
    parallelism: Parallelism,
) {
    let (m, k, n) = (a.rows, a.cols, b.cols);
    assert!(
        b.rows == k && dst.len() == m * n && a.fits() && b.fits(),
        "gemm shapes"
    );
    // SAFETY: the assertion above keeps every index the product touches inside the slices,
    // and `dst` is borrowed mutably, so it aliases neither operand.
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            dst.as_mut_ptr(),
            1,
            n as isize,
            accumulate,
            a.data.as_ptr(),
            a.col_stride as isize,
            a.row_stride as isize,
            b.data.as_ptr(),
            b.col_stride as isize,
            b.row_stride as isize,
            1.0,
            1.0,
            false,
            false,
            false,
            parallelism,
        )
    }
}

/// The left operand of products that all share it (a convolution's weights, or their
/// Winograd transforms): `f32` as it is, or rounded to bf16 and packed once for all of them.
pub(super) enum Lhs<'a> {
    F32(Mat<'a>),
    #[cfg(target_arch = "x86_64")]
    Bf16(super::bf16::Packed),
}

impl<'a> Lhs<'a> {
    /// `a`, for products with right operands of `columns` columns in all: bf16 when
    /// [`Precision::Bf16`] is asked for, the CPU has AVX-512 BF16, and each packed value is
    /// used often enough to repay its rounding and packing, which cost about as much as 256
    /// multiply-adds. Measured on one thread against `gemm`'s `f32`: 208×96×576 (DeXpression's
    /// 3×3 products) 211 against 122 G multiply-adds/s, 64×576×2304 145 against 95; but
    /// 512×4608×36 (VGG's last layers at batch 1, weights packed for 36 columns) 49 against 90.
    pub(super) fn new(a: Mat<'a>, columns: usize) -> Self {
        #[cfg(target_arch = "x86_64")]
        if columns >= 256
            && a.rows >= 32
            && precision() == Precision::Bf16
            && let Some(packed) = super::bf16::Packed::new(a)
        {
            return Self::Bf16(packed);
        }
        let _ = columns;
        Self::F32(a)
    }

    /// `dst = self · b`, or `+= self · b` when `accumulate`.
    pub(super) fn times(
        &self,
        dst: &mut [f32],
        b: Mat,
        accumulate: bool,
        parallelism: Parallelism,
    ) {
        match self {
            Self::F32(a) => gemm_into(dst, *a, b, accumulate, parallelism),
            #[cfg(target_arch = "x86_64")]
            Self::Bf16(a) => {
                assert!(
                    a.shape() == [dst.len() / b.cols.max(1), b.rows] && b.fits(),
                    "gemm shapes"
                );
                let threads = match parallelism {
                    Parallelism::Rayon(threads) => threads,
                    _ => 1,
                };
                super::bf16::gemm(dst, a, b, accumulate, threads);
            }
        }
    }
}

/// Below this many multiply-adds a product runs on one thread: waking the other threads costs
/// more than it saves (batch-1 inference of the small models is made of such products).
const PARALLEL_MACS: usize = 1 << 22;

/// How to spread `items` independent pieces of work (`macs` multiply-adds in all) over the
/// threads: in parallel, one single-threaded product each; or one after another with
/// multithreaded products; or, when small, one after another on one thread.
pub(super) fn plan(items: usize, macs: usize) -> (bool, Parallelism) {
    let threads = rayon::current_num_threads();
    if items >= threads {
        (true, Parallelism::None)
    } else if macs < PARALLEL_MACS {
        (false, Parallelism::None)
    } else {
        (false, Parallelism::Rayon(threads))
    }
}

/// Images per group, from `images` up to twice that: the fewest that keep the busiest thread's
/// share of `batch` as small as any (groups go to the threads in equal numbers). Rounding up
/// alone can leave the last group short: 64 images as 10 groups of 7 give the threads 35 and
/// 29, where 8 groups of 8 give 32 each.
pub(super) fn balanced(batch: usize, images: usize, threads: usize) -> usize {
    let busiest = |images: usize| batch.div_ceil(images).div_ceil(threads) * images;
    (images..=(2 * images).min(batch.max(1)))
        .min_by_key(|&i| busiest(i))
        .unwrap_or(images)
}

/// A dense convolution's input laid out so that each row of its column matrix is one
/// contiguous copy: each channel zero-padded and split into `stride²` phase planes (phase
/// `(a, b)` holds the padded pixels `(i·sy + a, j·sx + b)`). Kernel tap `(ky, kx)` then reads
/// output position `(oy, ox)` from phase `(ky % sy, kx % sx)` at `(oy + ky / sy, ox + kx / sx)`
/// (dilation scales the taps), so the tap's whole row is the phase plane from one offset on.
///
/// The column matrix is "wide": its rows are `out_h × width` with `width` the phase planes'
/// width, which is at least `out_w`. The extra columns of each row hold whatever the copy
/// brings along; the forward drops them, and the output gradients put zeros there so they add
/// nothing to either gradient. Before, im2col copied every (channel, tap, output row) as its own
/// short run, with zero fills at the borders: a third of seed-cnn's training step.
#[derive(Debug, Clone, Copy)]
pub(super) struct Phases {
    stride: [usize; 2],
    /// Rows and columns of one phase plane (one zero row of slack below, so the last tap's
    /// copy stays inside).
    size: [usize; 2],
}

impl Phases {
    pub(super) fn new(g: &Geometry) -> Self {
        let padded = |axis: usize| {
            let span = g.dilation[axis] * (g.kernel[axis] - 1) + 1;
            ((g.out_size[axis] - 1) * g.stride[axis] + span).max(g.pad[axis] + g.in_size[axis])
        };
        let [sy, sx] = g.stride;
        Self {
            stride: g.stride,
            size: [padded(0).div_ceil(sy) + 1, padded(1).div_ceil(sx)],
        }
    }

    fn plane_len(&self) -> usize {
        self.size[0] * self.size[1]
    }

    /// Columns of each phase plane: the row stride of the wide column matrix and output.
    pub(super) fn width(&self) -> usize {
        self.size[1]
    }

    /// One channel's phase planes.
    pub(super) fn channel_len(&self) -> usize {
        self.stride[0] * self.stride[1] * self.plane_len()
    }

    /// Columns of the wide column matrix and of the wide output.
    pub(super) fn wide_len(&self, g: &Geometry) -> usize {
        g.out_size[0] * self.size[1]
    }

    /// Where kernel tap `(ky, kx)`'s row starts in a channel's phase planes.
    pub(super) fn tap_offset(&self, g: &Geometry, ky: usize, kx: usize) -> usize {
        let [sy, sx] = self.stride;
        let (r, c) = (ky * g.dilation[0], kx * g.dilation[1]);
        ((r % sy) * sx + c % sx) * self.plane_len() + (r / sy) * self.size[1] + c / sx
    }

    /// Where input pixel `(y, x)` lies in a channel's phase planes.
    #[inline(always)]
    fn position(&self, g: &Geometry, y: usize, x: usize) -> usize {
        let [sy, sx] = self.stride;
        let (py, px) = (y + g.pad[0], x + g.pad[1]);
        ((py % sy) * sx + px % sx) * self.plane_len() + (py / sy) * self.size[1] + px / sx
    }

    /// The start of each input row's run in each column phase: row `y`'s pixels `x ≡ b (mod
    /// sx)` after padding are adjacent there.
    #[inline(always)]
    fn row_runs(self, g: &Geometry, y: usize) -> impl Iterator<Item = (usize, usize)> {
        let (sx, g) = (self.stride[1], *g);
        // The first input column of each column phase, and where it goes.
        (0..sx.min(g.in_size[1])).map(move |first| (first, self.position(&g, y, first)))
    }
}

/// `channel` (one input plane) into its zeroed phase planes `out`.
#[multiversion(targets = "simd")]
pub(super) fn split_phases(channel: &[f32], g: &Geometry, ph: &Phases, out: &mut [f32]) {
    let [_, in_w] = g.in_size;
    let sx = ph.stride[1];
    zero_outside_pixels(g, ph, out);
    for (y, row) in channel.chunks_exact(in_w).enumerate() {
        if sx == 2 && in_w >= 2 {
            // Both column phases in one pass, which vectorises.
            let (even, odd) = two_runs(out, ph.position(g, y, 0), ph.position(g, y, 1), in_w);
            deinterleave(row, even, odd);
            continue;
        }
        for (first, at) in ph.row_runs(g, y) {
            let run = &mut out[at..];
            if sx == 1 {
                run[..in_w].copy_from_slice(row);
            } else {
                every_nth(run, &row[first..], sx);
            }
        }
    }
}

/// Zeroes what [`split_phases`] leaves: in each phase plane, what lies outside the
/// rectangle the input pixels land in (padding and slack); past the planes, everything.
/// (Zeroing whole planes first was 21 % of seed-cnn's 16→16/2 forward at batch 1.)
#[inline(always)]
fn zero_outside_pixels(g: &Geometry, ph: &Phases, out: &mut [f32]) {
    let [sy, sx] = ph.stride;
    let [rows, cols] = ph.size;
    let (planes, rest) = out.split_at_mut(ph.channel_len());
    rest.fill(0.0);
    for (phase, plane) in planes.chunks_exact_mut(ph.plane_len()).enumerate() {
        let covered_rows = covered(phase / sx, sy, g.pad[0], g.in_size[0], rows);
        let covered_cols = covered(phase % sx, sx, g.pad[1], g.in_size[1], cols);
        if covered_cols.is_empty() {
            plane.fill(0.0);
            continue;
        }
        // The gaps between one row's pixels and the next's: the top rows go with the first,
        // the bottom rows with the last.
        let mut from = 0;
        for r in covered_rows {
            zero_few(&mut plane[from..r * cols + covered_cols.start]);
            from = r * cols + covered_cols.end;
        }
        zero_few(&mut plane[from..]);
    }
}

/// `values.fill(0.0)`, without a `memset` call for the one or two values most gaps hold
/// (the calls' overhead made the small fills a fifth of a stride-2 layer's time).
#[inline(always)]
fn zero_few(values: &mut [f32]) {
    match values {
        [] => {}
        [a] => *a = 0.0,
        [a, b] => [*a, *b] = [0.0; 2],
        _ => values.fill(0.0),
    }
}

/// The indices `i < n` of a phase plane's rows (or columns) whose padded position
/// `i·stride + phase` holds an input pixel, `pad ≤ position < pad + size`.
fn covered(phase: usize, stride: usize, pad: usize, size: usize, n: usize) -> Range<usize> {
    let first = |position: usize| position.saturating_sub(phase).div_ceil(stride).min(n);
    first(pad)..first(pad + size)
}

/// The runs of a row's even and odd pixels (`len` pixels in all), starting at `even` and
/// `odd` in different phase planes of `out`.
fn two_runs(out: &mut [f32], even: usize, odd: usize, len: usize) -> (&mut [f32], &mut [f32]) {
    let (evens, odds) = (len.div_ceil(2), len / 2);
    if even < odd {
        let (low, high) = out.split_at_mut(odd);
        (&mut low[even..even + evens], &mut high[..odds])
    } else {
        let (low, high) = out.split_at_mut(even);
        (&mut high[..evens], &mut low[odd..odd + odds])
    }
}

/// The adjoint of [`split_phases`]: each input pixel's value in the phase planes, back into
/// `channel` (padding dropped).
#[multiversion(targets = "simd")]
fn merge_phases(phases: &[f32], g: &Geometry, ph: &Phases, channel: &mut [f32]) {
    let [_, in_w] = g.in_size;
    let sx = ph.stride[1];
    for (y, row) in channel.chunks_exact_mut(in_w).enumerate() {
        if sx == 2 && in_w >= 2 {
            let (even, odd) = (ph.position(g, y, 0), ph.position(g, y, 1));
            let even = &phases[even..even + in_w.div_ceil(2)];
            interleave(even, &phases[odd..odd + in_w / 2], row);
            continue;
        }
        for (first, at) in ph.row_runs(g, y) {
            let run = &phases[at..];
            if sx == 1 {
                row.copy_from_slice(&run[..in_w]);
            } else {
                for (chunk, v) in row[first..].chunks_mut(sx).zip(run) {
                    chunk[0] = *v;
                }
            }
        }
    }
}

/// One image's wide column matrix `[C·KH·KW, out_h·width]`; rows in (channel, tap-y, tap-x)
/// order. `phases` is scratch of one channel's phase planes.
fn im2col(image: &[f32], g: &Geometry, ph: &Phases, phases: &mut [f32], cols: &mut [f32]) {
    let channel_rows = g.kernel_area() * ph.wide_len(g);
    let channels = image.chunks_exact(g.in_plane());
    for (channel, rows) in channels.zip(cols.chunks_exact_mut(channel_rows)) {
        split_phases(channel, g, ph, phases);
        tap_rows(phases, g, ph, 0, rows);
    }
}

/// One channel's rows of the wide column matrix (one per kernel tap), from column `first` on
/// and as long as each row of `rows` is, copied from the channel's phase planes.
fn tap_rows(planes: &[f32], g: &Geometry, ph: &Phases, first: usize, rows: &mut [f32]) {
    let len = rows.len() / g.kernel_area();
    for (t, row) in rows.chunks_exact_mut(len).enumerate() {
        let at = ph.tap_offset(g, t / g.kernel[1], t % g.kernel[1]) + first;
        row.copy_from_slice(&planes[at..][..len]);
    }
}

/// The adjoint of [`im2col`]: adds each wide column entry back onto its input pixel.
fn col2im(cols: &[f32], g: &Geometry, ph: &Phases, phases: &mut [f32], image: &mut [f32]) {
    let len = ph.wide_len(g);
    let mut rows = cols.chunks_exact(len);
    for channel in image.chunks_exact_mut(g.in_plane()) {
        phases.fill(0.0);
        for ky in 0..g.kernel[0] {
            for kx in 0..g.kernel[1] {
                let row = rows.next().expect("cols holds one row per channel and tap");
                let at = &mut phases[ph.tap_offset(g, ky, kx)..][..len];
                add_into(at, row);
            }
        }
        merge_phases(phases, g, ph, channel);
    }
}

#[multiversion(targets = "simd")]
fn add_into(acc: &mut [f32], values: &[f32]) {
    acc.iter_mut().zip(values).for_each(|(a, v)| *a += v);
}

/// `wide` (`[channels, out_h·width]`) without its extra columns, into `[channels, out_plane]`.
fn narrow(wide: &[f32], g: &Geometry, ph: &Phases, out: &mut [f32]) {
    let (width, out_w) = (ph.size[1], g.out_size[1]);
    for (from, to) in wide.chunks_exact(width).zip(out.chunks_exact_mut(out_w)) {
        to.copy_from_slice(&from[..out_w]);
    }
}

/// The adjoint of [`narrow`]: zeros in the extra columns.
pub(super) fn widen(maps: &[f32], g: &Geometry, ph: &Phases, wide: &mut [f32]) {
    let (width, out_w) = (ph.size[1], g.out_size[1]);
    for (from, to) in maps.chunks_exact(out_w).zip(wide.chunks_exact_mut(width)) {
        let (real, extra) = to.split_at_mut(out_w);
        real.copy_from_slice(from);
        extra.fill(0.0);
    }
}

/// A new output of `len` values made by `work(image_index, output_chunk, scratch,
/// parallelism)` for every image's zeroed `chunk` of it, in parallel when the batch is large
/// enough; `scratch` is `scratch_len` values of the thread's [`with_scratch`] buffer (not
/// cleared); `macs` is the work in all (see [`plan`]).
pub(super) fn per_image<F>(
    len: usize,
    chunk: usize,
    scratch_len: usize,
    macs: usize,
    work: F,
) -> Vec<f32>
where
    F: Fn(usize, &mut [f32], &mut [f32], Parallelism) + Sync + Send,
{
    let (parallel, parallelism) = plan(len / chunk.max(1), macs);
    if parallel {
        return output::par_chunks(len, chunk, 1, |n, out| {
            with_scratch(scratch_len, |s| work(n, out, s, parallelism))
        });
    }
    let mut output = vec![0.0; len];
    with_scratch(scratch_len, |scratch| {
        for (n, out) in output.chunks_mut(chunk).enumerate() {
            work(n, out, scratch, parallelism);
        }
    });
    output
}

/// `y = epilogue(conv(x, w))` for a dense (`groups == 1`) convolution.
pub fn dense_forward(x: &[f32], w: &[f32], post: &Epilogue, g: &Geometry) -> Vec<f32> {
    let (k, l) = (g.patch_len(), g.out_plane());
    let image_len = g.in_channels * g.in_plane();
    let ph = Phases::new(g);
    let wide = if g.is_pointwise() { l } else { ph.wide_len(g) };
    let weights = Lhs::new(Mat::rows(w, g.out_channels, k), g.batch * wide);
    if splits_images(g, &ph) {
        let mut y = vec![0.0; g.output_len()];
        for (n, out) in y.chunks_exact_mut(g.out_channels * l).enumerate() {
            let image = &x[n * image_len..(n + 1) * image_len];
            // Weights packed as bf16 (only chosen for products of 256 columns and more) are
            // multiplied whole, so by bands of rows.
            match &weights {
                Lhs::F32(w) if !wide_bands(g, &ph) => {
                    forward_split_by_channels(image, *w, post, g, &ph, out)
                }
                _ => forward_split_by_rows(image, &weights, post, g, &ph, out),
            }
        }
        return y;
    }
    if g.is_pointwise() {
        return per_image(
            g.output_len(),
            g.out_channels * l,
            0,
            g.macs(),
            |n, out, _, parallelism| {
                let image = &x[n * image_len..(n + 1) * image_len];
                weights.times(out, Mat::rows(image, k, l), false, parallelism);
                post.apply(out, l);
            },
        );
    }
    let scratch = [k * wide, ph.channel_len(), g.out_channels * wide];
    per_image(
        g.output_len(),
        g.out_channels * l,
        scratch.iter().sum(),
        g.macs(),
        |n, out, buf, parallelism| {
            let [cols, phases, wide_out] = split_scratch(buf, scratch);
            im2col(&x[n * image_len..(n + 1) * image_len], g, &ph, phases, cols);
            weights.times(wide_out, Mat::rows(cols, k, wide), false, parallelism);
            narrow(wide_out, g, &ph, out);
            post.apply(out, l);
        },
    )
}

/// Below this many multiply-adds an image's forward is not split over the threads.
const SPLIT_MACS: usize = 1 << 16;

/// Fewer columns than this per band of rows (6² maps: 24 in each of two bands) make poor
/// products: such maps are split by output channels instead, by `gemm` for large products.
const MIN_BAND_COLUMNS: usize = 64;

/// Whether each image's forward is split over the threads ([`forward_split_by_rows`],
/// [`forward_split_by_channels`]): when there are fewer images than threads, each has enough
/// work, the bands are wide enough for their size, and a pool thread is spinning
/// ([`crate::pool::Warm`]), so that handing it a part costs no wake-up.
fn splits_images(g: &Geometry, ph: &Phases) -> bool {
    let threads = rayon::current_num_threads();
    let macs = g.macs() / g.batch.max(1);
    threads > 1
        && g.batch < threads
        && !g.is_pointwise()
        && macs >= SPLIT_MACS
        && (macs < PARALLEL_MACS || wide_bands(g, ph))
        && crate::pool::is_warm()
}

/// Whether splitting an image's output rows over the threads leaves each band enough columns.
fn wide_bands(g: &Geometry, ph: &Phases) -> bool {
    g.out_size[0] / rayon::current_num_threads() * ph.size[1] >= MIN_BAND_COLUMNS
}

/// One image's forward with each step split over the threads, for batches smaller than the
/// thread count (batch-1 inference). `gemm`'s own threading made seed-cnn's small products
/// 10 % slower, and on 12² maps it splits DeXpression's and VGG's large ones less well
/// (DeXpression's batch 1 0.75 → 0.72 ms with them split here). Three parallel steps on
/// disjoint slices: each channel's phase planes; each band of output rows' columns and
/// product; each output map's rows gathered from the bands, with the epilogue.
fn forward_split_by_rows(
    image: &[f32],
    weights: &Lhs,
    post: &Epilogue,
    g: &Geometry,
    ph: &Phases,
    out: &mut [f32],
) {
    let (k, out_h, out_w, width) = (g.patch_len(), g.out_size[0], g.out_size[1], ph.size[1]);
    let bands = rayon::current_num_threads().min(out_h);
    let band_rows = |b: usize| (b * out_h / bands, (b + 1) * out_h / bands);
    let phases_len = g.in_channels * ph.channel_len();
    let [products_len, cols_len] = [g.out_channels, k].map(|rows| rows * ph.wide_len(g));
    with_scratch(phases_len + products_len + cols_len, |buf| {
        let (phases, rest) = buf.split_at_mut(phases_len);
        let (mut products, mut cols) = rest.split_at_mut(products_len);
        phases
            .par_chunks_mut(ph.channel_len())
            .zip(image.par_chunks(g.in_plane()))
            .with_min_len(share(g.in_channels))
            .for_each(|(planes, channel)| split_phases(channel, g, ph, planes));
        let mut bands_out = Vec::with_capacity(bands);
        for b in 0..bands {
            let (y0, y1) = band_rows(b);
            let len = (y1 - y0) * width;
            let (band, products_rest) = products.split_at_mut(g.out_channels * len);
            let (band_cols, cols_rest) = cols.split_at_mut(k * len);
            bands_out.push((y0, len, band, band_cols));
            (products, cols) = (products_rest, cols_rest);
        }
        let phases = &*phases;
        bands_out.par_iter_mut().for_each(|(y0, len, band, cols)| {
            band_columns(phases, g, ph, *y0 * width, cols);
            weights.times(band, Mat::rows(cols, k, *len), false, Parallelism::None);
        });
        let bands_out = &bands_out;
        out.par_chunks_mut(g.out_plane())
            .enumerate()
            .with_min_len(share(g.out_channels))
            .for_each(|(c, map)| {
                for (y0, len, band, _) in bands_out {
                    let rows = &mut map[y0 * out_w..][..len / width * out_w];
                    narrow(&band[c * len..][..*len], g, ph, rows);
                }
                post.apply_map(map, c);
            });
    });
}

/// [`forward_split_by_rows`] (or by channels) for every image, whatever the batch and the
/// pool's state.
#[cfg(test)]
pub(super) fn dense_forward_split(
    x: &[f32],
    w: &[f32],
    post: &Epilogue,
    g: &Geometry,
    by_channels: bool,
) -> Vec<f32> {
    let ph = Phases::new(g);
    let w = Mat::rows(w, g.out_channels, g.patch_len());
    let image_len = g.in_channels * g.in_plane();
    let mut y = vec![0.0; g.output_len()];
    let outputs = y.chunks_exact_mut(g.output_len() / g.batch);
    for (image, out) in x.chunks_exact(image_len).zip(outputs) {
        match by_channels {
            true => forward_split_by_channels(image, w, post, g, &ph, out),
            false => forward_split_by_rows(image, &Lhs::F32(w), post, g, &ph, out),
        }
    }
    y
}

/// One image's forward split over the threads by output channels, for maps whose bands of
/// rows would be too narrow: the column matrix is built per input channel in parallel, then
/// each part multiplies its rows of the weights by all of it and narrows its maps.
fn forward_split_by_channels(
    image: &[f32],
    w: Mat,
    post: &Epilogue,
    g: &Geometry,
    ph: &Phases,
    out: &mut [f32],
) {
    let (k, l, wide) = (g.patch_len(), g.out_plane(), ph.wide_len(g));
    let (taps, channel_len) = (g.kernel_area(), ph.channel_len());
    let phases_len = g.in_channels * channel_len;
    let [cols_len, products_len] = [k, g.out_channels].map(|rows| rows * wide);
    let per_part = share(g.out_channels);
    with_scratch(phases_len + cols_len + products_len, |buf| {
        let (phases, rest) = buf.split_at_mut(phases_len);
        let (cols, products) = rest.split_at_mut(cols_len);
        phases
            .par_chunks_mut(channel_len)
            .zip(cols.par_chunks_mut(taps * wide))
            .zip(image.par_chunks(g.in_plane()))
            .with_min_len(share(g.in_channels))
            .for_each(|((planes, rows), channel)| im2col(channel, g, ph, planes, rows));
        let cols = Mat::rows(cols, k, wide);
        products
            .par_chunks_mut(per_part * wide)
            .zip(out.par_chunks_mut(per_part * l))
            .enumerate()
            .for_each(|(part, (products, maps))| {
                let (first, rows) = (part * per_part, maps.len() / l);
                let w = Mat::rows(&w.data[first * k..(first + rows) * k], rows, k);
                gemm_into(products, w, cols, false, Parallelism::None);
                narrow(products, g, ph, maps);
                for (c, map) in maps.chunks_exact_mut(l).enumerate() {
                    post.apply_map(map, first + c);
                }
            });
    });
}

/// One thread's share of `items`: each step of a split forward goes to every thread, however
/// little it holds (`min_items` kept steps of a few small planes on one thread: seed-cnn's
/// batch 1 0.24–0.27 → 0.23 ms with this).
fn share(items: usize) -> usize {
    items.div_ceil(rayon::current_num_threads())
}

/// The wide column matrix's columns from `first` on (as many as each row of `cols` holds),
/// copied from all channels' phase planes.
fn band_columns(phases: &[f32], g: &Geometry, ph: &Phases, first: usize, cols: &mut [f32]) {
    let channel_rows = cols.len() / g.in_channels;
    let channels = phases.chunks_exact(ph.channel_len());
    for (planes, rows) in channels.zip(cols.chunks_exact_mut(channel_rows)) {
        tap_rows(planes, g, ph, first, rows);
    }
}

/// What is applied to each output map right after it is computed, while it is in cache:
/// `y · scale[c] + shift[c]`, then ReLU. A plain convolution's bias is the shift; at inference
/// a following batch norm folds into scale and shift, and its ReLU comes along.
#[derive(Debug, Default)]
pub struct Epilogue<'a> {
    pub scale: Option<&'a [f32]>,
    pub shift: Option<&'a [f32]>,
    pub relu: bool,
}

impl Epilogue<'_> {
    /// Whether the epilogue leaves the maps as they are.
    fn is_identity(&self) -> bool {
        self.scale.is_none() && self.shift.is_none() && !self.relu
    }

    /// Applies the epilogue to one image's output maps (`plane` values each, channel order).
    pub(super) fn apply(&self, out: &mut [f32], plane: usize) {
        if self.is_identity() {
            return;
        }
        for (c, map) in out.chunks_exact_mut(plane).enumerate() {
            self.apply_map(map, c);
        }
    }

    /// Applies the epilogue to the output map of channel `c` (nothing to do for the identity:
    /// no pass over the map).
    pub(super) fn apply_map(&self, map: &mut [f32], c: usize) {
        if self.is_identity() {
            return;
        }
        let (a, b) = self.affine(c);
        affine_in_place(map, a, b, self.relu);
    }

    /// The scale and shift of channel `c` (before the ReLU).
    pub(super) fn affine(&self, c: usize) -> (f32, f32) {
        let a = self.scale.map_or(1.0, |s| s[c]);
        let b = self.shift.map_or(0.0, |s| s[c]);
        (a, b)
    }
}

/// `dL/dx` of a dense convolution: `Wᵀ · dY` per image, scattered back by col2im.
pub fn dense_input_grad(w: &[f32], dy: &[f32], g: &Geometry) -> Vec<f32> {
    let (k, l) = (g.patch_len(), g.out_plane());
    let grad_len = g.out_channels * l;
    let image_len = g.in_channels * g.in_plane();
    let ph = Phases::new(g);
    let wide = if g.is_pointwise() { l } else { ph.wide_len(g) };
    let wt = Lhs::new(Mat::rows(w, g.out_channels, k).t(), g.batch * wide);
    if g.is_pointwise() {
        return per_image(
            g.input_len(),
            image_len,
            0,
            g.macs(),
            |n, dx_n, _, parallelism| {
                let dy_n = Mat::rows(&dy[n * grad_len..(n + 1) * grad_len], g.out_channels, l);
                wt.times(dx_n, dy_n, false, parallelism);
            },
        );
    }
    let scratch = [k * wide, ph.channel_len(), g.out_channels * wide];
    per_image(
        g.input_len(),
        image_len,
        scratch.iter().sum(),
        g.macs(),
        |n, dx_n, buf, parallelism| {
            let [dcols, phases, wide_dy] = split_scratch(buf, scratch);
            widen(&dy[n * grad_len..(n + 1) * grad_len], g, &ph, wide_dy);
            let wide_dy = Mat::rows(wide_dy, g.out_channels, wide);
            wt.times(dcols, wide_dy, false, parallelism);
            col2im(dcols, g, &ph, phases, dx_n);
        },
    )
}

/// `dL/dW` of a dense convolution: `Σₙ dYₙ · colsₙᵀ`, one partial sum per thread.
pub fn dense_weight_grad(x: &[f32], dy: &[f32], g: &Geometry) -> Vec<f32> {
    let k = g.patch_len();
    let image_len = g.in_channels * g.in_plane();
    let grad_len = g.out_channels * g.out_plane();
    let (parallel, parallelism) = plan(g.batch, g.macs());
    let parts = if parallel {
        rayon::current_num_threads()
    } else {
        1
    };
    let per_part = g.batch.div_ceil(parts);
    let ph = Phases::new(g);
    let partial = |part: usize| {
        let mut dw = vec![0.0; g.out_channels * k];
        let images = part * per_part..((part + 1) * per_part).min(g.batch);
        if g.is_pointwise() {
            for n in images {
                let image = Mat::rows(&x[n * image_len..(n + 1) * image_len], k, g.out_plane());
                let dy_n = Mat::rows(
                    &dy[n * grad_len..(n + 1) * grad_len],
                    g.out_channels,
                    g.out_plane(),
                );
                Lhs::new(dy_n, k).times(&mut dw, image.t(), true, parallelism);
            }
            return dw;
        }
        let wide = ph.wide_len(g);
        let scratch = [k * wide, ph.channel_len(), g.out_channels * wide];
        with_scratch(scratch.iter().sum(), |buf| {
            let [cols, phases, wide_dy] = split_scratch(buf, scratch);
            for n in images {
                im2col(&x[n * image_len..(n + 1) * image_len], g, &ph, phases, cols);
                widen(&dy[n * grad_len..(n + 1) * grad_len], g, &ph, wide_dy);
                let dy_n = Lhs::new(Mat::rows(wide_dy, g.out_channels, wide), k);
                dy_n.times(&mut dw, Mat::rows(cols, k, wide).t(), true, parallelism);
            }
        });
        dw
    };
    sum_parts((0..parts).into_par_iter().map(partial).collect())
}

/// `buf` cut into pieces of the given lengths.
fn split_scratch<const N: usize>(buf: &mut [f32], lens: [usize; N]) -> [&mut [f32]; N] {
    let mut rest = buf;
    lens.map(|len| {
        let (piece, after) = std::mem::take(&mut rest).split_at_mut(len);
        rest = after;
        piece
    })
}

/// The element-wise sum of per-thread partial results, in parallel over the elements.
pub(super) fn sum_parts(mut parts: Vec<Vec<f32>>) -> Vec<f32> {
    let Some(mut total) = parts.pop() else {
        return Vec::new();
    };
    total
        .par_chunks_mut(1 << 14)
        .enumerate()
        .for_each(|(i, chunk)| {
            for part in &parts {
                add_into(chunk, &part[i << 14..]);
            }
        });
    total
}

/// `dL/db`: the output gradient summed over images and positions, per output channel.
pub fn bias_grad(dy: &[f32], g: &Geometry) -> Vec<f32> {
    let (l, channels) = (g.out_plane(), g.out_channels);
    let mut db = vec![0.0; channels];
    db.par_iter_mut()
        .with_min_len(min_items(g.batch * l))
        .enumerate()
        .for_each(|(c, d)| {
            *d = (0..g.batch)
                .map(|n| lane_sum(&dy[(n * channels + c) * l..][..l], |v| v))
                .sum();
        });
    db
}
