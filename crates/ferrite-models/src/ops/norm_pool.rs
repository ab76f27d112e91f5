//! Concatenation, batch norm and max pooling as one op (DeXpression's FeatEx tail). Batch
//! norm maps each channel by `a·x + b`, and max pooling commutes with that map where `a ≥ 0`
//! (where `a < 0` it takes the minimum instead). So the op pools the parts themselves
//! (negated where `a < 0`) and normalises the pooled map, a quarter of the size after a
//! stride-2 pool: neither the concatenation nor the full-size normalised map is written. In
//! training `a` and `b` come from the parts' batch statistics, at inference from the running
//! ones. The training backward needs the full map's gradient only
//! where each window's maximum was: batch norm's two per-channel sums come from the pooled
//! map, and one pass per plane writes each part's input gradient.

use burn::backend::Flex;
use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::checkpoint::strategy::NoCheckpointing;
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops, OpsKind};
use burn::backend::autodiff::{Autodiff, NodeId};
use burn::backend::flex::FlexTensor;
use burn::nn::BatchNorm;
use burn::nn::pool::MaxPool2d;
use burn::prelude::*;
use multiversion::multiversion;
use rayon::prelude::*;

use super::batch_norm::kernels::{Layout, channel_stats};
use super::batch_norm::{self, inv_std, scale_shift, update_running};
use super::max_pool::{self, Unpool, Window, pool_plane_list};
use super::{
    Route, contiguous, f32s, flex_tensor, host_f32, lane_sums2, min_items, operand, output, route,
};

type Tracked = Autodiff<Flex>;

/// `pool(norm(cat([a, b], 1)))`, exactly as the three ops one after another, which run
/// instead where these kernels do not cover the operands.
pub fn forward(norm: &BatchNorm, pool: &MaxPool2d, [a, b]: [Tensor<4>; 2]) -> Tensor<4> {
    let training = a.device().is_autodiff() && norm.training.is_enabled();
    let ([batch, ca, h, w], [batch_b, cb, h_b, w_b]) = (a.dims(), b.dims());
    let fits = [batch, h, w] == [batch_b, h_b, w_b] && norm.gamma.dims() == [ca + cb];
    let window = max_pool::window(pool, [batch, ca + cb, h, w]);
    let operands = [
        operand(&a),
        operand(&b),
        operand(&norm.gamma.val()),
        operand(&norm.beta.val()),
    ];
    match (fits, training, window, route(&operands)) {
        (true, true, Some(window), Route::TrackedFlex) => train(norm, window, a, b),
        (true, false, Some(window), Route::Flex) => infer(norm, window, a, b),
        _ => max_pool::forward(
            pool,
            batch_norm::forward(norm, Tensor::cat(vec![a, b], 1), false),
        ),
    }
}

/// What the forward keeps for the backward.
#[derive(Debug, Clone)]
struct Saved {
    parts: [Layout; 2],
    window: Window,
    mean: Vec<f32>,
    inv_std: Vec<f32>,
    /// Batch norm's `a = γ/√(σ² + ε)` per channel.
    scale: Vec<f32>,
    /// Each window's maximum of the negated-where-`a < 0` input, and where it was.
    maxima: Vec<f32>,
    taps: Vec<u8>,
}

