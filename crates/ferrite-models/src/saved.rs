//! One file per trained model: `FERRITE` magic, a JSON header ([`ModelMeta`]: architecture,
//! input size, normalisation, class names, model-card facts) and the Burn weights record
//! (burnpack bytes, batch-norm running statistics included). `eval`, `predict` and `serve`
//! need nothing else. Writes are atomic: a temporary file beside the target, then a rename.

use std::path::{Path, PathBuf};

use burn::prelude::*;
use burn::store::ModuleRecord;
use ferrite_data::{ClassSet, Normalization};
use serde::{Deserialize, Serialize};

use crate::{ModelConfig, Network};

const MAGIC: &[u8; 8] = b"FERRITE\0";
const FORMAT_VERSION: u32 = 1;

#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    #[error("unknown model {name:?}; known: {known}")]
    UnknownArchitecture { name: String, known: String },
    #[error("invalid model config: {problem}")]
    InvalidConfig { problem: String },
    #[error("{path}: {source}", path = .path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{origin}: not a ferrite model file ({problem})")]
    NotAModel { origin: String, problem: String },
    #[error("{origin}: model weights: {message}")]
    Weights { origin: String, message: String },
}

/// What a saved model says about itself.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ModelMeta {
    pub config: ModelConfig,
    pub classes: ClassSet,
    pub normalization: Normalization,
    /// Facts for the model card: data, recipe, validation accuracy, epochs, time…
    #[serde(default)]
    pub card: serde_json::Map<String, serde_json::Value>,
}

/// A network with its metadata.
#[derive(Debug, Clone)]
pub struct SavedModel {
    pub meta: ModelMeta,
    pub network: Network,
}

impl SavedModel {
    /// Serialises the inference copy of the network (`valid()` also flushes batch norm's
    /// pending running-statistics update).
    pub fn to_bytes(&self) -> Result<Vec<u8>, ModelError> {
        let weights = self
            .network
            .valid()
            .into_record()
            .into_bytes()
            .map_err(|e| ModelError::Weights {
                origin: "saving".into(),
                message: e.to_string(),
            })?;
        let header = serde_json::to_vec(&self.meta).expect("model metadata serialises");
        let mut bytes = Vec::with_capacity(MAGIC.len() + 12 + header.len() + weights.len());
        bytes.extend_from_slice(MAGIC);
        bytes.extend_from_slice(&FORMAT_VERSION.to_le_bytes());
        bytes.extend_from_slice(&(header.len() as u64).to_le_bytes());
        bytes.extend_from_slice(&header);
        bytes.extend_from_slice(&weights);
        Ok(bytes)
    }

    pub fn save(&self, path: &Path) -> Result<(), ModelError> {
        write_atomic(path, &self.to_bytes()?)
    }

    pub fn load(path: &Path, device: &Device) -> Result<Self, ModelError> {
        let bytes = std::fs::read(path).map_err(|source| ModelError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        Self::from_bytes(&bytes, device, &path.display().to_string())
    }

    /// `origin` names the source in errors (a path, "request body", …).
    pub fn from_bytes(bytes: &[u8], device: &Device, origin: &str) -> Result<Self, ModelError> {
        let not_a_model = |problem: &str| ModelError::NotAModel {
            origin: origin.to_string(),
            problem: problem.to_string(),
        };
        let rest = bytes
            .strip_prefix(MAGIC)
            .ok_or_else(|| not_a_model("missing FERRITE magic"))?;
        let (version, rest) = rest
            .split_at_checked(4)
            .ok_or_else(|| not_a_model("truncated header"))?;
        let version = u32::from_le_bytes(version.try_into().expect("4 bytes"));
        if version != FORMAT_VERSION {
            return Err(not_a_model(&format!(
                "format version {version}, this ferrite reads {FORMAT_VERSION}"
            )));
        }
        let (length, rest) = rest
            .split_at_checked(8)
            .ok_or_else(|| not_a_model("truncated header"))?;
        let length = u64::from_le_bytes(length.try_into().expect("8 bytes"));
        let (header, weights) = usize::try_from(length)
            .ok()
            .and_then(|n| rest.split_at_checked(n))
            .ok_or_else(|| not_a_model("truncated header"))?;
        let meta: ModelMeta = serde_json::from_slice(header)
            .map_err(|e| not_a_model(&format!("bad header JSON: {e}")))?;
        let weights_error = |message: String| ModelError::Weights {
            origin: origin.to_string(),
            message,
        };
        if meta.classes.len() != meta.config.num_classes {
            return Err(weights_error(format!(
                "{} class names for a {}-class network",
                meta.classes.len(),
                meta.config.num_classes
            )));
        }
        let record =
            ModuleRecord::from_bytes(burn::tensor::Bytes::from_bytes_vec(weights.to_vec()))
                .map_err(|e| weights_error(e.to_string()))?;
        let network = meta
            .config
            .init(device)?
            .try_load_record(record)
            .map_err(|e| weights_error(e.to_string()))?;
        Ok(Self { meta, network })
    }
}

/// [`ferrite_data::atomic::write_atomic`], with the error naming the file.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), ModelError> {
    ferrite_data::atomic::write_atomic(path, bytes).map_err(|source| ModelError::Io {
        path: path.to_path_buf(),
        source,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Architecture;

    fn saved() -> SavedModel {
        let config = ModelConfig::new(Architecture::MiniXception, 5);
        SavedModel {
            network: config.init(&Device::flex()).unwrap(),
            meta: ModelMeta {
                config,
                classes: ClassSet::new(["fear", "happy", "sad", "surprise", "neutral"]),
                normalization: Normalization::MinusOneToOne,
                card: serde_json::Map::new(),
            },
        }
    }

    #[test]
    fn round_trip_keeps_weights_meta_and_outputs() {
        let device = Device::flex();
        let model = saved();
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("m.ferrite");
        model.save(&path).unwrap();
        let loaded = SavedModel::load(&path, &device).unwrap();
        assert_eq!(loaded.meta, model.meta);
        let x = Tensor::<4>::random([2, 1, 48, 48], burn::tensor::Distribution::Default, &device);
        let a: Vec<f32> = model
            .network
            .valid()
            .forward(x.clone())
            .into_data()
            .iter()
            .collect();
        let b: Vec<f32> = loaded
            .network
            .valid()
            .forward(x)
            .into_data()
            .iter()
            .collect();
        assert_eq!(a, b);
    }

    #[test]
    fn garbage_and_truncation_are_clear_errors() {
        let device = Device::flex();
        let err = SavedModel::from_bytes(b"PNG....", &device, "x.png").unwrap_err();
        assert!(
            err.to_string()
                .starts_with("x.png: not a ferrite model file"),
            "{err}"
        );
        let bytes = saved().to_bytes().unwrap();
        for cut in [10, 30, bytes.len() - 100] {
            assert!(
                SavedModel::from_bytes(&bytes[..cut], &device, "cut").is_err(),
                "cut at {cut}"
            );
        }
    }
}
