//! Batch norm, optionally followed by ReLU, as one op: per-channel statistics in one parallel
//! pass and the normalisation in another, instead of Burn's default of a dozen element-wise
//! passes and transposing copies; at inference, one fused multiply-add per value.

pub(crate) mod kernels;

use burn::backend::Flex;
use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::checkpoint::strategy::NoCheckpointing;
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops, OpsKind};
use burn::backend::autodiff::{Autodiff, NodeId};
use burn::backend::flex::FlexTensor;
use burn::nn::BatchNorm;
use burn::prelude::*;
use burn::tensor::TensorData;
use burn::tensor::activation::relu as burn_relu;

use super::{Route, contiguous, f32s, flex_tensor, host_f32, operand, route};
use kernels::{Layout, Saved};

/// `norm(x)`, then ReLU when `relu`, exactly as `BatchNorm::forward` (batch statistics and a
/// running-statistics update in training, running statistics otherwise).
pub fn forward(norm: &BatchNorm, x: Tensor<4>, relu: bool) -> Tensor<4> {
    let training = x.device().is_autodiff() && norm.training.is_enabled();
    let operands = [
        operand(&x),
        operand(&norm.gamma.val()),
        operand(&norm.beta.val()),
    ];
    match (training, route(&operands)) {
        (true, Route::TrackedFlex) => train(norm, x, relu),
        (false, Route::Flex) => infer(norm, x, relu),
        _ => {
            let y = norm.forward(x);
            if relu { burn_relu(y) } else { y }
        }
    }
}

fn layout(x: &Tensor<4>) -> Layout {
    let [batch, channels, h, w] = x.dims();
    Layout {
        batch,
        channels,
        plane: h * w,
    }
}

/// Inference: `x · γ/√(σ²+ε) + (β − μ·γ/√(σ²+ε))` per channel, one pass.
fn infer(norm: &BatchNorm, x: Tensor<4>, relu: bool) -> Tensor<4> {
    let l = layout(&x);
    let (scale, shift) = inference_affine(norm);
    let x = contiguous(&x.try_into_primitive::<Flex>().expect("routed as flex"));
    let y = kernels::affine(f32s(&x), &scale, &shift, relu, &l);
    Tensor::from_primitive::<Flex>(flex_tensor(y, dims(&l, &x)))
}

/// The batch norm at inference as a per-channel affine map `(scale, shift)`:
/// `γ/√(σ²+ε)` and `β − μ·γ/√(σ²+ε)`, with the running statistics.
pub fn inference_affine(norm: &BatchNorm) -> (Vec<f32>, Vec<f32>) {
    let (gamma, beta) = (host_f32(norm.gamma.val()), host_f32(norm.beta.val()));
    let (mean, var) = (
        host_f32(norm.running_mean.value()),
        host_f32(norm.running_var.value()),
    );
    let inv_std = inv_std(norm, &var);
    scale_shift(&gamma, &beta, &mean, &inv_std)
}

fn dims(l: &Layout, x: &FlexTensor) -> [usize; 4] {
    let shape = burn::backend::TensorMetadata::shape(x);
    [l.batch, l.channels, shape[2], shape[3]]
}

/// `1/√(σ² + ε)` per channel.
pub(crate) fn inv_std(norm: &BatchNorm, var: &[f32]) -> Vec<f32> {
    var.iter()
        .map(|v| 1.0 / (v + norm.epsilon as f32).sqrt())
        .collect()
}

pub(crate) fn scale_shift(
    gamma: &[f32],
    beta: &[f32],
    mean: &[f32],
    inv_std: &[f32],
) -> (Vec<f32>, Vec<f32>) {
    let scale: Vec<f32> = gamma.iter().zip(inv_std).map(|(g, s)| g * s).collect();
    let shift = beta
        .iter()
        .zip(mean)
        .zip(&scale)
        .map(|((b, m), s)| b - m * s)
        .collect();
    (scale, shift)
}

