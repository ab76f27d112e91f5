//! The plane transforms of F(m×m, 3×3) for the larger tiles, m = 3 ([`super::f33`]) and
//! m = 4 ([`super::f43`]): `(m + 2)²`-value input tiles, `m` apart, each giving an `m × m`
//! output tile. Which interpolation points (and so which matrices) is the [`Points`] given.
//!
//! Every transform works on all the tiles of one channel in a round at once, the tiles as the
//! vector lanes: a matrix along the rows is a few whole-row passes, and along the columns the
//! rows are split into their `m` column phases first, so that "column k of every tile" is one
//! contiguous run. The tiles of a round's images come one after another, so a 12² map's nine
//! 4×4 tiles are not nine-lane loops but, over 11 images, 99-lane ones.

use std::array;
use std::ops::Range;

use multiversion::multiversion;

use super::super::kernels::Geometry;
use super::{Spread, Tiling};

/// The matrices of one F(m×m, 3×3), `M` = m output columns of a tile, `N` = m + 2 input ones,
/// as sums and differences of whole runs (one run per tile-row position, the tiles as lanes).
pub(super) trait Points<const M: usize, const N: usize> {
    /// `out[i] = Σ_k Bᵀ[i][k]·d[k]`.
    fn bt(d: [&[f32]; N], out: [&mut [f32]; N]);
    /// The adjoint of [`Points::bt`]: `out[a] = Σ_i Bᵀ[i][a]·v[i]`.
    fn b(v: [&[f32]; N], out: [&mut [f32]; N]);
    /// `out[r] = Σ_j Aᵀ[r][j]·m[j]`.
    fn at(m: [&[f32]; N], out: [&mut [f32]; M]);
    /// The adjoint of [`Points::at`]: `out[j] = Σ_r Aᵀ[r][j]·e[r]`.
    fn a(e: [&[f32]; M], out: [&mut [f32]; N]);
    /// `row`'s values by position mod `M`, as exact groups of `M` (as many as the shortest of
    /// `row / M` and the phases).
    fn deinterleave(row: &[f32], phases: [&mut [f32]; M]);
    /// The inverse of [`Points::deinterleave`].
    fn interleave(phases: [&[f32]; M], row: &mut [f32]);
}

/// `K` runs of `len` values, `stride` apart, from `at` in `data`.
#[inline(always)]
pub(super) fn runs<const K: usize>(
    data: &[f32],
    at: usize,
    stride: usize,
    len: usize,
) -> [&[f32]; K] {
    array::from_fn(|k| &data[at + k * stride..][..len])
}

/// The same, mutable (`stride ≥ len`, so the runs do not overlap).
#[inline(always)]
pub(super) fn runs_mut<const K: usize>(
    data: &mut [f32],
    at: usize,
    stride: usize,
    len: usize,
) -> [&mut [f32]; K] {
    let mut rest = &mut data[at..];
    array::from_fn(|_| {
        let step = stride.min(rest.len());
        let (run, after) = std::mem::take(&mut rest).split_at_mut(step);
        rest = after;
        &mut run[..len]
    })
}

/// Tiles a row below which [`tile_columns`] gathers value by value: on 12² and 6² maps (three
/// and two tiles) splitting into phases costs more to set up than it saves.
const SHORT_ROW_TILES: usize = 4;

/// `out += values`.
#[inline(always)]
fn add(out: &mut [f32], values: &[f32]) {
    out.iter_mut().zip(values).for_each(|(o, v)| *o += v);
}

/// `row` split into its `M` column phases, `stride` apart in `phases`, from `at` on: phase
/// `p` gets `row[p]`, `row[p + M]`, ….
#[inline(always)]
fn split_columns<const M: usize, const N: usize, T: Points<M, N>>(
    row: &[f32],
    phases: &mut [f32],
    stride: usize,
    at: usize,
) {
    let whole = row.len() / M;
    let runs = runs_mut::<M>(phases, at, stride, row.len().div_ceil(M));
    T::deinterleave(&row[..M * whole], runs);
    for (p, &v) in row[M * whole..].iter().enumerate() {
        phases[p * stride + at + whole] = v;
    }
}

/// The adjoint of [`split_columns`] (from `at` = 0): `row[x] = phases[(x % M)·stride + x / M]`.
#[inline(always)]
fn merge_columns<const M: usize, const N: usize, T: Points<M, N>>(
    phases: &[f32],
    stride: usize,
    row: &mut [f32],
) {
    let whole = row.len() / M;
    let (body, rest) = row.split_at_mut(M * whole);
    T::interleave(runs::<M>(phases, 0, stride, whole), body);
    for (p, v) in rest.iter_mut().enumerate() {
        *v = phases[p * stride + whole];
    }
}

