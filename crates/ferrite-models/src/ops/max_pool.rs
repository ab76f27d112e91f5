//! 2-D max pooling as one op: the forward records, per output, the position of its maximum
//! within the plane (`u32`), the backward adds each output gradient there. Plain row loops per
//! (image, channel) plane in parallel.

use burn::backend::Flex;
use burn::backend::autodiff::Autodiff;
use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::checkpoint::strategy::NoCheckpointing;
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops, OpsKind};
use burn::nn::PaddingConfig2d;
use burn::nn::pool::MaxPool2d;
use burn::prelude::*;
use rayon::prelude::*;

use super::{Route, contiguous, f32s, flex_tensor, min_items, operand, route};

/// Shapes of one pooling.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Window {
    planes: usize,
    in_size: [usize; 2],
    out_size: [usize; 2],
    kernel: [usize; 2],
    stride: [usize; 2],
    pad: [usize; 2],
    dilation: [usize; 2],
}

impl Window {
    fn in_plane(&self) -> usize {
        self.in_size[0] * self.in_size[1]
    }

    fn out_plane(&self) -> usize {
        self.out_size[0] * self.out_size[1]
    }
}

/// `pool(x)`, as `MaxPool2d::forward`.
pub fn forward(pool: &MaxPool2d, x: Tensor<4>) -> Tensor<4> {
    let Some(window) = window(pool, &x) else {
        return pool.forward(x);
    };
    match route(&[operand(&x)]) {
        Route::Flex => {
            let x = contiguous(&x.try_into_primitive::<Flex>().expect("routed as flex"));
            let (y, _) = pool_planes(f32s(&x), &window);
            Tensor::from_primitive::<Flex>(flex_tensor(y, out_dims(&window, &x)))
        }
        Route::TrackedFlex => tracked(x, window),
        Route::Burn => pool.forward(x),
    }
}

