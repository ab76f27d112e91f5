//! `ferrite sweep`: the same training over a list of values (batch size, learning rate, model,
//! augmentation on/off), each setting repeated over seeds, run one after another, each in its
//! own run folder; then a comparison table (Markdown and CSV, mean ± std over seeds) and one
//! picture overlaying the validation curves.
//!
//! A sweep that is killed can be rerun with the same arguments: finished runs are read back
//! from their folders and an interrupted one resumes from its checkpoint.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use ferrite_data::{AugmentConfig, FaceStore};
use ferrite_models::saved::write_atomic;
use ferrite_viz::charts::{Series, line_panels};
use serde::{Deserialize, Serialize};

use crate::checkpoint;
use crate::trainer::{EpochRecord, RunOptions, train};
use crate::{TrainConfig, TrainError};

/// What a sweep varies.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Axis {
    BatchSize,
    LearningRate,
    Model,
    Augment,
}

impl Axis {
    pub fn name(self) -> &'static str {
        match self {
            Axis::BatchSize => "batch_size",
            Axis::LearningRate => "learning_rate",
            Axis::Model => "model",
            Axis::Augment => "augment",
        }
    }

    /// Sets this axis of `config` to `value` ("64", "3e-4", "vgg", "on"/"off").
    pub fn apply(self, config: &mut TrainConfig, value: &str) -> Result<(), TrainError> {
        let bad = |what: &str| TrainError::Config {
            origin: format!("sweep {}", self.name()),
            message: format!("{value:?} is not {what}"),
        };
        match self {
            Axis::BatchSize => {
                config.batch_size = value.parse().map_err(|_| bad("a batch size"))?
            }
            Axis::LearningRate => {
                config.learning_rate = value.parse().map_err(|_| bad("a learning rate"))?
            }
            Axis::Model => config.model = value.parse().map_err(|_| bad("a model name"))?,
            Axis::Augment => {
                config.augment = match value {
                    "on" => AugmentConfig::recipe(),
                    "off" => AugmentConfig::none(),
                    _ => return Err(bad("on or off")),
                }
            }
        }
        Ok(())
    }
}

/// One training run of a sweep.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SweepRun {
    pub value: String,
    pub seed: u64,
    pub run_dir: PathBuf,
    pub best_accuracy: f64,
    pub best_epoch: usize,
    pub seconds: f64,
    pub images_per_second: f64,
    pub history: Vec<EpochRecord>,
}

/// Runs every value × seed; seeds are `base.seed`, `base.seed + 1`, …
pub fn run_sweep(
    base: &TrainConfig,
    axis: Axis,
    values: &[String],
    seeds: usize,
    data: &FaceStore,
    out: &Path,
    options: &RunOptions,
) -> Result<Vec<SweepRun>, TrainError> {
    let mut runs = Vec::new();
    let total = values.len() * seeds.max(1);
    for value in values {
        for k in 0..seeds.max(1) as u64 {
            let mut config = base.clone();
            axis.apply(&mut config, value)?;
            config.seed = base.seed + k;
            let run_dir = out.join(format!(
                "{}-{}-seed{}",
                axis.name(),
                sanitize(value),
                config.seed
            ));
            eprintln!(
                "sweep run {}/{total}: {} = {value}, seed {}",
                runs.len() + 1,
                axis.name(),
                config.seed
            );
            let state = finished_state(&run_dir, &config);
            let (history, best_accuracy, best_epoch, seconds) = match state {
                Some(state) => {
                    eprintln!("  already finished in {}", run_dir.display());
                    (
                        state.history,
                        state.best_accuracy,
                        state.best_epoch,
                        state.seconds,
                    )
                }
                None => {
                    let options = RunOptions {
                        resume: true,
                        ..options.clone()
                    };
                    let outcome = train(&config, data, &run_dir, &options)?;
                    (
                        outcome.history,
                        outcome.best_accuracy,
                        outcome.best_epoch,
                        outcome.seconds,
                    )
                }
            };
            let images: f64 = history
                .iter()
                .map(|r| r.images_per_second * r.seconds)
                .sum();
            runs.push(SweepRun {
                value: value.clone(),
                seed: config.seed,
                run_dir,
                best_accuracy,
                best_epoch,
                seconds,
                images_per_second: images / seconds.max(1e-9),
                history,
            });
        }
    }
    write_summary(axis, &runs, out)?;
    Ok(runs)
}

