//! # ferrite-train
//!
//! The training engine: a [`TrainConfig`] (TOML + flags, Keras vocabulary), Adam / AdamW /
//! SGD-Nesterov, constant / step / cosine-with-warm-up / reduce-on-plateau schedules, label
//! smoothing and FER+ soft labels, and the callbacks people rely on: best checkpoint by
//! validation accuracy, a CSV log of every epoch, early stopping, and resume after a kill.
//!
//! Each run writes a folder: `config.toml`, `metrics.csv`, `best.ferrite`, `last.ferrite`,
//! `checkpoint.bin` (for `--resume`), `curves.png`, `confusion.png` and `report.md`.
//!
//! Training runs on an autodiff device; validation always on the inference copy
//! (`model.valid()`) and a plain device, so no autodiff graph is built and batch-norm
//! statistics are not disturbed.

pub mod allocator;
mod checkpoint;
pub mod config;
pub mod metrics;
pub mod mining;
pub mod report;
pub mod schedule;
pub mod sweep;
mod trainer;

use std::path::PathBuf;

pub use config::{OptimizerKind, TrainConfig};
pub use metrics::{Confusion, Tta};
pub use schedule::Schedule;
pub use trainer::{
    EpochRecord, RunOptions, StepResult, TrainOutcome, optimizer, train, train_step,
};

#[derive(Debug, thiserror::Error)]
pub enum TrainError {
    #[error(transparent)]
    Data(#[from] ferrite_data::DataError),
    #[error(transparent)]
    Model(#[from] ferrite_models::ModelError),
    #[error(transparent)]
    Viz(#[from] ferrite_viz::VizError),
    #[error("{path}: {source}", path = .path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{origin}: {message}")]
    Config { origin: String, message: String },
    #[error("{path}: {message}", path = .path.display())]
    Checkpoint { path: PathBuf, message: String },
    #[error(
        "{path} already holds a run; pass --resume to continue it or choose another output folder",
        path = .path.display()
    )]
    RunExists { path: PathBuf },
}
