//! ferrite's convolution against Burn's, forward and all three gradients, over the geometries
//! the models use and the edge cases around them.

use burn::prelude::*;
use burn::tensor::TensorData;
use burn::tensor::ops::ConvOptions;

use super::conv2d;
use crate::ops::test_util::{assert_close, tensor};
use crate::ops::{Route, operand, route};

struct Case {
    input: [usize; 4],
    out_channels: usize,
    kernel: [usize; 2],
    options: ConvOptions<2>,
    bias: bool,
}

impl Case {
    fn new(
        input: [usize; 4],
        out_channels: usize,
        kernel: usize,
        stride: usize,
        pad: usize,
    ) -> Self {
        Self {
            input,
            out_channels,
            kernel: [kernel, kernel],
            options: ConvOptions::new([stride, stride], [pad, pad], [1, 1], 1),
            bias: false,
        }
    }

    fn with_bias(mut self) -> Self {
        self.bias = true;
        self
    }

    fn depthwise(mut self) -> Self {
        self.options.groups = self.input[1];
        self
    }

    fn weight_shape(&self) -> [usize; 4] {
        let per_group = self.input[1] / self.options.groups;
        [self.out_channels, per_group, self.kernel[0], self.kernel[1]]
    }

    /// Output, and the gradients of Σ y·r with respect to x, w and b, with `conv`.
    fn run(
        &self,
        device: &Device,
        conv: impl Fn(Tensor<4>, Tensor<4>, Option<Tensor<1>>, ConvOptions<2>) -> Tensor<4>,
    ) -> Vec<TensorData> {
        let x = tensor(self.input, 1, device).require_grad();
        let w = tensor(self.weight_shape(), 2, device).require_grad();
        let b = self
            .bias
            .then(|| tensor([self.out_channels], 3, device).require_grad());
        let y = conv(x.clone(), w.clone(), b.clone(), self.options.clone());
        let r = tensor(y.dims(), 4, device);
        let grads = (y.clone() * r).sum().backward();
        let mut out = vec![y.into_data()];
        out.push(x.grad(&grads).expect("x has a gradient").into_data());
        out.push(w.grad(&grads).expect("w has a gradient").into_data());
        if let Some(b) = b {
            out.push(b.grad(&grads).expect("b has a gradient").into_data());
        }
        out
    }
}

fn assert_matches_burn(case: &Case) {
    let device = Device::flex().autodiff();
    let ours = case.run(&device, conv2d);
    let burns = case.run(&device, burn::tensor::module::conv2d);
    let names = ["output", "input grad", "weight grad", "bias grad"];
    for ((a, b), name) in ours.iter().zip(&burns).zip(names) {
        assert_close(a, b, 1e-5, &format!("{name}, input {:?}", case.input));
    }
}

#[test]
fn dense_same_padding_with_bias() {
    assert_matches_burn(&Case::new([3, 4, 7, 6], 5, 3, 1, 1).with_bias());
}

#[test]
fn dense_stride_two_single_image() {
    // One image: the matrix products run multithreaded instead of the images.
    assert_matches_burn(&Case::new([1, 3, 9, 8], 4, 3, 2, 1));
}

#[test]
fn dense_five_by_five_stride_two() {
    assert_matches_burn(&Case::new([2, 1, 12, 12], 6, 5, 2, 2).with_bias());
}

#[test]
fn dense_valid_padding() {
    assert_matches_burn(&Case::new([2, 3, 6, 6], 2, 3, 1, 0));
}

#[test]
fn pointwise_and_strided_pointwise() {
    assert_matches_burn(&Case::new([4, 6, 5, 5], 3, 1, 1, 0).with_bias());
    assert_matches_burn(&Case::new([4, 6, 5, 5], 3, 1, 2, 0));
}

