//! Convolution: Winograd F(4×4, 3×3), F(3×3, 3×3) or F(2×2, 3×3) for dense 3×3 stride-1
//! convolutions ([`winograd`]; at inference on few tiles with each weight tensor's transformed
//! filters cached),
//! direct 3×3 kernels for those to few output channels, for stride-2 forwards and at inference
//! on batches smaller than the thread count ([`direct`]),
//! channels-last gradients of 3×3 convolutions from multiples of 16 channels
//! ([`channels_last`]), products over groups of images for 1×1 ones on small maps
//! ([`pointwise`]), im2col + one matrix product per image for the other dense ones
//! ([`kernels`]), whole-plane passes per kernel tap for depthwise ones ([`depthwise`]), one
//! autodiff op for training ([`tracked`]).
//!
//! Covered: `f32`, `groups == 1` (any kernel, stride, padding, dilation) and depthwise
//! (`groups == in == out channels`); everything else runs Burn's `conv2d`.

#[cfg(target_arch = "x86_64")]
mod bf16;
mod channels_last;
mod depthwise;
mod direct;
mod kernels;
mod pointwise;
mod tracked;
mod wide;
mod winograd;

use burn::backend::Flex;
use burn::backend::flex::FlexTensor;
use burn::nn::conv::Conv2d;
use burn::nn::{BatchNorm, PaddingConfig2d};
use burn::prelude::*;
use burn::tensor::activation;
use burn::tensor::ops::ConvOptions;

use super::batch_norm;
use super::{Route, contiguous, f32s, flex_tensor, host_f32, operand, route};
use kernels::{Epilogue, Geometry};

/// Applies `conv` to `x` (`[batch, channels, height, width]`), like `Conv2d::forward`.
pub fn forward(conv: &Conv2d, x: Tensor<4>) -> Tensor<4> {
    // 'Same' padding depends on the input size; Burn's module works it out.
    let Some(options) = options(conv) else {
        return conv.forward(x);
    };
    conv2d(
        x,
        conv.weight.val(),
        conv.bias.as_ref().map(|b| b.val()),
        options,
    )
}

/// `relu(conv(x))`. On burn-flex the ReLU is applied to each output map as the convolution
/// writes it, not in a pass (and an autodiff node) of its own; in training the backward masks
/// the output gradient with the output's zeros.
pub fn forward_relu(conv: &Conv2d, x: Tensor<4>) -> Tensor<4> {
    let Some(options) = options(conv) else {
        return activation::relu(conv.forward(x));
    };
    let bias = conv.bias.as_ref().map(|b| b.val());
    conv2d_then_relu(x, conv.weight.val(), bias, options, true)
}

/// `norm(conv(x))`, then ReLU when `relu`. At inference on burn-flex the batch norm (running
/// statistics) and the ReLU are applied to each output map as the convolution writes it, not
/// in passes of their own.
pub fn forward_normalized(conv: &Conv2d, norm: &BatchNorm, x: Tensor<4>, relu: bool) -> Tensor<4> {
    let training = x.device().is_autodiff() && norm.training.is_enabled();
    let fused = (!training && route(&[operand(&x), operand(&conv.weight.val())]) == Route::Flex)
        .then(|| options(conv))
        .flatten()
        .and_then(|options| geometry(&x, &conv.weight.val(), &options));
    let Some(g) = fused else {
        return batch_norm::forward(norm, forward(conv, x), relu);
    };
    let (scale, mut shift) = batch_norm::inference_affine(norm);
    if let Some(bias) = &conv.bias {
        // norm(y + b) = y·scale + (b·scale + shift)
        let bias = host_f32(bias.val());
        shift
            .iter_mut()
            .zip(&bias)
            .zip(&scale)
            .for_each(|((s, b), a)| *s += b * a);
    }
    let post = Epilogue {
        scale: Some(&scale),
        shift: Some(&shift),
        relu,
    };
    let flex = |t: Tensor<4>| t.try_into_primitive::<Flex>().expect("routed as flex");
    let (x, w) = (flex(x), flex(conv.weight.val()));
    Tensor::from_primitive::<Flex>(forward_flex(&x, &w, &post, &g, Filters::Fixed))
}

