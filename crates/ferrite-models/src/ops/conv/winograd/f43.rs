//! The transforms of F(4×4, 3×3): 6×6 input tiles, 4 apart, give 4×4 output tiles for 36
//! multiplies instead of 144 (F(2×2, 3×3): 16 for 36), with the interpolation points 0, ±1,
//! ±2 and ∞ of Lavin & Gray:
//!
//! ```text
//! Bᵀ = ⎡4  0 −5  0  1  0⎤   G = ⎡ 1/4     0     0 ⎤   Aᵀ = ⎡1  1  1  1  1  0⎤
//!      ⎢0 −4 −4  1  1  0⎥       ⎢−1/6  −1/6  −1/6 ⎥        ⎢0  1 −1  2 −2  0⎥
//!      ⎢0  4 −4 −1  1  0⎥       ⎢−1/6   1/6  −1/6 ⎥        ⎢0  1  1  4  4  0⎥
//!      ⎢0 −2 −1  2  1  0⎥       ⎢1/24  1/12   1/6 ⎥        ⎣0  1 −1  8 −8  1⎦
//!      ⎢0  2 −1 −2  1  0⎥       ⎢1/24 −1/12   1/6 ⎥
//!      ⎣0  4  0 −5  0  1⎦       ⎣   0     0     1 ⎦
//! ```
//!
//! Every transform works on one tile row at a time with the tiles as the vector lanes: a
//! matrix along the rows is a few whole-row passes, and along the columns the rows are split
//! into their four column phases first, so that "column k of every tile" is one contiguous run.

use std::array;
use std::ops::Range;

use multiversion::multiversion;

use super::super::kernels::Geometry;
use super::{Spread, Tiling};

/// Output tile side and input tile side.
pub(super) const M: usize = 4;
const N: usize = M + 2;

pub(super) const G: [[f32; 3]; N] = [
    [0.25, 0.0, 0.0],
    [-1.0 / 6.0, -1.0 / 6.0, -1.0 / 6.0],
    [-1.0 / 6.0, 1.0 / 6.0, -1.0 / 6.0],
    [1.0 / 24.0, 1.0 / 12.0, 1.0 / 6.0],
    [1.0 / 24.0, -1.0 / 12.0, 1.0 / 6.0],
    [0.0, 0.0, 1.0],
];

/// `out[i] = Σ_k Bᵀ[i][k]·d[k]`, element by element (the sums and differences of Bᵀ's rows).
#[inline(always)]
fn bt(d: [&[f32]; N], out: [&mut [f32]; N]) {
    let [d0, d1, d2, d3, d4, d5] = d;
    let [o0, o1, o2, o3, o4, o5] = out;
    bt_rows(d0, d1, d2, d3, d4, d5, o0, o1, o2, o3, o4, o5);
}

/// [`bt`] on separate slices: as function arguments they are known not to overlap, so the
/// loop vectorises without run-time overlap checks (which it failed as an array of slices).
#[allow(clippy::too_many_arguments)]
#[inline(always)]
fn bt_rows(
    d0: &[f32],
    d1: &[f32],
    d2: &[f32],
    d3: &[f32],
    d4: &[f32],
    d5: &[f32],
    o0: &mut [f32],
    o1: &mut [f32],
    o2: &mut [f32],
    o3: &mut [f32],
    o4: &mut [f32],
    o5: &mut [f32],
) {
    let len = o0.len();
    let d0 = &d0[..len];
    let d1 = &d1[..len];
    let d2 = &d2[..len];
    let d3 = &d3[..len];
    let d4 = &d4[..len];
    let d5 = &d5[..len];
    let o0 = &mut o0[..len];
    let o1 = &mut o1[..len];
    let o2 = &mut o2[..len];
    let o3 = &mut o3[..len];
    let o4 = &mut o4[..len];
    let o5 = &mut o5[..len];
    for x in 0..len {
        let (p, q) = (d4[x] - 4.0 * d2[x], d3[x] - 4.0 * d1[x]);
        let (s, t) = (d4[x] - d2[x], 2.0 * (d3[x] - d1[x]));
        o0[x] = 4.0 * d0[x] - 5.0 * d2[x] + d4[x];
        o1[x] = p + q;
        o2[x] = p - q;
        o3[x] = s + t;
        o4[x] = s - t;
        o5[x] = 4.0 * d1[x] - 5.0 * d3[x] + d5[x];
    }
}

