//! Scratch buffers kept per thread between calls.
//!
//! Every convolution needs working memory (column matrices, phase planes, transformed tiles)
//! that it overwrites before reading. Allocating it zeroed on every call cost a `memset` of the
//! whole buffer each time: 6 % of seed-cnn's batch-1 inference in `perf`. Here each thread
//! keeps its largest buffer and lends it out again, uncleared.

use std::cell::Cell;

thread_local! {
    static SPARE: Cell<Vec<f32>> = const { Cell::new(Vec::new()) };
}

/// Runs `work` on `len` values of this thread's scratch. Their contents are left over from
/// earlier calls: `work` must write before it reads. (In this crate's tests they are NaN, so a
/// kernel that reads first fails its test.)
///
/// Re-entrant: a call made while another on the same thread holds the buffer (rayon runs
/// other tasks while one waits) gets a fresh buffer, and the larger of the two is kept.
pub fn with_scratch<R>(len: usize, work: impl FnOnce(&mut [f32]) -> R) -> R {
    let mut buf = SPARE.take();
    if buf.len() < len {
        // Growing copies the old contents, which nobody needs; start over instead.
        buf = vec![0.0; len];
    }
    #[cfg(test)]
    buf[..len].fill(f32::NAN);
    let result = work(&mut buf[..len]);
    let other = SPARE.take();
    SPARE.set(if other.len() > buf.len() { other } else { buf });
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nested_calls_get_separate_buffers_and_the_larger_is_kept() {
        with_scratch(8, |outer| {
            outer.fill(1.0);
            with_scratch(32, |inner| {
                inner.fill(2.0);
                assert_eq!(inner.len(), 32);
            });
            assert!(
                outer.iter().all(|&v| v == 1.0),
                "the nested call wrote into ours"
            );
        });
        let kept = SPARE.take();
        assert_eq!(kept.len(), 32);
        SPARE.set(kept);
    }

    #[test]
    fn contents_are_poisoned_in_tests() {
        with_scratch(4, |s| s.fill(0.0));
        with_scratch(4, |s| assert!(s.iter().all(|v| v.is_nan())));
    }
}
