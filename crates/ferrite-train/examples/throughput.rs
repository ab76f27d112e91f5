//! Training and inference throughput of one model on random 48×48 batches, the same step the
//! trainer runs (forward, cross-entropy, backward, Adam update); for bench/train.sh.
//!
//!   throughput train MODEL BATCH STEPS WARMUP
//!   throughput infer  MODEL BATCH STEPS WARMUP
//!   throughput peak                      (multiply-adds/s of a large f32 matmul: the roofline)
//!
//! Prints one JSON line: images/s, median ms per batch, peak resident memory. With
//! `FERRITE_PRECISION=bf16` the convolutions' products run in bf16 and the framework is
//! reported as `ferrite-bf16`.

use std::time::Instant;

use burn::nn::loss::CrossEntropyLossConfig;
use burn::prelude::*;
use ferrite_data::{BatchConfig, ClassSet, FaceStore, Split};
use ferrite_models::{Architecture, ModelConfig};
use ferrite_train::{TrainConfig, optimizer, train_step};
use rand::{Rng, SeedableRng};

// The same allocator as the ferrite binary.
#[global_allocator]
static ALLOCATOR: ferrite_train::allocator::Allocator = ferrite_train::allocator::Allocator;

fn peak_rss_mb() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        .map_or(f64::NAN, |kb| kb / 1024.0)
}

fn random_store(images: usize) -> FaceStore {
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(7);
    let pixels = (0..images * 48 * 48).map(|_| rng.random::<u8>()).collect();
    let labels = (0..images).map(|_| rng.random_range(0..7u8)).collect();
    FaceStore::new(
        ClassSet::fer2013(),
        pixels,
        labels,
        vec![Split::Training; images],
        (0..images as u32).collect(),
    )
}

/// The practical compute ceiling of this machine for our backend: a 2048² f32 matmul
/// (AVX-512 gemm on all cores), best of 5, in multiply-adds per second.
fn peak_macs_per_second() -> f64 {
    let device = Device::flex();
    let n: usize = 2048;
    let a = Tensor::<2>::random([n, n], burn::tensor::Distribution::Default, &device);
    let b = Tensor::<2>::random([n, n], burn::tensor::Distribution::Default, &device);
    (0..6)
        .map(|_| {
            let started = Instant::now();
            let c = a.clone().matmul(b.clone());
            let _ = c.into_data().try_to_vec::<f32>();
            let seconds = started.elapsed().as_secs_f64();
            (n * n * n) as f64 / seconds
        })
        .skip(1)
        .fold(0.0, f64::max)
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    ferrite_train::allocator::keep_freed_memory();
    ferrite_models::pool::run_on_calling_thread()?;
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.first().map(String::as_str) == Some("peak") {
        println!("{{\"peak_gmacs\": {:.1}}}", peak_macs_per_second() / 1e9);
        return Ok(());
    }
    let [mode, model, batch, steps, warmup] = args.as_slice() else {
        return Err("usage: throughput train|infer MODEL BATCH STEPS WARMUP".into());
    };
    let architecture: Architecture = model.parse()?;
    let (batch, steps, warmup): (usize, usize, usize) =
        (batch.parse()?, steps.parse()?, warmup.parse()?);
    let store = random_store(batch);
    let rows: Vec<usize> = (0..batch).collect();
    // No augmentation: the peers get ready tensors too; bench/train.sh times a real epoch apart.
    let host = || {
        BatchConfig::new(batch)
            .for_evaluation()
            .host_batch(&store, &rows, 0, 0)
    };
    let mut times = Vec::new();
    if mode == "train" {
        let device = Device::flex().autodiff();
        let config = TrainConfig {
            model: architecture,
            ..TrainConfig::default()
        };
        let mut network = ModelConfig::new(architecture, 7).init(&device)?;
        let mut optim = optimizer(&config);
        let loss_fn = CrossEntropyLossConfig::new().init(&device);
        for step in 0..warmup + steps {
            let started = Instant::now();
            (network, _) = train_step(
                network,
                &mut optim,
                &loss_fn,
                host().to_device(&device),
                false,
                1e-3,
            );
            if step >= warmup {
                times.push(started.elapsed().as_secs_f64());
            }
        }
    } else {
        let device = Device::flex();
        let network = ModelConfig::new(architecture, 7).init(&device)?;
        for step in 0..warmup + steps {
            let started = Instant::now();
            let logits = network.forward(host().to_device(&device).images);
            let _ = logits
                .into_data()
                .try_to_vec::<f32>()
                .map_err(|e| format!("{e:?}"))?;
            if step >= warmup {
                times.push(started.elapsed().as_secs_f64());
            }
        }
    }
    let total: f64 = times.iter().sum();
    times.sort_by(f64::total_cmp);
    let network = ModelConfig::new(architecture, 7).init(&Device::flex())?;
    let framework = match ferrite_models::ops::precision() {
        ferrite_models::ops::Precision::Bf16 => "ferrite-bf16",
        ferrite_models::ops::Precision::F32 => "ferrite",
    };
    println!(
        "{{\"framework\": \"{framework}\", \"mode\": \"{mode}\", \"model\": \"{model}\", \"batch\": {batch}, \"params\": {}, \"macs\": {}, \"images_per_second\": {:.1}, \"median_ms\": {:.3}, \"peak_rss_mb\": {:.0}}}",
        network.trainable_params(),
        network.macs(48),
        (batch * times.len()) as f64 / total,
        times[times.len() / 2] * 1e3,
        peak_rss_mb()
    );
    Ok(())
}
