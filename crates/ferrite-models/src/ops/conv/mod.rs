//! Convolution: im2col + one matrix product per image for dense convolutions, direct row
//! loops for depthwise ones ([`kernels`]), one autodiff op for training ([`tracked`]).
//!
//! Covered: `f32`, `groups == 1` (any kernel, stride, padding, dilation) and depthwise
//! (`groups == in == out channels`); everything else runs Burn's `conv2d`.

mod kernels;
mod tracked;

use burn::backend::Flex;
use burn::backend::flex::FlexTensor;
use burn::nn::PaddingConfig2d;
use burn::nn::conv::Conv2d;
use burn::prelude::*;
use burn::tensor::ops::ConvOptions;

use super::{Route, contiguous, f32s, flex_tensor, operand, route};
use kernels::Geometry;

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
    let mut operands = vec![operand(&x), operand(&weight)];
    operands.extend(bias.as_ref().map(operand));
    let route = route(&operands);
    match (route, geometry(&x, &weight, &options)) {
        (Route::Flex, Some(g)) => plain(x, weight, bias, g),
        (Route::TrackedFlex, Some(g)) => tracked::conv2d(x, weight, bias, g),
        _ => burn::tensor::module::conv2d(x, weight, bias, options),
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

#[cfg(test)]
mod tests;
