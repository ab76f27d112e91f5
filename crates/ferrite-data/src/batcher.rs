//! Turns rows of a [`FaceStore`] into Burn tensors: images `[batch, 1, side, side]` f32,
//! targets `[batch]` Int, and soft targets `[batch, classes]` when the store has them.
//!
//! An [`EpochPlan`] fixes the order of one epoch (shuffled, class-balanced or sequential) from
//! the seed and the epoch number; [`BatchConfig::host_batch`] augments and normalises a batch
//! on the CPU with rayon (plain `Vec`s, so it can run on a prefetch thread); [`HostBatch::to_device`]
//! makes the tensors.

use burn::prelude::*;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use crate::augment::Transform;
use crate::{AugmentConfig, Augmenter, FaceStore, IMAGE_SIDE};

/// How pixel values 0–255 become model inputs. Saved with every model, so inference
/// normalises exactly as training did.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum Normalization {
    /// x / 127.5 − 1
    MinusOneToOne,
    /// x / 255
    ZeroToOne,
    /// (x − mean) / std, in pixel units.
    MeanStd { mean: f32, std: f32 },
}

impl Normalization {
    #[inline]
    pub fn apply(&self, pixel: f32) -> f32 {
        match *self {
            Normalization::MinusOneToOne => pixel / 127.5 - 1.0,
            Normalization::ZeroToOne => pixel / 255.0,
            Normalization::MeanStd { mean, std } => (pixel - mean) / std,
        }
    }

    /// Mean and standard deviation of the given rows' pixels.
    pub fn fit(store: &FaceStore, rows: &[usize]) -> Self {
        let (sum, sum_sq, n) = rows
            .par_iter()
            .map(|&i| {
                store
                    .image(i)
                    .iter()
                    .fold((0.0f64, 0.0f64, 0u64), |(s, q, n), &p| {
                        let p = p as f64;
                        (s + p, q + p * p, n + 1)
                    })
            })
            .reduce(|| (0.0, 0.0, 0), |a, b| (a.0 + b.0, a.1 + b.1, a.2 + b.2));
        let n = n.max(1) as f64;
        let mean = sum / n;
        let std = (sum_sq / n - mean * mean).max(1e-6).sqrt();
        Normalization::MeanStd {
            mean: mean as f32,
            std: std as f32,
        }
    }
}

/// How an epoch visits the training rows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Sampling {
    /// Every row once, in a fresh random order each epoch.
    #[default]
    Shuffle,
    /// As many draws as rows, each class equally likely, rows drawn with replacement
    /// within their class (counters FER2013's 436-image Disgust).
    ClassBalanced,
    /// Every row once, in the given order (evaluation).
    Sequential,
}

/// Everything about turning rows into batches.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BatchConfig {
    pub batch_size: usize,
    /// Side of the model's square input; 48 keeps FER2013's size, 64 upsamples as the recipe did.
    pub input_side: usize,
    pub normalization: Normalization,
    pub augment: AugmentConfig,
    pub sampling: Sampling,
    pub seed: u64,
}

impl BatchConfig {
    pub fn new(batch_size: usize) -> Self {
        Self {
            batch_size,
            input_side: IMAGE_SIDE,
            normalization: Normalization::MinusOneToOne,
            augment: AugmentConfig::none(),
            sampling: Sampling::Shuffle,
            seed: 0,
        }
    }

    /// The same settings for evaluation: no augmentation, sequential.
    pub fn for_evaluation(&self) -> Self {
        Self {
            augment: AugmentConfig::none(),
            sampling: Sampling::Sequential,
            ..self.clone()
        }
    }

    /// One batch, augmented (with the transforms of `epoch` at positions `first_position..`)
    /// and normalised, on the host.
    pub fn host_batch(
        &self,
        store: &FaceStore,
        rows: &[usize],
        epoch: usize,
        first_position: usize,
    ) -> HostBatch {
        let augmenter = Augmenter::new(self.augment.clone(), self.seed);
        self.build(store, rows, &augmenter, |k| {
            augmenter.draw(epoch, first_position + k, self.input_side)
        })
    }

    /// One batch with the same fixed transform applied to every image (test-time
    /// augmentation: a flip, a shifted crop).
    pub fn host_batch_with(
        &self,
        store: &FaceStore,
        rows: &[usize],
        transform: &Transform,
    ) -> HostBatch {
        let augmenter = Augmenter::new(
            AugmentConfig {
                fill_mode: self.augment.fill_mode,
                ..AugmentConfig::none()
            },
            0,
        );
        self.build(store, rows, &augmenter, |_| *transform)
    }

    fn build(
        &self,
        store: &FaceStore,
        rows: &[usize],
        augmenter: &Augmenter,
        transform: impl Fn(usize) -> Transform + Sync,
    ) -> HostBatch {
        let side = self.input_side;
        let mut images = vec![0.0f32; rows.len() * side * side];
        images
            .par_chunks_mut(side * side)
            .zip(rows.par_iter())
            .enumerate()
            .for_each(|(k, (out, &row))| {
                augmenter.apply(store.image(row), &transform(k), side, out);
                out.iter_mut()
                    .for_each(|v| *v = self.normalization.apply(*v));
            });
        let k = store.classes().len();
        HostBatch {
            images,
            side,
            targets: rows.iter().map(|&i| store.label(i) as i64).collect(),
            soft_targets: store.has_soft_labels().then(|| {
                rows.iter()
                    .flat_map(|&i| store.soft_label(i).unwrap_or_default().iter().copied())
                    .collect()
            }),
            classes: k,
            rows: rows.to_vec(),
        }
    }
}

/// The rows of each batch of one epoch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EpochPlan {
    pub batches: Vec<Vec<usize>>,
}

