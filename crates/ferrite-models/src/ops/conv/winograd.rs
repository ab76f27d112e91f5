//! Winograd's minimal filtering F(2×2, 3×3), F(3×3, 3×3) and F(4×4, 3×3) for dense 3×3
//! stride-1 convolutions (Lavin & Gray, "Fast Algorithms for Convolutional Neural Networks",
//! 2016). In F(2×2, 3×3) each 4×4 input tile and each 3×3 filter are transformed so that a 2×2
//! output tile costs 16 multiplies instead of 36: 2.25× fewer multiply-adds in the matrix
//! products, which are most of a VGG or DeXpression step. F(4×4, 3×3) ([`f43`], on maps of 12²
//! and up) costs 36 instead of 144 for a 4×4 tile, F(3×3, 3×3) ([`f33`], on 6² maps) 25
//! instead of 81 for a 3×3 one; their plane transforms are [`transforms`], and the driver here
//! serves all three.
//!
//! With `ξ` the 16 (or 25, or 36) transformed positions and the tiles of a group of images as
//! the columns:
//!
//! ```text
//! forward       V = Bᵀ·x·B     M[ξ] = U[ξ]·V[ξ]          y = Aᵀ·M·A       (U = G·w·Gᵀ)
//! input grad    Ŷ = A·dy·Aᵀ    dV[ξ] = U[ξ]ᵀ·Ŷ[ξ]         dx += B·dV·Bᵀ
//! weight grad   Ŷ, V           dU[ξ] += Ŷ[ξ]·V[ξ]ᵀ        dw = Gᵀ·dU·G
//! ```
//!
//! The gradients are the exact adjoints of the forward (every transform is linear, so its
//! transpose carries the gradient back), computed in the same transformed space. Tiles hanging
//! over the output's edge read zeros and write nothing outside it.

use std::ops::Range;

use multiversion::multiversion;
use rayon::prelude::*;

use burn::backend::flex::FlexTensor;
use gemm::Parallelism;

use super::kernels::{Epilogue, Geometry, Lhs, Mat, balanced, gemm_into, plan, sum_parts};
use crate::ops::filter_cache::FilterCache;
use crate::ops::output;
use crate::ops::scratch::with_scratch;

mod f33;
mod f43;
#[cfg(target_arch = "x86_64")]
mod few_tiles;
mod transforms;

/// `transforms::$f::<M, N, Points>(args)` for the larger tiles of side `$m` (3 or 4), else
/// `$small` (2×2 tiles).
macro_rules! by_tile_side {
    ($m:expr, $f:ident($($arg:expr),* $(,)?), $small:expr) => {
        match $m {
            f43::M => transforms::$f::<{ f43::M }, { f43::M + 2 }, f43::F43>($($arg),*),
            f33::M => transforms::$f::<{ f33::M }, { f33::M + 2 }, f33::F33>($($arg),*),
            _ => $small,
        }
    };
}

/// Transformed positions per tile of F(2×2, 3×3): a 4×4 input tile.
const XI: usize = 16;

/// The tile columns of one round of 16 matrix products: at least enough that packing the
/// transformed filters pays off; for few channels, as many as keep the round's transformed
/// tiles (`16 · (in + out)` values each) within 4 MiB. Measured on VGG's 64→64 layer at 48²:
/// rounds of 1 MiB (small products) and of several whole images (16 MiB) were both slower.
/// Where one position's filters are small, fewer columns do: DeXpression's 96→208 at 12²
/// (`conv_layers 15 featex1`, forward + both gradients, ms, 5 alternating runs each) in rounds
/// of 8 images (72 columns, 3.2 MiB) 21.7–22.3 against 22.9–25.3 for 11 (99 columns, as a
/// minimum of 128 gave), 23.0–23.3 for 16, 23–29 for 32, 25–33 for 4; VGG's 128→256 at 12² 37–41
/// against 39–42. Large filters (VGG's 256→512 and 512→512 at 6², 128k and 256k values a
/// position) lost 5–6 % in rounds of 64 columns: each round packs them again.
fn min_columns(g: &Geometry) -> usize {
    if g.in_channels * g.out_channels <= SMALL_FILTERS {
        64
    } else {
        128
    }
}

const SMALL_FILTERS: usize = 1 << 16;
const CACHE_VALUES: usize = 1 << 20;

/// Whether the Winograd kernels run this convolution: one they cover, with enough channels
/// that the 16 products outweigh the transforms.
pub fn applies(g: &Geometry) -> bool {
    covers(g) && pays_off(g) && enough_tiles(g) && !crate::ops::im2col_forced()
}

/// Whether [`infer`] runs `g` on Winograd: as in training, or on few tiles with cached
/// filters ([`few_tiles`]).
pub fn applies_at_inference(g: &Geometry) -> bool {
    applies(g) || few_tiles_apply(g)
}

/// On few tiles the plane transforms run on short rows, and only layers with many channels
/// repay them: `in·out/(in + out)` of at least this (as for 6² maps in [`pays_off`]). Measured
/// at batch 1 (`conv_layers 301 … 1`, forward ms, im2col → cached Winograd): DeXpression's
/// 96→208 at 12² (65) 0.35–0.37 → 0.17–0.25, at 6² 0.11–0.13 → 0.08–0.11, VGG's 128→256 at
/// 12² (85) 0.58–0.60 → 0.31–0.34; seed-cnn's 32→64 at 12² (21) 0.048 → 0.064.
const FEW_TILES_CHANNELS: usize = 64;

/// With fewer than [`MIN_TILES`] 2×2 tiles in the batch, the layers Winograd takes anyway (maps
/// of 24² and up, F(4×4)) take the cached path too: there the per-call filter transform and
/// `gemm` on 36 columns cost more than the products. VGG at batch 1 (`conv_layers 201 "" 1
/// forward`, ms, 2 alternating runs): 64→128 at 24² 0.49–0.52 → 0.27–0.29, 128→128 at 24²
/// 0.77 → 0.44–0.47. On 48² maps (576 tiles) the uncached path stays: 64→64 0.57 either way
/// in that run, 0.55–0.77 → 0.62–0.82 and the wide CNN's 32→32 0.21–0.28 → 0.27–0.31 when it
/// was cached too.
fn few_tiles_apply(g: &Geometry) -> bool {
    let (c, k) = (g.in_channels, g.out_channels);
    let many_channels = covers(g) && c * k >= FEW_TILES_CHANNELS * (c + k);
    let candidate = tiles_in_batch(g) < MIN_TILES
        && (applies(g) || many_channels)
        && !crate::ops::im2col_forced();
    #[cfg(target_arch = "x86_64")]
    return candidate && few_tiles::fits(g, &Tiling::new(g));
    #[cfg(not(target_arch = "x86_64"))]
    {
        let _ = candidate;
        false
    }
}

/// The filter transform costs the same however many tiles share it; with few tiles in the
/// whole batch it is not repaid. Measured at batch 1 (`conv_layers 41 vgg 1`), F(2×2): VGG's
/// 64→64 at 48² (576 tiles) 0.61 ms against im2col's 0.95; 128→128 at 24² (144) 0.66 against
/// 0.65; 512→512 at 6² (9) 1.79 against 1.01. F(4×4) layers (maps of 24² and up, so at least
/// 144 2×2 tiles an image) always gain: 64→128 at 24², batch 1, forward 0.29–0.31 → 0.23 ms;
/// VGG at batch 1 299 → 329 images/s (`throughput infer vgg 1`, A/B).
const MIN_TILES: usize = 256;

