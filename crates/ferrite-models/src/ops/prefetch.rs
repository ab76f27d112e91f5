//! Bringing what a kernel reads next into L2 while it computes.
//!
//! Why: at batch 1 a model's weights do not all fit in L3 (VGG's take 41 MB), so each layer's
//! filters come from memory. A kernel that reads a chunk of filters and then computes on it
//! for a while waits on memory for the first read and leaves it idle for the rest; spreading
//! prefetches of the next chunk over the current one's steps overlaps the two.

use std::arch::x86_64::{_MM_HINT_T1, _mm_prefetch};
use std::ops::Range;

/// Bytes in a cache line.
const LINE: usize = 64;

/// A share of bytes to bring into L2, spread evenly over `steps` steps of a loop.
#[derive(Clone, Copy, Default)]
pub(crate) struct Prefetch<'a> {
    bytes: &'a [u8],
    per_step: usize,
}

impl<'a> Prefetch<'a> {
    fn new(bytes: &'a [u8], steps: usize) -> Self {
        let per_step = bytes.len().div_ceil(LINE).div_ceil(steps.max(1));
        Self { bytes, per_step }
    }

    /// Share `i` of `shares` equal shares of `bytes` (the last few bytes left out; none past the
    /// last share), spread over `steps` steps.
    pub(crate) fn share(bytes: &'a [u8], i: usize, shares: usize, steps: usize) -> Self {
        let len = bytes.len() / shares.max(1);
        let rest = bytes.get(i * len..).unwrap_or_default();
        Self::new(&rest[..len.min(rest.len())], steps)
    }

    /// Issues step `step`'s prefetches.
    #[inline(always)]
    pub(crate) fn step(&self, step: usize) {
        self.lines(step * self.per_step..(step + 1) * self.per_step);
    }

    #[inline(always)]
    fn lines(&self, lines: Range<usize>) {
        for line in lines {
            if let Some(byte) = self.bytes.get(line * LINE) {
                // SAFETY: a prefetch only hints the caches, and the address lies in `bytes`.
                unsafe { _mm_prefetch::<_MM_HINT_T1>(std::ptr::from_ref(byte).cast()) };
            }
        }
    }
}

/// What a kernel that reads its block's filters `bytes` chunk by chunk reads after the chunk
/// ending at byte `end`: the next `len` bytes of the block, or after its last chunk the first
/// `len` of `ahead` (the next block's filters).
pub(crate) fn next_chunk<'a>(bytes: &'a [u8], ahead: &'a [u8], end: usize, len: usize) -> &'a [u8] {
    let next = match &bytes[end..] {
        [] => ahead,
        rest => rest,
    };
    &next[..next.len().min(len)]
}

/// `values` as bytes, to prefetch.
pub(crate) fn bytes_of<T: Copy>(values: &[T]) -> &[u8] {
    // SAFETY: the same memory read as bytes: any bit pattern is a `u8`, whose alignment is 1,
    // and `T: Copy` has no interior mutability to race with.
    unsafe { std::slice::from_raw_parts(values.as_ptr().cast(), size_of_val(values)) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shares_cover_the_bytes_over_the_steps() {
        let bytes = vec![0u8; 10 * LINE];
        let share = Prefetch::share(&bytes, 1, 2, 3);
        assert_eq!((share.bytes.len(), share.per_step), (5 * LINE, 2));
        assert_eq!(share.bytes.as_ptr(), bytes[5 * LINE..].as_ptr());
        assert!(Prefetch::share(&bytes, 2, 2, 3).bytes.is_empty());
        assert_eq!(Prefetch::new(&[], 4).per_step, 0);
    }

    #[test]
    fn the_next_chunk_runs_on_into_the_next_block() {
        let (block, ahead) = ([1u8; 10], [2u8; 6]);
        assert_eq!(next_chunk(&block, &ahead, 4, 4), &[1; 4]);
        assert_eq!(
            next_chunk(&block, &ahead, 8, 4),
            &[1; 2],
            "the block's short last chunk"
        );
        assert_eq!(next_chunk(&block, &ahead, 10, 4), &[2; 4]);
        assert!(next_chunk(&block, &[], 10, 4).is_empty());
    }
}
