//! DeXpression (Burkert et al. 2015, arXiv 1509.05371, Fig. 2), adapted to 48×48 input.
//!
//! ```text
//!  48² ─ conv 5×5/2, 64 ─ max-pool 3×3/2 ─ BN ─ FeatEx ─ FeatEx ─ dropout ─ dense K ─ softmax
//!        24²              12²                   6²       3²
//! FeatEx:  ┌─ conv 1×1, 96 ─ conv 3×3, 208 ─┐
//!       x ─┤                                ├─ concat (272) ─ max-pool 3×3/2
//!          └─ max-pool 3×3/1 ─ conv 1×1, 64 ┘
//! ```
//! Under each layer its output side. The paper's local response normalisation is replaced by
//! batch norm, as in the recipe.

use burn::nn::conv::{Conv2d, Conv2dConfig};
use burn::nn::pool::{MaxPool2d, MaxPool2dConfig};
use burn::nn::{
    BatchNorm, BatchNormConfig, Dropout, DropoutConfig, Linear, LinearConfig, PaddingConfig2d,
};
use burn::prelude::*;

use crate::blocks::{conv_macs, flatten, linear_macs, out_side, pad1};
use crate::ops::{batch_norm, conv, dropout, max_pool, norm_pool};

const FEATEX_OUT: usize = 208 + 64;

#[derive(Module, Debug)]
pub struct DeXpression {
    stem_conv: Conv2d,
    stem_pool: MaxPool2d,
    stem_norm: BatchNorm,
    featex1: FeatEx,
    featex2: FeatEx,
    dropout: Dropout,
    output: Linear,
}

/// The parallel feature-extraction block of Fig. 2.
#[derive(Module, Debug)]
pub struct FeatEx {
    reduce: Conv2d,
    conv3x3: Conv2d,
    branch_pool: MaxPool2d,
    project: Conv2d,
    norm: BatchNorm,
    pool: MaxPool2d,
}

fn pool3x3(stride: usize) -> MaxPool2d {
    MaxPool2dConfig::new([3, 3])
        .with_strides([stride, stride])
        .with_padding(pad1())
        .init()
}

impl FeatEx {
    fn new(input: usize, device: &Device) -> Self {
        Self {
            reduce: Conv2dConfig::new([input, 96], [1, 1]).init(device),
            conv3x3: Conv2dConfig::new([96, 208], [3, 3])
                .with_padding(pad1())
                .init(device),
            branch_pool: pool3x3(1),
            project: Conv2dConfig::new([input, 64], [1, 1]).init(device),
            norm: BatchNormConfig::new(FEATEX_OUT).init(device),
            pool: pool3x3(2),
        }
    }

    fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        let deep = |x| conv::forward_relu(&self.conv3x3, conv::forward_relu(&self.reduce, x));
        let pooled = |x| conv::forward_relu(&self.project, max_pool::forward(&self.branch_pool, x));
        // At inference the branches run side by side: at batch 1 the pooled one is a few
        // single-threaded small ops that would leave the other core idle (`throughput infer
        // dexpression 1`: +11 %). Training keeps one order: with its autodiff graph built from
        // two threads, the same seed gave different losses from run to run.
        let (a, b) = if x.device().is_autodiff() {
            (deep(x.clone()), pooled(x))
        } else {
            rayon::join(|| deep(x.clone()), || pooled(x.clone()))
        };
        norm_pool::forward(&self.norm, &self.pool, [a, b])
    }

    fn macs(&self, side: usize) -> u64 {
        conv_macs(&self.reduce, side)
            + conv_macs(&self.conv3x3, side)
            + conv_macs(&self.project, side)
    }
}

impl DeXpression {
    pub fn new(num_classes: usize, input_side: usize, dropout: f64, device: &Device) -> Self {
        let side = Self::sides(input_side)[3];
        Self {
            stem_conv: Conv2dConfig::new([1, 64], [5, 5])
                .with_stride([2, 2])
                .with_padding(PaddingConfig2d::Explicit(2, 2, 2, 2))
                .init(device),
            stem_pool: pool3x3(2),
            stem_norm: BatchNormConfig::new(64).init(device),
            featex1: FeatEx::new(64, device),
            featex2: FeatEx::new(FEATEX_OUT, device),
            dropout: DropoutConfig::new(dropout).init(),
            output: LinearConfig::new(FEATEX_OUT * side * side, num_classes).init(device),
        }
    }

    /// Sides after the stem conv, the stem pool, FeatEx 1 and FeatEx 2.
    fn sides(input: usize) -> [usize; 4] {
        let conv = out_side(input, 5, 2, 2);
        let pool = out_side(conv, 3, 2, 1);
        let f1 = out_side(pool, 3, 2, 1);
        [conv, pool, f1, out_side(f1, 3, 2, 1)]
    }

    pub fn forward(&self, images: Tensor<4>) -> Tensor<2> {
        let x = max_pool::forward(&self.stem_pool, conv::forward_relu(&self.stem_conv, images));
        let x = batch_norm::forward(&self.stem_norm, x, false);
        let x = self.featex2.forward(self.featex1.forward(x));
        self.output
            .forward(dropout::forward(&self.dropout, flatten(x)))
    }

    pub fn macs(&self, side: usize) -> u64 {
        let [conv, pool, f1, _] = Self::sides(side);
        conv_macs(&self.stem_conv, conv)
            + self.featex1.macs(pool)
            + self.featex2.macs(f1)
            + linear_macs(&self.output)
    }
}

#[cfg(test)]
mod tests {
    use burn::module::{Param, RunningState};
    use burn::nn::conv::Conv2d;
    use burn::prelude::*;
    use burn::tensor::TensorData;
    use burn::tensor::activation::relu;

