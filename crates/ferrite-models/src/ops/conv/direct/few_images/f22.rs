//! Winograd F(2×2, 3×3) for [`super::lanes`]'s f32 layers at stride 1, its filters
//! transformed chunk by chunk from the blocked weights on every call.
//!
//! Why: VGG's 6² layers run the direct lanes kernel near the machine's peak, 324
//! multiply-adds per input channel and output channel, and are still a third of its batch-1
//! forward. F(2×2) needs 144 (nine 2×2 tiles × 16 points). Its transformed filters are 16/9
//! of the weights, and cached they had to come from memory on every call (16.8 MB for
//! 512→512: slower than direct, session 19). So here they are made from the same 64-channel
//! blocks of weights the direct kernel reads, a chunk of input channels at a time, into L2.
//! The filter transform is scaled to take only additions (`G` without its halves, the input
//! transform halving instead), which run beside the multiply-adds on Zen 4.

use std::arch::x86_64::{
    __m512, _mm512_add_ps, _mm512_fmadd_ps, _mm512_loadu_ps, _mm512_set1_ps, _mm512_setzero_ps,
    _mm512_storeu_ps, _mm512_sub_ps,
};
use std::ops::Range;

use super::Sweep;
use crate::ops::conv::kernels::Geometry;
use crate::ops::conv::wide::{LANES, TAPS};
use crate::ops::prefetch::{Prefetch, bytes_of, next_chunk};

/// Output channels of a block of filters, as in [`super::lanes`].
const BLOCK: usize = super::lanes::BLOCK;

/// Points of a transformed 4×4 tile.
const POINTS: usize = 16;

/// Input channels whose filters are transformed at once: 64 · 16 points · 64 channels · 4
/// bytes = 256 KB, read from L2 by every point's products.
const CHUNK: usize = 64;

/// Values from one point's transformed filters to the next's: a chunk's, and a cache line
/// more. Without it the 16 stores of one filter's transform, 16 KB apart, all fell in one set
/// of L1, and the transform took as long as the products.
const POINT_STRIDE: usize = CHUNK * BLOCK + LANES;

/// Tiles summed at once: VGG's 6² maps have 9; 9 × 2 vectors of sums stay in registers.
const TILE_GROUP: usize = 9;

/// Vectors of output channels summed at once.
const PAIR: usize = 2;

/// Whether `g` (one [`super::lanes`] runs in f32) runs here: stride 1, maps of whole 2×2
/// tiles, and enough input channels. With few of them the transforms of the input and of
/// each chunk of filters cost more than the products save: DeXpression's 96→208 at 6² took
/// 0.054 → 0.057 ms here (`conv_layers 201 dex 1 forward`, 5 pairs), VGG's 256→512 at 6²
/// 0.38–0.39 → 0.36–0.39 alone and 0.44–0.49 → 0.32–0.46 inside the model (3 pairs each).
pub(super) fn applies(g: &Geometry) -> bool {
    g.stride == [1, 1] && g.out_size.iter().all(|s| s % 2 == 0) && g.in_channels >= MIN_INPUTS
}

/// The fewest input channels of a layer that runs here (VGG's 6² layers have 256 and 512).
const MIN_INPUTS: usize = 256;

/// The 2×2 tiles of the sweep's maps, `[rows, columns]`.
fn tiles(sweep: &Sweep) -> [usize; 2] {
    [sweep.out_plane / sweep.out_w / 2, sweep.out_w / 2]
}

/// Scratch values of a part: the image's transformed tiles, then a chunk's transformed
/// filters, then a block's sums at the points of every tile.
pub(super) fn scratch_len(ins: usize, sweep: &Sweep) -> usize {
    let [rows, columns] = tiles(sweep);
    let n = rows * columns;
    POINTS * ins * n + POINTS * POINT_STRIDE + POINTS * n * BLOCK
}

