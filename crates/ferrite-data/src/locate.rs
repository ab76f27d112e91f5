//! Where the FER2013 files are: `$FERRITE_DATA`, else `../shared/data/fer2013` beside the
//! project root (the layout of our development machines; a user's fresh clone has none).

use std::path::{Path, PathBuf};

/// The environment variable naming the folder that holds the FER2013 files.
pub const DATA_ENV: &str = "FERRITE_DATA";
/// The shared training + PublicTest file inside that folder.
pub const TRAIN_PUBLIC_CSV: &str = "fer2013-train-publictest.csv.gz";
/// The FER+ votes for the same rows.
pub const FERPLUS_CSV: &str = "ferplus-train-publictest.csv";

/// `$FERRITE_DATA`, or `<project_root>/../shared/data/fer2013`.
pub fn data_dir(project_root: &Path) -> PathBuf {
    match std::env::var_os(DATA_ENV) {
        Some(dir) if !dir.is_empty() => PathBuf::from(dir),
        _ => project_root.join("../shared/data/fer2013"),
    }
}

/// The shared FER2013 CSV if it exists; otherwise `None`, after printing why, so a test can
/// skip with a clear line.
pub fn shared_csv_or_skip(project_root: &Path, test: &str) -> Option<PathBuf> {
    let path = data_dir(project_root).join(TRAIN_PUBLIC_CSV);
    if path.is_file() {
        Some(path)
    } else {
        eprintln!(
            "SKIP {test}: FER2013 data not found at {} (set {DATA_ENV} to the folder holding {TRAIN_PUBLIC_CSV})",
            path.display()
        );
        None
    }
}