/// Column `k` of each of the `cols` input tiles of an `M·cols + 2`-wide row, `row[M·t + k]`,
/// as run `k` (`stride` apart) of `columns` from `at` on. Columns `M` and `M + 1` of a tile
/// are columns 0 and 1 of the next, so each is the same run shifted by one tile, and the last
/// tile's from the row's last two values.
#[inline(always)]
fn tile_columns<const M: usize, const N: usize, T: Points<M, N>>(
    row: &[f32],
    columns: &mut [f32],
    (stride, at): (usize, usize),
    cols: usize,
) {
    if cols < SHORT_ROW_TILES {
        let row = &row[..M * cols + 2];
        for k in 0..N {
            let run = &mut columns[k * stride + at..][..cols];
            for (t, v) in run.iter_mut().enumerate() {
                *v = row[M * t + k];
            }
        }
        return;
    }
    let (first, rest) = columns.split_at_mut(M * stride);
    let mut phases = runs_mut::<M>(first, at, stride, cols);
    T::deinterleave(&row[..M * cols], phases.each_mut().map(|p| &mut **p));
    let last = cols - 1;
    for (j, shifted) in runs_mut::<2>(rest, at, stride, cols)
        .into_iter()
        .enumerate()
    {
        shifted[..last].copy_from_slice(&phases[j][1..]);
        shifted[last] = row[M * cols + j];
    }
}

/// The adjoint of [`tile_columns`] (from `at` = 0), consuming `columns`: `row[x]` sums every
/// tile column that read it.
#[inline(always)]
fn merge_tile_columns<const M: usize, const N: usize, T: Points<M, N>>(
    columns: &mut [f32],
    stride: usize,
    cols: usize,
    row: &mut [f32],
) {
    let (first, rest) = columns.split_at_mut(M * stride);
    let phases = runs_mut::<M>(first, 0, stride, cols);
    let last = cols - 1;
    let (body, tail) = row.split_at_mut(M * cols);
    for (j, shifted) in runs_mut::<2>(rest, 0, stride, cols).into_iter().enumerate() {
        tail[j] = shifted[last];
        add(&mut phases[j][1..], &shifted[..last]);
    }
    T::interleave(phases.each_ref().map(|p| &**p), body);
}

/// Scratch values one channel's transforms need (all the images of a group's band at once).
pub(super) fn buffer_len(tiles: &Tiling) -> usize {
    let (m, n_side) = (tiles.m, tiles.m + 2);
    let (cols, width) = (tiles.cols, m * tiles.cols + 2);
    let n = tiles.images * tiles.band_rows * cols;
    let input = (m * tiles.band_rows + 2) * width + 2 * n_side * n_side * n;
    let scatter = 2 * n_side * n_side * n + width;
    input.max(scatter).max((n_side * m + m * m) * n)
}

/// Where tile row `local` of image `image` starts among the tiles of a band: images one after
/// another, as [`super::transform_planes`] lays them out.
#[inline(always)]
fn first_tile(image: usize, local: usize, band: &Range<usize>, cols: usize) -> usize {
    (image * band.len() + local) * cols
}

