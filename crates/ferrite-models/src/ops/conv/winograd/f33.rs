//! The transforms of F(3×3, 3×3): 5×5 input tiles, 3 apart, give 3×3 output tiles for 25
//! multiplies instead of 81, with the interpolation points 0, ±1, 2 and ∞ (Toom-Cook, the
//! factors 1/f of each point's Lagrange polynomial moved into G so that Bᵀ is integer):
//!
//! ```text
//! Bᵀ = ⎡2 −1 −2  1  0⎤   G = ⎡1/2    0    0⎤   Aᵀ = ⎡1  1  1  1  0⎤
//!      ⎢0  2  1 −1  0⎥       ⎢1/2  1/2  1/2⎥        ⎢0  1 −1  2  0⎥
//!      ⎢0 −2  3 −1  0⎥       ⎢1/6 −1/6  1/6⎥        ⎣0  1  1  4  1⎦
//!      ⎢0 −1  0  1  0⎥       ⎢1/6  1/3  2/3⎥
//!      ⎣0  2 −1 −2  1⎦       ⎣  0    0    1⎦
//! ```
//!
//! It is for maps a 4×4 tiling fits badly: a 6² map is four 3×3 tiles (100 products an image)
//! where it is four 4×4 tiles or nine 2×2 ones (144 either way).

use super::transforms::Points;

/// Output tile side and input tile side.
pub(super) const M: usize = 3;
const N: usize = M + 2;

pub(super) const G: [[f32; 3]; N] = [
    [0.5, 0.0, 0.0],
    [0.5, 0.5, 0.5],
    [1.0 / 6.0, -1.0 / 6.0, 1.0 / 6.0],
    [1.0 / 6.0, 1.0 / 3.0, 2.0 / 3.0],
    [0.0, 0.0, 1.0],
];

/// F(3×3, 3×3)'s matrices.
pub(super) struct F33;

impl Points<M, N> for F33 {
    #[inline(always)]
    fn bt([d0, d1, d2, d3, d4]: [&[f32]; N], [o0, o1, o2, o3, o4]: [&mut [f32]; N]) {
        bt_rows(d0, d1, d2, d3, d4, o0, o1, o2, o3, o4);
    }

    #[inline(always)]
    fn b([v0, v1, v2, v3, v4]: [&[f32]; N], [o0, o1, o2, o3, o4]: [&mut [f32]; N]) {
        b_rows(v0, v1, v2, v3, v4, o0, o1, o2, o3, o4);
    }

    #[inline(always)]
    fn at([m0, m1, m2, m3, m4]: [&[f32]; N], [o0, o1, o2]: [&mut [f32]; M]) {
        at_rows(m0, m1, m2, m3, m4, o0, o1, o2);
    }

    #[inline(always)]
    fn a([e0, e1, e2]: [&[f32]; M], [o0, o1, o2, o3, o4]: [&mut [f32]; N]) {
        a_rows(e0, e1, e2, o0, o1, o2, o3, o4);
    }

    #[inline(always)]
    fn deinterleave(row: &[f32], [q0, q1, q2]: [&mut [f32]; M]) {
        let triples = row.chunks_exact(M);
        for (((t, a), b), c) in triples.zip(q0).zip(q1).zip(q2) {
            (*a, *b, *c) = (t[0], t[1], t[2]);
        }
    }

    #[inline(always)]
    fn interleave([q0, q1, q2]: [&[f32]; M], row: &mut [f32]) {
        let triples = row.chunks_exact_mut(M);
        for (((t, a), b), c) in triples.zip(q0).zip(q1).zip(q2) {
            t.copy_from_slice(&[*a, *b, *c]);
        }
    }
}

// Each `*_rows` takes separate slices, resliced to one length: as function arguments they are
// known not to overlap, so the loop vectorises without run-time overlap checks (as an array of
// slices it does not; see `f43`).

