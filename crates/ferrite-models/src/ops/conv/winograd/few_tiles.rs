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
//!
//! The cache is sound because burn-flex storage is an `Arc` that is copied before any
//! write while it is shared: an entry holds a clone of its weights, so the values it was built
//! from cannot change, and the address cannot be reused, while it exists. Entries whose
//! weights nobody else holds any more (the model was dropped) are removed on the next call.

use std::arch::x86_64::{
    __m512, _mm512_fmadd_ps, _mm512_loadu_ps, _mm512_set1_ps, _mm512_setzero_ps, _mm512_storeu_ps,
};
use std::sync::{Arc, Mutex, OnceLock};

use burn::backend::flex::FlexTensor;

use super::{Tiling, filter_transform};
use crate::ops::conv::kernels::Geometry;

/// Transformed values a layer may cache: DeXpression's 96→208 at 12² holds 36 · 20k = 0.72 M
/// (2.9 MB, in L3 between calls). Larger filters at batch 1 are bound by reading them: VGG's
/// 512→512 at 6² would read 6.6 M values (26 MB) instead of its 2.4 M weights.
const MAX_VALUES: usize = 1 << 21;

/// All entries together (64 MB); the oldest go first beyond it.
const MAX_CACHED: usize = 1 << 24;

/// Tiles summed at once by the micro-kernel (two vectors of 16 output channels each).
const MAX_TILES: usize = 12;

/// Lanes of an AVX-512 vector of `f32`.
const LANES: usize = 16;

/// Whether the cached path can run `g` with `tiles`: the CPU has AVX-512 and the transformed
/// filters are small enough to keep.
pub(super) fn fits(g: &Geometry, tiles: &Tiling) -> bool {
    available() && tiles.xi() * g.in_channels * g.out_channels.next_multiple_of(LANES) <= MAX_VALUES
}

fn available() -> bool {
    static AVAILABLE: OnceLock<bool> = OnceLock::new();
    *AVAILABLE.get_or_init(|| std::arch::is_x86_feature_detected!("avx512f"))
}

/// `U[ξ]ᵀ` for every position: `[ξ][in][out_pad]`, zeros past the last output channel.
pub(super) struct Transposed {
    values: Vec<f32>,
    ins: usize,
    outs: usize,
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
                    plane[i * out_pad + o] = value;
                }
            }
        }
        Self {
            values,
            ins,
            outs,
            out_pad,
        }
    }

    fn position(&self, at: usize) -> &[f32] {
        let len = self.ins * self.out_pad;
        &self.values[at * len..(at + 1) * len]
    }
}

struct Entry {
    /// Keeps the values the filters came from alive and unchanged (see the module's notes).
    weights: FlexTensor,
    key: Key,
    filters: Arc<Transposed>,
}

/// Where the weights' values are, how many, and the tile side they were transformed for.
#[derive(PartialEq, Eq, Clone, Copy, Debug)]
struct Key {
    address: usize,
    len: usize,
    shape: [usize; 2],
    m: usize,
}

impl Key {
    fn of(w: &FlexTensor, g: &Geometry, tiles: &Tiling) -> Option<Self> {
        let values = w.as_slice::<f32>()?;
        Some(Self {
            address: values.as_ptr() as usize,
            len: values.len(),
            shape: [g.out_channels, g.in_channels],
            m: tiles.m,
        })
    }
}

static CACHE: Mutex<Vec<Entry>> = Mutex::new(Vec::new());

/// The transformed filters of `w` (contiguous, `[out][in][3][3]`), from the cache when it has
/// them.
pub(super) fn filters(w: &FlexTensor, g: &Geometry, tiles: &Tiling) -> Arc<Transposed> {
    let values = w.as_slice::<f32>().expect("contiguous f32 weights");
    let Some(key) = Key::of(w, g, tiles) else {
        return Arc::new(Transposed::new(values, g, tiles));
    };
    // A poisoned lock only means another thread panicked mid-update: entries stay valid.
    let mut cache = CACHE.lock().unwrap_or_else(|e| e.into_inner());
    cache.retain(|e| !e.weights.is_unique());
    if let Some(entry) = cache.iter().find(|e| e.key == key) {
        return Arc::clone(&entry.filters);
    }
    let filters = Arc::new(Transposed::new(values, g, tiles));
    cache.push(Entry {
        weights: w.clone(),
        key,
        filters: Arc::clone(&filters),
    });
    while cache.iter().map(|e| e.filters.values.len()).sum::<usize>() > MAX_CACHED {
        cache.remove(0);
    }
    filters
}

