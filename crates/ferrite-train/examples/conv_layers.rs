//! Milliseconds per convolution layer of seed-cnn (all seven), VGG, DeXpression and
//! mini-Xception's stems at batch 64 (48×48 input; or BATCH): the forward as inference runs
//! it, and forward + both gradients as a training step runs them. Compare the
//! kernels with `FERRITE_KERNELS=im2col` (no Winograd) or `burn`.
//!
//!   conv_layers [REPS] [LAYER-SUBSTRING] [BATCH] [forward]
//!
//! With `forward`, only the forward column is measured (for profiling it). With `EVICT=1` in
//! the environment, both threads read 64 MB before each call, as the rest of a model's
//! forward evicts a layer's filters and buffers at batch 1.

use std::time::Instant;

use burn::prelude::*;
use burn::tensor::Distribution;
use burn::tensor::ops::ConvOptions;
use ferrite_models::ops::conv::conv2d;

#[global_allocator]
static ALLOCATOR: ferrite_train::allocator::Allocator = ferrite_train::allocator::Allocator;

mod common;
use common::median;

/// (name, input channels, output channels, side, kernel, stride, padding)
const LAYERS: [(&str, usize, usize, usize, usize, usize, usize); 25] = [
    ("seed 1→16 48²", 1, 16, 48, 3, 1, 1),
    ("seed 16→16/2 48²", 16, 16, 48, 3, 2, 1),
    ("seed 16→32 24²", 16, 32, 24, 3, 1, 1),
    ("seed 32→32/2 24²", 32, 32, 24, 3, 2, 1),
    ("seed 32→64 12²", 32, 64, 12, 3, 1, 1),
    ("seed 64→64/2 12²", 64, 64, 12, 3, 2, 1),
    ("seed 64→7 6²", 64, 7, 6, 3, 1, 1),
    ("wide 32→32 48²", 32, 32, 48, 3, 1, 1),
    ("vgg 1→64 48²", 1, 64, 48, 3, 1, 1),
    ("vgg 64→64 48²", 64, 64, 48, 3, 1, 1),
    ("vgg 64→128 24²", 64, 128, 24, 3, 1, 1),
    ("vgg 128→128 24²", 128, 128, 24, 3, 1, 1),
    ("vgg 128→256 12²", 128, 256, 12, 3, 1, 1),
    ("vgg 256→256 12²", 256, 256, 12, 3, 1, 1),
    ("vgg 256→512 6²", 256, 512, 6, 3, 1, 1),
    ("vgg 512→512 6²", 512, 512, 6, 3, 1, 1),
    ("dex stem 1→64 5×5/2 48²", 1, 64, 48, 5, 2, 2),
    ("dex featex1 96→208 12²", 96, 208, 12, 3, 1, 1),
    ("dex featex2 96→208 6²", 96, 208, 6, 3, 1, 1),
    ("dex featex1 reduce 64→96 1×1 12²", 64, 96, 12, 1, 1, 0),
    ("dex featex1 project 64→64 1×1 12²", 64, 64, 12, 1, 1, 0),
    ("dex featex2 reduce 272→96 1×1 6²", 272, 96, 6, 1, 1, 0),
    ("dex featex2 project 272→64 1×1 6²", 272, 64, 6, 1, 1, 0),
    ("mx stem 1→8 48²", 1, 8, 48, 3, 1, 0),
    ("mx stem 8→8 46²", 8, 8, 46, 3, 1, 0),
];

fn main() {
    common::set_up_like_ferrite();
    let reps: usize = common::arg(1, 5);
    let filter = std::env::args().nth(2).unwrap_or_default();
    let device = Device::flex().autodiff();
    let batch: usize = common::arg(3, 64);
    let forward_only = std::env::args().nth(4).is_some_and(|a| a == "forward");
    let evict = std::env::var_os("EVICT").map(|_| common::Eviction::new());
    println!("| layer | forward ms | fwd+bwd ms | GMAC/s (fwd+bwd, direct count) |");
    println!("|---|---|---|---|");
    let mut total = 0.0;
    for (name, cin, cout, side, k, stride, pad) in LAYERS {
        if !name.contains(&filter) {
            continue;
        }
        let x = Tensor::<4>::random([batch, cin, side, side], Distribution::Default, &device);
        // A first layer (one input channel: the image) needs no input gradient in a model.
        let x = if cin > 1 { x.require_grad() } else { x };
        let w =
            Tensor::<4>::random([cout, cin, k, k], Distribution::Default, &device).require_grad();
        // The forward alone as inference runs it, on the plain device.
        let plain = |t: &Tensor<4>| Tensor::<4>::from_data(t.to_data(), &Device::flex());
        let (x_plain, w_plain) = (plain(&x), plain(&w));
        let options = ConvOptions::new([stride, stride], [pad, pad], [1, 1], 1);
        let run = |backward: bool| {
            let (x, w) = match backward {
                true => (&x, &w),
                false => (&x_plain, &w_plain),
            };
            // As in a model's forward pass: a pool thread spins meanwhile.
            let _warm = ferrite_models::pool::Warm::start();
            if let Some(eviction) = &evict {
                eviction.run();
            }
            let start = Instant::now();
            let y = conv2d(x.clone(), w.clone(), None, options.clone());
            if backward {
                let grads = y.sum().backward();
                drop(grads);
            } else {
                let _ = y.into_data();
            }
            start.elapsed().as_secs_f64() * 1e3
        };
        run(true);
        let forward = median((0..reps).map(|_| run(false)).collect());
        let both = match forward_only {
            true => f64::NAN,
            false => median((0..reps).map(|_| run(true)).collect()),
        };
        let out = (side + 2 * pad - k) / stride + 1;
        let macs = (batch * cout * out * out * cin * k * k) as f64;
        total += both;
        println!(
            "| {name} | {forward:.3} | {both:.3} | {:.0} |",
            3.0 * macs / both / 1e6
        );
    }
    println!("| all | | {total:.1} | |");
}
