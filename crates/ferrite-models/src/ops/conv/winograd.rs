//! Winograd's minimal filtering F(2×2, 3×3) for dense 3×3 stride-1 convolutions (Lavin &
//! Gray, "Fast Algorithms for Convolutional Neural Networks", 2016). Each 4×4 input tile and
//! each 3×3 filter are transformed so that a 2×2 output tile costs 16 multiplies instead of
//! 36: 2.25× fewer multiply-adds in the matrix products, which are most of a VGG or
//! DeXpression step.
//!
//! With `ξ` the 16 transformed positions and the tiles of a group of images as the columns:
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

use rayon::prelude::*;

use super::kernels::{Epilogue, Geometry, Mat, gemm_into, per_image, plan, sum_parts};

/// Transformed positions per tile: a 4×4 input tile.
const XI: usize = 16;

/// Fewer channels than this on either side and the 16 thin products lose to one im2col product.
const MIN_CHANNELS: usize = 16;

/// Tile columns one matrix product should get: enough that packing the transformed filter
/// pays off, few enough that a group's transformed tiles stay in the larger caches.
const TARGET_COLUMNS: usize = 256;

/// Whether the Winograd kernels run this convolution.
pub fn applies(g: &Geometry) -> bool {
    !g.is_depthwise()
        && g.kernel == [3, 3]
        && g.stride == [1, 1]
        && g.dilation == [1, 1]
        && g.in_channels >= MIN_CHANNELS
        && g.out_channels >= MIN_CHANNELS
        && !crate::ops::im2col_forced()
}

/// The 2×2 output tiles of one image, and how images are grouped into matrix products.
#[derive(Debug, Clone, Copy)]
struct Tiling {
    rows: usize,
    cols: usize,
    /// Images per group (the last group may have fewer).
    images: usize,
    groups: usize,
}

impl Tiling {
    fn new(g: &Geometry) -> Self {
        let rows = g.out_size[0].div_ceil(2);
        let cols = g.out_size[1].div_ceil(2);
        let threads = rayon::current_num_threads();
        // Enough groups to fill the threads and keep each product near TARGET_COLUMNS wide.
        let wanted = (g.batch * rows * cols)
            .div_ceil(TARGET_COLUMNS)
            .next_multiple_of(threads)
            .clamp(1, g.batch.max(1));
        let images = g.batch.div_ceil(wanted).max(1);
        Self {
            rows,
            cols,
            images,
            groups: g.batch.div_ceil(images),
        }
    }

    fn per_image(&self) -> usize {
        self.rows * self.cols
    }

    /// The widest group's tile columns.
    fn columns(&self) -> usize {
        self.images * self.per_image()
    }

    /// Multiply-adds of one pass's matrix products over the whole batch.
    fn macs(&self, g: &Geometry) -> usize {
        XI * g.in_channels * g.out_channels * self.per_image() * g.batch
    }
}

/// G = [[1, 0, 0], [½, ½, ½], [½, −½, ½], [0, 0, 1]].
const G: [[f32; 3]; 4] = [
    [1.0, 0.0, 0.0],
    [0.5, 0.5, 0.5],
    [0.5, -0.5, 0.5],
    [0.0, 0.0, 1.0],
];

/// The filter transform as a `[16, 9]` matrix: `U[ξ = 4r + s] = Σ G[r][a]·G[s][b]·w[3a + b]`.
fn filter_matrix() -> [f32; XI * 9] {
    let mut t = [0.0; XI * 9];
    for (xi, row) in t.chunks_exact_mut(9).enumerate() {
        for (ab, v) in row.iter_mut().enumerate() {
            *v = G[xi / 4][ab / 3] * G[xi % 4][ab % 3];
        }
    }
    t
}

/// `U[ξ][k][c] = (G·w[k][c]·Gᵀ)[ξ]`, each of the 16 planes a `[out, in]` matrix: one product
/// `[16, 9] · wᵀ` over all filters (big layers have a quarter of a million).
fn filter_transform(w: &[f32], g: &Geometry) -> Vec<f32> {
    let pairs = g.out_channels * g.in_channels;
    let mut u = vec![0.0; XI * pairs];
    let t = filter_matrix();
    let parallelism = plan(1, XI * 9 * pairs).1;
    gemm_into(
        &mut u,
        Mat::rows(&t, XI, 9),
        Mat::rows(w, pairs, 9).t(),
        false,
        parallelism,
    );
    u
}

