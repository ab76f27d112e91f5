//! Per-stage time of the face pipeline on pictures:
//! `face_timing MODEL ROUNDS MIN_FACE_SIZE IMAGE...`.
//! Prints one JSON line per picture: faces found, median detect / classify / total ms, frames/s.

use burn::prelude::Device;
use ferrite_models::SavedModel;
use ferrite_vision::picture::DEFAULT_MAX_PIXELS;
use ferrite_vision::{Analyzer, DetectorConfig, SeetaDetector, open_picture};

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [model, rounds, min_face_size, images @ ..] = args.as_slice() else {
        return Err("usage: face_timing MODEL ROUNDS MIN_FACE_SIZE IMAGE...".into());
    };
    let rounds: usize = rounds.parse()?;
    let min_face_size: u32 = min_face_size.parse()?;
    let device = Device::flex();
    let analyzer = Analyzer::new(SavedModel::load(model.as_ref(), &device)?, device);
    let mut detector = SeetaDetector::new(DetectorConfig {
        min_face_size,
        ..DetectorConfig::default()
    })?;
    for image in images {
        let grey = open_picture(image.as_ref(), DEFAULT_MAX_PIXELS)?.to_luma8();
        // One warm-up round, then the measured ones.
        let (faces, _) = analyzer.analyze_timed(&mut detector, &grey, analyzer.margins);
        let (mut detect, mut classify) = (Vec::new(), Vec::new());
        for _ in 0..rounds {
            let (_, times) = analyzer.analyze_timed(&mut detector, &grey, analyzer.margins);
            detect.push(times.detect_ms);
            classify.push(times.classify_ms);
        }
        let total: Vec<f64> = detect.iter().zip(&classify).map(|(d, c)| d + c).collect();
        let total = median(total);
        println!(
            "{{\"image\": \"{image}\", \"min_face_size\": {min_face_size}, \"faces\": {}, \"detect_ms\": {:.2}, \"classify_ms\": {:.2}, \"total_ms\": {total:.2}, \"fps\": {:.1}}}",
            faces.len(),
            median(detect),
            median(classify),
            1000.0 / total
        );
    }
    Ok(())
}
