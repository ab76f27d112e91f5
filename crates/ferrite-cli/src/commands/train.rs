//! `ferrite train`: a TOML config (optional) with flags on top.

use std::path::PathBuf;

use anyhow::Context;
use burn::prelude::Device;
use clap::{Args, ValueEnum};
use ferrite_data::{AugmentConfig, Sampling, SplitPlan};
use ferrite_models::Architecture;
use ferrite_models::ops::Precision;
use ferrite_train::mining::{MiningPlan, run_hard_mining};
use ferrite_train::{OptimizerKind, RunOptions, Schedule, TrainConfig};

use super::dataset::DatasetArgs;

#[derive(Args)]
pub struct TrainArgs {
    #[command(flatten)]
    pub dataset: DatasetArgs,
    /// A TOML training config; flags override its keys.
    #[arg(long)]
    config: Option<PathBuf>,
    /// Output folder (default runs/<model>-<unix time>, or runs/sweep-<unix time> for a sweep).
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Continue the run in --out from its last checkpoint.
    #[arg(long, requires = "out")]
    resume: bool,
    /// seed-cnn, seed-wide, dexpression, mini-xception or vgg.
    #[arg(long)]
    model: Option<Architecture>,
    #[arg(long)]
    epochs: Option<usize>,
    #[arg(long)]
    batch_size: Option<usize>,
    #[arg(long, value_enum)]
    optimizer: Option<OptimizerArg>,
    #[arg(long, alias = "learning-rate")]
    lr: Option<f64>,
    #[arg(long)]
    weight_decay: Option<f64>,
    /// constant, step (÷10 every third of the run), cosine (1-epoch warm-up) or plateau
    /// (ReduceLROnPlateau factor 0.5, patience 2); the config file sets the details.
    #[arg(long, value_enum)]
    schedule: Option<ScheduleArg>,
    #[arg(long)]
    label_smoothing: Option<f32>,
    /// Matrix products in bf16 (CPUs with AVX-512 BF16; sums and weights stay f32) or f32.
    #[arg(long, value_enum)]
    precision: Option<PrecisionArg>,
    /// Train on FER+ vote distributions (with --ferplus).
    #[arg(long)]
    soft_labels: bool,
    /// Turn augmentation off (the default is the recipe's: flip, ±10°, 0.1 zoom, 0.1 shifts).
    #[arg(long)]
    no_augment: bool,
    /// Random crop padding in pixels, on top of the augmentation.
    #[arg(long)]
    random_crop: Option<usize>,
    /// Random-erasing probability, on top of the augmentation.
    #[arg(long)]
    random_erasing: Option<f32>,
    /// Draw classes equally often in each epoch.
    #[arg(long)]
    class_balanced: bool,
    /// Validate on a stratified random split of this fraction (Training + PublicTest pooled)
    /// instead of the official PublicTest.
    #[arg(long)]
    random_split: Option<f32>,
    #[arg(long)]
    input_side: Option<usize>,
    #[arg(long)]
    width: Option<f64>,
    #[arg(long)]
    dropout: Option<f64>,
    #[arg(long)]
    seed: Option<u64>,
    /// Early stopping after this many epochs without a better validation accuracy.
    #[arg(long)]
    patience: Option<usize>,
    /// Train on a seeded subset of this many training images (quick experiments, tests).
    #[arg(long)]
    limit_train: Option<usize>,
    /// Validate on a seeded subset of this many images.
    #[arg(long)]
    limit_validation: Option<usize>,
    /// Start from this saved model's weights.
    #[arg(long, value_name = "MODEL")]
    init_from: Option<PathBuf>,
    /// Train only on the data rows listed in this file (e.g. a hard set from `ferrite mine`).
    #[arg(long, value_name = "FILE")]
    train_rows: Option<PathBuf>,
    /// Hard-data mining: mine the misclassified training images, train on them, then
    /// train normally again to rebalance (--rounds, --hard-epochs, --rebalance-epochs).
    #[arg(long)]
    hard_mining: bool,
    /// Hard mining: start from this trained model instead of a first normal training.
    #[arg(long, value_name = "MODEL", requires = "hard_mining")]
    mine_from: Option<PathBuf>,
    #[arg(long, default_value_t = 1, requires = "hard_mining")]
    rounds: usize,
    #[arg(long, default_value_t = 2, requires = "hard_mining")]
    hard_epochs: usize,
    #[arg(long, default_value_t = 5, requires = "hard_mining")]
    rebalance_epochs: usize,
    /// Hard mining: keep at most this share of the misclassified images from any one class.
    #[arg(long, requires = "hard_mining")]
    hard_cap: Option<f64>,
    /// Hard mining: instead of a hard-only phase, train on all images with the hard ones
    /// oversampled to this share of each epoch (e.g. 0.5).
    #[arg(long, requires = "hard_mining")]
    hard_mix: Option<f64>,
    /// Where to train: `cpu` (burn-flex, all cores). GPU backends are not in this build.
    #[arg(long, default_value = "cpu")]
    pub device: String,
    /// Print one line per epoch, no progress bars.
    #[arg(long)]
    pub quiet: bool,
}

#[derive(Clone, Copy, ValueEnum)]
enum OptimizerArg {
    Adam,
    Adamw,
    Sgd,
}

#[derive(Clone, Copy, ValueEnum)]
enum PrecisionArg {
    F32,
    Bf16,
}

#[derive(Clone, Copy, ValueEnum)]
enum ScheduleArg {
    Constant,
    Step,
    Cosine,
    Plateau,
}

