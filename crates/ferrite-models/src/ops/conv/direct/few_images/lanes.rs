//! The batch-1 direct kernel for small maps, with output channels in the vector lanes.
//!
//! Why: [`super`]'s kernel puts 16 neighbouring outputs of a wide plane in a vector. A wide
//! row of a 6² map holds 8 values for 6 outputs, so a quarter of its multiply-adds land on
//! padding; VGG's 6² layers then run near the machine's peak and still take a third of its
//! batch-1 forward. Here a vector holds 16 output channels of one output, and a register tile
//! holds up to 6 outputs of a row × 64 channels. Per input channel (or bf16 pair) and tap,
//! 4 loads of filters and 6 broadcasts of inputs feed 24 multiply-adds, none of them on
//! padding. The input channels go in chunks whose filters (295 KB) stay in L2 while every row
//! of the map reads them. The f32 layers [`f22::applies`] to (VGG's 6² layers) sum the same
//! blocks of filters by Winograd F(2×2) instead.

use std::arch::x86_64::{
    __m512, __m512bh, __m512i, _mm512_dpbf16_ps, _mm512_fmadd_ps, _mm512_loadu_ps,
    _mm512_loadu_si512, _mm512_set1_epi32, _mm512_set1_ps, _mm512_setzero_ps, _mm512_storeu_ps,
};
use std::mem::MaybeUninit;
use std::ops::Range;

use burn::backend::flex::FlexTensor;

use super::{Blocked, Layer, Operands, Sweep, f22};
use crate::ops::Precision;
use crate::ops::conv::kernels::{Epilogue, Geometry};
use crate::ops::conv::wide::{LANES, TAPS};
use crate::ops::filter_cache::FilterCache;
use crate::ops::prefetch::{Prefetch, next_chunk};

/// Vectors of output channels a tile sums at once.
const VECTORS: usize = 4;

/// Output channels a block of filters holds.
pub(super) const BLOCK: usize = VECTORS * LANES;

/// Outputs of one row a tile sums at once.
const ROW_TILE: usize = 6;

/// Input steps (channels, or bf16 pairs of them) per pass over the map: 128 · 9 taps · 64
/// channels · 4 bytes = 295 KB of filters, read by every tile of the pass from L2.
const CHUNK: usize = 128;

/// Outputs per map up to which the lanes gain: VGG's 6² maps (36), not its 12² ones.
const MAX_PIXELS: usize = 64;

/// As many values as the weights of the layers that run here: 64 MB.
const MAX_CACHED: usize = 1 << 24;

/// The layers' filters by blocks of 64 output channels: `[block][in][tap][64]`, or with bf16
/// operands `[block][in pair][tap][64]`.
static CACHE: FilterCache<Blocked> = FilterCache::new(MAX_CACHED);

/// Whether `g` (one [`super`] runs) runs here: small maps, and a block of output channels
/// for every thread. (Seed-cnn's 64→64/2 at 12², one block, took 0.028 → 0.035 ms here on
/// one thread, `conv_layers 401 seed 1 forward`.)
pub(super) fn applies(g: &Geometry) -> bool {
    g.out_plane() <= MAX_PIXELS && g.out_channels.div_ceil(BLOCK) >= rayon::current_num_threads()
}

