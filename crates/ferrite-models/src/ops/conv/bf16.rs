//! Matrix products with bf16 operands and `f32` accumulation, for CPUs with AVX-512 BF16.
//!
//! `vdpbf16ps` multiplies 32 pairs of bf16 values and adds them into 16 `f32` sums: twice the
//! multiply-adds per instruction of an `f32` FMA (measured on this project's Zen 5: 232 against
//! 126 G multiply-adds/s on one core). The operands are rounded to bf16 (8 bits of mantissa,
//! `f32`'s range) as they are packed; sums stay `f32`. That is the usual mixed precision of
//! training on accelerators: the weights, their updates and every other op stay `f32`.
//!
//! The product is blocked the way BLIS blocks it. A `KC × NC` block of `B` is packed into
//! panels of `NR` columns, a `MC × KC` block of `A` into slivers of `MR` rows, and a
//! micro-kernel keeps an `MR × NR` tile of `C` in 16 registers while it runs down `k`: per
//! pair of `k`, two loads of `B`, `MR` broadcasts of `A` and 16 `vdpbf16ps`.

use std::arch::x86_64::{
    __m512, __m512bh, __m512i, __mmask16, _mm512_add_ps, _mm512_cvtne2ps_pbh, _mm512_dpbf16_ps,
    _mm512_loadu_ps, _mm512_loadu_si512, _mm512_mask_storeu_ps, _mm512_maskz_loadu_ps,
    _mm512_set1_epi32, _mm512_setzero_ps, _mm512_storeu_si512,
};
use std::cell::RefCell;
use std::ops::Range;
use std::sync::OnceLock;

use multiversion::multiversion;
use rayon::prelude::*;

use super::kernels::Mat;
use crate::ops::bf16_bits;

/// Rows of `C` per micro-tile: `A` values broadcast one row at a time.
const MR: usize = 8;
/// Columns of `C` per micro-tile: two vectors of 16 `f32`.
const NR: usize = 32;
/// `k` values per packed block (even: bf16 values pair up along `k`). A `B` panel of
/// `KC × NR` bf16 is 16 KiB and stays in L1 while the `A` slivers stream past it.
const KC: usize = 256;
/// Rows per packed `A` block (a multiple of `MR`): 32 KiB of bf16 at `KC`.
const MC: usize = 64;
/// Columns per packed `B` block (a multiple of `NR`): 256 KiB of bf16 at `KC`, within L2.
const NC: usize = 512;

/// Whether this CPU has the instructions (checked once).
pub(super) fn available() -> bool {
    static AVAILABLE: OnceLock<bool> = OnceLock::new();
    *AVAILABLE.get_or_init(|| {
        std::arch::is_x86_feature_detected!("avx512f")
            && std::arch::is_x86_feature_detected!("avx512bf16")
    })
}

/// Two values along `k` as one 32-bit lane of a `vdpbf16ps` operand: `lo` in the low half.
#[inline(always)]
fn pair(lo: f32, hi: f32) -> u32 {
    bf16_bits(lo) | (bf16_bits(hi) << 16)
}

/// `rows` rows of `len` values as `⌈rows / 2⌉` rows of bf16 pairs: row `2r` in the low halves,
/// `2r + 1` (or 0 past the last) in the high ones, as `vdpbf16ps` sums along the rows.
pub(super) fn row_pairs(values: &[f32], rows: usize, len: usize) -> Vec<u32> {
    assert!(values.len() >= rows * len, "row pairs: too few values");
    let mut pairs = Vec::with_capacity(rows.div_ceil(2) * len);
    for two in values[..rows * len].chunks(2 * len) {
        let (lo, hi) = two.split_at(len.min(two.len()));
        if hi.is_empty() {
            pairs.extend(lo.iter().map(|&lo| pair(lo, 0.0)));
        } else {
            pairs.extend(lo.iter().zip(hi).map(|(&lo, &hi)| pair(lo, hi)));
        }
    }
    pairs
}

