//! 2-D max pooling as one op: the forward records, per output, which kernel tap held its
//! maximum (one byte), the backward adds each output gradient onto that tap's input. Planes (image,
//! channel) in parallel; within a plane, one vectorised pass per kernel tap.

use burn::backend::Flex;
use burn::backend::autodiff::Autodiff;
use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::checkpoint::strategy::NoCheckpointing;
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops, OpsKind};
use burn::nn::PaddingConfig2d;
use burn::nn::pool::MaxPool2d;
use burn::prelude::*;
use multiversion::multiversion;
use rayon::prelude::*;

use super::scratch::with_scratch;
use super::{Route, contiguous, every_nth, f32s, flex_tensor, operand, output, route};

/// Shapes of one pooling.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Window {
    planes: usize,
    pub(crate) in_size: [usize; 2],
    pub(crate) out_size: [usize; 2],
    kernel: [usize; 2],
    stride: [usize; 2],
    pad: [usize; 2],
    dilation: [usize; 2],
}

impl Window {
    /// Per tap, the offset of its input from `oy·stride·in_w + ox·stride` (the window's
    /// corner): the plane position of output `(oy, ox)`'s tap `t` is that plus `offsets[t]`.
    fn tap_offsets(&self) -> Vec<isize> {
        let [kh, kw] = self.kernel;
        let in_w = self.in_size[1] as isize;
        (0..kh * kw)
            .map(|t| {
                let dy = (t / kw * self.dilation[0]) as isize - self.pad[0] as isize;
                let dx = (t % kw * self.dilation[1]) as isize - self.pad[1] as isize;
                dy * in_w + dx
            })
            .collect()
    }

    pub(crate) fn in_plane(&self) -> usize {
        self.in_size[0] * self.in_size[1]
    }

    pub(crate) fn out_plane(&self) -> usize {
        self.out_size[0] * self.out_size[1]
    }
}

/// `pool(x)`, as `MaxPool2d::forward`.
pub fn forward(pool: &MaxPool2d, x: Tensor<4>) -> Tensor<4> {
    let Some(window) = window(pool, x.dims()) else {
        return pool.forward(x);
    };
    match route(&[operand(&x)]) {
        Route::Flex => {
            let x = contiguous(&x.try_into_primitive::<Flex>().expect("routed as flex"));
            let (y, _) = pool_planes(f32s(&x), &window, false);
            Tensor::from_primitive::<Flex>(flex_tensor(y, out_dims(&window, &x)))
        }
        Route::TrackedFlex => tracked(x, window),
        Route::Burn => pool.forward(x),
    }
}

/// The pooling of `pool` over inputs of `dims`, when these kernels cover it.
pub(crate) fn window(pool: &MaxPool2d, [batch, channels, h, w]: [usize; 4]) -> Option<Window> {
    let pad = match pool.padding {
        PaddingConfig2d::Valid => [0, 0],
        PaddingConfig2d::Explicit(top, left, bottom, right) if top == bottom && left == right => {
            [top, left]
        }
        _ => return None,
    };
    if pool.ceil_mode {
        return None;
    }
    let out = |axis: usize, size: usize| {
        let span = pool.dilation[axis] * (pool.kernel_size[axis] - 1) + 1;
        // A window that starts in the padding must still reach the input.
        (pad[axis] < span).then_some(())?;
        (size + 2 * pad[axis])
            .checked_sub(span)
            .map(|room| room / pool.stride[axis] + 1)
    };
    Some(Window {
        planes: batch * channels,
        in_size: [h, w],
        out_size: [out(0, h)?, out(1, w)?],
        kernel: pool.kernel_size,
        stride: pool.stride,
        pad,
        dilation: pool.dilation,
    })
}

fn out_dims(w: &Window, x: &burn::backend::flex::FlexTensor) -> [usize; 4] {
    let shape = burn::backend::TensorMetadata::shape(x);
    [shape[0], shape[1], w.out_size[0], w.out_size[1]]
}