fn enough_tiles(g: &Geometry) -> bool {
    let [h, w] = g.out_size;
    let large = h >= ALWAYS_SIDE && w >= ALWAYS_SIDE && tile_side(g) == f43::M;
    large || tiles_in_batch(g) >= MIN_TILES
}

/// Maps this large gain from F(4×4) whatever the batch. On 12² maps at batch 1 it loses
/// (`conv_layers 41 "12²" 1`, forward ms, im2col → F(4×4), 2 runs): DeXpression's 96→208
/// 0.36 → 0.47–0.54, VGG's 256→256 1.13 → 1.34–1.35.
const ALWAYS_SIDE: usize = 24;

/// The 2×2 output tiles of the whole batch.
fn tiles_in_batch(g: &Geometry) -> usize {
    g.batch * g.out_size[0].div_ceil(2) * g.out_size[1].div_ceil(2)
}

/// The output tile side: F(4×4, 3×3) on maps of at least 12², F(3×3, 3×3) or F(2×2, 3×3) on
/// smaller ones.
/// Measured per layer on Zen 4 (`conv_layers 3 "" 64`, forward + both gradients, ms, 2 runs
/// each), F(2×2) → F(4×4) with each channel's transforms over all the images of a round:
/// VGG's 128→256 at 12² 65.6 → 40–43, 256→256 115–119 → 78–83, DeXpression's 96→208 45 → 24–27.
/// On 6² maps (two 4×4 tiles a row, the same 144 products per image as nine 2×2 tiles) level:
/// 256→512 62–65 → 64–66, 512→512 116–121 → 115–117, DeXpression's 96→208 13–15 → 13–18.
const MIN_F43_SIDE: usize = 12;

/// On smaller maps, F(3×3, 3×3) where its tiles fit the map better than 2×2 ones (a 6² map:
/// 100 products an image against 144).
fn tile_side(g: &Geometry) -> usize {
    let [h, w] = g.out_size;
    if crate::ops::f23_forced() {
        2
    } else if h >= MIN_F43_SIDE && w >= MIN_F43_SIDE {
        f43::M
    } else if products_per_image(g, f33::M) < products_per_image(g, 2) {
        f33::M
    } else {
        2
    }
}

/// Transformed positions of one image's tiles of side `m`.
fn products_per_image(g: &Geometry, m: usize) -> usize {
    g.out_size[0].div_ceil(m) * g.out_size[1].div_ceil(m) * (m + 2) * (m + 2)
}

/// Dense 3×3, stride 1, no dilation (any padding).
fn covers(g: &Geometry) -> bool {
    !g.is_depthwise() && g.kernel == [3, 3] && g.stride == [1, 1] && g.dilation == [1, 1]
}

/// The transforms cost about `in + out` per tile and channel pair, the products `in · out`; so
/// the measure is `in·out / (in + out)`. With F(2×2) tiles (measured per layer, `conv_layers`
/// example, batch 64): 64→64 at 48² (32) and 96→208 at 12² (65) gain, 32→64 at 12² (21) and
/// 32→32 at 48² (16) lose. F(4×4) transforms cost less per output (2.25 values a tile position
/// against 4), so maps of 12² and up gain from 16 (Zen 4, forward + both gradients, ms, im2col
/// → F(4×4), 3 pairs): 32→32 at 48² 65–66 → 32–50, seed-cnn's 32→64 at 12² 7.9–8.3 → 4.3–6.4;
/// 16→32 at 24² (10.7) level (8.5–9.5 either way), 8→8 at 46² (4) and 1→16 at 48² lose. On
/// maps under 8 wide the short rows cost more (at 6², im2col → F(2×2), on Zen 4): 64→64 (32)
/// 4.6 → 5.9, 96→96 (48) 9.1 → 9.8, 128→128 (64) 15.2 → 13.3, DeXpression's 96→208 (65) 17.7
/// → 14.8.
fn pays_off(g: &Geometry) -> bool {
    let (c, k) = (g.in_channels, g.out_channels);
    let needed = if g.out_size[1] < 8 {
        64
    } else if tile_side(g) == f43::M {
        16
    } else {
        32
    };
    c * k >= needed * (c + k)
}

/// The 2×2 output tiles of one image, and how they are cut into rounds of matrix products:
/// several whole images per round when images are small, bands of tile rows of one image
/// when they are large.
#[derive(Debug, Clone, Copy)]
struct Tiling {
    /// Output tile side: 2 for F(2×2, 3×3), 4 for F(4×4, 3×3).
    m: usize,
    rows: usize,
    cols: usize,
    /// Images per group, the unit of parallel work (the last group may have fewer).
    images: usize,
    groups: usize,
    /// Tile rows per band (all of them when a group holds several images).
    band_rows: usize,
}

/// One round: tile rows `rows` of images `first..first + images`.
struct Band {
    first: usize,
    images: usize,
    rows: Range<usize>,
}

impl Tiling {
    fn new(g: &Geometry) -> Self {
        Self::with_tile(g, tile_side(g))
    }

    fn with_tile(g: &Geometry, m: usize) -> Self {
        let rows = g.out_size[0].div_ceil(m);
        let cols = g.out_size[1].div_ceil(m);
        let per_image = rows * cols;
        let xi = (m + 2) * (m + 2);
        let target = (CACHE_VALUES / (xi * (g.in_channels + g.out_channels))).max(min_columns(g));
        if per_image >= target {
            return Self {
                m,
                rows,
                cols,
                images: 1,
                groups: g.batch,
                band_rows: (target / cols).max(1),
            };
        }
        // Enough groups to fill the threads, each near `target` columns.
        let threads = rayon::current_num_threads();
        let wanted = (g.batch * per_image)
            .div_ceil(target)
            .next_multiple_of(threads)
            .clamp(1, g.batch.max(1));
        let images = balanced(g.batch, g.batch.div_ceil(wanted).max(1), threads);
        Self {
            m,
            rows,
            cols,
            images,
            groups: g.batch.div_ceil(images),
            band_rows: rows,
        }
    }

    /// Transformed positions per tile: `(m + 2)²`.
    fn xi(&self) -> usize {
        (self.m + 2) * (self.m + 2)
    }

    /// The tiles of a whole batch.
    fn in_batch(&self, batch: usize) -> usize {
        batch * self.rows * self.cols
    }

    /// The widest round's tile columns.
    fn columns(&self) -> usize {
        self.images * self.band_rows * self.cols
    }

    /// The rounds of group `group`.
    fn bands(&self, group: usize, batch: usize) -> impl Iterator<Item = Band> {
        let first = group * self.images;
        let images = self.images.min(batch - first);
        let (rows, step) = (self.rows, self.band_rows);
        (0..rows).step_by(step).map(move |r| Band {
            first,
            images,
            rows: r..(r + step).min(rows),
        })
    }
}

impl Band {
    /// Tile columns of one image in this band.
    fn per_image(&self, tiles: &Tiling) -> usize {
        self.rows.len() * tiles.cols
    }

