//! Face detection behind a trait, so other detectors (an MTCNN on Burn, say) can be added.

use image::GrayImage;
use image::imageops::FilterType;
use serde::{Deserialize, Serialize};

use crate::VisionError;

/// A face's box in pixels of the analysed picture.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct BoundingBox {
    pub x: i32,
    pub y: i32,
    pub width: u32,
    pub height: u32,
}

impl BoundingBox {
    /// Intersection over union, for tracking faces between frames.
    pub fn iou(&self, other: &BoundingBox) -> f64 {
        let x1 = self.x.max(other.x) as i64;
        let y1 = self.y.max(other.y) as i64;
        let x2 = (self.x as i64 + self.width as i64).min(other.x as i64 + other.width as i64);
        let y2 = (self.y as i64 + self.height as i64).min(other.y as i64 + other.height as i64);
        let inter = (x2 - x1).max(0) * (y2 - y1).max(0);
        let union = self.width as i64 * self.height as i64
            + other.width as i64 * other.height as i64
            - inter;
        if union > 0 {
            inter as f64 / union as f64
        } else {
            0.0
        }
    }
}

/// A detected face and the detector's confidence score.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Detection {
    pub bbox: BoundingBox,
    pub score: f64,
}

pub trait FaceDetector {
    fn detect(&mut self, picture: &GrayImage) -> Vec<Detection>;
}

/// Detector settings (SeetaFace's names).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DetectorConfig {
    /// Smallest face to find, in pixels of the original picture (SeetaFace's floor is 20).
    pub min_face_size: u32,
    /// Detections scoring below this are dropped (SeetaFace suggests 0.95, 2.8, 4.5).
    pub score_threshold: f64,
    /// Factor between pyramid levels, in (0.01, 0.99).
    pub pyramid_scale: f32,
    /// Sliding-window step in pixels.
    pub window_step: u32,
    /// Pictures whose longer side exceeds this are downscaled before detection (speed);
    /// boxes come back in original pixels.
    pub max_side: u32,
}

impl Default for DetectorConfig {
    fn default() -> Self {
        Self {
            min_face_size: 20,
            score_threshold: 2.0,
            pyramid_scale: 0.8,
            window_step: 4,
            max_side: 1280,
        }
    }
}

impl DetectorConfig {
    /// rustface panics on out-of-range settings; refuse them here with a message instead.
    pub fn validate(&self) -> Result<(), VisionError> {
        let problem = if self.min_face_size < 20 {
            Some(format!(
                "min_face_size {} is below SeetaFace's minimum of 20",
                self.min_face_size
            ))
        } else if self.score_threshold.is_nan() || self.score_threshold <= 0.0 {
            Some(format!(
                "score_threshold {} must be positive",
                self.score_threshold
            ))
        } else if !(0.01..=0.99).contains(&self.pyramid_scale) {
            Some(format!(
                "pyramid_scale {} must be in 0.01..=0.99",
                self.pyramid_scale
            ))
        } else if self.window_step == 0 {
            Some("window_step must be at least 1".to_string())
        } else if self.max_side < 64 {
            Some(format!("max_side {} must be at least 64", self.max_side))
        } else {
            None
        };
        problem.map_or(Ok(()), |p| Err(VisionError::Setting(p)))
    }
}

/// The SeetaFace frontal detector (Wu et al. 2016, funnel-structured cascade), in pure Rust.
pub struct SeetaDetector {
    inner: Box<dyn rustface::Detector>,
    config: DetectorConfig,
}

/// The side of SeetaFace's smallest detection window, in pixels.
const SEETA_WINDOW: f64 = 40.0;

const MODEL_BYTES: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/seeta_fd_frontal_v1.0.bin"));

