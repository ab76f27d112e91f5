//! Winograd at inference on batches with few tiles (batch-1 serving), with each weight
//! tensor's transformed filters kept while the weights live.
//!
//! Why: at batch 1 DeXpression's 96→208 on 12² has nine 4×4 tiles, so its 36 products are
//! `[208, 96]·[96, 9]`. Two costs then sank Winograd below im2col (0.48–0.57 against 0.36 ms
//! forward, `conv_layers 301 "dex featex" 1`): the filter transform, as many multiply-adds as
//! the products themselves (36·9 a filter against 36·9 a filter-tile) and recomputed on every
//! call, and `gemm` on nine columns, whose micro-kernels are six columns wide. Here the
//! transform is computed once per weight tensor and cached, laid out `[ξ][in][out]`, and a
//! micro-kernel keeps up to 12 tiles × 2 vectors of output channels (or 6 × 4) in registers:
//! per input channel, 2 (4) loads of filters and one broadcast per tile.
//! (Why the cache is sound: [`crate::ops::filter_cache`].)

use std::arch::x86_64::{
    __m512, _mm512_fmadd_ps, _mm512_loadu_ps, _mm512_set1_ps, _mm512_setzero_ps, _mm512_storeu_ps,
};
use std::sync::Arc;

use burn::backend::flex::FlexTensor;
use multiversion::multiversion;
use rayon::prelude::*;

use super::transforms::{Points, runs, runs_mut};
use super::{
    Band, Spreading, Tiling, f33, f43, filter_transform, maps_by_channel, transform_inputs,
};
use crate::ops::conv::kernels::{Epilogue, Geometry};
use crate::ops::filter_cache::{Cached, FilterCache};
use crate::ops::scratch::with_scratch;

/// Transformed values a layer may cache: VGG's 256→256 at 12² with F(4×4), 36 · 64 k = 2.4 M
/// (9.4 MB; at batch 1 forward 0.94–0.95 → 0.43–0.44 ms against the direct kernel, `conv_layers
/// 201 vgg 1 forward`, 2 pairs); DeXpression's 96→208 at 12² holds 0.72 M. Larger filters at
/// batch 1 are bound by reading them: VGG's 256→512 at 6² would read 3.3 M values with F(3×3)
/// (no faster than the direct kernel's 0.51 ms in session 17), its 512→512 6.6 M (26 MB)
/// instead of its 2.4 M weights.
const MAX_VALUES: usize = 36 * 256 * 256;

/// All entries together (64 MB); the oldest go first beyond it.
const MAX_CACHED: usize = 1 << 24;

/// Tiles summed at once by the micro-kernel (two vectors of 16 output channels each).
const MAX_TILES: usize = 12;

/// Lanes of an AVX-512 vector of `f32`.
const LANES: usize = 16;

/// Whether the cached path can run `g` with `tiles`: the CPU has AVX-512 and the transformed
/// filters are small enough to keep.
pub(super) fn fits(g: &Geometry, tiles: &Tiling) -> bool {
    crate::ops::conv::has_avx512f()
        && [f33::M, f43::M].contains(&tiles.m)
        && tiles.xi() * g.in_channels * g.out_channels.next_multiple_of(LANES) <= MAX_VALUES
}

/// `U[ξ]ᵀ` for every position by vectors of output channels: `[ξ][out_pad / 16][in][16]`,
/// zeros past the last output channel. Each micro-kernel call then reads its filters as one
/// contiguous run per vector. (Laid out `[ξ][in][out_pad]`, a call read 128 bytes every
/// `out_pad · 4` bytes, a new 4 KB page every few channels, and cold from memory the hardware
/// prefetcher does not cross pages: at batch 1 in the whole VGG, with its 41 MB of filters
/// and weights, the 12² layers took 2.2× their time alone.)
pub(super) struct Transposed {
    values: Vec<f32>,
    ins: usize,
    out_pad: usize,
}

impl Transposed {
    fn new(w: &[f32], g: &Geometry, tiles: &Tiling) -> Self {
        let (ins, outs) = (g.in_channels, g.out_channels);
        let out_pad = outs.next_multiple_of(LANES);
        let u = filter_transform(w, g, tiles);
        let mut values = vec![0.0; tiles.xi() * ins * out_pad];
        for (plane, by_out) in values
            .chunks_exact_mut(ins * out_pad)
            .zip(u.chunks_exact(outs * ins))
        {
            for (o, row) in by_out.chunks_exact(ins).enumerate() {
                for (i, &value) in row.iter().enumerate() {
                    plane[(o / LANES * ins + i) * LANES + o % LANES] = value;
                }
            }
        }
        Self {
            values,
            ins,
            out_pad,
        }
    }

    fn position(&self, at: usize) -> &[f32] {
        let len = self.ins * self.out_pad;
        &self.values[at * len..(at + 1) * len]
    }
}

impl Cached for Transposed {
    fn len(&self) -> usize {
        self.values.len()
    }
}

static CACHE: FilterCache<Transposed> = FilterCache::new(MAX_CACHED);

