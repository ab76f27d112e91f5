//! Direct 3×3 convolutions at stride 1 or 2 on batches smaller than the thread count
//! (batch-1 serving), split over the threads by blocks of output channels.
//!
//! Why: at batch 1 seed-cnn's layers (1–64 channels on 48² to 6² maps) ran through im2col
//! at 14–41 G multiply-adds/s, the column matrix costing as much as the product it feeds,
//! and its filters were regrouped on every call. Here each thread spreads the image's source
//! planes ([`Spread`]) and sums its share of the output channels, a block of 8 at a time with
//! 3 steps × 8 channels of sums in registers across all input channels and taps (per channel
//! and tap: 3 loads, 8 broadcasts, 24 multiply-adds); the blocked filters are cached per
//! weight tensor ([`FilterCache`]). Under `--precision bf16` the layers with enough input
//! channels sum bf16 pairs of them with `vdpbf16ps` instead (twice the multiply-adds an
//! instruction, half the bytes of filters: VGG's 6² layers 1.8–1.9× faster). Maps of up to
//! 64 outputs with a block of 64 output channels per thread go to [`lanes`], which puts
//! output channels in the vector lanes (VGG's 6² layers another 1.33×), and in f32 at stride
//! 1 with many input channels sums them by Winograd F(2×2) ([`f22`]).

use std::arch::x86_64::{
    __m512, __m512bh, __m512i, _mm512_dpbf16_ps, _mm512_fmadd_ps, _mm512_loadu_ps,
    _mm512_loadu_si512, _mm512_set1_epi32, _mm512_set1_ps, _mm512_setzero_ps, _mm512_storeu_ps,
};
use std::mem::MaybeUninit;
use std::sync::Arc;

use burn::backend::flex::FlexTensor;
use multiversion::multiversion;

mod f22;
mod lanes;

use super::{BLOCK, Spread, Sweep, blocked_filters_by, fused_multiply_add};
use crate::ops::Precision;
use crate::ops::conv::bf16;
use crate::ops::conv::kernels::{Epilogue, Geometry};
use crate::ops::conv::wide::{LANES, TAPS};
use crate::ops::filter_cache::{Cached, FilterCache};
use crate::ops::output;
use crate::ops::prefetch::bytes_of;
use crate::ops::scratch::with_scratch;

/// 16-wide steps of outputs summed at once.
const STEPS: usize = 3;

/// Blocked filters of every live model's layers that run here, as many values as their
/// weights (seed-cnn's take 76 k, VGG's 4.1 M): 64 MB.
const MAX_CACHED: usize = 1 << 24;

static CACHE: FilterCache<Blocked> = FilterCache::new(MAX_CACHED);

/// A layer's filters by blocks of output channels (8 here, 64 in [`lanes`]): `[block][in][tap]
/// [width]`, or with bf16 operands `[block][in pair][tap][width]`, each value two input
/// channels' weights.
enum Blocked {
    F32(Vec<f32>),
    Bf16(Vec<u32>),
}

impl Cached for Blocked {
    fn len(&self) -> usize {
        match self {
            Self::F32(v) => v.len(),
            Self::Bf16(v) => v.len(),
        }
    }
}

impl Blocked {
    /// By blocks of `block` output channels ([`blocked_filters_by`]); bf16 only on a CPU with
    /// AVX-512 BF16 (checked: the kernels rely on it).
    fn new(w: &[f32], outs: usize, ins: usize, precision: Precision, block: usize) -> Self {
        assert!(
            precision == Precision::F32 || bf16::available(),
            "bf16 filters on a CPU without AVX-512 BF16"
        );
        let blocked = blocked_filters_by(w, outs, ins, false, block);
        match precision {
            Precision::F32 => Self::F32(blocked),
            Precision::Bf16 => Self::Bf16(
                blocked
                    .chunks_exact(ins * TAPS * block)
                    .flat_map(|filters| bf16::row_pairs(filters, ins, TAPS * block))
                    .collect(),
            ),
        }
    }

