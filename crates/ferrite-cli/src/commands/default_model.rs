//! The model ferrite uses when none is named: `models/default.ferrite`, compiled into the
//! binary (see its model card, `models/default.md`).

use std::path::Path;

use burn::prelude::Device;
use ferrite_models::SavedModel;

const DEFAULT_MODEL: &[u8] = include_bytes!(concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../../models/default.ferrite"
));

/// The model at `path`, or the embedded default.
pub fn load(path: Option<&Path>, device: &Device) -> anyhow::Result<SavedModel> {
    Ok(match path {
        Some(path) => SavedModel::load(path, device)?,
        None => SavedModel::from_bytes(DEFAULT_MODEL, device, "the embedded default model")?,
    })
}