fn window(pool: &MaxPool2d, x: &Tensor<4>) -> Option<Window> {
    let [batch, channels, h, w] = x.dims();
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
/// Vectorised over output columns: per output row, each kernel tap compares a whole row of
/// outputs against one contiguous run of input. An input row is first split into its
/// `stride` phases (for stride 2, the even and the odd columns), so that even a strided tap
/// reads contiguous memory. Taps run in row-major order, so "first" means what it does in a
/// per-window scan.
fn pool_planes(x: &[f32], w: &Window) -> (Vec<f32>, Vec<u32>) {
    let mut y = vec![f32::NEG_INFINITY; w.planes * w.out_plane()];
    let mut at = vec![u32::MAX; y.len()];
    let ([in_h, in_w], [_, out_w], sx) = (w.in_size, w.out_size, w.stride[1]);
    let runs = column_runs(w);
    y.par_chunks_mut(w.out_plane())
        .zip(at.par_chunks_mut(w.out_plane()))
        .with_min_len(min_items(w.in_plane()))
        .enumerate()
        .for_each_init(
            || vec![0.0f32; in_w],
            |phases, (p, (y, at))| {
                let plane = &x[p * w.in_plane()..(p + 1) * w.in_plane()];
                let rows = y.chunks_exact_mut(out_w).zip(at.chunks_exact_mut(out_w));
                for (oy, (best, best_at)) in rows.enumerate() {
                    for ky in 0..w.kernel[0] {
                        let iy =
                            (oy * w.stride[0] + ky * w.dilation[0]) as isize - w.pad[0] as isize;
                        if iy < 0 || iy >= in_h as isize {
                            continue;
                        }
                        let row_start = iy as usize * in_w;
                        split_phases(&plane[row_start..row_start + in_w], sx, phases);
                        for run in &runs {
                            let (outputs, src) = (run.first..run.end, &phases[run.src..]);
                            let index0 = (row_start + run.index0) as u32;
                            compare_run(
                                &mut best[outputs.clone()],
                                &mut best_at[outputs],
                                src,
                                index0,
                                sx as u32,
                            );
                        }
                    }
                }
            },
        );
    (y, at)
}

/// For one horizontal kernel tap: the output columns `first..end` it reaches, where their
/// inputs start in the phase-split row, and the input column of output `first`.
struct ColumnRun {
    first: usize,
    end: usize,
    src: usize,
    index0: usize,
}

/// The [`ColumnRun`] of every horizontal tap, in tap order. Output column `ox` of tap `kx`
/// reads input column `ox·stride + offset` = phase `offset mod stride`, element
/// `ox + ⌊offset / stride⌋`.
fn column_runs(w: &Window) -> Vec<ColumnRun> {
    let (in_w, out_w, stride) = (
        w.in_size[1] as isize,
        w.out_size[1] as isize,
        w.stride[1] as isize,
    );
    let per_phase = (in_w + stride - 1) / stride;
    (0..w.kernel[1])
        .filter_map(|kx| {
            let offset = (kx * w.dilation[1]) as isize - w.pad[1] as isize;
            let (phase, shift) = (offset.rem_euclid(stride), offset.div_euclid(stride));
            let phase_len = (in_w - phase + stride - 1) / stride;
            let first = (-shift).clamp(0, out_w);
            let end = (phase_len - shift).clamp(first, out_w);
            (end > first).then(|| ColumnRun {
                first: first as usize,
                end: end as usize,
                src: (phase * per_phase + first + shift) as usize,
                index0: (first * stride + offset) as usize,
            })
        })
        .collect()
}

/// Splits `row` into its `stride` phases: phase `p` (columns `p, p + stride, …`) starts at
/// `p · ⌈len / stride⌉` in `phases`.
fn split_phases(row: &[f32], stride: usize, phases: &mut [f32]) {
    if stride == 1 {
        return phases[..row.len()].copy_from_slice(row);
    }
    let per_phase = row.len().div_ceil(stride);
    for (p, phase) in phases.chunks_mut(per_phase).take(stride).enumerate() {
        for (slot, &v) in phase.iter_mut().zip(row[p..].iter().step_by(stride)) {
            *slot = v;
        }
    }
}

/// One tap over a run of outputs: `best[j]` takes `src[j]` (input position
/// `index0 + j·stride`) if it is greater or NaN. Outputs start at −∞, so the first finite tap
/// always wins; a window of only −∞ keeps no position (its gradient is dropped). Plain
/// selects over equal-length slices, so it vectorises.
fn compare_run(best: &mut [f32], best_at: &mut [u32], src: &[f32], index0: u32, stride: u32) {
    let n = best.len();
    let (best_at, src) = (&mut best_at[..n], &src[..n]);
    for j in 0..n {
        let (v, b) = (src[j], best[j]);
        #[allow(clippy::eq_op)] // v != v: NaN wins, as in Burn and PyTorch
        let take = (v > b) | (v != v);
        // Bit masks rather than `if`: LLVM turns an `if` here into a branch, and random
        // maxima mispredict it (measured 4.5x slower).
        let mask = (take as u32).wrapping_neg();
        best[j] = f32::from_bits((v.to_bits() & mask) | (b.to_bits() & !mask));
        best_at[j] = ((index0 + j as u32 * stride) & mask) | (best_at[j] & !mask);
    }
}

/// Each output gradient added onto the input position its maximum came from.
fn unpool_grad(dy: &[f32], at: &[u32], w: &Window) -> Vec<f32> {
    let mut dx = vec![0.0; w.planes * w.in_plane()];
    dx.par_chunks_mut(w.in_plane())
        .with_min_len(min_items(w.in_plane()))
        .enumerate()
        .for_each(|(p, dx)| {
            let range = p * w.out_plane()..(p + 1) * w.out_plane();
            for (&g, &i) in dy[range.clone()].iter().zip(&at[range]) {
                if let Some(slot) = dx.get_mut(i as usize) {
                    *slot += g;
                }
            }
        });
    dx
}

#[derive(Debug)]
struct MaxPoolBackward;

impl Backward<Flex, 1> for MaxPoolBackward {
    /// The argmax positions and the input's shape.
    type State = (Vec<u32>, Window, [usize; 4]);

    fn backward(self, ops: Ops<Self::State, 1>, grads: &mut Gradients, _: &mut Checkpointer) {
        let dy = contiguous(&grads.consume::<Flex>(&ops.node));
        let (at, window, in_dims) = ops.state;
        let [x_node] = ops.parents;
        if let Some(node) = x_node {
            let dx = unpool_grad(f32s(&dy), &at, &window);
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
    let (y, at) = pool_planes(f32s(&input), &window);
    let y = flex_tensor(y, out_dims(&window, &input));
    let y = match MaxPoolBackward
        .prepare::<NoCheckpointing>([x.node()])
        .compute_bound()
        .stateful()
    {
        OpsKind::Tracked(prep) => prep.finish((at, window, in_dims), y),
        OpsKind::UnTracked(prep) => prep.finish(y),
    };
    Tensor::from_primitive::<Autodiff<Flex>>(y)
}

#[cfg(test)]
mod tests {
    use burn::nn::PaddingConfig2d;
    use burn::nn::pool::MaxPool2dConfig;
    use burn::prelude::*;

    use super::forward;
    use crate::ops::test_util::{assert_close, tensor};

    fn assert_matches_burn(kernel: usize, stride: usize, pad: usize) {
        let pool = MaxPool2dConfig::new([kernel, kernel])
            .with_strides([stride, stride])
            .with_padding(PaddingConfig2d::Explicit(pad, pad, pad, pad))
            .init();
        let device = Device::flex().autodiff();
        let run = |ours: bool| {
            let x = tensor([2, 3, 9, 8], 1, &device).require_grad();
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
        let what = format!("max pool {kernel}x{kernel}/{stride} pad {pad}");
        assert_close(&ours[0], &burns[0], 0.0, &format!("{what} output"));
        assert_close(&ours[1], &burns[1], 1e-6, &format!("{what} input grad"));
    }

    #[test]
    fn matches_burn_forward_and_backward() {
        assert_matches_burn(3, 2, 1);
        assert_matches_burn(3, 1, 1);
        assert_matches_burn(2, 2, 0);
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
