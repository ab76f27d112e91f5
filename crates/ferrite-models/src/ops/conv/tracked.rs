//! The convolution as one differentiable op of Burn's autodiff on burn-flex: the forward runs
//! ferrite's kernels and records the input and weight; the backward runs the gradient kernels.

use burn::backend::Flex;
use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::checkpoint::strategy::NoCheckpointing;
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, ComputePropertyDone, Ops, OpsKind, OpsPrep};
use burn::backend::autodiff::{Autodiff, NodeId};
use burn::backend::flex::FlexTensor;
use burn::backend::tensor::FloatTensor;
use burn::prelude::*;
use multiversion::multiversion;
use rayon::prelude::*;

use super::kernels::{self, Epilogue, Geometry};
use super::{Filters, forward_flex};
use super::{channels_last, depthwise, direct, pointwise, winograd};
use crate::ops::{contiguous, f32s, flex_tensor, lane_sum, min_items};

type Tracked = Autodiff<Flex>;

/// The recorded input and weight, the shapes, and the output when a ReLU was fused in (its
/// zeros mask the gradient).
type State = (NodeId, NodeId, Geometry, Option<FlexTensor>);

/// Gradients of `conv(x, w) + b` with respect to its 2 (no bias) or 3 parents.
#[derive(Debug)]
struct ConvBackward;

impl<const N: usize> Backward<Flex, N> for ConvBackward {
    type State = State;

    fn backward(
        self,
        ops: Ops<Self::State, N>,
        grads: &mut Gradients,
        checkpointer: &mut Checkpointer,
    ) {
        let mut output_grad = contiguous(&grads.consume::<Flex>(&ops.node));
        let (x_id, w_id, g, relu_output) = ops.state;
        let x = contiguous(&checkpointer.retrieve_node_output::<FlexTensor>(x_id));
        let w = contiguous(&checkpointer.retrieve_node_output::<FlexTensor>(w_id));
        let [x_node, w_node, bias_node] = [0, 1, 2].map(|i| ops.parents.get(i).cloned().flatten());
        let relu_bias_grad = relu_output.map(|y| relu_grad(&mut output_grad, &contiguous(&y), &g));
        let dy = f32s(&output_grad);
        let (x, w) = (f32s(&x), f32s(&w));

        let in_shape = [g.batch, g.in_channels, g.in_size[0], g.in_size[1]];
        let w_shape = |per_group| [g.out_channels, per_group, g.kernel[0], g.kernel[1]];
        if winograd::applies(&g) {
            let (dx, dw) = winograd::gradients(x, w, dy, &g, x_node.is_some(), w_node.is_some());
            if let (Some(node), Some(dx)) = (&x_node, dx) {
                grads.register::<Flex>(node.id, flex_tensor(dx, in_shape));
            }
            if let (Some(node), Some(dw)) = (&w_node, dw) {
                grads.register::<Flex>(node.id, flex_tensor(dw, w_shape(g.in_channels)));
            }
        } else {
            if let Some(node) = x_node {
                let dx = if g.is_depthwise() {
                    depthwise::input_grad(w, dy, &g)
                } else if channels_last::applies(&g) {
                    channels_last::input_grad(w, dy, &g)
                } else if direct::applies(&g) {
                    direct::input_grad(w, dy, &g)
                } else if pointwise::applies(&g) {
                    pointwise::input_grad(w, dy, &g)
                } else {
                    kernels::dense_input_grad(w, dy, &g)
                };
                grads.register::<Flex>(node.id, flex_tensor(dx, in_shape));
            }
            if let Some(node) = w_node {
                let (dw, per_group) = if g.is_depthwise() {
                    (depthwise::weight_grad(x, dy, &g), 1)
                } else if channels_last::applies(&g) {
                    (channels_last::weight_grad(x, dy, &g), g.in_channels)
                } else if direct::applies(&g) {
                    (direct::weight_grad(x, dy, &g), g.in_channels)
                } else if pointwise::applies(&g) {
                    (pointwise::weight_grad(x, dy, &g), g.in_channels)
                } else {
                    (kernels::dense_weight_grad(x, dy, &g), g.in_channels)
                };
                grads.register::<Flex>(node.id, flex_tensor(dw, w_shape(per_group)));
            }
        }
        if let Some(node) = bias_node {
            let db = relu_bias_grad.unwrap_or_else(|| kernels::bias_grad(dy, &g));
            grads.register::<Flex>(node.id, flex_tensor(db, [g.out_channels]));
        }
    }
}

/// `conv(x, w) + b`, then ReLU when `relu`, on tensors under autodiff, with [`ConvBackward`]
/// as its gradient.
pub(super) fn conv2d(
    x: Tensor<4>,
    weight: Tensor<4>,
    bias: Option<Tensor<1>>,
    relu: bool,
    g: Geometry,
) -> Tensor<4> {
    let tracked = |t: Tensor<4>| {
        t.try_into_primitive::<Tracked>()
            .expect("routed as tracked flex")
    };
    let (x, w) = (tracked(x), tracked(weight));
    let b = bias.map(|b| {
        b.try_into_primitive::<Tracked>()
            .expect("routed as tracked flex")
    });
    let bias = b.as_ref().map(|b| contiguous(b.primitive()));
    let post = Epilogue {
        shift: bias.as_ref().map(f32s),
        relu,
        ..Epilogue::default()
    };
    let forward = || forward_flex(x.primitive(), w.primitive(), &post, &g, Filters::Trained);

    // The op's arity (2 or 3 parents) is part of its type, hence two `prepare`s.
    let y = match &b {
        Some(b) => {
            let prep = ConvBackward.prepare::<NoCheckpointing>([x.node(), w.node(), b.node()]);
            track(prep.compute_bound(), &x, &w, g, relu, forward)
        }
        None => {
            let prep = ConvBackward.prepare::<NoCheckpointing>([x.node(), w.node()]);
            track(prep.compute_bound(), &x, &w, g, relu, forward)
        }
    };
    Tensor::from_primitive::<Tracked>(y)
}