    fn columns(&self, tiles: &Tiling) -> usize {
        self.images * self.per_image(tiles)
    }
}

/// G = [[1, 0, 0], [½, ½, ½], [½, −½, ½], [0, 0, 1]].
const G: [[f32; 3]; 4] = [
    [1.0, 0.0, 0.0],
    [0.5, 0.5, 0.5],
    [0.5, -0.5, 0.5],
    [0.0, 0.0, 1.0],
];

/// The filter transform of `tiles` as a `[(m + 2)², 9]` matrix: `U[ξ = (m + 2)·r + s] =
/// Σ G[r][a]·G[s][b]·w[3a + b]`.
fn filter_matrix(tiles: &Tiling) -> Vec<f32> {
    let g: &[[f32; 3]] = match tiles.m {
        f43::M => &f43::G,
        f33::M => &f33::G,
        _ => &G,
    };
    let n = g.len();
    let mut t = vec![0.0; n * n * 9];
    for (xi, row) in t.chunks_exact_mut(9).enumerate() {
        for (ab, v) in row.iter_mut().enumerate() {
            *v = g[xi / n][ab / 3] * g[xi % n][ab % 3];
        }
    }
    t
}

/// `U[ξ][k][c] = (G·w[k][c]·Gᵀ)[ξ]`, each of the `(m + 2)²` planes a `[out, in]` matrix: one
/// product `[(m + 2)², 9] · wᵀ` over all filters (big layers have a quarter of a million).
fn filter_transform(w: &[f32], g: &Geometry, tiles: &Tiling) -> Vec<f32> {
    let (pairs, xi) = (g.out_channels * g.in_channels, tiles.xi());
    let mut u = vec![0.0; xi * pairs];
    let t = filter_matrix(tiles);
    let parallelism = plan(1, xi * 9 * pairs).1;
    gemm_into(
        &mut u,
        Mat::rows(&t, xi, 9),
        Mat::rows(w, pairs, 9).t(),
        false,
        parallelism,
    );
    u
}

/// `dw[k][c] = Gᵀ·dU[k][c]·G`, the adjoint of [`filter_transform`]: `dUᵀ · [(m + 2)², 9]`.
fn filter_grad(du: &[f32], g: &Geometry, tiles: &Tiling) -> Vec<f32> {
    let (pairs, xi) = (g.out_channels * g.in_channels, tiles.xi());
    let mut dw = vec![0.0; 9 * pairs];
    let t = filter_matrix(tiles);
    let parallelism = plan(1, xi * 9 * pairs).1;
    gemm_into(
        &mut dw,
        Mat::rows(du, xi, pairs).t(),
        Mat::rows(&t, xi, 9),
        false,
        parallelism,
    );
    dw
}

/// Where one plane's tiles go in a group's transformed matrices: tile `t` of position `ξ` is
/// `data[ξ·xi_stride + t]`.
struct Spread<T> {
    data: T,
    xi_stride: usize,
}

impl<T> Spread<T> {
    fn new(data: T, xi_stride: usize) -> Self {
        Self { data, xi_stride }
    }
}

impl Spread<&mut [f32]> {
    /// The same positions from column `at` on.
    fn from_column(&mut self, at: usize) -> Spread<&mut [f32]> {
        Spread::new(&mut self.data[at..], self.xi_stride)
    }

    /// The runs `[at, at + len)` of positions `xi, xi + 1, …`, one after another.
    fn rows(&mut self, xi: usize, at: usize, len: usize) -> Runs<'_> {
        let start = xi * self.xi_stride + at;
        Runs {
            rest: &mut self.data[start..],
            stride: self.xi_stride,
            len,
        }
    }
}

/// Successive runs of `len` values, `stride` apart, of a mutable slice.
struct Runs<'a> {
    rest: &'a mut [f32],
    stride: usize,
    len: usize,
}

impl<'a> Runs<'a> {
    fn next(&mut self) -> &'a mut [f32] {
        let rest = std::mem::take(&mut self.rest);
        let skip = self.stride.min(rest.len());
        let (run, after) = rest.split_at_mut(skip);
        self.rest = after;
        &mut run[..self.len]
    }
}

/// The buffers of the plane transforms, allocated once per group rather than per plane.
struct PlaneBuffers {
    /// One plane with its zero border, `(2·rows + 2) × (2·cols + 2)`.
    padded: Vec<f32>,
    /// Four rows of `2·cols + 2`.
    rows: [Vec<f32>; 4],
    /// Even and odd columns of up to four rows, `cols + 1` each.
    halves: [Vec<f32>; 8],
    /// Sixteen rows of `cols`.
    h: Vec<f32>,
    z: Vec<f32>,
    /// All the buffers of F(3×3, 3×3) or F(4×4, 3×3) (empty for F(2×2, 3×3)).
    larger: Vec<f32>,
}

impl PlaneBuffers {
    fn new(tiles: &Tiling) -> Self {
        let width = 2 * tiles.cols + 2;
        let zeros = |n: usize| vec![0.0f32; n];
        Self {
            padded: zeros((2 * tiles.rows + 2) * width),
            rows: [(); 4].map(|_| zeros(width)),
            halves: [(); 8].map(|_| zeros(tiles.cols + 1)),
            h: zeros(16 * tiles.cols),
            z: zeros(4 * tiles.cols),
            larger: zeros(if tiles.m > 2 {
                transforms::buffer_len(tiles)
            } else {
                0
            }),
        }
    }
}

/// The `len` values of row `y` of a `width`-wide map when it has one, else zeros, split into
/// even and odd columns (`even`, `odd` hold at least `len.div_ceil(2)`).
#[inline]
fn split_row(map: &[f32], y: Option<usize>, width: usize, even: &mut [f32], odd: &mut [f32]) {
    even.fill(0.0);
    odd.fill(0.0);
    let Some(y) = y else { return };
    let row = &map[y * width..(y + 1) * width];
    let pairs = row.chunks_exact(2);
    if let [last] = pairs.remainder() {
        even[width / 2] = *last;
    }
    for ((pair, e), o) in pairs.zip(even.iter_mut()).zip(odd.iter_mut()) {
        *e = pair[0];
        *o = pair[1];
    }
}

