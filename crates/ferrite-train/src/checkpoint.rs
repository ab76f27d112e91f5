//! The resume checkpoint: one file holding the training state (JSON), the model and the
//! optimizer state, written atomically at the end of every epoch, so the model, optimizer and
//! epoch counter always agree with each other.

use std::path::Path;

use burn::prelude::*;
use burn::tensor::Bytes;
use ferrite_models::SavedModel;
use ferrite_models::saved::write_atomic;
use serde::{Deserialize, Serialize};

use crate::schedule::PlateauState;
use crate::trainer::EpochRecord;
use crate::{TrainConfig, TrainError};

const MAGIC: &[u8; 8] = b"FERCKPT1";

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TrainState {
    pub config: TrainConfig,
    pub epochs_done: usize,
    pub history: Vec<EpochRecord>,
    pub plateau: PlateauState,
    pub best_accuracy: f64,
    pub best_epoch: usize,
    pub seconds: f64,
    /// Early stopping ended the run: a resume has nothing left to do.
    #[serde(default)]
    pub stopped_early: bool,
}

pub struct Checkpoint {
    pub state: TrainState,
    pub model: SavedModel,
    pub optimizer: Bytes,
}

fn section(bytes: &mut Vec<u8>, data: &[u8]) {
    bytes.extend_from_slice(&(data.len() as u64).to_le_bytes());
    bytes.extend_from_slice(data);
}

pub fn save(
    path: &Path,
    state: &TrainState,
    model: &SavedModel,
    optimizer: &[u8],
) -> Result<(), TrainError> {
    let mut bytes = MAGIC.to_vec();
    section(
        &mut bytes,
        &serde_json::to_vec(state).expect("train state serialises"),
    );
    section(&mut bytes, &model.to_bytes()?);
    section(&mut bytes, optimizer);
    Ok(write_atomic(path, &bytes)?)
}

/// Only the training state (history, best epoch…), without building the model.
pub fn load_state(path: &Path) -> Result<TrainState, TrainError> {
    let bytes = read(path)?;
    let mut sections = Sections::new(path, &bytes)?;
    sections.state()
}

fn read(path: &Path) -> Result<Vec<u8>, TrainError> {
    std::fs::read(path).map_err(|source| TrainError::Io {
        path: path.to_path_buf(),
        source,
    })
}

/// Reads the length-prefixed sections after the magic.
struct Sections<'a> {
    path: &'a Path,
    rest: &'a [u8],
}

impl<'a> Sections<'a> {
    fn new(path: &'a Path, bytes: &'a [u8]) -> Result<Self, TrainError> {
        let rest = bytes
            .strip_prefix(MAGIC)
            .ok_or_else(|| corrupt(path, "not a ferrite checkpoint"))?;
        Ok(Self { path, rest })
    }

    fn next(&mut self) -> Result<&'a [u8], TrainError> {
        let (length, tail) = self
            .rest
            .split_at_checked(8)
            .ok_or_else(|| corrupt(self.path, "truncated"))?;
        let length = u64::from_le_bytes(length.try_into().expect("8 bytes"));
        let (data, tail) = usize::try_from(length)
            .ok()
            .and_then(|n| tail.split_at_checked(n))
            .ok_or_else(|| corrupt(self.path, "truncated"))?;
        self.rest = tail;
        Ok(data)
    }

    fn state(&mut self) -> Result<TrainState, TrainError> {
        serde_json::from_slice(self.next()?).map_err(|e| corrupt(self.path, &format!("state: {e}")))
    }
}

fn corrupt(path: &Path, message: &str) -> TrainError {
    TrainError::Checkpoint {
        path: path.to_path_buf(),
        message: message.to_string(),
    }
}

pub fn load(path: &Path, device: &Device) -> Result<Checkpoint, TrainError> {
    let bytes = read(path)?;
    let mut sections = Sections::new(path, &bytes)?;
    let state = sections.state()?;
    let model = SavedModel::from_bytes(sections.next()?, device, &path.display().to_string())?;
    let optimizer = Bytes::from_bytes_vec(sections.next()?.to_vec());
    Ok(Checkpoint {
        state,
        model,
        optimizer,
    })
}