/// Maxima and their positions within each plane. The first maximum of a window wins; NaN
/// always wins, as in Burn and PyTorch.
///
/// Planes are laid out, a stack of them at a time, on a [`PhaseGrid`]: padded with −∞ and
/// split into their stride phases, so that for every kernel tap the inputs of *all* outputs of
/// the stack form one contiguous run. The pooling is then one long vectorised compare per tap
/// (nine for 3×3), whatever the planes' size; taps in row-major order keep "first" meaning
/// what it does in a per-window scan. When `track` (for the backward), the winning taps are
/// returned as each stack's run of `grid.run` taps (see [`unpool_grad`]); without, empty.
fn pool_planes(x: &[f32], w: &Window, track: bool) -> (Vec<f32>, Vec<u8>) {
    let planes: Vec<&[f32]> = x.chunks_exact(w.in_plane().max(1)).collect();
    pool_plane_list(&planes, None, w, track)
}

/// [`pool_planes`] over planes given one by one, each negated first where `negated` says so
/// (to take minima: see `norm_pool`).
pub(crate) fn pool_plane_list(
    planes: &[&[f32]],
    negated: Option<&[bool]>,
    w: &Window,
    track: bool,
) -> (Vec<f32>, Vec<u8>) {
    if !track && is_separable(w) {
        return (separable_maxima(planes, negated, w), Vec::new());
    }
    if !track && negated.is_none() && is_two_by_two(w) {
        return (two_by_two_maxima(planes, w), Vec::new());
    }
    let stack = stack_len(w);
    let grid = PhaseGrid::of(w, stack);
    let out_w = w.out_size[1];
    let mut y = vec![0.0; w.planes * w.out_plane()];
    let stacks = w.planes.div_ceil(stack);
    let mut taps = vec![NO_TAP; if track { stacks * grid.run } else { 0 }];
    // Without tracking, every stack gets an empty slice of `taps`.
    let mut tap_chunks: Vec<&mut [u8]> = if track {
        taps.chunks_mut(grid.run).collect()
    } else {
        (0..stacks).map(|_| &mut [][..]).collect()
    };
    y.par_chunks_mut(stack * w.out_plane())
        .zip(tap_chunks.par_iter_mut())
        .enumerate()
        .for_each(|(n, (y, tap))| {
            // Both buffers are filled (with −∞, then the planes) before they are read.
            with_scratch(grid.len() + grid.run, |buf| {
                let (phases, best) = buf.split_at_mut(grid.len());
                let these = n * stack..n * stack + y.len() / w.out_plane();
                let negated = negated.map(|flags| &flags[these.clone()]);
                grid.fill(&planes[these.clone()], negated, w, phases);
                best.fill(f32::NEG_INFINITY);
                for (t, start) in grid.taps(w) {
                    let src = &phases[start..start + grid.run];
                    if track {
                        compare_run(best, tap, src, t);
                    } else {
                        max_run(best, src);
                    }
                }
                let rows = grid.output_rows(w, these.len());
                for (row, y) in rows.zip(y.chunks_exact_mut(out_w)) {
                    copy_row(y, &best[row..][..out_w]);
                }
            })
        });
    (y, taps)
}

/// Whether [`separable_maxima`] covers `w`: 3×3 windows with padding 1 at stride 1 or 2 (every
/// DeXpression pool), on maps of at least 2².
fn is_separable(w: &Window) -> bool {
    w.kernel == [3, 3]
        && w.pad == [1, 1]
        && w.dilation == [1, 1]
        && w.stride[0] == w.stride[1]
        && (1..=2).contains(&w.stride[0])
        && w.in_size[0] >= 2
        && w.in_size[1] >= 2
}

