//! New op outputs, zeroed by the tasks that fill them.
//!
//! `vec![0.0; len]` zeroes the whole output on the calling thread before the parallel work
//! starts, while the other threads wait, and leaves it cold in cache for them. `memset` was 5–10 %
//! of a training step's samples in `perf` (seed-cnn, DeXpression, mini-Xception). Here each
//! chunk is zeroed by the task that fills it, so the zeroing runs on every thread and the chunk
//! is still in that core's cache when the kernel writes it.

use std::mem::MaybeUninit;

use rayon::prelude::*;

/// A new vector of `len` values filled in chunks of `chunk` (the last may be shorter), in
/// parallel, at least `min_chunks` per task: `fill(state, index, chunk)` gets each chunk
/// zeroed, with a per-task state made by `init` (as in rayon's `for_each_init`).
pub(crate) fn par_chunks_init<S, I, F>(
    len: usize,
    chunk: usize,
    min_chunks: usize,
    init: I,
    fill: F,
) -> Vec<f32>
where
    I: Fn() -> S + Sync + Send,
    F: Fn(&mut S, usize, &mut [f32]) + Sync + Send,
{
    let mut values = Vec::with_capacity(len);
    values.spare_capacity_mut()[..len]
        .par_chunks_mut(chunk.max(1))
        .with_min_len(min_chunks.max(1))
        .enumerate()
        .for_each_init(init, |state, (i, part)| fill(state, i, zeroed(part)));
    // SAFETY: the chunks cover the first `len` values, `for_each_init` visited every one (a
    // panic in `fill` unwinds past this line) and `zeroed` initialised each before `fill` ran.
    unsafe { values.set_len(len) };
    values
}

/// [`par_chunks_init`] without a per-task state.
pub(crate) fn par_chunks<F>(len: usize, chunk: usize, min_chunks: usize, fill: F) -> Vec<f32>
where
    F: Fn(usize, &mut [f32]) + Sync + Send,
{
    par_chunks_init(len, chunk, min_chunks, || (), |_, i, part| fill(i, part))
}

/// `part`, set to zeros, as initialised values.
fn zeroed(part: &mut [MaybeUninit<f32>]) -> &mut [f32] {
    part.fill(MaybeUninit::new(0.0));
    // SAFETY: every value was just initialised, and `MaybeUninit<f32>` has `f32`'s layout.
    unsafe { &mut *(part as *mut [MaybeUninit<f32>] as *mut [f32]) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_chunk_arrives_zeroed_and_in_place() {
        for (len, chunk) in [(0, 4), (1, 4), (10, 4), (1 << 16, 1000)] {
            let values = par_chunks(len, chunk, 1, |i, part| {
                assert!(part.iter().all(|&v| v == 0.0), "chunk {i} not zeroed");
                assert_eq!(part.len(), chunk.min(len - i * chunk), "chunk {i}'s length");
                for (j, v) in part.iter_mut().enumerate() {
                    *v += (i * chunk + j) as f32;
                }
            });
            let want: Vec<f32> = (0..len).map(|i| i as f32).collect();
            assert_eq!(values, want, "{len} values in chunks of {chunk}");
        }
    }
}