type Tracked = Autodiff<Flex>;

#[derive(Debug)]
struct BatchNormBackward;

impl Backward<Flex, 3> for BatchNormBackward {
    type State = (NodeId, Layout, Saved);

    fn backward(
        self,
        ops: Ops<Self::State, 3>,
        grads: &mut Gradients,
        checkpointer: &mut Checkpointer,
    ) {
        let dy = contiguous(&grads.consume::<Flex>(&ops.node));
        let (x_id, l, saved) = ops.state;
        let x = contiguous(&checkpointer.retrieve_node_output::<FlexTensor>(x_id));
        let (dx, dgamma, dbeta) = kernels::backward(f32s(&x), f32s(&dy), &saved, &l);
        let [x_node, gamma_node, beta_node] = ops.parents;
        if let Some(node) = x_node {
            grads.register::<Flex>(node.id, flex_tensor(dx, dims(&l, &x)));
        }
        if let Some(node) = gamma_node {
            grads.register::<Flex>(node.id, flex_tensor(dgamma, [l.channels]));
        }
        if let Some(node) = beta_node {
            grads.register::<Flex>(node.id, flex_tensor(dbeta, [l.channels]));
        }
    }
}

/// Training: batch statistics, one autodiff op, and the running statistics updated as
/// Burn's `BatchNorm` does.
fn train(norm: &BatchNorm, x: Tensor<4>, relu: bool) -> Tensor<4> {
    let l = layout(&x);
    let device = x.device();
    let (gamma, beta) = (host_f32(norm.gamma.val()), host_f32(norm.beta.val()));
    let tracked = |t: Tensor<1>| {
        t.try_into_primitive::<Tracked>()
            .expect("routed as tracked flex")
    };
    let x = x
        .try_into_primitive::<Tracked>()
        .expect("routed as tracked flex");
    let (gamma_t, beta_t) = (tracked(norm.gamma.val()), tracked(norm.beta.val()));

    let input = contiguous(x.primitive());
    let (mean, var) = kernels::channel_stats(f32s(&input), &l);
    let inv_std = inv_std(norm, &var);
    let (scale, shift) = scale_shift(&gamma, &beta, &mean, &inv_std);
    let output = flex_tensor(
        kernels::affine(f32s(&input), &scale, &shift, relu, &l),
        dims(&l, &input),
    );
    let saved = Saved {
        gamma,
        mean: mean.clone(),
        inv_std,
        scale,
        shift,
        relu,
    };

    let y = match BatchNormBackward
        .prepare::<NoCheckpointing>([x.node(), gamma_t.node(), beta_t.node()])
        .compute_bound()
        .stateful()
    {
        OpsKind::Tracked(mut prep) => {
            let state = (prep.checkpoint(&x), l, saved);
            prep.finish(state, output)
        }
        OpsKind::UnTracked(prep) => prep.finish(output),
    };
    update_running(norm, mean, var, &device);
    Tensor::from_primitive::<Tracked>(y)
}

/// `running ← running·(1 − momentum) + batch·momentum`, for mean and (biased) variance.
pub(crate) fn update_running(norm: &BatchNorm, mean: Vec<f32>, var: Vec<f32>, device: &Device) {
    let blend = |running: Tensor<1>, batch: Vec<f32>| {
        let channels = batch.len();
        let batch = Tensor::<1>::from_data(TensorData::new(batch, [channels]), &running.device());
        running
            .mul_scalar(1.0 - norm.momentum)
            .add(batch.mul_scalar(norm.momentum))
            .detach()
    };
    let running_mean = norm.running_mean.value_sync().to_device(device);
    let running_var = norm.running_var.value_sync().to_device(device);
    norm.running_mean.update(blend(running_mean, mean));
    norm.running_var.update(blend(running_var, var));
}

#[cfg(test)]
mod tests;
