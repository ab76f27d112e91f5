//! `ferrite sweep`: one training setting varied over a list of values, repeated over seeds.

use clap::Args;
use ferrite_train::RunOptions;
use ferrite_train::sweep::{Axis, mean_std, run_sweep};

use super::train::{TrainArgs, default_out};

#[derive(Args)]
pub struct SweepArgs {
    #[command(flatten)]
    train: TrainArgs,
    /// Batch sizes to compare, e.g. 32,64,128.
    #[arg(long, value_delimiter = ',', conflicts_with_all = ["lrs", "models", "augment"])]
    batch_sizes: Vec<String>,
    /// Learning rates to compare, e.g. 1e-3,3e-4.
    #[arg(long, value_delimiter = ',', conflicts_with_all = ["models", "augment"])]
    lrs: Vec<String>,
    /// Models to compare, e.g. seed-cnn,dexpression.
    #[arg(long, value_delimiter = ',', conflicts_with = "augment")]
    models: Vec<String>,
    /// Augmentation on and/or off: on,off.
    #[arg(long, value_delimiter = ',')]
    augment: Vec<String>,
    /// Repeat each setting with this many seeds (seed, seed+1, …) and report mean ± std.
    #[arg(long, default_value_t = 1)]
    seeds: usize,
}

pub fn run(args: &SweepArgs) -> anyhow::Result<()> {
    let (axis, values) = [
        (Axis::BatchSize, &args.batch_sizes),
        (Axis::LearningRate, &args.lrs),
        (Axis::Model, &args.models),
        (Axis::Augment, &args.augment),
    ]
    .into_iter()
    .find(|(_, values)| !values.is_empty())
    .ok_or_else(|| {
        anyhow::anyhow!("name what to sweep: --batch-sizes, --lrs, --models or --augment")
    })?;
    let base = args.train.config()?;
    let options = RunOptions {
        resume: true,
        progress: !args.train.quiet,
        device: args.train.device()?,
    };
    let data = args.train.dataset.load_unmapped()?;
    let out = args
        .train
        .out
        .clone()
        .unwrap_or_else(|| default_out("sweep"));
    let runs = run_sweep(&base, axis, values, args.seeds, &data, &out, &options)?;
    println!(
        "{:<14} {:>6} {:>22}",
        axis.name(),
        "seeds",
        "best val accuracy"
    );
    for value in values {
        let accuracies: Vec<f64> = runs
            .iter()
            .filter(|r| &r.value == value)
            .map(|r| r.best_accuracy * 100.0)
            .collect();
        let (mean, std) = mean_std(&accuracies);
        println!(
            "{value:<14} {:>6} {:>14.2} ± {std:.2} %",
            accuracies.len(),
            mean
        );
    }
    println!(
        "table: {}  curves: {}",
        out.join("sweep.md").display(),
        out.join("sweep.png").display()
    );
    Ok(())
}
