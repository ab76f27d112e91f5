//! Temporal smoothing for video: faces are followed from frame to frame by box overlap (IoU),
//! and each track's emotion is the majority vote over its last N frames (the recipe used 10),
//! so labels do not flicker.

use std::collections::VecDeque;

use crate::BoundingBox;

/// A face in this frame, with its track and smoothed emotion (class index).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Tracked {
    pub track: u64,
    pub smoothed: usize,
}

#[derive(Debug)]
struct Track {
    id: u64,
    bbox: BoundingBox,
    votes: VecDeque<usize>,
    missed: usize,
}

#[derive(Debug)]
pub struct Tracker {
    tracks: Vec<Track>,
    next_id: u64,
    window: usize,
    min_iou: f64,
    /// Frames a track survives without a matching face (brief detector misses).
    max_missed: usize,
}

impl Tracker {
    pub fn new(window: usize, min_iou: f64) -> Self {
        Self {
            tracks: Vec::new(),
            next_id: 0,
            window: window.max(1),
            min_iou,
            max_missed: 5,
        }
    }

    /// Matches this frame's faces (box, predicted class) to tracks, greedily by IoU, opens
    /// tracks for the unmatched, and returns each face's track and smoothed class in input order.
    pub fn update(&mut self, faces: &[(BoundingBox, usize)]) -> Vec<Tracked> {
        let mut pairs: Vec<(f64, usize, usize)> = Vec::new();
        for (f, (bbox, _)) in faces.iter().enumerate() {
            for (t, track) in self.tracks.iter().enumerate() {
                let iou = bbox.iou(&track.bbox);
                if iou >= self.min_iou {
                    pairs.push((iou, f, t));
                }
            }
        }
        pairs.sort_by(|a, b| b.0.total_cmp(&a.0));
        let mut face_track: Vec<Option<usize>> = vec![None; faces.len()];
        let mut track_used = vec![false; self.tracks.len()];
        for (_, f, t) in pairs {
            if face_track[f].is_none() && !track_used[t] {
                face_track[f] = Some(t);
                track_used[t] = true;
            }
        }
        for (t, track) in self.tracks.iter_mut().enumerate() {
            if !track_used[t] {
                track.missed += 1;
            }
        }
        let mut out = Vec::with_capacity(faces.len());
        for (f, &(bbox, class)) in faces.iter().enumerate() {
            let t = face_track[f].unwrap_or_else(|| {
                self.tracks.push(Track {
                    id: self.next_id,
                    bbox,
                    votes: VecDeque::new(),
                    missed: 0,
                });
                self.next_id += 1;
                self.tracks.len() - 1
            });
            let track = &mut self.tracks[t];
            track.bbox = bbox;
            track.missed = 0;
            track.votes.push_back(class);
            if track.votes.len() > self.window {
                track.votes.pop_front();
            }
            out.push(Tracked {
                track: track.id,
                smoothed: majority(&track.votes),
            });
        }
        let max_missed = self.max_missed;
        self.tracks.retain(|t| t.missed <= max_missed);
        out
    }
}

/// The most frequent class; ties go to the one voted most recently.
fn majority(votes: &VecDeque<usize>) -> usize {
    let mut best = (0usize, 0usize, 0usize); // (count, last position, class)
    for (position, &class) in votes.iter().enumerate() {
        let count = votes.iter().filter(|&&c| c == class).count();
        if (count, position) > (best.0, best.1) {
            best = (count, position, class);
        }
    }
    best.2
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(x: i32) -> BoundingBox {
        BoundingBox {
            x,
            y: 10,
            width: 50,
            height: 50,
        }
    }

    #[test]
    fn a_flicker_is_voted_down_and_a_lasting_change_wins() {
        let mut tracker = Tracker::new(5, 0.3);
        let classes = [3, 3, 3, 4, 3, 3, 4, 4, 4, 4];
        let smoothed: Vec<usize> = classes
            .iter()
            .enumerate()
            .map(|(k, &c)| tracker.update(&[(at(k as i32), c)])[0].smoothed)
            .collect();
        assert_eq!(smoothed, [3, 3, 3, 3, 3, 3, 3, 4, 4, 4]);
    }

    #[test]
    fn faces_keep_their_tracks_by_overlap() {
        let mut tracker = Tracker::new(10, 0.3);
        let first = tracker.update(&[(at(0), 1), (at(300), 2)]);
        let second = tracker.update(&[(at(305), 2), (at(4), 1)]);
        assert_eq!((first[0].track, first[1].track), (0, 1));
        assert_eq!((second[0].track, second[1].track), (1, 0));
        let third = tracker.update(&[(at(600), 5)]);
        assert_eq!(
            third[0].track, 2,
            "a face far from every track starts a new one"
        );
    }
}
