//! mini-Xception (Arriaga, Valdenegro-Toro & Plöger 2017, "Real-time Convolutional Neural
//! Networks for Emotion and Gender Classification", Fig. 4): a fully convolutional net of
//! four residual depthwise-separable modules and global average pooling, about 60k parameters.
//!
//! ```text
//! 48² ─ conv 3×3, 8 ─ conv 3×3, 8 ─ 4 × module(16, 32, 64, 128) ─ conv 3×3, K ─ GAP ─ softmax
//! module(c):  ┌─ sep-conv 3×3, c ─ BN ─ ReLU ─ sep-conv 3×3, c ─ BN ─ max-pool 3×3/2 ─┐
//!          x ─┤                                                                      (+)
//!             └─ conv 1×1/2, c ─ BN ────────────────────────────────────────────────┘
//! ```

use burn::nn::conv::{Conv2d, Conv2dConfig};
use burn::nn::pool::{AdaptiveAvgPool2d, AdaptiveAvgPool2dConfig, MaxPool2d, MaxPool2dConfig};
use burn::nn::{BatchNorm, BatchNormConfig, PaddingConfig2d};
use burn::prelude::*;

use crate::blocks::{ConvBn, SeparableConvBn, conv_macs, flatten, out_side, pad1};
use crate::ops::{conv, max_pool};

#[derive(Module, Debug)]
pub struct MiniXception {
    stem1: ConvBn,
    stem2: ConvBn,
    modules: Vec<ResidualModule>,
    head: Conv2d,
    pool: AdaptiveAvgPool2d,
}

#[derive(Module, Debug)]
pub struct ResidualModule {
    shortcut: Conv2d,
    shortcut_norm: BatchNorm,
    separable1: SeparableConvBn,
    separable2: SeparableConvBn,
    pool: MaxPool2d,
}

impl ResidualModule {
    fn new(input: usize, output: usize, device: &Device) -> Self {
        Self {
            shortcut: Conv2dConfig::new([input, output], [1, 1])
                .with_stride([2, 2])
                .with_bias(false)
                .init(device),
            shortcut_norm: BatchNormConfig::new(output).init(device),
            separable1: SeparableConvBn::new([input, output], device),
            separable2: SeparableConvBn::new([output, output], device).without_relu(),
            pool: MaxPool2dConfig::new([3, 3])
                .with_strides([2, 2])
                .with_padding(pad1())
                .init(),
        }
    }

    fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        let residual =
            conv::forward_normalized(&self.shortcut, &self.shortcut_norm, x.clone(), false);
        let x = self.separable2.forward(self.separable1.forward(x));
        let x = max_pool::forward(&self.pool, x);
        x + residual
    }
}

impl MiniXception {
    pub fn new(num_classes: usize, device: &Device) -> Self {
        let valid = || PaddingConfig2d::Valid;
        let widths = [8, 16, 32, 64, 128];
        Self {
            stem1: ConvBn::new([1, 8], 3, 1, valid(), device),
            stem2: ConvBn::new([8, 8], 3, 1, valid(), device),
            modules: widths
                .windows(2)
                .map(|w| ResidualModule::new(w[0], w[1], device))
                .collect(),
            head: Conv2dConfig::new([128, num_classes], [3, 3])
                .with_padding(pad1())
                .init(device),
            pool: AdaptiveAvgPool2dConfig::new([1, 1]).init(),
        }
    }

    pub fn forward(&self, images: Tensor<4>) -> Tensor<2> {
        let mut x = self.stem2.forward(self.stem1.forward(images));
        for module in &self.modules {
            x = module.forward(x);
        }
        flatten(self.pool.forward(conv::forward(&self.head, x)))
    }

    pub fn macs(&self, side: usize) -> u64 {
        let s1 = out_side(side, 3, 1, 0);
        let mut s = out_side(s1, 3, 1, 0);
        let mut total = self.stem1.macs(s1) + self.stem2.macs(s);
        for module in &self.modules {
            let half = out_side(s, 1, 2, 0);
            total += module.separable1.macs(s)
                + module.separable2.macs(s)
                + conv_macs(&module.shortcut, half);
            s = half;
        }
        total + conv_macs(&self.head, s)
    }
}