fn train(norm: &BatchNorm, window: Window, a: Tensor<4>, b: Tensor<4>) -> Tensor<4> {
    let device = a.device();
    let parts = part_layouts(&a, &b);
    let (gamma, beta) = (host_f32(norm.gamma.val()), host_f32(norm.beta.val()));
    let tracked = |t: Tensor<4>| {
        t.try_into_primitive::<Tracked>()
            .expect("routed as tracked flex")
    };
    let tracked_param = |t: Tensor<1>| {
        t.try_into_primitive::<Tracked>()
            .expect("routed as tracked flex")
    };
    let (a, b) = (tracked(a), tracked(b));
    let (gamma_t, beta_t) = (
        tracked_param(norm.gamma.val()),
        tracked_param(norm.beta.val()),
    );
    let inputs = [contiguous(a.primitive()), contiguous(b.primitive())];
    let inputs = [f32s(&inputs[0]), f32s(&inputs[1])];

    let (mut mean, mut var) = (Vec::new(), Vec::new());
    for (x, l) in inputs.iter().zip(&parts) {
        let (m, v) = channel_stats(x, l);
        mean.extend(m);
        var.extend(v);
    }
    let inv_std = inv_std(norm, &var);
    let (scale, shift) = scale_shift(&gamma, &beta, &mean, &inv_std);

    let planes = concatenated_planes(inputs, &parts);
    let (maxima, taps) = signed_maxima(&planes, &scale, &window, true);
    let y = normalised_maxima(&maxima, &scale, &shift, &parts, &window);
    let output = flex_tensor(y, pooled_dims(&parts, &window));
    let saved = Saved {
        parts,
        window,
        mean: mean.clone(),
        inv_std,
        scale,
        maxima,
        taps,
    };

    let y = match NormPoolBackward
        .prepare::<NoCheckpointing>([a.node(), b.node(), gamma_t.node(), beta_t.node()])
        .compute_bound()
        .stateful()
    {
        OpsKind::Tracked(mut prep) => {
            let inputs = [prep.checkpoint(&a), prep.checkpoint(&b)];
            prep.finish((inputs, saved), output)
        }
        OpsKind::UnTracked(prep) => prep.finish(output),
    };
    update_running(norm, mean, var, &device);
    Tensor::from_primitive::<Tracked>(y)
}

/// Inference: the running statistics' affine map applied to the pooled parts.
fn infer(norm: &BatchNorm, window: Window, a: Tensor<4>, b: Tensor<4>) -> Tensor<4> {
    let parts = part_layouts(&a, &b);
    let flex = |t: Tensor<4>| contiguous(&t.try_into_primitive::<Flex>().expect("routed as flex"));
    let inputs = [flex(a), flex(b)];
    let (scale, shift) = batch_norm::inference_affine(norm);
    let planes = concatenated_planes([f32s(&inputs[0]), f32s(&inputs[1])], &parts);
    let (maxima, _) = signed_maxima(&planes, &scale, &window, false);
    let y = normalised_maxima(&maxima, &scale, &shift, &parts, &window);
    Tensor::from_primitive::<Flex>(flex_tensor(y, pooled_dims(&parts, &window)))
}

/// Each window's maximum of every plane of the concatenation, negated first in the channels
/// whose `scale` is negative: then `|scale|·m + shift` is the maximum of `scale·x + shift`,
/// exactly (IEEE products are symmetric in sign, and rounding keeps order). With the winning
/// taps when `track`.
fn signed_maxima(
    planes: &[&[f32]],
    scale: &[f32],
    window: &Window,
    track: bool,
) -> (Vec<f32>, Vec<u8>) {
    let negated: Vec<bool> = (0..planes.len())
        .map(|p| scale[p % scale.len()] < 0.0)
        .collect();
    pool_plane_list(planes, Some(&negated), window, track)
}

/// `|scale|·m + shift` of [`signed_maxima`]' maxima `m`: the pooled, normalised map.
fn normalised_maxima(
    maxima: &[f32],
    scale: &[f32],
    shift: &[f32],
    parts: &[Layout; 2],
    window: &Window,
) -> Vec<f32> {
    let magnitude: Vec<f32> = scale.iter().map(|a| a.abs()).collect();
    let pooled = Layout {
        batch: parts[0].batch,
        channels: scale.len(),
        plane: window.out_plane(),
    };
    batch_norm::kernels::affine(maxima, &magnitude, shift, false, &pooled)
}

fn part_layouts(a: &Tensor<4>, b: &Tensor<4>) -> [Layout; 2] {
    [a.dims(), b.dims()].map(|[batch, channels, h, w]| Layout {
        batch,
        channels,
        plane: h * w,
    })
}

