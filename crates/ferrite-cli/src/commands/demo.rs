//! `ferrite demo`: the whole pipeline on the group photo shipped in the binary, with the
//! default model; no data, no download, no arguments needed.

use std::collections::BTreeMap;
use std::path::PathBuf;

use burn::prelude::Device;
use clap::Args;
use ferrite_data::atomic::write_atomic;
use ferrite_vision::annotate::annotate;
use ferrite_vision::picture::{DEFAULT_MAX_PIXELS, GROUP_PHOTO};
use ferrite_vision::{Analyzer, DetectorConfig, SeetaDetector, decode_picture};

#[derive(Args)]
pub struct DemoArgs {
    /// Where to write the annotated photo and the JSON.
    #[arg(long, default_value = "out/demo")]
    out: PathBuf,
    /// A saved model (.ferrite); default: the model shipped in the binary.
    #[arg(long)]
    model: Option<PathBuf>,
}

pub fn run(args: &DemoArgs) -> anyhow::Result<()> {
    let device = Device::flex();
    let model = super::default_model::load(args.model.as_deref(), &device)?;
    let analyzer = Analyzer::new(model, device);
    let mut detector = SeetaDetector::new(DetectorConfig::default())?;
    let photo = decode_picture(GROUP_PHOTO, DEFAULT_MAX_PIXELS)
        .map_err(|e| anyhow::anyhow!("the embedded photo: {e}"))?;
    let (faces, times) = analyzer.analyze_timed(&mut detector, &photo.to_luma8(), analyzer.margins);

    let mut annotated = photo.to_rgb8();
    annotate(&mut annotated, &faces);
    let picture_path = args.out.join("group-photo.annotated.png");
    let json_path = args.out.join("group-photo.json");
    ferrite_viz::save_png(annotated, &picture_path)?;
    write_atomic(&json_path, serde_json::to_string_pretty(&faces)?.as_bytes())
        .map_err(|e| anyhow::anyhow!("{}: {e}", json_path.display()))?;

    let mut counts: BTreeMap<&str, usize> = BTreeMap::new();
    for face in &faces {
        *counts.entry(face.emotion.as_str()).or_default() += 1;
    }
    let counts: Vec<String> = counts.iter().map(|(e, n)| format!("{e} {n}")).collect();
    println!(
        "The 1927 Solvay conference photo ({}x{}, shipped in the rustface package):",
        photo.width(),
        photo.height()
    );
    println!(
        "  {} faces found in {:.0} ms, classified in {:.0} ms by {}",
        faces.len(),
        times.detect_ms,
        times.classify_ms,
        args.model
            .as_ref()
            .map_or("the default model".into(), |p| p.display().to_string())
    );
    println!("  emotions: {}", counts.join(", "));
    println!("  annotated photo: {}", picture_path.display());
    println!("  faces as JSON:   {}", json_path.display());
    Ok(())
}