/// Each window's maximum without the taps (inference), as [`pool_plane_list`]: a 3×3 maximum
/// is the maximum down the columns of the maxima along the rows, so a stack of planes takes
/// two passes of three loads over all its values at once, the padding handled at the rows'
/// and planes' edges afterwards; a stride of 2 keeps every other row and column. The
/// phase-grid pooling took 16–26 µs on each of DeXpression's batch-1 maps (64 × 12², 272 × 6²;
/// `pool_timing`), most of it filling the grid row by row.
fn separable_maxima(planes: &[&[f32]], negated: Option<&[bool]>, w: &Window) -> Vec<f32> {
    let stack = stack_len(w);
    let (plane, out_plane) = (w.in_plane(), w.out_plane());
    let mut y = vec![0.0; w.planes * out_plane];
    y.par_chunks_mut(stack * out_plane)
        .enumerate()
        .for_each(|(n, y)| {
            let these = n * stack..n * stack + y.len() / out_plane;
            let len = these.len() * plane;
            with_scratch(2 * len, |buf| {
                let (x, rows) = buf.split_at_mut(len);
                for (dst, p) in x.chunks_exact_mut(plane).zip(these) {
                    dst.copy_from_slice(&planes[p][..plane]);
                    if negated.is_some_and(|flags| flags[p]) {
                        dst.iter_mut().for_each(|v| *v = -*v);
                    }
                }
                max_along_rows(x, w.in_size[1], rows);
                max_down_columns(rows, w.in_size, x);
                keep_every_stride(x, w, y);
            })
        });
    y
}

/// Whether [`two_by_two_maxima`] covers `w`: 2×2 windows at stride 2 without padding (every
/// VGG pool).
fn is_two_by_two(w: &Window) -> bool {
    w.kernel == [2, 2] && w.stride == [2, 2] && w.pad == [0, 0] && w.dilation == [1, 1]
}

/// Each 2×2 window's maximum without the taps (inference), as [`pool_plane_list`]: per output
/// row, the maxima of two input rows, then of neighbouring pairs of those. On the phase grid
/// VGG's four pools took 0.17 ms of its batch-1 forward, laying every plane out anew first.
fn two_by_two_maxima(planes: &[&[f32]], w: &Window) -> Vec<f32> {
    let (out_w, in_w) = (w.out_size[1], w.in_size[1]);
    let (stack, out_plane) = (stack_len(w), w.out_plane());
    let mut y = vec![0.0; w.planes * out_plane];
    y.par_chunks_mut(stack * out_plane)
        .zip(planes.par_chunks(stack))
        .for_each(|(y, planes)| {
            for (y, plane) in y.chunks_exact_mut(out_plane).zip(planes) {
                for (oy, out) in y.chunks_exact_mut(out_w).enumerate() {
                    let top = &plane[2 * oy * in_w..][..2 * out_w];
                    let bottom = &plane[(2 * oy + 1) * in_w..][..2 * out_w];
                    max_of_pairs(out, top, bottom);
                }
            }
        });
    y
}

/// `out[j] = max(top[2j], top[2j + 1], bottom[2j], bottom[2j + 1])`.
#[multiversion(targets = "simd")]
fn max_of_pairs(out: &mut [f32], top: &[f32], bottom: &[f32]) {
    let n = out.len();
    let (top, bottom) = (&top[..2 * n], &bottom[..2 * n]);
    for j in 0..n {
        let left = max_or_nan(top[2 * j], bottom[2 * j]);
        out[j] = max_or_nan(left, max_or_nan(top[2 * j + 1], bottom[2 * j + 1]));
    }
}

/// The larger of `b` and `v`, NaN winning (as in Burn and PyTorch), without a branch.
#[inline(always)]
fn max_or_nan(b: f32, v: f32) -> f32 {
    #[allow(clippy::eq_op)] // v != v: NaN wins
    let take = (v > b) | (v != v);
    let mask = (take as u32).wrapping_neg();
    f32::from_bits((v.to_bits() & mask) | (b.to_bits() & !mask))
}

/// `out[i] = max(a[i], b[i], c[i])`.
#[multiversion(targets = "simd")]
fn max3(out: &mut [f32], a: &[f32], b: &[f32], c: &[f32]) {
    let n = out.len();
    let (a, b, c) = (&a[..n], &b[..n], &c[..n]);
    for i in 0..n {
        out[i] = max_or_nan(max_or_nan(a[i], b[i]), c[i]);
    }
}

/// `out[i] = max(x[i − 1], x[i], x[i + 1])` within each row of `width` (at least 2).
fn max_along_rows(x: &[f32], width: usize, out: &mut [f32]) {
    let n = x.len();
    max3(&mut out[1..n - 1], &x[..n - 2], &x[1..n - 1], &x[2..]);
    for (row, o) in x.chunks_exact(width).zip(out.chunks_exact_mut(width)) {
        o[0] = max_or_nan(row[0], row[1]);
        o[width - 1] = max_or_nan(row[width - 2], row[width - 1]);
    }
}

