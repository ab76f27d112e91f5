//! A server on a loopback port, and real pictures to send it.

#![allow(dead_code)] // each test file uses its own part

use std::io::Cursor;
use std::path::Path;
use std::sync::Arc;

use burn::prelude::Device;
use ferrite_models::SavedModel;
use ferrite_serve::ServeConfig;
use ferrite_serve::api::{AppState, router};
use ferrite_vision::Analyzer;
use ferrite_vision::picture::{DEFAULT_MAX_PIXELS, GROUP_PHOTO, SampleFrame};
use image::{DynamicImage, ImageFormat};

pub struct Server {
    pub base: String,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<()>,
}

impl Server {
    /// Starts the shipped default model behind `config` on 127.0.0.1, on a free port.
    pub async fn start(config: ServeConfig) -> Self {
        let model_path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../models/default.ferrite");
        let model = SavedModel::load(&model_path, &Device::flex()).unwrap();
        let analyzer = Arc::new(Analyzer::new(model, Device::flex()));
        let (state, stopping) = AppState::new(analyzer, &config).unwrap();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            axum::serve(listener, router(state))
                .with_graceful_shutdown(async move {
                    let _ = stopped.await;
                    let _ = stopping.send(true);
                })
                .await
                .unwrap();
        });
        Self {
            base,
            stop: Some(stop),
            task,
        }
    }

    /// Graceful shutdown; returns when the server has finished.
    pub async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        self.task.await.unwrap();
    }
}

pub fn group_photo() -> DynamicImage {
    ferrite_vision::decode_picture(GROUP_PHOTO, DEFAULT_MAX_PIXELS).unwrap()
}

pub fn one_face() -> DynamicImage {
    SampleFrame::OneFace.render()
}

pub fn five_faces() -> DynamicImage {
    SampleFrame::FiveFaces.render()
}

pub fn encode(picture: &DynamicImage, format: ImageFormat) -> Vec<u8> {
    let mut bytes = Cursor::new(Vec::new());
    let picture = if format == ImageFormat::Jpeg {
        DynamicImage::ImageRgb8(picture.to_rgb8())
    } else {
        picture.clone()
    };
    picture.write_to(&mut bytes, format).unwrap();
    bytes.into_inner()
}
