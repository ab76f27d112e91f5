//! `ferrite serve`: the HTTP API, the live WebSocket and the browser page.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use burn::prelude::Device;
use clap::Args;
use ferrite_serve::ServeConfig;
use ferrite_vision::{Analyzer, DetectorConfig};

#[derive(Args)]
pub struct ServeArgs {
    /// A saved model (.ferrite); default: the model shipped in the binary.
    #[arg(long)]
    model: Option<PathBuf>,
    #[arg(long, default_value = "127.0.0.1:8080")]
    bind: SocketAddr,
    /// Inference worker threads (default: one per core).
    #[arg(long)]
    workers: Option<usize>,
    /// Requests that may wait for a worker; beyond that the server answers 503 (default: 2 per worker).
    #[arg(long)]
    queue: Option<usize>,
    /// Largest request body, in MiB.
    #[arg(long, default_value_t = 10)]
    body_limit_mib: usize,
    /// Largest picture, in pixels, checked from the header before decoding.
    #[arg(long, default_value_t = 40_000_000)]
    max_pixels: u64,
    /// Seconds an analysis may take before the request is answered 503.
    #[arg(long, default_value_t = 10.0)]
    timeout: f64,
    /// Default smallest face, in pixels (requests may set `min_face_size`).
    #[arg(long, default_value_t = 20)]
    min_face_size: u32,
}

pub fn run(args: &ServeArgs) -> anyhow::Result<()> {
    let device = Device::flex();
    let model = super::default_model::load(args.model.as_deref(), &device)?;
    let analyzer = Analyzer::new(model, device);
    let defaults = ServeConfig::default();
    let workers = args.workers.unwrap_or(defaults.workers).max(1);
    anyhow::ensure!(
        args.timeout.is_finite() && args.timeout > 0.0,
        "--timeout must be a positive number of seconds"
    );
    let config = ServeConfig {
        body_limit: args.body_limit_mib * 1024 * 1024,
        max_pixels: args.max_pixels,
        timeout: Duration::from_secs_f64(args.timeout),
        workers,
        queue: args.queue.unwrap_or(2 * workers),
        detector: DetectorConfig {
            min_face_size: args.min_face_size,
            ..DetectorConfig::default()
        },
        ..defaults
    };
    config.detector.validate()?;
    let classes = analyzer.classes().names().join(", ");
    ferrite_serve::serve_until_signal(args.bind, analyzer, &config, |address| {
        eprintln!(
            "ferrite serving on http://{address} ({workers} workers, classes: {classes}); Ctrl-C to stop"
        );
    })?;
    eprintln!("stopped");
    Ok(())
}
