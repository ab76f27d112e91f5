//! The models' convolution: ferrite's own kernels where the tensors live on burn-flex (plain or
//! under autodiff), Burn's `conv2d` everywhere else.
//!
//! Why: on burn-flex 0.22.1 the convolution weight gradient is computed as a convolution with
//! the output gradient as kernel, after single-threaded layout copies, and was 5.8× slower than
//! PyTorch's (`docs/performance.md`, `bench/ops.sh`); the forward was 2.8× slower. Here the
//! forward and both gradients are each one matrix product per image ([`kernels`]), registered
//! with Burn's autodiff as one differentiable op ([`tracked`]).
//!
//! Covered: `f32`, `groups == 1` (any kernel, stride, padding, dilation) and depthwise
//! (`groups == in == out channels`). Set `FERRITE_CONV=burn` to use Burn's convolution
//! everywhere, for A/B benchmarks.

mod kernels;
mod tracked;

use std::sync::OnceLock;

use burn::backend::flex::FlexTensor;
use burn::backend::{DispatchDevice, Flex, GradientCheckpointingStrategy};
use burn::nn::PaddingConfig2d;
use burn::nn::conv::Conv2d;
use burn::prelude::*;
use burn::tensor::TensorData;
use burn::tensor::ops::ConvOptions;

pub use kernels::Geometry;

/// Applies `conv` to `x` (`[batch, channels, height, width]`), like `Conv2d::forward`.
pub fn forward(conv: &Conv2d, x: Tensor<4>) -> Tensor<4> {
    let padding = match conv.padding {
        PaddingConfig2d::Valid => [(0, 0), (0, 0)],
        PaddingConfig2d::Explicit(top, left, bottom, right) => [(top, bottom), (left, right)],
        // 'Same' padding depends on the input size; Burn's module works it out.
        PaddingConfig2d::Same => return conv.forward(x),
    };
    let options = ConvOptions::new_with_padding(conv.stride, padding, conv.dilation, conv.groups);
    conv2d(
        x,
        conv.weight.val(),
        conv.bias.as_ref().map(|b| b.val()),
        options,
    )
}

/// `burn::tensor::module::conv2d`, through ferrite's kernels where they apply.
pub fn conv2d(
    x: Tensor<4>,
    weight: Tensor<4>,
    bias: Option<Tensor<1>>,
    options: ConvOptions<2>,
) -> Tensor<4> {
    let route = route(&x, &weight, bias.as_ref());
    match (route, geometry(&x, &weight, &options)) {
        (Route::Flex, Some(g)) => plain(x, weight, bias, g),
        (Route::TrackedFlex, Some(g)) => tracked::conv2d(x, weight, bias, g),
        _ => burn::tensor::module::conv2d(x, weight, bias, options),
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Route {
    /// All operands are plain burn-flex tensors.
    Flex,
    /// All operands are burn-flex tensors under autodiff without gradient checkpointing.
    TrackedFlex,
    /// Anything else: Burn's own convolution.
    Burn,
}

fn burn_forced() -> bool {
    static FORCED: OnceLock<bool> = OnceLock::new();
    *FORCED.get_or_init(|| std::env::var("FERRITE_CONV").is_ok_and(|v| v == "burn"))
}

fn route(x: &Tensor<4>, weight: &Tensor<4>, bias: Option<&Tensor<1>>) -> Route {
    let of = |device: Device, dtype: burn::tensor::DType| -> Route {
        if dtype != burn::tensor::DType::F32 {
            return Route::Burn;
        }
        match device.as_dispatch() {
            DispatchDevice::Flex(_) => Route::Flex,
            DispatchDevice::Autodiff(ad)
                if ad.gradient_checkpointing_strategy()
                    == GradientCheckpointingStrategy::Disabled
                    && matches!(ad.clone().inner(), DispatchDevice::Flex(_)) =>
            {
                Route::TrackedFlex
            }
            _ => Route::Burn,
        }
    };
    if burn_forced() {
        return Route::Burn;
    }
    let first = of(x.device(), x.dtype());
    let same = of(weight.device(), weight.dtype()) == first
        && bias.is_none_or(|b| of(b.device(), b.dtype()) == first);
    if same { first } else { Route::Burn }
}

/// The geometry of a convolution the kernels cover, or `None` for Burn's.
fn geometry(x: &Tensor<4>, weight: &Tensor<4>, options: &ConvOptions<2>) -> Option<Geometry> {
    let [batch, in_channels, in_h, in_w] = x.dims();
    let [out_channels, per_group, kh, kw] = weight.dims();
    let dense = options.groups == 1 && per_group == in_channels;
    let depthwise = options.groups == in_channels && per_group == 1 && out_channels == in_channels;
    if !(dense || depthwise) {
        return None;
    }
    let out = |axis: usize, size: usize, kernel: usize| {
        let (begin, end) = options.padding[axis];
        let span = options.dilation[axis] * (kernel - 1) + 1;
        (size + begin + end)
            .checked_sub(span)
            .map(|room| room / options.stride[axis] + 1)
    };
    Some(Geometry {
        batch,
        in_channels,
        in_size: [in_h, in_w],
        out_channels,
        kernel: [kh, kw],
        stride: options.stride,
        pad: [options.padding[0].0, options.padding[1].0],
        dilation: options.dilation,
        out_size: [out(0, in_h, kh)?, out(1, in_w, kw)?],
        groups: options.groups,
    })
}

/// Forward pass on plain burn-flex tensors (inference).
fn plain(x: Tensor<4>, weight: Tensor<4>, bias: Option<Tensor<1>>, g: Geometry) -> Tensor<4> {
    let flex = |t: Tensor<4>| t.try_into_primitive::<Flex>().expect("routed as flex");
    let bias = bias.map(|b| b.try_into_primitive::<Flex>().expect("routed as flex"));
    let y = forward_flex(&flex(x), &flex(weight), bias.as_ref(), &g);
    Tensor::from_primitive::<Flex>(y)
}

/// The forward kernels on burn-flex primitives.
fn forward_flex(
    x: &FlexTensor,
    w: &FlexTensor,
    b: Option<&FlexTensor>,
    g: &Geometry,
) -> FlexTensor {
    let (x, w) = (contiguous(x), contiguous(w));
    let b = b.map(contiguous);
    let (x, w, b) = (f32s(&x), f32s(&w), b.as_ref().map(f32s));
    let y = if g.is_depthwise() {
        kernels::depthwise_forward(x, w, b, g)
    } else {
        kernels::dense_forward(x, w, b, g)
    };
    flex_tensor(y, [g.batch, g.out_channels, g.out_size[0], g.out_size[1]])
}

/// `t`, copied into row-major order if it is a strided view.
fn contiguous(t: &FlexTensor) -> FlexTensor {
    if t.as_slice::<f32>().is_some() {
        t.clone()
    } else {
        t.to_contiguous()
    }
}

fn f32s(t: &FlexTensor) -> &[f32] {
    t.as_slice::<f32>().expect("contiguous f32 tensor")
}

fn flex_tensor<const D: usize>(values: Vec<f32>, shape: [usize; D]) -> FlexTensor {
    FlexTensor::from_data(TensorData::new(values, shape))
}

#[cfg(test)]
mod tests;
