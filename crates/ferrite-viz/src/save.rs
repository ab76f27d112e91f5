use std::io::{Cursor, Write};
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
    let io_error = |source| VizError::Io {
        path: path.to_path_buf(),
        source,
    };
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    std::fs::create_dir_all(dir).map_err(io_error)?;
    let mut file = tempfile::NamedTempFile::new_in(dir).map_err(io_error)?;
    file.write_all(&bytes).map_err(io_error)?;
    file.persist(path).map_err(|e| io_error(e.error))?;
    Ok(())
}
