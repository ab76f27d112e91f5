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

use super::{Route, contiguous, f32s, flex_tensor, operand, route};

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
    /// For each output index on `axis`: its first input index inside the image and how many
    /// of its taps are inside (valid taps are consecutive, since the input index grows with
    /// the tap).
    fn spans(&self, axis: usize) -> Vec<(usize, usize)> {
        let (stride, dilation, pad) = (self.stride[axis], self.dilation[axis], self.pad[axis]);
        let size = self.in_size[axis] as isize;
        (0..self.out_size[axis])
            .map(|o| {
                let at = |k: usize| (o * stride + k * dilation) as isize - pad as isize;
                let mut valid = (0..self.kernel[axis]).filter(|&k| (0..size).contains(&at(k)));
                match valid.next() {
                    Some(first) => (at(first) as usize, 1 + valid.count()),
                    None => (0, 0),
                }
            })
            .collect()
    }

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
fn pool_planes(x: &[f32], w: &Window) -> (Vec<f32>, Vec<u32>) {
    let mut y = vec![0.0; w.planes * w.out_plane()];
    let mut at = vec![0u32; y.len()];
    let in_w = w.in_size[1];
    let (rows, cols) = (w.spans(0), w.spans(1));
    let [dy, dx] = w.dilation;
    y.par_chunks_mut(w.out_plane())
        .zip(at.par_chunks_mut(w.out_plane()))
        .enumerate()
        .for_each(|(p, (y, at))| {
            let plane = &x[p * w.in_plane()..(p + 1) * w.in_plane()];
            let outputs = y.iter_mut().zip(at.iter_mut());
            let windows = rows.iter().flat_map(|r| cols.iter().map(move |c| (r, c)));
            for ((y, at), (&(iy, ny), &(ix, nx))) in outputs.zip(windows) {
                if ny == 0 || nx == 0 {
                    (*y, *at) = (f32::NEG_INFINITY, u32::MAX);
                    continue;
                }
                let first = iy * in_w + ix;
                let (mut best, mut best_at) = (plane[first], first as u32);
                for a in 0..ny {
                    let row = (iy + a * dy) * in_w + ix;
                    for b in 0..nx {
                        let i = row + b * dx;
                        let v = plane[i];
                        // Written as selects, not a branch: random maxima mispredict.
                        let take = v > best || v.is_nan();
                        best = if take { v } else { best };
                        best_at = if take { i as u32 } else { best_at };
                    }
                }
                (*y, *at) = (best, best_at);
            }
        });
    (y, at)
}

/// Each output gradient added onto the input position its maximum came from.
fn unpool_grad(dy: &[f32], at: &[u32], w: &Window) -> Vec<f32> {
    let mut dx = vec![0.0; w.planes * w.in_plane()];
    dx.par_chunks_mut(w.in_plane())
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
