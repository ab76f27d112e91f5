//! `ferrite video` on a short video made with ffmpeg from real FER2013 faces (SKIP without
//! the data or without ffmpeg), and the message when ffmpeg is missing.

use std::path::{Path, PathBuf};
use std::process::Command;

use ferrite_data::{LoadOptions, Split, fer2013};
use image::imageops::FilterType;
use image::{GrayImage, Luma, imageops};

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn have_ffmpeg() -> bool {
    let found = Command::new("ffmpeg")
        .arg("-version")
        .output()
        .is_ok_and(|o| o.status.success());
    if !found {
        eprintln!("SKIP video test: ffmpeg is not installed (apt-get install ffmpeg)");
    }
    found
}

const FRAMES: usize = 12;

#[test]
fn a_generated_video_is_annotated_frame_by_frame_with_tracks_and_smoothing() {
    let Some(csv) = ferrite_data::locate::shared_csv_or_skip(&root(), "video") else {
        return;
    };
    if !have_ffmpeg() {
        return;
    }
    let store = fer2013::load(&csv, LoadOptions::default()).unwrap().store;
    let public = store.indices_of(Split::PublicTest);
    let dir = tempfile::tempdir().unwrap();
    // Two faces drifting right by 3 px a frame.
    for frame in 0..FRAMES {
        let mut canvas = GrayImage::from_pixel(480, 272, Luma([120]));
        for (k, &i) in [public[5], public[46]].iter().enumerate() {
            let face = GrayImage::from_raw(48, 48, store.image(i).to_vec()).unwrap();
            let x = 40 + 220 * k as i64 + 3 * frame as i64;
            imageops::replace(
                &mut canvas,
                &imageops::resize(&face, 144, 144, FilterType::CatmullRom),
                x,
                64,
            );
        }
        canvas
            .save(dir.path().join(format!("frame{frame:03}.png")))
            .unwrap();
    }
    let video = dir.path().join("in.mp4");
    let status = Command::new("ffmpeg")
        .args(["-v", "error", "-framerate", "6", "-i"])
        .arg(dir.path().join("frame%03d.png"))
        .args(["-pix_fmt", "yuv420p"])
        .arg(&video)
        .status()
        .unwrap();
    assert!(status.success());

    let (out, per_frame, plot) = (
        dir.path().join("out.mp4"),
        dir.path().join("frames.csv"),
        dir.path().join("plot.png"),
    );
    let output = Command::new(env!("CARGO_BIN_EXE_ferrite"))
        .arg("video")
        .arg(&video)
        .arg("--out")
        .arg(&out)
        .arg("--csv")
        .arg(&per_frame)
        .arg("--plot")
        .arg(&plot)
        .output()
        .unwrap();
    let (stdout, stderr) = (
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr),
    );
    assert!(output.status.success(), "{stderr}");
    assert!(
        stdout.starts_with(&format!("{FRAMES} frames (480x272 at 6.00 fps)")),
        "{stdout}"
    );
    assert!(plot.is_file());

    let counted = Command::new("ffprobe")
        .args([
            "-v",
            "error",
            "-count_frames",
            "-select_streams",
            "v:0",
            "-show_entries",
            "stream=nb_read_frames",
            "-of",
            "csv=p=0",
        ])
        .arg(&out)
        .output()
        .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&counted.stdout).trim(),
        FRAMES.to_string()
    );

    let rows: Vec<Vec<String>> = std::fs::read_to_string(&per_frame)
        .unwrap()
        .lines()
        .skip(1)
        .map(|l| l.split(',').map(String::from).collect())
        .collect();
    assert!(
        rows.len() >= FRAMES,
        "{} face rows over {FRAMES} frames",
        rows.len()
    );
    // Each face keeps one track: a track's x moves by about 3 px a frame, never jumps to the other face.
    let mut tracks: Vec<&str> = rows.iter().map(|r| r[2].as_str()).collect();
    tracks.sort();
    tracks.dedup();
    assert!(tracks.len() <= 3, "tracks {tracks:?}");
    // Smoothing: once a track has 10 frames, its smoothed label is the majority of its last 10 predictions.
    for track in tracks {
        let of_track: Vec<&Vec<String>> = rows.iter().filter(|r| r[2] == track).collect();
        for (k, row) in of_track.iter().enumerate().skip(9) {
            let window: Vec<&str> = of_track[k - 9..=k].iter().map(|r| r[7].as_str()).collect();
            let count = |e: &str| window.iter().filter(|&&w| w == e).count();
            let smoothed = row[8].as_str();
            assert!(
                window.iter().all(|&w| count(smoothed) >= count(w)),
                "frame {}: {smoothed} is not a majority of {window:?}",
                row[0]
            );
        }
    }
}

#[test]
fn missing_ffmpeg_says_how_to_install_it() {
    let output = Command::new(env!("CARGO_BIN_EXE_ferrite"))
        .args(["video", "whatever.mp4"])
        .env("PATH", "/nonexistent")
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("`ffprobe` was not found") && stderr.contains("apt-get install ffmpeg"),
        "{stderr}"
    );
}