/// Runs the forward and, when a gradient is wanted, records the input and weight (and with a
/// fused ReLU, the output) for [`ConvBackward`].
fn track<const N: usize>(
    prep: OpsPrep<ConvBackward, Flex, State, NoCheckpointing, N, ComputePropertyDone>,
    x: &FloatTensor<Tracked>,
    w: &FloatTensor<Tracked>,
    g: Geometry,
    relu: bool,
    forward: impl Fn() -> FlexTensor,
) -> FloatTensor<Tracked> {
    match prep.stateful() {
        OpsKind::Tracked(mut prep) => {
            let y = forward();
            let state = (
                prep.checkpoint(x),
                prep.checkpoint(w),
                g,
                relu.then(|| y.clone()),
            );
            prep.finish(state, y)
        }
        OpsKind::UnTracked(prep) => prep.finish(forward()),
    }
}

/// The gradient through a ReLU: `dy` where the output `y` is positive, else 0, in place where
/// `dy` owns its values (no new tensor to allocate and zero); and its sum per channel, the
/// bias's gradient, from the same pass (a pass of its own would read the whole gradient
/// again). Summed as [`kernels::bias_grad`] sums: each plane, then a channel's planes image by
/// image, so the result is the same to the bit.
fn relu_grad(dy: &mut FlexTensor, y: &FlexTensor, g: &Geometry) -> Vec<f32> {
    let (channels, plane) = (g.out_channels, g.out_plane());
    let mut plane_sums = vec![0.0; g.batch * channels];
    let mut mask = |dy: &mut [f32]| {
        let image = channels * plane;
        dy.par_chunks_mut(image)
            .zip(f32s(y).par_chunks(image))
            .zip(plane_sums.par_chunks_mut(channels))
            .with_min_len(min_items(image))
            .for_each(|((dy, y), sums)| {
                mask_by_positive(dy, y);
                for (sum, map) in sums.iter_mut().zip(dy.chunks_exact(plane)) {
                    *sum = lane_sum(map, |v| v);
                }
            });
    };
    match owned_f32s(dy) {
        Some(values) => mask(values),
        None => {
            let mut values = f32s(dy).to_vec();
            mask(&mut values);
            *dy = flex_tensor(values, [g.batch, channels, g.out_size[0], g.out_size[1]]);
        }
    }
    (0..channels)
        .map(|c| (0..g.batch).map(|n| plane_sums[n * channels + c]).sum())
        .collect()
}

/// `t`'s values, mutable, when they are contiguous and no other tensor shares them.
fn owned_f32s(t: &mut FlexTensor) -> Option<&mut [f32]> {
    let (start, end) = t.layout().contiguous_offsets()?;
    t.try_storage_mut::<f32>()
        .map(|values| &mut values[start..end])
}

/// `dy[i] = 0` where `y[i] ≤ 0` (compiled for AVX-512 and AVX2: inside rayon's closure it
/// was baseline SSE2 code).
#[multiversion(targets = "simd")]
fn mask_by_positive(dy: &mut [f32], y: &[f32]) {
    for (g, &v) in dy.iter_mut().zip(y) {
        *g = if v > 0.0 { *g } else { 0.0 };
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ops::test_util::values;

    #[test]
    fn relu_grad_masks_in_place_only_what_it_owns() {
        let g = Geometry {
            batch: 3,
            in_channels: 1,
            in_size: [4, 5],
            out_channels: 2,
            kernel: [1, 1],
            stride: [1, 1],
            pad: [0, 0],
            dilation: [1, 1],
            out_size: [4, 5],
            groups: 1,
        };
        let shape = [3, 2, 4, 5];
        let (dy, y) = (values(120, 1), values(120, 2));
        let masked: Vec<f32> = dy
            .iter()
            .zip(&y)
            .map(|(&g, &v)| if v > 0.0 { g } else { 0.0 })
            .collect();
        let bias: Vec<f32> = kernels::bias_grad(&masked, &g);
        let y = flex_tensor(y, shape);
        // Shared: a new tensor, the other holder's values untouched.
        let mut shared = flex_tensor(dy.clone(), shape);
        let other = shared.clone();
        assert_eq!(relu_grad(&mut shared, &y, &g), bias);
        assert_eq!(f32s(&shared), &masked[..]);
        assert_eq!(f32s(&other), &dy[..]);
        // Owned: masked where it lies.
        let mut owned = flex_tensor(dy, shape);
        assert_eq!(relu_grad(&mut owned, &y, &g), bias);
        assert_eq!(f32s(&owned), &masked[..]);
    }
}