/// `V = Bᵀ·d·B` for every 4×4 tile `d` of one input plane (zeros outside it), with
/// Bᵀ = [[1, 0, −1, 0], [0, 1, 1, 0], [0, −1, 1, 0], [0, 1, 0, −1]].
///
/// The plane is copied once into its zero border; then, a tile row at a time, Bᵀ runs down the
/// four rows as whole-row passes, and each result is split into its even and odd columns so
/// that Bᵀ along the row is four contiguous passes over the tiles.
#[multiversion(targets = "simd")]
fn input_transform(
    plane: &[f32],
    g: &Geometry,
    tiles: &Tiling,
    band: Range<usize>,
    mut v: Spread<&mut [f32]>,
    buf: &mut PlaneBuffers,
) {
    let [in_h, in_w] = g.in_size;
    let [pad_y, pad_x] = g.pad;
    let cols = tiles.cols;
    let width = 2 * cols + 2;
    let PlaneBuffers {
        padded,
        rows,
        halves,
        ..
    } = buf;
    // The band's padded rows 2·first .. 2·end + 2, the plane's rows among them.
    let top = 2 * band.start;
    padded.fill(0.0);
    for (y, line) in plane.chunks_exact(in_w).enumerate().take(in_h) {
        let Some(row) = (y + pad_y)
            .checked_sub(top)
            .filter(|&r| r < 2 * band.len() + 2)
        else {
            continue;
        };
        padded[row * width + pad_x..][..in_w].copy_from_slice(line);
    }
    let [even, odd, ..] = halves;
    for (local, _) in band.enumerate() {
        let at = |i: usize| &padded[(2 * local + i) * width..][..width];
        let (s0, s1, s2, s3) = (at(0), at(1), at(2), at(3));
        // Resliced to `width`: the loops then index without bounds checks, and vectorise.
        let [d0, d1, d2, d3] = rows.each_mut().map(|d| &mut d[..width]);
        for x in 0..width {
            d0[x] = s0[x] - s2[x];
            d1[x] = s1[x] + s2[x];
            d2[x] = s2[x] - s1[x];
            d3[x] = s1[x] - s3[x];
        }
        for (i, row) in rows.iter().enumerate() {
            split_row(row, Some(0), width, even, odd);
            // Tile tx covers columns 2tx..2tx+3: even[tx], odd[tx], even[tx+1], odd[tx+1].
            let (a, b) = (&even[..cols], &odd[..cols]);
            let (c, d) = (&even[1..], &odd[1..]);
            let mut out = v.rows(4 * i, local * cols, cols);
            zip_into(out.next(), a, c, |a, c| a - c);
            zip_into(out.next(), b, c, |b, c| b + c);
            zip_into(out.next(), b, c, |b, c| c - b);
            zip_into(out.next(), b, d, |b, d| b - d);
        }
    }
}

/// `dx += Σ B·dV·Bᵀ` over the (overlapping) tiles of one input plane in tile rows `band`, the
/// adjoint of [`input_transform`]; B·[a, b, c, d] = [a, b − c + d, −a + b + c, −d].
#[multiversion(targets = "simd")]
fn input_scatter(
    dv: Spread<&[f32]>,
    g: &Geometry,
    tiles: &Tiling,
    band: Range<usize>,
    plane: &mut [f32],
    buf: &mut PlaneBuffers,
) {
    let [in_h, in_w] = g.in_size;
    let [pad_y, pad_x] = g.pad;
    let cols = tiles.cols;
    let PlaneBuffers { h, z, .. } = buf;
    for (local, ty) in band.enumerate() {
        // h[4i + j]: B along tile row i, contribution to tile column j, for every tile.
        for i in 0..4 {
            let at = |j: usize| &dv.data[(4 * i + j) * dv.xi_stride + local * cols..][..cols];
            let out = &mut h[4 * i * cols..4 * (i + 1) * cols];
            b_times_rows(out, [at(0), at(1), at(2), at(3)], cols);
        }
        // B down the columns, one column position j at a time, onto input rows 2ty + i − pad.
        for j in 0..4 {
            let at = |i: usize| &h[(4 * i + j) * cols..][..cols];
            b_times_rows(z, [at(0), at(1), at(2), at(3)], cols);
            for (i, zi) in z.chunks_exact(cols).enumerate() {
                let Some(y) = (2 * ty + i).checked_sub(pad_y).filter(|&y| y < in_h) else {
                    continue;
                };
                let line = &mut plane[y * in_w..(y + 1) * in_w];
                add_every_other(line, j as isize - pad_x as isize, zi);
            }
        }
    }
}

/// `out[k] = (B·[a, b, c, d])[k]` for each of the `n` tiles, four rows of `n` values out.
#[inline]
fn b_times_rows(out: &mut [f32], [a, b, c, d]: [&[f32]; 4], n: usize) {
    let (o0, rest) = out.split_at_mut(n);
    let (o1, rest) = rest.split_at_mut(n);
    let (o2, o3) = rest.split_at_mut(n);
    let (o0, o1, o2, o3) = (&mut o0[..n], &mut o1[..n], &mut o2[..n], &mut o3[..n]);
    let (a, b, c, d) = (&a[..n], &b[..n], &c[..n], &d[..n]);
    for t in 0..n {
        o0[t] = a[t];
        o1[t] = b[t] - c[t] + d[t];
        o2[t] = b[t] + c[t] - a[t];
        o3[t] = -d[t];
    }
}

/// `line[2·t + offset] += values[t]` wherever that lies inside `line`.
#[inline]
fn add_every_other(line: &mut [f32], offset: isize, values: &[f32]) {
    // The first t with 2·t + offset ≥ 0.
    let first = (1 - offset).max(0) as usize / 2;
    let start = (2 * first as isize + offset) as usize;
    if start >= line.len() || first >= values.len() {
        return;
    }
    for (p, v) in line[start..].iter_mut().step_by(2).zip(&values[first..]) {
        *p += v;
    }
}

/// `out[t] = f(a[t], b[t])`.
#[inline]
fn zip_into(out: &mut [f32], a: &[f32], b: &[f32], f: impl Fn(f32, f32) -> f32) {
    for ((o, &p), &q) in out.iter_mut().zip(a).zip(b) {
        *o = f(p, q);
    }
}

/// `y = Aᵀ·M·A` for every tile of one output map, with Aᵀ = [[1, 1, 1, 0], [0, 1, −1, −1]]:
/// Aᵀ along each tile row as contiguous passes over the tiles, then down the columns, each
/// tile's two output columns written side by side into the map's rows.
#[multiversion(targets = "simd")]
fn output_transform(
    m: Spread<&[f32]>,
    g: &Geometry,
    tiles: &Tiling,
    band: Range<usize>,
    map: &mut [f32],
    buf: &mut PlaneBuffers,
) {
    let [out_h, out_w] = g.out_size;
    let cols = tiles.cols;
    // halves[2i], halves[2i + 1]: Aᵀ along tile row i, output column 0 and 1 of every tile.
    let PlaneBuffers { halves, .. } = buf;
    for (local, ty) in band.enumerate() {
        for i in 0..4 {
            let at = |j: usize| &m.data[(4 * i + j) * m.xi_stride + local * cols..][..cols];
            let (m0, m1, m2, m3) = (at(0), at(1), at(2), at(3));
            let [even, odd] = halves
                .get_disjoint_mut([2 * i, 2 * i + 1])
                .expect("distinct");
            let (even, odd) = (&mut even[..cols], &mut odd[..cols]);
            for tx in 0..cols {
                even[tx] = m0[tx] + m1[tx] + m2[tx];
                odd[tx] = m1[tx] - m2[tx] - m3[tx];
            }
        }
        let at = |i: usize| (&halves[2 * i][..cols], &halves[2 * i + 1][..cols]);
        let (r0, r1, r2, r3) = (at(0), at(1), at(2), at(3));
        for dy in 0..2 {
            let y = 2 * ty + dy;
            if y >= out_h {
                break;
            }
            let line = &mut map[y * out_w..(y + 1) * out_w];
            let value = |tx: usize, parity: usize| {
                let pick = |r: (&[f32], &[f32])| if parity == 0 { r.0[tx] } else { r.1[tx] };
                if dy == 0 {
                    pick(r0) + pick(r1) + pick(r2)
                } else {
                    pick(r1) - pick(r2) - pick(r3)
                }
            };
            let mut pairs = line.chunks_exact_mut(2);
            for (tx, pair) in pairs.by_ref().enumerate() {
                pair[0] = value(tx, 0);
                pair[1] = value(tx, 1);
            }
            if let [last] = pairs.into_remainder() {
                *last = value(out_w / 2, 0);
            }
        }
    }
}

