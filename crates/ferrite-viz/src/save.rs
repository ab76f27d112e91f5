use std::io::Cursor;
use std::path::{Path, PathBuf};

use image::{DynamicImage, ImageFormat};

#[derive(Debug, thiserror::Error)]
pub enum VizError {
    #[error("{path}: {source}", path = .path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("drawing: {0}")]
    Draw(String),
    #[error("encoding PNG: {0}")]
    Encode(#[from] image::ImageError),
}

pub fn encode_png(image: impl Into<DynamicImage>) -> Result<Vec<u8>, VizError> {
    let mut bytes = Cursor::new(Vec::new());
    image.into().write_to(&mut bytes, ImageFormat::Png)?;
    Ok(bytes.into_inner())
}

/// Encodes and writes a PNG atomically (a killed run never leaves half a picture).
pub fn save_png(image: impl Into<DynamicImage>, path: &Path) -> Result<(), VizError> {
    let bytes = encode_png(image)?;
    ferrite_data::atomic::write_atomic(path, &bytes).map_err(|source| VizError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    Ok(())
}