/// `y = epilogue(conv(x, w))` with operands of `precision` (bf16 only where the CPU has
/// AVX-512 BF16), for `g` where [`applies`].
pub(super) fn forward(
    x: &[f32],
    w: &FlexTensor,
    post: &Epilogue,
    g: &Geometry,
    precision: Precision,
) -> Vec<f32> {
    let layer = Layer {
        cache: &CACHE,
        block: BLOCK,
        precision,
    };
    let plane = g.out_plane();
    let winograd = precision == Precision::F32 && f22::applies(g);
    let sums_len = |sweep: &Sweep| sweep.out_plane * BLOCK;
    let scratch_len = |sweep: &Sweep| {
        let transforms = winograd.then(|| f22::scratch_len(g.in_channels, sweep));
        sums_len(sweep) + transforms.unwrap_or(0)
    };
    let prepare = |operands: Operands<'_>, sweep: &Sweep, scratch: &mut [f32]| {
        if let (true, Operands::F32 { source, .. }) = (winograd, operands) {
            f22::transform_input(
                source,
                sweep,
                g.in_channels,
                &mut scratch[sums_len(sweep)..],
            );
        }
    };
    let per_block = |operands: Operands<'_>,
                     ahead: &[u8],
                     block: usize,
                     sweep: &Sweep,
                     maps: &mut [MaybeUninit<f32>],
                     scratch: &mut [f32]| {
        let channels = maps.len() / plane;
        let (sums, rest) = scratch.split_at_mut(sums_len(sweep));
        match operands {
            Operands::F32 { filters, .. } if winograd => {
                f22::sum_block(filters, ahead, sweep, channels, rest, sums)
            }
            _ => sum_block(operands, ahead, sweep, channels, sums),
        }
        for (c, map) in maps.chunks_exact_mut(plane).enumerate() {
            let (scale, shift) = post.affine(block * BLOCK + c);
            for (out, pixel) in map.iter_mut().zip(sums.chunks_exact(BLOCK)) {
                let v = pixel[c] * scale + shift;
                out.write(if post.relu { v.max(0.0) } else { v });
            }
        }
    };
    // SAFETY: `per_block` writes every value of every map of a block.
    unsafe { layer.by_blocks(x, w, g, scratch_len, prepare, per_block) }
}

/// `sums[p][c] = Σ_(step, t) filters[step][t][c] · source[step·plane + wide(p) + offsets[t]]`
/// for one block's `channels` output channels (≤ 64) at every output `p` of the map; `ahead`
/// the filters the thread reads after this block's.
///
/// A chunk's filters come from memory the first time a tile reads them: at batch 1 the whole
/// model's weights do not fit in L3. So while a chunk runs, each of its tiles pulls a share of
/// the next chunk's filters into L2, spread over its steps. In the whole VGG at batch 1 (the
/// layers timed inside the forward, 3 alternating pairs, ms) 256→512 went 0.452–0.466 →
/// 0.432–0.452 and 512→512 0.872–0.904 → 0.834–0.881.
fn sum_block(operands: Operands, ahead: &[u8], sweep: &Sweep, channels: usize, sums: &mut [f32]) {
    let [source_len, filters_len] = operands.lens();
    let steps = filters_len / (TAPS * BLOCK);
    let out_h = sweep.out_plane / sweep.out_w;
    let farthest = sweep.offsets.iter().max().copied().unwrap_or(0);
    let last_output = (out_h - 1) * sweep.row_width + sweep.out_w;
    assert!(
        steps > 0
            && (steps - 1) * sweep.plane + farthest + last_output <= source_len
            && sums.len() >= sweep.out_plane * BLOCK
            && (1..=BLOCK).contains(&channels),
        "lanes block out of bounds"
    );
    let vectors = channels.div_ceil(LANES);
    let filters = operands.filter_bytes();
    let step_bytes = filters.len() / steps;
    let tiles = out_h * sweep.out_w.div_ceil(ROW_TILE);
    for first in (0..steps).step_by(CHUNK) {
        let chunk = first..(first + CHUNK).min(steps);
        let next = next_chunk(filters, ahead, chunk.end * step_bytes, CHUNK * step_bytes);
        let mut shares = (0..tiles).map(|i| Prefetch::share(next, i, tiles, chunk.len()));
        for oy in 0..out_h {
            for ox in (0..sweep.out_w).step_by(ROW_TILE) {
                let tile = Tile {
                    at: oy * sweep.row_width + ox,
                    steps: chunk.clone(),
                    fresh: first == 0,
                    prefetch: shares.next().unwrap_or_default(),
                };
                let outputs = ROW_TILE.min(sweep.out_w - ox);
                let sums = &mut sums[(oy * sweep.out_w + ox) * BLOCK..];
                // SAFETY: `few_images::applies` checked AVX-512F, bf16 filters exist only
                // where the CPU has AVX-512 BF16, and every tile's reads and writes lie
                // within the bounds asserted.
                unsafe { tile.sum(operands, sweep, outputs, vectors, sums) };
            }
        }
    }
}

