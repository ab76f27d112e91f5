//! Which rows train and which validate: FER2013's official Usage splits, or a stratified
//! random split. PrivateTest is the final, untouched test split and is refused for both.

use std::fmt;
use std::str::FromStr;

use rand::SeedableRng;
use rand::seq::SliceRandom;
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use crate::{DataError, FaceStore};

/// FER2013's `Usage` column.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Split {
    Training,
    PublicTest,
    PrivateTest,
}

impl Split {
    pub const ALL: [Split; 3] = [Split::Training, Split::PublicTest, Split::PrivateTest];

    pub fn as_str(self) -> &'static str {
        match self {
            Split::Training => "Training",
            Split::PublicTest => "PublicTest",
            Split::PrivateTest => "PrivateTest",
        }
    }

    /// Fails for PrivateTest: it may be evaluated on, never trained on or tuned on.
    pub fn ensure_usable_for(self, purpose: &'static str) -> Result<(), DataError> {
        match self {
            Split::PrivateTest => Err(DataError::PrivateTestForbidden { purpose }),
            _ => Ok(()),
        }
    }
}

impl fmt::Display for Split {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Split {
    type Err = DataError;

    /// Accepts the CSV spellings and the folder names of the Kaggle image layout
    /// (`train`, `val`/`validation`, `test`).
    fn from_str(s: &str) -> Result<Self, DataError> {
        match s.trim().to_ascii_lowercase().as_str() {
            "training" | "train" => Ok(Split::Training),
            "publictest" | "public" | "val" | "valid" | "validation" => Ok(Split::PublicTest),
            "privatetest" | "private" | "test" => Ok(Split::PrivateTest),
            _ => Err(DataError::UnknownSplit {
                name: s.to_string(),
            }),
        }
    }
}

/// How to divide a store into training and validation rows.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum SplitPlan {
    /// Train on `Training`, validate (select models, tune) on `PublicTest`.
    Official,
    /// A stratified random split of the Training and PublicTest rows together
    /// (the seed recipe's 80/20), reproducible from the seed.
    Random { validation_fraction: f32, seed: u64 },
}

/// Row indices into a [`FaceStore`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TrainVal {
    pub train: Vec<usize>,
    pub validation: Vec<usize>,
}

impl SplitPlan {
    pub fn resolve(&self, store: &FaceStore) -> Result<TrainVal, DataError> {
        let split = match self {
            SplitPlan::Official => TrainVal {
                train: store.indices_of(Split::Training),
                validation: store.indices_of(Split::PublicTest),
            },
            SplitPlan::Random {
                validation_fraction,
                seed,
            } => stratified(store, *validation_fraction, *seed),
        };
        for (what, rows) in [
            ("training", &split.train),
            ("validation", &split.validation),
        ] {
            if rows.is_empty() {
                return Err(DataError::EmptySelection {
                    what,
                    hint: format!("the data has no rows for it under the {self:?} split plan"),
                });
            }
            // Belt and braces: whatever the plan, no PrivateTest row may leak in.
            if rows.iter().any(|&i| store.split(i) == Split::PrivateTest) {
                Split::PrivateTest.ensure_usable_for(what)?;
            }
        }
        Ok(split)
    }
}

/// Per class, shuffles the non-PrivateTest rows with the seed and moves the first
/// `fraction` of them to validation, so both sides keep the class proportions.
fn stratified(store: &FaceStore, fraction: f32, seed: u64) -> TrainVal {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut by_class = vec![Vec::new(); store.classes().len()];
    for i in 0..store.len() {
        if store.split(i) != Split::PrivateTest {
            by_class[store.label(i) as usize].push(i);
        }
    }
    let (mut train, mut validation) = (Vec::new(), Vec::new());
    for mut rows in by_class {
        rows.shuffle(&mut rng);
        let n_val = (rows.len() as f32 * fraction.clamp(0.0, 1.0)).round() as usize;
        validation.extend_from_slice(&rows[..n_val]);
        train.extend_from_slice(&rows[n_val..]);
    }
    train.sort_unstable();
    validation.sort_unstable();
    TrainVal { train, validation }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ClassSet;

    fn store(splits: &[Split], labels: &[u8]) -> FaceStore {
        let n = labels.len();
        FaceStore::new(
            ClassSet::new(["a", "b"]),
            vec![0; n * crate::IMAGE_PIXELS],
            labels.to_vec(),
            splits.to_vec(),
            (0..n as u32).collect(),
        )
    }

    #[test]
    fn parses_csv_and_folder_names() {
        assert_eq!("Training".parse::<Split>().unwrap(), Split::Training);
        assert_eq!("val".parse::<Split>().unwrap(), Split::PublicTest);
        assert_eq!("PrivateTest".parse::<Split>().unwrap(), Split::PrivateTest);
        assert!("holdout".parse::<Split>().is_err());
    }

    #[test]
    fn official_plan_never_touches_private_test() {
        let s = store(
            &[
                Split::Training,
                Split::PublicTest,
                Split::PrivateTest,
                Split::Training,
            ],
            &[0, 1, 0, 1],
        );
        let tv = SplitPlan::Official.resolve(&s).unwrap();
        assert_eq!(tv.train, [0, 3]);
        assert_eq!(tv.validation, [1]);
        assert!(Split::PrivateTest.ensure_usable_for("training").is_err());
    }

    #[test]
    fn random_plan_is_stratified_reproducible_and_excludes_private() {
        let splits: Vec<Split> = (0..200)
            .map(|i| {
                if i % 10 == 0 {
                    Split::PrivateTest
                } else {
                    Split::Training
                }
            })
            .collect();
        let labels: Vec<u8> = (0..200).map(|i| (i % 4 == 0) as u8).collect();
        let s = store(&splits, &labels);
        let plan = SplitPlan::Random {
            validation_fraction: 0.2,
            seed: 7,
        };
        let a = plan.resolve(&s).unwrap();
        assert_eq!(a, plan.resolve(&s).unwrap());
        assert_eq!(a.train.len() + a.validation.len(), 180);
        assert!(a.train.iter().chain(&a.validation).all(|&i| i % 10 != 0));
        let val_ones = a.validation.iter().filter(|&&i| labels[i] == 1).count();
        let all_ones = (0..200).filter(|&i| i % 10 != 0 && labels[i] == 1).count();
        assert_eq!(val_ones, (all_ones as f32 * 0.2).round() as usize);
    }

    #[test]
    fn empty_validation_is_an_error() {
        let s = store(&[Split::Training, Split::Training], &[0, 1]);
        let err = SplitPlan::Official.resolve(&s).unwrap_err();
        assert!(err.to_string().contains("validation"), "{err}");
    }
}
