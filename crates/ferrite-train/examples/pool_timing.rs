//! Microseconds per DeXpression max pool at batch 1 on the inference device (3×3, pad 1):
//! the stem's 64 maps of 24² at stride 2, the FeatEx branch pools (64 × 12², 272 × 6²) at
//! stride 1, and the FeatEx tails (batch norm + pool, stride 2) on 272 × 12² and 272 × 6².
//!
//!   pool_timing [REPS]
use std::time::Instant;

use burn::nn::pool::MaxPool2dConfig;
use burn::nn::{BatchNormConfig, PaddingConfig2d};
use burn::prelude::*;
use burn::tensor::Distribution;
use ferrite_models::ops::{max_pool, norm_pool};

#[global_allocator]
static ALLOCATOR: ferrite_train::allocator::Allocator = ferrite_train::allocator::Allocator;

mod common;
use common::median;

fn main() {
    common::set_up_like_ferrite();
    let reps: usize = common::arg(1, 2001);
    let device = Device::flex();
    let time = |name: &str, f: &dyn Fn()| {
        f();
        let t = median(
            (0..reps)
                .map(|_| {
                    let _warm = ferrite_models::pool::Warm::start();
                    let start = Instant::now();
                    f();
                    start.elapsed().as_secs_f64() * 1e6
                })
                .collect(),
        );
        println!("| {name} | {t:.1} |");
    };
    println!("| pool | µs |");
    println!("|---|---|");
    for (channels, side, stride) in [(64, 24, 2), (64, 12, 1), (272, 6, 1)] {
        let pool = MaxPool2dConfig::new([3, 3])
            .with_strides([stride, stride])
            .with_padding(PaddingConfig2d::Explicit(1, 1, 1, 1))
            .init();
        let x = Tensor::<4>::random([1, channels, side, side], Distribution::Default, &device);
        time(
            &format!("max pool {channels} × {side}² /{stride}"),
            &|| {
                let _ = max_pool::forward(&pool, x.clone()).into_data();
            },
        );
    }
    for side in [12, 6] {
        let pool = MaxPool2dConfig::new([3, 3])
            .with_strides([2, 2])
            .with_padding(PaddingConfig2d::Explicit(1, 1, 1, 1))
            .init();
        let norm = BatchNormConfig::new(272).init(&device);
        let a = Tensor::<4>::random([1, 208, side, side], Distribution::Default, &device);
        let b = Tensor::<4>::random([1, 64, side, side], Distribution::Default, &device);
        time(&format!("norm + pool 272 × {side}² /2"), &|| {
            let _ = norm_pool::forward(&norm, &pool, [a.clone(), b.clone()]).into_data();
        });
    }
}