    /// The whole layer's operands: these filters and the spread `source` (`image_len` values,
    /// planes `plane` apart), which bf16 filters pair into `paired` first.
    fn operands<'a>(
        &'a self,
        source: &'a [f32],
        [ins, plane]: [usize; 2],
        paired: &'a mut Vec<u32>,
    ) -> Operands<'a> {
        match self {
            Self::F32(filters) => Operands::F32 { source, filters },
            Self::Bf16(filters) => {
                // Pairs of planes, the slack after the last one zeros as in `source`.
                *paired = bf16::row_pairs(source, ins, plane);
                paired.resize(source.len() - (ins - ins.div_ceil(2)) * plane, 0);
                Operands::Bf16 {
                    source: paired,
                    filters,
                }
            }
        }
    }
}

/// Whether `g`'s forward runs here at inference.
pub(super) fn applies(g: &Geometry) -> bool {
    g.groups == 1
        && g.batch < rayon::current_num_threads()
        && crate::ops::conv::has_avx512f()
        && fused_multiply_add()
        && !crate::ops::im2col_forced()
        && Spread::of(g).is_some()
}

/// `y = epilogue(conv(x, w))`, `w` the layer's weights (`[out][in][3][3]`, contiguous): with
/// bf16 operands under `--precision bf16` where the CPU has AVX-512 BF16 and they gain.
pub(super) fn forward(x: &[f32], w: &FlexTensor, post: &Epilogue, g: &Geometry) -> Vec<f32> {
    let use_bf16 = crate::ops::precision() == Precision::Bf16 && bf16::available() && bf16_gains(g);
    let precision = if use_bf16 {
        Precision::Bf16
    } else {
        Precision::F32
    };
    if lanes::applies(g) {
        return lanes::forward(x, w, post, g, precision);
    }
    forward_in(x, w, post, g, precision)
}

/// bf16 operands pair input channels, and each call pairs the image's planes: with few
/// channels that costs more than the doubled multiply-adds save. Measured at batch 1
/// (`conv_layers 401 seed 1 forward` and `201 vgg`, ms, f32 → bf16, 2 pairs): at stride 1
/// VGG's 512→512 at 6² 1.05–1.09 → 0.56, 256→512 0.54–0.57 → 0.28, seed-cnn's 32→64 at 12²
/// 0.037 → 0.021–0.024 and 16→32 at 24² 0.034 → 0.023–0.024, but 1→16 at 48² 0.009–0.011 →
/// 0.012–0.013; at stride 2 64→64 0.035 → 0.028–0.032, 32→32 0.030–0.031 → 0.032–0.034 and
/// 16→16 0.029 → 0.036–0.037.
fn bf16_gains(g: &Geometry) -> bool {
    let least = if g.stride == [1, 1] { 16 } else { 64 };
    g.in_channels >= least
}

/// [`forward`] with operands of `precision` (bf16 only where the CPU has AVX-512 BF16).
fn forward_in(
    x: &[f32],
    w: &FlexTensor,
    post: &Epilogue,
    g: &Geometry,
    precision: Precision,
) -> Vec<f32> {
    let layer = Layer {
        cache: &CACHE,
        block: BLOCK,
        precision,
    };
    let wide_planes = |sweep: &Sweep| BLOCK * sweep.wide;
    let per_block = |operands: Operands<'_>,
                     _ahead: &[u8],
                     block: usize,
                     sweep: &Sweep,
                     maps: &mut [MaybeUninit<f32>],
                     wide_out: &mut [f32]| {
        // SAFETY: `applies` checked that the CPU has AVX-512F; bf16 filters exist only where
        // it has AVX-512 BF16.
        unsafe { correlate_block(operands, sweep, wide_out) };
        for (b, map) in maps.chunks_exact_mut(g.out_plane()).enumerate() {
            let (scale, shift) = post.affine(block * BLOCK + b);
            let wide = &wide_out[b * sweep.wide..];
            narrow_affine(map, wide, sweep, [scale, shift], post.relu);
        }
    };
    // SAFETY: `narrow_affine` writes every value of each map of a block.
    unsafe { layer.by_blocks(x, w, g, wide_planes, |_, _, _| {}, per_block) }
}

/// How a direct batch-1 kernel keeps and splits a layer's filters: by blocks of `block` output
/// channels, in `cache`, with operands of `precision`.
struct Layer {
    cache: &'static FilterCache<Blocked>,
    block: usize,
    precision: Precision,
}