/// The adjoint of [`bt`]: `out[a] = Σ_i Bᵀ[i][a]·v[i]`.
#[inline(always)]
fn b(v: [&[f32]; N], out: [&mut [f32]; N]) {
    let [v0, v1, v2, v3, v4, v5] = v;
    let [o0, o1, o2, o3, o4, o5] = out;
    b_rows(v0, v1, v2, v3, v4, v5, o0, o1, o2, o3, o4, o5);
}

/// [`b`] on separate slices: as function arguments they are known not to overlap, so the
/// loop vectorises without run-time overlap checks (which it failed as an array of slices).
#[allow(clippy::too_many_arguments)]
#[inline(always)]
fn b_rows(
    v0: &[f32],
    v1: &[f32],
    v2: &[f32],
    v3: &[f32],
    v4: &[f32],
    v5: &[f32],
    o0: &mut [f32],
    o1: &mut [f32],
    o2: &mut [f32],
    o3: &mut [f32],
    o4: &mut [f32],
    o5: &mut [f32],
) {
    let len = o0.len();
    let v0 = &v0[..len];
    let v1 = &v1[..len];
    let v2 = &v2[..len];
    let v3 = &v3[..len];
    let v4 = &v4[..len];
    let v5 = &v5[..len];
    let o0 = &mut o0[..len];
    let o1 = &mut o1[..len];
    let o2 = &mut o2[..len];
    let o3 = &mut o3[..len];
    let o4 = &mut o4[..len];
    let o5 = &mut o5[..len];
    for x in 0..len {
        let (p, q) = (v1[x] + v2[x], v3[x] + v4[x]);
        let (r, s) = (v2[x] - v1[x], v3[x] - v4[x]);
        o0[x] = 4.0 * v0[x];
        o1[x] = 4.0 * (r + v5[x]) - 2.0 * s;
        o2[x] = -5.0 * v0[x] - 4.0 * p - q;
        o3[x] = 2.0 * s - r - 5.0 * v5[x];
        o4[x] = v0[x] + p + q;
        o5[x] = v5[x];
    }
}

/// `out[r] = Σ_j Aᵀ[r][j]·m[j]`.
#[inline(always)]
fn at(m: [&[f32]; N], out: [&mut [f32]; M]) {
    let [m0, m1, m2, m3, m4, m5] = m;
    let [o0, o1, o2, o3] = out;
    at_rows(m0, m1, m2, m3, m4, m5, o0, o1, o2, o3);
}

/// [`at`] on separate slices: as function arguments they are known not to overlap, so the
/// loop vectorises without run-time overlap checks (which it failed as an array of slices).
#[allow(clippy::too_many_arguments)]
#[inline(always)]
fn at_rows(
    m0: &[f32],
    m1: &[f32],
    m2: &[f32],
    m3: &[f32],
    m4: &[f32],
    m5: &[f32],
    o0: &mut [f32],
    o1: &mut [f32],
    o2: &mut [f32],
    o3: &mut [f32],
) {
    let len = o0.len();
    let m0 = &m0[..len];
    let m1 = &m1[..len];
    let m2 = &m2[..len];
    let m3 = &m3[..len];
    let m4 = &m4[..len];
    let m5 = &m5[..len];
    let o0 = &mut o0[..len];
    let o1 = &mut o1[..len];
    let o2 = &mut o2[..len];
    let o3 = &mut o3[..len];
    for x in 0..len {
        let (p, q) = (m1[x] + m2[x], m3[x] + m4[x]);
        let (r, s) = (m1[x] - m2[x], m3[x] - m4[x]);
        o0[x] = m0[x] + p + q;
        o1[x] = r + 2.0 * s;
        o2[x] = p + 4.0 * q;
        o3[x] = r + 8.0 * s + m5[x];
    }
}

/// The adjoint of [`at`]: `out[j] = Σ_r Aᵀ[r][j]·e[r]`.
#[inline(always)]
fn a(e: [&[f32]; M], out: [&mut [f32]; N]) {
    let [e0, e1, e2, e3] = e;
    let [o0, o1, o2, o3, o4, o5] = out;
    a_rows(e0, e1, e2, e3, o0, o1, o2, o3, o4, o5);
}

