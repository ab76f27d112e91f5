//! The training configuration: a TOML file, flags on top. Keys follow Keras's vocabulary
//! (`batch_size`, `rotation_range`, `patience`…), and a run is reproducible from its saved
//! `config.toml` alone.

use std::path::{Path, PathBuf};

use ferrite_data::{AugmentConfig, Normalization, Sampling, SplitPlan};
use ferrite_models::ops::Precision;
use ferrite_models::{Architecture, ModelConfig};
use serde::{Deserialize, Serialize};

use crate::TrainError;
use crate::schedule::Schedule;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OptimizerKind {
    Adam,
    Adamw,
    /// SGD with Nesterov momentum.
    Sgd,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TrainConfig {
    pub model: Architecture,
    /// 48, or 64 as the recipe resized.
    pub input_side: usize,
    /// Dropout rate; the model's recipe default when absent.
    pub dropout: Option<f64>,
    /// Channel multiplier (vgg).
    pub width: f64,
    pub epochs: usize,
    pub batch_size: usize,
    pub optimizer: OptimizerKind,
    pub learning_rate: f64,
    pub weight_decay: f64,
    /// Momentum for SGD.
    pub momentum: f64,
    pub schedule: Schedule,
    pub label_smoothing: f32,
    /// Train on FER+ vote distributions when the data carries them.
    pub soft_labels: bool,
    pub augment: AugmentConfig,
    pub sampling: Sampling,
    pub normalization: Normalization,
    pub exclude: Vec<String>,
    pub merge: Vec<String>,
    pub split: SplitPlan,
    pub seed: u64,
    /// Keras `EarlyStopping(patience=…)` on validation accuracy; off when absent.
    pub patience: Option<usize>,
    /// Train on at most this many training rows (a seeded, stratified-by-chance subset).
    pub limit_train: Option<usize>,
    /// Validate on at most this many validation rows.
    pub limit_validation: Option<usize>,
    /// Operand precision of the convolutions' matrix products: `bf16` (AVX-512 BF16 CPUs;
    /// sums and weights stay `f32`) or `f32`. When absent, `FERRITE_PRECISION` or `f32`.
    pub precision: Option<Precision>,
    /// Start from this saved model's weights instead of a fresh initialisation.
    pub init_from: Option<PathBuf>,
    /// Train only on the FER2013 data rows listed in this file (one per line), e.g. a
    /// hard set from `ferrite mine`.
    pub train_rows_file: Option<PathBuf>,
    /// With `train_rows_file`: train on all training rows, the listed ones oversampled to
    /// make up this share of each epoch (hard examples mixed into normal batches), instead
    /// of on the listed rows alone.
    pub hard_mix: Option<f64>,
}

impl Default for TrainConfig {
    /// The recipe: seed-cnn, Adam 1e-3, batch 64, the recipe's augmentation, PublicTest for validation.
    fn default() -> Self {
        Self {
            model: Architecture::SeedCnn,
            input_side: 48,
            dropout: None,
            width: 1.0,
            epochs: 30,
            batch_size: 64,
            optimizer: OptimizerKind::Adam,
            learning_rate: 1e-3,
            weight_decay: 0.0,
            momentum: 0.9,
            schedule: Schedule::Constant,
            label_smoothing: 0.0,
            soft_labels: false,
            augment: AugmentConfig::recipe(),
            sampling: Sampling::Shuffle,
            normalization: Normalization::MinusOneToOne,
            exclude: Vec::new(),
            merge: Vec::new(),
            split: SplitPlan::Official,
            seed: 42,
            patience: None,
            limit_train: None,
            limit_validation: None,
            precision: None,
            init_from: None,
            train_rows_file: None,
            hard_mix: None,
        }
    }
}

impl TrainConfig {
    pub fn from_toml(text: &str, origin: &Path) -> Result<Self, TrainError> {
        toml::from_str(text).map_err(|e| TrainError::Config {
            origin: origin.display().to_string(),
            message: e.to_string(),
        })
    }

    pub fn load(path: &Path) -> Result<Self, TrainError> {
        let text = std::fs::read_to_string(path).map_err(|source| TrainError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        Self::from_toml(&text, path)
    }

    pub fn to_toml(&self) -> String {
        toml::to_string_pretty(self).expect("train config serialises to TOML")
    }

    pub fn model_config(&self, num_classes: usize) -> ModelConfig {
        let base = ModelConfig::new(self.model, num_classes);
        ModelConfig {
            input_side: self.input_side,
            dropout: self.dropout.unwrap_or(base.dropout),
            width: self.width,
            ..base
        }
    }

    pub fn validate(&self) -> Result<(), TrainError> {
        let problem = if self.epochs == 0 {
            Some("epochs must be at least 1")
        } else if self.batch_size == 0 {
            Some("batch_size must be at least 1")
        } else if !(self.learning_rate > 0.0 && self.learning_rate.is_finite()) {
            Some("learning_rate must be positive")
        } else if !(0.0..1.0).contains(&self.label_smoothing) {
            Some("label_smoothing must be in [0, 1)")
        } else if self.hard_mix.is_some_and(|m| !(m > 0.0 && m < 1.0)) {
            Some("hard_mix must be in (0, 1)")
        } else {
            None
        };
        match problem {
            Some(p) => Err(TrainError::Config {
                origin: "train config".into(),
                message: p.into(),
            }),
            None => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn toml_round_trips_and_partial_files_take_defaults() {
        let config = TrainConfig::default();
        assert_eq!(
            TrainConfig::from_toml(&config.to_toml(), Path::new("c.toml")).unwrap(),
            config
        );
        let bf16 = TrainConfig::from_toml("precision = \"bf16\"", Path::new("c.toml")).unwrap();
        assert_eq!(bf16.precision, Some(Precision::Bf16));
        assert_eq!(
            TrainConfig::from_toml(&bf16.to_toml(), Path::new("c.toml")).unwrap(),
            bf16
        );
        let partial = "model = \"vgg\"\nbatch_size = 32\n[augment]\nhorizontal_flip = true\nrotation_range = 15.0\n";
        let parsed = TrainConfig::from_toml(partial, Path::new("c.toml")).unwrap();
        assert_eq!(parsed.model, Architecture::Vgg);
        assert_eq!(parsed.batch_size, 32);
        assert_eq!(parsed.augment.rotation_range, 15.0);
        assert_eq!(
            parsed.augment.zoom_range, 0.0,
            "unnamed augmentation keys are off, as in Keras"
        );
        assert_eq!(parsed.epochs, 30);
    }

    #[test]
    fn unknown_keys_and_bad_values_are_errors() {
        let err = TrainConfig::from_toml("batchsize = 3", Path::new("c.toml")).unwrap_err();
        assert!(
            err.to_string().contains("c.toml") && err.to_string().contains("batchsize"),
            "{err}"
        );
        let zero = TrainConfig {
            epochs: 0,
            ..TrainConfig::default()
        };
        assert!(zero.validate().is_err());
    }
}