/// The image's tiles transformed into `scratch` (`V[point][channel][tile]`), once per part:
/// `Bᵀ d B`, the middle rows and columns halved (see [`transform_filters`]).
pub(super) fn transform_input(source: &[f32], sweep: &Sweep, ins: usize, scratch: &mut [f32]) {
    let [rows, columns] = tiles(sweep);
    let n = rows * columns;
    let (w, v) = (sweep.row_width, &mut scratch[..POINTS * ins * n]);
    for c in 0..ins {
        let plane = &source[c * sweep.plane..];
        for ty in 0..rows {
            for tx in 0..columns {
                let at = 2 * ty * w + 2 * tx;
                let d: [[f32; 4]; 4] =
                    std::array::from_fn(|i| std::array::from_fn(|j| plane[at + i * w + j]));
                let t = std::array::from_fn::<_, 4, _>(|j| {
                    [
                        d[0][j] - d[2][j],
                        (d[1][j] + d[2][j]) * 0.5,
                        (d[2][j] - d[1][j]) * 0.5,
                        d[1][j] - d[3][j],
                    ]
                });
                // `t[j][a]`: column j of `Bᵀ d`.
                for a in 0..4 {
                    let row = [
                        t[0][a] - t[2][a],
                        (t[1][a] + t[2][a]) * 0.5,
                        (t[2][a] - t[1][a]) * 0.5,
                        t[1][a] - t[3][a],
                    ];
                    for (b, value) in row.into_iter().enumerate() {
                        v[((a * 4 + b) * ins + c) * n + ty * columns + tx] = value;
                    }
                }
            }
        }
    }
}

/// `sums[p][c]`, the correlation at every output `p` of the map for one block's `channels`
/// output channels (≤ 64), from the block's `filters` (`[in][tap][64]`) and the tiles
/// [`transform_input`] left at the start of `scratch`; `ahead` the filters the thread reads
/// after this block's, prefetched during the last chunk.
pub(super) fn sum_block(
    filters: &[f32],
    ahead: &[u8],
    sweep: &Sweep,
    channels: usize,
    scratch: &mut [f32],
    sums: &mut [f32],
) {
    let ins = filters.len() / (TAPS * BLOCK);
    let [rows, columns] = tiles(sweep);
    let n = rows * columns;
    let (v, rest) = scratch.split_at_mut(POINTS * ins * n);
    let (u, m) = rest.split_at_mut(POINTS * POINT_STRIDE);
    assert!(
        ins > 0
            && m.len() >= POINTS * n * BLOCK
            && sums.len() >= sweep.out_plane * BLOCK
            && (1..=BLOCK).contains(&channels),
        "F(2×2) block out of bounds"
    );
    let vectors = channels.div_ceil(LANES);
    let step_bytes = size_of_val(filters) / ins;
    let bytes = bytes_of(filters);
    for first in (0..ins).step_by(CHUNK) {
        let chunk = first..(first + CHUNK).min(ins);
        let next = next_chunk(bytes, ahead, chunk.end * step_bytes, CHUNK * step_bytes);
        // SAFETY: `few_images::applies` checked AVX-512F; the chunk lies within `filters`
        // and its transform within `u`.
        unsafe { transform_filters(filters, chunk.clone(), vectors, u) };
        let passes = POINTS * vectors.div_ceil(PAIR) * n.div_ceil(TILE_GROUP);
        let mut shares = (0..passes).map(|i| Prefetch::share(next, i, passes, chunk.len()));
        for point in 0..POINTS {
            for vector in (0..vectors).step_by(PAIR) {
                for tile in (0..n).step_by(TILE_GROUP) {
                    let pass = Pass {
                        u: &u[point * POINT_STRIDE + vector * LANES..],
                        v: &v[(point * ins + first) * n + tile..],
                        n,
                        steps: chunk.len(),
                        fresh: first == 0,
                        prefetch: shares.next().unwrap_or_default(),
                    };
                    let sums = &mut m[(point * n + tile) * BLOCK + vector * LANES..];
                    let shape = [TILE_GROUP.min(n - tile), PAIR.min(vectors - vector)];
                    // SAFETY: as above; the pass reads `steps` rows of `u` and `v` and
                    // writes its tiles' vectors of `sums`, all within the slices.
                    unsafe { pass.run(shape, sums) };
                }
            }
        }
    }
    // SAFETY: as above; `m` holds every tile's points and `sums` every output.
    unsafe { transform_output(m, sweep, vectors, sums) };
}

