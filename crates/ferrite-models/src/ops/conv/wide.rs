//! The wide layout of 3×3, stride-1 correlations, shared by the [`super::depthwise`] and
//! [`super::direct`] kernels.

use super::kernels::Geometry;

/// Outputs per step: one AVX-512 register of `f32`.
pub(super) const LANES: usize = 16;

/// Taps of a 3×3 filter.
pub(super) const TAPS: usize = 9;

/// A stride-1 correlation with 3×3 filters laid out `width = out_w + 2` wide: each source
/// plane zero-padded to `out_h + 2` rows of `width` (placed `pad` rows and columns in), and
/// each output `(oy, ox)` at `oy·width + ox`. Tap `(ky, kx)` of every output then reads its
/// source plane at the same offset `ky·width + kx` from it, so 16 consecutive outputs take one
/// 16-wide load per tap; the two values past each output row's end are computed and dropped.
/// The input gradient is the same correlation of the padded output gradient with the filters
/// turned by 180°.
#[derive(Debug, Clone, Copy)]
pub(super) struct Wide {
    source: [usize; 2],
    pad: [usize; 2],
    out: [usize; 2],
    pub(super) width: usize,
}

impl Wide {
    fn new(source: [usize; 2], pad: [usize; 2], out: [usize; 2]) -> Option<Self> {
        let fits = (0..2).all(|a| out[a] > 0 && source[a] + pad[a] <= out[a] + 2);
        fits.then_some(Self {
            source,
            pad,
            out,
            width: out[1] + 2,
        })
    }

    /// The forward's layout (also the weight gradient's), for 3×3 filters at stride 1.
    pub(super) fn forward(g: &Geometry) -> Option<Self> {
        Self::stride_one_3x3(g).then(|| Self::new(g.in_size, g.pad, g.out_size))?
    }

    /// The input gradient's: the output gradient padded by `2 − pad`.
    pub(super) fn input_grad(g: &Geometry) -> Option<Self> {
        let pad = [2usize.checked_sub(g.pad[0])?, 2usize.checked_sub(g.pad[1])?];
        Self::stride_one_3x3(g).then(|| Self::new(g.out_size, pad, g.in_size))?
    }

    fn stride_one_3x3(g: &Geometry) -> bool {
        g.kernel == [3, 3] && g.stride == [1, 1] && g.dilation == [1, 1]
    }

    /// Values of one source plane.
    pub(super) fn source_plane(&self) -> usize {
        self.source[0] * self.source[1]
    }

    /// Outputs per row of a map.
    pub(super) fn out_w(&self) -> usize {
        self.out[1]
    }

    /// Values of one output map.
    pub(super) fn out_plane(&self) -> usize {
        self.out[0] * self.out[1]
    }

    /// Values of one wide output plane: every row's outputs, rounded up to whole steps.
    pub(super) fn wide_len(&self) -> usize {
        ((self.out[0] - 1) * self.width + self.out[1]).next_multiple_of(LANES)
    }

    /// Values of one padded source plane, with room for the last step's farthest tap.
    pub(super) fn padded_len(&self) -> usize {
        self.wide_len() + 2 * self.width + 2
    }

    /// Each tap's offset from its output.
    pub(super) fn offsets(&self) -> [usize; TAPS] {
        std::array::from_fn(|t| (t / 3) * self.width + t % 3)
    }

    /// Source planes, zero-padded, one after another (`padded_len` values apart).
    pub(super) fn pad(&self, planes: &[f32], padded: &mut [f32]) {
        let chunks = planes.chunks_exact(self.source_plane());
        for (plane, dst) in chunks.zip(padded.chunks_exact_mut(self.padded_len())) {
            dst.fill(0.0);
            for (y, row) in plane.chunks_exact(self.source[1]).enumerate() {
                copy_row(
                    &mut dst[(y + self.pad[0]) * self.width + self.pad[1]..],
                    row,
                );
            }
        }
    }

    /// Output maps in the wide layout (`wide_len` values apart), zeros past each row's end.
    pub(super) fn widen(&self, maps: &[f32], wide: &mut [f32]) {
        let chunks = maps.chunks_exact(self.out_plane());
        for (map, dst) in chunks.zip(wide.chunks_exact_mut(self.wide_len())) {
            dst.fill(0.0);
            for (oy, row) in map.chunks_exact(self.out[1]).enumerate() {
                copy_row(&mut dst[oy * self.width..], row);
            }
        }
    }

    /// One output map's values from its wide plane.
    pub(super) fn narrow(&self, wide: &[f32], map: &mut [f32]) {
        narrow_rows(wide, self.width, self.out[1], map);
    }
}

/// `map`'s rows of `out_w` values from a wide plane whose rows are `row_width` apart.
pub(super) fn narrow_rows(wide: &[f32], row_width: usize, out_w: usize, map: &mut [f32]) {
    for (oy, row) in map.chunks_exact_mut(out_w).enumerate() {
        copy_row(row, &wide[oy * row_width..]);
    }
}

/// `dst[..n] = src[..n]` for the shorter one's length `n`, in 16-value moves that compile
/// inline, the last one overlapping: `copy_from_slice` calls `memcpy`, whose per-call cost was
/// most of the copying of 44-value rows (mini-Xception's depthwise layers spent 7 % of a
/// training step in it).
#[inline(always)]
fn copy_row(dst: &mut [f32], src: &[f32]) {
    let n = dst.len().min(src.len());
    let (dst, src) = (&mut dst[..n], &src[..n]);
    if n < LANES {
        dst.copy_from_slice(src);
        return;
    }
    for i in (0..n - LANES).step_by(LANES) {
        dst[i..i + LANES].copy_from_slice(&src[i..i + LANES]);
    }
    dst[n - LANES..].copy_from_slice(&src[n - LANES..]);
}

/// The first 16 values of `values`, as an array, so that loops over them compile to
/// whole-register operations.
#[inline(always)]
pub(super) fn lanes(values: &[f32]) -> &[f32; LANES] {
    values
        .first_chunk()
        .expect("the padded planes cover every tap of every step")
}
