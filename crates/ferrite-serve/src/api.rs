//! The HTTP routes and their errors.

use std::sync::Arc;
use std::time::Instant;

use axum::Json;
use axum::Router;
use axum::body::Bytes;
use axum::extract::rejection::QueryRejection;
use axum::extract::{DefaultBodyLimit, FromRequest, Multipart, Query, Request, State};
use axum::http::{StatusCode, header};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::{get, post};
use ferrite_vision::{Analyzer, PictureError};
use serde_json::json;
use tokio::sync::watch;

use crate::metrics::Metrics;
use crate::pool::{AnalyzeOptions, Pool, PoolConfig, PoolError};
use crate::{ServeConfig, ServeError, live};

const PAGE: &str = include_str!("page.html");

/// What every handler shares.
#[derive(Clone)]
pub struct AppState {
    pub(crate) pool: Pool,
    pub(crate) analyzer: Arc<Analyzer>,
    pub(crate) metrics: Arc<Metrics>,
    /// Becomes true when the server shuts down; live sockets close on it.
    pub(crate) stopping: watch::Receiver<bool>,
    body_limit: usize,
}

impl AppState {
    /// The state, and the switch that tells live sockets the server is stopping.
    pub fn new(
        analyzer: Arc<Analyzer>,
        config: &ServeConfig,
    ) -> Result<(Self, watch::Sender<bool>), ServeError> {
        let pool = Pool::start(
            analyzer.clone(),
            &PoolConfig {
                workers: config.workers,
                queue: config.queue,
                timeout: config.timeout,
                max_pixels: config.max_pixels,
                detector: config.detector.clone(),
                margins: config.margins,
            },
        )?;
        let (stop, stopping) = watch::channel(false);
        let state = Self {
            pool,
            analyzer,
            metrics: Arc::new(Metrics::new()),
            stopping,
            body_limit: config.body_limit,
        };
        Ok((state, stop))
    }
}

impl AppState {
    /// Counts one answered request (or live frame) on `route` in the metrics.
    pub(crate) fn record(
        &self,
        route: &str,
        started: Instant,
        result: &Result<crate::Analysis, ApiError>,
    ) {
        let (status, faces) = match result {
            Ok(analysis) => (StatusCode::OK, analysis.faces.len()),
            Err(e) => (e.status, 0),
        };
        let seconds = started.elapsed().as_secs_f64();
        self.metrics.record(route, status.as_u16(), seconds, faces);
    }
}

pub fn router(state: AppState) -> Router {
    let body_limit = state.body_limit;
    Router::new()
        .route("/", get(page))
        .route("/v1/analyze", post(analyze))
        .route("/v1/live", get(live::upgrade))
        .route("/v1/models", get(models))
        .route("/healthz", get(|| async { Json(json!({"status": "ok"})) }))
        .route("/metrics", get(metrics))
        .fallback(|| async { ApiError::new(StatusCode::NOT_FOUND, "no such route") })
        .method_not_allowed_fallback(|| async {
            ApiError::new(StatusCode::METHOD_NOT_ALLOWED, "method not allowed here")
        })
        .layer(DefaultBodyLimit::max(body_limit))
        .with_state(state)
}

/// A 4xx or 503 answer: `{"error": message}`.
#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub message: String,
}

impl ApiError {
    pub fn new(status: StatusCode, message: impl Into<String>) -> Self {
        Self {
            status,
            message: message.into(),
        }
    }

    fn kind(&self) -> &'static str {
        match self.status.as_u16() {
            400 => "bad_request",
            404 | 405 => "route",
            413 => "too_large",
            415 => "content_type",
            422 => "bad_picture",
            503 => "unavailable",
            _ => "other",
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.status, Json(json!({"error": self.message}))).into_response()
    }
}

impl From<PoolError> for ApiError {
    fn from(e: PoolError) -> Self {
        let status = match &e {
            PoolError::Busy(_) | PoolError::Timeout(_) | PoolError::Stopped => {
                StatusCode::SERVICE_UNAVAILABLE
            }
            PoolError::BadPicture(PictureError::TooLarge { .. }) => StatusCode::PAYLOAD_TOO_LARGE,
            PoolError::BadPicture(PictureError::Unreadable(_)) => StatusCode::UNPROCESSABLE_ENTITY,
            PoolError::BadOption(_) => StatusCode::BAD_REQUEST,
        };
        ApiError::new(status, e.to_string())
    }
}

