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
//! The plane transforms that use them are in [`super::transforms`].

use super::transforms::Points;

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

/// F(4×4, 3×3)'s matrices.
pub(super) struct F43;

impl Points<M, N> for F43 {
    #[inline(always)]
    fn bt(d: [&[f32]; N], out: [&mut [f32]; N]) {
        let [d0, d1, d2, d3, d4, d5] = d;
        let [o0, o1, o2, o3, o4, o5] = out;
        bt_rows(d0, d1, d2, d3, d4, d5, o0, o1, o2, o3, o4, o5);
    }

    #[inline(always)]
    fn b(v: [&[f32]; N], out: [&mut [f32]; N]) {
        let [v0, v1, v2, v3, v4, v5] = v;
        let [o0, o1, o2, o3, o4, o5] = out;
        b_rows(v0, v1, v2, v3, v4, v5, o0, o1, o2, o3, o4, o5);
    }

    #[inline(always)]
    fn at(m: [&[f32]; N], out: [&mut [f32]; M]) {
        let [m0, m1, m2, m3, m4, m5] = m;
        let [o0, o1, o2, o3] = out;
        at_rows(m0, m1, m2, m3, m4, m5, o0, o1, o2, o3);
    }

    #[inline(always)]
    fn a(e: [&[f32]; M], out: [&mut [f32]; N]) {
        let [e0, e1, e2, e3] = e;
        let [o0, o1, o2, o3, o4, o5] = out;
        a_rows(e0, e1, e2, e3, o0, o1, o2, o3, o4, o5);
    }

    #[inline(always)]
    fn deinterleave(row: &[f32], [q0, q1, q2, q3]: [&mut [f32]; M]) {
        deinterleave4(row, q0, q1, q2, q3)
    }

    #[inline(always)]
    fn interleave([q0, q1, q2, q3]: [&[f32]; M], row: &mut [f32]) {
        interleave4(q0, q1, q2, q3, row)
    }
}

/// [`Points::bt`] on separate slices: as function arguments they are known not to overlap, so the
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

/// [`Points::b`] on separate slices: as function arguments they are known not to overlap, so the
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

/// [`Points::at`] on separate slices: as function arguments they are known not to overlap, so the
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

/// [`Points::a`] on separate slices: as function arguments they are known not to overlap, so the
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

/// `row`'s values by position mod 4, as exact quadruples (a loop that vectorises).
#[inline(always)]
fn deinterleave4(row: &[f32], q0: &mut [f32], q1: &mut [f32], q2: &mut [f32], q3: &mut [f32]) {
    let quads = row.chunks_exact(M);
    for ((((quad, a), b), c), d) in quads.zip(q0).zip(q1).zip(q2).zip(q3) {
        (*a, *b, *c, *d) = (quad[0], quad[1], quad[2], quad[3]);
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sums_and_differences_are_the_matrices() {
        let bt = [
            [4.0, 0.0, -5.0, 0.0, 1.0, 0.0],
            [0.0, -4.0, -4.0, 1.0, 1.0, 0.0],
            [0.0, 4.0, -4.0, -1.0, 1.0, 0.0],
            [0.0, -2.0, -1.0, 2.0, 1.0, 0.0],
            [0.0, 2.0, -1.0, -2.0, 1.0, 0.0],
            [0.0, 4.0, 0.0, -5.0, 0.0, 1.0],
        ];
        let at = [
            [1.0, 1.0, 1.0, 1.0, 1.0, 0.0],
            [0.0, 1.0, -1.0, 2.0, -2.0, 0.0],
            [0.0, 1.0, 1.0, 4.0, 4.0, 0.0],
            [0.0, 1.0, -1.0, 8.0, -8.0, 1.0],
        ];
        super::super::transforms::assert_points_are::<M, N, F43>(&bt, &at);
    }
}