#[allow(clippy::too_many_arguments)]
#[inline(always)]
fn bt_rows(
    d0: &[f32],
    d1: &[f32],
    d2: &[f32],
    d3: &[f32],
    d4: &[f32],
    o0: &mut [f32],
    o1: &mut [f32],
    o2: &mut [f32],
    o3: &mut [f32],
    o4: &mut [f32],
) {
    let len = o0.len();
    let (d0, d1, d2, d3, d4) = (&d0[..len], &d1[..len], &d2[..len], &d3[..len], &d4[..len]);
    let (o1, o2, o3, o4) = (
        &mut o1[..len],
        &mut o2[..len],
        &mut o3[..len],
        &mut o4[..len],
    );
    for x in 0..len {
        let (p, q) = (d1[x] + d2[x], d3[x] - d1[x]);
        o0[x] = 2.0 * (d0[x] - d2[x]) + q;
        o1[x] = p + d1[x] - d3[x];
        o2[x] = 3.0 * d2[x] - 2.0 * d1[x] - d3[x];
        o3[x] = q;
        o4[x] = d4[x] - d2[x] - 2.0 * q;
    }
}

#[allow(clippy::too_many_arguments)]
#[inline(always)]
fn b_rows(
    v0: &[f32],
    v1: &[f32],
    v2: &[f32],
    v3: &[f32],
    v4: &[f32],
    o0: &mut [f32],
    o1: &mut [f32],
    o2: &mut [f32],
    o3: &mut [f32],
    o4: &mut [f32],
) {
    let len = o0.len();
    let (v0, v1, v2, v3, v4) = (&v0[..len], &v1[..len], &v2[..len], &v3[..len], &v4[..len]);
    let (o1, o2, o3, o4) = (
        &mut o1[..len],
        &mut o2[..len],
        &mut o3[..len],
        &mut o4[..len],
    );
    for x in 0..len {
        let q = v0[x] + v3[x];
        o0[x] = 2.0 * v0[x];
        o1[x] = 2.0 * (v1[x] - v2[x] + v4[x]) - q;
        o2[x] = v1[x] + 3.0 * v2[x] - 2.0 * v0[x] - v4[x];
        o3[x] = q - v1[x] - v2[x] - 2.0 * v4[x];
        o4[x] = v4[x];
    }
}

#[allow(clippy::too_many_arguments)]
#[inline(always)]
fn at_rows(
    m0: &[f32],
    m1: &[f32],
    m2: &[f32],
    m3: &[f32],
    m4: &[f32],
    o0: &mut [f32],
    o1: &mut [f32],
    o2: &mut [f32],
) {
    let len = o0.len();
    let (m0, m1, m2, m3, m4) = (&m0[..len], &m1[..len], &m2[..len], &m3[..len], &m4[..len]);
    let (o1, o2) = (&mut o1[..len], &mut o2[..len]);
    for x in 0..len {
        let p = m1[x] + m2[x];
        o0[x] = m0[x] + p + m3[x];
        o1[x] = m1[x] - m2[x] + 2.0 * m3[x];
        o2[x] = p + 4.0 * m3[x] + m4[x];
    }
}

#[allow(clippy::too_many_arguments)]
#[inline(always)]
fn a_rows(
    e0: &[f32],
    e1: &[f32],
    e2: &[f32],
    o0: &mut [f32],
    o1: &mut [f32],
    o2: &mut [f32],
    o3: &mut [f32],
    o4: &mut [f32],
) {
    let len = o0.len();
    let (e0, e1, e2) = (&e0[..len], &e1[..len], &e2[..len]);
    let (o1, o2, o3, o4) = (
        &mut o1[..len],
        &mut o2[..len],
        &mut o3[..len],
        &mut o4[..len],
    );
    for x in 0..len {
        let p = e0[x] + e2[x];
        o0[x] = e0[x];
        o1[x] = p + e1[x];
        o2[x] = p - e1[x];
        o3[x] = e0[x] + 2.0 * e1[x] + 4.0 * e2[x];
        o4[x] = e2[x];
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sums_and_differences_are_the_matrices() {
        let bt = [
            [2.0, -1.0, -2.0, 1.0, 0.0],
            [0.0, 2.0, 1.0, -1.0, 0.0],
            [0.0, -2.0, 3.0, -1.0, 0.0],
            [0.0, -1.0, 0.0, 1.0, 0.0],
            [0.0, 2.0, -1.0, -2.0, 1.0],
        ];
        let at = [
            [1.0, 1.0, 1.0, 1.0, 0.0],
            [0.0, 1.0, -1.0, 2.0, 0.0],
            [0.0, 1.0, 1.0, 4.0, 1.0],
        ];
        super::super::transforms::assert_points_are::<M, N, F33>(&bt, &at);
    }
}
