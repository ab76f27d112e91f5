//! FER+ (Barsoum et al. 2016, Microsoft `fer2013new.csv`): ten crowd votes per FER2013 image
//! over eight emotions plus `unknown` and `NF` (not a face).
//!
//! FER+ joins FER2013 **by row position**: its image names drift from the row index and
//! four repeat, so they are ignored.

use std::path::Path;

use crate::{ClassSet, DataError, FaceStore, RowError, RowProblem};

/// FER+'s eight emotions, in its column order, spelled as ferrite spells FER2013's
/// (so `--exclude` and `--merge` use one vocabulary).
pub const FERPLUS_CLASSES: [&str; 8] = [
    "neutral", "happy", "surprise", "sad", "angry", "disgust", "fear", "contempt",
];
const VOTE_COLUMNS: [&str; 10] = [
    "neutral",
    "happiness",
    "surprise",
    "sadness",
    "anger",
    "disgust",
    "fear",
    "contempt",
    "unknown",
    "nf",
];

/// The votes of every FER+ row, in file order.
#[derive(Debug, Clone)]
pub struct FerPlusVotes {
    votes: Vec<[u8; 10]>,
}

impl FerPlusVotes {
    pub fn load(path: &Path) -> Result<Self, DataError> {
        let bytes = crate::fer2013::read_maybe_gzip(path)?;
        Self::parse(&bytes, path)
    }

    pub fn parse(bytes: &[u8], path: &Path) -> Result<Self, DataError> {
        let text = String::from_utf8_lossy(bytes);
        let mut lines = text
            .lines()
            .enumerate()
            .filter(|(_, l)| !l.trim().is_empty());
        let (_, header) = lines.next().ok_or_else(|| DataError::Empty {
            path: path.to_path_buf(),
        })?;
        let names: Vec<String> = header
            .split(',')
            .map(|f| f.trim().to_ascii_lowercase())
            .collect();
        let mut columns = [0usize; 10];
        for (slot, wanted) in columns.iter_mut().zip(VOTE_COLUMNS) {
            *slot = names
                .iter()
                .position(|n| n == wanted)
                .ok_or_else(|| DataError::Header {
                    path: path.to_path_buf(),
                    found: header.to_string(),
                    problem: format!("no `{wanted}` column (is this FER+'s fer2013new.csv?)"),
                })?;
        }
        let mut votes = Vec::new();
        for (index, line) in lines {
            let fields: Vec<&str> = line.split(',').collect();
            let error = |field, problem| DataError::Row {
                path: path.to_path_buf(),
                row: RowError {
                    line: index + 1,
                    field,
                    problem,
                },
            };
            if fields.len() != names.len() {
                let problem = RowProblem::ColumnCount {
                    found: fields.len(),
                    expected: names.len(),
                };
                return Err(error("row", problem));
            }
            let mut row = [0u8; 10];
            for ((vote, &column), name) in row.iter_mut().zip(&columns).zip(VOTE_COLUMNS) {
                let token = fields[column].trim();
                *vote = token.parse().map_err(|_| {
                    let problem = RowProblem::NotInteger {
                        token: token.to_string(),
                        position: None,
                    };
                    error(name, problem)
                })?;
            }
            votes.push(row);
        }
        if votes.is_empty() {
            return Err(DataError::NoRows {
                path: path.to_path_buf(),
            });
        }
        Ok(Self { votes })
    }

    pub fn len(&self) -> usize {
        self.votes.len()
    }

    pub fn is_empty(&self) -> bool {
        self.votes.is_empty()
    }

    /// The raw ten votes of FER+ row `row`.
    pub fn votes(&self, row: usize) -> [u8; 10] {
        self.votes[row]
    }

    /// The most-voted emotion, or `None` when `unknown` or `NF` has at least as many votes
    /// (the FER+ paper's majority scheme drops those images). Ties go to the earlier column.
    pub fn majority(&self, row: usize) -> Option<u8> {
        let v = &self.votes[row];
        let (best, &most) = v[..8].iter().enumerate().rev().max_by_key(|(_, n)| **n)?;
        (most > 0 && most > v[8].max(v[9])).then_some(best as u8)
    }

    /// The eight emotion votes as probabilities (unknown and NF left out).
    pub fn distribution(&self, row: usize) -> [f32; 8] {
        let v = &self.votes[row];
        let total: u32 = v[..8].iter().map(|&n| n as u32).sum();
        let mut p = [0.0; 8];
        if total > 0 {
            for (p, &n) in p.iter_mut().zip(&v[..8]) {
                *p = n as f32 / total as f32;
            }
        }
        p
    }