/// A left operand rounded to bf16 and packed into `MC × KC` blocks of `MR`-row slivers, once
/// for all the products that use it (a convolution's weights meet every image). One exists
/// only on a CPU with the instructions, which the products' `unsafe` calls rely on.
pub struct Packed {
    data: Vec<u32>,
    rows: usize,
    depth: usize,
}

/// Values in one packed block.
const BLOCK_LEN: usize = KC.div_ceil(2) * MC;

impl Packed {
    /// `a` packed, or `None` on a CPU without AVX-512 BF16.
    pub(super) fn new(a: Mat) -> Option<Self> {
        if !available() {
            return None;
        }
        let (m, k) = (a.height(), a.width());
        let m_blocks = m.div_ceil(MC);
        let mut data = vec![0u32; k.div_ceil(KC) * m_blocks * BLOCK_LEN];
        let pack = |(n, block): (usize, &mut [u32])| {
            let (p0, i0) = ((n / m_blocks) * KC, (n % m_blocks) * MC);
            pack_a(a, i0, MC.min(m - i0), p0, KC.min(k - p0), block);
        };
        // In parallel only from outside the thread pool: inside it, the caller's own tasks
        // already keep the threads busy.
        if rayon::current_thread_index().is_some() {
            data.chunks_mut(BLOCK_LEN).enumerate().for_each(pack);
        } else {
            data.par_chunks_mut(BLOCK_LEN).enumerate().for_each(pack);
        }
        Some(Self {
            data,
            rows: m,
            depth: k,
        })
    }

    /// `[rows, depth]` of the operand.
    pub(super) fn shape(&self) -> [usize; 2] {
        [self.rows, self.depth]
    }

    /// Block `(p0, i0)`: rows `i0..`, depth `p0..`.
    fn block(&self, p0: usize, i0: usize) -> &[u32] {
        let at = (p0 / KC) * self.rows.div_ceil(MC) + i0 / MC;
        &self.data[at * BLOCK_LEN..][..BLOCK_LEN]
    }
}

/// `dst (row-major m × n) = a · b`, or `+= a · b` when `accumulate`; on `threads` threads, by
/// bands of row blocks. The caller checks the shapes.
pub(super) fn gemm(dst: &mut [f32], a: &Packed, b: Mat, accumulate: bool, threads: usize) {
    let (m, n) = (a.rows, b.width());
    let blocks = m.div_ceil(MC);
    if threads <= 1 || blocks < 2 || n == 0 {
        serial(dst, a, 0..m, b, accumulate);
        return;
    }
    let band = blocks.div_ceil(threads) * MC;
    dst.par_chunks_mut(band * n)
        .enumerate()
        .for_each(|(i, rows)| {
            let first = i * band;
            serial(rows, a, first..first + rows.len() / n, b, accumulate)
        });
}

/// Rows `rows` of [`gemm`] (starting at a block boundary) into `dst`, on the calling thread.
fn serial(dst: &mut [f32], a: &Packed, rows: Range<usize>, b: Mat, accumulate: bool) {
    let (k, n) = (a.depth, b.width());
    if k == 0 {
        if !accumulate {
            dst.fill(0.0);
        }
        return;
    }
    PACKED_B.with_borrow_mut(|packed_b| {
        packed_b.resize(KC.div_ceil(2) * NC.next_multiple_of(NR), 0);
        for j0 in (0..n).step_by(NC) {
            let nc = NC.min(n - j0);
            for p0 in (0..k).step_by(KC) {
                let kc = KC.min(k - p0);
                let pairs = kc.div_ceil(2);
                pack_b(b, p0, kc, j0, nc, packed_b);
                let add = accumulate || p0 > 0;
                for i0 in rows.clone().step_by(MC) {
                    let mc = MC.min(rows.end - i0);
                    let block = a.block(p0, i0);
                    let panels = packed_b.chunks_exact(pairs * NR).take(nc.div_ceil(NR));
                    for (jp, panel) in panels.enumerate() {
                        let cols = NR.min(nc - jp * NR);
                        let slivers = block.chunks_exact(pairs * MR).take(mc.div_ceil(MR));
                        for (ip, sliver) in slivers.enumerate() {
                            let at = (i0 - rows.start + ip * MR) * n + j0 + jp * NR;
                            let tile = Tile {
                                dst: &mut dst[at..],
                                stride: n,
                                rows: MR.min(mc - ip * MR),
                                cols,
                                add,
                            };
                            // SAFETY: `a` exists, so the CPU has the instructions.
                            unsafe { micro(sliver, panel, tile) };
                        }
                    }
                }
            }
        }
    });
}