impl SeetaDetector {
    pub fn new(config: DetectorConfig) -> Result<Self, VisionError> {
        config.validate()?;
        let model = rustface::read_model(std::io::Cursor::new(MODEL_BYTES))
            .expect("the embedded SeetaFace model parses");
        let mut inner = rustface::create_detector_with_model(model);
        inner.set_min_face_size(20);
        inner.set_score_thresh(config.score_threshold);
        inner.set_pyramid_scale_factor(config.pyramid_scale);
        inner.set_slide_window_step(config.window_step, config.window_step);
        Ok(Self { inner, config })
    }

    /// Changes the smallest face to find (at least 20 pixels).
    pub fn set_min_face_size(&mut self, pixels: u32) -> Result<(), VisionError> {
        let config = DetectorConfig {
            min_face_size: pixels,
            ..self.config.clone()
        };
        config.validate()?;
        self.config = config;
        Ok(())
    }
}

impl FaceDetector for SeetaDetector {
    fn detect(&mut self, picture: &GrayImage) -> Vec<Detection> {
        let (width, height) = picture.dimensions();
        if width < 20 || height < 20 {
            return Vec::new();
        }
        // rustface scans windows of 40 pixels and up at the picture's own scale (its
        // min-face setting does not shrink the pyramid), so a larger minimum face is honoured
        // by shrinking the picture until that face is 40 pixels: fewer pixels, same faces.
        let by_side = self.config.max_side as f64 / width.max(height) as f64;
        let by_face = SEETA_WINDOW / self.config.min_face_size as f64;
        let scale = by_side.min(by_face).min(1.0);
        let small;
        let input = if scale < 1.0 {
            let (w, h) = (
                ((width as f64 * scale).round() as u32).max(20),
                ((height as f64 * scale).round() as u32).max(20),
            );
            small = image::imageops::resize(picture, w, h, FilterType::Triangle);
            &small
        } else {
            picture
        };
        let min_face = ((self.config.min_face_size as f64 * scale).round() as u32).max(20);
        self.inner.set_min_face_size(min_face);
        let data = rustface::ImageData::new(input.as_raw(), input.width(), input.height());
        self.inner
            .detect(&data)
            .into_iter()
            .map(|face| {
                let b = face.bbox();
                Detection {
                    bbox: BoundingBox {
                        x: (b.x() as f64 / scale).round() as i32,
                        y: (b.y() as f64 / scale).round() as i32,
                        width: (b.width() as f64 / scale).round() as u32,
                        height: (b.height() as f64 / scale).round() as u32,
                    },
                    score: face.score(),
                }
            })
            // rustface still reports larger faces when the minimum exceeds the picture.
            .filter(|d| d.bbox.width >= self.config.min_face_size)
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bad_settings_are_errors_not_panics() {
        for bad in [
            DetectorConfig {
                min_face_size: 10,
                ..DetectorConfig::default()
            },
            DetectorConfig {
                score_threshold: 0.0,
                ..DetectorConfig::default()
            },
            DetectorConfig {
                pyramid_scale: 1.0,
                ..DetectorConfig::default()
            },
            DetectorConfig {
                window_step: 0,
                ..DetectorConfig::default()
            },
        ] {
            assert!(SeetaDetector::new(bad).is_err());
        }
    }

    #[test]
    fn blank_and_tiny_pictures_have_no_faces() {
        let mut detector = SeetaDetector::new(DetectorConfig::default()).unwrap();
        assert!(detector.detect(&GrayImage::new(10, 10)).is_empty());
        assert!(
            detector
                .detect(&GrayImage::from_pixel(200, 150, image::Luma([128])))
                .is_empty()
        );
    }

    #[test]
    fn iou() {
        let a = BoundingBox {
            x: 0,
            y: 0,
            width: 10,
            height: 10,
        };
        let b = BoundingBox {
            x: 5,
            y: 0,
            width: 10,
            height: 10,
        };
        assert!((a.iou(&b) - 50.0 / 150.0).abs() < 1e-12);
        assert_eq!(a.iou(&a), 1.0);
    }
}
