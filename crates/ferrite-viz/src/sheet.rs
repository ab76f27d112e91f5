//! Grids of faces: a contact sheet with N samples per class, and an augmentation preview
//! (each face followed by augmented versions of it).

use ferrite_data::{Augmenter, FaceStore, IMAGE_SIDE};
use image::{GrayImage, Rgb, RgbImage, imageops};
use rand::SeedableRng;
use rand::seq::IndexedRandom;
use rand_chacha::ChaCha8Rng;

/// Faces are drawn at 2× so expressions are readable.
const SCALE: u32 = 2;
const CELL: u32 = IMAGE_SIDE as u32 * SCALE;
const GAP: u32 = 4;
const LABEL_WIDTH: u32 = 130;
const TITLE_HEIGHT: u32 = 30;
const BACKGROUND: Rgb<u8> = Rgb([255, 255, 255]);
const INK: Rgb<u8> = Rgb([20, 20, 20]);

/// Which rows a contact sheet shows: for each class, up to `per_class` rows drawn at random
/// (seeded) from `rows`.
pub fn sample_per_class(
    store: &FaceStore,
    rows: &[usize],
    per_class: usize,
    seed: u64,
) -> Vec<Vec<usize>> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    (0..store.classes().len())
        .map(|class| {
            let of_class: Vec<usize> = rows
                .iter()
                .copied()
                .filter(|&i| store.label(i) as usize == class)
                .collect();
            let mut picked: Vec<usize> = of_class
                .choose_multiple(&mut rng, per_class)
                .copied()
                .collect();
            picked.sort_unstable();
            picked
        })
        .collect()
}

/// One row per class, labelled "Angry (3995)" with the class's count among `rows`.
pub fn contact_sheet(store: &FaceStore, rows: &[usize], per_class: usize, seed: u64) -> RgbImage {
    let picks = sample_per_class(store, rows, per_class, seed);
    let labels: Vec<String> = picks
        .iter()
        .enumerate()
        .map(|(class, _)| {
            let n = rows
                .iter()
                .filter(|&&i| store.label(i) as usize == class)
                .count();
            format!("{} ({n})", store.classes().display_name(class))
        })
        .collect();
    let faces: Vec<Vec<Vec<f32>>> = picks
        .iter()
        .map(|row| {
            row.iter()
                .map(|&i| store.image(i).iter().map(|&p| p as f32).collect())
                .collect()
        })
        .collect();
    grid(
        "FER2013 samples per class",
        &labels,
        &faces,
        per_class,
        IMAGE_SIDE,
    )
}

/// Each chosen face (first column) followed by `variants` augmented versions at `side`.
pub fn augmentation_grid(
    store: &FaceStore,
    rows: &[usize],
    augmenter: &Augmenter,
    variants: usize,
    side: usize,
) -> RgbImage {
    let labels: Vec<String> = rows
        .iter()
        .map(|&i| {
            format!(
                "{} #{}",
                store.classes().display_name(store.label(i) as usize),
                store.source_row(i)
            )
        })
        .collect();
    let identity = Augmenter::new(ferrite_data::AugmentConfig::none(), 0);
    let faces: Vec<Vec<Vec<f32>>> = rows
        .iter()
        .map(|&i| {
            let image = store.image(i);
            std::iter::once(identity.augment(image, 0, 0, side))
                .chain((0..variants).map(|v| augmenter.augment(image, v, i, side)))
                .collect()
        })
        .collect();
    grid(
        "original, then augmented versions",
        &labels,
        &faces,
        variants + 1,
        side,
    )
}

/// Lays out rows of square grey faces (values 0–255, `side`² each) with a label per row.
fn grid(
    title: &str,
    labels: &[String],
    faces: &[Vec<Vec<f32>>],
    columns: usize,
    side: usize,
) -> RgbImage {
    let cell = (side as u32 * SCALE).max(CELL);
    let width = LABEL_WIDTH + columns as u32 * (cell + GAP) + GAP;
    let height = TITLE_HEIGHT + labels.len() as u32 * (cell + GAP) + GAP;
    let mut sheet = RgbImage::from_pixel(width, height, BACKGROUND);
    crate::text::draw(&mut sheet, title, 8, 6, 18.0, INK);
    for (r, (label, row)) in labels.iter().zip(faces).enumerate() {
        let top = TITLE_HEIGHT + r as u32 * (cell + GAP);
        crate::text::draw(&mut sheet, label, 6, (top + cell / 2 - 8) as i32, 15.0, INK);
        for (c, face) in row.iter().enumerate() {
            let grey = GrayImage::from_fn(side as u32, side as u32, |x, y| {
                image::Luma([face[y as usize * side + x as usize]
                    .round()
                    .clamp(0.0, 255.0) as u8])
            });
            let big = imageops::resize(&grey, cell, cell, imageops::FilterType::Nearest);
            let rgb = image::DynamicImage::ImageLuma8(big).to_rgb8();
            let left = LABEL_WIDTH + c as u32 * (cell + GAP);
            imageops::replace(&mut sheet, &rgb, left as i64, top as i64);
        }
    }
    sheet
}

#[cfg(test)]
mod tests {
    use super::*;
    use ferrite_data::{AugmentConfig, ClassSet, IMAGE_PIXELS, Split};

    fn store() -> FaceStore {
        let n = 14;
        FaceStore::new(
            ClassSet::fer2013(),
            (0..n)
                .flat_map(|i| std::iter::repeat_n(i as u8 * 15, IMAGE_PIXELS))
                .collect(),
            (0..n).map(|i| (i % 7) as u8).collect(),
            vec![Split::Training; n],
            (0..n as u32).collect(),
        )
    }

    #[test]
    fn contact_sheet_has_a_row_per_class_and_the_faces() {
        let s = store();
        let rows: Vec<usize> = (0..s.len()).collect();
        let sheet = contact_sheet(&s, &rows, 2, 1);
        assert_eq!(sheet.width(), LABEL_WIDTH + 2 * (CELL + GAP) + GAP);
        assert_eq!(sheet.height(), TITLE_HEIGHT + 7 * (CELL + GAP) + GAP);
        // Class 1 ("disgust") holds rows 1 and 8: grey levels 15 and 120.
        let top = TITLE_HEIGHT + CELL + GAP;
        assert_eq!(
            sheet.get_pixel(LABEL_WIDTH + 5, top + 5),
            &Rgb([15, 15, 15])
        );
        assert_eq!(
            sheet.get_pixel(LABEL_WIDTH + CELL + GAP + 5, top + 5),
            &Rgb([120, 120, 120])
        );
        // The labels are drawn: the label column is not all background.
        let inked = (0..LABEL_WIDTH)
            .any(|x| (top..top + CELL).any(|y| sheet.get_pixel(x, y) != &BACKGROUND));
        assert!(inked);
    }

    #[test]
    fn augmentation_grid_shows_original_then_variants() {
        let s = store();
        let augmenter = Augmenter::new(AugmentConfig::recipe(), 3);
        let sheet = augmentation_grid(&s, &[3, 5], &augmenter, 4, 48);
        assert_eq!(sheet.width(), LABEL_WIDTH + 5 * (CELL + GAP) + GAP);
        assert_eq!(
            sheet.get_pixel(LABEL_WIDTH + 40, TITLE_HEIGHT + 40),
            &Rgb([45, 45, 45])
        );
    }
}
