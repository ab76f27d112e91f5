//! Flags shared by every command that reads faces: the source, bad-row handling,
//! FER+ relabelling and the class set.

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::Context;
use clap::Args;
use ferrite_data::ferplus::FerPlusVotes;
use ferrite_data::{ClassMap, ClassSet, FaceStore, LoadOptions, fer2013, folder, locate};

#[derive(Args, Debug, Clone)]
pub struct DatasetArgs {
    /// fer2013.csv(.gz) or an image folder (root/<split>/<class>/*.png). Default: the shared
    /// FER2013 file under $FERRITE_DATA (../shared/data/fer2013).
    pub data: Option<PathBuf>,
    /// The same as the positional DATA, for scripts that prefer a flag.
    #[arg(long = "data", value_name = "DATA", conflicts_with = "data")]
    pub data_flag: Option<PathBuf>,
    /// Load the good rows and report the bad ones instead of stopping at the first.
    #[arg(long)]
    pub skip_bad_rows: bool,
    /// Relabel with FER+ votes (fer2013new.csv, joined by row position): 8 classes, soft labels.
    #[arg(long, value_name = "CSV")]
    pub ferplus: Option<PathBuf>,
    /// Drop these emotions and renumber the rest, e.g. `angry,disgust`.
    #[arg(long, value_name = "NAMES", default_value = "")]
    pub exclude: String,
    /// Fold one emotion into another, e.g. `disgust=angry` (comma-separated for several).
    #[arg(long, value_name = "FROM=INTO", default_value = "")]
    pub merge: String,
}

impl DatasetArgs {
    fn given(&self) -> Option<PathBuf> {
        self.data.clone().or_else(|| self.data_flag.clone())
    }

    pub fn path(&self) -> PathBuf {
        self.given()
            .unwrap_or_else(|| locate::data_dir(Path::new(".")).join(locate::TRAIN_PUBLIC_CSV))
    }

    /// Loads, relabels and remaps, telling the user what was skipped or dropped.
    pub fn load(&self) -> anyhow::Result<FaceStore> {
        let store = self.load_unmapped()?;
        let map = ClassMap::new(store.classes(), &self.exclude_list(), &self.merge_list())?;
        if map.is_identity() {
            return Ok(store);
        }
        let store = store.remap(&map);
        eprintln!(
            "classes: {} ({} faces)",
            store.classes().names().join(", "),
            store.len()
        );
        Ok(store)
    }

    /// Loads and relabels onto a model's class set (a 5-class model sees 5 classes).
    pub fn load_onto(&self, classes: &ClassSet) -> anyhow::Result<FaceStore> {
        let store = self.load_unmapped()?;
        Ok(store.remap(&ClassMap::onto(
            store.classes(),
            classes,
            &self.merge_list(),
        )?))
    }

    pub fn exclude_list(&self) -> Vec<String> {
        ClassMap::parse_list(&self.exclude)
    }

    pub fn merge_list(&self) -> Vec<String> {
        ClassMap::parse_list(&self.merge)
    }

    /// Loads and relabels (FER+), leaving `--exclude`/`--merge` to the caller (training
    /// records them in its config so the run is reproducible).
    pub fn load_unmapped(&self) -> anyhow::Result<FaceStore> {
        let path = self.path();
        if self.given().is_none() && !path.exists() {
            anyhow::bail!(
                "no data given and the default {} does not exist; pass a fer2013.csv (Kaggle \
                 \"Challenges in Representation Learning: Facial Expression Recognition\") or set {}",
                path.display(),
                locate::DATA_ENV
            );
        }
        let started = Instant::now();
        let options = LoadOptions {
            skip_bad_rows: self.skip_bad_rows,
        };
        let mut store = if path.is_dir() {
            let loaded = folder::load(&path, options)?;
            for error in &loaded.skipped {
                eprintln!("skipped: {error}");
            }
            loaded.store
        } else {
            let loaded = fer2013::load(&path, options)?;
            if !loaded.skipped.is_empty() {
                eprintln!(
                    "skipped {} bad rows: {}",
                    loaded.skipped.len(),
                    loaded.skipped_summary()
                );
                for row in loaded.skipped.iter().take(5) {
                    eprintln!("  {}:{row}", path.display());
                }
            }
            loaded.store
        };
        eprintln!(
            "loaded {} faces from {} in {:.2} s",
            store.len(),
            path.display(),
            started.elapsed().as_secs_f64()
        );
        if let Some(ferplus) = &self.ferplus {
            let votes = FerPlusVotes::load(ferplus)?;
            let (relabelled, dropped) = votes
                .relabel(&store)
                .with_context(|| format!("joining {}", ferplus.display()))?;
            eprintln!(
                "FER+ labels: {} faces kept, {dropped} without an emotion majority dropped",
                relabelled.len()
            );
            store = relabelled;
        }
        Ok(store)
    }
}
