//! Data augmentation with Keras `ImageDataGenerator` semantics, plus random crop and
//! random erasing.
//!
//! Keras draws, per image: a rotation angle in ±`rotation_range` degrees, shifts in
//! ±`width_shift_range`/`height_shift_range` (fractions of the side), zoom factors for x and y
//! independently in [1 − `zoom_range`, 1 + `zoom_range`] (above 1 zooms *out*, as in Keras),
//! and a coin for `horizontal_flip`. It maps each output pixel through rotation · shift · zoom
//! about the image centre, samples the input bilinearly and fills outside points by
//! `fill_mode`. The warp is written here rather than taken from `imageproc` because
//! `imageproc::geometric_transformations` only fills with a constant, and Keras's default
//! (and the recipe's) is `nearest`.
//!
//! Every draw comes from a generator seeded by (seed, epoch, position), so an epoch is
//! reproducible and augmentation can run on any number of threads.

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use crate::IMAGE_SIDE;

/// How points outside the image are filled (Keras `fill_mode`; `constant` uses `cval` 0).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FillMode {
    #[default]
    Nearest,
    Reflect,
    Wrap,
    Constant,
}

/// Augmentation settings, named as in Keras. The default draws nothing (no augmentation).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct AugmentConfig {
    pub horizontal_flip: bool,
    /// Degrees.
    pub rotation_range: f32,
    pub zoom_range: f32,
    /// Fraction of the width.
    pub width_shift_range: f32,
    /// Fraction of the height.
    pub height_shift_range: f32,
    pub fill_mode: FillMode,
    /// Random crop after padding by this many pixels on each side (0 = off).
    pub random_crop_padding: usize,
    /// Probability of random erasing (Zhong et al. 2017) of one rectangle (0 = off).
    pub random_erasing: f32,
}

impl Default for AugmentConfig {
    fn default() -> Self {
        Self::none()
    }
}

impl AugmentConfig {
    pub fn none() -> Self {
        Self {
            horizontal_flip: false,
            rotation_range: 0.0,
            zoom_range: 0.0,
            width_shift_range: 0.0,
            height_shift_range: 0.0,
            fill_mode: FillMode::Nearest,
            random_crop_padding: 0,
            random_erasing: 0.0,
        }
    }

    /// The classic FER2013 recipe: `ImageDataGenerator(rotation_range=10, zoom_range=0.1,
    /// width_shift_range=0.1, height_shift_range=0.1, horizontal_flip=True)`.
    pub fn recipe() -> Self {
        Self {
            horizontal_flip: true,
            rotation_range: 10.0,
            zoom_range: 0.1,
            width_shift_range: 0.1,
            height_shift_range: 0.1,
            ..Self::none()
        }
    }

    pub fn is_none(&self) -> bool {
        !self.horizontal_flip
            && self.rotation_range == 0.0
            && self.zoom_range == 0.0
            && self.width_shift_range == 0.0
            && self.height_shift_range == 0.0
            && self.random_crop_padding == 0
            && self.random_erasing == 0.0
    }
}

impl Transform {
    /// No change at all.
    pub const IDENTITY: Transform = Transform {
        theta_degrees: 0.0,
        shift_x: 0.0,
        shift_y: 0.0,
        zoom_x: 1.0,
        zoom_y: 1.0,
        flip: false,
        crop_dx: 0,
        crop_dy: 0,
        erase: None,
    };
}

/// The random draws for one image.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Transform {
    pub theta_degrees: f32,
    /// Shifts in input pixels (x = columns, y = rows).
    pub shift_x: f32,
    pub shift_y: f32,
    pub zoom_x: f32,
    pub zoom_y: f32,
    pub flip: bool,
    pub crop_dx: i32,
    pub crop_dy: i32,
    /// (top, left, height, width, fill seed) of the erased rectangle, in output pixels.
    pub erase: Option<(usize, usize, usize, usize, u64)>,
}

