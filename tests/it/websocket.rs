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

async fn subscribe_all(ws: &mut Socket, topics: &[String]) {
    for topic in topics {
        send(ws, json!({"type": "subscribe", "topic": topic})).await;
    }
}

async fn send(ws: &mut Socket, value: Value) {
    ws.send(Message::text(value.to_string())).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn subscribers_receive_versioned_availability() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(&dir.path().join("data"), &[]);
    let api = Api::admin(&server).await;
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

    // A draft's availability is not broadcast.
    let draft = api
        .post(
            "/api/v1/events",
            &json!({"title": "Secret", "starts_at": "2030-01-01T18:00:00Z", "ends_at": "2030-01-01T23:00:00Z"}),
            None,
        )
        .await
        .str("id");
    send(
        &mut ws,
        json!({"type": "subscribe", "topic": format!("event:{draft}")}),
    )
    .await;
    assert_eq!(next_of(&mut ws, "error").await["code"], "event_not_found");

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

/// A subscriber that never reads is disconnected once its socket has made no progress for
/// `lag_timeout`, and its connection is released: the server never buffers for a slow client
/// without limit.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_never_reads_is_dropped_and_released() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(
        &dir.path().join("data"),
        &[
            ("WEBSOCKET__SEND_BUFFER_MAX", "8"),
            ("WEBSOCKET__LAG_TIMEOUT_MS", "1000"),
            ("WEBSOCKET__PUSHES_PER_SEC_MAX", "100"),
        ],
    );
    let api = Api::admin(&server).await;
    let mut events = Vec::new();
    for _ in 0..16 {
        events.push(api.published_event(100_000, 600, 1).await);
    }
    let topics: Vec<_> = events
        .iter()
        .map(|(event, _)| format!("event:{event}"))
        .collect();
    // A tiny receive buffer so the kernel stops absorbing frames early.
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(1024).unwrap();
    let stream = tokio_tungstenite::MaybeTlsStream::Plain(
        socket.connect(server.addr.parse().unwrap()).await.unwrap(),
    );
    let (mut lagging, _) =
        tokio_tungstenite::client_async(format!("ws://{}/api/v1/ws", server.addr), stream)
            .await
            .unwrap();
    subscribe_all(&mut lagging, &topics).await;

    // Keep availability changing on every subscribed event until the server gives up on it.
    let dropped = tests::wait_for(Duration::from_secs(120), || {
        let (api, events) = (api.clone(), events.clone());
        async move {
            futures::future::join_all(
                events
                    .iter()
                    .map(|(event, tt)| api.hold(event, tt, 1, None)),
            )
            .await;
            (api.metric("ws_clients_dropped_total{reason=\"lagging\"}")
                .await?
                >= 1.0)
                .then_some(())
        }
    })
    .await;
    assert!(dropped.is_some(), "the lagging client was never dropped");
    // Its session and its writer (which owned the socket) are released on the server.
    let released = tests::wait_for(Duration::from_secs(30), || {
        let api = api.clone();
        async move {
            let sessions = api.metric("ws_connections").await?;
            let writers = api.metric("ws_writer_tasks").await?;
            (sessions == 0.0 && writers == 0.0).then_some(())
        }
    })
    .await;
    assert!(
        released.is_some(),
        "the server still holds the lagging connection"
    );
    // What remains is the kernel's orphaned socket draining its send buffer (bounded by the
    // kernel and reaped by it); the server itself holds nothing for the client any more.
    drop(lagging);
}
