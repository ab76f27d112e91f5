//! The HTTP API over real HTTP on loopback, with the shipped model and real faces.

mod common;

use std::time::{Duration, Instant};

use common::{Server, encode, five_faces, group_photo, one_face};
use ferrite_serve::ServeConfig;
use image::ImageFormat;
use reqwest::StatusCode;
use serde_json::Value;

async fn post(
    server: &Server,
    query: &str,
    content_type: &str,
    body: Vec<u8>,
) -> (StatusCode, Value) {
    let response = reqwest::Client::new()
        .post(format!("{}/v1/analyze{query}", server.base))
        .header("content-type", content_type)
        .body(body)
        .send()
        .await
        .unwrap();
    let status = response.status();
    let json = response.json().await.unwrap();
    (status, json)
}

fn error_of(json: &Value) -> &str {
    json["error"]
        .as_str()
        .unwrap_or_else(|| panic!("no error message in {json}"))
}

#[tokio::test(flavor = "multi_thread")]
async fn pictures_in_every_format_give_their_faces() {
    let server = Server::start(ServeConfig::default()).await;
    let (status, json) = post(
        &server,
        "",
        "image/png",
        encode(&group_photo(), ImageFormat::Png),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{json}");
    let faces = json["faces"].as_array().unwrap();
    assert!(
        faces.len() >= 25,
        "{} faces in the 29-face photo",
        faces.len()
    );
    assert_eq!(
        (json["width"].as_u64(), json["height"].as_u64()),
        (Some(1666), Some(1136))
    );
    for face in faces {
        let sum: f64 = face["probabilities"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| p[1].as_f64().unwrap())
            .sum();
        assert!((sum - 1.0).abs() < 1e-3, "{face}");
    }
    assert!(json["timings"]["detect_ms"].as_f64().unwrap() > 0.0);

    let (status, json) = post(
        &server,
        "",
        "image/jpeg",
        encode(&five_faces(), ImageFormat::Jpeg),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{json}");
    assert_eq!(json["faces"].as_array().unwrap().len(), 5, "{json}");

    // WebP, sent as an untyped byte stream: the content decides.
    let (status, json) = post(
        &server,
        "",
        "application/octet-stream",
        encode(&one_face(), ImageFormat::WebP),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{json}");
    assert_eq!(json["faces"].as_array().unwrap().len(), 1, "{json}");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn multipart_upload_and_query_options() {
    let server = Server::start(ServeConfig::default()).await;
    let form = reqwest::multipart::Form::new()
        .text("note", "ignored")
        .part(
            "upload",
            reqwest::multipart::Part::bytes(encode(&one_face(), ImageFormat::Jpeg))
                .file_name("face.jpg")
                .mime_str("image/jpeg")
                .unwrap(),
        );
    let response = reqwest::Client::new()
        .post(format!(
            "{}/v1/analyze?top_k=2&margin_x=10&margin_y=30",
            server.base
        ))
        .multipart(form)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let json: Value = response.json().await.unwrap();
    let faces = json["faces"].as_array().unwrap();
    assert_eq!(faces.len(), 1, "{json:#}");
    let top = faces[0]["probabilities"].as_array().unwrap();
    assert_eq!(top.len(), 2);
    assert!(top[0][1].as_f64() >= top[1][1].as_f64());
    assert_eq!(top[0][0], faces[0]["emotion"]);

    // A minimum face size above the picture's height finds nothing.
    let (status, json) = post(
        &server,
        "?min_face_size=500",
        "image/jpeg",
        encode(&one_face(), ImageFormat::Jpeg),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{json}");
    assert_eq!(json["faces"].as_array().unwrap().len(), 0);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_requests_get_4xx_with_a_message() {
    let config = ServeConfig {
        body_limit: 1024 * 1024,
        max_pixels: 1_000_000,
        ..ServeConfig::default()
    };
    let server = Server::start(config).await;
    let face = encode(&one_face(), ImageFormat::Jpeg);

    let (status, json) = post(
        &server,
        "",
        "image/png",
        encode(&image::DynamicImage::new_luma8(320, 240), ImageFormat::Png),
    )
    .await;
    assert_eq!(
        status,
        StatusCode::OK,
        "a picture without a face is not an error: {json}"
    );
    assert_eq!(json["faces"].as_array().unwrap().len(), 0);

    // (A truncated JPEG decodes, grey where data is missing; a truncated PNG does not.)
    let png = encode(&one_face(), ImageFormat::Png);
    let (status, json) = post(&server, "", "image/png", png[..png.len() / 2].to_vec()).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{json}");
    assert!(error_of(&json).contains("not a readable image"), "{json}");

    let (status, json) = post(&server, "", "image/png", b"hello, I am text".to_vec()).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{json}");

    let (status, json) = post(&server, "", "image/png", Vec::new()).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{json}");
    assert!(error_of(&json).contains("empty"));

    let (status, json) = post(&server, "", "text/plain", face.clone()).await;
    assert_eq!(status, StatusCode::UNSUPPORTED_MEDIA_TYPE, "{json}");
    assert!(error_of(&json).contains("text/plain"));

    let (status, json) = post(&server, "", "image/png", vec![0; 2 * 1024 * 1024]).await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE, "{json}");

    // 1666x1136 = 1.9 megapixels, over this server's limit of 1.
    let (status, json) = post(
        &server,
        "",
        "image/jpeg",
        encode(&group_photo(), ImageFormat::Jpeg),
    )
    .await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE, "{json}");
    assert!(error_of(&json).contains("1666x1136"), "{json}");

    for query in [
        "?min_face_size=5",
        "?top_k=0",
        "?top_k=many",
        "?colour=blue",
    ] {
        let (status, json) = post(&server, query, "image/jpeg", face.clone()).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{query}: {json}");
        error_of(&json);
    }

    let client = reqwest::Client::new();
    let response = client
        .get(format!("{}/v2/nothing", server.base))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::NOT_FOUND);
    let response = client
        .get(format!("{}/v1/analyze", server.base))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::METHOD_NOT_ALLOWED);
    error_of(&response.json().await.unwrap());
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn models_health_and_metrics() {
    let server = Server::start(ServeConfig::default()).await;
    let client = reqwest::Client::new();
    let models: Value = client
        .get(format!("{}/v1/models", server.base))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let model = &models["models"][0];
    assert_eq!(model["classes"].as_array().unwrap().len(), 7, "{models}");
    assert_eq!(model["input"]["side"], 48);
    assert!(
        model["validation_accuracy"].as_f64().unwrap() > 0.5,
        "{models}"
    );
    let health = client
        .get(format!("{}/healthz", server.base))
        .send()
        .await
        .unwrap();
    assert_eq!(health.status(), StatusCode::OK);

    post(
        &server,
        "",
        "image/jpeg",
        encode(&five_faces(), ImageFormat::Jpeg),
    )
    .await;
    post(&server, "", "text/plain", b"x".to_vec()).await;
    let metrics = client
        .get(format!("{}/metrics", server.base))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    for line in [
        r#"ferrite_requests_total{route="/v1/analyze",status="200"} 1"#,
        r#"ferrite_requests_total{route="/v1/analyze",status="415"} 1"#,
        r#"ferrite_errors_total{kind="content_type"} 1"#,
        "ferrite_faces_total 5",
        r#"ferrite_request_duration_seconds_count{route="/v1/analyze"} 2"#,
    ] {
        assert!(metrics.contains(line), "missing {line} in\n{metrics}");
    }
    server.stop().await;
}

/// Many clients at once against one worker and a short queue: every request is answered,
/// either with its faces or with the documented 503, and nothing else.
#[tokio::test(flavor = "multi_thread")]
async fn concurrent_load_is_answered_or_refused_with_503() {
    let config = ServeConfig {
        workers: 1,
        queue: 2,
        timeout: Duration::from_secs(30),
        ..ServeConfig::default()
    };
    let server = Server::start(config).await;
    let picture = encode(&five_faces(), ImageFormat::Jpeg);
    let url = format!("{}/v1/analyze", server.base);
    let mut tasks = Vec::new();
    for _ in 0..8 {
        let (url, picture) = (url.clone(), picture.clone());
        tasks.push(tokio::spawn(async move {
            let client = reqwest::Client::new();
            let mut answers = Vec::new();
            for _ in 0..3 {
                let response = client
                    .post(&url)
                    .header("content-type", "image/jpeg")
                    .body(picture.clone())
                    .send()
                    .await
                    .unwrap();
                let status = response.status();
                let json: Value = response.json().await.unwrap();
                answers.push((status, json));
            }
            answers
        }));
    }
    let mut answers = Vec::new();
    for task in tasks {
        answers.extend(task.await.unwrap());
    }
    assert_eq!(answers.len(), 24);
    let ok = answers.iter().filter(|(s, _)| *s == StatusCode::OK).count();
    for (status, json) in &answers {
        match *status {
            StatusCode::OK => assert_eq!(json["faces"].as_array().unwrap().len(), 5),
            StatusCode::SERVICE_UNAVAILABLE => assert!(error_of(json).contains("busy"), "{json}"),
            other => panic!("unexpected {other}: {json}"),
        }
    }
    assert!(ok >= 3, "only {ok} of 24 requests were served");
    server.stop().await;
}

/// Shutting down while a request is being analysed finishes that request first.
#[tokio::test(flavor = "multi_thread")]
async fn shutdown_finishes_the_request_in_flight() {
    let server = Server::start(ServeConfig::default()).await;
    let url = format!("{}/v1/analyze", server.base);
    let photo = encode(&group_photo(), ImageFormat::Png);
    let request = tokio::spawn(async move {
        let response = reqwest::Client::new()
            .post(url)
            .header("content-type", "image/png")
            .body(photo)
            .send()
            .await
            .unwrap();
        let answered = Instant::now();
        let status = response.status();
        let json: Value = response.json().await.unwrap();
        (status, json, answered)
    });
    // The 29-face photo takes a few hundred milliseconds to analyse; stop well inside that.
    tokio::time::sleep(Duration::from_millis(60)).await;
    let stopping = Instant::now();
    server.stop().await;
    let (status, json, answered) = request.await.unwrap();
    assert!(
        answered > stopping,
        "the request had finished before the shutdown began"
    );
    assert_eq!(status, StatusCode::OK, "{json}");
    assert!(json["faces"].as_array().unwrap().len() >= 25);
}