thread_local! {
    /// Each thread's packed block of `B`, kept between products.
    static PACKED_B: RefCell<Vec<u32>> = const { RefCell::new(Vec::new()) };
}

/// Where one micro-tile goes: `rows × cols` of `dst`, rows `stride` apart; added to what is
/// there when `add`.
struct Tile<'a> {
    dst: &'a mut [f32],
    stride: usize,
    rows: usize,
    cols: usize,
    add: bool,
}

/// `B[p0..p0 + kc][j0..j0 + nc]` as panels of `NR` columns: panel `q`, pair `t` holds
/// `pair(B[2t][j], B[2t + 1][j])` for its `NR` columns `j`, zeros past the edges.
#[multiversion(targets = "simd")]
fn pack_b(b: Mat, p0: usize, kc: usize, j0: usize, nc: usize, out: &mut [u32]) {
    let pairs = kc.div_ceil(2);
    for (q, panel) in out
        .chunks_exact_mut(pairs * NR)
        .take(nc.div_ceil(NR))
        .enumerate()
    {
        let (first, cols) = (j0 + q * NR, NR.min(nc - q * NR));
        if b.row_stride() == 1 {
            // A transposed view: each column's k values are adjacent in memory, so 32 of
            // them round to 16 pairs in one instruction; whole blocks of 16 pairs go
            // through a small transpose, the rest one by one.
            let whole = if cols == NR { pairs / 16 * 16 } else { 0 };
            for t0 in (0..whole).step_by(16) {
                // SAFETY: only products with a `Packed` left operand pack `B`, and one
                // exists only where the CPU has the instructions.
                unsafe { pack_transposed_block(b, p0 + 2 * t0, first, &mut panel[t0 * NR..]) };
            }
            for j in (0..NR).filter(|_| whole < pairs) {
                let lanes = panel[whole * NR + j..].iter_mut().step_by(NR);
                if j < cols {
                    pack_pairs(
                        b.col_slice(first + j, p0 + 2 * whole, kc - 2 * whole),
                        lanes,
                    );
                } else {
                    lanes.for_each(|o| *o = 0);
                }
            }
            continue;
        }
        for (t, lanes) in panel.chunks_exact_mut(NR).enumerate() {
            let k0 = p0 + 2 * t;
            let has_second = 2 * t + 1 < kc;
            if b.col_stride() == 1 && cols == NR {
                let lo = b.row_slice(k0, first, NR);
                let hi = if has_second {
                    b.row_slice(k0 + 1, first, NR)
                } else {
                    &[0.0; NR]
                };
                for ((o, &l), &h) in lanes.iter_mut().zip(lo).zip(hi) {
                    *o = pair(l, h);
                }
                continue;
            }
            for (j, o) in lanes.iter_mut().enumerate() {
                *o = if j < cols {
                    let hi = if has_second {
                        b.at(k0 + 1, first + j)
                    } else {
                        0.0
                    };
                    pair(b.at(k0, first + j), hi)
                } else {
                    0
                };
            }
        }
    }
}

