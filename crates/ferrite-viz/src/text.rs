//! Text on images with the embedded DejaVu Sans.

use ab_glyph::{FontRef, PxScale};
use image::{Rgb, RgbImage};

/// DejaVu Sans, compiled into the binary from the `dejavu` crate.
pub fn font() -> FontRef<'static> {
    FontRef::try_from_slice(dejavu::sans::regular()).expect("the embedded DejaVu Sans parses")
}

/// Draws `text` with its top-left corner at (x, y), `size` pixels high.
pub fn draw(image: &mut RgbImage, text: &str, x: i32, y: i32, size: f32, colour: Rgb<u8>) {
    imageproc::drawing::draw_text_mut(image, colour, x, y, PxScale::from(size), &font(), text);
}

/// Width and height in pixels of `text` at `size`.
pub fn measure(text: &str, size: f32) -> (u32, u32) {
    imageproc::drawing::text_size(PxScale::from(size), &font(), text)
}
