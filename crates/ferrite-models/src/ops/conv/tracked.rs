//! The convolution as one differentiable op of Burn's autodiff on burn-flex: the forward runs
//! ferrite's kernels and records the input and weight; the backward runs the gradient kernels.

use std::sync::atomic::{AtomicU32, Ordering};

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

use super::forward_flex;
use super::kernels::{self, Epilogue, Geometry};
use super::{channels_last, depthwise, direct, pointwise, winograd};
use crate::ops::{contiguous, f32s, flex_tensor, lane_sum, min_items, output};

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
        let output_grad = contiguous(&grads.consume::<Flex>(&ops.node));
        let (x_id, w_id, g, relu_output) = ops.state;
        let x = contiguous(&checkpointer.retrieve_node_output::<FlexTensor>(x_id));
        let w = contiguous(&checkpointer.retrieve_node_output::<FlexTensor>(w_id));
        let [x_node, w_node, bias_node] = [0, 1, 2].map(|i| ops.parents.get(i).cloned().flatten());
        let (masked, relu_bias_grad) = match relu_output {
            Some(y) => {
                let y = contiguous(&y);
                let (dy, db) = relu_grads(f32s(&output_grad), f32s(&y), &g, bias_node.is_some());
                (Some(dy), db)
            }
            None => (None, None),
        };
        let dy = masked.as_deref().unwrap_or_else(|| f32s(&output_grad));
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
    let forward = || forward_flex(x.primitive(), w.primitive(), &post, &g);

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

/// The gradient through a ReLU, `dy` where the output `y` is positive, else 0; and when
/// `bias`, its sum per channel (the bias's gradient) from the same pass, where a pass of its
/// own would read the whole gradient again. Summed as [`kernels::bias_grad`] sums: each plane,
/// then the planes of a channel image by image, so the result is the same to the bit.
fn relu_grads(dy: &[f32], y: &[f32], g: &Geometry, bias: bool) -> (Vec<f32>, Option<Vec<f32>>) {
    let (channels, plane) = (g.out_channels, g.out_plane());
    let image = channels * plane;
    // Each plane's sum, stored once by the task that masks the plane.
    let plane_sums: Vec<AtomicU32> = (0..if bias { g.batch * channels } else { 0 })
        .map(|_| AtomicU32::new(0))
        .collect();
    let masked = output::par_chunks(dy.len(), image, min_items(image), |n, out| {
        let at = n * image..n * image + out.len();
        mask_by_positive(out, &dy[at.clone()], &y[at]);
        if bias {
            for (c, map) in out.chunks_exact(plane).enumerate() {
                let sum = lane_sum(map, |v| v);
                plane_sums[n * channels + c].store(sum.to_bits(), Ordering::Relaxed);
            }
        }
    });
    let sum = |i: usize| f32::from_bits(plane_sums[i].load(Ordering::Relaxed));
    let db = bias.then(|| {
        (0..channels)
            .map(|c| (0..g.batch).map(|n| sum(n * channels + c)).sum())
            .collect()
    });
    (masked, db)
}

/// `out[i] = dy[i]` where `y[i] > 0`, else 0 (compiled for AVX-512 and AVX2: inside rayon's
/// closure it was baseline SSE2 code).
#[multiversion(targets = "simd")]
fn mask_by_positive(out: &mut [f32], dy: &[f32], y: &[f32]) {
    for ((o, &g), &v) in out.iter_mut().zip(dy).zip(y) {
        *o = if v > 0.0 { g } else { 0.0 };
    }
}