    /// Relabels a FER2013 store with FER+: majority labels (8 classes), the vote distribution
    /// as soft labels, rows without an emotion majority dropped. Returns the store and how many
    /// rows were dropped.
    pub fn relabel(&self, store: &FaceStore) -> Result<(FaceStore, usize), DataError> {
        let rows_needed = (0..store.len())
            .map(|i| store.source_row(i) as usize + 1)
            .max()
            .unwrap_or(0);
        if rows_needed > self.len() {
            return Err(DataError::FerPlusLength {
                ferplus: self.len(),
                fer2013: rows_needed,
            });
        }
        let kept: Vec<usize> = (0..store.len())
            .filter(|&i| self.majority(store.source_row(i) as usize).is_some())
            .collect();
        let dropped = store.len() - kept.len();
        let selected = store.select(&kept);
        let mut labels = Vec::with_capacity(kept.len());
        let mut soft = Vec::with_capacity(kept.len() * 8);
        for i in 0..selected.len() {
            let row = selected.source_row(i) as usize;
            labels.extend(self.majority(row));
            soft.extend_from_slice(&self.distribution(row));
        }
        let pixels = (0..selected.len())
            .flat_map(|i| selected.image(i).iter().copied())
            .collect();
        let relabelled = FaceStore::new(
            ClassSet::new(FERPLUS_CLASSES),
            pixels,
            labels,
            (0..selected.len()).map(|i| selected.split(i)).collect(),
            (0..selected.len())
                .map(|i| selected.source_row(i))
                .collect(),
        )
        .with_soft_labels(soft);
        Ok((relabelled, dropped))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{IMAGE_PIXELS, Split};

    const CSV: &str = "Usage,Image name,neutral,happiness,surprise,sadness,anger,disgust,fear,contempt,unknown,NF\n\
        Training,fer0000000.png,4,0,0,1,3,2,0,0,0,0\n\
        Training,fer0000001.png,6,0,1,1,0,0,0,0,2,0\n\
        Training,,0,0,0,0,0,0,0,0,0,10\n\
        PublicTest,fer0000003.png,0,0,0,0,0,0,0,0,6,4\n";

    fn votes() -> FerPlusVotes {
        FerPlusVotes::parse(CSV.as_bytes(), Path::new("fer2013new.csv")).unwrap()
    }

    #[test]
    fn majority_drops_unknown_and_not_face() {
        let v = votes();
        assert_eq!(v.len(), 4);
        assert_eq!(v.majority(0), Some(0));
        assert_eq!(v.majority(1), Some(0));
        assert_eq!(v.majority(2), None);
        assert_eq!(v.majority(3), None);
        assert_eq!(v.distribution(0)[4], 0.3);
    }

    #[test]
    fn relabel_joins_by_row_position() {
        let store = FaceStore::new(
            ClassSet::fer2013(),
            vec![7; 3 * IMAGE_PIXELS],
            vec![0, 3, 6],
            vec![Split::Training, Split::Training, Split::PublicTest],
            vec![1, 2, 0],
        );
        let (out, dropped) = votes().relabel(&store).unwrap();
        assert_eq!(dropped, 1);
        assert_eq!(out.classes().len(), 8);
        assert_eq!(out.len(), 2);
        assert_eq!(out.source_row(0), 1);
        assert_eq!(out.labels(), [0, 0]);
        let soft = out.soft_label(1).unwrap();
        assert!((soft.iter().sum::<f32>() - 1.0).abs() < 1e-6);
    }

    #[test]
    fn bad_votes_name_line_and_field() {
        let bad = CSV.replace("6,0,1,1", "6,x,1,1");
        let err = FerPlusVotes::parse(bad.as_bytes(), Path::new("f.csv")).unwrap_err();
        assert_eq!(
            err.to_string(),
            "f.csv:3: field `happiness`: \"x\" is not an integer"
        );
        let short = FerPlusVotes::parse(b"Usage,neutral\n", Path::new("f.csv")).unwrap_err();
        assert!(
            short.to_string().contains("no `happiness` column"),
            "{short}"
        );
    }

    #[test]
    fn store_longer_than_votes_is_an_error() {
        let store = FaceStore::new(
            ClassSet::fer2013(),
            vec![0; IMAGE_PIXELS],
            vec![0],
            vec![Split::Training],
            vec![9],
        );
        assert!(matches!(
            votes().relabel(&store),
            Err(DataError::FerPlusLength { .. })
        ));
    }
}
