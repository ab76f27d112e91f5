//! # ferrite-serve
//!
//! ferrite as a service, on axum + tokio:
//!
//! | route | what |
//! |---|---|
//! | `GET /` | a live page: webcam frames over the WebSocket, boxes and labels drawn back; drop a photo |
//! | `POST /v1/analyze` | a picture (raw JPEG/PNG/WebP/BMP body, or multipart) → faces as JSON |
//! | `GET /v1/live` | WebSocket: binary frames in, one JSON answer per frame out; stale frames dropped |
//! | `GET /v1/models` | the model: classes, input size, accuracy from its card |
//! | `GET /healthz` | liveness |
//! | `GET /metrics` | Prometheus text: requests, latency histogram, faces, errors |
//!
//! Inference runs on a bounded pool of worker threads ([`pool`]); when every slot is taken a
//! request gets 503 at once. Every bad request gets a 4xx with a JSON `{"error": ...}`.

pub mod api;
mod live;
pub mod metrics;
pub mod pool;

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use ferrite_vision::{Analyzer, DetectorConfig, Margins};
use tokio::net::TcpListener;

pub use api::router;
pub use pool::{Analysis, AnalyzeOptions, Pool, PoolConfig, PoolError};

/// Limits and sizes of a server.
#[derive(Debug, Clone)]
pub struct ServeConfig {
    /// Largest request body, in bytes (413 above it).
    pub body_limit: usize,
    /// Largest picture, in pixels, checked from its header before decoding (413 above it).
    pub max_pixels: u64,
    /// Longest an analysis may take before the request is answered 503.
    pub timeout: Duration,
    /// Inference worker threads.
    pub workers: usize,
    /// Requests that may wait for a worker; beyond workers + queue, 503 at once.
    pub queue: usize,
    pub detector: DetectorConfig,
    pub margins: Margins,
}

impl Default for ServeConfig {
    fn default() -> Self {
        let workers = std::thread::available_parallelism().map_or(2, |n| n.get());
        Self {
            body_limit: 10 * 1024 * 1024,
            max_pixels: 40_000_000,
            timeout: Duration::from_secs(10),
            workers,
            queue: 2 * workers,
            detector: DetectorConfig::default(),
            margins: Margins::default(),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error("starting the inference workers: {0}")]
    Pool(#[from] PoolError),
    #[error("serving: {0}")]
    Io(#[from] std::io::Error),
}

/// Serves on `listener` until `shutdown` resolves, then stops taking connections, closes
/// live sockets and finishes the requests in flight.
pub async fn serve(
    listener: TcpListener,
    analyzer: Analyzer,
    config: &ServeConfig,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), ServeError> {
    let (state, stop) = api::AppState::new(Arc::new(analyzer), config)?;
    let app = router(state);
    axum::serve(listener, app)
        .with_graceful_shutdown(async move {
            shutdown.await;
            // Live sockets would otherwise keep the server open.
            let _ = stop.send(true);
        })
        .await?;
    Ok(())
}

/// Resolves on Ctrl-C or SIGTERM.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = terminate => {},
    }
}

/// Binds `address` and serves until Ctrl-C or SIGTERM, on a runtime of its own; `on_ready` gets
/// the bound address (useful with port 0).
pub fn serve_until_signal(
    address: std::net::SocketAddr,
    analyzer: Analyzer,
    config: &ServeConfig,
    on_ready: impl FnOnce(std::net::SocketAddr),
) -> Result<(), ServeError> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async {
        let listener = TcpListener::bind(address).await?;
        on_ready(listener.local_addr()?);
        serve(listener, analyzer, config, shutdown_signal()).await
    })
}