/// The transformed filters of `w` (contiguous, `[out][in][3][3]`), from the cache when it has
/// them.
pub(super) fn filters(w: &FlexTensor, g: &Geometry, tiles: &Tiling) -> Arc<Transposed> {
    let shape = [g.out_channels, g.in_channels];
    CACHE.get(w, shape, tiles.m, |values| {
        Transposed::new(values, g, tiles)
    })
}

/// The `[out, in]` shapes of the cached entries (for tests).
#[cfg(test)]
pub(super) fn cached_shapes() -> Vec<[usize; 2]> {
    CACHE.shapes()
}

/// `y = epilogue(conv(x, w))` with `u` the transformed filters of `w`: per band, the input
/// transform (as in training), the products by position, then [`output_block`] by blocks
/// of 16 output channels.
pub(super) fn forward(
    x: &[f32],
    u: &Transposed,
    post: &Epilogue,
    g: &Geometry,
    tiles: Tiling,
) -> Vec<f32> {
    let (xi, ins, pad) = (tiles.xi(), u.ins, u.out_pad);
    let mut y = vec![0.0; g.output_len()];
    let chunk = tiles.images * g.out_channels * g.out_plane();
    let [v_len, m_len] = [ins, pad].map(|rows| xi * rows * tiles.columns());
    with_scratch(v_len + m_len, |scratch| {
        let (v, m) = scratch.split_at_mut(v_len);
        for (group, out) in y.chunks_mut(chunk).enumerate() {
            for band in tiles.bands(group, g.batch) {
                let p = band.columns(&tiles);
                transform_inputs(x, g, (&tiles, &band, Spreading::Stages), v);
                m[..xi * p * pad]
                    .par_chunks_mut(p * pad)
                    .enumerate()
                    .for_each(|(at, m)| product(u, at, &v[at * p..], xi * p, p, m));
                let m = &m[..xi * p * pad];
                let mut maps = maps_by_channel(out, g.out_channels, g.out_plane());
                maps.par_chunks_mut(LANES)
                    .enumerate()
                    .for_each(|(block, maps)| {
                        let at = Outputs {
                            m,
                            p,
                            pad,
                            first: block * LANES,
                        };
                        let args = (at, maps, (&tiles, &band), g, post);
                        match tiles.m {
                            f43::M => output_block::<{ f43::M }, { f43::M + 2 }, f43::F43>(args),
                            _ => output_block::<{ f33::M }, { f33::M + 2 }, f33::F33>(args),
                        }
                    });
            }
        }
    });
    y
}

/// `M[ξ] = U[ξ]·V[ξ]` at position `at`: `v` holds `V[ξ]`'s rows (one per input channel, `p`
/// tiles each) `v_stride` apart; `m` is `[p][out_pad]`, every tile's output channels side by
/// side as the micro-kernel's vectors hold them.
fn product(u: &Transposed, at: usize, v: &[f32], v_stride: usize, p: usize, m: &mut [f32]) {
    let u_at = u.position(at);
    assert!(
        u.ins > 0 && (u.ins - 1) * v_stride + p <= v.len() && m.len() == p * u.out_pad,
        "few-tile product shapes"
    );
    let per_chunk = p.div_ceil(p.div_ceil(MAX_TILES).max(1)).max(1);
    for first_tile in (0..p).step_by(per_chunk) {
        let tiles = per_chunk.min(p - first_tile);
        let mut first_out = 0;
        while first_out < u.out_pad {
            let left = (u.out_pad - first_out) / LANES;
            let vectors = if tiles <= MAX_TILES / 2 && left >= 4 {
                4
            } else if left >= 2 {
                2
            } else {
                1
            };
            let block = Block {
                u: &u_at[first_out * u.ins..],
                vector_stride: u.ins * LANES,
                v: &v[first_tile..],
                v_stride,
                ins: u.ins,
            };
            let out = &mut m[first_tile * u.out_pad + first_out..];
            // SAFETY: `available()` (checked by `fits`) says the CPU has AVX-512F; `Block::sum`
            // checks every load and store against the slices.
            unsafe { block.sum(vectors, tiles, out, u.out_pad) };
            first_out += vectors * LANES;
        }
    }
}

/// One micro-kernel call's operands: `vectors · 16` output channels from `u` (`[vector][in][16]`,
/// vectors `vector_stride` apart), `tiles` tiles from `v`, summed over `ins` input channels.
struct Block<'a> {
    u: &'a [f32],
    vector_stride: usize,
    v: &'a [f32],
    v_stride: usize,
    ins: usize,
}