/// Whether this CPU has AVX-512F (checked once), which the hand-written intrinsic kernels need.
#[cfg(target_arch = "x86_64")]
pub(crate) fn has_avx512f() -> bool {
    static HAS: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *HAS.get_or_init(|| std::arch::is_x86_feature_detected!("avx512f"))
}

/// The options `Conv2d::forward` would use, or `None` for 'same' padding.
fn options(conv: &Conv2d) -> Option<ConvOptions<2>> {
    let padding = match conv.padding {
        PaddingConfig2d::Valid => [(0, 0), (0, 0)],
        PaddingConfig2d::Explicit(top, left, bottom, right) => [(top, bottom), (left, right)],
        PaddingConfig2d::Same => return None,
    };
    Some(ConvOptions::new_with_padding(
        conv.stride,
        padding,
        conv.dilation,
        conv.groups,
    ))
}

/// `burn::tensor::module::conv2d`, through ferrite's kernels where they apply.
pub fn conv2d(
    x: Tensor<4>,
    weight: Tensor<4>,
    bias: Option<Tensor<1>>,
    options: ConvOptions<2>,
) -> Tensor<4> {
    conv2d_then_relu(x, weight, bias, options, false)
}

/// [`conv2d`], then ReLU when `relu`: in the kernels' epilogue where they run the
/// convolution, as Burn's two ops where Burn does.
fn conv2d_then_relu(
    x: Tensor<4>,
    weight: Tensor<4>,
    bias: Option<Tensor<1>>,
    options: ConvOptions<2>,
    relu: bool,
) -> Tensor<4> {
    let mut operands = vec![operand(&x), operand(&weight)];
    operands.extend(bias.as_ref().map(operand));
    let route = route(&operands);
    match (route, geometry(&x, &weight, &options)) {
        (Route::Flex, Some(g)) => plain(x, weight, bias, relu, g),
        (Route::TrackedFlex, Some(g)) => tracked::conv2d(x, weight, bias, relu, g),
        _ => {
            let y = burn::tensor::module::conv2d(x, weight, bias, options);
            if relu { activation::relu(y) } else { y }
        }
    }
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

/// Forward pass on plain burn-flex tensors (inference), then ReLU when `relu`.
fn plain(
    x: Tensor<4>,
    weight: Tensor<4>,
    bias: Option<Tensor<1>>,
    relu: bool,
    g: Geometry,
) -> Tensor<4> {
    let flex = |t: Tensor<4>| t.try_into_primitive::<Flex>().expect("routed as flex");
    let bias = bias.map(|b| contiguous(&b.try_into_primitive::<Flex>().expect("routed as flex")));
    let post = Epilogue {
        shift: bias.as_ref().map(f32s),
        relu,
        ..Epilogue::default()
    };
    let (x, w) = (flex(x), flex(weight));
    Tensor::from_primitive::<Flex>(forward_flex(&x, &w, &post, &g, Filters::Fixed))
}

/// Whether a forward's filters stay the same from call to call (inference), so that kernels
/// may keep what they derive from them, or change with every step (training).
#[derive(Clone, Copy, PartialEq, Eq)]
enum Filters {
    Fixed,
    Trained,
}

/// The forward kernels on burn-flex primitives.
fn forward_flex(
    x: &FlexTensor,
    w: &FlexTensor,
    post: &Epilogue,
    g: &Geometry,
    filters: Filters,
) -> FlexTensor {
    let (x, w_tensor) = (contiguous(x), contiguous(w));
    let (x, w) = (f32s(&x), f32s(&w_tensor));
    let y = if g.is_depthwise() {
        depthwise::forward(x, w, post, g)
    } else if filters == Filters::Fixed && winograd::applies_at_inference(g) {
        winograd::infer(x, &w_tensor, post, g)
    } else if filters == Filters::Fixed && direct::applies_at_inference(g) {
        direct::infer(x, &w_tensor, post, g)
    } else if winograd::applies(g) {
        winograd::forward(x, w, post, g)
    } else if direct::applies(g) {
        direct::forward(x, w, post, g)
    } else if direct::strided_applies(g) {
        direct::strided_forward(x, w, post, g)
    } else if pointwise::applies(g) {
        pointwise::forward(x, w, post, g)
    } else {
        kernels::dense_forward(x, w, post, g)
    };
    flex_tensor(y, [g.batch, g.out_channels, g.out_size[0], g.out_size[1]])
}

#[cfg(test)]
mod tests;
