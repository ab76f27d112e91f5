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
        let a = conv::forward_relu(&self.conv3x3, conv::forward_relu(&self.reduce, x.clone()));
        let b = conv::forward_relu(&self.project, max_pool::forward(&self.branch_pool, x));
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
