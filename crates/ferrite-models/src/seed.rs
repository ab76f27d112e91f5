//! The two CNNs of the classic FER2013 recipe.

use burn::nn::pool::{AdaptiveAvgPool2d, AdaptiveAvgPool2dConfig, MaxPool2d, MaxPool2dConfig};
use burn::nn::{Dropout, DropoutConfig, Linear, LinearConfig};
use burn::prelude::*;
use burn::tensor::activation::relu;

use crate::blocks::{ConvBn, SeparableConvBn, flatten, linear_macs};
use crate::ops::{dropout, linear, max_pool};

/// `seed-cnn`: the recipe's plain CNN. Seven 3×3 'same' convs, each followed by batch norm;
/// down-sampling by stride-2 convs (48 → 24 → 12 → 6); dropout after the second and third
/// stages; the seventh conv makes one map per class, global-averaged into the logits.
///
/// ```text
/// 48² ─ conv16 ─ conv16/2 ─ drop ─ conv32 ─ conv32/2 ─ drop ─ conv64 ─ conv64/2 ─ convK ─ GAP ─ softmax
/// ```
#[derive(Module, Debug)]
pub struct SeedCnn {
    convs: Vec<ConvBn>,
    dropout1: Dropout,
    dropout2: Dropout,
    head: ConvBn,
    pool: AdaptiveAvgPool2d,
}

impl SeedCnn {
    pub fn new(num_classes: usize, dropout: f64, device: &Device) -> Self {
        let convs = vec![
            ConvBn::same([1, 16], 1, device),
            ConvBn::same([16, 16], 2, device),
            ConvBn::same([16, 32], 1, device),
            ConvBn::same([32, 32], 2, device),
            ConvBn::same([32, 64], 1, device),
            ConvBn::same([64, 64], 2, device),
        ];
        Self {
            convs,
            dropout1: DropoutConfig::new(dropout).init(),
            dropout2: DropoutConfig::new(dropout).init(),
            head: ConvBn::same([64, num_classes], 1, device).without_relu(),
            pool: AdaptiveAvgPool2dConfig::new([1, 1]).init(),
        }
    }

    pub fn forward(&self, images: Tensor<4>) -> Tensor<2> {
        let mut x = images;
        for (i, conv) in self.convs.iter().enumerate() {
            x = conv.forward(x);
            if i == 1 {
                x = dropout::forward(&self.dropout1, x);
            }
            if i == 3 {
                x = dropout::forward(&self.dropout2, x);
            }
        }
        flatten(self.pool.forward(self.head.forward(x)))
    }

    pub fn macs(&self, side: usize) -> u64 {
        let sides = [side, side / 2, side / 2, side / 4, side / 4, side / 8];
        let convs: u64 = self.convs.iter().zip(sides).map(|(c, s)| c.macs(s)).sum();
        convs + self.head.macs(side / 8)
    }
}

/// `seed-wide`: the recipe's wider, deeper CNN. Five stages of a conv and a separable conv
/// (16, 32, 64, 128, 256 channels), each with batch norm, 2×2 max-pool and dropout 0.25;
/// then dense 128 and softmax.
#[derive(Module, Debug)]
pub struct SeedWide {
    stages: Vec<WideStage>,
    dense: Linear,
    dropout: Dropout,
    output: Linear,
    /// Feature-map side after the five pools, kept for counting multiply-adds.
    final_side: usize,
}

#[derive(Module, Debug)]
struct WideStage {
    conv: ConvBn,
    separable: SeparableConvBn,
    pool: MaxPool2d,
    dropout: Dropout,
}

impl SeedWide {
    pub fn new(num_classes: usize, input_side: usize, dropout: f64, device: &Device) -> Self {
        let widths = [16, 32, 64, 128, 256];
        let mut input = 1;
        let stages = widths
            .iter()
            .map(|&width| {
                let stage = WideStage {
                    conv: ConvBn::same([input, width], 1, device),
                    separable: SeparableConvBn::new([width, width], device),
                    pool: MaxPool2dConfig::new([2, 2]).init(),
                    dropout: DropoutConfig::new(0.25).init(),
                };
                input = width;
                stage
            })
            .collect();
        let final_side = (0..widths.len()).fold(input_side, |s, _| s / 2);
        Self {
            stages,
            dense: LinearConfig::new(256 * final_side * final_side, 128).init(device),
            dropout: DropoutConfig::new(dropout).init(),
            output: LinearConfig::new(128, num_classes).init(device),
            final_side,
        }
    }

    pub fn forward(&self, images: Tensor<4>) -> Tensor<2> {
        let mut x = images;
        for stage in &self.stages {
            let features = stage.separable.forward(stage.conv.forward(x));
            x = dropout::forward(&stage.dropout, max_pool::forward(&stage.pool, features));
        }
        let x = dropout::forward(
            &self.dropout,
            relu(linear::forward(&self.dense, flatten(x))),
        );
        linear::forward(&self.output, x)
    }

    pub fn macs(&self, side: usize) -> u64 {
        let mut s = side;
        let mut total = 0;
        for stage in &self.stages {
            total += stage.conv.macs(s) + stage.separable.macs(s);
            s /= 2;
        }
        debug_assert_eq!(s, self.final_side);
        total + linear_macs(&self.dense) + linear_macs(&self.output)
    }
}