/// `U = G′ g G′ᵀ` for the chunk's input channels into `u` (`[point][CHUNK][64]`, points
/// [`POINT_STRIDE`] apart), with `G′ = [1 0 0; 1 1 1; 1 −1 1; 0 0 1]`: `G`'s middle rows
/// doubled, so only additions. That doubles the middle rows and columns of `U`, which the
/// input transform's halves undo.
///
/// # Safety
/// AVX-512F; `chunk` within the filters' input channels.
#[target_feature(enable = "avx512f")]
unsafe fn transform_filters(filters: &[f32], chunk: Range<usize>, vectors: usize, u: &mut [f32]) {
    assert!(chunk.end * TAPS * BLOCK <= filters.len() && u.len() >= POINTS * POINT_STRIDE);
    let (w, out) = (filters.as_ptr(), u.as_mut_ptr());
    for (k, c) in chunk.enumerate() {
        for vector in 0..vectors {
            // SAFETY: within `filters` and `u` by the bounds asserted.
            let g: [__m512; TAPS] = std::array::from_fn(|t| unsafe {
                _mm512_loadu_ps(w.add((c * TAPS + t) * BLOCK + vector * LANES))
            });
            // `r[kx][a]`: column kx of `G′ g`.
            let r = std::array::from_fn::<_, 3, _>(|kx| expand(g[kx], g[3 + kx], g[6 + kx]));
            for a in 0..4 {
                let row = expand(r[0][a], r[1][a], r[2][a]);
                for (b, value) in row.into_iter().enumerate() {
                    let at = (a * 4 + b) * POINT_STRIDE + k * BLOCK + vector * LANES;
                    unsafe { _mm512_storeu_ps(out.add(at), value) };
                }
            }
        }
    }
}

/// `G′ [g0 g1 g2]ᵀ = [g0, g0 + g1 + g2, g0 − g1 + g2, g2]`.
#[target_feature(enable = "avx512f")]
#[inline]
fn expand(g0: __m512, g1: __m512, g2: __m512) -> [__m512; 4] {
    let outer = _mm512_add_ps(g0, g2);
    [g0, _mm512_add_ps(outer, g1), _mm512_sub_ps(outer, g1), g2]
}

/// One point's products for a group of tiles and a pair of vectors of output channels, over a
/// chunk's `steps` input channels: `M[tile] += Σ_c U[c] · V[c][tile]`.
struct Pass<'a> {
    /// From the chunk's first channel at this point and vector, rows `BLOCK` apart.
    u: &'a [f32],
    /// From the chunk's first channel at this point and tile, rows `n` apart.
    v: &'a [f32],
    n: usize,
    steps: usize,
    fresh: bool,
    prefetch: Prefetch<'a>,
}

impl Pass<'_> {
    /// `[tiles, vectors]` (≤ 9 × 2) of sums in `sums` (`[tile][64]`).
    ///
    /// # Safety
    /// AVX-512F; `steps` rows of `u` and `v` and the tiles' vectors of `sums` in bounds.
    #[target_feature(enable = "avx512f")]
    unsafe fn run(&self, [tiles, vectors]: [usize; 2], sums: &mut [f32]) {
        assert!(
            self.u.len() >= (self.steps - 1) * BLOCK + vectors * LANES
                && self.v.len() >= (self.steps - 1) * self.n + tiles
                && sums.len() >= (tiles - 1) * BLOCK + vectors * LANES,
            "F(2×2) pass out of bounds"
        );
        macro_rules! by_vectors {
            ($T:expr) => {
                match vectors {
                    1 => self.kernel::<$T, 1>(sums),
                    _ => self.kernel::<$T, PAIR>(sums),
                }
            };
        }
        // SAFETY: the bounds asserted.
        unsafe {
            match tiles {
                1 => by_vectors!(1),
                2 => by_vectors!(2),
                3 => by_vectors!(3),
                4 => by_vectors!(4),
                5 => by_vectors!(5),
                6 => by_vectors!(6),
                7 => by_vectors!(7),
                8 => by_vectors!(8),
                _ => by_vectors!(TILE_GROUP),
            }
        }
    }

    /// [`Pass::run`] for `T` tiles × `V` vectors, the sums in registers throughout: per input
    /// channel `V` loads of filters, `T` broadcasts, `T · V` multiply-adds.
    ///
    /// # Safety
    /// As [`Pass::run`].
    #[target_feature(enable = "avx512f")]
    #[inline]
    unsafe fn kernel<const T: usize, const V: usize>(&self, sums: &mut [f32]) {
        let (u, v, out) = (self.u.as_ptr(), self.v.as_ptr(), sums.as_mut_ptr());
        // SAFETY (all accesses): within the slices by the bounds `run` asserted.
        let mut acc: [[__m512; V]; T] = if self.fresh {
            [[_mm512_setzero_ps(); V]; T]
        } else {
            std::array::from_fn(|t| {
                std::array::from_fn(|j| unsafe { _mm512_loadu_ps(out.add(t * BLOCK + j * LANES)) })
            })
        };
        for k in 0..self.steps {
            self.prefetch.step(k);
            let filters: [__m512; V] =
                std::array::from_fn(|j| unsafe { _mm512_loadu_ps(u.add(k * BLOCK + j * LANES)) });
            for (t, sums) in acc.iter_mut().enumerate() {
                let tile = _mm512_set1_ps(unsafe { *v.add(k * self.n + t) });
                for (sum, filter) in sums.iter_mut().zip(filters) {
                    *sum = _mm512_fmadd_ps(filter, tile, *sum);
                }
            }
        }
        for (t, sums) in acc.iter().enumerate() {
            for (j, &sum) in sums.iter().enumerate() {
                unsafe { _mm512_storeu_ps(out.add(t * BLOCK + j * LANES), sum) };
            }
        }
    }
}

