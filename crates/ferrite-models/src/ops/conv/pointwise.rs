//! 1×1 stride-1 unpadded convolutions on small maps, as matrix products over groups of images.
//!
//! Per image such a convolution is one product `W · X` with the map's positions as columns: 36
//! on DeXpression's 6² maps, too few for the microkernels, and the filters are packed again for
//! every image. Here the maps of a group of images are gathered channel by channel,
//! `[channels][images · positions]`, so that one product covers the whole group, and its result
//! is scattered back image by image; the copies stay in cache. Measured (`dex_parts`, `ONLY=1×1`,
//! DeXpression's 1×1 layers with bias and ReLU, forward + backward, ms, 3 alternating pairs):
//! 272→96 at 6² 2.85–3.05 → 2.24–2.71, 272→64 at 6² 1.99–2.16 → 1.84–2.03; but 64→96 at 12²
//! (144 columns an image already) 2.86–2.94 → 2.96–3.23, so larger maps stay image by image.

use gemm::Parallelism;
use rayon::prelude::*;

use super::kernels::{Epilogue, Geometry, Lhs, Mat, balanced, sum_parts};
use crate::ops::output;
use crate::ops::scratch::with_scratch;

/// The columns a group's products aim at: 288 on 6² maps (8 images).
const GROUP_COLUMNS: usize = 256;

/// The largest maps grouped (8²).
const MAX_PLANE: usize = 64;

/// Whether the convolution runs here: pointwise on small maps, with enough images for a
/// group per thread (fewer run image by image, each product on all threads), unless
/// `FERRITE_KERNELS=im2col` asks for one product per image everywhere.
pub(super) fn applies(g: &Geometry) -> bool {
    g.is_pointwise()
        && g.out_plane() <= MAX_PLANE
        && Groups::of(g).count >= rayon::current_num_threads().max(2)
        && !crate::ops::im2col_forced()
}

/// How the batch is cut into groups of images (the last may have fewer).
struct Groups {
    images: usize,
    count: usize,
    plane: usize,
}

impl Groups {
    fn of(g: &Geometry) -> Self {
        let plane = g.out_plane().max(1);
        let wanted = GROUP_COLUMNS.div_ceil(plane).clamp(1, g.batch.max(1));
        let images = balanced(g.batch, wanted, rayon::current_num_threads());
        Self {
            images,
            count: g.batch.div_ceil(images),
            plane,
        }
    }

    /// The images of group `n`.
    fn range(&self, n: usize, batch: usize) -> std::ops::Range<usize> {
        n * self.images..((n + 1) * self.images).min(batch)
    }
}

/// `cols[c][i · plane + p] = maps[i][c][p]`: the images' maps (`[images][channels][plane]`)
/// as one matrix with a row per channel.
fn gather(maps: &[f32], [channels, plane]: [usize; 2], cols: &mut [f32]) {
    let width = maps.len() / channels;
    let image_len = channels * plane;
    for (i, image) in maps.chunks_exact(image_len).enumerate() {
        for (c, map) in image.chunks_exact(plane).enumerate() {
            cols[c * width + i * plane..][..plane].copy_from_slice(map);
        }
    }
}

/// The inverse of [`gather`]: `maps[i][c][p] = cols[c][i · plane + p]`.
fn scatter(cols: &[f32], [channels, plane]: [usize; 2], maps: &mut [f32]) {
    let width = maps.len() / channels;
    let image_len = channels * plane;
    for (i, image) in maps.chunks_exact_mut(image_len).enumerate() {
        for (c, map) in image.chunks_exact_mut(plane).enumerate() {
            map.copy_from_slice(&cols[c * width + i * plane..][..plane]);
        }
    }
}

/// `a` (`rows × cols`) times every image's maps: `input` is `[batch][cols][plane]`, the result
/// `[batch][rows][plane]`; `then` runs on each group's part of the result.
fn per_group(
    a: &Lhs,
    [rows, cols]: [usize; 2],
    input: &[f32],
    g: &Geometry,
    then: impl Fn(&mut [f32]) + Sync,
) -> Vec<f32> {
    let groups = Groups::of(g);
    let plane = groups.plane;
    output::par_chunks(
        g.batch * rows * plane,
        groups.images * rows * plane,
        1,
        |n, out| {
            let images = groups.range(n, g.batch);
            let width = images.len() * plane;
            let maps = &input[images.start * cols * plane..images.end * cols * plane];
            with_scratch((rows + cols) * width, |buf| {
                let (gathered, product) = buf.split_at_mut(cols * width);
                gather(maps, [cols, plane], gathered);
                let b = Mat::rows(gathered, cols, width);
                a.times(product, b, false, Parallelism::None);
                scatter(product, [rows, plane], out);
            });
            then(out);
        },
    )
}

/// `y = epilogue(conv(x, w))`.
pub(super) fn forward(x: &[f32], w: &[f32], post: &Epilogue, g: &Geometry) -> Vec<f32> {
    let (c, k, plane) = (g.in_channels, g.out_channels, g.out_plane());
    let weights = Lhs::new(Mat::rows(w, k, c), g.batch * plane);
    per_group(&weights, [k, c], x, g, |out| {
        for image in out.chunks_exact_mut(k * plane) {
            post.apply(image, plane);
        }
    })
}

/// `dL/dx = Wᵀ · dY`.
pub(super) fn input_grad(w: &[f32], dy: &[f32], g: &Geometry) -> Vec<f32> {
    let (c, k, plane) = (g.in_channels, g.out_channels, g.out_plane());
    let wt = Lhs::new(Mat::rows(w, k, c).t(), g.batch * plane);
    per_group(&wt, [c, k], dy, g, |_| {})
}

/// `dL/dW = Σ dY · Xᵀ` over the images, a partial sum per thread over fixed groups (so the
/// order of the sums does not depend on scheduling).
pub(super) fn weight_grad(x: &[f32], dy: &[f32], g: &Geometry) -> Vec<f32> {
    let (c, k) = (g.in_channels, g.out_channels);
    let groups = Groups::of(g);
    let plane = groups.plane;
    let parts = rayon::current_num_threads().clamp(1, groups.count);
    let per_part = groups.count.div_ceil(parts);
    let partial = |part: usize| {
        let mut dw = vec![0.0; k * c];
        with_scratch((c + k) * groups.images * plane, |buf| {
            for n in part * per_part..((part + 1) * per_part).min(groups.count) {
                let images = groups.range(n, g.batch);
                let width = images.len() * plane;
                let (xs, grads) = buf[..(c + k) * width].split_at_mut(c * width);
                gather(
                    &x[images.start * c * plane..images.end * c * plane],
                    [c, plane],
                    xs,
                );
                let dy = &dy[images.start * k * plane..images.end * k * plane];
                gather(dy, [k, plane], grads);
                let grads = Lhs::new(Mat::rows(grads, k, width), c);
                let xt = Mat::rows(xs, c, width).t();
                grads.times(&mut dw, xt, true, Parallelism::None);
            }
        });
        dw
    };
    sum_parts((0..parts).into_par_iter().map(partial).collect())
}