#[test]
fn pointwise_groups_of_images() {
    // 1×1 convolutions on small maps as products over groups of images, on two threads
    // whatever the machine: 67 maps of 8² in groups of 5 (the last of 2), 20 of 6×5 in
    // groups of 10, with and without bias.
    let cases = [
        Case::new([67, 3, 8, 8], 5, 1, 1, 0).with_bias(),
        Case::new([20, 7, 6, 5], 4, 1, 1, 0),
    ];
    let pool = rayon::ThreadPoolBuilder::new().num_threads(2).build();
    pool.expect("a thread pool").install(|| {
        assert_chosen_and_matches_burn(&cases, super::pointwise::applies, "grouped pointwise");
    });
}

#[test]
fn dilated_asymmetric_padding() {
    let mut case = Case::new([2, 2, 9, 7], 3, 3, 1, 0);
    case.options = ConvOptions::new_with_padding([2, 1], [(1, 0), (2, 1)], [2, 2], 1);
    assert_matches_burn(&case);
}

#[test]
fn winograd_layer_matches_burn() {
    // A VGG-like layer, on the Winograd path end to end (winograd.rs tests the edge cases),
    // on two threads whatever the machine, so the batch fills them; enough tiles to repay
    // the filter transform.
    let case = Case::new([2, 64, 24, 23], 64, 3, 1, 1).with_bias();
    let pool = rayon::ThreadPoolBuilder::new().num_threads(2).build();
    pool.expect("a thread pool").install(|| {
        assert_chosen_and_matches_burn(&[case], super::winograd::applies, "Winograd");
    });
}

#[test]
fn forward_split_over_threads_matches_burn() {
    // Batch-1 inference splits each image's forward over the threads by output rows or by
    // output channels: odd heights, stride 2, more threads than output rows or channels, and
    // the bias + ReLU epilogue.
    use super::kernels::{Epilogue, dense_forward_split};
    use crate::ops::test_util::assert_close_values;
    let device = Device::flex();
    let cases = [
        (Case::new([1, 16, 48, 48], 16, 3, 2, 1), 2),
        (Case::new([1, 3, 9, 8], 4, 3, 2, 1), 3),
        (Case::new([2, 5, 7, 6], 3, 3, 1, 1), 2),
        (Case::new([1, 2, 5, 5], 3, 3, 2, 0), 4),
        (Case::new([1, 7, 6, 6], 13, 3, 1, 1), 2),
    ];
    for (case, threads) in cases {
        let x = tensor(case.input, 1, &device);
        let w = tensor(case.weight_shape(), 2, &device);
        let b = tensor([case.out_channels], 3, &device);
        let expected = burn::tensor::activation::relu(burn::tensor::module::conv2d(
            x.clone(),
            w.clone(),
            Some(b.clone()),
            case.options.clone(),
        ));
        let g = geometry_of(&case);
        let [x, w, b] = [x.into_data(), w.into_data(), b.into_data()]
            .map(|d| d.try_into_vec::<f32>().expect("f32"));
        let post = Epilogue {
            shift: Some(&b),
            relu: true,
            ..Epilogue::default()
        };
        let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build();
        let pool = pool.expect("a thread pool");
        let expected = expected.into_data().try_into_vec::<f32>().expect("f32");
        for by_channels in [false, true] {
            let ours = pool.install(|| dense_forward_split(&x, &w, &post, &g, by_channels));
            let what = format!("input {:?}, by channels {by_channels}", case.input);
            assert_close_values(&ours, &expected, 1e-5, &what);
        }
    }
}

fn geometry_of(case: &Case) -> super::kernels::Geometry {
    let device = Device::flex();
    let x = tensor(case.input, 1, &device);
    let w = tensor(case.weight_shape(), 2, &device);
    super::geometry(&x, &w, &case.options).expect("covered geometry")
}

#[test]
fn depthwise_same_and_strided() {
    assert_matches_burn(&Case::new([3, 6, 8, 7], 6, 3, 1, 1).depthwise());
    assert_matches_burn(&Case::new([2, 4, 9, 9], 4, 3, 2, 1).depthwise().with_bias());
}

