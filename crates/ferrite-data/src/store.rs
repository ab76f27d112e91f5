use crate::{ClassMap, ClassSet, IMAGE_PIXELS, Split};

/// Faces in memory: 48×48 u8 pixels back to back, one label, split and source row each,
/// and optionally a per-class probability vector (FER+ votes) for soft-label training.
#[derive(Debug, Clone, PartialEq)]
pub struct FaceStore {
    classes: ClassSet,
    pixels: Vec<u8>,
    labels: Vec<u8>,
    splits: Vec<Split>,
    source_rows: Vec<u32>,
    soft_labels: Option<Vec<f32>>,
}

impl FaceStore {
    /// # Panics
    /// If the columns disagree in length: that is a bug in a loader, not bad input.
    pub fn new(
        classes: ClassSet,
        pixels: Vec<u8>,
        labels: Vec<u8>,
        splits: Vec<Split>,
        source_rows: Vec<u32>,
    ) -> Self {
        let n = labels.len();
        assert_eq!(pixels.len(), n * IMAGE_PIXELS, "pixels per image");
        assert_eq!(splits.len(), n, "one split per image");
        assert_eq!(source_rows.len(), n, "one source row per image");
        assert!(
            labels.iter().all(|&l| (l as usize) < classes.len()),
            "labels in range"
        );
        Self {
            classes,
            pixels,
            labels,
            splits,
            source_rows,
            soft_labels: None,
        }
    }

    /// Attaches per-image class probabilities (`len() × classes().len()` values).
    pub fn with_soft_labels(mut self, soft: Vec<f32>) -> Self {
        assert_eq!(
            soft.len(),
            self.len() * self.classes.len(),
            "soft labels per image"
        );
        self.soft_labels = Some(soft);
        self
    }

    pub fn len(&self) -> usize {
        self.labels.len()
    }

    pub fn is_empty(&self) -> bool {
        self.labels.is_empty()
    }

    pub fn classes(&self) -> &ClassSet {
        &self.classes
    }

    /// The 2304 pixels of image `i`, row-major.
    pub fn image(&self, i: usize) -> &[u8] {
        &self.pixels[i * IMAGE_PIXELS..(i + 1) * IMAGE_PIXELS]
    }

    pub fn label(&self, i: usize) -> u8 {
        self.labels[i]
    }

    pub fn labels(&self) -> &[u8] {
        &self.labels
    }

    pub fn split(&self, i: usize) -> Split {
        self.splits[i]
    }

    /// The 0-based data row (not counting the header) this image came from.
    pub fn source_row(&self, i: usize) -> u32 {
        self.source_rows[i]
    }

    pub fn soft_label(&self, i: usize) -> Option<&[f32]> {
        let k = self.classes.len();
        self.soft_labels.as_ref().map(|s| &s[i * k..(i + 1) * k])
    }

    pub fn has_soft_labels(&self) -> bool {
        self.soft_labels.is_some()
    }

    pub fn indices_of(&self, split: Split) -> Vec<usize> {
        (0..self.len())
            .filter(|&i| self.splits[i] == split)
            .collect()
    }

    /// Images per class within one split.
    pub fn class_counts(&self, split: Split) -> Vec<usize> {
        let mut counts = vec![0; self.classes.len()];
        for i in 0..self.len() {
            if self.splits[i] == split {
                counts[self.labels[i] as usize] += 1;
            }
        }
        counts
    }

    /// A new store with only the given rows, in the given order.
    pub fn select(&self, rows: &[usize]) -> FaceStore {
        let mut pixels = Vec::with_capacity(rows.len() * IMAGE_PIXELS);
        for &i in rows {
            pixels.extend_from_slice(self.image(i));
        }
        let k = self.classes.len();
        FaceStore {
            classes: self.classes.clone(),
            pixels,
            labels: rows.iter().map(|&i| self.labels[i]).collect(),
            splits: rows.iter().map(|&i| self.splits[i]).collect(),
            source_rows: rows.iter().map(|&i| self.source_rows[i]).collect(),
            soft_labels: self.soft_labels.as_ref().map(|soft| {
                rows.iter()
                    .flat_map(|&i| soft[i * k..(i + 1) * k].iter().copied())
                    .collect()
            }),
        }
    }

    /// Applies `--exclude` / `--merge`: drops rows of excluded classes and renumbers labels.
    /// Soft labels are summed into merged classes, excluded mass dropped, then renormalised.
    pub fn remap(&self, map: &ClassMap) -> FaceStore {
        assert_eq!(
            map.source(),
            &self.classes,
            "class map built for another class set"
        );
        let kept: Vec<usize> = (0..self.len())
            .filter(|&i| map.apply(self.labels[i]).is_some())
            .collect();
        let mut out = self.select(&kept);
        for label in &mut out.labels {
            *label = map.apply(*label).expect("kept rows map to a class");
        }
        let (k_old, k_new) = (self.classes.len(), map.target().len());
        out.soft_labels = out.soft_labels.take().map(|soft| {
            let mut remapped = vec![0.0; out.len() * k_new];
            for (row, dist) in soft.chunks_exact(k_old).enumerate() {
                let target = &mut remapped[row * k_new..(row + 1) * k_new];
                for (class, &p) in dist.iter().enumerate() {
                    if let Some(new) = map.apply(class as u8) {
                        target[new as usize] += p;
                    }
                }
                let total: f32 = target.iter().sum();
                if total > 0.0 {
                    target.iter_mut().for_each(|p| *p /= total);
                }
            }
            remapped
        });
        out.classes = map.target().clone();
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn remap_drops_renumbers_and_moves_soft_mass() {
        let classes = ClassSet::new(["a", "b", "c", "d"]);
        let store = FaceStore::new(
            classes.clone(),
            (0..4)
                .flat_map(|i| std::iter::repeat_n(i as u8, IMAGE_PIXELS))
                .collect(),
            vec![0, 1, 2, 3],
            vec![Split::Training; 4],
            vec![10, 11, 12, 13],
        )
        .with_soft_labels(vec![
            0.5, 0.25, 0.25, 0.0, // a
            0.0, 1.0, 0.0, 0.0, // b
            0.0, 0.0, 0.5, 0.5, // c
            0.0, 0.5, 0.0, 0.5, // d
        ]);
        let map = ClassMap::new(&classes, &["b".into()], &["a=c".into()]).unwrap();
        let out = store.remap(&map);
        assert_eq!(out.classes().names(), ["c", "d"]);
        assert_eq!(out.labels(), [0, 0, 1]);
        assert_eq!(out.source_row(1), 12);
        assert_eq!(out.image(2)[0], 3);
        assert_eq!(out.soft_label(0).unwrap(), [1.0, 0.0]);
        assert_eq!(out.soft_label(2).unwrap(), [0.0, 1.0]);
    }
}
