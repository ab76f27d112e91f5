//! Boxes coloured by emotion, brighter the surer the model is, with label and probability.

use image::{Rgb, RgbImage};
use imageproc::drawing::{draw_filled_rect_mut, draw_hollow_rect_mut};
use imageproc::rect::Rect;

use crate::Face;

/// One colour per emotion name (FER2013's and FER+'s); grey for anything else.
pub fn emotion_colour(emotion: &str) -> Rgb<u8> {
    match emotion {
        "angry" => Rgb([220, 40, 40]),
        "disgust" => Rgb([120, 160, 30]),
        "fear" => Rgb([150, 60, 200]),
        "happy" => Rgb([250, 200, 0]),
        "sad" => Rgb([40, 100, 220]),
        "surprise" => Rgb([250, 120, 20]),
        "neutral" => Rgb([200, 200, 200]),
        "contempt" => Rgb([140, 90, 60]),
        _ => Rgb([160, 160, 160]),
    }
}

/// The emotion's colour faded towards grey as confidence drops.
fn shade(colour: Rgb<u8>, confidence: f32) -> Rgb<u8> {
    let t = confidence.clamp(0.0, 1.0) * 0.7 + 0.3;
    Rgb(colour
        .0
        .map(|c| (c as f32 * t + 128.0 * (1.0 - t)).round() as u8))
}

pub fn annotate(picture: &mut RgbImage, faces: &[Face]) {
    let thickness = (picture.width().max(picture.height()) / 300).max(2) as i32;
    for face in faces {
        let colour = shade(emotion_colour(&face.emotion), face.confidence);
        let b = face.bbox;
        for t in 0..thickness {
            let rect =
                Rect::at(b.x - t, b.y - t).of_size(b.width + 2 * t as u32, b.height + 2 * t as u32);
            draw_hollow_rect_mut(picture, rect, colour);
        }
        let label = format!("{} {:.0}%", face.emotion, face.confidence * 100.0);
        let size = (b.width as f32 / 6.0).clamp(12.0, 32.0);
        let (w, h) = ferrite_viz::text::measure(&label, size);
        let top = (b.y - thickness - h as i32 - 4).max(0);
        draw_filled_rect_mut(
            picture,
            Rect::at(b.x - thickness, top).of_size(w + 6, h + 4),
            colour,
        );
        ferrite_viz::text::draw(
            picture,
            &label,
            b.x - thickness + 3,
            top + 1,
            size,
            Rgb([0, 0, 0]),
        );
    }
}
