//! Cutting a face out of a picture the way FER2013's faces were cut: a margin around the
//! detector's box, squared, clamped to the picture, grey, 48×48.

use image::imageops::FilterType;
use image::{GrayImage, imageops};
use serde::{Deserialize, Serialize};

use crate::BoundingBox;

/// Extra pixels around the detector's box (the recipe used 20 left/right, 40 top/bottom),
/// in pixels of a 100-pixel-wide face: they scale with the face.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Margins {
    pub horizontal: u32,
    pub vertical: u32,
}

impl Default for Margins {
    fn default() -> Self {
        Self {
            horizontal: 20,
            vertical: 40,
        }
    }
}

/// The square crop region for a face: the box grown by the margins, squared about its
/// centre to the larger side, then shifted (and if need be shrunk) to lie inside the picture.
pub fn crop_region(bbox: &BoundingBox, margins: Margins, width: u32, height: u32) -> BoundingBox {
    let per_pixel = bbox.width.max(1) as f64 / 100.0;
    let w = bbox.width as f64 + 2.0 * margins.horizontal as f64 * per_pixel;
    let h = bbox.height as f64 + 2.0 * margins.vertical as f64 * per_pixel;
    let side = w.max(h).min(width.min(height) as f64).max(1.0);
    let cx = bbox.x as f64 + bbox.width as f64 / 2.0;
    let cy = bbox.y as f64 + bbox.height as f64 / 2.0;
    let x = (cx - side / 2.0).clamp(0.0, width as f64 - side);
    let y = (cy - side / 2.0).clamp(0.0, height as f64 - side);
    BoundingBox {
        x: x.round() as i32,
        y: y.round() as i32,
        width: side.round() as u32,
        height: side.round() as u32,
    }
}

/// The face as a 48×48 grey image, row-major.
pub fn crop_face(picture: &GrayImage, bbox: &BoundingBox, margins: Margins) -> Vec<u8> {
    let side = ferrite_data::IMAGE_SIDE as u32;
    let region = crop_region(bbox, margins, picture.width(), picture.height());
    let view = imageops::crop_imm(
        picture,
        region.x.max(0) as u32,
        region.y.max(0) as u32,
        region.width.max(1),
        region.height.max(1),
    );
    imageops::resize(&view.to_image(), side, side, FilterType::Triangle).into_raw()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn region_is_square_inside_and_contains_the_box() {
        let bbox = BoundingBox {
            x: 100,
            y: 80,
            width: 100,
            height: 100,
        };
        let r = crop_region(&bbox, Margins::default(), 640, 480);
        assert_eq!((r.width, r.height), (180, 180));
        assert!(r.x <= 100 && r.y <= 80 && r.x + 180 >= 200 && r.y + 180 >= 180);
        let corner = BoundingBox {
            x: 0,
            y: 0,
            width: 60,
            height: 60,
        };
        let r = crop_region(&corner, Margins::default(), 640, 480);
        assert_eq!((r.x, r.y), (0, 0));
        let huge = BoundingBox {
            x: 0,
            y: 0,
            width: 400,
            height: 400,
        };
        let r = crop_region(&huge, Margins::default(), 300, 200);
        assert!(r.width == 200 && r.x + r.width as i32 <= 300 && r.y + r.height as i32 <= 200);
    }

    #[test]
    fn crop_is_48_by_48() {
        let picture = GrayImage::from_fn(320, 240, |x, _| image::Luma([(x % 256) as u8]));
        let face = crop_face(
            &picture,
            &BoundingBox {
                x: 100,
                y: 60,
                width: 80,
                height: 80,
            },
            Margins::default(),
        );
        assert_eq!(face.len(), 48 * 48);
    }
}
