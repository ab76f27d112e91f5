//! `ferrite video <in> --out annotated.mp4 --csv per-frame.csv` (or `--camera /dev/video0`):
//! every frame through detection and classification, labels smoothed per face over the last
//! frames, an annotated video, a per-frame CSV and an emotion-over-time plot.

use std::fmt::Write as _;
use std::path::PathBuf;
use std::time::Instant;

use burn::prelude::Device;
use clap::Args;
use ferrite_data::atomic::write_atomic;
use ferrite_vision::annotate::annotate;
use ferrite_vision::track::Tracker;
use ferrite_vision::video::{FrameReader, FrameWriter, Source, probe};
use ferrite_vision::{Analyzer, DetectorConfig, Face, SeetaDetector};
use ferrite_viz::charts::{Series, line_panels};

#[derive(Args)]
pub struct VideoArgs {
    /// A video file or stream URL ffmpeg can read.
    #[arg(required_unless_present = "camera", conflicts_with = "camera")]
    input: Option<PathBuf>,
    /// A V4L2 camera instead of a file, e.g. /dev/video0.
    #[arg(long)]
    camera: Option<PathBuf>,
    /// The annotated video to write (e.g. annotated.mp4).
    #[arg(long)]
    out: Option<PathBuf>,
    /// Per-frame CSV: frame, time, track, box, predicted and smoothed emotion, confidence.
    #[arg(long)]
    csv: Option<PathBuf>,
    /// Emotion-over-time plot (PNG) of the most confident face per frame.
    #[arg(long)]
    plot: Option<PathBuf>,
    /// A saved model; default: the model shipped in the binary.
    #[arg(long)]
    model: Option<PathBuf>,
    /// Majority vote over this many frames per face.
    #[arg(long, default_value_t = 10)]
    smooth: usize,
    /// Stop after this many frames (a camera runs until interrupted otherwise).
    #[arg(long)]
    max_frames: Option<usize>,
    #[arg(long, default_value_t = 20)]
    min_face_size: u32,
}

pub fn run(args: &VideoArgs) -> anyhow::Result<()> {
    let source = match (&args.input, &args.camera) {
        (_, Some(camera)) => Source::Camera(camera.clone()),
        (Some(input), None) => Source::File(input.clone()),
        (None, None) => anyhow::bail!("give a video file or --camera"),
    };
    let device = Device::flex();
    let analyzer = Analyzer::new(
        super::default_model::load(args.model.as_deref(), &device)?,
        device,
    );
    let mut detector = SeetaDetector::new(DetectorConfig {
        min_face_size: args.min_face_size,
        ..DetectorConfig::default()
    })?;
    let info = probe(&source)?;
    let mut writer = args
        .out
        .as_deref()
        .map(|out| FrameWriter::create(out, info))
        .transpose()?;
    let mut tracker = Tracker::new(args.smooth, 0.3);
    let classes = analyzer.classes().clone();
    let mut csv = String::from("frame,time_s,track,x,y,width,height,emotion,smoothed,confidence\n");
    let mut timeline: Vec<(f64, Vec<f32>)> = Vec::new();
    let started = Instant::now();
    let mut frames = 0usize;
    for mut frame in FrameReader::open(&source, info)?.take(args.max_frames.unwrap_or(usize::MAX)) {
        let time = frames as f64 / info.fps;
        let grey = image::DynamicImage::ImageRgb8(frame.clone()).to_luma8();
        let faces = analyzer.analyze(&mut detector, &grey);
        let predicted: Vec<_> = faces
            .iter()
            .map(|f| (f.bbox, classes.index_of(&f.emotion).unwrap_or(0)))
            .collect();
        let tracked = tracker.update(&predicted);
        let shown: Vec<Face> = faces
            .iter()
            .zip(&tracked)
            .map(|(face, t)| Face {
                emotion: classes.name(t.smoothed).to_string(),
                ..face.clone()
            })
            .collect();
        for (face, (t, shown)) in faces.iter().zip(tracked.iter().zip(&shown)) {
            let b = face.bbox;
            let _ = writeln!(
                csv,
                "{frames},{time:.3},{},{},{},{},{},{},{},{:.4}",
                t.track, b.x, b.y, b.width, b.height, face.emotion, shown.emotion, face.confidence
            );
        }
        if let Some(top) = faces
            .iter()
            .max_by(|a, b| a.confidence.total_cmp(&b.confidence))
        {
            timeline.push((time, top.probabilities.iter().map(|(_, p)| *p).collect()));
        }
        if let Some(writer) = writer.as_mut() {
            annotate(&mut frame, &shown);
            writer.write(&frame)?;
        }
        frames += 1;
    }
    if let Some(writer) = writer {
        writer.finish()?;
    }
    let seconds = started.elapsed().as_secs_f64();
    if let Some(path) = &args.csv {
        write_atomic(path, csv.as_bytes())?;
    }
    if let Some(path) = &args.plot {
        let series = (0..classes.len())
            .map(|c| Series {
                name: classes.display_name(c),
                points: timeline.iter().map(|(t, p)| (*t, p[c] as f64)).collect(),
            })
            .collect();
        let image = line_panels(
            "emotion over time (most confident face)",
            "seconds",
            &[("probability", series)],
        )?;
        ferrite_viz::save_png(image, path)?;
    }
    let rows = csv.lines().count() - 1;
    println!(
        "{frames} frames ({}x{} at {:.2} fps), {rows} faces, {:.1} frames/s",
        info.width,
        info.height,
        info.fps,
        frames as f64 / seconds.max(1e-9)
    );
    Ok(())
}