/// `out[i] = max(x[i − width], x[i], x[i + width])` within each plane of `[height, width]`
/// (height at least 2).
fn max_down_columns(x: &[f32], [height, width]: [usize; 2], out: &mut [f32]) {
    let n = x.len();
    max3(
        &mut out[width..n - width],
        &x[..n - 2 * width],
        &x[width..n - width],
        &x[2 * width..],
    );
    let plane = height * width;
    for (p, o) in x.chunks_exact(plane).zip(out.chunks_exact_mut(plane)) {
        let last = plane - width;
        for i in 0..width {
            o[i] = max_or_nan(p[i], p[width + i]);
            o[last + i] = max_or_nan(p[last - width + i], p[last + i]);
        }
    }
}

/// The outputs of `w` among stride-1 maxima `full`: all of them, or every other row and
/// column of each plane.
fn keep_every_stride(full: &[f32], w: &Window, y: &mut [f32]) {
    let [[h, width], [out_h, out_w], [stride, _]] = [w.in_size, w.out_size, w.stride];
    if stride == 1 {
        y.copy_from_slice(full);
        return;
    }
    for (p, out) in full
        .chunks_exact(h * width)
        .zip(y.chunks_exact_mut(out_h * out_w))
    {
        for (oy, row) in out.chunks_exact_mut(out_w).enumerate() {
            every_nth(row, &p[stride * oy * width..][..width], stride);
        }
    }
}

/// Planes per stack: about 16 k input values. DeXpression's planes are 36 to 576 values, and
/// one plane per pass spent more time starting passes than comparing.
pub(crate) fn stack_len(w: &Window) -> usize {
    ((1 << 14) / w.in_plane().max(1)).clamp(1, w.planes.max(1))
}

/// No tap has won yet (or all were −∞).
const NO_TAP: u8 = u8::MAX;

/// A stack of planes, each padded with −∞ to `block` rows (its padding, rounded up to a
/// multiple of the row stride) and placed one under the other, then split into
/// `stride[0] × stride[1]` phase blocks of `height × width`: padded pixel `(r, c)` sits in
/// block `(r mod sy, c mod sx)` at `(r / sy, c / sx)`. Output `(oy, ox)` of tap `(ky, kx)`
/// then reads block `(ky·dy mod sy, kx·dx mod sx)` at `(oy + ky·dy / sy, ox + kx·dx / sx)`:
/// for a fixed tap, a fixed offset from `oy·width + ox`, so the outputs of the whole stack
/// read one contiguous run of `run` values. The columns past `out_w` in each row, and the
/// output rows between one plane's and the next's, are computed and ignored.
struct PhaseGrid {
    stride: [usize; 2],
    /// Padded rows per plane.
    block: usize,
    height: usize,
    width: usize,
    run: usize,
    /// Per column phase: the first input column it holds, and that column's place in its
    /// block's rows.
    column_phases: Vec<(usize, usize)>,
}

impl PhaseGrid {
    fn of(w: &Window, stack: usize) -> Self {
        let [sy, sx] = w.stride;
        let block = (w.in_size[0] + 2 * w.pad[0]).next_multiple_of(sy);
        // Output rows of the stack, the last plane's real ones included.
        let out_rows = (stack - 1) * block / sy + w.out_size[0];
        // Big enough for the padded input and for the furthest tap of the last output.
        let height = (stack * block / sy).max(out_rows + (w.kernel[0] - 1) * w.dilation[0] / sy);
        let width = (w.in_size[1] + 2 * w.pad[1])
            .div_ceil(sx)
            .max(w.out_size[1] + (w.kernel[1] - 1) * w.dilation[1] / sx);
        let run = (out_rows - 1) * width + w.out_size[1];
        let pad = w.pad[1];
        // Padded columns c ≡ phase (mod sx) hold input columns c − pad.
        let column_phases = (0..sx)
            .map(|phase| {
                let first = (phase + sx - pad % sx) % sx;
                (first, (first + pad) / sx)
            })
            .collect();
        Self {
            stride: w.stride,
            block,
            height,
            width,
            run,
            column_phases,
        }
    }

