//! Scratch buffers kept per thread between calls.
//!
//! Every convolution needs working memory (column matrices, phase planes, transformed tiles)
//! that it overwrites before reading. Allocating it zeroed on every call cost a `memset` of the
//! whole buffer each time: 6 % of seed-cnn's batch-1 inference in `perf`. Here each thread
//! keeps a few buffers and lends them out again, uncleared.
//!
//! A few, not one: a thread that waits inside a parallel op runs other tasks meanwhile (rayon
//! steals work), and those take scratch while the waiting op still holds its own. With one
//! spare, every such nested call allocated afresh, and the kernel zeroed its pages: at
//! DeXpression's batch-1 inference, where the FeatEx branches and the Winograd stages all run
//! as stolen tasks, the kernel's page clearing under the convolutions was about 2 % of the
//! samples in `perf`.

use std::cell::RefCell;

/// Buffers each thread keeps: enough for the nesting seen in practice (an op, a stolen task
/// inside it, and one more level).
const SPARES: usize = 4;

thread_local! {
    static SPARE: RefCell<Vec<Vec<f32>>> = const { RefCell::new(Vec::new()) };
}

/// Runs `work` on `len` values of this thread's scratch. Their contents are left over from
/// earlier calls: `work` must write before it reads. (In this crate's tests they are NaN, so a
/// kernel that reads first fails its test.)
///
/// Re-entrant: a call made while another on the same thread holds a buffer (rayon runs other
/// tasks while one waits) gets another one.
pub fn with_scratch<R>(len: usize, work: impl FnOnce(&mut [f32]) -> R) -> R {
    let mut buf = take_spare(len);
    if buf.len() < len {
        // Growing copies the old contents, which nobody needs; start over instead.
        buf = vec![0.0; len];
    }
    #[cfg(test)]
    buf[..len].fill(f32::NAN);
    let result = work(&mut buf[..len]);
    SPARE.with_borrow_mut(|spares| {
        spares.push(buf);
        if spares.len() > SPARES {
            let smallest = (0..spares.len()).min_by_key(|&i| spares[i].len());
            smallest.map(|i| spares.swap_remove(i));
        }
    });
    result
}

/// The smallest spare holding `len` values, else the largest (to be replaced), else none.
fn take_spare(len: usize) -> Vec<f32> {
    SPARE.with_borrow_mut(|spares| {
        let fits = (0..spares.len())
            .filter(|&i| spares[i].len() >= len)
            .min_by_key(|&i| spares[i].len());
        let pick = fits.or_else(|| (0..spares.len()).max_by_key(|&i| spares[i].len()));
        pick.map(|i| spares.swap_remove(i)).unwrap_or_default()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spare_lens() -> Vec<usize> {
        let mut lens: Vec<usize> = SPARE.with_borrow(|s| s.iter().map(Vec::len).collect());
        lens.sort();
        lens
    }

    #[test]
    fn nested_calls_get_separate_buffers_and_both_are_kept() {
        SPARE.with_borrow_mut(Vec::clear);
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
        assert_eq!(spare_lens(), [8, 32]);
        // The same nesting again allocates nothing: each call gets the spare that fits.
        let address = |len| with_scratch(len, |s| s.as_ptr() as usize);
        let (small, large) = (address(8), address(32));
        with_scratch(8, |outer| {
            assert_eq!(outer.as_ptr() as usize, small);
            with_scratch(32, |inner| assert_eq!(inner.as_ptr() as usize, large));
        });
        assert_eq!(spare_lens(), [8, 32]);
    }

    #[test]
    fn at_most_a_few_spares_are_kept_the_largest_first() {
        SPARE.with_borrow_mut(Vec::clear);
        fn nest(lens: &[usize]) {
            if let [first, rest @ ..] = lens {
                with_scratch(*first, |_| nest(rest));
            }
        }
        nest(&[1, 2, 3, 4, 5, 6]);
        assert_eq!(spare_lens(), [3, 4, 5, 6]);
    }

    #[test]
    fn contents_are_poisoned_in_tests() {
        with_scratch(4, |s| s.fill(0.0));
        with_scratch(4, |s| assert!(s.iter().all(|v| v.is_nan())));
    }
}