/// Draws transforms and applies them to 48×48 u8 faces, producing f32 pixels (0–255) at an
/// output side of 48 or more (resizing is folded into the same bilinear warp).
#[derive(Debug, Clone)]
pub struct Augmenter {
    config: AugmentConfig,
    seed: u64,
}

impl Augmenter {
    pub fn new(config: AugmentConfig, seed: u64) -> Self {
        Self { config, seed }
    }

    pub fn config(&self) -> &AugmentConfig {
        &self.config
    }

    /// The transform of the image at `position` of `epoch`: the same every time it is asked.
    pub fn draw(&self, epoch: usize, position: usize, out_side: usize) -> Transform {
        let c = &self.config;
        let mut rng = ChaCha8Rng::seed_from_u64(mix(self.seed, epoch as u64, position as u64));
        let mut symmetric = |range: f32| {
            if range > 0.0 {
                rng.random_range(-range..=range)
            } else {
                0.0
            }
        };
        let theta_degrees = symmetric(c.rotation_range);
        let shift_x = symmetric(c.width_shift_range) * IMAGE_SIDE as f32;
        let shift_y = symmetric(c.height_shift_range) * IMAGE_SIDE as f32;
        let zoom_x = 1.0 + symmetric(c.zoom_range);
        let zoom_y = 1.0 + symmetric(c.zoom_range);
        let flip = c.horizontal_flip && rng.random_bool(0.5);
        let pad = c.random_crop_padding as i32;
        let (crop_dx, crop_dy) = if pad > 0 {
            (rng.random_range(-pad..=pad), rng.random_range(-pad..=pad))
        } else {
            (0, 0)
        };
        let erase = (c.random_erasing > 0.0
            && rng.random_bool(c.random_erasing.clamp(0.0, 1.0) as f64))
        .then(|| erase_rectangle(&mut rng, out_side))
        .flatten();
        Transform {
            theta_degrees,
            shift_x,
            shift_y,
            zoom_x,
            zoom_y,
            flip,
            crop_dx,
            crop_dy,
            erase,
        }
    }

    /// Augments one image into `out` (`out_side`² values, 0–255).
    pub fn apply(&self, image: &[u8], transform: &Transform, out_side: usize, out: &mut [f32]) {
        warp(image, transform, self.config.fill_mode, out_side, out);
        if transform.flip {
            out.chunks_exact_mut(out_side).for_each(<[f32]>::reverse);
        }
        if let Some((top, left, height, width, fill_seed)) = transform.erase {
            let mut rng = ChaCha8Rng::seed_from_u64(fill_seed);
            for row in top..top + height {
                for value in &mut out[row * out_side + left..row * out_side + left + width] {
                    *value = rng.random_range(0.0..=255.0);
                }
            }
        }
    }

    /// Draws and applies in one call.
    pub fn augment(
        &self,
        image: &[u8],
        epoch: usize,
        position: usize,
        out_side: usize,
    ) -> Vec<f32> {
        let transform = self.draw(epoch, position, out_side);
        let mut out = vec![0.0; out_side * out_side];
        self.apply(image, &transform, out_side, &mut out);
        out
    }
}

/// A rectangle of 2–33 % of the area with aspect ratio in [0.3, 3.3] (log-uniform), as in
/// Zhong et al.; `None` if ten draws do not fit.
fn erase_rectangle(rng: &mut ChaCha8Rng, side: usize) -> Option<(usize, usize, usize, usize, u64)> {
    let area = (side * side) as f32;
    for _ in 0..10 {
        let target = area * rng.random_range(0.02..=0.33f32);
        let aspect = rng.random_range(0.3f32.ln()..=(1.0 / 0.3f32).ln()).exp();
        let height = (target * aspect).sqrt().round() as usize;
        let width = (target / aspect).sqrt().round() as usize;
        if height > 0 && width > 0 && height < side && width < side {
            let top = rng.random_range(0..=side - height);
            let left = rng.random_range(0..=side - width);
            return Some((top, left, height, width, rng.random()));
        }
    }
    None
}

