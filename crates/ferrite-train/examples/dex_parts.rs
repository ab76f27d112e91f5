//! Milliseconds per part of a DeXpression training step at batch 64 (forward, then the
//! backward of a sum), each FeatEx's ops one by one and its tail (concatenation, batch norm,
//! max pool) as three ops and as ferrite's fused one. `ONLY=SUBSTRING` picks parts, `REPS`
//! sets the repetitions (15; the median is printed).
//!
//!   ONLY=tail dex_parts
use std::time::Instant;

use burn::nn::conv::Conv2dConfig;
use burn::nn::pool::MaxPool2dConfig;
use burn::nn::{BatchNormConfig, PaddingConfig2d};
use burn::prelude::*;
use burn::tensor::Distribution;
use ferrite_models::ops::{batch_norm, conv, max_pool, norm_pool};

#[global_allocator]
static ALLOCATOR: ferrite_train::allocator::Allocator = ferrite_train::allocator::Allocator;

mod common;
use common::median;

/// Prints the median ms of `f` as part `name` of the block at `side`², if `ONLY` picks it.
fn time(name: &str, side: usize, reps: usize, f: &dyn Fn() -> f64) {
    let name = &format!("{name} @{side}");
    if !name.contains(&std::env::var("ONLY").unwrap_or_default()) {
        return;
    }
    let reps = std::env::var("REPS")
        .ok()
        .and_then(|r| r.parse().ok())
        .unwrap_or(reps);
    f();
    let t = median((0..reps).map(|_| f()).collect());
    println!("| {name} | {t:.3} |");
}

fn main() {
    common::set_up_like_ferrite();
    let reps = 15;
    let device = Device::flex().autodiff();
    let b = 64;
    let pad = || PaddingConfig2d::Explicit(1, 1, 1, 1);
    let run = |x: Tensor<4>, f: &dyn Fn(Tensor<4>) -> Tensor<4>| {
        let _warm = ferrite_models::pool::Warm::start();
        let start = Instant::now();
        let y = f(x);
        let g = y.sum().backward();
        drop(g);
        start.elapsed().as_secs_f64() * 1e3
    };
    for (cin, side) in [(64usize, 12usize), (272, 6)] {
        let x = Tensor::<4>::random([b, cin, side, side], Distribution::Default, &device)
            .require_grad();
        let reduce = Conv2dConfig::new([cin, 96], [1, 1]).init(&device);
        let c3 = Conv2dConfig::new([96, 208], [3, 3])
            .with_padding(pad())
            .init(&device);
        let project = Conv2dConfig::new([cin, 64], [1, 1]).init(&device);
        let bpool = MaxPool2dConfig::new([3, 3])
            .with_strides([1, 1])
            .with_padding(pad())
            .init();
        let pool = MaxPool2dConfig::new([3, 3])
            .with_strides([2, 2])
            .with_padding(pad())
            .init();
        let norm = BatchNormConfig::new(272).init(&device);
        let x96 =
            Tensor::<4>::random([b, 96, side, side], Distribution::Default, &device).require_grad();
        let a = Tensor::<4>::random([b, 208, side, side], Distribution::Default, &device)
            .require_grad();
        let bb =
            Tensor::<4>::random([b, 64, side, side], Distribution::Default, &device).require_grad();
        let c272 = Tensor::<4>::random([b, 272, side, side], Distribution::Default, &device)
            .require_grad();
        println!("## FeatEx in {cin} at {side}²");
        time("reduce 1×1 + relu", side, reps, &|| {
            run(x.clone(), &|x| conv::forward_relu(&reduce, x))
        });
        time("conv 3×3 + relu", side, reps, &|| {
            run(x96.clone(), &|x| conv::forward_relu(&c3, x))
        });
        time("branch pool 3×3/1", side, reps, &|| {
            run(x.clone(), &|x| max_pool::forward(&bpool, x))
        });
        time("project 1×1 + relu", side, reps, &|| {
            run(x.clone(), &|x| conv::forward_relu(&project, x))
        });
        time("cat", side, reps, &|| {
            run(a.clone(), &|a| Tensor::cat(vec![a, bb.clone()], 1))
        });
        time("batch norm", side, reps, &|| {
            run(c272.clone(), &|x| batch_norm::forward(&norm, x, false))
        });
        time("pool 3×3/2", side, reps, &|| {
            run(c272.clone(), &|x| max_pool::forward(&pool, x))
        });
        time("tail unfused", side, reps, &|| {
            run(a.clone(), &|a| {
                max_pool::forward(
                    &pool,
                    batch_norm::forward(&norm, Tensor::cat(vec![a, bb.clone()], 1), false),
                )
            })
        });
        time("tail fused", side, reps, &|| {
            run(a.clone(), &|a| {
                norm_pool::forward(&norm, &pool, [a, bb.clone()])
            })
        });
        time("whole FeatEx", side, reps, &|| {
            run(x.clone(), &|x| {
                let a = conv::forward_relu(&c3, conv::forward_relu(&reduce, x.clone()));
                let b = conv::forward_relu(&project, max_pool::forward(&bpool, x));
                norm_pool::forward(&norm, &pool, [a, b])
            })
        });
        time("sum only", side, reps, &|| run(c272.clone(), &|x| x));
    }
    let img = Tensor::<4>::random([b, 1, 48, 48], Distribution::Default, &device);
    let stem = Conv2dConfig::new([1, 64], [5, 5])
        .with_stride([2, 2])
        .with_padding(PaddingConfig2d::Explicit(2, 2, 2, 2))
        .init(&device);
    let spool = MaxPool2dConfig::new([3, 3])
        .with_strides([2, 2])
        .with_padding(pad())
        .init();
    let snorm = BatchNormConfig::new(64).init(&device);
    let s24 = Tensor::<4>::random([b, 64, 24, 24], Distribution::Default, &device).require_grad();
    let s12 = Tensor::<4>::random([b, 64, 12, 12], Distribution::Default, &device).require_grad();
    println!("## stem");
    time("stem conv + relu", 24, reps, &|| {
        run(img.clone(), &|x| conv::forward_relu(&stem, x))
    });
    time("stem pool", 24, reps, &|| {
        run(s24.clone(), &|x| max_pool::forward(&spool, x))
    });
    time("stem norm", 24, reps, &|| {
        run(s12.clone(), &|x| batch_norm::forward(&snorm, x, false))
    });
}
