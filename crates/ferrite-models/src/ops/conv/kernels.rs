//! Convolution on plain `f32` slices in NCHW order: forward, input gradient, weight gradient
//! and bias gradient.
//!
//! Dense convolutions are im2col + one matrix product per image (`gemm`, the crate burn-flex
//! itself multiplies with): the forward is `W · cols`, the weight gradient `dY · colsᵀ` summed
//! over the batch, the input gradient `Wᵀ · dY` scattered back by col2im. A 1×1 stride-1
//! convolution needs no im2col at all: the image already is its column matrix.
//!
//! Work is split over images (or channels) across rayon's threads, with one single-threaded
//! matrix product each; a batch smaller than the thread count lets `gemm` use the threads
//! instead. Everything here is safe code except the one `gemm` call, whose bounds
//! [`gemm_into`] checks first.

use gemm::Parallelism;
use rayon::prelude::*;

use crate::ops::{affine_in_place, lane_sum, min_items};

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
    fn is_pointwise(&self) -> bool {
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

/// One image's column matrix `[C·KH·KW, OH·OW]`; rows in (channel, tap-y, tap-x) order.
fn im2col(image: &[f32], g: &Geometry, cols: &mut [f32]) {
    let [_, in_w] = g.in_size;
    let [out_h, out_w] = g.out_size;
    let mut rows = cols.chunks_exact_mut(g.out_plane());
    for channel in image.chunks_exact(g.in_plane()) {
        for ky in 0..g.kernel[0] {
            let (y0, y1, dy) = g.valid(0, ky);
            for kx in 0..g.kernel[1] {
                let (x0, x1, dx) = g.valid(1, kx);
                let row = rows.next().expect("cols holds one row per channel and tap");
                for (oy, out) in row.chunks_exact_mut(out_w).enumerate().take(out_h) {
                    if oy < y0 || oy >= y1 || x0 == x1 {
                        out.fill(0.0);
                        continue;
                    }
                    let line =
                        &channel[(oy as isize * g.stride[0] as isize + dy) as usize * in_w..];
                    out[..x0].fill(0.0);
                    out[x1..].fill(0.0);
                    let start = (x0 as isize * g.stride[1] as isize + dx) as usize;
                    if g.stride[1] == 1 {
                        out[x0..x1].copy_from_slice(&line[start..start + x1 - x0]);
                    } else {
                        for (o, v) in out[x0..x1]
                            .iter_mut()
                            .zip(line[start..].iter().step_by(g.stride[1]))
                        {
                            *o = *v;
                        }
                    }
                }
            }
        }
    }
}

/// The inverse scatter of [`im2col`]: adds each column entry back onto its input pixel.
fn col2im(cols: &[f32], g: &Geometry, image: &mut [f32]) {
    let [_, in_w] = g.in_size;
    let [out_h, out_w] = g.out_size;
    image.fill(0.0);
    let mut rows = cols.chunks_exact(g.out_plane());
    for channel in image.chunks_exact_mut(g.in_plane()) {
        for ky in 0..g.kernel[0] {
            let (y0, y1, dy) = g.valid(0, ky);
            for kx in 0..g.kernel[1] {
                let (x0, x1, dx) = g.valid(1, kx);
                let row = rows.next().expect("cols holds one row per channel and tap");
                for (oy, grad) in row.chunks_exact(out_w).enumerate().take(out_h) {
                    if oy < y0 || oy >= y1 || x0 == x1 {
                        continue;
                    }
                    let line_start = (oy as isize * g.stride[0] as isize + dy) as usize * in_w;
                    let line = &mut channel[line_start..];
                    let start = (x0 as isize * g.stride[1] as isize + dx) as usize;
                    if g.stride[1] == 1 {
                        for (p, v) in line[start..start + x1 - x0].iter_mut().zip(&grad[x0..x1]) {
                            *p += v;
                        }
                    } else {
                        for (p, v) in line[start..]
                            .iter_mut()
                            .step_by(g.stride[1])
                            .zip(&grad[x0..x1])
                        {
                            *p += v;
                        }
                    }
                }
            }
        }
    }
}

/// Runs `work(image_index, output_chunk, scratch, parallelism)` for every image, in parallel
/// when the batch is large enough; `scratch` is a per-thread buffer of `scratch_len`; `macs`
/// is the work in all (see [`plan`]).
pub(super) fn per_image<F>(
    output: &mut [f32],
    chunk: usize,
    scratch_len: usize,
    macs: usize,
    work: F,
) where
    F: Fn(usize, &mut [f32], &mut Vec<f32>, Parallelism) + Sync,
{
    let (parallel, parallelism) = plan(output.len() / chunk.max(1), macs);
    if parallel {
        output.par_chunks_mut(chunk).enumerate().for_each_init(
            || vec![0.0; scratch_len],
            |scratch, (n, out)| work(n, out, scratch, parallelism),
        );
    } else {
        let mut scratch = vec![0.0; scratch_len];
        for (n, out) in output.chunks_mut(chunk).enumerate() {
            work(n, out, &mut scratch, parallelism);
        }
    }
}

/// `y = epilogue(conv(x, w))` for a dense (`groups == 1`) convolution.
pub fn dense_forward(x: &[f32], w: &[f32], post: &Epilogue, g: &Geometry) -> Vec<f32> {
    let (k, l) = (g.patch_len(), g.out_plane());
    let image_len = g.in_channels * g.in_plane();
    let mut y = vec![0.0; g.output_len()];
    let scratch = if g.is_pointwise() { 0 } else { k * l };
    per_image(
        &mut y,
        g.out_channels * l,
        scratch,
        g.macs(),
        |n, out, cols, parallelism| {
            let image = &x[n * image_len..(n + 1) * image_len];
            let cols: &[f32] = if g.is_pointwise() {
                image
            } else {
                im2col(image, g, cols);
                cols
            };
            gemm_into(
                out,
                Mat::rows(w, g.out_channels, k),
                Mat::rows(cols, k, l),
                false,
                parallelism,
            );
            post.apply(out, l);
        },
    );
    y
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
    /// Applies the epilogue to one image's output maps (`plane` values each, channel order).
    fn apply(&self, out: &mut [f32], plane: usize) {
        if self.scale.is_none() && self.shift.is_none() && !self.relu {
            return;
        }
        for (c, map) in out.chunks_exact_mut(plane).enumerate() {
            self.apply_map(map, c);
        }
    }

    /// Applies the epilogue to the output map of channel `c`.
    pub(super) fn apply_map(&self, map: &mut [f32], c: usize) {
        let a = self.scale.map_or(1.0, |s| s[c]);
        let b = self.shift.map_or(0.0, |s| s[c]);
        affine_in_place(map, a, b, self.relu);
    }
}

/// `dL/dx` of a dense convolution: `Wᵀ · dY` per image, scattered back by col2im.
pub fn dense_input_grad(w: &[f32], dy: &[f32], g: &Geometry) -> Vec<f32> {
    let (k, l) = (g.patch_len(), g.out_plane());
    let grad_len = g.out_channels * l;
    let mut dx = vec![0.0; g.input_len()];
    let scratch = if g.is_pointwise() { 0 } else { k * l };
    let image_len = g.in_channels * g.in_plane();
    per_image(
        &mut dx,
        image_len,
        scratch,
        g.macs(),
        |n, dx_n, dcols, parallelism| {
            let dy_n = Mat::rows(&dy[n * grad_len..(n + 1) * grad_len], g.out_channels, l);
            let wt = Mat::rows(w, g.out_channels, k).t();
            if g.is_pointwise() {
                gemm_into(dx_n, wt, dy_n, false, parallelism);
            } else {
                gemm_into(dcols, wt, dy_n, false, parallelism);
                col2im(dcols, g, dx_n);
            }
        },
    );
    dx
}

/// `dL/dW` of a dense convolution: `Σₙ dYₙ · colsₙᵀ`, one partial sum per thread.
pub fn dense_weight_grad(x: &[f32], dy: &[f32], g: &Geometry) -> Vec<f32> {
    let (k, l) = (g.patch_len(), g.out_plane());
    let image_len = g.in_channels * g.in_plane();
    let grad_len = g.out_channels * l;
    let (parallel, parallelism) = plan(g.batch, g.macs());
    let parts = if parallel {
        rayon::current_num_threads()
    } else {
        1
    };
    let per_part = g.batch.div_ceil(parts);
    let partial = |part: usize| {
        let mut dw = vec![0.0; g.out_channels * k];
        let mut cols = vec![0.0; if g.is_pointwise() { 0 } else { k * l }];
        for n in part * per_part..((part + 1) * per_part).min(g.batch) {
            let image = &x[n * image_len..(n + 1) * image_len];
            let cols: &[f32] = if g.is_pointwise() {
                image
            } else {
                im2col(image, g, &mut cols);
                &cols
            };
            let dy_n = Mat::rows(&dy[n * grad_len..(n + 1) * grad_len], g.out_channels, l);
            gemm_into(&mut dw, dy_n, Mat::rows(cols, k, l).t(), true, parallelism);
        }
        dw
    };
    sum_parts((0..parts).into_par_iter().map(partial).collect())
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
                let part = &part[i << 14..];
                chunk.iter_mut().zip(part).for_each(|(x, y)| *x += y);
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
