//! # ferrite-vision
//!
//! Faces in the wild: find every face in a picture ([`detect`]: SeetaFace through the
//! `rustface` crate, its model embedded at build time), crop each with margins, square and
//! grey ([`crop`]), classify all faces of a picture in one batch on the inference backend
//! ([`analyze`]), and draw boxes coloured by emotion ([`annotate`]).

pub mod analyze;
pub mod annotate;
pub mod crop;
pub mod detect;

pub use analyze::{Analyzer, Face};
pub use crop::Margins;
pub use detect::{BoundingBox, DetectorConfig, FaceDetector, SeetaDetector};

#[derive(Debug, thiserror::Error)]
pub enum VisionError {
    #[error("invalid detector setting: {0}")]
    Setting(String),
    #[error("{path}: {message}", path = .path.display())]
    Image {
        path: std::path::PathBuf,
        message: String,
    },
}