/// `Ŷ = A·dy·Aᵀ` for every 2×2 tile of one output-gradient map (zeros outside it), the
/// adjoint of [`output_transform`]; A·[a, b] = [a, a + b, a − b, −b].
#[multiversion(targets = "simd")]
fn output_grad_transform(
    map: &[f32],
    g: &Geometry,
    tiles: &Tiling,
    band: Range<usize>,
    mut yhat: Spread<&mut [f32]>,
    buf: &mut PlaneBuffers,
) {
    let [out_h, out_w] = g.out_size;
    let cols = tiles.cols;
    let PlaneBuffers { halves, .. } = buf;
    for (local, ty) in band.enumerate() {
        // The tile row's two map rows, split into even and odd columns: dy[r][q] per tile.
        let [ae, ao, be, bo, ..] = halves;
        let y = |dy: usize| Some(2 * ty + dy).filter(|&y| y < out_h);
        split_row(map, y(0), out_w, ae, ao);
        split_row(map, y(1), out_w, be, bo);
        let (ae, ao, be, bo) = (&ae[..cols], &ao[..cols], &be[..cols], &bo[..cols]);
        // Ŷ[4i + j] = A[i]·(a, b) down the rows, then A[j]·(even, odd) along them, with
        // A = [[1, 0], [1, 1], [1, −1], [0, −1]]: sums and differences only.
        let mut runs = yhat.rows(0, local * cols, cols);
        let out: [&mut [f32]; XI] = std::array::from_fn(|_| &mut runs.next()[..cols]);
        for t in 0..cols {
            let (a0, a1, b0, b1) = (ae[t], ao[t], be[t], bo[t]);
            let rows = [(a0, a1), (a0 + b0, a1 + b1), (a0 - b0, a1 - b1), (-b0, -b1)];
            for (i, (e, o)) in rows.into_iter().enumerate() {
                out[4 * i][t] = e;
                out[4 * i + 1][t] = e + o;
                out[4 * i + 2][t] = e - o;
                out[4 * i + 3][t] = -o;
            }
        }
    }
}

/// How a band's work is spread over the threads. With many groups of images per thread, each
/// thread runs whole groups and everything inside a group runs on it alone (`Groups`). With
/// fewer, each stage of a band is split instead: the plane transforms by channel, the 16
/// products by position `ξ` (`Stages`).
#[derive(Clone, Copy, PartialEq, Eq)]
enum Spreading {
    Groups,
    Stages,
}

/// Groups per thread below which a band's stages are split: with a few groups each, a thread
/// that falls behind by one keeps the other waiting, at the end of the forward and of the
/// weight gradient's fixed halves. Measured (`conv_layers 15 featex 64`, forward + both
/// gradients, ms, 4 alternating runs): DeXpression's 96→208 at 12² (8 groups) 25.0–28.9 →
/// 23.7–26.0, at 6² (2 groups) 8.7–10.4 → 8.1–9.1; its training step (`throughput train
/// dexpression 64 20 2`, 8 pairs each way) 0.954× one way and 1.051× the other. VGG's 12²
/// layers (8 groups) gained too (`conv_layers 5 vgg`: 128→256 42–65 → 37–43); its 24² and 48²
/// ones (16 and 64 groups) keep whole groups.
const MIN_GROUPS_PER_THREAD: usize = 8;

impl Spreading {
    fn of(tiles: &Tiling) -> Self {
        if tiles.groups >= MIN_GROUPS_PER_THREAD * rayon::current_num_threads() {
            Self::Groups
        } else {
            Self::Stages
        }
    }

    /// The smallest piece a stage of `items` pieces is cut into: all of it when the stage runs
    /// on the calling thread.
    fn min_len(self, items: usize) -> usize {
        match self {
            Self::Groups => items.max(1),
            Self::Stages => 1,
        }
    }
}

/// Runs `transform` on every channel of the band's images (`channels` planes of `plane_len`
/// each), given that channel's plane of each image. The band's transformed planes are
/// `[channels][16][columns]`: channel `c` of image `i` fills columns `i · per_image..` of the
/// 16 rows of `out`'s chunk `c`, so that channels can be transformed in parallel.
fn transform_planes<'a>(
    data: &'a [f32],
    [channels, plane_len]: [usize; 2],
    (tiles, band, spreading): (&Tiling, &Band, Spreading),
    out: &mut [f32],
    transform: impl Fn(&[&'a [f32]], Spread<&mut [f32]>, &mut PlaneBuffers) + Sync,
) {
    let columns = band.columns(tiles);
    let image_len = channels * plane_len;
    let xi = tiles.xi();
    out[..channels * xi * columns]
        .par_chunks_mut(xi * columns)
        .with_min_len(spreading.min_len(channels))
        .enumerate()
        .for_each_init(
            || (PlaneBuffers::new(tiles), Vec::with_capacity(band.images)),
            |(buf, planes), (c, rows)| {
                planes.clear();
                planes.extend(
                    (0..band.images).map(|i| {
                        &data[(band.first + i) * image_len + c * plane_len..][..plane_len]
                    }),
                );
                transform(planes, Spread::new(rows, columns), buf);
            },
        );
}

/// The maps of a group's images (`[images][channels][plane]`) by channel: `[channels][images]`.
fn maps_by_channel(data: &mut [f32], channels: usize, plane: usize) -> Vec<Vec<&mut [f32]>> {
    let mut by_channel: Vec<Vec<&mut [f32]>> = (0..channels).map(|_| Vec::new()).collect();
    for (n, map) in data.chunks_mut(plane).enumerate() {
        by_channel[n % channels].push(map);
    }
    by_channel
}

/// The transformed input planes of one band (`[in][16][columns]`, see [`transform_planes`]).
fn transform_inputs(x: &[f32], g: &Geometry, band: (&Tiling, &Band, Spreading), v: &mut [f32]) {
    let (tiles, rows) = (band.0, band.1.rows.clone());
    let shape = [g.in_channels, g.in_plane()];
    let per_image = band.1.per_image(tiles);
    transform_planes(x, shape, band, v, |planes, mut at, buf| {
        let larger = &mut buf.larger;
        by_tile_side!(
            tiles.m,
            input_transform(planes, g, tiles, rows.clone(), at, larger),
            for (i, plane) in planes.iter().enumerate() {
                let at = at.from_column(i * per_image);
                input_transform(plane, g, tiles, rows.clone(), at, buf);
            }
        )
    });
}

/// The transformed output-gradient planes of one band (`[out][16][columns]`).
fn transform_output_grads(
    dy: &[f32],
    g: &Geometry,
    band: (&Tiling, &Band, Spreading),
    yhat: &mut [f32],
) {
    let (tiles, rows) = (band.0, band.1.rows.clone());
    let shape = [g.out_channels, g.out_plane()];
    let per_image = band.1.per_image(tiles);
    transform_planes(dy, shape, band, yhat, |maps, mut at, buf| {
        let larger = &mut buf.larger;
        by_tile_side!(
            tiles.m,
            output_grad_transform(maps, g, tiles, rows.clone(), at, larger),
            for (i, map) in maps.iter().enumerate() {
                let at = at.from_column(i * per_image);
                output_grad_transform(map, g, tiles, rows.clone(), at, buf);
            }
        )
    });
}

/// Position `xi` of `positions` transformed planes laid out by [`transform_planes`]: `[rows,
/// columns]`.
fn position(data: &[f32], (xi, positions): (usize, usize), rows: usize, columns: usize) -> Mat<'_> {
    Mat::strided(&data[xi * columns..], rows, columns, positions * columns)
}