impl TrainArgs {
    /// The config file (or defaults) with every given flag applied.
    /// The device named by `--device`.
    pub fn device(&self) -> anyhow::Result<Device> {
        match self.device.to_ascii_lowercase().as_str() {
            "cpu" | "flex" => Ok(Device::flex()),
            other => anyhow::bail!(
                "device {other:?} is not available: this build trains on the CPU only (`--device cpu`); \
                 Burn's GPU backends are not compiled in"
            ),
        }
    }

    pub fn config(&self) -> anyhow::Result<TrainConfig> {
        // Resuming without --config continues with the run's own saved config.
        let saved = self
            .out
            .as_ref()
            .map(|out| out.join("config.toml"))
            .filter(|p| self.resume && p.is_file());
        let mut c = match self.config.as_ref().or(saved.as_ref()) {
            Some(path) => TrainConfig::load(path)?,
            None => TrainConfig::default(),
        };
        set(&mut c.model, self.model);
        set(&mut c.epochs, self.epochs);
        set(&mut c.batch_size, self.batch_size);
        set(&mut c.learning_rate, self.lr);
        set(&mut c.weight_decay, self.weight_decay);
        set(&mut c.label_smoothing, self.label_smoothing);
        set(&mut c.input_side, self.input_side);
        set(&mut c.width, self.width);
        set(&mut c.seed, self.seed);
        if let Some(optimizer) = self.optimizer {
            c.optimizer = match optimizer {
                OptimizerArg::Adam => OptimizerKind::Adam,
                OptimizerArg::Adamw => OptimizerKind::Adamw,
                OptimizerArg::Sgd => OptimizerKind::Sgd,
            };
        }
        if let Some(schedule) = self.schedule {
            c.schedule = match schedule {
                ScheduleArg::Constant => Schedule::Constant,
                ScheduleArg::Step => Schedule::Step {
                    step_size: c.epochs.div_ceil(3).max(1),
                    gamma: 0.1,
                },
                ScheduleArg::Cosine => Schedule::Cosine {
                    warmup_epochs: 1,
                    min_lr: 0.0,
                },
                ScheduleArg::Plateau => Schedule::ReduceOnPlateau {
                    factor: 0.5,
                    patience: 2,
                    min_lr: 1e-6,
                },
            };
        }
        if let Some(precision) = self.precision {
            c.precision = Some(match precision {
                PrecisionArg::F32 => Precision::F32,
                PrecisionArg::Bf16 => Precision::Bf16,
            });
        }
        if self.no_augment {
            c.augment = AugmentConfig::none();
        }
        set(&mut c.augment.random_crop_padding, self.random_crop);
        set(&mut c.augment.random_erasing, self.random_erasing);
        if self.class_balanced {
            c.sampling = Sampling::ClassBalanced;
        }
        if let Some(fraction) = self.random_split {
            c.split = SplitPlan::Random {
                validation_fraction: fraction,
                seed: c.seed,
            };
        }
        c.soft_labels |= self.soft_labels;
        c.dropout = self.dropout.or(c.dropout);
        c.patience = self.patience.or(c.patience);
        c.limit_train = self.limit_train.or(c.limit_train);
        c.limit_validation = self.limit_validation.or(c.limit_validation);
        c.init_from = self.init_from.clone().or(c.init_from);
        c.train_rows_file = self.train_rows.clone().or(c.train_rows_file);
        let (exclude, merge) = (self.dataset.exclude_list(), self.dataset.merge_list());
        if !exclude.is_empty() {
            c.exclude = exclude;
        }
        if !merge.is_empty() {
            c.merge = merge;
        }
        Ok(c)
    }
}

/// `runs/<name>-<unix time>`.
pub fn default_out(name: &str) -> PathBuf {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    PathBuf::from(format!("runs/{name}-{now}"))
}

fn set<T>(slot: &mut T, value: Option<T>) {
    if let Some(value) = value {
        *slot = value;
    }
}

pub fn run(args: &TrainArgs) -> anyhow::Result<()> {
    let config = args.config()?;
    let options = RunOptions {
        resume: args.resume,
        progress: !args.quiet,
        device: args.device()?,
    };
    let data = args.dataset.load_unmapped()?;
    let out = args
        .out
        .clone()
        .unwrap_or_else(|| default_out(config.model.name()));
    if args.hard_mining {
        let plan = MiningPlan {
            rounds: args.rounds,
            hard_epochs: args.hard_epochs,
            rebalance_epochs: args.rebalance_epochs,
            cap: args.hard_cap,
            mix: args.hard_mix,
        };
        let phases = run_hard_mining(
            &config,
            &plan,
            args.mine_from.as_deref(),
            &data,
            &out,
            &options,
        )?;
        for phase in &phases {
            let last = phase.history.last().map_or(0.0, |r| r.val_accuracy);
            println!(
                "{:<20} best val {:.2} %  last val {:.2} %  {}",
                phase.name,
                phase.best_accuracy * 100.0,
                last * 100.0,
                phase.run_dir.display()
            );
        }
        println!("summary: {}", out.join("hard-mining.md").display());
        return Ok(());
    }
    let outcome = ferrite_train::train(&config, &data, &out, &options)
        .with_context(|| format!("training into {}", out.display()))?;
    println!(
        "best validation accuracy {:.2} % (epoch {}), {:.0} s; run folder {}",
        outcome.best_accuracy * 100.0,
        outcome.best_epoch,
        outcome.seconds,
        outcome.run_dir.display()
    );
    println!("model: {}", outcome.run_dir.join("best.ferrite").display());
    Ok(())
}