/// [`a`] on separate slices: as function arguments they are known not to overlap, so the
/// loop vectorises without run-time overlap checks (which it failed as an array of slices).
#[allow(clippy::too_many_arguments)]
#[inline(always)]
fn a_rows(
    e0: &[f32],
    e1: &[f32],
    e2: &[f32],
    e3: &[f32],
    o0: &mut [f32],
    o1: &mut [f32],
    o2: &mut [f32],
    o3: &mut [f32],
    o4: &mut [f32],
    o5: &mut [f32],
) {
    let len = o0.len();
    let e0 = &e0[..len];
    let e1 = &e1[..len];
    let e2 = &e2[..len];
    let e3 = &e3[..len];
    let o0 = &mut o0[..len];
    let o1 = &mut o1[..len];
    let o2 = &mut o2[..len];
    let o3 = &mut o3[..len];
    let o4 = &mut o4[..len];
    let o5 = &mut o5[..len];
    for x in 0..len {
        let (p, q) = (e0[x] + e2[x], e1[x] + e3[x]);
        let (r, s) = (e0[x] + 4.0 * e2[x], 2.0 * e1[x] + 8.0 * e3[x]);
        o0[x] = e0[x];
        o1[x] = p + q;
        o2[x] = p - q;
        o3[x] = r + s;
        o4[x] = r - s;
        o5[x] = e3[x];
    }
}

/// `K` runs of `len` values, `stride` apart, from `at` in `data`.
#[inline(always)]
fn runs<const K: usize>(data: &[f32], at: usize, stride: usize, len: usize) -> [&[f32]; K] {
    array::from_fn(|k| &data[at + k * stride..][..len])
}