/// Plane `xi` of stacked `[rows, cols]` matrices.
fn plane(data: &[f32], xi: usize, rows: usize, cols: usize) -> Mat<'_> {
    Mat::rows(&data[xi * rows * cols..(xi + 1) * rows * cols], rows, cols)
}

/// Runs `product(ξ, out)` for the `positions` positions, `out` being the `ξ`-th of equal chunks
/// of `data`'s first `positions · len` values.
fn for_each_position(
    data: &mut [f32],
    (positions, len): (usize, usize),
    spreading: Spreading,
    product: impl Fn(usize, &mut [f32]) + Sync,
) {
    data[..positions * len]
        .par_chunks_mut(len)
        .with_min_len(spreading.min_len(positions))
        .enumerate()
        .for_each(|(xi, out)| product(xi, out));
}

/// `y = epilogue(conv(x, w))`.
pub fn forward(x: &[f32], w: &[f32], post: &Epilogue, g: &Geometry) -> Vec<f32> {
    let tiles = Tiling::new(g);
    forward_tiled(x, &filter_transform(w, g, &tiles), post, g, tiles)
}

/// [`forward`] at inference, where `w` stays the same from call to call: on few tiles with
/// its transformed filters cached ([`few_tiles`]); on batches smaller than the thread count
/// (batch-1 serving) with the transformed filters cached too ([`TRANSFORMED`]).
pub fn infer(x: &[f32], w: &FlexTensor, post: &Epilogue, g: &Geometry) -> Vec<f32> {
    let tiles = Tiling::new(g);
    #[cfg(target_arch = "x86_64")]
    if few_tiles_apply(g) {
        let filters = few_tiles::filters(w, g, &tiles);
        return few_tiles::forward(x, &filters, post, g, tiles);
    }
    if g.batch < rayon::current_num_threads() {
        let shape = [g.out_channels, g.in_channels];
        let u = TRANSFORMED.get(w, shape, tiles.m, |w| filter_transform(w, g, &tiles));
        return forward_tiled(x, &u, post, g, tiles);
    }
    forward(
        x,
        w.as_slice::<f32>().expect("contiguous f32 weights"),
        post,
        g,
    )
}

/// Transformed filters of the layers [`infer`] runs on Winograd's plain path at batch 1: VGG's
/// 64→64 at 48² (576 tiles, too many for [`few_tiles`]) holds 147 k values. Its transform, on
/// one thread with the other idle, took 0.055 ms of the layer's 0.47 alone and 0.07 of 0.6 in
/// the whole VGG forward. At most 16 MB in all.
static TRANSFORMED: FilterCache<Vec<f32>> = FilterCache::new(1 << 22);

/// `y = epilogue(conv(x, w))` from `filters`, `w` transformed ([`filter_transform`]).
fn forward_tiled(
    x: &[f32],
    filters: &[f32],
    post: &Epilogue,
    g: &Geometry,
    tiles: Tiling,
) -> Vec<f32> {
    let spreading = Spreading::of(&tiles);
    let (c, k, xi) = (g.in_channels, g.out_channels, tiles.xi());
    // U[ξ], packed once for every band's product at position ξ.
    let u: Vec<Lhs> = (0..xi)
        .map(|at| Lhs::new(plane(filters, at, k, c), tiles.in_batch(g.batch)))
        .collect();
    let image_out = k * g.out_plane();
    let chunk = tiles.images * image_out;
    let scratch = xi * (c + k) * tiles.columns();
    let work = |group, out: &mut [f32], scratch: &mut [f32]| {
        for band in tiles.bands(group, g.batch) {
            let p = band.columns(&tiles);
            let (v, m) = scratch.split_at_mut(xi * c * tiles.columns());
            transform_inputs(x, g, (&tiles, &band, spreading), v);
            for_each_position(m, (xi, k * p), spreading, |at, m| {
                u[at].times(m, position(v, (at, xi), c, p), false, Parallelism::None);
            });
            let out_rows = tiles.m * band.rows.start * g.out_size[1]
                ..(tiles.m * band.rows.end).min(g.out_size[0]) * g.out_size[1];
            let m = &*m;
            let per_image = band.per_image(&tiles);
            maps_by_channel(out, k, g.out_plane())
                .into_par_iter()
                .with_min_len(spreading.min_len(k))
                .enumerate()
                .for_each_init(
                    || PlaneBuffers::new(&tiles),
                    |buf, (channel, mut maps)| {
                        let at = |i: usize| Spread::new(&m[channel * p + i * per_image..], k * p);
                        let rows = band.rows.clone();
                        let larger = &mut buf.larger;
                        by_tile_side!(
                            tiles.m,
                            output_transform(at(0), g, &tiles, rows.clone(), &mut maps, larger),
                            for (i, map) in maps.iter_mut().enumerate() {
                                output_transform(at(i), g, &tiles, rows.clone(), map, buf);
                            }
                        );
                        for map in maps {
                            post.apply_map(&mut map[out_rows.clone()], channel);
                        }
                    },
                );
        }
    };
    match spreading {
        Spreading::Groups => output::par_chunks(g.output_len(), chunk, 1, |n, out| {
            with_scratch(scratch, |s| work(n, out, s))
        }),
        Spreading::Stages => {
            let mut y = vec![0.0; g.output_len()];
            with_scratch(scratch, |s| {
                for (n, out) in y.chunks_mut(chunk).enumerate() {
                    work(n, out, s);
                }
            });
            y
        }
    }
}

/// `dL/dx` (when `want_input`) and `dL/dw` (when `want_weight`) in one pass over the bands,
/// which share each band's transformed output gradient `Ŷ`. `x` is read only for `dL/dw`.
pub fn gradients(
    x: &[f32],
    w: &[f32],
    dy: &[f32],
    g: &Geometry,
    want_input: bool,
    want_weight: bool,
) -> (Option<Vec<f32>>, Option<Vec<f32>>) {
    gradients_tiled(x, w, dy, g, [want_input, want_weight], Tiling::new(g))
}