/// The state of a run that has written its report with this same config, if any.
fn finished_state(run_dir: &Path, config: &TrainConfig) -> Option<checkpoint::TrainState> {
    if !run_dir.join("report.md").is_file() {
        return None;
    }
    let state = checkpoint::load_state(&run_dir.join("checkpoint.bin")).ok()?;
    // report.md is written only when a run ends (all epochs, or early stopping).
    (state.config == *config).then_some(state)
}

fn sanitize(value: &str) -> String {
    value
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '.' || c == '-' {
                c
            } else {
                '_'
            }
        })
        .collect()
}

/// Mean and sample standard deviation.
pub fn mean_std(values: &[f64]) -> (f64, f64) {
    let n = values.len().max(1) as f64;
    let mean = values.iter().sum::<f64>() / n;
    let var = if values.len() > 1 {
        values.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / (n - 1.0)
    } else {
        0.0
    };
    (mean, var.sqrt())
}

/// `sweep.md`, `sweep.csv` and `sweep.png` in `out`.
pub fn write_summary(axis: Axis, runs: &[SweepRun], out: &Path) -> Result<(), TrainError> {
    let mut values: Vec<&str> = Vec::new();
    for run in runs {
        if !values.contains(&run.value.as_str()) {
            values.push(&run.value);
        }
    }
    let mut md = format!(
        "# Sweep over {}\n\n| {} | seeds | best val accuracy (mean ± std) | best epoch | training s | img/s |\n|---|---|---|---|---|---|\n",
        axis.name(),
        axis.name()
    );
    let mut csv = format!(
        "{},seed,best_val_accuracy,best_epoch,seconds,images_per_second,run_dir\n",
        axis.name()
    );
    let mut curves: Vec<Series> = Vec::new();
    for value in &values {
        let group: Vec<&SweepRun> = runs.iter().filter(|r| r.value == *value).collect();
        let (acc, std) = mean_std(
            &group
                .iter()
                .map(|r| r.best_accuracy * 100.0)
                .collect::<Vec<_>>(),
        );
        let mean =
            |f: fn(&SweepRun) -> f64| group.iter().map(|r| f(r)).sum::<f64>() / group.len() as f64;
        let _ = writeln!(
            md,
            "| {value} | {} | {acc:.2} ± {std:.2} % | {:.1} | {:.0} | {:.0} |",
            group.len(),
            mean(|r| r.best_epoch as f64),
            mean(|r| r.seconds),
            mean(|r| r.images_per_second)
        );
        for r in &group {
            let _ = writeln!(
                csv,
                "{value},{},{:.6},{},{:.1},{:.1},{}",
                r.seed,
                r.best_accuracy,
                r.best_epoch,
                r.seconds,
                r.images_per_second,
                r.run_dir.display()
            );
            let points = r
                .history
                .iter()
                .map(|e| (e.epoch as f64, e.val_accuracy))
                .collect();
            curves.push(Series {
                name: format!("{value} (seed {})", r.seed),
                points,
            });
        }
    }
    let _ = writeln!(md, "\n![validation accuracy per epoch](sweep.png)");
    write_atomic(&out.join("sweep.md"), md.as_bytes())?;
    write_atomic(&out.join("sweep.csv"), csv.as_bytes())?;
    let title = format!("validation accuracy by {}", axis.name());
    let picture = line_panels(&title, "epoch", &[("val_accuracy", curves)])?;
    ferrite_viz::save_png(picture, &out.join("sweep.png"))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn axes_apply_values_and_reject_bad_ones() {
        let mut c = TrainConfig::default();
        Axis::BatchSize.apply(&mut c, "32").unwrap();
        Axis::LearningRate.apply(&mut c, "3e-4").unwrap();
        Axis::Model.apply(&mut c, "vgg").unwrap();
        Axis::Augment.apply(&mut c, "off").unwrap();
        assert_eq!(
            (c.batch_size, c.learning_rate, c.model.name()),
            (32, 3e-4, "vgg")
        );
        assert!(c.augment.is_none());
        assert!(Axis::BatchSize.apply(&mut c, "many").is_err());
        assert!(Axis::Augment.apply(&mut c, "maybe").is_err());
    }

    #[test]
    fn mean_and_sample_std() {
        let (m, s) = mean_std(&[60.0, 62.0, 64.0]);
        assert_eq!((m, s), (62.0, 2.0));
        assert_eq!(mean_std(&[5.0]), (5.0, 0.0));
    }
}
