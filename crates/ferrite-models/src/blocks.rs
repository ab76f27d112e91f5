//! Building blocks shared by the models: conv + batch norm + ReLU, depthwise-separable conv,
//! and multiply-add counting.

use burn::nn::conv::{Conv2d, Conv2dConfig};
use burn::nn::{BatchNorm, BatchNormConfig, Linear, PaddingConfig2d};
use burn::prelude::*;

use crate::ops::conv;

/// 3×3 'same' padding that also works with stride 2 (48 → 24, as Keras's 'same').
pub fn pad1() -> PaddingConfig2d {
    PaddingConfig2d::Explicit(1, 1, 1, 1)
}

/// Conv → BatchNorm → ReLU (ReLU optional, for blocks that add a residual first).
#[derive(Module, Debug)]
pub struct ConvBn {
    pub conv: Conv2d,
    pub norm: BatchNorm,
    pub relu: bool,
}

impl ConvBn {
    pub fn new(
        channels: [usize; 2],
        kernel: usize,
        stride: usize,
        padding: PaddingConfig2d,
        device: &Device,
    ) -> Self {
        Self {
            // Batch norm follows, so the conv's bias would be redundant.
            conv: Conv2dConfig::new(channels, [kernel, kernel])
                .with_stride([stride, stride])
                .with_padding(padding)
                .with_bias(false)
                .init(device),
            norm: BatchNormConfig::new(channels[1]).init(device),
            relu: true,
        }
    }

    /// 3×3, padding 1.
    pub fn same(channels: [usize; 2], stride: usize, device: &Device) -> Self {
        Self::new(channels, 3, stride, pad1(), device)
    }

    pub fn without_relu(mut self) -> Self {
        self.relu = false;
        self
    }

    pub fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        conv::forward_normalized(&self.conv, &self.norm, x, self.relu)
    }

    pub fn macs(&self, out_side: usize) -> u64 {
        conv_macs(&self.conv, out_side)
    }
}

/// Depthwise 3×3 conv (one filter per channel) then pointwise 1×1 conv, then batch norm
/// (and ReLU unless disabled): Xception's separable convolution.
#[derive(Module, Debug)]
pub struct SeparableConvBn {
    pub depthwise: Conv2d,
    pub pointwise: Conv2d,
    pub norm: BatchNorm,
    pub relu: bool,
}

impl SeparableConvBn {
    pub fn new(channels: [usize; 2], device: &Device) -> Self {
        let [input, output] = channels;
        Self {
            depthwise: Conv2dConfig::new([input, input], [3, 3])
                .with_groups(input)
                .with_padding(pad1())
                .with_bias(false)
                .init(device),
            pointwise: Conv2dConfig::new([input, output], [1, 1])
                .with_bias(false)
                .init(device),
            norm: BatchNormConfig::new(output).init(device),
            relu: true,
        }
    }

    pub fn without_relu(mut self) -> Self {
        self.relu = false;
        self
    }

    pub fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        let x = conv::forward(&self.depthwise, x);
        conv::forward_normalized(&self.pointwise, &self.norm, x, self.relu)
    }

    pub fn macs(&self, out_side: usize) -> u64 {
        conv_macs(&self.depthwise, out_side) + conv_macs(&self.pointwise, out_side)
    }
}

/// Multiply-adds of a conv layer producing `out_side`² positions: one per weight per position.
pub fn conv_macs(conv: &Conv2d, out_side: usize) -> u64 {
    conv.weight.val().shape().num_elements() as u64 * (out_side * out_side) as u64
}

pub fn linear_macs(linear: &Linear) -> u64 {
    linear.weight.val().shape().num_elements() as u64
}

/// `[batch, c, h, w]` → `[batch, c·h·w]`.
pub fn flatten(x: Tensor<4>) -> Tensor<2> {
    let [batch, c, h, w] = x.dims();
    x.reshape([batch, c * h * w])
}

/// Output side of a conv or pool: ⌊(side + 2·pad − kernel) / stride⌋ + 1.
pub const fn out_side(side: usize, kernel: usize, stride: usize, pad: usize) -> usize {
    (side + 2 * pad - kernel) / stride + 1
}
