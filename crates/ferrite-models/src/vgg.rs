//! `vgg`: a modern VGG-style network for FER2013, after Khaireddin & Chen 2021 ("Facial
//! Emotion Recognition: State of the Art Performance on FER2013", 73.28 % single-model):
//! four stages of two conv–BN–ReLU layers (64, 128, 256, 512 channels × width), each closed
//! by 2×2 max-pool; then a dense head with dropout.
//!
//! ```text
//! 48² ─ [conv-BN-ReLU ×2, 64w] ─ pool ─ [×2, 128w] ─ pool ─ [×2, 256w] ─ pool ─ [×2, 512w] ─ pool
//!     ─ flatten (3²) ─ dense 512w ─ ReLU ─ dropout ─ dense K ─ softmax
//! ```

use burn::nn::pool::{MaxPool2d, MaxPool2dConfig};
use burn::nn::{Dropout, DropoutConfig, Linear, LinearConfig};
use burn::prelude::*;
use burn::tensor::activation::relu;

use crate::blocks::{ConvBn, flatten, linear_macs};
use crate::ops::{dropout, linear, max_pool};

#[derive(Module, Debug)]
pub struct Vgg {
    stages: Vec<[ConvBn; 2]>,
    pool: MaxPool2d,
    dense: Linear,
    dropout: Dropout,
    output: Linear,
}

impl Vgg {
    pub fn new(
        num_classes: usize,
        input_side: usize,
        width: f64,
        dropout: f64,
        device: &Device,
    ) -> Self {
        let scaled = |c: usize| ((c as f64 * width).round() as usize).max(4);
        let mut input = 1;
        let stages = [64, 128, 256, 512]
            .map(|c| {
                let c = scaled(c);
                let stage = [
                    ConvBn::same([input, c], 1, device),
                    ConvBn::same([c, c], 1, device),
                ];
                input = c;
                stage
            })
            .into();
        let side = input_side / 16;
        Self {
            stages,
            pool: MaxPool2dConfig::new([2, 2]).init(),
            dense: LinearConfig::new(input * side * side, scaled(512)).init(device),
            dropout: DropoutConfig::new(dropout).init(),
            output: LinearConfig::new(scaled(512), num_classes).init(device),
        }
    }

    pub fn forward(&self, images: Tensor<4>) -> Tensor<2> {
        let mut x = images;
        for [a, b] in &self.stages {
            x = max_pool::forward(&self.pool, b.forward(a.forward(x)));
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
        for [a, b] in &self.stages {
            total += a.macs(s) + b.macs(s);
            s /= 2;
        }
        total + linear_macs(&self.dense) + linear_macs(&self.output)
    }
}
