//! Hard-data mining, the recipe's third trick: predict every training image with a trained
//! model, keep the misclassified ones, train on them for a few epochs (validation accuracy
//! drops: the hard set is not the real distribution), then train normally again to
//! rebalance. Each phase is its own run folder, so the dip and the recovery show in the curves.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use burn::prelude::*;
use ferrite_data::{BatchConfig, ClassMap, FaceStore};
use ferrite_models::SavedModel;
use ferrite_models::saved::write_atomic;
use ferrite_viz::charts::{Series, line_panels};

use crate::metrics::{Confusion, Tta, argmax_rows, predict_probabilities};
use crate::trainer::{EpochRecord, RunOptions, train};
use crate::{TrainConfig, TrainError};

/// The misclassified training images of a model.
#[derive(Debug, Clone, PartialEq)]
pub struct HardSet {
    /// Store indices of the misclassified images.
    pub rows: Vec<usize>,
    /// Per class: (misclassified, total), the recipe's `Angry 960/3995`.
    pub per_class: Vec<(u64, u64)>,
}

/// Predicts `rows` of `store` (labels in the model's class set) on the inference backend
/// and returns the misclassified ones. `cap` keeps at most that share of all misclassified
/// images from any one class (so one class cannot dominate the hard set).
pub fn mine(
    model: &SavedModel,
    store: &FaceStore,
    rows: &[usize],
    cap: Option<f64>,
    device: &Device,
) -> HardSet {
    let batch = BatchConfig {
        input_side: model.meta.config.input_side,
        normalization: model.meta.normalization,
        ..BatchConfig::new(256)
    };
    let network = model.network.valid();
    let probabilities = predict_probabilities(&network, store, rows, &batch, Tta::None, device);
    let k = model.meta.classes.len();
    let predicted = argmax_rows(&probabilities, k);
    let targets: Vec<u8> = rows.iter().map(|&i| store.label(i)).collect();
    let confusion = Confusion::from_predictions(&targets, &predicted, k);
    let mut hard: Vec<usize> = rows
        .iter()
        .zip(&predicted)
        .filter(|&(&i, &p)| store.label(i) != p)
        .map(|(&i, _)| i)
        .collect();
    if let Some(share) = cap {
        let limit = (share * hard.len() as f64).ceil() as usize;
        let mut taken = vec![0usize; k];
        hard.retain(|&i| {
            let class = store.label(i) as usize;
            taken[class] += 1;
            taken[class] <= limit
        });
    }
    let per_class = confusion
        .per_class()
        .iter()
        .map(|s| (s.misclassified, s.support))
        .collect();
    HardSet {
        rows: hard,
        per_class,
    }
}

/// Writes the source rows (FER2013 data-row numbers) of a hard set, one per line.
pub fn write_rows(path: &Path, store: &FaceStore, rows: &[usize]) -> Result<(), TrainError> {
    let text: String = rows
        .iter()
        .map(|&i| format!("{}\n", store.source_row(i)))
        .collect();
    Ok(write_atomic(path, text.as_bytes())?)
}