impl Layer {
    /// Every output map of `g` from blocks of output channels, shared out over the threads in
    /// parts of whole blocks ([`Part`]). Each part spreads its image's planes (and pairs them
    /// for bf16) once and calls `prepare(operands, sweep, scratch)`, then calls
    /// `per_block(operands, ahead, block, sweep, maps, scratch)` for each of its blocks: the
    /// block's operands, the bytes of the filters the part reads next (empty after its last
    /// block; a kernel may prefetch them), the block's index, the spread layout, its maps,
    /// uninitialised, and `scratch(sweep)` values of scratch, the same for every block (what
    /// `prepare` left there stays).
    ///
    /// # Safety
    /// `per_block` must write every value of the maps it is given: they become the output.
    unsafe fn by_blocks<F>(
        &self,
        x: &[f32],
        w: &FlexTensor,
        g: &Geometry,
        scratch: impl Fn(&Sweep) -> usize,
        prepare: impl Fn(Operands, &Sweep, &mut [f32]) + Sync + Send,
        per_block: F,
    ) -> Vec<f32>
    where
        F: Fn(Operands, &[u8], usize, &Sweep, &mut [MaybeUninit<f32>], &mut [f32]) + Sync + Send,
    {
        let (ins, outs, block) = (g.in_channels, g.out_channels, self.block);
        let variant = (self.precision == Precision::Bf16) as usize;
        let filters: Arc<Blocked> = self.cache.get(w, [outs, ins], variant, |values| {
            Blocked::new(values, outs, ins, self.precision, block)
        });
        let spread = Spread::of(g).expect("checked by applies");
        let sweep = spread.sweep(g);
        let image_len = spread.image_len(g, &sweep);
        let scratch = scratch(&sweep);
        let image_in = ins * g.in_plane();
        let (plane, blocks) = (g.out_plane(), outs.div_ceil(block));
        let part = Part::of(g, block);
        let part_maps = (part.blocks * block).min(outs) * plane;
        output::par_chunks_written(g.output_len(), part_maps, 1, |task, maps| {
            let (n, first_block) = (task / part.per_image, task % part.per_image * part.blocks);
            with_scratch(image_len + scratch, |buf| {
                let (source, scratch) = buf.split_at_mut(image_len);
                spread.spread_image(&x[n * image_in..][..image_in], g, source);
                let mut paired = Vec::new();
                let layer = filters.operands(source, [ins, sweep.plane], &mut paired);
                prepare(layer, &sweep, scratch);
                let part_blocks = maps.len().div_ceil(block * plane);
                for (k, maps) in maps.chunks_mut(block * plane).enumerate() {
                    let at = first_block + k;
                    let ahead = if k + 1 < part_blocks {
                        layer.block(at + 1, blocks).filter_bytes()
                    } else {
                        &[]
                    };
                    per_block(layer.block(at, blocks), ahead, at, &sweep, maps, scratch);
                }
                // SAFETY: `per_block` wrote every value of each block's maps (the caller's
                // promise), and the blocks' maps tile `maps` (the output is whole maps).
                unsafe { output::assume_written(maps) }
            })
        })
    }
}

/// `map`'s rows of `out_w` values from a wide plane (rows `row_width` apart), each
/// `v·scale + shift`, then `max(·, 0)` when `relu`: every value of `map` written, in one pass
/// (zeroing the output, narrowing and the epilogue were three).
#[multiversion(targets = "simd")]
fn narrow_affine(
    map: &mut [MaybeUninit<f32>],
    wide: &[f32],
    sweep: &Sweep,
    [scale, shift]: [f32; 2],
    relu: bool,
) {
    for (oy, row) in map.chunks_exact_mut(sweep.out_w).enumerate() {
        let src = &wide[oy * sweep.row_width..][..sweep.out_w];
        if relu {
            for (o, &v) in row.iter_mut().zip(src) {
                o.write((v * scale + shift).max(0.0));
            }
        } else {
            for (o, &v) in row.iter_mut().zip(src) {
                o.write(v * scale + shift);
            }
        }
    }
}

/// How each image's output channels are shared out: `per_image` parts of `blocks` blocks of
/// 8, enough parts to busy every thread.
///
/// Each part spreads its image's planes itself: the threads then read and write only their
/// own copies (spread once and shared, the planes moved between the cores' caches on every
/// call, and spreading took 37 % of seed-cnn's 16→16/2 at batch 1).
struct Part {
    blocks: usize,
    per_image: usize,
}