impl EpochPlan {
    pub fn new(store: &FaceStore, rows: &[usize], config: &BatchConfig, epoch: usize) -> Self {
        let mut rng = ChaCha8Rng::seed_from_u64(
            config.seed ^ (epoch as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15),
        );
        let order: Vec<usize> = match config.sampling {
            Sampling::Sequential => rows.to_vec(),
            Sampling::Shuffle => {
                let mut order = rows.to_vec();
                order.shuffle(&mut rng);
                order
            }
            Sampling::ClassBalanced => {
                let mut by_class = vec![Vec::new(); store.classes().len()];
                for &i in rows {
                    by_class[store.label(i) as usize].push(i);
                }
                by_class.retain(|c| !c.is_empty());
                (0..rows.len())
                    .map(|_| {
                        let class = &by_class[rng.random_range(0..by_class.len())];
                        class[rng.random_range(0..class.len())]
                    })
                    .collect()
            }
        };
        let batches = order
            .chunks(config.batch_size.max(1))
            .map(<[usize]>::to_vec)
            .collect();
        Self { batches }
    }

    pub fn len(&self) -> usize {
        self.batches.len()
    }

    pub fn is_empty(&self) -> bool {
        self.batches.is_empty()
    }
}

/// A batch on the host, ready to become tensors.
#[derive(Debug, Clone)]
pub struct HostBatch {
    pub images: Vec<f32>,
    pub side: usize,
    pub targets: Vec<i64>,
    pub soft_targets: Option<Vec<f32>>,
    pub classes: usize,
    /// The store rows in this batch, for reports such as hard-example mining.
    pub rows: Vec<usize>,
}

/// A batch as Burn tensors.
#[derive(Debug, Clone)]
pub struct FaceBatch {
    pub images: Tensor<4>,
    pub targets: Tensor<1, Int>,
    pub soft_targets: Option<Tensor<2>>,
    pub rows: Vec<usize>,
}

impl HostBatch {
    pub fn len(&self) -> usize {
        self.targets.len()
    }

    pub fn is_empty(&self) -> bool {
        self.targets.is_empty()
    }

    pub fn to_device(self, device: &Device) -> FaceBatch {
        let n = self.len();
        let images = Tensor::from_data(
            TensorData::new(self.images, [n, 1, self.side, self.side]),
            device,
        );
        let targets = Tensor::from_data(TensorData::new(self.targets, [n]), device);
        let soft_targets = self
            .soft_targets
            .map(|soft| Tensor::from_data(TensorData::new(soft, [n, self.classes]), device));
        FaceBatch {
            images,
            targets,
            soft_targets,
            rows: self.rows,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{ClassSet, IMAGE_PIXELS, Split};

    fn store() -> FaceStore {
        let n = 10;
        FaceStore::new(
            ClassSet::new(["a", "b"]),
            (0..n)
                .flat_map(|i| std::iter::repeat_n(i as u8 * 20, IMAGE_PIXELS))
                .collect(),
            (0..n).map(|i| (i < 2) as u8).collect(),
            vec![Split::Training; n],
            (0..n as u32).collect(),
        )
    }

    #[test]
    fn epochs_shuffle_reproducibly_and_cover_every_row() {
        let s = store();
        let rows: Vec<usize> = (0..10).collect();
        let config = BatchConfig {
            seed: 5,
            ..BatchConfig::new(4)
        };
        let a = EpochPlan::new(&s, &rows, &config, 0);
        assert_eq!(
            a.batches.iter().map(Vec::len).collect::<Vec<_>>(),
            [4, 4, 2]
        );
        assert_eq!(a, EpochPlan::new(&s, &rows, &config, 0));
        assert_ne!(a, EpochPlan::new(&s, &rows, &config, 1));
        let mut seen: Vec<usize> = a.batches.concat();
        seen.sort();
        assert_eq!(seen, rows);
    }

    #[test]
    fn class_balanced_sampling_evens_out_classes() {
        let s = store();
        let rows: Vec<usize> = (0..10).collect();
        let config = BatchConfig {
            sampling: Sampling::ClassBalanced,
            ..BatchConfig::new(1000)
        };
        let many: Vec<usize> = (0..200)
            .flat_map(|e| EpochPlan::new(&s, &rows, &config, e).batches.concat())
            .collect();
        let minority = many.iter().filter(|&&i| s.label(i) == 1).count() as f32 / many.len() as f32;
        assert!(
            (0.45..0.55).contains(&minority),
            "class b share {minority}, 0.2 without balancing"
        );
    }

    #[test]
    fn batch_tensors_have_nchw_shape_and_normalised_values() {
        let s = store();
        let config = BatchConfig {
            input_side: 64,
            ..BatchConfig::new(4)
        };
        let batch = config
            .host_batch(&s, &[0, 9, 1], 0, 0)
            .to_device(&Device::flex());
        assert_eq!(batch.images.dims(), [3, 1, 64, 64]);
        let values: Vec<f32> = batch.images.into_data().iter::<f32>().collect();
        assert_eq!(values[0], -1.0);
        assert!((values[64 * 64] - (180.0 / 127.5 - 1.0)).abs() < 1e-6);
        let targets: Vec<i64> = batch.targets.into_data().iter::<i64>().collect();
        assert_eq!(targets, [1, 0, 1]);
    }

    #[test]
    fn fitted_normalisation_centres_the_data() {
        let s = store();
        let rows: Vec<usize> = (0..10).collect();
        let Normalization::MeanStd { mean, std } = Normalization::fit(&s, &rows) else {
            panic!("fit returns MeanStd")
        };
        assert!((mean - 90.0).abs() < 1e-3);
        assert!(std > 50.0);
    }
}