/// Pairs `k0/2..k0/2 + 16` of the `NR` columns from `first` of a transposed `B` (columns
/// adjacent in memory) into `out`, `NR` lanes per pair.
#[target_feature(enable = "avx512f,avx512bf16")]
unsafe fn pack_transposed_block(b: Mat, k0: usize, first: usize, out: &mut [u32]) {
    let mut tile = [[0u32; 16]; NR];
    for (j, lanes) in tile.iter_mut().enumerate() {
        let values = b.col_slice(first + j, k0, 32);
        // SAFETY: `values` holds 32 values; `lanes` 16 u32 (64 bytes); unaligned accesses.
        unsafe {
            let lo = _mm512_loadu_ps(values.as_ptr());
            let hi = _mm512_loadu_ps(values.as_ptr().add(16));
            // The low half of the result from `lo`: bf16 values in k order, so 32-bit lane t
            // holds the pair (k0 + 2t, k0 + 2t + 1).
            let pairs = _mm512_cvtne2ps_pbh(hi, lo);
            let pairs: __m512i = std::mem::transmute(pairs);
            _mm512_storeu_si512(lanes.as_mut_ptr().cast(), pairs);
        }
    }
    for (t, row) in out.chunks_exact_mut(NR).take(16).enumerate() {
        for (o, lanes) in row.iter_mut().zip(&tile) {
            *o = lanes[t];
        }
    }
}

/// `pair(values[2t], values[2t + 1])` into successive `lanes` (a zero after an odd count).
#[inline(always)]
fn pack_pairs<'a>(values: &[f32], lanes: impl Iterator<Item = &'a mut u32>) {
    let mut two = values.chunks(2);
    for o in lanes {
        *o = match two.next() {
            Some([lo, hi]) => pair(*lo, *hi),
            Some([lo]) => pair(*lo, 0.0),
            _ => 0,
        };
    }
}

/// `A[i0..i0 + mc][p0..p0 + kc]` as slivers of `MR` rows: sliver `s`, pair `t` holds
/// `pair(A[i][2t], A[i][2t + 1])` for its `MR` rows `i`, zeros past the edges.
#[multiversion(targets = "simd")]
fn pack_a(a: Mat, i0: usize, mc: usize, p0: usize, kc: usize, out: &mut [u32]) {
    let pairs = kc.div_ceil(2);
    for (s, sliver) in out
        .chunks_exact_mut(pairs * MR)
        .take(mc.div_ceil(MR))
        .enumerate()
    {
        let first = i0 + s * MR;
        let rows = MR.min(mc - s * MR);
        if a.row_stride() == 1 && rows == MR {
            // A transposed view: the sliver's MR values of each k are adjacent in memory.
            for (t, lanes) in sliver.chunks_exact_mut(MR).enumerate() {
                let k0 = p0 + 2 * t;
                let lo = a.col_slice(k0, first, MR);
                let hi = if 2 * t + 1 < kc {
                    a.col_slice(k0 + 1, first, MR)
                } else {
                    &[0.0; MR]
                };
                for ((o, &l), &h) in lanes.iter_mut().zip(lo).zip(hi) {
                    *o = pair(l, h);
                }
            }
            continue;
        }
        for r in 0..MR {
            let lanes = sliver[r..].iter_mut().step_by(MR);
            if r >= rows {
                lanes.for_each(|o| *o = 0);
            } else if a.col_stride() == 1 {
                pack_pairs(a.row_slice(first + r, p0, kc), lanes);
            } else {
                for (t, o) in lanes.enumerate() {
                    let k0 = p0 + 2 * t;
                    let hi = if 2 * t + 1 < kc {
                        a.at(first + r, k0 + 1)
                    } else {
                        0.0
                    };
                    *o = pair(a.at(first + r, k0), hi);
                }
            }
        }
    }
}