/// `[batch, channels of both parts, pooled height, pooled width]`.
fn pooled_dims(parts: &[Layout; 2], window: &Window) -> [usize; 4] {
    let [h, w] = window.out_size;
    [parts[0].batch, parts[0].channels + parts[1].channels, h, w]
}

/// The planes of the parts' concatenation along channels, in its order.
fn concatenated_planes<'a>(inputs: [&'a [f32]; 2], parts: &[Layout; 2]) -> Vec<&'a [f32]> {
    let plane = parts[0].plane.max(1);
    let channels = parts.map(|l| l.channels);
    output::in_concat_order(
        inputs.map(|x| x.chunks_exact(plane)).into(),
        &channels,
        parts[0].batch,
    )
}

#[derive(Debug)]
struct NormPoolBackward;

impl Backward<Flex, 4> for NormPoolBackward {
    type State = ([NodeId; 2], Saved);

    fn backward(
        self,
        ops: Ops<Self::State, 4>,
        grads: &mut Gradients,
        checkpointer: &mut Checkpointer,
    ) {
        let dy = contiguous(&grads.consume::<Flex>(&ops.node));
        let (ids, s) = ops.state;
        let inputs = ids.map(|id| contiguous(&checkpointer.retrieve_node_output::<FlexTensor>(id)));
        let (d_parts, dgamma, dbeta) = s.gradients(f32s(&dy), [f32s(&inputs[0]), f32s(&inputs[1])]);
        let [a_node, b_node, gamma_node, beta_node] = ops.parents;
        let [h, w] = s.window.in_size;
        for ((node, dx), l) in [a_node, b_node].into_iter().zip(d_parts).zip(&s.parts) {
            if let Some(node) = node {
                grads.register::<Flex>(node.id, flex_tensor(dx, [l.batch, l.channels, h, w]));
            }
        }
        let channels = s.scale.len();
        if let Some(node) = gamma_node {
            grads.register::<Flex>(node.id, flex_tensor(dgamma, [channels]));
        }
        if let Some(node) = beta_node {
            grads.register::<Flex>(node.id, flex_tensor(dbeta, [channels]));
        }
    }
}

impl Saved {
    /// The parts' input gradients, then γ's and β's, given the pooled output's `dy`.
    fn gradients(&self, dy: &[f32], inputs: [&[f32]; 2]) -> ([Vec<f32>; 2], Vec<f32>, Vec<f32>) {
        let (channels, batch) = (self.scale.len(), self.parts[0].batch);
        let out_plane = self.window.out_plane();
        // The full map's gradient is the pooled one moved onto each window's maximum, so its
        // sums (Σ g and Σ g·x̂) are the pooled map's, with x̂ = (±max − μ)/σ.
        let (dbeta, dgamma): (Vec<f32>, Vec<f32>) = (0..channels)
            .into_par_iter()
            .with_min_len(min_items(batch * out_plane))
            .map(|c| {
                let sign = if self.scale[c] < 0.0 { -1.0 } else { 1.0 };
                let (mut sum, mut dot) = (0.0f64, 0.0f64);
                for n in 0..batch {
                    let at = (n * channels + c) * out_plane..(n * channels + c + 1) * out_plane;
                    let (plane_sum, plane_dot) =
                        lane_sums2(&dy[at.clone()], &self.maxima[at], |g, m| {
                            (g, g * (sign * m - self.mean[c]))
                        });
                    sum += plane_sum as f64;
                    dot += plane_dot as f64;
                }
                (sum as f32, (dot as f32) * self.inv_std[c])
            })
            .unzip();

        // dx = a·(g − Σg/N − x̂·Σg·x̂/N): the dense terms per plane, then a·g where g is.
        let plane = self.parts[0].plane;
        let count = (batch * plane) as f32;
        let planes = concatenated_planes(inputs, &self.parts);
        let unpool = Unpool::new(&self.window);
        let d_parts = output::par_concat_planes(
            batch,
            self.parts.map(|l| l.channels),
            plane,
            unpool.stack,
            |n, stack| {
                let first = n * unpool.stack;
                for (i, dx) in stack.iter_mut().enumerate() {
                    let c = (first + i) % channels;
                    let mean_grad = dbeta[c] / count;
                    let slope = dgamma[c] * self.inv_std[c] / count;
                    let terms = [self.scale[c], mean_grad, self.mean[c], slope];
                    dense_input_grad(dx, planes[first + i], terms);
                }
                unpool.stack_onto(n, dy, &self.taps, stack, |i| {
                    self.scale[(first + i) % channels]
                });
            },
        );
        (d_parts, dgamma, dbeta)
    }
}

