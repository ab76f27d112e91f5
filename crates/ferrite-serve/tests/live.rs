//! The live WebSocket: frames in, one answer per analysed frame out, stale frames dropped.

mod common;

use common::{Server, encode, five_faces, one_face};
use ferrite_serve::ServeConfig;
use futures_util::{SinkExt, StreamExt};
use image::ImageFormat;
use serde_json::Value;
use tokio_tungstenite::tungstenite::Message;

#[tokio::test(flavor = "multi_thread")]
async fn every_frame_is_answered_or_counted_as_dropped() {
    let server = Server::start(ServeConfig::default()).await;
    let url = format!("{}/v1/live", server.base.replace("http://", "ws://"));
    let (mut socket, _) = tokio_tungstenite::connect_async(url).await.unwrap();

    // One frame, one answer.
    let face = encode(&one_face(), ImageFormat::Jpeg);
    socket
        .send(Message::Binary(face.clone().into()))
        .await
        .unwrap();
    let first = next_answer(&mut socket).await;
    assert_eq!(
        (first["frame"].as_u64(), first["dropped"].as_u64()),
        (Some(1), Some(0))
    );
    assert_eq!(first["faces"].as_array().unwrap().len(), 1, "{first}");

    // A burst: the server may skip frames that a newer one overtook, but the last frame is
    // always answered and every frame is either answered or counted as dropped.
    let burst = 12;
    let five = encode(&five_faces(), ImageFormat::Jpeg);
    for _ in 0..burst {
        socket
            .send(Message::Binary(five.clone().into()))
            .await
            .unwrap();
    }
    let (mut answered, mut dropped, mut last) = (0, 0, 0);
    while last < 1 + burst {
        let answer = next_answer(&mut socket).await;
        assert!(
            answer["frame"].as_u64().unwrap() > last,
            "frames answered in order"
        );
        last = answer["frame"].as_u64().unwrap();
        answered += 1;
        dropped += answer["dropped"].as_u64().unwrap();
        assert_eq!(answer["faces"].as_array().unwrap().len(), 5, "{answer}");
    }
    assert_eq!(answered + dropped, burst);

    // A frame that is not a picture gets an error answer; the socket stays open.
    socket
        .send(Message::Binary(b"not a picture".to_vec().into()))
        .await
        .unwrap();
    let bad = next_answer(&mut socket).await;
    assert!(
        bad["error"]
            .as_str()
            .unwrap()
            .contains("not a readable image"),
        "{bad}"
    );
    socket.send(Message::Binary(face.into())).await.unwrap();
    assert_eq!(
        next_answer(&mut socket).await["faces"]
            .as_array()
            .unwrap()
            .len(),
        1
    );

    socket.close(None).await.unwrap();
    server.stop().await;
}

async fn next_answer<S>(socket: &mut S) -> Value
where
    S: StreamExt<Item = Result<Message, tokio_tungstenite::tungstenite::Error>> + Unpin,
{
    loop {
        match socket.next().await.expect("socket open").unwrap() {
            Message::Text(text) => return serde_json::from_str(&text).unwrap(),
            Message::Close(_) => panic!("the server closed the socket"),
            _ => {}
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn session_options_come_from_the_query_and_bad_ones_are_refused() {
    let server = Server::start(ServeConfig::default()).await;
    let ws = server.base.replace("http://", "ws://");
    let refused = tokio_tungstenite::connect_async(format!("{ws}/v1/live?top_k=0")).await;
    match refused {
        Err(tokio_tungstenite::tungstenite::Error::Http(response)) => {
            assert_eq!(response.status(), 400)
        }
        other => panic!("expected a 400 refusal, got {other:?}"),
    }
    let url = format!("{ws}/v1/live?top_k=1&min_face_size=60");
    let (mut socket, _) = tokio_tungstenite::connect_async(url).await.unwrap();
    let five = encode(&five_faces(), ImageFormat::Jpeg);
    socket.send(Message::Binary(five.into())).await.unwrap();
    let answer = next_answer(&mut socket).await;
    let faces = answer["faces"].as_array().unwrap();
    assert_eq!(faces.len(), 5, "{answer}");
    assert!(
        faces
            .iter()
            .all(|f| f["probabilities"].as_array().unwrap().len() == 1)
    );
    socket.close(None).await.unwrap();
    server.stop().await;
}