#[test]
fn depthwise_stride_one_valid_and_wide_kernels() {
    assert_matches_burn(&Case::new([2, 3, 7, 9], 3, 3, 1, 0).depthwise());
    assert_matches_burn(&Case::new([1, 5, 6, 6], 5, 5, 1, 2).depthwise().with_bias());
    let mut case = Case::new([2, 2, 8, 5], 2, 3, 1, 0).depthwise();
    case.options = ConvOptions::new_with_padding([1, 1], [(0, 2), (1, 0)], [1, 1], 2);
    assert_matches_burn(&case);
}

#[test]
fn kernel_larger_than_padded_input_falls_back_to_burn() {
    let device = Device::flex();
    let x = tensor([1, 1, 2, 2], 1, &device);
    let w = tensor([1, 1, 3, 3], 2, &device);
    let geometry = super::geometry(&x, &w, &ConvOptions::new([1, 1], [0, 0], [1, 1], 1));
    assert!(geometry.is_none());
}

#[test]
fn routes_by_device() {
    let plain = Device::flex();
    let tracked = plain.clone().autodiff();
    let on = |d: &Device| (tensor([1, 1, 4, 4], 1, d), tensor([1, 1, 3, 3], 2, d));
    let (x, w) = on(&plain);
    assert_eq!(route(&[operand(&x), operand(&w)]), Route::Flex);
    let (xt, wt) = on(&tracked);
    assert_eq!(route(&[operand(&xt), operand(&wt)]), Route::TrackedFlex);
    assert_eq!(
        route(&[operand(&x), operand(&wt)]),
        Route::Burn,
        "mixed operands go to Burn"
    );
}

#[test]
fn plain_forward_matches_burn() {
    // Small, and (with AVX-512) batch-1 Winograd with cached filters, twice.
    let device = Device::flex();
    for (input, out, calls) in [([2, 3, 10, 10], 4, 1), ([1, 128, 12, 12], 136, 2)] {
        let x = tensor(input, 1, &device);
        let w = tensor([out, input[1], 3, 3], 2, &device);
        let options = ConvOptions::new([1, 1], [1, 1], [1, 1], 1);
        let burns = burn::tensor::module::conv2d(x.clone(), w.clone(), None, options.clone());
        for _ in 0..calls {
            let ours = conv2d(x.clone(), w.clone(), None, options.clone());
            let what = format!("input {input:?}");
            assert_close(&ours.into_data(), &burns.to_data(), 1e-4, &what);
        }
    }
}

#[test]
fn conv_batch_norm_relu_at_inference_matches_burn() {
    use burn::module::{Param, RunningState};
    use burn::nn::conv::Conv2dConfig;
    use burn::nn::{BatchNormConfig, PaddingConfig2d};
    use burn::tensor::activation::relu;

    let device = Device::flex();
    let conv = Conv2dConfig::new([3, 5], [3, 3])
        .with_stride([2, 2])
        .with_padding(PaddingConfig2d::Explicit(1, 1, 1, 1))
        .init(&device);
    let mut norm = BatchNormConfig::new(5).init(&device);
    norm.gamma = Param::from_tensor(tensor([5], 5, &device).add_scalar(1.5));
    norm.beta = Param::from_tensor(tensor([5], 6, &device));
    norm.running_mean = RunningState::new(tensor([5], 7, &device));
    norm.running_var = RunningState::new(tensor([5], 8, &device).abs().add_scalar(0.5));
    let x = tensor([2, 3, 9, 8], 1, &device);
    for fused_relu in [false, true] {
        let ours = super::forward_normalized(&conv, &norm, x.clone(), fused_relu);
        let burns = norm.forward(conv.forward(x.clone()));
        let burns = if fused_relu { relu(burns) } else { burns };
        let what = format!("conv + bn, relu {fused_relu}");
        assert_close(&ours.into_data(), &burns.into_data(), 1e-5, &what);
    }
}