/// `dx = k·(−mean_grad − (x − mean)·slope)` over one plane: batch norm's input gradient
/// without its `k·g` term.
#[multiversion(targets = "simd")]
fn dense_input_grad(out: &mut [f32], x: &[f32], [k, mean_grad, mean, slope]: [f32; 4]) {
    for (o, &v) in out.iter_mut().zip(x) {
        *o = k * (-mean_grad - (v - mean) * slope);
    }
}

#[cfg(test)]
mod tests {
    use burn::module::{Param, RunningState};
    use burn::nn::pool::MaxPool2dConfig;
    use burn::nn::{BatchNormConfig, PaddingConfig2d};
    use burn::prelude::*;
    use burn::tensor::TensorData;
    use burn::tensor::activation::relu;

    use super::forward;
    use crate::ops::test_util::{assert_close, tensor};
    use crate::ops::{batch_norm, max_pool};

    /// Output, the gradients of Σ y·r for both parts, γ and β, then the running statistics,
    /// through the fused op or Burn's cat, batch norm and max pool.
    fn train_step(a: [usize; 4], cb: usize, stride: usize, fused: bool) -> Vec<TensorData> {
        train_step_with(a, cb, stride, fused, false)
    }

    /// [`train_step`], the inputs through a ReLU first when `relu` (ties of zeros in most
    /// windows, as after DeXpression's convolutions), the reference being ferrite's own
    /// batch norm and max pool.
    fn train_step_with(
        a: [usize; 4],
        cb: usize,
        stride: usize,
        fused: bool,
        relu: bool,
    ) -> Vec<TensorData> {
        let device = Device::flex().autodiff();
        let channels = a[1] + cb;
        let mut norm = BatchNormConfig::new(channels).init(&device);
        // γ of both signs: the channels where it is negative pool minima.
        norm.gamma = Param::from_tensor(tensor([channels], 7, &device).mul_scalar(2.0));
        norm.beta = Param::from_tensor(tensor([channels], 8, &device));
        let pool = MaxPool2dConfig::new([3, 3])
            .with_strides([stride, stride])
            .with_padding(PaddingConfig2d::Explicit(1, 1, 1, 1))
            .init();
        let x = |shape, seed| {
            tensor(shape, seed, &device)
                .mul_scalar(3.0)
                .add_scalar(1.0)
                .require_grad()
        };
        let (xa, xb) = (x(a, 1), x([a[0], cb, a[2], a[3]], 2));
        let inputs = || {
            let parts = [xa.clone(), xb.clone()];
            if relu {
                parts.map(burn::tensor::activation::relu)
            } else {
                parts
            }
        };
        let y = if fused {
            forward(&norm, &pool, inputs())
        } else if relu {
            let [a, b] = inputs();
            let normed = crate::ops::batch_norm::forward(&norm, Tensor::cat(vec![a, b], 1), false);
            crate::ops::max_pool::forward(&pool, normed)
        } else {
            pool.forward(norm.forward(Tensor::cat(vec![xa.clone(), xb.clone()], 1)))
        };
        let r = tensor(y.dims(), 4, &device);
        let grads = (y.clone() * r).sum().backward();
        let grad = |t: Tensor<1>| t.grad(&grads).expect("parameter gradient").into_data();
        let input_grad = |t: &Tensor<4>| t.grad(&grads).expect("input gradient").into_data();
        vec![
            y.into_data(),
            input_grad(&xa),
            input_grad(&xb),
            grad(norm.gamma.val()),
            grad(norm.beta.val()),
            norm.running_mean.value().into_data(),
            norm.running_var.value().into_data(),
        ]
    }

