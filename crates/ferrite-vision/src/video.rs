//! Video in and out through the `ffmpeg` program: frames stream as raw RGB through pipes, so
//! any format, stream or camera ffmpeg reads works, and nothing is linked against it.

use std::io::{BufReader, BufWriter, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};

use image::RgbImage;

use crate::VisionError;

/// Where frames come from.
#[derive(Debug, Clone)]
pub enum Source {
    File(PathBuf),
    /// A V4L2 camera such as `/dev/video0`.
    Camera(PathBuf),
}

impl Source {
    fn input_args(&self) -> Vec<String> {
        match self {
            Source::File(path) => vec!["-i".into(), path.display().to_string()],
            Source::Camera(device) => vec![
                "-f".into(),
                "v4l2".into(),
                "-i".into(),
                device.display().to_string(),
            ],
        }
    }

    fn name(&self) -> String {
        match self {
            Source::File(path) | Source::Camera(path) => path.display().to_string(),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct VideoInfo {
    pub width: u32,
    pub height: u32,
    pub fps: f64,
}

fn missing(program: &str) -> VisionError {
    VisionError::Ffmpeg(format!(
        "`{program}` was not found on PATH; install FFmpeg (Debian/Ubuntu: `apt-get install ffmpeg`, macOS: `brew install ffmpeg`)"
    ))
}

fn spawn(
    program: &str,
    args: &[String],
    stdin: Stdio,
    stdout: Stdio,
) -> Result<Child, VisionError> {
    Command::new(program)
        .args(args)
        .stdin(stdin)
        .stdout(stdout)
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| {
            if e.kind() == std::io::ErrorKind::NotFound {
                missing(program)
            } else {
                VisionError::Ffmpeg(format!("starting {program}: {e}"))
            }
        })
}

/// Width, height and frame rate of the first video stream.
pub fn probe(source: &Source) -> Result<VideoInfo, VisionError> {
    let mut args: Vec<String> = [
        "-v",
        "error",
        "-select_streams",
        "v:0",
        "-show_entries",
        "stream=width,height,r_frame_rate",
        "-of",
        "csv=p=0",
    ]
    .map(String::from)
    .to_vec();
    match source {
        Source::File(path) => args.push(path.display().to_string()),
        Source::Camera(device) => {
            args.extend(["-f".into(), "v4l2".into(), device.display().to_string()])
        }
    }
    let child = spawn("ffprobe", &args, Stdio::null(), Stdio::piped())?;
    let output = child
        .wait_with_output()
        .map_err(|e| VisionError::Ffmpeg(format!("ffprobe: {e}")))?;
    let text = String::from_utf8_lossy(&output.stdout);
    let fields: Vec<&str> = text.trim().split(',').collect();
    let bad = || {
        VisionError::Ffmpeg(format!(
            "{}: no video stream ({})",
            source.name(),
            String::from_utf8_lossy(&output.stderr).trim()
        ))
    };
    let [width, height, rate] = fields[..] else {
        return Err(bad());
    };
    let fps = match rate.split_once('/') {
        Some((n, d)) => n
            .parse::<f64>()
            .ok()
            .zip(d.parse::<f64>().ok())
            .filter(|(_, d)| *d > 0.0)
            .map(|(n, d)| n / d),
        None => rate.parse().ok(),
    };
    Ok(VideoInfo {
        width: width.parse().map_err(|_| bad())?,
        height: height.parse().map_err(|_| bad())?,
        fps: fps.filter(|f| *f > 0.0).unwrap_or(25.0),
    })
}

/// Decoded frames, one `RgbImage` at a time.
pub struct FrameReader {
    child: Child,
    stdout: BufReader<ChildStdout>,
    info: VideoInfo,
}

impl FrameReader {
    pub fn open(source: &Source, info: VideoInfo) -> Result<Self, VisionError> {
        let mut args = vec!["-v".to_string(), "error".into()];
        args.extend(source.input_args());
        args.extend(["-f", "rawvideo", "-pix_fmt", "rgb24", "-"].map(String::from));
        let mut child = spawn("ffmpeg", &args, Stdio::null(), Stdio::piped())?;
        let stdout = child.stdout.take().expect("stdout is piped");
        Ok(Self {
            child,
            stdout: BufReader::with_capacity(1 << 20, stdout),
            info,
        })
    }
}

impl Iterator for FrameReader {
    type Item = RgbImage;

    fn next(&mut self) -> Option<RgbImage> {
        let mut frame = vec![0u8; (self.info.width * self.info.height * 3) as usize];
        self.stdout.read_exact(&mut frame).ok()?;
        RgbImage::from_raw(self.info.width, self.info.height, frame)
    }
}

impl Drop for FrameReader {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Encodes frames to a video file (H.264 in yuv420p, playable everywhere).
pub struct FrameWriter {
    child: Child,
    stdin: Option<BufWriter<ChildStdin>>,
    path: PathBuf,
}

impl FrameWriter {
    pub fn create(path: &Path, info: VideoInfo) -> Result<Self, VisionError> {
        let size = format!("{}x{}", info.width, info.height);
        let args: Vec<String> = [
            "-v",
            "error",
            "-y",
            "-f",
            "rawvideo",
            "-pix_fmt",
            "rgb24",
            "-s",
            &size,
            "-r",
            &format!("{}", info.fps),
            "-i",
            "-",
            "-pix_fmt",
            "yuv420p",
            "-vf",
            "pad=ceil(iw/2)*2:ceil(ih/2)*2",
        ]
        .into_iter()
        .map(String::from)
        .chain([path.display().to_string()])
        .collect();
        let mut child = spawn("ffmpeg", &args, Stdio::piped(), Stdio::null())?;
        let stdin = child
            .stdin
            .take()
            .map(|s| BufWriter::with_capacity(1 << 20, s));
        Ok(Self {
            child,
            stdin,
            path: path.to_path_buf(),
        })
    }

    pub fn write(&mut self, frame: &RgbImage) -> Result<(), VisionError> {
        let stdin = self.stdin.as_mut().expect("open until finish");
        stdin
            .write_all(frame.as_raw())
            .map_err(|e| VisionError::Ffmpeg(format!("encoding {}: {e}", self.path.display())))
    }

    /// Closes the pipe and waits for ffmpeg to write the file.
    pub fn finish(self) -> Result<(), VisionError> {
        let FrameWriter { child, stdin, path } = self;
        drop(stdin);
        let output = child
            .wait_with_output()
            .map_err(|e| VisionError::Ffmpeg(format!("encoding {}: {e}", path.display())))?;
        if !output.status.success() {
            return Err(VisionError::Ffmpeg(format!(
                "encoding {}: {}",
                path.display(),
                String::from_utf8_lossy(&output.stderr).trim()
            )));
        }
        Ok(())
    }
}
