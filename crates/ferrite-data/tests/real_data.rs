//! On the real FER2013 Training + PublicTest rows (`$FERRITE_DATA`, default
//! `../shared/data/fer2013`); each test prints a SKIP line when the data is absent.

use std::path::{Path, PathBuf};

use ferrite_data::ferplus::FerPlusVotes;
use ferrite_data::inspect::inspect;
use ferrite_data::locate::{FERPLUS_CSV, shared_csv_or_skip};
use ferrite_data::{LoadOptions, Split, fer2013};

fn project_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

#[test]
fn shared_csv_has_the_documented_counts_black_images_and_duplicates() {
    let Some(csv) = shared_csv_or_skip(&project_root(), "real-data counts") else {
        return;
    };
    let loaded = fer2013::load(&csv, LoadOptions::default()).unwrap();
    assert!(loaded.skipped.is_empty());
    let report = inspect(&loaded.store);
    assert_eq!(
        report.counts,
        [
            (
                Split::Training,
                vec![3995, 436, 4097, 7215, 4830, 3171, 4965]
            ),
            (Split::PublicTest, vec![467, 56, 496, 895, 653, 415, 607]),
        ]
    );
    let black: Vec<u32> = report
        .constant_images
        .iter()
        .filter(|c| c.value == 0)
        .map(|c| c.source_row)
        .collect();
    assert_eq!(
        black,
        [
            6458, 7629, 10423, 11286, 13148, 13402, 13988, 15894, 22198, 22927, 28601, 30002
        ]
    );
    let cross = report
        .duplicates
        .cross_split
        .iter()
        .find(|(a, b, _)| (*a, *b) == (Split::PublicTest, Split::Training));
    assert_eq!(cross.map(|c| c.2), Some(280));

    let votes = FerPlusVotes::load(&csv.with_file_name(FERPLUS_CSV)).unwrap();
    assert_eq!(votes.len(), loaded.store.len());
    let not_faces = (0..votes.len())
        .filter(|&r| votes.votes(r)[9] == 10)
        .count();
    // The data README's 173 not-a-face rows span all three splits; 160 lie in Training + PublicTest.
    assert_eq!(not_faces, 160);
    let (relabelled, dropped) = votes.relabel(&loaded.store).unwrap();
    assert!(dropped >= not_faces, "every NF=10 row is dropped");
    assert_eq!(relabelled.len() + dropped, loaded.store.len());
    assert_eq!(relabelled.classes().len(), 8);
}