/// The same, mutable (`stride ≥ len`, so the runs do not overlap).
#[inline(always)]
fn runs_mut<const K: usize>(
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

/// `out += values`.
#[inline(always)]
fn add(out: &mut [f32], values: &[f32]) {
    out.iter_mut().zip(values).for_each(|(o, v)| *o += v);
}

/// `row` split into its four column phases, `stride` apart in `phases`, from `at` on: phase
/// `p` gets `row[p]`, `row[p + 4]`, ….
#[inline(always)]
fn split_columns(row: &[f32], phases: &mut [f32], stride: usize, at: usize) {
    let whole = row.len() / M;
    let [q0, q1, q2, q3] = runs_mut(phases, at, stride, row.len().div_ceil(M));
    deinterleave4(&row[..M * whole], q0, q1, q2, q3);
    for (p, &v) in row[M * whole..].iter().enumerate() {
        phases[p * stride + at + whole] = v;
    }
}

/// `row`'s values by position mod 4, as exact quadruples (a loop that vectorises).
#[inline(always)]
fn deinterleave4(row: &[f32], q0: &mut [f32], q1: &mut [f32], q2: &mut [f32], q3: &mut [f32]) {
    let quads = row.chunks_exact(M);
    for ((((quad, a), b), c), d) in quads.zip(q0).zip(q1).zip(q2).zip(q3) {
        (*a, *b, *c, *d) = (quad[0], quad[1], quad[2], quad[3]);
    }
}

/// Column `k` of each of the `cols` input tiles of a `4·cols + 2`-wide row, `row[4t + k]`,
/// as run `k` (`stride` apart) of `columns` from `at` on. Columns 4 and 5 of a tile are
/// columns 0 and 1 of the next, so each is the same run shifted by one tile, and the last
/// tile's from the row's last two values.
#[inline(always)]
fn tile_columns(row: &[f32], columns: &mut [f32], stride: usize, at: usize, cols: usize) {
    let [c0, c1, c2, c3, c4, c5] = runs_mut(columns, at, stride, cols);
    deinterleave4(&row[..M * cols], c0, c1, c2, c3);
    let last = cols - 1;
    c4[..last].copy_from_slice(&c0[1..]);
    c5[..last].copy_from_slice(&c1[1..]);
    (c4[last], c5[last]) = (row[M * cols], row[M * cols + 1]);
}

/// The adjoint of [`tile_columns`] (from `at` = 0), consuming `columns`: `row[x]` sums every
/// tile column that read it.
#[inline(always)]
fn merge_tile_columns(columns: &mut [f32], stride: usize, cols: usize, row: &mut [f32]) {
    let [c0, c1, c2, c3, c4, c5] = runs_mut(columns, 0, stride, cols);
    let last = cols - 1;
    let (quads, tail) = row.split_at_mut(M * cols);
    tail[..2].copy_from_slice(&[c4[last], c5[last]]);
    add(&mut c0[1..], &c4[..last]);
    add(&mut c1[1..], &c5[..last]);
    interleave4(c0, c1, c2, c3, quads);
}

/// The adjoint of [`split_columns`] (from `at` = 0): `row[x] = phases[(x % 4)·stride + x / 4]`.
#[inline(always)]
fn merge_columns(phases: &[f32], stride: usize, row: &mut [f32]) {
    let whole = row.len() / M;
    let [q0, q1, q2, q3] = runs(phases, 0, stride, whole);
    let (quads, rest) = row.split_at_mut(M * whole);
    interleave4(q0, q1, q2, q3, quads);
    for (p, v) in rest.iter_mut().enumerate() {
        *v = phases[p * stride + whole];
    }
}

/// The inverse of [`deinterleave4`].
#[inline(always)]
fn interleave4(q0: &[f32], q1: &[f32], q2: &[f32], q3: &[f32], row: &mut [f32]) {
    let quads = row.chunks_exact_mut(M);
    for ((((quad, a), b), c), d) in quads.zip(q0).zip(q1).zip(q2).zip(q3) {
        quad.copy_from_slice(&[*a, *b, *c, *d]);
    }
}

/// Scratch values one channel's transforms need (all the images of a group's band at once).
pub(super) fn buffer_len(tiles: &Tiling) -> usize {
    let (cols, width) = (tiles.cols, M * tiles.cols + 2);
    let n = tiles.images * tiles.band_rows * cols;
    let input = (M * tiles.band_rows + 2) * width + N * width + N * N * n;
    let scatter = 2 * N * N * n + width;
    input.max(scatter).max((N * M + M * M) * n)
}

/// Where tile row `local` of image `image` starts among the `n` tiles of a band: images one
/// after another, as [`super::transform_planes`] lays them out.
#[inline(always)]
fn first_tile(image: usize, local: usize, band: &Range<usize>, cols: usize) -> usize {
    (image * band.len() + local) * cols
}

/// `V = Bᵀ·d·B` for every 6×6 tile `d` of one channel's input planes, one per image (zeros
/// outside them), tile rows `band`.
///
/// The six columns of every tile of the band, in all its images, are six runs (see
/// [`tile_columns`]), so that Bᵀ along the rows is six passes over all the tiles however small
/// the maps: a 12² map has nine tiles, 64 images a few hundred.
#[multiversion(targets = "simd")]
pub(super) fn input_transform(
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
    let (rows, columns) = rest.split_at_mut(N * width);
    let columns = &mut columns[..N * N * n];
    let top = M * band.start;
    for (image, plane) in planes.iter().enumerate() {
        padded.fill(0.0);
        for (y, line) in plane.chunks_exact(in_w).enumerate().take(in_h) {
            let Some(row) = (y + pad_y).checked_sub(top).filter(|&r| r < height) else {
                continue;
            };
            padded[row * width + pad_x..][..in_w].copy_from_slice(line);
        }
        // Bᵀ down each tile row's six padded rows; every result row i into the tile columns
        // columns[i][k].
        for local in 0..band.len() {
            bt(
                runs(padded, M * local * width, width, width),
                runs_mut(rows, 0, width, width),
            );
            let at = first_tile(image, local, &band, cols);
            for (i, row) in rows.chunks_exact(width).enumerate() {
                tile_columns(row, &mut columns[i * N * n..], n, at, cols);
            }
        }
    }
    // Bᵀ along the rows.
    for i in 0..N {
        let mut out = v.rows(N * i, 0, n);
        bt(
            runs(columns, i * N * n, n, n),
            array::from_fn(|_| out.next()),
        );
    }
}

/// `dx += Σ B·dV·Bᵀ` over the (overlapping) tiles of one channel's input planes in tile rows
/// `band`: the adjoint of [`input_transform`].
#[multiversion(targets = "simd")]
pub(super) fn input_scatter(
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
        b(row, runs_mut(h, N * i * n, n, n));
    }
    // B down tile column k gives row a of every tile at that column: columns[a][k].
    for k in 0..N {
        b(runs(h, k * n, N * n, n), runs_mut(columns, k * n, N * n, n));
    }
    // Padded row 4·ty + a sums row a's tile columns.
    for (image, plane) in planes.iter_mut().enumerate() {
        for (local, ty) in band.clone().enumerate() {
            let at = first_tile(image, local, &band, cols);
            for a in 0..N {
                let Some(y) = (M * ty + a).checked_sub(pad_y).filter(|&y| y < in_h) else {
                    continue;
                };
                merge_tile_columns(&mut columns[a * N * n + at..], n, cols, line);
                let from = line.get(pad_x..).unwrap_or_default();
                add(&mut plane[y * in_w..(y + 1) * in_w], from);
            }
        }
    }
}