/// One register tile: outputs of a row from wide position `at`, over input `steps`, starting
/// from zero when `fresh` or else from the sums of the chunks before; bringing the bytes of
/// `prefetch` into L2 on the way.
struct Tile<'a> {
    at: usize,
    steps: Range<usize>,
    fresh: bool,
    prefetch: Prefetch<'a>,
}

impl Tile<'_> {
    /// `outputs` (≤ 6) × `vectors` (≤ 4) of sums in `sums` (`[output][64]`).
    ///
    /// # Safety
    /// AVX-512F (and AVX-512 BF16 for bf16 operands), and the bounds [`sum_block`] asserts.
    #[target_feature(enable = "avx512f")]
    unsafe fn sum(
        &self,
        operands: Operands,
        sweep: &Sweep,
        outputs: usize,
        vectors: usize,
        sums: &mut [f32],
    ) {
        macro_rules! by_vectors {
            ($P:expr) => {
                match vectors {
                    1 => self.kernel::<$P, 1>(operands, sweep, sums),
                    2 => self.kernel::<$P, 2>(operands, sweep, sums),
                    3 => self.kernel::<$P, 3>(operands, sweep, sums),
                    _ => self.kernel::<$P, VECTORS>(operands, sweep, sums),
                }
            };
        }
        // SAFETY: the caller's.
        unsafe {
            match outputs {
                1 => by_vectors!(1),
                2 => by_vectors!(2),
                3 => by_vectors!(3),
                4 => by_vectors!(4),
                5 => by_vectors!(5),
                _ => by_vectors!(ROW_TILE),
            }
        }
    }

    /// [`Tile::sum`] for `P` outputs × `V` vectors, the sums in registers throughout.
    ///
    /// # Safety
    /// As [`Tile::sum`].
    #[target_feature(enable = "avx512f")]
    #[inline]
    unsafe fn kernel<const P: usize, const V: usize>(
        &self,
        operands: Operands,
        sweep: &Sweep,
        sums: &mut [f32],
    ) {
        let out = sums.as_mut_ptr();
        let mut acc: [[__m512; V]; P] = if self.fresh {
            [[_mm512_setzero_ps(); V]; P]
        } else {
            // SAFETY: within `sums` by the caller's bounds.
            std::array::from_fn(|p| {
                std::array::from_fn(|v| unsafe { _mm512_loadu_ps(out.add(p * BLOCK + v * LANES)) })
            })
        };
        // SAFETY: within the operands by the caller's bounds; bf16 operands exist only where
        // the CPU has AVX-512 BF16.
        unsafe {
            match operands {
                Operands::F32 { source, filters } => {
                    self.steps_f32(&mut acc, source, filters, sweep)
                }
                Operands::Bf16 { source, filters } => {
                    self.steps_bf16(&mut acc, source, filters, sweep)
                }
            }
        }
        for (p, sums) in acc.iter().enumerate() {
            for (v, &sum) in sums.iter().enumerate() {
                // SAFETY: within `sums` by the caller's bounds.
                unsafe { _mm512_storeu_ps(out.add(p * BLOCK + v * LANES), sum) };
            }
        }
    }

    /// Per input channel and tap: `V` loads of filters, `P` broadcasts, `P · V` multiply-adds.
    ///
    /// # Safety
    /// As [`Tile::sum`].
    #[target_feature(enable = "avx512f")]
    #[inline]
    unsafe fn steps_f32<const P: usize, const V: usize>(
        &self,
        acc: &mut [[__m512; V]; P],
        source: &[f32],
        filters: &[f32],
        sweep: &Sweep,
    ) {
        let (src, w) = (source.as_ptr(), filters.as_ptr());
        for (j, c) in self.steps.clone().enumerate() {
            self.prefetch.step(j);
            for (t, &offset) in sweep.offsets.iter().enumerate() {
                let taps = (c * TAPS + t) * BLOCK;
                let first = c * sweep.plane + self.at + offset;
                // SAFETY: within the operands by the caller's bounds.
                let weights: [__m512; V] =
                    std::array::from_fn(|v| unsafe { _mm512_loadu_ps(w.add(taps + v * LANES)) });
                for (p, sums) in acc.iter_mut().enumerate() {
                    let input = _mm512_set1_ps(unsafe { *src.add(first + p) });
                    for (sum, weight) in sums.iter_mut().zip(weights) {
                        *sum = _mm512_fmadd_ps(weight, input, *sum);
                    }
                }
            }
        }
    }

    /// The same on bf16 pairs of input channels: `vdpbf16ps` adds both products of a pair.
    ///
    /// # Safety
    /// As [`Tile::sum`], with AVX-512 BF16.
    #[target_feature(enable = "avx512f,avx512bf16")]
    #[inline]
    unsafe fn steps_bf16<const P: usize, const V: usize>(
        &self,
        acc: &mut [[__m512; V]; P],
        source: &[u32],
        filters: &[u32],
        sweep: &Sweep,
    ) {
        let (src, w) = (source.as_ptr(), filters.as_ptr());
        for (j, c) in self.steps.clone().enumerate() {
            self.prefetch.step(j);
            for (t, &offset) in sweep.offsets.iter().enumerate() {
                let taps = (c * TAPS + t) * BLOCK;
                let first = c * sweep.plane + self.at + offset;
                // SAFETY: within the operands by the caller's bounds; 16 `u32` are 32 bf16.
                let weights: [__m512bh; V] = std::array::from_fn(|v| unsafe {
                    let v = _mm512_loadu_si512(w.add(taps + v * LANES).cast());
                    std::mem::transmute::<__m512i, __m512bh>(v)
                });
                for (p, sums) in acc.iter_mut().enumerate() {
                    let pair = unsafe { *src.add(first + p) } as i32;
                    let input: __m512bh = unsafe { std::mem::transmute(_mm512_set1_epi32(pair)) };
                    for (sum, weight) in sums.iter_mut().zip(weights) {
                        *sum = _mm512_dpbf16_ps(*sum, weight, input);
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::tests::{against_im2col, geometry};
    use super::*;
    use crate::ops::conv::bf16;
    use crate::ops::test_util::{assert_close_values, avx512_or_skip, worst_difference};

    /// This kernel's output and im2col's, on `threads` threads ([`against_im2col`]).
    fn both(g: &Geometry, threads: usize, precision: Precision) -> (Vec<f32>, Vec<f32>) {
        let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build();
        pool.expect("thread pool").install(|| {
            assert!(super::super::applies(g) && applies(g), "{g:?}");
            against_im2col(g, 2, |x, w, post| forward(x, w, post, g, precision))
        })
    }

    #[test]
    fn matches_im2col() {
        if !avx512_or_skip() {
            return;
        }
        // Input channels over several chunks; last blocks of 2 channels (one vector), 32
        // (two) and 40 (three); rows of 7, 5, 4 and 2 outputs (tiles of 6 + 1, 5, 4, 2);
        // stride 2 on phase planes; valid padding; two images on four threads.
        let cases = [
            (geometry(1, [9, 104], [6, 4], 1, 1), 2),
            (geometry(1, [12, 160], [4, 2], 1, 1), 2),
            (geometry(1, [300, 130], [6, 6], 1, 1), 2),
            (geometry(1, [17, 200], [12, 13], 2, 1), 2),
            (geometry(1, [9, 96], [5, 5], 1, 1), 2),
            (geometry(1, [10, 128], [8, 8], 1, 0), 2),
            (geometry(2, [8, 256], [4, 4], 1, 1), 4),
        ];
        for (g, threads) in cases {
            let (ours, reference) = both(&g, threads, Precision::F32);
            assert_close_values(&ours, &reference, 1e-4, &format!("{g:?}"));
        }
    }

    #[test]
    fn bf16_operands() {
        if !avx512_or_skip() || !bf16::available() {
            return;
        }
        // As in `few_images`: rounded (so the bf16 kernel ran), but no more than bf16
        // explains; odd channel counts leave a pair half empty.
        for g in [
            geometry(1, [257, 130], [6, 6], 1, 1),
            geometry(1, [33, 128], [12, 13], 2, 1),
        ] {
            let (ours, reference) = both(&g, 2, Precision::Bf16);
            let worst = worst_difference(&ours, &reference, &format!("{g:?}"));
            assert!((1e-4..5e-3).contains(&worst), "{g:?}: {worst}");
        }
    }
}
