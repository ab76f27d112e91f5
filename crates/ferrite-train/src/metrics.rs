//! Batched prediction on the inference backend, and the confusion matrix with the numbers
//! people read from it (accuracy, per-class precision / recall / F1, the recipe's
//! misclassified/total per emotion).

use burn::prelude::*;
use burn::tensor::activation::softmax;
use ferrite_data::augment::Transform;
use ferrite_data::{BatchConfig, FaceStore};
use ferrite_models::Network;
use serde::{Deserialize, Serialize};

/// Test-time augmentation: predictions averaged over several views of each face.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Tta {
    #[default]
    None,
    /// The face and its mirror image.
    Flip,
    /// Five crops (centre and ±2 px shifts), each also mirrored: ten views.
    FlipCrops,
}

impl Tta {
    pub fn views(self) -> Vec<Transform> {
        let flip = |t: Transform| Transform { flip: true, ..t };
        let id = Transform::IDENTITY;
        match self {
            Tta::None => vec![id],
            Tta::Flip => vec![id, flip(id)],
            Tta::FlipCrops => [(0, 0), (2, 2), (2, -2), (-2, 2), (-2, -2)]
                .into_iter()
                .map(|(dx, dy)| Transform {
                    crop_dx: dx,
                    crop_dy: dy,
                    ..id
                })
                .flat_map(|t| [t, flip(t)])
                .collect(),
        }
    }
}

/// Class probabilities (`rows.len() × classes`, row-major) from an inference network
/// (`network.valid()`, on a non-autodiff device), averaged over the TTA views.
pub fn predict_probabilities(
    network: &Network,
    store: &FaceStore,
    rows: &[usize],
    batch: &BatchConfig,
    tta: Tta,
    device: &Device,
) -> Vec<f32> {
    let views = tta.views();
    let k = store.classes().len();
    let mut probabilities = Vec::with_capacity(rows.len() * k);
    for chunk in rows.chunks(batch.batch_size.max(1)) {
        let mut sum: Option<Tensor<2>> = None;
        for view in &views {
            let images = batch
                .host_batch_with(store, chunk, view)
                .to_device(device)
                .images;
            let p = softmax(network.forward(images), 1);
            sum = Some(match sum {
                Some(s) => s + p,
                None => p,
            });
        }
        let mean = sum.expect("at least one view") / views.len() as f64;
        probabilities.extend(mean.into_data().iter::<f32>());
    }
    probabilities
}

/// Index of the largest value in each row of `probabilities`.
pub fn argmax_rows(probabilities: &[f32], classes: usize) -> Vec<u8> {
    probabilities
        .chunks_exact(classes)
        .map(|p| {
            p.iter()
                .enumerate()
                .fold(
                    (0, f32::MIN),
                    |best, (i, &v)| if v > best.1 { (i, v) } else { best },
                )
                .0 as u8
        })
        .collect()
}

/// Mean cross-entropy of the true labels under `probabilities`.
pub fn log_loss(probabilities: &[f32], targets: &[u8], classes: usize) -> f64 {
    let total: f64 = probabilities
        .chunks_exact(classes)
        .zip(targets)
        .map(|(p, &t)| -(p[t as usize].max(1e-12) as f64).ln())
        .sum();
    total / targets.len().max(1) as f64
}

/// counts[truth × k + predicted].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Confusion {
    pub classes: usize,
    pub counts: Vec<u64>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ClassStats {
    pub precision: f64,
    pub recall: f64,
    pub f1: f64,
    /// Images of this class.
    pub support: u64,
    /// Images of this class predicted as something else (the recipe's `Angry: 960/3995`).
    pub misclassified: u64,
}

impl Confusion {
    pub fn new(classes: usize) -> Self {
        Self {
            classes,
            counts: vec![0; classes * classes],
        }
    }

    pub fn from_predictions(targets: &[u8], predictions: &[u8], classes: usize) -> Self {
        let mut confusion = Self::new(classes);
        for (&t, &p) in targets.iter().zip(predictions) {
            confusion.counts[t as usize * classes + p as usize] += 1;
        }
        confusion
    }

    pub fn total(&self) -> u64 {
        self.counts.iter().sum()
    }

    pub fn correct(&self) -> u64 {
        (0..self.classes)
            .map(|c| self.counts[c * self.classes + c])
            .sum()
    }

    pub fn accuracy(&self) -> f64 {
        self.correct() as f64 / self.total().max(1) as f64
    }

    pub fn per_class(&self) -> Vec<ClassStats> {
        let k = self.classes;
        (0..k)
            .map(|c| {
                let tp = self.counts[c * k + c];
                let support: u64 = self.counts[c * k..(c + 1) * k].iter().sum();
                let predicted: u64 = (0..k).map(|t| self.counts[t * k + c]).sum();
                let precision = tp as f64 / predicted.max(1) as f64;
                let recall = tp as f64 / support.max(1) as f64;
                let f1 = if precision + recall > 0.0 {
                    2.0 * precision * recall / (precision + recall)
                } else {
                    0.0
                };
                ClassStats {
                    precision,
                    recall,
                    f1,
                    support,
                    misclassified: support - tp,
                }
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn confusion_counts_and_per_class_stats() {
        let c = Confusion::from_predictions(&[0, 0, 0, 1, 1, 2], &[0, 0, 1, 1, 2, 2], 3);
        assert_eq!(c.counts, [2, 1, 0, 0, 1, 1, 0, 0, 1]);
        assert!((c.accuracy() - 4.0 / 6.0).abs() < 1e-12);
        let stats = c.per_class();
        assert_eq!((stats[0].misclassified, stats[0].support), (1, 3));
        assert!((stats[1].precision - 0.5).abs() < 1e-12);
        assert!((stats[2].recall - 1.0).abs() < 1e-12);
        assert!((stats[2].f1 - 2.0 / 3.0).abs() < 1e-12);
    }

    #[test]
    fn argmax_and_log_loss() {
        let p = [0.1, 0.7, 0.2, 0.6, 0.3, 0.1];
        assert_eq!(argmax_rows(&p, 3), [1, 0]);
        let loss = log_loss(&p, &[1, 0], 3);
        assert!((loss - (-(0.7f64.ln() + 0.6f64.ln()) / 2.0)).abs() < 1e-6);
    }

    #[test]
    fn tta_views() {
        assert_eq!(Tta::None.views().len(), 1);
        assert_eq!(Tta::FlipCrops.views().len(), 10);
        assert!(Tta::Flip.views()[1].flip);
    }
}
