//! ferrite's batch norm (+ ReLU) against Burn's `BatchNorm` (+ `relu`): output, gradients of
//! input, γ and β, the running statistics after a training step, and inference.

use burn::module::Param;
use burn::nn::{BatchNorm, BatchNormConfig};
use burn::prelude::*;
use burn::tensor::TensorData;
use burn::tensor::activation::relu;

use super::forward;
use crate::ops::test_util::{assert_close, tensor};

const SHAPE: [usize; 4] = [3, 5, 6, 4];

/// A batch norm over `SHAPE`'s channels with non-trivial γ and β.
fn norm(device: &Device) -> BatchNorm {
    let mut norm = BatchNormConfig::new(SHAPE[1]).init(device);
    norm.gamma = Param::from_tensor(tensor([SHAPE[1]], 7, device).add_scalar(1.5));
    norm.beta = Param::from_tensor(tensor([SHAPE[1]], 8, device));
    norm
}

/// Output and the gradients of Σ y·r for x, γ, β, then the running mean and variance.
fn train_step(fused_relu: bool, ours: bool) -> Vec<TensorData> {
    let device = Device::flex().autodiff();
    let norm = norm(&device);
    // Shift and scale the input so its statistics are far from 0 and 1.
    let x = tensor(SHAPE, 1, &device)
        .mul_scalar(3.0)
        .add_scalar(2.0)
        .require_grad();
    let y = if ours {
        forward(&norm, x.clone(), fused_relu)
    } else {
        let y = norm.forward(x.clone());
        if fused_relu { relu(y) } else { y }
    };
    let r = tensor(SHAPE, 4, &device);
    let grads = (y.clone() * r).sum().backward();
    let grad = |t: Tensor<1>| t.grad(&grads).expect("parameter gradient").into_data();
    vec![
        y.into_data(),
        x.grad(&grads).expect("input gradient").into_data(),
        grad(norm.gamma.val()),
        grad(norm.beta.val()),
        norm.running_mean.value().into_data(),
        norm.running_var.value().into_data(),
    ]
}

fn assert_train_matches_burn(fused_relu: bool) {
    let names = [
        "output",
        "input grad",
        "gamma grad",
        "beta grad",
        "running mean",
        "running var",
    ];
    let (ours, burns) = (train_step(fused_relu, true), train_step(fused_relu, false));
    for ((a, b), name) in ours.iter().zip(&burns).zip(names) {
        assert_close(a, b, 1e-5, &format!("{name}, relu {fused_relu}"));
    }
}

#[test]
fn training_matches_burn() {
    assert_train_matches_burn(false);
}

#[test]
fn training_with_relu_matches_burn() {
    assert_train_matches_burn(true);
}

#[test]
fn inference_matches_burn() {
    let device = Device::flex();
    let mut norm = norm(&device);
    norm.running_mean = burn::module::RunningState::new(tensor([SHAPE[1]], 9, &device));
    norm.running_var =
        burn::module::RunningState::new(tensor([SHAPE[1]], 10, &device).abs().add_scalar(0.5));
    let x = tensor(SHAPE, 1, &device);
    for fused_relu in [false, true] {
        let ours = forward(&norm, x.clone(), fused_relu);
        let burns = norm.forward(x.clone());
        let burns = if fused_relu { relu(burns) } else { burns };
        assert_close(
            &ours.into_data(),
            &burns.into_data(),
            1e-6,
            &format!("inference, relu {fused_relu}"),
        );
    }
}

#[test]
fn statistics_hold_for_a_large_mean_and_a_small_spread() {
    // Raw moments in f32 would lose the variance entirely here (mean² ≈ 1e6, variance 1e-4).
    let layout = super::kernels::Layout {
        batch: 3,
        channels: 2,
        plane: 37,
    };
    let x: Vec<f32> = (0..3 * 2 * 37)
        .map(|i| 1000.0 + 0.01 * ((i * 7919 % 101) as f32 / 50.0 - 1.0))
        .collect();
    let (mean, variance) = super::kernels::channel_stats(&x, &layout);
    for c in 0..2 {
        let values: Vec<f64> = (0..3)
            .flat_map(|n| &x[(n * 2 + c) * 37..][..37])
            .map(|&v| v as f64)
            .collect();
        let m = values.iter().sum::<f64>() / values.len() as f64;
        let v = values.iter().map(|x| (x - m) * (x - m)).sum::<f64>() / values.len() as f64;
        assert!((mean[c] as f64 - m).abs() < 1e-4, "mean {} vs {m}", mean[c]);
        assert!(
            (variance[c] as f64 - v).abs() < 1e-2 * v,
            "variance {} vs {v}",
            variance[c]
        );
    }
}