    fn len(&self) -> usize {
        self.stride[0] * self.stride[1] * self.height * self.width
    }

    /// Lays a stack of planes out on the grid (everything else −∞), negating those that
    /// `negated` marks. No divisions per row: on the small maps of DeXpression they were most
    /// of the pooling's time.
    fn fill(&self, planes: &[&[f32]], negated: Option<&[bool]>, w: &Window, phases: &mut [f32]) {
        let [sy, sx] = self.stride;
        let block_len = self.height * self.width;
        phases.fill(f32::NEG_INFINITY);
        for (i, plane) in planes.iter().enumerate() {
            let negate = negated.is_some_and(|flags| flags[i]);
            // Padded row r = i·block + pad + iy sits in block row r mod sy, at r / sy.
            let top = i * self.block + w.pad[0];
            let (mut row_phase, mut block_row) = (top % sy, top / sy);
            for row in plane.chunks_exact(w.in_size[1]) {
                for (phase, &(first, offset)) in self.column_phases.iter().enumerate() {
                    let block = row_phase * sx + phase;
                    let start = block * block_len + block_row * self.width + offset;
                    let src = row.get(first..).unwrap_or_default();
                    let dst = &mut phases[start..start + src.len().div_ceil(sx)];
                    if sx == 1 {
                        copy_row(dst, src);
                    } else {
                        every_nth_of_row(dst, src, sx);
                    }
                    if negate {
                        dst.iter_mut().for_each(|v| *v = -*v);
                    }
                }
                row_phase += 1;
                if row_phase == sy {
                    row_phase = 0;
                    block_row += 1;
                }
            }
        }
    }

    /// Where each real output row of a stack of `planes` starts in the runs, in order.
    fn output_rows(&self, w: &Window, planes: usize) -> impl Iterator<Item = usize> + use<> {
        let (rows_per_plane, width, out_h) =
            (self.block / self.stride[0], self.width, w.out_size[0]);
        (0..planes).flat_map(move |i| (0..out_h).map(move |oy| (i * rows_per_plane + oy) * width))
    }

    /// Each tap's number (row-major) and the start of its run.
    fn taps(&self, w: &Window) -> impl Iterator<Item = (u8, usize)> + '_ {
        let [sy, sx] = self.stride;
        let [kh, kw] = w.kernel;
        let [dy, dx] = w.dilation;
        (0..kh * kw).map(move |t| {
            let (ry, rx) = ((t / kw) * dy, (t % kw) * dx);
            let block = (ry % sy) * sx + rx % sx;
            (
                t as u8,
                block * self.height * self.width + (ry / sy) * self.width + rx / sx,
            )
        })
    }
}

/// One tap over a run of outputs: `best[j]` takes `src[j]` if it is greater or NaN, and
/// records the tap. Outputs start at −∞, so the first finite tap always wins; a window of
/// only −∞ records none (its gradient is dropped). Bit masks rather than `if`: LLVM turns an
/// `if` here into a branch, which random maxima mispredict (measured 4.5× slower).
#[multiversion(targets = "simd")]
fn compare_run(best: &mut [f32], tap: &mut [u8], src: &[f32], t: u8) {
    let n = best.len();
    let (tap, src) = (&mut tap[..n], &src[..n]);
    for j in 0..n {
        let (v, b) = (src[j], best[j]);
        #[allow(clippy::eq_op)] // v != v: NaN wins, as in Burn and PyTorch
        let take = (v > b) | (v != v);
        let mask = (take as u32).wrapping_neg();
        best[j] = f32::from_bits((v.to_bits() & mask) | (b.to_bits() & !mask));
        let mask8 = mask as u8;
        tap[j] = (t & mask8) | (tap[j] & !mask8);
    }
}

/// [`compare_run`] without recording the taps: inference.
#[multiversion(targets = "simd")]
fn max_run(best: &mut [f32], src: &[f32]) {
    let src = &src[..best.len()];
    for (b, &v) in best.iter_mut().zip(src) {
        *b = max_or_nan(*b, v);
    }
}

