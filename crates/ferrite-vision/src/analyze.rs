//! Detect → crop → classify, for one picture.

use std::time::Instant;

use burn::prelude::*;
use ferrite_data::{BatchConfig, ClassSet, FaceStore, Split};
use ferrite_models::{ModelMeta, SavedModel};
use ferrite_train::metrics::{Tta, predict_probabilities};
use image::GrayImage;
use serde::{Deserialize, Serialize};

use crate::crop::crop_face;
use crate::detect::{BoundingBox, FaceDetector};
use crate::{Margins, detect::Detection};

/// One classified face.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Face {
    #[serde(rename = "box")]
    pub bbox: BoundingBox,
    pub detector_score: f64,
    pub emotion: String,
    pub confidence: f32,
    /// Class name → probability, in the model's class order.
    pub probabilities: Vec<(String, f32)>,
}

/// Milliseconds spent per stage on one picture; classify includes cropping.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct StageTimes {
    pub detect_ms: f64,
    pub classify_ms: f64,
}

/// A model ready for inference (`valid()`, plain device) and its input settings.
pub struct Analyzer {
    model: SavedModel,
    batch: BatchConfig,
    device: Device,
    pub margins: Margins,
}

impl Analyzer {
    pub fn new(model: SavedModel, device: Device) -> Self {
        let batch = BatchConfig {
            input_side: model.meta.config.input_side,
            normalization: model.meta.normalization,
            ..BatchConfig::new(64)
        };
        let model = SavedModel {
            network: model.network.valid(),
            meta: model.meta,
        };
        Self {
            model,
            batch,
            device,
            margins: Margins::default(),
        }
    }

    pub fn classes(&self) -> &ClassSet {
        &self.model.meta.classes
    }

    /// What the model file says about itself: architecture, input, classes, model card.
    pub fn meta(&self) -> &ModelMeta {
        &self.model.meta
    }

    /// Classifies 48×48 grey faces in batches, normalised exactly as in training.
    pub fn classify(&self, faces: &[Vec<u8>]) -> Vec<Vec<f32>> {
        if faces.is_empty() {
            return Vec::new();
        }
        let store = FaceStore::new(
            ClassSet::new(["face", "unused"]),
            faces.concat(),
            vec![0; faces.len()],
            vec![Split::Training; faces.len()],
            (0..faces.len() as u32).collect(),
        );
        let rows: Vec<usize> = (0..faces.len()).collect();
        let k = self.classes().len();
        let probabilities = predict_probabilities(
            &self.model.network,
            &store,
            &rows,
            &self.batch,
            Tta::None,
            &self.device,
        );
        probabilities.chunks_exact(k).map(<[f32]>::to_vec).collect()
    }

    /// Every face in `picture`, classified.
    pub fn analyze(&self, detector: &mut dyn FaceDetector, picture: &GrayImage) -> Vec<Face> {
        self.analyze_timed(detector, picture, self.margins).0
    }

    /// [`Analyzer::analyze`] with these margins, and the time each stage took.
    pub fn analyze_timed(
        &self,
        detector: &mut dyn FaceDetector,
        picture: &GrayImage,
        margins: Margins,
    ) -> (Vec<Face>, StageTimes) {
        let started = Instant::now();
        let detections: Vec<Detection> = detector.detect(picture);
        let detected = Instant::now();
        let crops: Vec<Vec<u8>> = detections
            .iter()
            .map(|d| crop_face(picture, &d.bbox, margins))
            .collect();
        let faces = self
            .classify(&crops)
            .into_iter()
            .zip(detections)
            .map(|(p, d)| self.face(d, &p))
            .collect();
        let times = StageTimes {
            detect_ms: (detected - started).as_secs_f64() * 1e3,
            classify_ms: detected.elapsed().as_secs_f64() * 1e3,
        };
        (faces, times)
    }

    fn face(&self, detection: Detection, probabilities: &[f32]) -> Face {
        let (best, confidence) = probabilities
            .iter()
            .copied()
            .enumerate()
            .fold((0, f32::MIN), |b, (i, p)| if p > b.1 { (i, p) } else { b });
        Face {
            bbox: detection.bbox,
            detector_score: detection.score,
            emotion: self.classes().name(best).to_string(),
            confidence,
            probabilities: self
                .classes()
                .names()
                .iter()
                .cloned()
                .zip(probabilities.iter().copied())
                .collect(),
        }
    }
}