impl Part {
    /// For blocks of `block` output channels.
    fn of(g: &Geometry, block: usize) -> Self {
        let blocks = g.out_channels.div_ceil(block);
        let wanted = rayon::current_num_threads()
            .div_ceil(g.batch)
            .clamp(1, blocks);
        let per_part = blocks.div_ceil(wanted);
        // Parts are chunks of the whole output: across images, a short last part would
        // shift the next image's parts.
        let short_last = (g.out_channels % (per_part * block)) != 0;
        let per_part = if g.batch > 1 && short_last {
            blocks
        } else {
            per_part
        };
        Self {
            blocks: per_part,
            per_image: blocks.div_ceil(per_part),
        }
    }
}

/// One layer's or one block's operands: the spread planes and the filters, each step one input
/// channel (`f32`) or a pair of them (bf16 pairs, summed by `vdpbf16ps`).
#[derive(Clone, Copy)]
enum Operands<'a> {
    F32 {
        source: &'a [f32],
        filters: &'a [f32],
    },
    Bf16 {
        source: &'a [u32],
        filters: &'a [u32],
    },
}

impl<'a> Operands<'a> {
    /// With the filters of block `block` of `blocks` only (the source stays whole).
    fn block(self, block: usize, blocks: usize) -> Self {
        fn of<T>(filters: &[T], block: usize, blocks: usize) -> &[T] {
            let per_block = filters.len() / blocks;
            &filters[block * per_block..][..per_block]
        }
        match self {
            Self::F32 { source, filters } => Self::F32 {
                source,
                filters: of(filters, block, blocks),
            },
            Self::Bf16 { source, filters } => Self::Bf16 {
                source,
                filters: of(filters, block, blocks),
            },
        }
    }

    /// The filters as bytes, to prefetch.
    fn filter_bytes(&self) -> &'a [u8] {
        match self {
            Self::F32 { filters, .. } => bytes_of(filters),
            Self::Bf16 { filters, .. } => bytes_of(filters),
        }
    }

    /// Values in the source and in the filters.
    fn lens(&self) -> [usize; 2] {
        match self {
            Self::F32 { source, filters } => [source.len(), filters.len()],
            Self::Bf16 { source, filters } => [source.len(), filters.len()],
        }
    }
}

/// `out[b][p] = Σ_(c, t) filters[c][t][b] · source[c·plane + p + offsets[t]]` for one block
/// of 8 output channels, over every step of the sweep's wide planes.
///
/// # Safety
/// The CPU must have AVX-512F, and AVX-512 BF16 for bf16 operands.
#[target_feature(enable = "avx512f")]
unsafe fn correlate_block(operands: Operands, sweep: &Sweep, out: &mut [f32]) {
    let [source_len, filters_len] = operands.lens();
    let ins = filters_len / (TAPS * BLOCK);
    let farthest = sweep.offsets.iter().max().copied().unwrap_or(0);
    assert!(
        (ins - 1) * sweep.plane + farthest + sweep.wide <= source_len
            && BLOCK * sweep.wide <= out.len()
            && sweep.wide % LANES == 0,
        "direct block out of bounds"
    );
    let steps = sweep.wide / LANES;
    let mut step = 0;
    while step < steps {
        let at = step * LANES;
        macro_rules! with {
            ($kernel:ident, $source:expr, $filters:expr) => {
                match steps - step {
                    1 => $kernel::<1>($source, sweep, $filters, ins, at, out),
                    2 => $kernel::<2>($source, sweep, $filters, ins, at, out),
                    _ => $kernel::<STEPS>($source, sweep, $filters, ins, at, out),
                }
            };
        }
        // SAFETY: AVX-512F (and BF16 for its operands), and every step's reads and writes
        // lie within the bounds asserted.
        unsafe {
            match operands {
                Operands::F32 { source, filters } => with!(steps_kernel, source, filters),
                Operands::Bf16 { source, filters } => with!(steps_kernel_bf16, source, filters),
            }
        }
        step += STEPS;
    }
}