/// Each output gradient added onto the input its maximum came from (its winning tap's), a
/// stack of planes per task.
fn unpool_grad(dy: &[f32], taps: &[u8], w: &Window) -> Vec<f32> {
    let unpool = Unpool::new(w);
    output::par_chunks(
        w.planes * w.in_plane(),
        unpool.stack * w.in_plane(),
        1,
        |n, dx| {
            let mut planes: Vec<&mut [f32]> = dx.chunks_exact_mut(w.in_plane()).collect();
            unpool.stack_onto(n, dy, taps, &mut planes, |_| 1.0);
        },
    )
}

/// The backward of [`pool_plane_list`], a stack at a time.
pub(crate) struct Unpool<'a> {
    window: &'a Window,
    grid: PhaseGrid,
    offsets: Vec<isize>,
    /// Planes per stack.
    pub(crate) stack: usize,
}

impl<'a> Unpool<'a> {
    pub(crate) fn new(window: &'a Window) -> Self {
        let stack = stack_len(window);
        Self {
            window,
            grid: PhaseGrid::of(window, stack),
            offsets: window.tap_offsets(),
            stack,
        }
    }

    /// Adds stack `n`'s output gradients (of all of `dy`), each times its plane's `gain`, onto
    /// the inputs in `planes` (that stack's) their maxima came from; the taps are the
    /// forward's.
    pub(crate) fn stack_onto(
        &self,
        n: usize,
        dy: &[f32],
        taps: &[u8],
        planes: &mut [&mut [f32]],
        gain: impl Fn(usize) -> f32,
    ) {
        let w = self.window;
        let (out_w, in_w) = (w.out_size[1], w.in_size[1]);
        let dy = &dy[n * self.stack * w.out_plane()..][..planes.len() * w.out_plane()];
        let taps = &taps[n * self.grid.run..][..self.grid.run];
        let mut rows = self
            .grid
            .output_rows(w, planes.len())
            .zip(dy.chunks_exact(out_w));
        for (i, dx) in planes.iter_mut().enumerate() {
            let k = gain(i);
            for (oy, (row, grads)) in rows.by_ref().take(w.out_size[0]).enumerate() {
                let corner = (oy * w.stride[0] * in_w) as isize;
                for (ox, (&g, &t)) in grads.iter().zip(&taps[row..][..out_w]).enumerate() {
                    // NO_TAP (a window of only −∞) has no offset: its gradient is dropped.
                    if let Some(d) = self.offsets.get(t as usize) {
                        dx[(corner + (ox * w.stride[1]) as isize + d) as usize] += k * g;
                    }
                }
            }
        }
    }
}

/// `dst.copy_from_slice(src)`, with fixed-size moves for the row widths of our models' maps:
/// `copy_from_slice` calls `memcpy` for each row, which for 6 or 12 values costs more than
/// the copy.
#[inline(always)]
fn copy_row<T: Copy>(dst: &mut [T], src: &[T]) {
    #[inline(always)]
    fn fixed<T: Copy, const N: usize>(dst: &mut [T], src: &[T]) -> bool {
        let (Ok(dst), Ok(src)) = (<&mut [T; N]>::try_from(dst), <&[T; N]>::try_from(src)) else {
            return false;
        };
        *dst = *src;
        true
    }
    let done = match src.len() {
        3 => fixed::<T, 3>(dst, src),
        6 => fixed::<T, 6>(dst, src),
        7 => fixed::<T, 7>(dst, src),
        8 => fixed::<T, 8>(dst, src),
        12 => fixed::<T, 12>(dst, src),
        14 => fixed::<T, 14>(dst, src),
        24 => fixed::<T, 24>(dst, src),
        48 => fixed::<T, 48>(dst, src),
        _ => false,
    };
    if !done {
        dst.copy_from_slice(src);
    }
}

/// `dst[k] = src[k·step]`, `dst` holding `src.len().div_ceil(step)` values; stride-2 rows of
/// our models' half map widths in fixed-size loops (as [`copy_row`]).
#[inline(always)]
fn every_nth_of_row(dst: &mut [f32], src: &[f32], step: usize) {
    #[inline(always)]
    fn pairs<const N: usize>(dst: &mut [f32], src: &[f32]) {
        let (dst, src) = (&mut dst[..N], &src[..2 * N - 1]);
        for k in 0..N {
            dst[k] = src[2 * k];
        }
    }
    match (step, dst.len()) {
        (2, 3) => pairs::<3>(dst, src),
        (2, 6) => pairs::<6>(dst, src),
        (2, 12) => pairs::<12>(dst, src),
        (2, 24) => pairs::<24>(dst, src),
        _ => every_nth(dst, src, step),
    }
}