/// `dw[k][c] = Gᵀ·dU[k][c]·G`, the adjoint of [`filter_transform`]: `dUᵀ · [16, 9]`.
fn filter_grad(du: &[f32], g: &Geometry) -> Vec<f32> {
    let pairs = g.out_channels * g.in_channels;
    let mut dw = vec![0.0; 9 * pairs];
    let t = filter_matrix();
    let parallelism = plan(1, XI * 9 * pairs).1;
    gemm_into(
        &mut dw,
        Mat::rows(du, XI, pairs).t(),
        Mat::rows(&t, XI, 9),
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

/// The row buffers of the plane transforms, allocated once per group rather than per plane.
struct PlaneBuffers {
    rows: [Vec<f32>; 4],
    even: Vec<f32>,
    odd: Vec<f32>,
    vertical: [Vec<f32>; 4],
    padded: Vec<f32>,
    h: Vec<f32>,
    z: Vec<f32>,
    r: Vec<f32>,
    line: Vec<f32>,
}

impl PlaneBuffers {
    fn new(tiles: &Tiling) -> Self {
        let (rows, cols) = (tiles.rows, tiles.cols);
        let width = 2 * cols + 2;
        let zeros = |n: usize| vec![0.0f32; n];
        Self {
            rows: [(); 4].map(|_| zeros(width)),
            even: zeros(cols + 1),
            odd: zeros(cols + 1),
            vertical: [(); 4].map(|_| zeros(2 * cols)),
            padded: zeros((2 * rows + 2) * width),
            h: zeros(16 * cols),
            z: zeros(4 * cols),
            r: zeros(8 * cols),
            line: zeros(2 * cols),
        }
    }
}

/// `V = Bᵀ·d·B` for every 4×4 tile `d` of one input plane (zeros outside it), with
/// Bᵀ = [[1, 0, −1, 0], [0, 1, 1, 0], [0, −1, 1, 0], [0, 1, 0, −1]].
///
/// A tile row at a time: Bᵀ down the four input rows as whole-row passes, then each row split
/// into its even and odd columns so that Bᵀ along the row is contiguous passes over the tiles.
fn input_transform(
    plane: &[f32],
    g: &Geometry,
    tiles: &Tiling,
    v: Spread<&mut [f32]>,
    buf: &mut PlaneBuffers,
) {
    let [in_h, in_w] = g.in_size;
    let [pad_y, pad_x] = g.pad;
    let cols = tiles.cols;
    let width = 2 * cols + 2;
    let PlaneBuffers {
        rows, even, odd, ..
    } = buf;
    let first_x = pad_x.min(width);
    let last_x = (pad_x + in_w).min(width);
    for ty in 0..tiles.rows {
        for (i, row) in rows.iter_mut().enumerate() {
            row.fill(0.0);
            let y = (2 * ty + i) as isize - pad_y as isize;
            if (0..in_h as isize).contains(&y) {
                let line = &plane[y as usize * in_w..];
                row[first_x..last_x].copy_from_slice(&line[..last_x - first_x]);
            }
        }
        let [d0, d1, d2, d3] = rows;
        for x in 0..width {
            let (a, b, c, d) = (d0[x], d1[x], d2[x], d3[x]);
            d0[x] = a - c;
            d1[x] = b + c;
            d2[x] = c - b;
            d3[x] = b - d;
        }
        for (i, row) in rows.iter().enumerate() {
            deinterleave(row, even, odd);
            // Tile tx covers columns 2tx..2tx+3: even[tx], odd[tx], even[tx+1], odd[tx+1].
            let (a, b) = (&even[..cols], &odd[..cols]);
            let (c, d) = (&even[1..], &odd[1..]);
            let (at, s) = ((4 * i) * v.xi_stride + ty * cols, v.xi_stride);
            zip_into(&mut v.data[at..at + cols], a, c, |a, c| a - c);
            zip_into(&mut v.data[at + s..at + s + cols], b, c, |b, c| b + c);
            zip_into(&mut v.data[at + 2 * s..at + 2 * s + cols], b, c, |b, c| {
                c - b
            });
            zip_into(&mut v.data[at + 3 * s..at + 3 * s + cols], b, d, |b, d| {
                b - d
            });
        }
    }
}

/// `dx = Σ B·dV·Bᵀ` over the (overlapping) tiles of one input plane, the adjoint of
/// [`input_transform`], summed on a padded copy of the plane; B·[a, b, c, d] =
/// [a, b − c + d, −a + b + c, −d].
fn input_scatter(
    dv: Spread<&[f32]>,
    g: &Geometry,
    tiles: &Tiling,
    plane: &mut [f32],
    buf: &mut PlaneBuffers,
) {
    let [in_h, in_w] = g.in_size;
    let [pad_y, pad_x] = g.pad;
    let cols = tiles.cols;
    let width = 2 * cols + 2;
    let PlaneBuffers { padded, h, z, .. } = buf;
    padded.fill(0.0);
    // h[i][j]: B along tile row i, contribution to tile column j, for every tile of the row.
    for ty in 0..tiles.rows {
        for i in 0..4 {
            let at = |j: usize| &dv.data[(4 * i + j) * dv.xi_stride + ty * cols..][..cols];
            b_times_rows(
                &mut h[4 * i * cols..4 * (i + 1) * cols],
                [at(0), at(1), at(2), at(3)],
                cols,
            );
        }
        // B down the columns, one column position j at a time, into rows 2ty..2ty+3.
        for j in 0..4 {
            let at = |i: usize| &h[(4 * i + j) * cols..][..cols];
            b_times_rows(z, [at(0), at(1), at(2), at(3)], cols);
            for i in 0..4 {
                let row = &mut padded[(2 * ty + i) * width..][..width];
                let zi = &z[i * cols..(i + 1) * cols];
                add_strided(&mut row[j..], zi);
            }
        }
    }
    for (y, line) in plane.chunks_exact_mut(in_w).enumerate().take(in_h) {
        let start = (y + pad_y) * width + pad_x;
        line.copy_from_slice(&padded[start..start + in_w]);
    }
}

/// `out[k] = (B·[a, b, c, d])[k]` for each of the `n` tiles, four rows of `n` values out.
fn b_times_rows(out: &mut [f32], [a, b, c, d]: [&[f32]; 4], n: usize) {
    let (o0, rest) = out.split_at_mut(n);
    let (o1, rest) = rest.split_at_mut(n);
    let (o2, o3) = rest.split_at_mut(n);
    for t in 0..n {
        o0[t] = a[t];
        o1[t] = b[t] - c[t] + d[t];
        o2[t] = b[t] + c[t] - a[t];
        o3[t] = -d[t];
    }
}

/// `row[2·t] += values[t]`.
fn add_strided(row: &mut [f32], values: &[f32]) {
    for (p, v) in row.iter_mut().step_by(2).zip(values) {
        *p += v;
    }
}

/// `out[t] = f(a[t], b[t])`.
fn zip_into(out: &mut [f32], a: &[f32], b: &[f32], f: impl Fn(f32, f32) -> f32) {
    for ((o, &p), &q) in out.iter_mut().zip(a).zip(b) {
        *o = f(p, q);
    }
}

/// Splits `row` into its even and odd entries.
fn deinterleave(row: &[f32], even: &mut [f32], odd: &mut [f32]) {
    for ((pair, e), o) in row.chunks_exact(2).zip(even.iter_mut()).zip(odd.iter_mut()) {
        *e = pair[0];
        *o = pair[1];
    }
}

/// `y = Aᵀ·M·A` for every tile of one output map, with Aᵀ = [[1, 1, 1, 0], [0, 1, −1, −1]]:
/// Aᵀ along each tile row as contiguous passes over the tiles, then down the columns, the two
/// output columns of each tile interleaved into the map's rows.
fn output_transform(
    m: Spread<&[f32]>,
    g: &Geometry,
    tiles: &Tiling,
    map: &mut [f32],
    buf: &mut PlaneBuffers,
) {
    let [out_h, out_w] = g.out_size;
    let cols = tiles.cols;
    // r[2i + parity]: Aᵀ along tile row i, output column `parity` of every tile.
    let PlaneBuffers { r, line, .. } = buf;
    for ty in 0..tiles.rows {
        for i in 0..4 {
            let at = |j: usize| &m.data[(4 * i + j) * m.xi_stride + ty * cols..][..cols];
            let (m0, m1, m2, m3) = (at(0), at(1), at(2), at(3));
            let (even, odd) = r[2 * i * cols..][..2 * cols].split_at_mut(cols);
            for tx in 0..cols {
                even[tx] = m0[tx] + m1[tx] + m2[tx];
                odd[tx] = m1[tx] - m2[tx] - m3[tx];
            }
        }
        for dy in 0..2 {
            let y = 2 * ty + dy;
            if y >= out_h {
                break;
            }
            for parity in 0..2 {
                let at = |i: usize| &r[(2 * i + parity) * cols..][..cols];
                let (r0, r1, r2, r3) = (at(0), at(1), at(2), at(3));
                let out = line[parity..].iter_mut().step_by(2);
                if dy == 0 {
                    for (tx, o) in out.enumerate() {
                        *o = r0[tx] + r1[tx] + r2[tx];
                    }
                } else {
                    for (tx, o) in out.enumerate() {
                        *o = r1[tx] - r2[tx] - r3[tx];
                    }
                }
            }
            map[y * out_w..(y + 1) * out_w].copy_from_slice(&line[..out_w]);
        }
    }
}

/// `Ŷ = A·dy·Aᵀ` for every 2×2 tile of one output-gradient map (zeros outside it), the
/// adjoint of [`output_transform`]; A·[a, b] = [a, a + b, a − b, −b].
fn output_grad_transform(
    map: &[f32],
    g: &Geometry,
    tiles: &Tiling,
    yhat: Spread<&mut [f32]>,
    buf: &mut PlaneBuffers,
) {
    let [out_h, out_w] = g.out_size;
    let cols = tiles.cols;
    let PlaneBuffers {
        rows,
        even,
        odd,
        vertical,
        ..
    } = buf;
    for ty in 0..tiles.rows {
        for (dy, row) in rows[..2].iter_mut().enumerate() {
            let y = 2 * ty + dy;
            row.fill(0.0);
            if y < out_h {
                row[..out_w].copy_from_slice(&map[y * out_w..(y + 1) * out_w]);
            }
        }
        let [a, b, ..] = &*rows;
        let [v0, v1, v2, v3] = vertical;
        for x in 0..2 * cols {
            v0[x] = a[x];
            v1[x] = a[x] + b[x];
            v2[x] = a[x] - b[x];
            v3[x] = -b[x];
        }
        for (i, row) in vertical.iter().enumerate() {
            deinterleave(row, even, odd);
            let at = (4 * i) * yhat.xi_stride + ty * cols;
            let s = yhat.xi_stride;
            let (even, odd) = (&even[..cols], &odd[..cols]);
            zip_into(&mut yhat.data[at..at + cols], even, odd, |e, _| e);
            zip_into(&mut yhat.data[at + s..at + s + cols], even, odd, |e, o| {
                e + o
            });
            zip_into(
                &mut yhat.data[at + 2 * s..at + 2 * s + cols],
                even,
                odd,
                |e, o| e - o,
            );
            zip_into(
                &mut yhat.data[at + 3 * s..at + 3 * s + cols],
                even,
                odd,
                |_, o| -o,
            );
        }
    }
}

/// The 16 transformed-input matrices `V[ξ]` (`[in, columns]`) of images `first..first + n`.
fn transform_inputs(
    x: &[f32],
    g: &Geometry,
    tiles: &Tiling,
    first: usize,
    n: usize,
    v: &mut [f32],
) {
    let columns = n * tiles.per_image();
    let image_len = g.in_channels * g.in_plane();
    let images = x[first * image_len..(first + n) * image_len].chunks_exact(image_len);
    let mut buf = PlaneBuffers::new(tiles);
    for (i, image) in images.enumerate() {
        for (c, plane) in image.chunks_exact(g.in_plane()).enumerate() {
            let at = &mut v[c * columns + i * tiles.per_image()..];
            input_transform(
                plane,
                g,
                tiles,
                Spread::new(at, g.in_channels * columns),
                &mut buf,
            );
        }
    }
}

/// The 16 transformed output-gradient matrices `Ŷ[ξ]` (`[out, columns]`) of images
/// `first..first + n`.
fn transform_output_grads(
    dy: &[f32],
    g: &Geometry,
    tiles: &Tiling,
    first: usize,
    n: usize,
    yhat: &mut [f32],
) {
    let columns = n * tiles.per_image();
    let image_len = g.out_channels * g.out_plane();
    let images = dy[first * image_len..(first + n) * image_len].chunks_exact(image_len);
    let mut buf = PlaneBuffers::new(tiles);
    for (i, image) in images.enumerate() {
        for (k, map) in image.chunks_exact(g.out_plane()).enumerate() {
            let at = &mut yhat[k * columns + i * tiles.per_image()..];
            let spread = Spread::new(at, g.out_channels * columns);
            output_grad_transform(map, g, tiles, spread, &mut buf);
        }
    }
}

/// `y = epilogue(conv(x, w))`.
pub fn forward(x: &[f32], w: &[f32], post: &Epilogue, g: &Geometry) -> Vec<f32> {
    let tiles = Tiling::new(g);
    let u = filter_transform(w, g);
    let (c, k) = (g.in_channels, g.out_channels);
    let image_out = k * g.out_plane();
    let mut y = vec![0.0; g.output_len()];
    let chunk = tiles.images * image_out;
    let scratch = XI * (c + k) * tiles.columns();
    per_image(
        &mut y,
        chunk,
        scratch,
        tiles.macs(g),
        |group, out, scratch, parallelism| {
            let n = out.len() / image_out;
            let p = n * tiles.per_image();
            let (v, m) = scratch.split_at_mut(XI * c * tiles.columns());
            transform_inputs(x, g, &tiles, group * tiles.images, n, v);
            for xi in 0..XI {
                gemm_into(
                    &mut m[xi * k * p..(xi + 1) * k * p],
                    Mat::rows(&u[xi * k * c..(xi + 1) * k * c], k, c),
                    Mat::rows(&v[xi * c * p..(xi + 1) * c * p], c, p),
                    false,
                    parallelism,
                );
            }
            let mut buf = PlaneBuffers::new(&tiles);
            for (i, image) in out.chunks_exact_mut(image_out).enumerate() {
                for (channel, map) in image.chunks_exact_mut(g.out_plane()).enumerate() {
                    let at = &m[channel * p + i * tiles.per_image()..];
                    output_transform(Spread::new(at, k * p), g, &tiles, map, &mut buf);
                    post.apply_map(map, channel);
                }
            }
        },
    );
    y
}

/// `dL/dx`.
pub fn input_grad(w: &[f32], dy: &[f32], g: &Geometry) -> Vec<f32> {
    let tiles = Tiling::new(g);
    let u = filter_transform(w, g);
    let (c, k) = (g.in_channels, g.out_channels);
    let image_in = c * g.in_plane();
    let mut dx = vec![0.0; g.input_len()];
    let chunk = tiles.images * image_in;
    let scratch = XI * (c + k) * tiles.columns();
    per_image(
        &mut dx,
        chunk,
        scratch,
        tiles.macs(g),
        |group, dx, scratch, parallelism| {
            let n = dx.len() / image_in;
            let p = n * tiles.per_image();
            let (yhat, dv) = scratch.split_at_mut(XI * k * tiles.columns());
            transform_output_grads(dy, g, &tiles, group * tiles.images, n, yhat);
            for xi in 0..XI {
                gemm_into(
                    &mut dv[xi * c * p..(xi + 1) * c * p],
                    Mat::rows(&u[xi * k * c..(xi + 1) * k * c], k, c).t(),
                    Mat::rows(&yhat[xi * k * p..(xi + 1) * k * p], k, p),
                    false,
                    parallelism,
                );
            }
            let mut buf = PlaneBuffers::new(&tiles);
            for (i, image) in dx.chunks_exact_mut(image_in).enumerate() {
                for (channel, plane) in image.chunks_exact_mut(g.in_plane()).enumerate() {
                    let at = &dv[channel * p + i * tiles.per_image()..];
                    input_scatter(Spread::new(at, c * p), g, &tiles, plane, &mut buf);
                }
            }
        },
    );
    dx
}

/// `dL/dw`: `dU` summed over the groups in one partial sum per thread, then `Gᵀ·dU·G`.
pub fn weight_grad(x: &[f32], dy: &[f32], g: &Geometry) -> Vec<f32> {
    let tiles = Tiling::new(g);
    let (c, k) = (g.in_channels, g.out_channels);
    let (parallel, parallelism) = plan(tiles.groups, tiles.macs(g));
    let parts = if parallel {
        rayon::current_num_threads().min(tiles.groups)
    } else {
        1
    };
    let partial = |part: usize| {
        let mut du = vec![0.0; XI * k * c];
        let mut v = vec![0.0; XI * c * tiles.columns()];
        let mut yhat = vec![0.0; XI * k * tiles.columns()];
        for group in (part..tiles.groups).step_by(parts) {
            let first = group * tiles.images;
            let n = tiles.images.min(g.batch - first);
            let p = n * tiles.per_image();
            transform_inputs(x, g, &tiles, first, n, &mut v);
            transform_output_grads(dy, g, &tiles, first, n, &mut yhat);
            for xi in 0..XI {
                gemm_into(
                    &mut du[xi * k * c..(xi + 1) * k * c],
                    Mat::rows(&yhat[xi * k * p..(xi + 1) * k * p], k, p),
                    Mat::rows(&v[xi * c * p..(xi + 1) * c * p], c, p).t(),
                    true,
                    parallelism,
                );
            }
        }
        du
    };
    let parts: Vec<Vec<f32>> = (0..parts).into_par_iter().map(partial).collect();
    filter_grad(&sum_parts(parts), g)
}