/// `V = Bᵀ·d·B` for every `N × N` tile `d` of one channel's input planes, one per image
/// (zeros outside them), tile rows `band`.
///
/// The `N` columns of every tile of the band, in all its images, are `N` runs for each of a
/// tile's `N` rows (see [`tile_columns`]), so that Bᵀ down the tiles and then along them are
/// `2·N` passes over all the tiles however small the maps. (Bᵀ down a tile row's padded rows
/// first, before splitting them, ran over rows of 14 values on 12² maps: scalar code.)
#[multiversion(targets = "simd")]
pub(super) fn input_transform<const M: usize, const N: usize, T: Points<M, N>>(
    planes: &[&[f32]],
    g: &Geometry,
    tiles: &Tiling,
    band: Range<usize>,
    mut v: Spread<&mut [f32]>,
    buf: &mut [f32],
) {
    let [in_h, in_w] = g.in_size;
    let [pad_y, pad_x] = g.pad;
    let cols = tiles.cols;
    let (width, height) = (M * cols + 2, M * band.len() + 2);
    let n = planes.len() * band.len() * cols;
    let (padded, rest) = buf.split_at_mut(height * width);
    let (columns, rest) = rest.split_at_mut(N * N * n);
    let down = &mut rest[..N * N * n];
    let top = M * band.start;
    for (image, plane) in planes.iter().enumerate() {
        padded.fill(0.0);
        for (y, line) in plane.chunks_exact(in_w).enumerate().take(in_h) {
            let Some(row) = (y + pad_y).checked_sub(top).filter(|&r| r < height) else {
                continue;
            };
            padded[row * width + pad_x..][..in_w].copy_from_slice(line);
        }
        // Row a of every tile of a tile row, split into the tile columns: columns[a][k].
        for local in 0..band.len() {
            let at = first_tile(image, local, &band, cols);
            let rows = padded[M * local * width..].chunks_exact(width).take(N);
            for (a, row) in rows.enumerate() {
                tile_columns::<M, N, T>(row, &mut columns[a * N * n..], (n, at), cols);
            }
        }
    }
    // Bᵀ down each tile column k: down[i][k].
    for k in 0..N {
        T::bt(
            runs(columns, k * n, N * n, n),
            runs_mut(down, k * n, N * n, n),
        );
    }
    // Bᵀ along the rows.
    for i in 0..N {
        let mut out = v.rows(N * i, 0, n);
        T::bt(runs(down, i * N * n, n, n), array::from_fn(|_| out.next()));
    }
}

/// `dx += Σ B·dV·Bᵀ` over the (overlapping) tiles of one channel's input planes in tile rows
/// `band`: the adjoint of [`input_transform`].
#[multiversion(targets = "simd")]
pub(super) fn input_scatter<const M: usize, const N: usize, T: Points<M, N>>(
    dv: Spread<&[f32]>,
    g: &Geometry,
    tiles: &Tiling,
    band: Range<usize>,
    planes: &mut [&mut [f32]],
    buf: &mut [f32],
) {
    let [in_h, in_w] = g.in_size;
    let [pad_y, pad_x] = g.pad;
    let cols = tiles.cols;
    let n = planes.len() * band.len() * cols;
    let (h, rest) = buf.split_at_mut(N * N * n);
    let (columns, rest) = rest.split_at_mut(N * N * n);
    let line = &mut rest[..M * cols + 2];
    // h[i][b]: B along the tile rows.
    for i in 0..N {
        let row = runs(dv.data, N * i * dv.xi_stride, dv.xi_stride, n);
        T::b(row, runs_mut(h, N * i * n, n, n));
    }
    // B down tile column k gives row a of every tile at that column: columns[a][k].
    for k in 0..N {
        T::b(runs(h, k * n, N * n, n), runs_mut(columns, k * n, N * n, n));
    }
    // Padded row M·ty + a sums row a's tile columns.
    for (image, plane) in planes.iter_mut().enumerate() {
        for (local, ty) in band.clone().enumerate() {
            let at = first_tile(image, local, &band, cols);
            for a in 0..N {
                let Some(y) = (M * ty + a).checked_sub(pad_y).filter(|&y| y < in_h) else {
                    continue;
                };
                merge_tile_columns::<M, N, T>(&mut columns[a * N * n + at..], n, cols, line);
                let from = line.get(pad_x..).unwrap_or_default();
                add(&mut plane[y * in_w..(y + 1) * in_w], from);
            }
        }
    }
}

/// `y = Aᵀ·M·A` for every tile of one channel's output maps, one per image, in tile rows
/// `band`.
#[multiversion(targets = "simd")]
pub(super) fn output_transform<const M: usize, const N: usize, T: Points<M, N>>(
    m: Spread<&[f32]>,
    g: &Geometry,
    tiles: &Tiling,
    band: Range<usize>,
    maps: &mut [&mut [f32]],
    buf: &mut [f32],
) {
    let [out_h, out_w] = g.out_size;
    let cols = tiles.cols;
    let n = maps.len() * band.len() * cols;
    // t[i][r]: Aᵀ along the tile rows; o[s][r]: then down the columns.
    let (t, rest) = buf.split_at_mut(N * M * n);
    let o = &mut rest[..M * M * n];
    for i in 0..N {
        let row = runs(m.data, N * i * m.xi_stride, m.xi_stride, n);
        T::at(row, runs_mut(t, M * i * n, n, n));
    }
    for r in 0..M {
        T::at(runs(t, r * n, M * n, n), runs_mut(o, r * n, M * n, n));
    }
    // o[s][r] of a tile: output row M·ty + s, column M·tx + r.
    for (image, map) in maps.iter_mut().enumerate() {
        for (local, ty) in band.clone().enumerate() {
            let at = first_tile(image, local, &band, cols);
            for s in 0..M {
                let y = M * ty + s;
                if y >= out_h {
                    break;
                }
                let phases = &o[M * s * n + at..];
                merge_columns::<M, N, T>(phases, n, &mut map[y * out_w..(y + 1) * out_w]);
            }
        }
    }
}