async fn page() -> Html<&'static str> {
    Html(PAGE)
}

async fn metrics(State(state): State<AppState>) -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        state.metrics.render(),
    )
}

async fn models(State(state): State<AppState>) -> impl IntoResponse {
    let meta = state.analyzer.meta();
    Json(json!({
        "models": [{
            "architecture": meta.config.architecture.to_string(),
            "classes": meta.classes.names(),
            "input": {"side": meta.config.input_side, "channels": 1},
            "normalization": meta.normalization,
            "validation_accuracy": meta.card.get("validation_accuracy"),
            "card": meta.card,
        }]
    }))
}

/// `POST /v1/analyze`: the picture is the raw body, or the first file field of a multipart form.
async fn analyze(
    State(state): State<AppState>,
    options: Result<Query<AnalyzeOptions>, QueryRejection>,
    request: Request,
) -> Response {
    let started = Instant::now();
    let result = analyze_request(&state, options, request).await;
    state.record("/v1/analyze", started, &result);
    match result {
        Ok(analysis) => Json(analysis).into_response(),
        Err(e) => {
            state.metrics.errors.with_label_values(&[e.kind()]).inc();
            e.into_response()
        }
    }
}

async fn analyze_request(
    state: &AppState,
    options: Result<Query<AnalyzeOptions>, QueryRejection>,
    request: Request,
) -> Result<crate::Analysis, ApiError> {
    let Query(options) =
        options.map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, e.body_text()))?;
    options.check()?;

    // The body is read before a slot is asked for: refusing mid-upload would reset the
    // client's connection instead of answering it.
    let picture = read_picture(request).await?;
    let slot = state.pool.reserve()?;
    Ok(state.pool.analyze(slot, picture, options).await?)
}

/// The picture bytes of a request, by its content type.
async fn read_picture(request: Request) -> Result<Vec<u8>, ApiError> {
    let content_type = request
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_ascii_lowercase();
    let essence = content_type
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_string();
    let reject = |e: &dyn RejectionText| ApiError::new(e.status(), e.text());
    match essence.as_str() {
        "multipart/form-data" => {
            let mut form = Multipart::from_request(request, &())
                .await
                .map_err(|e| reject(&e))?;
            while let Some(field) = form.next_field().await.map_err(|e| reject(&e))? {
                if field.file_name().is_some() || field.name() == Some("image") {
                    let bytes = field.bytes().await.map_err(|e| reject(&e))?;
                    return non_empty(bytes);
                }
            }
            Err(ApiError::new(
                StatusCode::BAD_REQUEST,
                "the form has no file field (send the picture as a file, or in a field named `image`)",
            ))
        }
        ""
        | "application/octet-stream"
        | "image/jpeg"
        | "image/png"
        | "image/webp"
        | "image/bmp" => {
            let bytes = Bytes::from_request(request, &())
                .await
                .map_err(|e| reject(&e))?;
            non_empty(bytes)
        }
        other => Err(ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            format!(
                "content type {other:?} is not a picture: send image/jpeg, image/png, image/webp, \
                 image/bmp, application/octet-stream or multipart/form-data"
            ),
        )),
    }
}

fn non_empty(bytes: Bytes) -> Result<Vec<u8>, ApiError> {
    if bytes.is_empty() {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "the body is empty: send a picture",
        ));
    }
    Ok(bytes.to_vec())
}

/// axum's rejections all carry a status and a message; this lets one closure map them.
trait RejectionText {
    fn status(&self) -> StatusCode;
    fn text(&self) -> String;
}

macro_rules! rejection_text {
    ($($t:ty),*) => {$(
        impl RejectionText for $t {
            fn status(&self) -> StatusCode {
                <$t>::status(self)
            }
            fn text(&self) -> String {
                self.body_text()
            }
        }
    )*};
}

rejection_text!(
    axum::extract::rejection::BytesRejection,
    axum::extract::multipart::MultipartRejection,
    axum::extract::multipart::MultipartError
);
