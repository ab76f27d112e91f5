//! `GET /v1/live`: a WebSocket for live frames.
//!
//! The client sends each frame as a binary message (JPEG, PNG or WebP); the server answers
//! with one text message per analysed frame: `{"frame": n, "dropped": d, ...analysis}`, or
//! `{"frame": n, "error": ...}`. Only the newest frame waits: a frame that arrives while the
//! previous one is analysed replaces any frame still waiting, so a slow server skips frames
//! instead of falling ever further behind.

use std::time::Instant;

use axum::extract::rejection::QueryRejection;
use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::response::Response;
use futures_util::{SinkExt, StreamExt};
use serde_json::json;
use tokio::sync::watch;

use crate::api::{ApiError, AppState};
use crate::pool::AnalyzeOptions;

/// The session's options come from the query string (`/v1/live?min_face_size=60`), as for
/// `/v1/analyze`.
pub async fn upgrade(
    State(state): State<AppState>,
    options: Result<Query<AnalyzeOptions>, QueryRejection>,
    socket: WebSocketUpgrade,
) -> Response {
    let options = options
        .map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, e.body_text()))
        .and_then(|Query(options)| {
            options.check()?;
            Ok(options)
        });
    match options {
        Ok(options) => socket.on_upgrade(move |socket| session(socket, state, options)),
        Err(e) => e.into_response(),
    }
}

/// The newest frame not yet analysed, with its number (1, 2, …).
type Latest = Option<(u64, Vec<u8>)>;

async fn session(socket: WebSocket, state: AppState, options: AnalyzeOptions) {
    let (mut sender, mut receiver) = socket.split();
    let (latest_tx, mut latest_rx) = watch::channel::<Latest>(None);
    let mut stopping = state.stopping.clone();

    // Reader: keeps only the newest frame.
    let reader = tokio::spawn(async move {
        let mut number = 0;
        while let Some(Ok(message)) = receiver.next().await {
            match message {
                Message::Binary(bytes) => {
                    number += 1;
                    latest_tx.send_replace(Some((number, bytes.to_vec())));
                }
                Message::Close(_) => break,
                _ => {}
            }
        }
    });

    let mut last_answered = 0;
    loop {
        tokio::select! {
            changed = latest_rx.changed() => {
                if changed.is_err() {
                    break; // the reader ended: the client went away
                }
            }
            _ = stopping.changed() => break,
        }
        let Some((number, frame)) = latest_rx.borrow_and_update().clone() else {
            continue;
        };
        let dropped = number - last_answered - 1;
        last_answered = number;
        state.metrics.frames_dropped.inc_by(dropped);
        let answer = analyze_frame(&state, frame, options).await;
        let mut message = match answer {
            Ok(analysis) => serde_json::to_value(analysis).unwrap_or_default(),
            Err(e) => json!({"error": e.message}),
        };
        message["frame"] = json!(number);
        message["dropped"] = json!(dropped);
        if sender
            .send(Message::Text(message.to_string().into()))
            .await
            .is_err()
        {
            break;
        }
    }
    let _ = sender.send(Message::Close(None)).await;
    reader.abort();
}

async fn analyze_frame(
    state: &AppState,
    frame: Vec<u8>,
    options: AnalyzeOptions,
) -> Result<crate::Analysis, ApiError> {
    let started = Instant::now();
    let result = match state.pool.reserve() {
        Ok(slot) => state.pool.analyze(slot, frame, options).await,
        Err(busy) => Err(busy),
    }
    .map_err(ApiError::from);
    state.record("/v1/live", started, &result);
    result
}
