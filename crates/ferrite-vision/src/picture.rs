//! Decoding pictures safely, and the sample photo shipped in the binary.

use std::io::{BufRead, Cursor, Seek};
use std::path::Path;

use image::{DynamicImage, ImageReader};

use crate::VisionError;

/// The group photo inside the `rustface` package (the 1927 Solvay conference, 29 faces, with
/// the detector's boxes already drawn in red), copied by build.rs.
pub const GROUP_PHOTO: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/group-photo.png"));

/// 640×480 test frames cut from [`GROUP_PHOTO`], for tests and benchmarks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SampleFrame {
    /// One face, about 280 pixels wide.
    OneFace,
    /// Five faces, about 85 pixels wide.
    FiveFaces,
}

impl SampleFrame {
    pub fn render(self) -> DynamicImage {
        let (x, y, width, height) = match self {
            SampleFrame::OneFace => (824, 245, 140, 105),
            SampleFrame::FiveFaces => (560, 155, 420, 315),
        };
        decode_picture(GROUP_PHOTO, DEFAULT_MAX_PIXELS)
            .expect("the embedded photo decodes")
            .crop_imm(x, y, width, height)
            .resize_exact(640, 480, image::imageops::FilterType::CatmullRom)
    }
}

/// The default refusal threshold: 50 megapixels.
pub const DEFAULT_MAX_PIXELS: u64 = 50_000_000;

/// Why a picture was not decoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PictureError {
    #[error("{width}x{height} has more than the limit of {limit} pixels")]
    TooLarge { width: u32, height: u32, limit: u64 },
    #[error("not a readable image: {0}")]
    Unreadable(String),
}

/// Decodes a picture from memory (PNG, JPEG, BMP, WebP, told by content), refusing one with
/// more than `max_pixels` from its header, before anything is allocated for it.
pub fn decode_picture(bytes: &[u8], max_pixels: u64) -> Result<DynamicImage, PictureError> {
    decode(|| Ok(Cursor::new(bytes)), max_pixels)
}

/// [`decode_picture`] for a file; errors name the file.
pub fn open_picture(path: &Path, max_pixels: u64) -> Result<DynamicImage, VisionError> {
    let open = || {
        std::fs::File::open(path)
            .map(std::io::BufReader::new)
            .map_err(|e| PictureError::Unreadable(e.to_string()))
    };
    decode(open, max_pixels).map_err(|source| VisionError::Picture {
        path: path.to_path_buf(),
        source,
    })
}

fn decode<R: BufRead + Seek>(
    open: impl Fn() -> Result<R, PictureError>,
    max_pixels: u64,
) -> Result<DynamicImage, PictureError> {
    let unreadable = |e: &dyn std::fmt::Display| PictureError::Unreadable(e.to_string());
    let reader = |source: R| {
        ImageReader::new(source)
            .with_guessed_format()
            .map_err(|e| unreadable(&e))
    };
    let (width, height) = reader(open()?)?
        .into_dimensions()
        .map_err(|e| unreadable(&e))?;
    if width as u64 * height as u64 > max_pixels {
        return Err(PictureError::TooLarge {
            width,
            height,
            limit: max_pixels,
        });
    }
    let mut decoder = reader(open()?)?;
    let mut limits = image::Limits::default();
    limits.max_alloc = Some(max_pixels.saturating_mul(8));
    decoder.limits(limits);
    decoder.decode().map_err(|e| unreadable(&e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_group_photo_decodes() {
        let photo = decode_picture(GROUP_PHOTO, DEFAULT_MAX_PIXELS).unwrap();
        assert_eq!((photo.width(), photo.height()), (1666, 1136));
    }

    #[test]
    fn oversized_and_garbage_pictures_are_refused_with_a_reason() {
        let small_limit = decode_picture(GROUP_PHOTO, 1000).unwrap_err();
        assert_eq!(
            small_limit.to_string(),
            "1666x1136 has more than the limit of 1000 pixels"
        );
        let garbage = decode_picture(b"this is text, not a picture", DEFAULT_MAX_PIXELS);
        assert!(matches!(garbage, Err(PictureError::Unreadable(_))));
        let truncated = decode_picture(&GROUP_PHOTO[..5000], DEFAULT_MAX_PIXELS);
        assert!(truncated.is_err());
    }
}