/// `y = Aᵀ·M·A` for every tile of one channel's output maps, one per image, in tile rows
/// `band`.
#[multiversion(targets = "simd")]
pub(super) fn output_transform(
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
        at(row, runs_mut(t, M * i * n, n, n));
    }
    for r in 0..M {
        at(runs(t, r * n, M * n, n), runs_mut(o, r * n, M * n, n));
    }
    // o[s][r] of a tile: output row 4·ty + s, column 4·tx + r.
    for (image, map) in maps.iter_mut().enumerate() {
        for (local, ty) in band.clone().enumerate() {
            let at = first_tile(image, local, &band, cols);
            for s in 0..M {
                let y = M * ty + s;
                if y >= out_h {
                    break;
                }
                let phases = &o[M * s * n + at..];
                merge_columns(phases, n, &mut map[y * out_w..(y + 1) * out_w]);
            }
        }
    }
}

/// `Ŷ = A·dy·Aᵀ` for every 4×4 tile of one channel's output-gradient maps (zeros outside
/// them): the adjoint of [`output_transform`].
#[multiversion(targets = "simd")]
pub(super) fn output_grad_transform(
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
                    split_columns(row, &mut e[M * s * n..], n, at);
                }
            }
        }
    }
    for r in 0..M {
        a(runs(e, r * n, M * n, n), runs_mut(u, r * n, M * n, n));
    }
    let mut out = yhat.rows(0, 0, n);
    for i in 0..N {
        a(runs(u, M * i * n, n, n), array::from_fn(|_| out.next()));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ops::test_util::{assert_close_values, values};

    const BT: [[f32; N]; N] = [
        [4.0, 0.0, -5.0, 0.0, 1.0, 0.0],
        [0.0, -4.0, -4.0, 1.0, 1.0, 0.0],
        [0.0, 4.0, -4.0, -1.0, 1.0, 0.0],
        [0.0, -2.0, -1.0, 2.0, 1.0, 0.0],
        [0.0, 2.0, -1.0, -2.0, 1.0, 0.0],
        [0.0, 4.0, 0.0, -5.0, 0.0, 1.0],
    ];

    const AT: [[f32; N]; M] = [
        [1.0, 1.0, 1.0, 1.0, 1.0, 0.0],
        [0.0, 1.0, -1.0, 2.0, -2.0, 0.0],
        [0.0, 1.0, 1.0, 4.0, 4.0, 0.0],
        [0.0, 1.0, -1.0, 8.0, -8.0, 1.0],
    ];

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

    #[test]
    fn sums_and_differences_are_the_matrices() {
        let len = 19;
        let inputs: Vec<Vec<f32>> = (0..N as u64).map(|seed| values(len, seed)).collect();
        let mut out = vec![0.0; N * len];
        fn six(out: &mut [f32], len: usize) -> [&mut [f32]; N] {
            runs_mut(out, 0, len, len)
        }
        let six_in: [&[f32]; N] = array::from_fn(|k| &inputs[k][..]);
        let four_in: [&[f32]; M] = array::from_fn(|k| &inputs[k][..]);
        bt(six_in, six(&mut out, len));
        assert_close_values(&out, &reference(&BT, false, &inputs), 1e-6, "Bᵀ");
        b(six_in, six(&mut out, len));
        assert_close_values(&out, &reference(&BT, true, &inputs), 1e-6, "B");
        at(six_in, runs_mut(&mut out, 0, len, len));
        let four = &out[..M * len];
        assert_close_values(four, &reference(&AT, false, &inputs), 1e-6, "Aᵀ");
        a(four_in, six(&mut out, len));
        assert_close_values(&out, &reference(&AT, true, &inputs[..M]), 1e-6, "A");
    }
}