/// [`correlate_block`] for the `S` steps from output `at`, the sums in registers throughout.
///
/// # Safety
/// AVX-512F, and the bounds `correlate_block` asserts.
#[target_feature(enable = "avx512f")]
#[inline]
unsafe fn steps_kernel<const S: usize>(
    source: &[f32],
    sweep: &Sweep,
    filters: &[f32],
    ins: usize,
    at: usize,
    out: &mut [f32],
) {
    let mut acc = [[_mm512_setzero_ps(); S]; BLOCK];
    let (src, w) = (source.as_ptr(), filters.as_ptr());
    for c in 0..ins {
        for (t, &offset) in sweep.offsets.iter().enumerate() {
            let first = c * sweep.plane + at + offset;
            // SAFETY: within `source` and `filters` by the caller's bounds.
            let inputs: [__m512; S] =
                std::array::from_fn(|s| unsafe { _mm512_loadu_ps(src.add(first + s * LANES)) });
            for (b, sums) in acc.iter_mut().enumerate() {
                let weight = _mm512_set1_ps(unsafe { *w.add((c * TAPS + t) * BLOCK + b) });
                for (sum, input) in sums.iter_mut().zip(inputs) {
                    *sum = _mm512_fmadd_ps(input, weight, *sum);
                }
            }
        }
    }
    // SAFETY: the caller's bounds.
    unsafe { store_block(&acc, sweep, at, out) };
}

/// The same on bf16 pairs of input channels: `vdpbf16ps` adds both products of a pair.
///
/// # Safety
/// AVX-512F and AVX-512 BF16, and the bounds `correlate_block` asserts.
#[target_feature(enable = "avx512f,avx512bf16")]
#[inline]
unsafe fn steps_kernel_bf16<const S: usize>(
    source: &[u32],
    sweep: &Sweep,
    filters: &[u32],
    pairs: usize,
    at: usize,
    out: &mut [f32],
) {
    let mut acc = [[_mm512_setzero_ps(); S]; BLOCK];
    let (src, w) = (source.as_ptr(), filters.as_ptr());
    for c in 0..pairs {
        for (t, &offset) in sweep.offsets.iter().enumerate() {
            let first = c * sweep.plane + at + offset;
            // SAFETY: within `source` and `filters` by the caller's bounds; 16 `u32` are 32
            // bf16.
            let inputs: [__m512bh; S] = std::array::from_fn(|s| unsafe {
                let v = _mm512_loadu_si512(src.add(first + s * LANES).cast());
                std::mem::transmute::<__m512i, __m512bh>(v)
            });
            for (b, sums) in acc.iter_mut().enumerate() {
                let pair = unsafe { *w.add((c * TAPS + t) * BLOCK + b) } as i32;
                let weight: __m512bh = unsafe { std::mem::transmute(_mm512_set1_epi32(pair)) };
                for (sum, input) in sums.iter_mut().zip(inputs) {
                    *sum = _mm512_dpbf16_ps(*sum, input, weight);
                }
            }
        }
    }
    // SAFETY: the caller's bounds.
    unsafe { store_block(&acc, sweep, at, out) };
}