/// The `[out, in]` shapes of the cached entries (for tests).
#[cfg(test)]
pub(super) fn cached_shapes() -> Vec<[usize; 2]> {
    let mut cache = CACHE.lock().unwrap_or_else(|e| e.into_inner());
    cache.retain(|e| !e.weights.is_unique());
    cache.iter().map(|e| e.key.shape).collect()
}

/// `M[ξ] = U[ξ]·V[ξ]` at position `at`: `v` holds `V[ξ]`'s rows (one per input channel, `p`
/// tiles each) `v_stride` apart, `m` is `[out][p]`.
pub(super) fn product(
    u: &Transposed,
    at: usize,
    v: &[f32],
    v_stride: usize,
    p: usize,
    m: &mut [f32],
) {
    let u_at = u.position(at);
    assert!(
        u.ins > 0 && (u.ins - 1) * v_stride + p <= v.len() && m.len() == u.outs * p,
        "few-tile product shapes"
    );
    let chunks = p.div_ceil(MAX_TILES);
    let per_chunk = p.div_ceil(chunks.max(1));
    let mut sums = [[0.0f32; 4 * LANES]; MAX_TILES];
    for first_tile in (0..p).step_by(per_chunk.max(1)) {
        let tiles = per_chunk.min(p - first_tile);
        let mut first_out = 0;
        while first_out < u.outs {
            let left = (u.outs - first_out).div_ceil(LANES);
            let vectors = if tiles <= MAX_TILES / 2 && left >= 4 {
                4
            } else if left >= 2 {
                2
            } else {
                1
            };
            let block = Block {
                u: &u_at[first_out..],
                u_stride: u.out_pad,
                v: &v[first_tile..],
                v_stride,
                ins: u.ins,
            };
            // SAFETY: `available()` (checked by `fits`) says the CPU has AVX-512F; the
            // assertion above and `Block::check` keep every load inside the slices.
            unsafe { block.sum(vectors, tiles, &mut sums) };
            for (t, lanes) in sums[..tiles].iter().enumerate() {
                let outs = (u.outs - first_out).min(vectors * LANES);
                for (o, &value) in lanes[..outs].iter().enumerate() {
                    m[(first_out + o) * p + first_tile + t] = value;
                }
            }
            first_out += vectors * LANES;
        }
    }
}

/// One micro-kernel call's operands: `vectors · 16` output channels from `u`, `tiles` tiles
/// from `v`, summed over `ins` input channels.
struct Block<'a> {
    u: &'a [f32],
    u_stride: usize,
    v: &'a [f32],
    v_stride: usize,
    ins: usize,
}

impl Block<'_> {
    fn check(&self, vectors: usize, tiles: usize) {
        let last = self.ins - 1;
        assert!(
            last * self.u_stride + vectors * LANES <= self.u.len()
                && last * self.v_stride + tiles <= self.v.len(),
            "few-tile block out of bounds"
        );
    }

    /// # Safety
    /// The CPU must have AVX-512F.
    #[target_feature(enable = "avx512f")]
    unsafe fn sum(&self, vectors: usize, tiles: usize, sums: &mut [[f32; 4 * LANES]; MAX_TILES]) {
        self.check(vectors, tiles);
        macro_rules! by_tiles {
            ($v:literal: $($t:literal)*) => {
                match tiles {
                    $($t => unsafe { self.kernel::<$v, $t>(sums) },)*
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

    /// `sums[t][16j..16j + 16] = Σ_c u[c][16j..] · v[c][t]`, all in registers.
    ///
    /// # Safety
    /// AVX-512F, and `check(V, T)` passed.
    #[target_feature(enable = "avx512f")]
    unsafe fn kernel<const V: usize, const T: usize>(
        &self,
        sums: &mut [[f32; 4 * LANES]; MAX_TILES],
    ) {
        let mut acc = [[_mm512_setzero_ps(); V]; T];
        let (u, v) = (self.u.as_ptr(), self.v.as_ptr());
        for c in 0..self.ins {
            // SAFETY: within the slices by `check`.
            let filters: [__m512; V] = std::array::from_fn(|j| unsafe {
                _mm512_loadu_ps(u.add(c * self.u_stride + j * LANES))
            });
            for (t, row) in acc.iter_mut().enumerate() {
                let tile = _mm512_set1_ps(unsafe { *v.add(c * self.v_stride + t) });
                for (sum, f) in row.iter_mut().zip(filters) {
                    *sum = _mm512_fmadd_ps(f, tile, *sum);
                }
            }
        }
        for (row, out) in acc.iter().zip(sums.iter_mut()) {
            for (j, sum) in row.iter().enumerate() {
                // SAFETY: `out` holds 4 vectors, `j < V ≤ 4`.
                unsafe { _mm512_storeu_ps(out.as_mut_ptr().add(j * LANES), *sum) };
            }
        }
    }
}
