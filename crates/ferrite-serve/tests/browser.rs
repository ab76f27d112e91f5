//! End to end in headless Chromium: the page opens a fake camera playing real faces, streams
//! it over the WebSocket and draws labelled boxes. Driven through the DevTools protocol; the
//! screenshot is kept in `target/tmp/browser-live.png`. Skipped, with a message, where no
//! Chromium is installed (`apt-get install chromium`; or set FERRITE_CHROMIUM).

mod common;

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use base64::Engine;
use common::{Server, five_faces};
use ferrite_serve::ServeConfig;
use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;

fn chromium() -> Option<PathBuf> {
    if let Some(path) = std::env::var_os("FERRITE_CHROMIUM") {
        return Some(PathBuf::from(path));
    }
    let path = std::env::var_os("PATH")?;
    ["chromium", "chromium-browser", "google-chrome"]
        .iter()
        .flat_map(|name| std::env::split_paths(&path).map(move |dir| dir.join(name)))
        .find(|candidate| candidate.is_file())
}

/// A YUV4MPEG2 clip of the five-face picture, grey, for Chromium's fake camera.
fn write_y4m(path: &Path, frames: usize) {
    let grey = five_faces().to_luma8();
    let (w, h) = grey.dimensions();
    let mut file = std::io::BufWriter::new(std::fs::File::create(path).unwrap());
    writeln!(file, "YUV4MPEG2 W{w} H{h} F10:1 Ip A1:1 C420jpeg").unwrap();
    let chroma = vec![128u8; (w as usize / 2) * (h as usize / 2)];
    for _ in 0..frames {
        file.write_all(b"FRAME\n").unwrap();
        file.write_all(grey.as_raw()).unwrap();
        file.write_all(&chroma).unwrap();
        file.write_all(&chroma).unwrap();
    }
}

struct Browser(Child);

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Starts Chromium on `url` and returns it with its DevTools address (host:port).
fn launch(binary: &Path, url: &str, video: &Path, profile: &Path) -> (Browser, String) {
    let mut child = Command::new(binary)
        .args([
            "--headless=new",
            "--no-sandbox",
            "--disable-gpu",
            "--no-first-run",
            "--window-size=1200,800",
            "--use-fake-ui-for-media-stream",
            "--use-fake-device-for-media-stream",
            "--remote-debugging-port=0",
        ])
        .arg(format!(
            "--use-file-for-fake-video-capture={}",
            video.display()
        ))
        .arg(format!("--user-data-dir={}", profile.display()))
        .arg(url)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = child.stderr.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if let Some(rest) = line.strip_prefix("DevTools listening on ws://") {
                let _ = tx.send(rest.split('/').next().unwrap_or_default().to_string());
            }
        }
    });
    let browser = Browser(child);
    let address = rx
        .recv_timeout(Duration::from_secs(30))
        .expect("Chromium printed its DevTools address");
    (browser, address)
}

struct DevTools<S> {
    socket: S,
    next_id: u64,
}

impl<S> DevTools<S>
where
    S: StreamExt<Item = Result<Message, tokio_tungstenite::tungstenite::Error>>
        + SinkExt<Message>
        + Unpin,
    <S as futures_util::Sink<Message>>::Error: std::fmt::Debug,
{
    async fn call(&mut self, method: &str, params: Value) -> Value {
        self.next_id += 1;
        let id = self.next_id;
        let request = json!({"id": id, "method": method, "params": params});
        self.socket
            .send(Message::Text(request.to_string().into()))
            .await
            .unwrap();
        loop {
            if let Message::Text(text) = self.socket.next().await.unwrap().unwrap() {
                let answer: Value = serde_json::from_str(&text).unwrap();
                if answer["id"] == id {
                    return answer["result"].clone();
                }
            }
        }
    }

    async fn evaluate(&mut self, expression: &str) -> Value {
        let result = self
            .call(
                "Runtime.evaluate",
                json!({"expression": expression, "returnByValue": true}),
            )
            .await;
        result["result"]["value"].clone()
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn the_page_draws_labelled_boxes_from_a_camera() {
    let Some(binary) = chromium() else {
        eprintln!(
            "SKIP: no Chromium (apt-get install chromium, or set FERRITE_CHROMIUM); the browser test did not run"
        );
        return;
    };
    let work = tempfile::tempdir().unwrap();
    let video = work.path().join("faces.y4m");
    write_y4m(&video, 10);
    let server = Server::start(ServeConfig::default()).await;
    let page_url = format!("{}/?autostart=1", server.base);
    let (browser, devtools) = launch(&binary, &page_url, &video, &work.path().join("profile"));

    let targets: Value = reqwest::get(format!("http://{devtools}/json/list"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let page = targets
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["type"] == "page" && t["url"].as_str().unwrap_or("").starts_with(&server.base))
        .unwrap_or_else(|| panic!("our page among {targets:#}"));
    let (socket, _) =
        tokio_tungstenite::connect_async(page["webSocketDebuggerUrl"].as_str().unwrap())
            .await
            .unwrap();
    let mut tools = DevTools { socket, next_id: 0 };

    let started = Instant::now();
    let labels = loop {
        let labels = tools
            .evaluate("[...document.querySelectorAll('li.face')].map(e => e.textContent)")
            .await;
        if labels.as_array().is_some_and(|l| !l.is_empty())
            || started.elapsed() > Duration::from_secs(30)
        {
            break labels;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    };
    let status = tools
        .evaluate("document.getElementById('status').textContent")
        .await;
    let shot = tools
        .call("Page.captureScreenshot", json!({"format": "png"}))
        .await;
    let png = base64::engine::general_purpose::STANDARD
        .decode(shot["data"].as_str().unwrap_or_default())
        .unwrap();
    let artifact = Path::new(env!("CARGO_TARGET_TMPDIR")).join("browser-live.png");
    std::fs::write(&artifact, &png).unwrap();
    eprintln!("screenshot: {}", artifact.display());
    drop(browser);
    server.stop().await;

    let labels: Vec<&str> = labels
        .as_array()
        .unwrap_or_else(|| panic!("no face list on the page; status: {status}"))
        .iter()
        .filter_map(Value::as_str)
        .collect();
    assert!(
        !labels.is_empty(),
        "no labelled box within 30 s; status: {status}"
    );
    let emotions = [
        "angry", "disgust", "fear", "happy", "sad", "surprise", "neutral",
    ];
    for label in &labels {
        let (emotion, percent) = label.split_once(' ').unwrap();
        assert!(emotions.contains(&emotion), "{label}");
        assert!(percent.ends_with('%'), "{label}");
    }
    let shot = image::load_from_memory(&png).unwrap();
    assert!(
        shot.width() >= 640,
        "screenshot {}x{}",
        shot.width(),
        shot.height()
    );
}