/// One `MR × NR` tile of `C` from a packed sliver of `A` and panel of `B` (the same number of
/// `k` pairs).
#[target_feature(enable = "avx512f,avx512bf16")]
unsafe fn micro(sliver: &[u32], panel: &[u32], tile: Tile) {
    let pairs = panel.len() / NR;
    assert!(sliver.len() == pairs * MR && panel.len() == pairs * NR);
    assert!(tile.rows <= MR && tile.cols <= NR);
    assert!(tile.rows == 0 || (tile.rows - 1) * tile.stride + tile.cols <= tile.dst.len());
    let mut acc = [[_mm512_setzero_ps(); 2]; MR];
    for t in 0..pairs {
        // SAFETY: the assertions above keep pair `t`'s NR lanes inside `panel` and its MR
        // values inside `sliver`; the loads are unaligned.
        unsafe {
            let at = panel.as_ptr().add(t * NR);
            let b0: __m512bh = std::mem::transmute(_mm512_loadu_si512(at.cast()));
            let b1: __m512bh = std::mem::transmute(_mm512_loadu_si512(at.add(16).cast()));
            for (r, row) in acc.iter_mut().enumerate() {
                let a = *sliver.get_unchecked(t * MR + r);
                let a: __m512bh = std::mem::transmute(_mm512_set1_epi32(a as i32));
                row[0] = _mm512_dpbf16_ps(row[0], a, b0);
                row[1] = _mm512_dpbf16_ps(row[1], a, b1);
            }
        }
    }
    for (r, row) in acc.iter().enumerate().take(tile.rows) {
        for (half, &sums) in row.iter().enumerate() {
            let first = 16 * half;
            if first >= tile.cols {
                break;
            }
            let width = (tile.cols - first).min(16);
            let mask: __mmask16 = if width == 16 { !0 } else { (1 << width) - 1 };
            // SAFETY: the first assertion block keeps row `r`'s first `tile.cols` values
            // inside `tile.dst`; the mask limits the access to `width` of them.
            unsafe {
                let at = tile.dst.as_mut_ptr().add(r * tile.stride + first);
                let sums: __m512 = if tile.add {
                    _mm512_add_ps(sums, _mm512_maskz_loadu_ps(mask, at))
                } else {
                    sums
                };
                _mm512_mask_storeu_ps(at, mask, sums);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ops::test_util::values;

    fn reference(a: Mat, b: Mat) -> Vec<f32> {
        let (m, k, n) = (a.height(), a.width(), b.width());
        let mut c = vec![0.0; m * n];
        for i in 0..m {
            for j in 0..n {
                c[i * n + j] = (0..k)
                    .map(|p| a.at(i, p) as f64 * b.at(p, j) as f64)
                    .sum::<f64>() as f32;
            }
        }
        c
    }

    /// Products of values in [-1, 1) over `k` terms: bf16 keeps 8 bits, so each term is off
    /// by up to about 2⁻⁸ of its size and the sum by about `√k · 2⁻⁸` of a term's.
    fn assert_matches(m: usize, k: usize, n: usize, transposed: bool, threads: usize) {
        if !available() {
            eprintln!("skipped: this CPU has no AVX-512 BF16");
            return;
        }
        let (av, bv) = (values(m * k, 1), values(k * n, 2));
        let a = if transposed {
            Mat::rows(&av, k, m).t()
        } else {
            Mat::rows(&av, m, k)
        };
        let b = if transposed {
            Mat::rows(&bv, n, k).t()
        } else {
            Mat::rows(&bv, k, n)
        };
        let expected = reference(a, b);
        let start = values(m * n, 3);
        let mut c = start.clone();
        let packed = Packed::new(a).expect("checked above");
        gemm(&mut c, &packed, b, true, threads);
        let tolerance = 4.0 * (k as f32).sqrt() / 256.0;
        for (i, ((&got, &want), &was)) in c.iter().zip(&expected).zip(&start).enumerate() {
            let err = (got - was - want).abs();
            assert!(
                err <= tolerance,
                "{m}×{k}×{n} at {i}: {got} vs {}",
                want + was
            );
        }
        gemm(&mut c, &packed, b, false, threads);
        assert!(
            c.iter()
                .zip(&expected)
                .all(|(g, w)| (g - w).abs() <= tolerance)
        );
    }

    #[test]
    fn blocks_edges_and_odd_k() {
        // Several KC, MC and NC blocks, partial micro-tiles, an odd k.
        assert_matches(70, 517, 600, false, 1);
        assert_matches(9, 3, 33, false, 1);
        assert_matches(1, 1, 1, false, 1);
    }

    #[test]
    fn strided_operands_and_row_bands() {
        assert_matches(37, 40, 45, true, 1);
        assert_matches(100, 64, 50, false, 3);
    }
}