/// `Ŷ = A·dy·Aᵀ` for every `M × M` tile of one channel's output-gradient maps (zeros outside
/// them): the adjoint of [`output_transform`].
#[multiversion(targets = "simd")]
pub(super) fn output_grad_transform<const M: usize, const N: usize, T: Points<M, N>>(
    maps: &[&[f32]],
    g: &Geometry,
    tiles: &Tiling,
    band: Range<usize>,
    mut yhat: Spread<&mut [f32]>,
    buf: &mut [f32],
) {
    let [out_h, out_w] = g.out_size;
    let cols = tiles.cols;
    let n = maps.len() * band.len() * cols;
    // e[s][r]: row s of every tile, column phase r; u[i][r]: A down the columns.
    let (e, rest) = buf.split_at_mut(M * M * n);
    let u = &mut rest[..N * M * n];
    e.fill(0.0);
    for (image, map) in maps.iter().enumerate() {
        for (local, ty) in band.clone().enumerate() {
            let at = first_tile(image, local, &band, cols);
            for s in 0..M {
                let y = M * ty + s;
                if let Some(row) = map.get(y * out_w..(y + 1) * out_w).filter(|_| y < out_h) {
                    split_columns::<M, N, T>(row, &mut e[M * s * n..], n, at);
                }
            }
        }
    }
    for r in 0..M {
        T::a(runs(e, r * n, M * n, n), runs_mut(u, r * n, M * n, n));
    }
    let mut out = yhat.rows(0, 0, n);
    for i in 0..N {
        T::a(runs(u, M * i * n, n, n), array::from_fn(|_| out.next()));
    }
}

/// Checks a [`Points`] against its matrices: each sum and difference, and that interleaving
/// undoes deinterleaving.
#[cfg(test)]
pub(super) fn assert_points_are<const M: usize, const N: usize, T: Points<M, N>>(
    bt: &[[f32; N]; N],
    at: &[[f32; N]; M],
) {
    use crate::ops::test_util::{assert_close_values, values};

    /// `Σ_k matrix[r][k]·inputs[k]` (or the transpose's), element by element.
    fn reference<const R: usize, const C: usize>(
        matrix: &[[f32; C]; R],
        transposed: bool,
        inputs: &[Vec<f32>],
    ) -> Vec<f32> {
        let (rows, cols) = if transposed { (C, R) } else { (R, C) };
        let coefficient = |r: usize, k: usize| {
            if transposed {
                matrix[k][r]
            } else {
                matrix[r][k]
            }
        };
        let len = inputs[0].len();
        (0..rows)
            .flat_map(|r| (0..len).map(move |x| (r, x)))
            .map(|(r, x)| (0..cols).map(|k| coefficient(r, k) * inputs[k][x]).sum())
            .collect()
    }

    let len = 19;
    let inputs: Vec<Vec<f32>> = (0..N as u64).map(|seed| values(len, seed)).collect();
    let wide: [&[f32]; N] = array::from_fn(|k| &inputs[k][..]);
    let narrow: [&[f32]; M] = array::from_fn(|k| &inputs[k][..]);
    let mut out = vec![0.0; N * len];
    T::bt(wide, runs_mut(&mut out, 0, len, len));
    assert_close_values(&out, &reference(bt, false, &inputs), 1e-6, "Bᵀ");
    T::b(wide, runs_mut(&mut out, 0, len, len));
    assert_close_values(&out, &reference(bt, true, &inputs), 1e-6, "B");
    T::at(wide, runs_mut(&mut out, 0, len, len));
    assert_close_values(&out[..M * len], &reference(at, false, &inputs), 1e-6, "Aᵀ");
    T::a(narrow, runs_mut(&mut out, 0, len, len));
    assert_close_values(&out, &reference(at, true, &inputs[..M]), 1e-6, "A");

    let row = values(M * len, 5);
    let mut phases = vec![0.0; M * len];
    T::deinterleave(&row, runs_mut(&mut phases, 0, len, len));
    assert_eq!(
        phases[len], row[1],
        "phase 1 starts with the row's second value"
    );
    let mut back = vec![0.0; M * len];
    T::interleave(runs(&phases, 0, len, len), &mut back);
    assert_eq!(back, row, "interleave undoes deinterleave");
}
