//! # ferrite-vision
//!
//! Faces in the wild: find every face in a picture ([`detect`]: SeetaFace through the
//! `rustface` crate, its model embedded at build time), crop each with margins, square and
//! grey ([`crop`]), classify all faces of a picture in one batch on the inference backend
//! ([`analyze`]), draw boxes coloured by emotion ([`annotate`]), and, in video, follow faces
//! across frames and smooth their labels ([`track`]).

pub mod analyze;
pub mod annotate;
pub mod crop;
pub mod detect;
pub mod picture;
pub mod track;
pub mod video;

pub use analyze::{Analyzer, Face, StageTimes};
pub use crop::Margins;
pub use detect::{BoundingBox, DetectorConfig, FaceDetector, SeetaDetector};
pub use picture::{PictureError, decode_picture, open_picture};

#[derive(Debug, thiserror::Error)]
pub enum VisionError {
    #[error("invalid detector setting: {0}")]
    Setting(String),
    #[error("{0}")]
    Ffmpeg(String),
    #[error("{path}: {message}", path = .path.display())]
    Image {
        path: std::path::PathBuf,
        message: String,
    },
    #[error("{path}: {source}", path = .path.display())]
    Picture {
        path: std::path::PathBuf,
        #[source]
        source: picture::PictureError,
    },
}