impl Block<'_> {
    /// `out[t·out_stride + 16j..][..16] = Σ_c u[j][c][..16] · v[c][t]`.
    ///
    /// # Safety
    /// The CPU must have AVX-512F.
    #[target_feature(enable = "avx512f")]
    unsafe fn sum(&self, vectors: usize, tiles: usize, out: &mut [f32], out_stride: usize) {
        let last = self.ins - 1;
        assert!(
            (vectors - 1) * self.vector_stride + (last + 1) * LANES <= self.u.len()
                && last * self.v_stride + tiles <= self.v.len()
                && (tiles - 1) * out_stride + vectors * LANES <= out.len(),
            "few-tile block out of bounds"
        );
        macro_rules! by_tiles {
            ($v:literal: $($t:literal)*) => {
                match tiles {
                    $($t => unsafe { self.kernel::<$v, $t>(out, out_stride) },)*
                    _ => unreachable!("at most {MAX_TILES} tiles"),
                }
            };
        }
        match vectors {
            1 => by_tiles!(1: 1 2 3 4 5 6 7 8 9 10 11 12),
            2 => by_tiles!(2: 1 2 3 4 5 6 7 8 9 10 11 12),
            _ => by_tiles!(4: 1 2 3 4 5 6),
        }
    }

    /// [`Block::sum`] for `V` vectors and `T` tiles, the sums in registers throughout.
    ///
    /// # Safety
    /// AVX-512F, and the bounds `sum` asserts.
    #[target_feature(enable = "avx512f")]
    unsafe fn kernel<const V: usize, const T: usize>(&self, out: &mut [f32], out_stride: usize) {
        let mut acc = [[_mm512_setzero_ps(); V]; T];
        let (u, v) = (self.u.as_ptr(), self.v.as_ptr());
        for c in 0..self.ins {
            // SAFETY: within the slices by `sum`'s assertion.
            let filters: [__m512; V] = std::array::from_fn(|j| unsafe {
                _mm512_loadu_ps(u.add(j * self.vector_stride + c * LANES))
            });
            for (t, row) in acc.iter_mut().enumerate() {
                let tile = _mm512_set1_ps(unsafe { *v.add(c * self.v_stride + t) });
                for (sum, f) in row.iter_mut().zip(filters) {
                    *sum = _mm512_fmadd_ps(f, tile, *sum);
                }
            }
        }
        let out = out.as_mut_ptr();
        for (t, row) in acc.iter().enumerate() {
            for (j, sum) in row.iter().enumerate() {
                // SAFETY: within `out` by `sum`'s assertion.
                unsafe { _mm512_storeu_ps(out.add(t * out_stride + j * LANES), *sum) };
            }
        }
    }
}

/// The products of one band as [`output_block`] reads them: `m` is `[ξ][p][pad]`, and the
/// block's channels start at `first`.
#[derive(Clone, Copy)]
struct Outputs<'a> {
    m: &'a [f32],
    p: usize,
    pad: usize,
    first: usize,
}

type BlockArgs<'a, 'b> = (
    Outputs<'a>,
    &'a mut [Vec<&'b mut [f32]>],
    (&'a Tiling, &'a Band),
    &'a Geometry,
    &'a Epilogue<'a>,
);

/// `y = epilogue(Aᵀ·M·A)` for every tile of a band and up to 16 output channels (`maps`: per
/// channel, one map per image of the group), the channels as the lanes of every pass. Each
/// image's maps are written into one block of 16 contiguous maps first (a transposing store of
/// every tile's 16 × 16 values), then copied out by rows, with the epilogue.
#[multiversion(targets = "simd")]
fn output_block<const M: usize, const N: usize, T: Points<M, N>>(
    (at, maps, (tiles, band), g, post): BlockArgs,
) {
    let [out_h, out_w] = g.out_size;
    let plane = g.out_plane();
    let xi_stride = at.p * at.pad;
    // rows[M·i + r]: Aᵀ along tile row i; out[M·s + r]: then down the columns.
    let mut rows = [0.0f32; 6 * 4 * LANES];
    let mut out = [0.0f32; 4 * 4 * LANES];
    let band_rows = M * band.rows.start * out_w..(M * band.rows.end).min(out_h) * out_w;
    with_scratch(LANES * plane, |block| {
        for image in 0..band.images {
            for (local, ty) in band.rows.clone().enumerate() {
                for tx in 0..tiles.cols {
                    let column = image * band.per_image(tiles) + local * tiles.cols + tx;
                    let first = column * at.pad + at.first;
                    for i in 0..N {
                        let m = runs(at.m, first + N * i * xi_stride, xi_stride, LANES);
                        T::at(m, runs_mut(&mut rows, M * i * LANES, LANES, LANES));
                    }
                    for r in 0..M {
                        let down = runs(&rows, r * LANES, M * LANES, LANES);
                        T::at(down, runs_mut(&mut out, r * LANES, M * LANES, LANES));
                    }
                    let rows_here = (M * ty..out_h.min(M * ty + M)).enumerate();
                    for (s, y) in rows_here {
                        for (r, x) in (M * tx..out_w.min(M * tx + M)).enumerate() {
                            let values = &out[(M * s + r) * LANES..][..LANES];
                            for (lane, &value) in values.iter().enumerate() {
                                block[lane * plane + y * out_w + x] = value;
                            }
                        }
                    }
                }
            }
            for (lane, channel) in maps.iter_mut().enumerate() {
                let map = &mut channel[image][band_rows.clone()];
                map.copy_from_slice(&block[lane * plane..][band_rows.clone()]);
                post.apply_map(map, at.first + lane);
            }
        }
    });
}