#[test]
fn conv_relu_matches_burn_at_inference_and_in_training() {
    use burn::nn::PaddingConfig2d;
    use burn::nn::conv::Conv2dConfig;
    use burn::tensor::activation::relu;

    for device in [Device::flex(), Device::flex().autodiff()] {
        let conv = Conv2dConfig::new([3, 4], [3, 3])
            .with_padding(PaddingConfig2d::Explicit(1, 1, 1, 1))
            .init(&device);
        // Output, and in training the gradients of Σ y·r with respect to x, the weight and the
        // bias.
        let run = |ours: bool| {
            let x = tensor([2, 3, 7, 6], 1, &device);
            let x = if device.is_autodiff() {
                x.require_grad()
            } else {
                x
            };
            let y = if ours {
                super::forward_relu(&conv, x.clone())
            } else {
                relu(conv.forward(x.clone()))
            };
            let mut out = vec![y.clone().into_data()];
            if device.is_autodiff() {
                let grads = (y.clone() * tensor(y.dims(), 4, &device)).sum().backward();
                out.push(x.grad(&grads).expect("x has a gradient").into_data());
                let dw = conv.weight.grad(&grads).expect("w has a gradient");
                out.push(dw.into_data());
                // The bias's gradient comes from the ReLU mask's pass.
                let bias = conv.bias.as_ref().expect("a bias");
                out.push(bias.grad(&grads).expect("b has a gradient").into_data());
            }
            out
        };
        for (ours, burns) in run(true).iter().zip(&run(false)) {
            assert_close(ours, burns, 1e-5, &format!("conv + relu on {device:?}"));
        }
    }
}

/// Asserts that `chosen` picks the kernels under test for every case, then checks each
/// against Burn.
fn assert_chosen_and_matches_burn(
    cases: &[Case],
    chosen: fn(&super::kernels::Geometry) -> bool,
    kernels: &str,
) {
    for case in cases {
        assert!(chosen(&geometry_of(case)), "{kernels} for {:?}", case.input);
        assert_matches_burn(case);
    }
}

#[test]
fn direct_kernels_for_few_output_channels() {
    // At least 8 inputs to at most 8 outputs, a batch of more images than threads: the
    // direct kernels, with valid, same and wider padding, a partial block of outputs, odd
    // sizes, bias.
    let batch = rayon::current_num_threads() + 1;
    let cases = [
        Case::new([batch, 8, 11, 9], 8, 3, 1, 0),
        Case::new([batch, 9, 6, 7], 7, 3, 1, 1).with_bias(),
        Case::new([batch, 12, 5, 19], 3, 3, 1, 2),
    ];
    assert_chosen_and_matches_burn(&cases, super::direct::applies, "direct kernels");
}

#[test]
fn channels_last_gradients() {
    // Multiples of 16 inputs through 3×3 filters at a batch of more images than threads:
    // strides 1 and 2, same and valid padding (a last row and column no tap reads), dilation,
    // whole and partial tiles of 3 outputs, odd sizes, bias.
    let batch = rayon::current_num_threads() + 1;
    let mut dilated = Case::new([batch, 16, 9, 10], 4, 3, 1, 2);
    dilated.options.dilation = [2, 2];
    let cases = [
        Case::new([batch, 16, 9, 7], 6, 3, 2, 1),
        Case::new([batch, 32, 8, 8], 5, 3, 2, 0).with_bias(),
        Case::new([batch, 16, 6, 5], 7, 3, 1, 1),
        dilated,
    ];
    assert_chosen_and_matches_burn(
        &cases,
        super::channels_last::applies,
        "channels-last gradients",
    );
}

#[test]
fn direct_forward_at_stride_two() {
    // 3×3 stride-2 convolutions from at least 8 inputs at a batch of more images than threads:
    // same and valid padding, odd and even sizes, whole and partial blocks of 8 outputs, bias.
    let batch = rayon::current_num_threads() + 1;
    let cases = [
        Case::new([batch, 8, 9, 7], 5, 3, 2, 1),
        Case::new([batch, 16, 8, 8], 9, 3, 2, 0),
        Case::new([batch, 12, 13, 11], 16, 3, 2, 1).with_bias(),
    ];
    assert_chosen_and_matches_burn(
        &cases,
        super::direct::strided_applies,
        "the stride-2 direct forward",
    );
}
