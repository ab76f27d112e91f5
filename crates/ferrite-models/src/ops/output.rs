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
    par_chunks_filled(len, chunk, min_chunks, init, |state, i, part| {
        let part = zeroed(part);
        fill(state, i, part);
        part
    })
}

/// [`par_chunks_init`] without a per-task state.
pub(crate) fn par_chunks<F>(len: usize, chunk: usize, min_chunks: usize, fill: F) -> Vec<f32>
where
    F: Fn(usize, &mut [f32]) + Sync + Send,
{
    par_chunks_init(len, chunk, min_chunks, || (), |_, i, part| fill(i, part))
}

/// [`par_chunks`] for fills that write every value, which then need not be zeroed first:
/// `fill(index, chunk)` gets each chunk uninitialised and returns it written (the same
/// values as `f32`: checked).
pub(crate) fn par_chunks_written<F>(
    len: usize,
    chunk: usize,
    min_chunks: usize,
    fill: F,
) -> Vec<f32>
where
    F: for<'a> Fn(usize, &'a mut [MaybeUninit<f32>]) -> &'a mut [f32] + Sync + Send,
{
    par_chunks_filled(len, chunk, min_chunks, || (), |_, i, part| fill(i, part))
}

/// The core of the above: `fill(state, index, chunk)` gets each chunk uninitialised and
/// returns it initialised, as `&mut [f32]` over its own memory (checked).
fn par_chunks_filled<S, I, F>(
    len: usize,
    chunk: usize,
    min_chunks: usize,
    init: I,
    fill: F,
) -> Vec<f32>
where
    I: Fn() -> S + Sync + Send,
    F: for<'a> Fn(&mut S, usize, &'a mut [MaybeUninit<f32>]) -> &'a mut [f32] + Sync + Send,
{
    let mut values = Vec::with_capacity(len);
    values.spare_capacity_mut()[..len]
        .par_chunks_mut(chunk.max(1))
        .with_min_len(min_chunks.max(1))
        .enumerate()
        .for_each_init(init, |state, (i, part)| {
            let (at, n) = (part.as_ptr() as usize, part.len());
            let filled = fill(state, i, part);
            assert!(
                filled.as_ptr() as usize == at && filled.len() == n,
                "a fill returns its own chunk"
            );
        });
    // SAFETY: the chunks cover the first `len` values, and each was returned as `&mut [f32]`
    // over its own memory (checked), which safe code can only hold of initialised values; a
    // panic in `fill` or the check unwinds past this line.
    unsafe { values.set_len(len) };
    values
}

/// New `[batch, channels[k], plane]` vectors, one per part, filled in parallel `stack` planes
/// at a time in the order of the parts' concatenation along channels (image by image: its
/// planes of part 0, then of part 1, ...): `fill(n, planes)` gets stack `n`'s planes zeroed.
pub(crate) fn par_concat_planes<const K: usize, F>(
    batch: usize,
    channels: [usize; K],
    plane: usize,
    stack: usize,
    fill: F,
) -> [Vec<f32>; K]
where
    F: Fn(usize, &mut [&mut [f32]]) + Sync + Send,
{
    let lens = channels.map(|c| batch * c * plane);
    let mut parts: [Vec<f32>; K] = lens.map(Vec::with_capacity);
    {
        let by_part = parts
            .iter_mut()
            .zip(lens)
            .map(|(part, len)| part.spare_capacity_mut()[..len].chunks_exact_mut(plane.max(1)))
            .collect();
        in_concat_order(by_part, &channels, batch)
            .par_chunks_mut(stack.max(1))
            .enumerate()
            .for_each(|(n, stack)| {
                let mut stack: Vec<&mut [f32]> = stack.iter_mut().map(|p| zeroed(p)).collect();
                fill(n, &mut stack);
            });
    }
    for (part, len) in parts.iter_mut().zip(lens) {
        // SAFETY: the planes cover each part's first `len` values (`len` is a whole number
        // of planes), `for_each` visited every stack (a panic in `fill` unwinds past this
        // line) and `zeroed` initialised each plane before `fill` ran.
        unsafe { part.set_len(len) };
    }
    parts
}

/// The planes of several parts (each an iterator over its planes, image by image), in the
/// order of the parts' concatenation along channels: image by image, part 0's `channels[0]`
/// planes, then part 1's `channels[1]`, ...
pub(crate) fn in_concat_order<I: Iterator>(
    mut parts: Vec<I>,
    channels: &[usize],
    batch: usize,
) -> Vec<I::Item> {
    let mut planes = Vec::with_capacity(batch * channels.iter().sum::<usize>());
    for _ in 0..batch {
        for (part, &c) in parts.iter_mut().zip(channels) {
            planes.extend(part.by_ref().take(c));
        }
    }
    planes
}

/// `part`, set to zeros, as initialised values.
fn zeroed(part: &mut [MaybeUninit<f32>]) -> &mut [f32] {
    part.fill(MaybeUninit::new(0.0));
    // SAFETY: every value was just initialised.
    unsafe { assume_written(part) }
}

/// `part`'s values as `f32`.
///
/// # Safety
/// Every value of `part` must have been written (`MaybeUninit<f32>` has `f32`'s layout).
pub(crate) unsafe fn assume_written(part: &mut [MaybeUninit<f32>]) -> &mut [f32] {
    // SAFETY: initialised by the caller's contract; same layout.
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

    #[test]
    fn written_chunks_arrive_in_place() {
        let values = par_chunks_written(10, 4, 1, |i, part| {
            assert_eq!(part.len(), 4.min(10 - i * 4), "chunk {i}'s length");
            for (j, v) in part.iter_mut().enumerate() {
                v.write((i * 4 + j) as f32);
            }
            // SAFETY: every value was just written.
            unsafe { assume_written(part) }
        });
        assert_eq!(values, (0..10).map(|i| i as f32).collect::<Vec<_>>());
    }

    #[test]
    #[should_panic(expected = "a fill returns its own chunk")]
    fn a_fill_must_return_its_own_chunk() {
        // Initialised values, but not the chunk's: its own would be left uninitialised.
        par_chunks_written(4, 4, 1, |_, _| {
            Box::leak(vec![0.0f32; 4].into_boxed_slice())
        });
    }

    #[test]
    fn concatenated_planes_arrive_zeroed_in_order() {
        // 2 images, parts of 3 and 1 channels, planes of 2 values, stacks of 3 planes.
        let [a, b] = par_concat_planes(2, [3, 1], 2, 3, |n, planes| {
            for (i, plane) in planes.iter_mut().enumerate() {
                assert!(plane.iter().all(|&v| v == 0.0), "plane {i} of stack {n}");
                plane.fill((n * 3 + i) as f32);
            }
        });
        // Concatenated order: image 0's a0 a1 a2 b0, then image 1's.
        assert_eq!(a, [0., 0., 1., 1., 2., 2., 4., 4., 5., 5., 6., 6.]);
        assert_eq!(b, [3., 3., 7., 7.]);
    }
}