fn gradients_tiled(
    x: &[f32],
    w: &[f32],
    dy: &[f32],
    g: &Geometry,
    [want_input, want_weight]: [bool; 2],
    tiles: Tiling,
) -> (Option<Vec<f32>>, Option<Vec<f32>>) {
    let (c, k, xi) = (g.in_channels, g.out_channels, tiles.xi());
    let u = want_input.then(|| filter_transform(w, g, &tiles));
    let ut: Option<Vec<Lhs>> = u.as_ref().map(|u| {
        (0..xi)
            .map(|at| Lhs::new(plane(u, at, k, c).t(), tiles.in_batch(g.batch)))
            .collect()
    });
    let image_in = c * g.in_plane();
    let mut dx = vec![0.0; if want_input { g.input_len() } else { 0 }];
    // Each thread's partial dU (empty when the weight gradient is not wanted).
    let partial_du = || vec![0.0; if want_weight { xi * k * c } else { 0 }];
    let spreading = Spreading::of(&tiles);
    // Per band: the transformed output gradient Ŷ, and dV for the input gradient then V for
    // the weight gradient, both overwritten before they are read.
    let scratch = [xi * k * tiles.columns(), xi * c * tiles.columns()];
    let gradient_bands = |group: usize,
                          dx: &mut [f32],
                          du: &mut [f32],
                          yhat: &mut [f32],
                          v: &mut [f32]| {
        for band in tiles.bands(group, g.batch) {
            let p = band.columns(&tiles);
            let band_of = (&tiles, &band, spreading);
            transform_output_grads(dy, g, band_of, yhat);
            let yhat = &*yhat;
            if let Some(ut) = &ut {
                for_each_position(v, (xi, c * p), spreading, |at, dv| {
                    ut[at].times(dv, position(yhat, (at, xi), k, p), false, Parallelism::None);
                });
                let dv = &*v;
                let per_image = band.per_image(&tiles);
                maps_by_channel(dx, c, g.in_plane())
                    .into_par_iter()
                    .with_min_len(spreading.min_len(c))
                    .enumerate()
                    .for_each_init(
                        || PlaneBuffers::new(&tiles),
                        |buf, (channel, mut inputs)| {
                            let at =
                                |i: usize| Spread::new(&dv[channel * p + i * per_image..], c * p);
                            let rows = band.rows.clone();
                            let larger = &mut buf.larger;
                            by_tile_side!(
                                tiles.m,
                                input_scatter(at(0), g, &tiles, rows.clone(), &mut inputs, larger),
                                for (i, input) in inputs.iter_mut().enumerate() {
                                    input_scatter(at(i), g, &tiles, rows.clone(), input, buf);
                                }
                            );
                        },
                    );
            }
            if want_weight {
                transform_inputs(x, g, band_of, v);
                let v = &*v;
                for_each_position(du, (xi, k * c), spreading, |at, du| {
                    let vt = position(v, (at, xi), c, p).t();
                    let yhat = Lhs::new(position(yhat, (at, xi), k, p), c);
                    yhat.times(du, vt, true, Parallelism::None);
                });
            }
        }
    };
    let group = |group: usize, dx: &mut [f32], du: &mut [f32]| {
        with_scratch(scratch[0] + scratch[1], |buf| {
            let (yhat, v) = buf.split_at_mut(scratch[0]);
            gradient_bands(group, dx, du, yhat, v);
        })
    };
    // Each group's slice of dx (empty slices when it is not wanted).
    let chunk = tiles.images * image_in;
    let chunks: Vec<&mut [f32]> = if want_input {
        dx.chunks_mut(chunk).collect()
    } else {
        (0..tiles.groups).map(|_| &mut [][..]).collect()
    };
    let partial_du: Vec<Vec<f32>> = match spreading {
        Spreading::Groups => {
            // At most one fold (and one partial dU) per thread; rayon splits only where both
            // halves keep this many groups, hence rounding down.
            let per_thread = (tiles.groups / rayon::current_num_threads()).max(1);
            chunks
                .into_par_iter()
                .with_min_len(per_thread)
                .enumerate()
                .fold(partial_du, |mut du, (n, dx)| {
                    group(n, dx, &mut du);
                    du
                })
                .collect()
        }
        Spreading::Stages => {
            let mut du = partial_du();
            for (n, dx) in chunks.into_iter().enumerate() {
                group(n, dx, &mut du);
            }
            vec![du]
        }
    };
    let dw = want_weight.then(|| filter_grad(&sum_parts(partial_du), g, &tiles));
    (want_input.then_some(dx), dw)
}

#[cfg(test)]
mod tests {
    use super::super::kernels::{self, Epilogue, Geometry};
    use super::*;
    use crate::ops::test_util::{assert_close_values, avx512_or_skip, values, weights_3x3};

    fn geometry(batch: usize, channels: [usize; 2], size: [usize; 2], pad: [usize; 2]) -> Geometry {
        let out = |axis: usize| size[axis] + 2 * pad[axis] - 2;
        Geometry {
            batch,
            in_channels: channels[0],
            in_size: size,
            out_channels: channels[1],
            kernel: [3, 3],
            stride: [1, 1],
            pad,
            dilation: [1, 1],
            out_size: [out(0), out(1)],
            groups: 1,
        }
    }

    /// Winograd against the im2col kernels (themselves checked against Burn): the output
    /// through a bias + ReLU epilogue, and both gradients; with 2×2, 3×3 and 4×4 tiles.
    fn assert_matches_im2col(g: &Geometry) {
        assert!(covers(g));
        for m in [2, f33::M, f43::M] {
            assert_tiling_matches_im2col(g, Tiling::with_tile(g, m));
        }
    }