    fn assert_matches_burn(a: [usize; 4], cb: usize, stride: usize) {
        let names = [
            "output",
            "first part's grad",
            "second part's grad",
            "gamma grad",
            "beta grad",
            "running mean",
            "running var",
        ];
        let (ours, burns) = (
            train_step(a, cb, stride, true),
            train_step(a, cb, stride, false),
        );
        for ((o, b), name) in ours.iter().zip(&burns).zip(names) {
            let what = format!("{name}, {a:?} + {cb} channels, stride {stride}");
            assert_close(o, b, 1e-4, &what);
        }
    }

    #[test]
    fn matches_cat_batch_norm_and_max_pool() {
        assert_matches_burn([3, 5, 8, 8], 2, 2);
        assert_matches_burn([3, 5, 7, 6], 3, 2);
        assert_matches_burn([2, 4, 6, 6], 2, 1);
    }

    #[test]
    fn ties_of_zeros_go_where_the_unfused_ops_send_them() {
        for stride in [1, 2] {
            let a = [2, 6, 8, 8];
            let ours = train_step_with(a, 3, stride, true, true);
            let unfused = train_step_with(a, 3, stride, false, true);
            for (o, u) in ours.iter().zip(&unfused) {
                assert_close(o, u, 1e-5, &format!("ReLU'd inputs, stride {stride}"));
            }
        }
    }

    /// At inference (plain burn-flex tensors, running statistics) against Burn's three ops and
    /// ferrite's unfused ones, on ReLU'd inputs (ties of zeros) with γ of both signs.
    #[test]
    fn inference_matches_the_three_ops() {
        let device = Device::flex();
        let (ca, cb) = (6, 3);
        let mut norm = BatchNormConfig::new(ca + cb).init(&device);
        norm.gamma = Param::from_tensor(tensor([ca + cb], 7, &device).mul_scalar(2.0));
        norm.beta = Param::from_tensor(tensor([ca + cb], 8, &device));
        norm.running_mean = RunningState::new(tensor([ca + cb], 9, &device));
        norm.running_var = RunningState::new(tensor([ca + cb], 10, &device).abs().add_scalar(0.5));
        let part =
            |channels, seed| relu(tensor([2, channels, 8, 7], seed, &device).mul_scalar(3.0));
        let (a, b) = (part(ca, 1), part(cb, 2));
        for stride in [1, 2] {
            let pool = MaxPool2dConfig::new([3, 3])
                .with_strides([stride, stride])
                .with_padding(PaddingConfig2d::Explicit(1, 1, 1, 1))
                .init();
            let ours = forward(&norm, &pool, [a.clone(), b.clone()]).into_data();
            let cat = || Tensor::cat(vec![a.clone(), b.clone()], 1);
            let burns = pool.forward(norm.forward(cat())).into_data();
            let unfused = max_pool::forward(&pool, batch_norm::forward(&norm, cat(), false));
            let what = format!("inference, stride {stride}");
            assert_close(&ours, &burns, 1e-6, &format!("{what}, vs Burn"));
            assert_close(
                &ours,
                &unfused.into_data(),
                0.0,
                &format!("{what}, vs unfused"),
            );
        }
    }

    #[test]
    fn several_stacks_of_planes() {
        // 2 × 300 planes of 64 values: stacks of 256.
        assert_matches_burn([2, 200, 8, 8], 100, 2);
    }
}
