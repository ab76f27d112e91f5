//! What `ferrite data inspect` reports: counts per split × class, blank (constant) images,
//! and exact duplicates within and across splits.

use std::collections::HashMap;
use std::hash::{BuildHasher, BuildHasherDefault, DefaultHasher};

use crate::{FaceStore, Split};

#[derive(Debug, Clone, PartialEq)]
pub struct Inspection {
    /// Images per class for each split present, in Training, PublicTest, PrivateTest order.
    pub counts: Vec<(Split, Vec<usize>)>,
    /// Images whose 2304 pixels all have one value (FER2013 has 12 black ones).
    pub constant_images: Vec<ConstantImage>,
    pub duplicates: Duplicates,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConstantImage {
    pub index: usize,
    pub source_row: u32,
    pub split: Split,
    pub value: u8,
}

#[derive(Debug, Clone, PartialEq, Default)]
pub struct Duplicates {
    /// Groups of two or more byte-identical images, as store indices.
    pub groups: Vec<Vec<usize>>,
    /// Groups whose images carry more than one label.
    pub conflicting_groups: usize,
    /// (a, b, n): n rows of split a have an exact copy in split b (a ≠ b).
    pub cross_split: Vec<(Split, Split, usize)>,
}

impl Duplicates {
    pub fn rows(&self) -> usize {
        self.groups.iter().map(Vec::len).sum()
    }
}

pub fn inspect(store: &FaceStore) -> Inspection {
    let counts = Split::ALL
        .into_iter()
        .filter(|&s| (0..store.len()).any(|i| store.split(i) == s))
        .map(|s| (s, store.class_counts(s)))
        .collect();
    let constant_images = (0..store.len())
        .filter_map(|i| {
            let image = store.image(i);
            image.iter().all(|&p| p == image[0]).then(|| ConstantImage {
                index: i,
                source_row: store.source_row(i),
                split: store.split(i),
                value: image[0],
            })
        })
        .collect();
    Inspection {
        counts,
        constant_images,
        duplicates: duplicates(store),
    }
}

fn duplicates(store: &FaceStore) -> Duplicates {
    // Bucket by hash, then split each bucket by the exact bytes, so a collision cannot merge two images.
    let hasher = BuildHasherDefault::<DefaultHasher>::default();
    let mut buckets: HashMap<u64, Vec<usize>> = HashMap::new();
    for i in 0..store.len() {
        buckets
            .entry(hasher.hash_one(store.image(i)))
            .or_default()
            .push(i);
    }
    let mut groups: Vec<Vec<usize>> = Vec::new();
    for bucket in buckets.into_values().filter(|b| b.len() > 1) {
        let mut exact: Vec<Vec<usize>> = Vec::new();
        for i in bucket {
            match exact
                .iter_mut()
                .find(|g| store.image(g[0]) == store.image(i))
            {
                Some(group) => group.push(i),
                None => exact.push(vec![i]),
            }
        }
        groups.extend(exact.into_iter().filter(|g| g.len() > 1));
    }
    groups.sort();
    let conflicting_groups = groups
        .iter()
        .filter(|g| g.iter().any(|&i| store.label(i) != store.label(g[0])))
        .count();
    let mut cross_split = Vec::new();
    for a in Split::ALL {
        for b in Split::ALL.into_iter().filter(|&b| b != a) {
            let n: usize = groups
                .iter()
                .filter(|g| g.iter().any(|&i| store.split(i) == b))
                .map(|g| g.iter().filter(|&&i| store.split(i) == a).count())
                .sum();
            if n > 0 {
                cross_split.push((a, b, n));
            }
        }
    }
    Duplicates {
        groups,
        conflicting_groups,
        cross_split,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{ClassSet, IMAGE_PIXELS};

    #[test]
    fn finds_constant_images_and_duplicates_across_splits() {
        let mut pixels = Vec::new();
        let images: [u8; 5] = [0, 9, 9, 7, 9];
        for (k, &v) in images.iter().enumerate() {
            let mut image = vec![v; IMAGE_PIXELS];
            if k > 0 {
                image[5] = 1; // not constant
            }
            pixels.extend(image);
        }
        let splits = vec![
            Split::Training,
            Split::Training,
            Split::PublicTest,
            Split::Training,
            Split::Training,
        ];
        let store = FaceStore::new(
            ClassSet::fer2013(),
            pixels,
            vec![0, 1, 1, 2, 3],
            splits,
            (0..5).collect(),
        );
        let report = inspect(&store);
        assert_eq!(report.counts.len(), 2);
        assert_eq!(report.counts[0].1, [1, 1, 1, 1, 0, 0, 0]);
        assert_eq!(report.constant_images.len(), 1);
        assert_eq!(report.constant_images[0].value, 0);
        assert_eq!(report.duplicates.groups, [vec![1, 2, 4]]);
        assert_eq!(report.duplicates.conflicting_groups, 1);
        assert_eq!(
            report.duplicates.cross_split,
            [
                (Split::Training, Split::PublicTest, 2),
                (Split::PublicTest, Split::Training, 1)
            ]
        );
    }
}