/// A block's sums into its 8 wide planes, from output `at`.
///
/// # Safety
/// AVX-512F, and the bounds `correlate_block` asserts.
#[target_feature(enable = "avx512f")]
#[inline]
unsafe fn store_block<const S: usize>(
    acc: &[[__m512; S]; BLOCK],
    sweep: &Sweep,
    at: usize,
    out: &mut [f32],
) {
    let out = out.as_mut_ptr();
    for (b, sums) in acc.iter().enumerate() {
        for (s, sum) in sums.iter().enumerate() {
            // SAFETY: within `out` by the caller's bounds.
            unsafe { _mm512_storeu_ps(out.add(b * sweep.wide + at + s * LANES), *sum) };
        }
    }
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;
    use crate::ops::conv::kernels;
    use crate::ops::test_util::{
        assert_close_values, avx512_or_skip, values, weights_3x3, worst_difference,
    };

    pub(super) fn geometry(
        batch: usize,
        channels: [usize; 2],
        side: [usize; 2],
        stride: usize,
        pad: usize,
    ) -> Geometry {
        let out = |axis: usize| (side[axis] + 2 * pad - 3) / stride + 1;
        Geometry {
            batch,
            in_channels: channels[0],
            in_size: side,
            out_channels: channels[1],
            kernel: [3, 3],
            stride: [stride, stride],
            pad: [pad, pad],
            dilation: [1, 1],
            out_size: [out(0), out(1)],
            groups: 1,
        }
    }

    /// `kernel`'s output for `g` (weights of `seed`, a bias + ReLU epilogue) and im2col's.
    /// The kernel runs twice: the second call, served from the filter cache, must give the
    /// same values.
    pub(super) fn against_im2col(
        g: &Geometry,
        seed: u64,
        kernel: impl Fn(&[f32], &FlexTensor, &Epilogue) -> Vec<f32>,
    ) -> (Vec<f32>, Vec<f32>) {
        let x = values(g.input_len(), 1);
        let w = weights_3x3(g.out_channels, g.in_channels, seed);
        let bias = values(g.out_channels, 4);
        let post = Epilogue {
            shift: Some(&bias),
            relu: true,
            ..Epilogue::default()
        };
        let ours = kernel(&x, &w, &post);
        assert_eq!(ours, kernel(&x, &w, &post), "{g:?}: from the cache");
        (
            ours,
            kernels::dense_forward(&x, crate::ops::f32s(&w), &post, g),
        )
    }

    #[test]
    fn matches_im2col_with_cached_filters() {
        if !avx512_or_skip() {
            return;
        }
        // On four threads, batches of 1–3: one input channel, strides 1 and 2, same, valid
        // and wider padding, odd sides, 6² maps (one call of fewer than 3 steps), whole
        // and partial blocks of 8 outputs shared out in parts of one or more blocks, or
        // whole images; with a bias + ReLU epilogue.
        let cases = [
            geometry(1, [1, 16], [48, 48], 1, 1),
            geometry(1, [16, 16], [13, 12], 2, 1),
            geometry(2, [9, 7], [11, 13], 1, 1),
            geometry(3, [8, 20], [9, 7], 2, 0),
            geometry(1, [5, 24], [6, 6], 1, 2),
            geometry(2, [12, 32], [6, 7], 1, 1),
            geometry(1, [64, 7], [6, 6], 1, 1),
            geometry(1, [40, 36], [5, 5], 2, 1),
        ];
        let pool = rayon::ThreadPoolBuilder::new().num_threads(4).build();
        pool.expect("thread pool").install(|| {
            for g in cases {
                assert!(applies(&g), "{g:?}");
                for seed in [2, 5] {
                    // The second weights have the first's shape: not served its filters.
                    let (ours, reference) =
                        against_im2col(&g, seed, |x, w, post| forward(x, w, post, &g));
                    assert_close_values(&ours, &reference, 1e-4, &format!("{g:?}"));
                }
            }
        });
    }

    #[test]
    fn bf16_operands() {
        if !avx512_or_skip() || !bf16::available() {
            return;
        }
        // Both operands rounded to bf16 (8 bits of mantissa), sums in f32: off by about 2⁻⁸
        // of a term. Odd channel counts leave a pair half empty; stride 2 reads phase planes.
        let cases = [
            geometry(1, [256, 40], [6, 6], 1, 1),
            geometry(1, [33, 24], [12, 12], 1, 1),
            geometry(1, [17, 16], [13, 12], 2, 1),
        ];
        let pool = rayon::ThreadPoolBuilder::new().num_threads(2).build();
        pool.expect("thread pool").install(|| {
            for g in cases {
                let bf16 = |x: &[f32], w: &FlexTensor, post: &Epilogue| {
                    forward_in(x, w, post, &g, Precision::Bf16)
                };
                let (ours, reference) = against_im2col(&g, 2, bf16);
                let worst = worst_difference(&ours, &reference, &format!("{g:?}"));
                // Rounded (so the bf16 kernel ran), but no more than bf16 explains.
                assert!((1e-4..5e-3).contains(&worst), "{g:?}: {worst}");
            }
        });
    }

    #[test]
    fn parts_busy_every_thread() {
        let parts = |batch, outs, threads| {
            let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build();
            let part = pool
                .expect("thread pool")
                .install(|| Part::of(&geometry(batch, [8, outs], [6, 6], 1, 1), BLOCK));
            (part.blocks, part.per_image)
        };
        assert_eq!(parts(1, 16, 2), (1, 2));
        assert_eq!(parts(1, 64, 2), (4, 2));
        assert_eq!(parts(1, 7, 2), (1, 1));
        assert_eq!(parts(1, 20, 4), (1, 3));
        assert_eq!(parts(2, 32, 4), (2, 2));
        // A short last part would shift the second image's parts.
        assert_eq!(parts(2, 20, 4), (3, 1));
    }
}