/// `Y = Aᵀ M A` for every tile into `sums` (`[output][64]`), `Aᵀ = [1 1 1 0; 0 1 −1 −1]`.
///
/// # Safety
/// AVX-512F; `m` holds `[point][tile][64]` and `sums` `[output][64]` for the sweep's map.
#[target_feature(enable = "avx512f")]
unsafe fn transform_output(m: &[f32], sweep: &Sweep, vectors: usize, sums: &mut [f32]) {
    let [rows, columns] = tiles(sweep);
    let n = rows * columns;
    assert!(m.len() >= POINTS * n * BLOCK && sums.len() >= sweep.out_plane * BLOCK);
    let (m, out) = (m.as_ptr(), sums.as_mut_ptr());
    let reduce = |a: __m512, b: __m512, c: __m512, d: __m512| {
        [
            _mm512_add_ps(_mm512_add_ps(a, b), c),
            _mm512_sub_ps(_mm512_sub_ps(b, c), d),
        ]
    };
    for tile in 0..n {
        let (ty, tx) = (tile / columns, tile % columns);
        for vector in 0..vectors {
            // SAFETY (all accesses): within `m` and `sums` by the bounds asserted.
            let at = |point: usize| unsafe {
                _mm512_loadu_ps(m.add((point * n + tile) * BLOCK + vector * LANES))
            };
            // `q[b][i]`: column b of `Aᵀ M`.
            let q: [[__m512; 2]; 4] =
                std::array::from_fn(|b| reduce(at(b), at(4 + b), at(8 + b), at(12 + b)));
            for i in 0..2 {
                let row = reduce(q[0][i], q[1][i], q[2][i], q[3][i]);
                for (j, value) in row.into_iter().enumerate() {
                    let p = (2 * ty + i) * sweep.out_w + 2 * tx + j;
                    unsafe { _mm512_storeu_ps(out.add(p * BLOCK + vector * LANES), value) };
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::tests::{against_im2col, geometry};
    use super::*;
    use crate::ops::Precision;
    use crate::ops::test_util::{assert_close_values, avx512_or_skip};

    #[test]
    fn matches_im2col() {
        if !avx512_or_skip() {
            return;
        }
        // VGG's 6² (9 tiles, one group) over several chunks of input channels, a last block
        // of 8 channels (one vector) and of 40 (a pair and one); 8² (16 tiles: groups of 9
        // and 7); 4×2 and one tile; valid padding; two images on four threads.
        let cases = [
            (geometry(1, [300, 200], [6, 6], 1, 1), 2),
            (geometry(1, [256, 104], [6, 6], 1, 1), 2),
            (geometry(1, [260, 128], [8, 8], 1, 1), 2),
            (geometry(1, [256, 128], [4, 2], 1, 1), 2),
            (geometry(1, [257, 128], [2, 2], 1, 1), 2),
            (geometry(1, [270, 130], [8, 8], 1, 0), 2),
            (geometry(2, [256, 256], [4, 4], 1, 1), 4),
        ];
        for (g, threads) in cases {
            let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build();
            let (ours, reference) = pool.expect("thread pool").install(|| {
                assert!(super::super::applies(&g) && super::super::lanes::applies(&g));
                assert!(applies(&g), "{g:?}");
                against_im2col(&g, 3, |x, w, post| {
                    super::super::lanes::forward(x, w, post, &g, Precision::F32)
                })
            });
            assert_close_values(&ours, &reference, 1e-5, &format!("{g:?}"));
        }
    }
}
