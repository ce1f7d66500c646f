//! The WebSocket hub: subscribe to `event:{id}`, receive versioned availability snapshots.

use futures::{SinkExt, StreamExt};
use serde_json::{Value, json};
use std::time::Duration;
use tests::{Api, Server};
use tokio_tungstenite::tungstenite::Message;

type Socket =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// The next JSON frame whose `type` is `kind`, within a deadline.
async fn next_of(ws: &mut Socket, kind: &str) -> Value {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let frame = tokio::time::timeout_at(deadline, ws.next())
            .await
            .expect("no frame in time")
            .expect("closed")
            .unwrap();
        if let Message::Text(text) = frame {
            let value: Value = serde_json::from_str(&text).unwrap();
            if value["type"] == kind {
                return value;
            }
        }
    }
}

async fn send(ws: &mut Socket, value: Value) {
    ws.send(Message::text(value.to_string())).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn subscribers_receive_versioned_availability() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(&dir.path().join("data"), &[]);
    let api = Api::new(&server);
    let (event, tt) = api.published_event(10, 600, 4).await;
    let (mut ws, _) = tokio_tungstenite::connect_async(format!("ws://{}/api/v1/ws", server.addr))
        .await
        .unwrap();

    send(
        &mut ws,
        json!({"type": "subscribe", "topic": format!("event:{event}")}),
    )
    .await;
    assert_eq!(
        next_of(&mut ws, "subscribed").await["topic"],
        format!("event:{event}")
    );
    let first = next_of(&mut ws, "availability").await;
    assert_eq!(first["data"]["ticket_types"][0]["available"], 10);
    let v0 = first["data"]["version"].as_u64().unwrap();

    assert_eq!(api.hold(&event, &tt, 3, None).await.status, 201);
    let update = loop {
        let frame = next_of(&mut ws, "availability").await;
        if frame["data"]["ticket_types"][0]["held"] == 3 {
            break frame;
        }
    };
    assert!(
        update["data"]["version"].as_u64().unwrap() > v0,
        "versions grow"
    );
    assert_eq!(update["data"]["ticket_types"][0]["available"], 7);

    // Bad messages get an error frame and keep the connection.
    send(
        &mut ws,
        json!({"type": "subscribe", "topic": "weather:today"}),
    )
    .await;
    assert_eq!(next_of(&mut ws, "error").await["code"], "unknown_topic");
    ws.send(Message::text("not json")).await.unwrap();
    assert_eq!(next_of(&mut ws, "error").await["code"], "invalid_message");
    send(
        &mut ws,
        json!({"type": "subscribe", "topic": format!("event:{}", uuid::Uuid::new_v4())}),
    )
    .await;
    assert_eq!(next_of(&mut ws, "error").await["code"], "event_not_found");
    send(&mut ws, json!({"type": "ping"})).await;
    next_of(&mut ws, "pong").await;
}
