//! Milliseconds per batch-1 dense layer on the inference device, Burn's `Linear::forward`
//! against `ferrite_models::ops::linear::forward` (run under `FERRITE_PRECISION=bf16` for its
//! bf16 weights): VGG's 4608→512, with the weights warm in cache and cold (a 64 MB read on
//! both threads before each call, as the rest of a VGG forward evicts them). Each cell is the
//! better of two alternations' medians.
//!
//!   dense_timing [REPS]
use std::time::Instant;

use burn::nn::{Linear, LinearConfig};
use burn::prelude::*;
use burn::tensor::Distribution;

#[global_allocator]
static ALLOCATOR: ferrite_train::allocator::Allocator = ferrite_train::allocator::Allocator;

mod common;
use common::median;

fn main() {
    common::set_up_like_ferrite();
    let reps: usize = common::arg(1, 201);
    let device = Device::flex();
    let eviction = common::Eviction::new();
    println!("| layer | weights | Burn ms | ferrite ms |");
    println!("|---|---|---|---|");
    for [ins, outs] in [[4608, 512]] {
        let linear = LinearConfig::new(ins, outs).init(&device);
        let x = Tensor::<2>::random([1, ins], Distribution::Default, &device);
        for cold in [false, true] {
            let time = |ours: bool| {
                let once = |linear: &Linear| {
                    // As a model's forward does: a pool thread spins, ready for the tasks.
                    let _warm = ferrite_models::pool::Warm::start();
                    if cold {
                        eviction.run();
                    }
                    let start = Instant::now();
                    let y = if ours {
                        ferrite_models::ops::linear::forward(linear, x.clone())
                    } else {
                        linear.forward(x.clone())
                    };
                    let _ = y.into_data();
                    start.elapsed().as_secs_f64() * 1e3
                };
                median((0..reps).map(|_| once(&linear)).collect())
            };
            // Alternating, so both see the same machine.
            let (mut burn, mut ours) = (f64::INFINITY, f64::INFINITY);
            for _ in 0..2 {
                burn = burn.min(time(false));
                ours = ours.min(time(true));
            }
            let state = if cold { "cold" } else { "warm" };
            println!("| {ins}→{outs} | {state} | {burn:.3} | {ours:.3} |");
        }
    }
}