/// SplitMix64 over the three keys: well-spread generator seeds from small integers.
fn mix(seed: u64, epoch: u64, position: u64) -> u64 {
    let mut z = seed
        ^ epoch.wrapping_mul(0x9E37_79B9_7F4A_7C15)
        ^ position.wrapping_mul(0xC2B2_AE3D_27D4_EB4F);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// Inverse-maps every output pixel to the 48×48 input: centre, scale to input size, zoom,
/// shift, rotate, un-centre; then the crop offset; then bilinear sampling with `fill`.
fn warp(image: &[u8], t: &Transform, fill: FillMode, out_side: usize, out: &mut [f32]) {
    let geometric = Transform {
        flip: false,
        erase: None,
        ..*t
    };
    if out_side == IMAGE_SIDE && geometric == Transform::IDENTITY {
        // Evaluation and serving: every pixel maps onto itself, so skip the sampling.
        out.iter_mut().zip(image).for_each(|(o, &p)| *o = p as f32);
    } else {
        sample(image, t, fill, out_side, out);
    }
}

/// [`warp`] by bilinear sampling at every output pixel.
fn sample(image: &[u8], t: &Transform, fill: FillMode, out_side: usize, out: &mut [f32]) {
    let n = IMAGE_SIDE as f32;
    let centre_in = (n - 1.0) / 2.0;
    let centre_out = (out_side as f32 - 1.0) / 2.0;
    let scale = n / out_side as f32;
    let (sin, cos) = t.theta_degrees.to_radians().sin_cos();
    for row in 0..out_side {
        for col in 0..out_side {
            let x = (col as f32 - centre_out) * scale * t.zoom_x + t.shift_x;
            let y = (row as f32 - centre_out) * scale * t.zoom_y + t.shift_y;
            let in_x = cos * x - sin * y + centre_in + t.crop_dx as f32;
            let in_y = sin * x + cos * y + centre_in + t.crop_dy as f32;
            out[row * out_side + col] = bilinear(image, in_x, in_y, fill);
        }
    }
}

fn bilinear(image: &[u8], x: f32, y: f32, fill: FillMode) -> f32 {
    let (x0, y0) = (x.floor(), y.floor());
    let (fx, fy) = (x - x0, y - y0);
    let at = |xi: f32, yi: f32| -> f32 {
        match (fill_index(xi as i64, fill), fill_index(yi as i64, fill)) {
            (Some(c), Some(r)) => image[r * IMAGE_SIDE + c] as f32,
            _ => 0.0,
        }
    };
    let top = at(x0, y0) * (1.0 - fx) + if fx > 0.0 { at(x0 + 1.0, y0) * fx } else { 0.0 };
    if fy == 0.0 {
        return top;
    }
    let bottom = at(x0, y0 + 1.0) * (1.0 - fx)
        + if fx > 0.0 {
            at(x0 + 1.0, y0 + 1.0) * fx
        } else {
            0.0
        };
    top * (1.0 - fy) + bottom * fy
}

/// Maps an integer coordinate into 0..48 by the fill mode; `None` means the constant 0.
fn fill_index(i: i64, fill: FillMode) -> Option<usize> {
    let n = IMAGE_SIDE as i64;
    if (0..n).contains(&i) {
        return Some(i as usize);
    }
    match fill {
        FillMode::Nearest => Some(i.clamp(0, n - 1) as usize),
        FillMode::Wrap => Some(i.rem_euclid(n) as usize),
        FillMode::Reflect => {
            // d c b a | a b c d | d c b a
            let period = 2 * n;
            let m = i.rem_euclid(period);
            Some(if m < n { m } else { period - 1 - m } as usize)
        }
        FillMode::Constant => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::IMAGE_PIXELS;

    fn gradient() -> Vec<u8> {
        (0..IMAGE_PIXELS)
            .map(|i| ((i % 48) * 5 + i / 48) as u8)
            .collect()
    }

    fn as_f32(image: &[u8]) -> Vec<f32> {
        image.iter().map(|&p| p as f32).collect()
    }

    #[test]
    fn zero_ranges_are_identity() {
        let image = gradient();
        let augmenter = Augmenter::new(AugmentConfig::none(), 3);
        for position in 0..5 {
            assert_eq!(augmenter.augment(&image, 0, position, 48), as_f32(&image));
        }
    }

    #[test]
    fn identity_shortcut_matches_sampling() {
        let image = gradient();
        let (mut fast, mut sampled) = (vec![0.0; IMAGE_PIXELS], vec![0.0; IMAGE_PIXELS]);
        let t = Transform::IDENTITY;
        warp(&image, &t, FillMode::Nearest, IMAGE_SIDE, &mut fast);
        sample(&image, &t, FillMode::Nearest, IMAGE_SIDE, &mut sampled);
        assert_eq!(fast, sampled);
        assert_eq!(fast, as_f32(&image));
    }

    #[test]
    fn flip_twice_is_identity() {
        let image = gradient();
        let config = AugmentConfig {
            horizontal_flip: true,
            ..AugmentConfig::none()
        };
        let augmenter = Augmenter::new(config, 1);
        let mut flip = augmenter.draw(0, 0, 48);
        flip.flip = true;
        let mut once = vec![0.0; IMAGE_PIXELS];
        augmenter.apply(&image, &flip, 48, &mut once);
        assert_ne!(once, as_f32(&image));
        assert_eq!(once[0], image[47] as f32);
        let once_u8: Vec<u8> = once.iter().map(|&v| v as u8).collect();
        let mut twice = vec![0.0; IMAGE_PIXELS];
        augmenter.apply(&once_u8, &flip, 48, &mut twice);
        assert_eq!(twice, as_f32(&image));
    }

    #[test]
    fn recipe_output_has_shape_range_and_varies() {
        let image = gradient();
        let config = AugmentConfig {
            random_crop_padding: 4,
            random_erasing: 0.5,
            ..AugmentConfig::recipe()
        };
        let augmenter = Augmenter::new(config, 42);
        let a = augmenter.augment(&image, 0, 0, 64);
        assert_eq!(a.len(), 64 * 64);
        assert!(a.iter().all(|v| (0.0..=255.0).contains(v)));
        assert_eq!(
            a,
            augmenter.augment(&image, 0, 0, 64),
            "same seed, epoch, position"
        );
        assert_ne!(
            a,
            augmenter.augment(&image, 1, 0, 64),
            "another epoch draws anew"
        );
        let t = augmenter.draw(0, 7, 48);
        assert!(t.theta_degrees.abs() <= 10.0 && (0.9..=1.1).contains(&t.zoom_x));
        assert!(t.shift_x.abs() <= 4.8 && t.crop_dx.abs() <= 4);
    }

    #[test]
    fn shift_moves_content_and_fills_nearest() {
        let image = gradient();
        let augmenter = Augmenter::new(AugmentConfig::none(), 0);
        let mut t = augmenter.draw(0, 0, 48);
        t.shift_x = 2.0;
        let mut out = vec![0.0; IMAGE_PIXELS];
        augmenter.apply(&image, &t, 48, &mut out);
        // Output column c samples input column c + 2; past the edge, the edge repeats.
        assert_eq!(out[10], image[12] as f32);
        assert_eq!(out[47], image[47] as f32);
        assert_eq!(out[46], image[47] as f32);
    }

    #[test]
    fn fill_modes_match_keras() {
        assert_eq!(fill_index(-1, FillMode::Nearest), Some(0));
        assert_eq!(fill_index(-1, FillMode::Reflect), Some(0));
        assert_eq!(fill_index(-2, FillMode::Reflect), Some(1));
        assert_eq!(fill_index(48, FillMode::Reflect), Some(47));
        assert_eq!(fill_index(-1, FillMode::Wrap), Some(47));
        assert_eq!(fill_index(-1, FillMode::Constant), None);
    }
}
