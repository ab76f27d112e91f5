//! `ferrite predict --model M <image|folder>...`: every face in every picture, classified.

use std::path::{Path, PathBuf};

use burn::prelude::Device;
use clap::{Args, ValueEnum};
use ferrite_vision::annotate::annotate;
use ferrite_vision::{
    Analyzer, DetectorConfig, Face, Margins, PictureError, SeetaDetector, VisionError,
};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use rayon::prelude::*;
use serde::Serialize;

#[derive(Args)]
pub struct PredictArgs {
    /// Pictures and folders of pictures (searched recursively for .png/.jpg/.jpeg/.bmp/.webp).
    #[arg(required = true)]
    inputs: Vec<PathBuf>,
    /// A saved model (.ferrite); default: the model shipped in the binary (models/default.md).
    #[arg(long)]
    model: Option<PathBuf>,
    /// Write annotated copies of the pictures into this folder.
    #[arg(long, value_name = "DIR")]
    annotate: Option<PathBuf>,
    #[arg(long, value_enum, default_value = "json")]
    format: Format,
    /// Smallest face to find, in pixels (at least 20).
    #[arg(long, default_value_t = 20)]
    min_face_size: u32,
    /// Detector score threshold (SeetaFace suggests 0.95, 2.8 or 4.5).
    #[arg(long, default_value_t = 2.0)]
    score_threshold: f64,
    /// Margin left and right of the detected face, in pixels per 100 pixels of face width.
    #[arg(long, default_value_t = 20)]
    margin_x: u32,
    /// Margin above and below the detected face, in pixels per 100 pixels of face width.
    #[arg(long, default_value_t = 40)]
    margin_y: u32,
    /// Refuse pictures with more pixels than this (decoding stops before allocating).
    #[arg(long, default_value_t = ferrite_vision::picture::DEFAULT_MAX_PIXELS)]
    max_pixels: u64,
}

#[derive(Clone, Copy, ValueEnum)]
enum Format {
    Json,
    Csv,
}

#[derive(Serialize)]
struct PictureResult {
    file: PathBuf,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<String>,
    faces: Vec<Face>,
}

const EXTENSIONS: [&str; 5] = ["png", "jpg", "jpeg", "bmp", "webp"];

fn collect_inputs(inputs: &[PathBuf]) -> Vec<PathBuf> {
    let mut files = Vec::new();
    for input in inputs {
        if input.is_dir() {
            let mut stack = vec![input.clone()];
            while let Some(dir) = stack.pop() {
                let Ok(entries) = std::fs::read_dir(&dir) else {
                    eprintln!("skipped {}: cannot read the folder", dir.display());
                    continue;
                };
                let mut paths: Vec<PathBuf> = entries.flatten().map(|e| e.path()).collect();
                paths.sort();
                for path in paths {
                    if path.is_dir() {
                        stack.push(path);
                    } else if path
                        .extension()
                        .and_then(|e| e.to_str())
                        .is_some_and(|e| EXTENSIONS.contains(&e.to_ascii_lowercase().as_str()))
                    {
                        files.push(path);
                    }
                }
            }
        } else {
            files.push(input.clone());
        }
    }
    files
}

pub fn run(args: &PredictArgs) -> anyhow::Result<()> {
    let device = Device::flex();
    let model = super::default_model::load(args.model.as_deref(), &device)?;
    let mut analyzer = Analyzer::new(model, device);
    analyzer.margins = Margins {
        horizontal: args.margin_x,
        vertical: args.margin_y,
    };
    let detector_config = DetectorConfig {
        min_face_size: args.min_face_size,
        score_threshold: args.score_threshold,
        ..DetectorConfig::default()
    };
    detector_config.validate()?;
    let files = collect_inputs(&args.inputs);
    anyhow::ensure!(!files.is_empty(), "no pictures found in {:?}", args.inputs);
    let bar = ProgressBar::with_draw_target(Some(files.len() as u64), ProgressDrawTarget::stderr());
    bar.set_style(
        ProgressStyle::with_template("[{bar:30}] {pos}/{len} pictures  {per_sec}  ETA {eta}")
            .expect("valid template"),
    );
    let results: Vec<PictureResult> = files
        .par_iter()
        .map_init(
            || SeetaDetector::new(detector_config.clone()).expect("validated above"),
            |detector, file| {
                let result = analyze_file(&analyzer, detector, file, args);
                bar.inc(1);
                result
            },
        )
        .collect();
    bar.finish_and_clear();
    let (faces, failed): (usize, usize) = (
        results.iter().map(|r| r.faces.len()).sum(),
        results.iter().filter(|r| r.error.is_some()).count(),
    );
    for r in results.iter().filter(|r| r.error.is_some()) {
        eprintln!(
            "skipped {}: {}",
            r.file.display(),
            r.error.as_deref().unwrap_or_default()
        );
    }
    for r in results
        .iter()
        .filter(|r| r.error.is_none() && r.faces.is_empty())
    {
        eprintln!("no face found in {}", r.file.display());
    }
    match args.format {
        Format::Json => println!("{}", serde_json::to_string_pretty(&results)?),
        Format::Csv => print_csv(&results, analyzer.classes().names()),
    }
    eprintln!(
        "{} pictures, {faces} faces, {failed} unreadable",
        results.len()
    );
    Ok(())
}

fn analyze_file(
    analyzer: &Analyzer,
    detector: &mut SeetaDetector,
    file: &Path,
    args: &PredictArgs,
) -> PictureResult {
    let picture = match ferrite_vision::open_picture(file, args.max_pixels) {
        Ok(p) => p,
        Err(e) => {
            return PictureResult {
                file: file.to_path_buf(),
                error: Some(match e {
                    VisionError::Picture {
                        source: PictureError::TooLarge { .. },
                        ..
                    } => format!("{e} (see --max-pixels)"),
                    e => e.to_string(),
                }),
                faces: Vec::new(),
            };
        }
    };
    let faces = analyzer.analyze(detector, &picture.to_luma8());
    let mut error = None;
    if let Some(dir) = &args.annotate {
        let mut rgb = picture.to_rgb8();
        annotate(&mut rgb, &faces);
        let name = file
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_else(|| "picture".into());
        if let Err(e) = ferrite_viz::save_png(rgb, &dir.join(format!("{name}.annotated.png"))) {
            error = Some(format!("writing the annotated copy: {e}"));
        }
    }
    PictureResult {
        file: file.to_path_buf(),
        error,
        faces,
    }
}

fn print_csv(results: &[PictureResult], classes: &[String]) {
    let header: Vec<String> = [
        "file",
        "face",
        "x",
        "y",
        "width",
        "height",
        "emotion",
        "confidence",
    ]
    .into_iter()
    .map(String::from)
    .chain(classes.iter().map(|c| format!("p_{c}")))
    .collect();
    println!("{}", header.join(","));
    for r in results {
        for (k, f) in r.faces.iter().enumerate() {
            let b = f.bbox;
            let probabilities: Vec<String> = f
                .probabilities
                .iter()
                .map(|(_, p)| format!("{p:.4}"))
                .collect();
            println!(
                "{},{k},{},{},{},{},{},{:.4},{}",
                r.file.display(),
                b.x,
                b.y,
                b.width,
                b.height,
                f.emotion,
                f.confidence,
                probabilities.join(",")
            );
        }
    }
}
