//! # ferrite-data
//!
//! Everything ferrite knows about faces before a model sees them:
//!
//! - [`fer2013`]: the Kaggle `fer2013.csv` (plain or gzip) parsed into a compact [`FaceStore`]
//!   (u8 pixels, labels, splits), fast and with errors that name file, line and field;
//! - [`ferplus`]: the FER+ crowd votes, joined by row position, as majority labels or soft labels;
//! - [`folder`]: `root/<split>/<class>/*.png|jpg` image-folder datasets, converted to 48×48 grey;
//! - [`classes`]: named emotions, `--exclude angry,disgust` and `--merge angry=sad`;
//! - [`split`]: the official Usage splits or a stratified random split, never training on PrivateTest;
//! - [`augment`]: Keras `ImageDataGenerator` augmentation plus random crop and random erasing;
//! - [`batcher`]: shuffled (or class-balanced) epochs of Burn tensors (NCHW, f32);
//! - [`inspect`]: counts, blank images and duplicates, for `ferrite data inspect`;
//! - [`locate`]: where the shared FER2013 files are (`$FERRITE_DATA`);
//! - [`atomic`]: the atomic file write every saved artefact goes through.
//!
//! Data flows one way: this crate knows nothing of models or training.

pub mod atomic;
pub mod augment;
pub mod batcher;
pub mod classes;
mod error;
pub mod fer2013;
pub mod ferplus;
pub mod folder;
pub mod inspect;
pub mod locate;
pub mod split;
mod store;

pub use augment::{AugmentConfig, Augmenter};
pub use batcher::{BatchConfig, EpochPlan, FaceBatch, Normalization, Sampling};
pub use classes::{ClassMap, ClassSet};
pub use error::{DataError, RowError, RowProblem};
pub use fer2013::{LoadOptions, Loaded, SkippedRow};
pub use split::{Split, SplitPlan, TrainVal};
pub use store::FaceStore;

/// FER2013 images are 48×48 grey.
pub const IMAGE_SIDE: usize = 48;
/// Pixels per FER2013 image.
pub const IMAGE_PIXELS: usize = IMAGE_SIDE * IMAGE_SIDE;