/// Reads a file of source rows written by [`write_rows`].
pub fn read_rows(path: &Path) -> Result<Vec<u32>, TrainError> {
    let text = std::fs::read_to_string(path).map_err(|source| TrainError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    text.lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
        .map(|(n, l)| {
            l.trim().parse().map_err(|_| TrainError::Config {
                origin: format!("{}:{}", path.display(), n + 1),
                message: format!("{l:?} is not a row number"),
            })
        })
        .collect()
}

/// All of `rows`, plus extra copies of `hard` (a subset of them) so that hard rows make up
/// about `share` of the result: hard examples oversampled within normal epochs.
pub fn oversample(rows: Vec<usize>, hard: &[usize], share: f64) -> Vec<usize> {
    let (n, h) = (rows.len() as f64, hard.len() as f64);
    if h == 0.0 || share <= h / n {
        return rows;
    }
    // (h + extra·h) / (n + extra·h) = share  ⇒  extra = (share·n − h) / ((1 − share)·h)
    let extra = ((share * n - h) / ((1.0 - share) * h)).round() as usize;
    let mut mixed = rows;
    for _ in 0..extra {
        mixed.extend_from_slice(hard);
    }
    mixed
}

/// The recipe's schedule of phases.
#[derive(Debug, Clone)]
pub struct MiningPlan {
    /// mine → hard → rebalance, this many times.
    pub rounds: usize,
    pub hard_epochs: usize,
    pub rebalance_epochs: usize,
    /// At most this share of the misclassified images from any one class.
    pub cap: Option<f64>,
    /// Mix the hard set into normal epochs at this share instead of a hard-only phase.
    pub mix: Option<f64>,
}

impl MiningPlan {
    /// Refuses a plan before any training starts.
    pub fn validate(&self) -> Result<(), TrainError> {
        let problem = if self.rounds == 0 {
            Some("rounds must be at least 1")
        } else if self.mix.is_some_and(|m| !(m > 0.0 && m < 1.0)) {
            Some("hard_mix must be in (0, 1)")
        } else if self.cap.is_some_and(|c| !(c > 0.0 && c <= 1.0)) {
            Some("hard_cap must be in (0, 1]")
        } else {
            None
        };
        problem.map_or(Ok(()), |p| {
            Err(TrainError::Config {
                origin: "hard mining".into(),
                message: p.into(),
            })
        })
    }
}

/// One phase's results.
#[derive(Debug, Clone)]
pub struct Phase {
    pub name: String,
    pub run_dir: PathBuf,
    pub history: Vec<EpochRecord>,
    pub best_accuracy: f64,
}

/// Runs the recipe from `start` (a trained model) or, without one, from a first normal
/// training of `base.epochs`. Returns the phases in order; writes `hard-mining.md` and
/// `hard-mining.png` in `out`.
pub fn run_hard_mining(
    base: &TrainConfig,
    plan: &MiningPlan,
    start: Option<&Path>,
    data: &FaceStore,
    out: &Path,
    options: &RunOptions,
) -> Result<Vec<Phase>, TrainError> {
    plan.validate()?;
    base.validate()?;
    let options = RunOptions {
        resume: true,
        ..options.clone()
    };
    let mut phases = Vec::new();
    let mut current = match start {
        Some(model) => model.to_path_buf(),
        None => {
            let phase = run_phase(
                "normal".into(),
                base,
                data,
                out.join("round0-normal"),
                &options,
            )?;
            let best = phase.run_dir.join("best.ferrite");
            phases.push(phase);
            best
        }
    };
    let store = data.remap(&ClassMap::new(data.classes(), &base.exclude, &base.merge)?);
    let train_rows = base.split.resolve(&store)?.train;
    for round in 1..=plan.rounds {
        let model = SavedModel::load(&current, &options.device)?;
        let hard = mine(&model, &store, &train_rows, plan.cap, &options.device);
        let rows_file = out.join(format!("round{round}-hard-rows.txt"));
        write_rows(&rows_file, &store, &hard.rows)?;
        let misclassified: u64 = hard.per_class.iter().map(|(wrong, _)| wrong).sum();
        eprintln!(
            "round {round}: {misclassified} of {} training images misclassified by {}; hard set {}",
            train_rows.len(),
            current.display(),
            hard.rows.len()
        );
        for (c, (wrong, total)) in hard.per_class.iter().enumerate() {
            eprintln!("  {}: {wrong}/{total}", store.classes().display_name(c));
        }
        let hard_config = TrainConfig {
            epochs: plan.hard_epochs,
            init_from: Some(current.clone()),
            train_rows_file: Some(rows_file),
            hard_mix: plan.mix,
            ..base.clone()
        };
        let hard_dir = out.join(format!("round{round}-hard"));
        phases.push(run_phase(
            match plan.mix {
                Some(share) => format!("round {round} hard mixed at {:.0} %", share * 100.0),
                None => format!("round {round} hard"),
            },
            &hard_config,
            data,
            hard_dir.clone(),
            &options,
        )?);
        let rebalance_config = TrainConfig {
            epochs: plan.rebalance_epochs,
            init_from: Some(hard_dir.join("last.ferrite")),
            ..base.clone()
        };
        let rebalance_dir = out.join(format!("round{round}-rebalance"));
        let name = format!("round {round} rebalance");
        phases.push(run_phase(
            name,
            &rebalance_config,
            data,
            rebalance_dir.clone(),
            &options,
        )?);
        current = rebalance_dir.join("best.ferrite");
    }
    write_summary(&phases, out)?;
    Ok(phases)
}

/// Trains one phase into its own run folder.
fn run_phase(
    name: String,
    config: &TrainConfig,
    data: &FaceStore,
    run_dir: PathBuf,
    options: &RunOptions,
) -> Result<Phase, TrainError> {
    let outcome = train(config, data, &run_dir, options)?;
    Ok(Phase {
        name,
        run_dir,
        history: outcome.history,
        best_accuracy: outcome.best_accuracy,
    })
}

/// All phases' validation accuracy on one epoch axis, and a table of phases.
fn write_summary(phases: &[Phase], out: &Path) -> Result<(), TrainError> {
    let mut md = String::from(
        "# Hard-data mining\n\n| phase | epochs | best val accuracy | last val accuracy | run |\n|---|---|---|---|---|\n",
    );
    let mut offset = 0.0;
    let mut curves: Vec<Series> = Vec::new();
    for phase in phases {
        let last = phase.history.last().map_or(0.0, |r| r.val_accuracy);
        let _ = writeln!(
            md,
            "| {} | {} | {:.2} % | {:.2} % | `{}` |",
            phase.name,
            phase.history.len(),
            phase.best_accuracy * 100.0,
            last * 100.0,
            phase.run_dir.display()
        );
        let points: Vec<(f64, f64)> = phase
            .history
            .iter()
            .map(|r| (offset + r.epoch as f64, r.val_accuracy))
            .collect();
        offset += phase.history.len() as f64;
        curves.push(Series {
            name: phase.name.clone(),
            points,
        });
    }
    let _ = writeln!(
        md,
        "\n![validation accuracy through the phases](hard-mining.png)"
    );
    write_atomic(&out.join("hard-mining.md"), md.as_bytes())?;
    let image = line_panels(
        "hard-data mining: validation accuracy by phase",
        "epoch (all phases)",
        &[("val_accuracy", curves)],
    )?;
    Ok(ferrite_viz::save_png(image, &out.join("hard-mining.png"))?)
}

#[cfg(test)]
mod tests {
    use super::oversample;

    #[test]
    fn oversampling_reaches_the_share_and_keeps_every_row() {
        let rows: Vec<usize> = (0..1000).collect();
        let hard: Vec<usize> = (0..100).collect();
        let mixed = oversample(rows.clone(), &hard, 0.5);
        let hard_count = mixed.iter().filter(|&&i| i < 100).count();
        let share = hard_count as f64 / mixed.len() as f64;
        assert!((share - 0.5).abs() < 0.02, "share {share}");
        assert!(rows.iter().all(|r| mixed.contains(r)));
        // A share the hard rows already have needs no copies.
        assert_eq!(oversample(rows.clone(), &hard, 0.05), rows);
    }
}