    /// The epilogue the tests check through: a bias, then ReLU.
    fn bias_and_relu(bias: &[f32]) -> Epilogue<'_> {
        Epilogue {
            shift: Some(bias),
            relu: true,
            ..Epilogue::default()
        }
    }

    fn assert_tiling_matches_im2col(g: &Geometry, tiles: Tiling) {
        let x = values(g.input_len(), 1);
        let w = values(g.out_channels * g.in_channels * 9, 2);
        let dy = values(g.output_len(), 3);
        let bias = values(g.out_channels, 4);
        let post = bias_and_relu(&bias);
        let grads = |input: bool, weight: bool| {
            let (dx, dw) = gradients_tiled(&x, &w, &dy, g, [input, weight], tiles);
            assert_eq!((dx.is_some(), dw.is_some()), (input, weight));
            dx.or(dw).unwrap_or_default()
        };
        let (dx, dw) = gradients_tiled(&x, &w, &dy, g, [true, true], tiles);
        let (dx_ref, dw_ref) = (
            kernels::dense_input_grad(&w, &dy, g),
            kernels::dense_weight_grad(&x, &dy, g),
        );
        let pairs = [
            (
                forward_tiled(&x, &filter_transform(&w, g, &tiles), &post, g, tiles),
                kernels::dense_forward(&x, &w, &post, g),
                "output",
            ),
            (grads(true, false), dx_ref.clone(), "input grad alone"),
            (grads(false, true), dw_ref.clone(), "weight grad alone"),
            (dx.unwrap_or_default(), dx_ref, "input grad"),
            (dw.unwrap_or_default(), dw_ref, "weight grad"),
        ];
        // F(4×4, 3×3)'s larger transform coefficients (up to 8 and 1/24) cost about a digit.
        let tolerance = if tiles.m == 2 { 1e-5 } else { 1e-4 };
        for (ours, reference, what) in pairs {
            let what = format!("{what}, {}×{} tiles, {g:?}", tiles.m, tiles.m);
            assert_close_values(&ours, &reference, tolerance, &what);
        }
    }

    #[test]
    fn odd_sizes_and_groups_of_images() {
        // Odd sides leave half tiles at the edges; 7 small images fall into groups of
        // several, the last one short.
        assert_matches_im2col(&geometry(7, [5, 6], [5, 7], [1, 1]));
        assert_matches_im2col(&geometry(1, [3, 4], [9, 8], [1, 1]));
    }

    #[test]
    fn groups_share_out_evenly() {
        // 64 images as 10 groups of 7 give two threads 35 and 29; 8 of 8 give 32 each.
        assert_eq!(balanced(64, 7, 2), 8);
        assert_eq!(balanced(64, 8, 2), 8);
        assert_eq!(balanced(64, 32, 2), 32);
        assert_eq!(balanced(7, 4, 2), 4);
        assert_eq!(balanced(1, 1, 2), 1);
        assert_eq!(balanced(10, 3, 4), 3);
    }

    #[test]
    fn valid_and_asymmetric_padding() {
        assert_matches_im2col(&geometry(2, [4, 3], [8, 9], [0, 0]));
        let mut g = geometry(3, [4, 5], [6, 7], [2, 0]);
        g.out_size = [6 + 2 - 2, 7 + 1 - 2]; // padding (2, 0) rows, (0, 1) columns
        assert_matches_im2col(&g);
    }

    #[test]
    fn bands_of_tile_rows() {
        // A large map is cut into bands of tile rows, whose tiles overlap at the bands' edges.
        let g = geometry(2, [32, 32], [88, 87], [1, 1]);
        for m in [2, f33::M, f43::M] {
            let tiles = Tiling::with_tile(&g, m);
            assert!(tiles.band_rows < tiles.rows, "{tiles:?}");
        }
        assert_matches_im2col(&g);
    }

    #[test]
    fn groups_per_thread_and_stages_split_over_threads() {
        // On two threads: batch 1 splits each band's stages (large maps in several bands,
        // small ones in one), and so do batches of few groups; 17 groups (of one image each
        // here) run as whole groups per thread.
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(2)
            .build()
            .expect("thread pool");
        pool.install(|| {
            for (g, spreading) in [
                (geometry(1, [64, 64], [48, 45], [1, 1]), Spreading::Stages),
                (geometry(1, [6, 5], [7, 9], [1, 1]), Spreading::Stages),
                (geometry(5, [6, 5], [7, 9], [1, 1]), Spreading::Stages),
            ] {
                assert!(Spreading::of(&Tiling::new(&g)) == spreading, "{g:?}");
                assert_matches_im2col(&g);
            }
            let g = geometry(17, [6, 5], [7, 9], [1, 1]);
            for m in [2, f33::M, f43::M] {
                let tiles = Tiling {
                    images: 1,
                    groups: 17,
                    ..Tiling::with_tile(&g, m)
                };
                assert!(Spreading::of(&tiles) == Spreading::Groups);
                assert_tiling_matches_im2col(&g, tiles);
            }
        });
    }

    #[cfg(target_arch = "x86_64")]
    #[test]
    fn inference_with_cached_filters() {
        if !avx512_or_skip() {
            return;
        }
        // On two threads, with a bias + ReLU epilogue. Few tiles: 12² maps (F(4×4): 9 tiles
        // an image; at batch 3 in groups of 2 and 1), 6² ones (F(3×3): 4 tiles, four vectors
        // of outputs a block) and a 24² one at batch 1 (36 tiles, which the plain path takes
        // too), output channels not a multiple of 16. Winograd's plain path: at batch 2
        // transforming the filters on each call, at batch 1 from `TRANSFORMED`.
        let pool = rayon::ThreadPoolBuilder::new().num_threads(2).build();
        pool.expect("thread pool").install(|| {
            let plain = [
                geometry(2, [40, 72], [24, 24], [1, 1]),
                geometry(1, [64, 64], [48, 48], [1, 1]),
            ];
            let few = [
                geometry(1, [130, 136], [12, 12], [1, 1]),
                geometry(3, [130, 136], [12, 12], [1, 1]),
                geometry(1, [130, 136], [6, 6], [1, 1]),
                geometry(2, [130, 136], [6, 6], [1, 1]),
                geometry(1, [40, 72], [24, 24], [1, 1]),
            ];
            assert!(plain.iter().all(|g| applies(g) && !few_tiles_apply(g)));
            assert!(few.iter().all(few_tiles_apply));
            for g in plain.into_iter().chain(few) {
                let x = values(g.input_len(), 1);
                let bias = values(g.out_channels, 4);
                let post = bias_and_relu(&bias);
                for seed in [2, 5] {
                    // The second weights have the first's shape: not served its filters.
                    let w = weights_3x3(g.out_channels, g.in_channels, seed);
                    let reference = kernels::dense_forward(&x, crate::ops::f32s(&w), &post, &g);
                    let first = infer(&x, &w, &post, &g);
                    assert_close_values(&first, &reference, 1e-4, &format!("{g:?}"));
                    assert_eq!(first, infer(&x, &w, &post, &g), "from the cache");
                }
            }
        });
    }

    #[cfg(target_arch = "x86_64")]
    #[test]
    fn cached_filters_live_as_long_as_their_weights() {
        if !avx512_or_skip() {
            return;
        }
        // A shape no other test uses, so that tests running alongside do not count.
        let g = geometry(1, [129, 137], [12, 12], [1, 1]);
        let entries = || {
            let shapes = few_tiles::cached_shapes();
            shapes.iter().filter(|&&s| s == [137, 129]).count()
        };
        let x = values(g.input_len(), 1);
        let w = weights_3x3(g.out_channels, g.in_channels, 2);
        let _ = infer(&x, &w, &Epilogue::default(), &g);
        let _ = infer(&x, &w, &Epilogue::default(), &g);
        assert_eq!(entries(), 1);
        let other = weights_3x3(g.out_channels, g.in_channels, 3);
        let _ = infer(&x, &other, &Epilogue::default(), &g);
        assert_eq!(entries(), 2);
        let shared = w.clone();
        drop(w);
        assert_eq!(entries(), 2, "a clone still holds the first weights");
        drop((shared, other));
        assert_eq!(entries(), 0);
    }

    #[test]
    fn chosen_by_channels_and_map_size() {
        let vgg = |c, k, side| pays_off(&geometry(64, [c, k], [side, side], [1, 1]));
        assert!(vgg(64, 64, 48) && vgg(96, 208, 12) && vgg(512, 512, 6));
        assert!(vgg(96, 208, 6) && vgg(128, 128, 6));
        assert!(vgg(32, 64, 12) && vgg(32, 32, 48) && !vgg(32, 64, 10));
        assert!(!vgg(16, 32, 24) && !vgg(96, 96, 6) && !vgg(1, 64, 48));
        let tiles = |batch, side| enough_tiles(&geometry(batch, [64, 64], [side, side], [1, 1]));
        assert!(tiles(1, 48) && tiles(1, 24) && tiles(64, 6) && !tiles(3, 12) && !tiles(1, 12));
        let side = |side| tile_side(&geometry(64, [96, 208], [side, side], [1, 1]));
        assert_eq!(
            (side(24), side(12), side(6), side(4)),
            (f43::M, f43::M, f33::M, 2)
        );
    }
}