    use super::{DeXpression, FeatEx};
    use crate::blocks::flatten;
    use crate::ops::test_util::{assert_close, tensor};

    /// Fig. 2 through Burn's own layers, one op after another.
    fn burns_forward(m: &DeXpression, images: Tensor<4>) -> Tensor<2> {
        let featex = |f: &FeatEx, x: Tensor<4>| {
            let a = relu(f.conv3x3.forward(relu(f.reduce.forward(x.clone()))));
            let b = relu(f.project.forward(f.branch_pool.forward(x)));
            f.pool.forward(f.norm.forward(Tensor::cat(vec![a, b], 1)))
        };
        let x = m.stem_pool.forward(relu(m.stem_conv.forward(images)));
        let x = featex(&m.featex2, featex(&m.featex1, m.stem_norm.forward(x)));
        m.output.forward(flatten(x))
    }

    fn fixed<const D: usize>(
        dims: [usize; D],
        seed: u64,
        scale: f32,
        device: &Device,
    ) -> Param<Tensor<D>> {
        Param::from_tensor(tensor(dims, seed, device).mul_scalar(scale))
    }

    /// A DeXpression with every weight, bias, γ and β from the deterministic test values
    /// (Burn's initialisers draw from a generator that tests running in parallel share), γ of
    /// both signs.
    fn fixed_model(device: &Device) -> DeXpression {
        let mut m = DeXpression::new(7, 48, 0.0, device);
        let mut seed = 0;
        let mut next_seed = || {
            seed += 1;
            seed
        };
        let mut fix_conv = |c: &mut Conv2d| {
            let dims = c.weight.dims();
            let fan_in = (dims[1] * dims[2] * dims[3]) as f32;
            c.weight = fixed(dims, next_seed(), (3.0 / fan_in).sqrt(), device);
            c.bias = c
                .bias
                .as_ref()
                .map(|b| fixed(b.dims(), next_seed(), 0.1, device));
        };
        fix_conv(&mut m.stem_conv);
        for f in [&mut m.featex1, &mut m.featex2] {
            for c in [&mut f.reduce, &mut f.conv3x3, &mut f.project] {
                fix_conv(c);
            }
        }
        for (i, norm) in [&mut m.stem_norm, &mut m.featex1.norm, &mut m.featex2.norm]
            .into_iter()
            .enumerate()
        {
            let c = norm.gamma.dims();
            norm.gamma = fixed(c, 100 + 2 * i as u64, 1.5, device);
            norm.beta = fixed(c, 101 + 2 * i as u64, 0.5, device);
        }
        let dims = m.output.weight.dims();
        m.output.weight = fixed(dims, 200, (3.0 / dims[0] as f32).sqrt(), device);
        m.output.bias = m
            .output
            .bias
            .as_ref()
            .map(|b| fixed(b.dims(), 201, 0.1, device));
        m
    }

    /// Inference (ferrite's kernels, the FeatEx branches side by side, the fused tail) gives
    /// Burn's logits, with running statistics away from their defaults.
    #[test]
    fn inference_matches_burns_layers() {
        let device = Device::flex();
        let mut m = fixed_model(&device);
        for (seed, norm) in [&mut m.featex1.norm, &mut m.featex2.norm]
            .into_iter()
            .enumerate()
        {
            let c = norm.gamma.dims()[0];
            let seed = 10 * seed as u64;
            norm.running_mean = RunningState::new(tensor([c], seed + 2, &device).mul_scalar(0.1));
            norm.running_var =
                RunningState::new(tensor([c], seed + 3, &device).abs().add_scalar(0.5));
        }
        for batch in [1, 3] {
            let images = tensor([batch, 1, 48, 48], 4, &device);
            let ours = m.forward(images.clone()).into_data();
            let burns = burns_forward(&m, images).into_data();
            assert_close(&ours, &burns, 1e-4, &format!("logits, batch {batch}"));
        }
    }

    /// A training step (batch statistics, ferrite's tracked ops and fused tail) gives Burn's
    /// gradients for every layer's weights.
    #[test]
    fn training_gradients_match_burns_layers() {
        let device = Device::flex().autodiff();
        let m = fixed_model(&device);
        let images = tensor([6, 1, 48, 48], 4, &device);
        let weights = |m: &DeXpression| {
            let f = |f: &FeatEx| [&f.reduce, &f.conv3x3, &f.project].map(|c| c.weight.val());
            let [a, b, c] = f(&m.featex1);
            let [d, e, g] = f(&m.featex2);
            vec![m.stem_conv.weight.val(), a, b, c, d, e, g]
        };
        let norms = |m: &DeXpression| {
            [&m.stem_norm, &m.featex1.norm, &m.featex2.norm].map(|n| n.gamma.val())
        };
        let r = tensor([6, 7], 5, &device);
        let grads_of = |logits: Tensor<2>| {
            let grads = (logits * r.clone()).sum().backward();
            let grad = |t: Tensor<4>| t.grad(&grads).expect("weight gradient").into_data();
            let mut all: Vec<TensorData> = weights(&m).into_iter().map(grad).collect();
            all.extend(norms(&m).map(|g| g.grad(&grads).expect("γ gradient").into_data()));
            all.push(
                m.output
                    .weight
                    .val()
                    .grad(&grads)
                    .expect("dense")
                    .into_data(),
            );
            all
        };
        let ours = grads_of(m.forward(images.clone()));
        let burns = grads_of(burns_forward(&m, images));
        for (i, (o, b)) in ours.iter().zip(&burns).enumerate() {
            assert_close(o, b, 1e-4, &format!("gradient {i}"));
        }
    }
}
