//! Image-folder datasets in the common Kaggle layout, `root/<split>/<class>/*.png|jpg`
//! (`train`, `val`/`validation`, `test`; class folders named like FER2013's emotions),
//! decoded in parallel and converted to 48×48 grey. A root whose folders are class names
//! is read as one Training split.

use std::path::{Path, PathBuf};

use image::imageops::FilterType;
use rayon::prelude::*;

use crate::{ClassSet, DataError, FaceStore, IMAGE_PIXELS, IMAGE_SIDE, LoadOptions, Split};

const IMAGE_EXTENSIONS: [&str; 5] = ["png", "jpg", "jpeg", "bmp", "webp"];

/// Faces loaded from a folder, and the files skipped under `skip_bad_rows`.
#[derive(Debug)]
pub struct FolderLoaded {
    pub store: FaceStore,
    pub skipped: Vec<DataError>,
}

pub fn load(root: &Path, options: LoadOptions) -> Result<FolderLoaded, DataError> {
    let classes = ClassSet::fer2013();
    let files = list_files(root, &classes)?;
    if files.is_empty() {
        return Err(DataError::Layout {
            path: root.to_path_buf(),
            message: "no .png/.jpg images under <split>/<class>/ folders".into(),
        });
    }
    let decoded: Vec<Result<Vec<u8>, DataError>> = files
        .par_iter()
        .map(|(path, _, _)| read_face(path))
        .collect();

    let mut pixels = Vec::with_capacity(files.len() * IMAGE_PIXELS);
    let (mut labels, mut splits, mut rows, mut skipped) = (vec![], vec![], vec![], vec![]);
    for (row, ((_, split, label), image)) in files.iter().zip(decoded).enumerate() {
        match image {
            Ok(image) => {
                pixels.extend_from_slice(&image);
                labels.push(*label);
                splits.push(*split);
                rows.push(row as u32);
            }
            Err(error) if options.skip_bad_rows => skipped.push(error),
            Err(error) => return Err(error),
        }
    }
    Ok(FolderLoaded {
        store: FaceStore::new(classes, pixels, labels, splits, rows),
        skipped,
    })
}

/// Decodes one image file to 48×48 grey, row-major.
pub fn read_face(path: &Path) -> Result<Vec<u8>, DataError> {
    let image = image::open(path).map_err(|e| DataError::Image {
        path: path.to_path_buf(),
        message: e.to_string(),
    })?;
    let grey = image.to_luma8();
    let grey = if grey.dimensions() == (IMAGE_SIDE as u32, IMAGE_SIDE as u32) {
        grey
    } else {
        image::imageops::resize(
            &grey,
            IMAGE_SIDE as u32,
            IMAGE_SIDE as u32,
            FilterType::Triangle,
        )
    };
    Ok(grey.into_raw())
}

/// Every image file with its split and label, sorted by path so row order is reproducible.
fn list_files(root: &Path, classes: &ClassSet) -> Result<Vec<(PathBuf, Split, u8)>, DataError> {
    let top = sorted_dirs(root)?;
    let all_classes =
        !top.is_empty() && top.iter().all(|d| classes.index_of(&file_name(d)).is_ok());
    let split_dirs: Vec<(Split, PathBuf)> = if all_classes {
        vec![(Split::Training, root.to_path_buf())]
    } else {
        top.into_iter()
            .map(|dir| {
                let split = file_name(&dir).parse().map_err(|_| DataError::Layout {
                    path: dir.clone(),
                    message: "expected a split folder (train, val, test) holding class folders"
                        .into(),
                })?;
                Ok((split, dir))
            })
            .collect::<Result<_, DataError>>()?
    };
    let mut files = Vec::new();
    for (split, split_dir) in split_dirs {
        for class_dir in sorted_dirs(&split_dir)? {
            let label = classes
                .index_of(&file_name(&class_dir))
                .map_err(|e| DataError::Layout {
                    path: class_dir.clone(),
                    message: e.to_string(),
                })? as u8;
            for file in sorted_entries(&class_dir)? {
                let extension = file
                    .extension()
                    .and_then(|e| e.to_str())
                    .unwrap_or("")
                    .to_ascii_lowercase();
                if file.is_file() && IMAGE_EXTENSIONS.contains(&extension.as_str()) {
                    files.push((file, split, label));
                }
            }
        }
    }
    Ok(files)
}

fn file_name(path: &Path) -> String {
    path.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
}

fn sorted_entries(dir: &Path) -> Result<Vec<PathBuf>, DataError> {
    let io_error = |source| DataError::Io {
        path: dir.to_path_buf(),
        source,
    };
    let mut entries = std::fs::read_dir(dir)
        .map_err(io_error)?
        .map(|entry| entry.map(|e| e.path()))
        .collect::<Result<Vec<_>, _>>()
        .map_err(io_error)?;
    entries.sort();
    Ok(entries)
}

fn sorted_dirs(dir: &Path) -> Result<Vec<PathBuf>, DataError> {
    Ok(sorted_entries(dir)?
        .into_iter()
        .filter(|p| p.is_dir())
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write_png(path: &Path, side: u32, value: u8) {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        image::GrayImage::from_pixel(side, side, image::Luma([value]))
            .save(path)
            .unwrap();
    }

    #[test]
    fn loads_kaggle_layout_resizing_to_48() {
        let dir = tempfile::tempdir().unwrap();
        write_png(&dir.path().join("train/happy/a.png"), 48, 10);
        write_png(&dir.path().join("train/angry/b.png"), 96, 20);
        write_png(&dir.path().join("test/sad/c.png"), 48, 30);
        std::fs::write(dir.path().join("train/happy/notes.txt"), "ignored").unwrap();
        let loaded = load(dir.path(), LoadOptions::default()).unwrap();
        let store = loaded.store;
        assert_eq!(store.len(), 3);
        // Sorted: test/sad, train/angry, train/happy.
        assert_eq!(store.labels(), [4, 0, 3]);
        assert_eq!(store.split(0), Split::PrivateTest);
        assert_eq!(store.split(1), Split::Training);
        assert!(store.image(1).iter().all(|&p| p == 20));
    }

    #[test]
    fn corrupt_image_names_the_file_or_is_skipped() {
        let dir = tempfile::tempdir().unwrap();
        write_png(&dir.path().join("happy/good.png"), 48, 1);
        let bad = dir.path().join("happy/bad.png");
        std::fs::write(&bad, b"this is not a png").unwrap();
        let err = load(dir.path(), LoadOptions::default()).unwrap_err();
        assert!(err.to_string().contains("bad.png"), "{err}");
        let loaded = load(
            dir.path(),
            LoadOptions {
                skip_bad_rows: true,
            },
        )
        .unwrap();
        assert_eq!(loaded.store.len(), 1);
        assert_eq!(loaded.skipped.len(), 1);
    }

    #[test]
    fn unknown_folders_are_layout_errors() {
        let dir = tempfile::tempdir().unwrap();
        write_png(&dir.path().join("holdout/happy/a.png"), 48, 1);
        assert!(matches!(
            load(dir.path(), LoadOptions::default()),
            Err(DataError::Layout { .. })
        ));
        let dir = tempfile::tempdir().unwrap();
        write_png(&dir.path().join("train/smiling/a.png"), 48, 1);
        let err = load(dir.path(), LoadOptions::default()).unwrap_err();
        assert!(err.to_string().contains("smiling"), "{err}");
    }
}