#[derive(Debug)]
struct MaxPoolBackward;

impl Backward<Flex, 1> for MaxPoolBackward {
    /// Each stack's winning taps on its runs, and the input's shape.
    type State = (Vec<u8>, Window, [usize; 4]);

    fn backward(self, ops: Ops<Self::State, 1>, grads: &mut Gradients, _: &mut Checkpointer) {
        let dy = contiguous(&grads.consume::<Flex>(&ops.node));
        let (taps, window, in_dims) = ops.state;
        let [x_node] = ops.parents;
        if let Some(node) = x_node {
            let dx = unpool_grad(f32s(&dy), &taps, &window);
            grads.register::<Flex>(node.id, flex_tensor(dx, in_dims));
        }
    }
}

fn tracked(x: Tensor<4>, window: Window) -> Tensor<4> {
    let in_dims = x.dims();
    let x = x
        .try_into_primitive::<Autodiff<Flex>>()
        .expect("routed as tracked flex");
    let input = contiguous(x.primitive());
    let (y, taps) = pool_planes(f32s(&input), &window, true);
    let y = flex_tensor(y, out_dims(&window, &input));
    let y = match MaxPoolBackward
        .prepare::<NoCheckpointing>([x.node()])
        .compute_bound()
        .stateful()
    {
        OpsKind::Tracked(prep) => prep.finish((taps, window, in_dims), y),
        OpsKind::UnTracked(prep) => prep.finish(y),
    };
    Tensor::from_primitive::<Autodiff<Flex>>(y)
}

#[cfg(test)]
mod tests {
    use burn::nn::PaddingConfig2d;
    use burn::nn::pool::MaxPool2dConfig;
    use burn::prelude::*;
    use burn::tensor::TensorData;

    use super::{forward, is_two_by_two, window};
    use crate::ops::test_util::{assert_close, tensor};

    fn assert_matches_burn(kernel: usize, stride: usize, pad: usize, dilation: usize) {
        assert_matches_burn_on([2, 3, 9, 8], kernel, stride, pad, dilation);
    }

    fn assert_matches_burn_on(
        shape: [usize; 4],
        kernel: usize,
        stride: usize,
        pad: usize,
        dilation: usize,
    ) {
        let pool = MaxPool2dConfig::new([kernel, kernel])
            .with_strides([stride, stride])
            .with_padding(PaddingConfig2d::Explicit(pad, pad, pad, pad))
            .with_dilation([dilation, dilation])
            .init();
        let device = Device::flex().autodiff();
        let run = |ours: bool| {
            let x = tensor(shape, 1, &device).require_grad();
            let y = if ours {
                forward(&pool, x.clone())
            } else {
                pool.forward(x.clone())
            };
            let r = tensor(y.dims(), 2, &device);
            let grads = (y.clone() * r).sum().backward();
            [
                y.into_data(),
                x.grad(&grads).expect("input gradient").into_data(),
            ]
        };
        let (ours, burns) = (run(true), run(false));
        let what = format!(
            "max pool {kernel}x{kernel}/{stride} pad {pad} dilation {dilation} on {shape:?}"
        );
        assert_close(&ours[0], &burns[0], 0.0, &format!("{what} output"));
        assert_close(&ours[1], &burns[1], 1e-6, &format!("{what} input grad"));
    }

    #[test]
    fn matches_burn_forward_and_backward() {
        assert_matches_burn(3, 2, 1, 1);
        assert_matches_burn(3, 1, 1, 1);
        assert_matches_burn(2, 2, 0, 1);
        assert_matches_burn(3, 3, 1, 1);
        assert_matches_burn(3, 2, 2, 2);
    }

    #[test]
    fn several_stacks_of_planes_the_last_one_short() {
        // 500 planes of 72 values: stacks of 227, 227 and 46.
        assert_matches_burn_on([5, 100, 9, 8], 3, 2, 1, 1);
        assert_matches_burn_on([5, 100, 9, 8], 3, 1, 1, 1);
    }

    #[test]
    fn rows_copied_in_fixed_sizes() {
        // DeXpression's and VGG's map widths, whose rows take fixed-size copies.
        for side in [6, 12, 24] {
            assert_matches_burn_on([2, 3, side, side], 3, 2, 1, 1);
            assert_matches_burn_on([2, 3, side, side], 3, 1, 1, 1);
            assert_matches_burn_on([2, 3, side, side], 2, 2, 0, 1);
        }
    }

    #[test]
    fn separable_pools_at_inference_match_burn() {
        // 3×3 windows, padding 1, stride 1 and 2: odd and even sides, several stacks of
        // planes (500 planes of 72 values: stacks of 227, 227 and 46), and the smallest map.
        let device = Device::flex();
        for shape in [[2, 3, 9, 8], [5, 100, 9, 8], [1, 4, 2, 2], [1, 272, 6, 6]] {
            for stride in [1, 2] {
                let pool = MaxPool2dConfig::new([3, 3])
                    .with_strides([stride, stride])
                    .with_padding(PaddingConfig2d::Explicit(1, 1, 1, 1))
                    .init();
                let x = tensor(shape, 3, &device);
                let what = format!("separable, stride {stride}, {shape:?}");
                let ours = forward(&pool, x.clone()).into_data();
                assert_close(&ours, &pool.forward(x).into_data(), 0.0, &what);
            }
        }
    }

    #[test]
    fn separable_pools_let_nan_win() {
        // One NaN in a 5×5 map: the 3×3 outputs around it are NaN, the others are not.
        let mut values = vec![0.5f32; 25];
        values[2 * 5 + 3] = f32::NAN;
        let x = Tensor::<4>::from_data(TensorData::new(values, [1, 1, 5, 5]), &Device::flex());
        let pool = MaxPool2dConfig::new([3, 3])
            .with_strides([1, 1])
            .with_padding(PaddingConfig2d::Explicit(1, 1, 1, 1))
            .init();
        let y = forward(&pool, x)
            .into_data()
            .try_to_vec::<f32>()
            .expect("f32");
        for (i, v) in y.iter().enumerate() {
            let near = (i / 5).abs_diff(2) <= 1 && (i % 5).abs_diff(3) <= 1;
            assert_eq!(v.is_nan(), near, "output {i}: {v}");
        }
    }

    #[test]
    fn two_by_two_pools_at_inference_match_burn() {
        // VGG's map sides, an odd side (the last row and column left out), several stacks of
        // planes (300 planes of 64 values: stacks of 256 and 44), and NaN winning.
        let device = Device::flex();
        let pool = MaxPool2dConfig::new([2, 2]).with_strides([2, 2]).init();
        for shape in [
            [1, 64, 48, 48],
            [2, 3, 7, 9],
            [1, 300, 8, 8],
            [1, 512, 6, 6],
        ] {
            let x = tensor(shape, 3, &device);
            let what = format!("2×2, {shape:?}");
            assert!(
                window(&pool, shape).is_some_and(|w| is_two_by_two(&w)),
                "{what}"
            );
            let ours = forward(&pool, x.clone()).into_data();
            assert_close(&ours, &pool.forward(x).into_data(), 0.0, &what);
        }
        let mut values = vec![0.5f32; 16];
        values[5] = f32::NAN;
        let x = Tensor::<4>::from_data(TensorData::new(values, [1, 1, 4, 4]), &device);
        let y = forward(&pool, x)
            .into_data()
            .try_to_vec::<f32>()
            .expect("f32");
        assert!(y[0].is_nan() && y[1..].iter().all(|&v| v == 0.5), "{y:?}");
    }

    #[test]
    fn plain_forward_matches_burn() {
        let pool = MaxPool2dConfig::new([3, 3]).with_strides([2, 2]).init();
        let x = tensor([1, 2, 7, 7], 3, &Device::flex());
        assert_close(
            &forward(&pool, x.clone()).into_data(),
            &pool.forward(x).into_data(),
            0.0,
            "plain",
        );
    }
}
