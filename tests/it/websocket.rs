//! The WebSocket hub: subscribe to `event:{id}`, receive versioned availability snapshots.

use futures::{SinkExt, StreamExt};
use serde_json::{Value, json};
use std::time::Duration;
use tests::ws::{Socket, connect, next_of, send};
use tests::{Api, Server};
use tokio_tungstenite::tungstenite::Message;

async fn subscribe_all(ws: &mut Socket, topics: &[String]) {
    for topic in topics {
        send(ws, json!({"type": "subscribe", "topic": topic})).await;
    }
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
            (api.metric("regengine_ws_clients_dropped_total{reason=\"lagging\"}")
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
            let sessions = api.metric("regengine_ws_connections").await?;
            let writers = api.metric("regengine_ws_writer_tasks").await?;
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

/// Opens the hub, with `Authorization: Bearer token` on the upgrade request if given.
/// Frames of `ws` up to the `pong` answering a ping sent now.
async fn frames_until_pong(ws: &mut Socket) -> Vec<Value> {
    send(ws, json!({"type": "ping"})).await;
    let mut frames = vec![];
    loop {
        let frame = tokio::time::timeout(Duration::from_secs(10), ws.next())
            .await
            .expect("no frame in time")
            .expect("closed")
            .unwrap();
        if let Message::Text(text) = frame {
            let value: Value = serde_json::from_str(&text).unwrap();
            if value["type"] == "pong" {
                return frames;
            }
            frames.push(value);
        }
    }
}

/// The next `registration` push of `ws` about `id` with `status`.
async fn pushed(ws: &mut Socket, id: &str, status: &str) -> Value {
    loop {
        let frame = next_of(ws, "registration").await;
        if frame["data"]["id"] == id && frame["data"]["status"] == status {
            return frame;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_user_receives_only_their_own_registration_updates() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(&dir.path().join("data"), &[]);
    let admin = Api::admin(&server).await;
    let (event, tt) = admin.published_event(10, 600, 4).await;
    let (short_event, short_tt) = admin.published_event(10, 1, 4).await;
    let anonymous = admin.with_token(None);
    let (ann_id, ann) = anonymous.signed_in("ann@example.com").await;
    let ann_token = ann["access_token"].as_str().unwrap().to_owned();
    let ann = admin.with_token(Some(ann_token.clone()));
    let (bob_id, bob) = anonymous.signed_in("bob@example.com").await;
    let bob_token = bob["access_token"].as_str().unwrap().to_owned();
    let bob = admin.with_token(Some(bob_token.clone()));

    // Anonymous: no private topic. Bob may not listen to Ann.
    let mut bob_ws = connect(&server, None).await;
    let ann_topic = format!("registrations:{ann_id}");
    let bob_topic = format!("registrations:{bob_id}");
    send(
        &mut bob_ws,
        json!({"type": "subscribe", "topic": ann_topic}),
    )
    .await;
    assert_eq!(next_of(&mut bob_ws, "error").await["code"], "unauthorized");
    send(&mut bob_ws, json!({"type": "auth", "token": bob_token})).await;
    assert_eq!(
        next_of(&mut bob_ws, "authenticated").await["user_id"],
        bob_id.as_str()
    );
    send(
        &mut bob_ws,
        json!({"type": "subscribe", "topic": ann_topic}),
    )
    .await;
    assert_eq!(next_of(&mut bob_ws, "error").await["code"], "forbidden");
    send(
        &mut bob_ws,
        json!({"type": "subscribe", "topic": bob_topic}),
    )
    .await;
    assert_eq!(next_of(&mut bob_ws, "subscribed").await["topic"], bob_topic);

    // Ann authenticates with the upgrade request's header.
    let mut ann_ws = connect(&server, Some(&ann_token)).await;
    send(
        &mut ann_ws,
        json!({"type": "subscribe", "topic": ann_topic}),
    )
    .await;
    assert_eq!(next_of(&mut ann_ws, "subscribed").await["topic"], ann_topic);

    // Ann's hold, confirmation and cancellation reach her, as the registration reads over HTTP.
    let held = ann.hold(&event, &tt, 2, None).await;
    assert_eq!(held.status, 201, "{:?}", held.body);
    let ann_reg = held.str("id");
    let frame = pushed(&mut ann_ws, &ann_reg, "held").await;
    assert_eq!(frame["topic"], ann_topic);
    assert_eq!(frame["data"]["quantity"], 2);
    let path = format!("/api/v1/registrations/{ann_reg}");
    assert_eq!(
        ann.post(&format!("{path}/confirm"), &json!({}), None)
            .await
            .status,
        200
    );
    let confirmed = pushed(&mut ann_ws, &ann_reg, "confirmed").await;
    assert_eq!(confirmed["data"]["tickets"].as_array().unwrap().len(), 2);
    assert_eq!(
        ann.post(&format!("{path}/cancel"), &json!({}), None)
            .await
            .status,
        200
    );
    pushed(&mut ann_ws, &ann_reg, "canceled").await;

    // Bob's hold runs out: he hears of its expiry (a push shows the registration as it is
    // when sent, so the hold's own push may already read `expired`).
    let held = bob.hold(&short_event, &short_tt, 1, None).await;
    assert_eq!(held.status, 201, "{:?}", held.body);
    let bob_reg = held.str("id");
    pushed(&mut bob_ws, &bob_reg, "expired").await;

    // Neither heard of the other's registration.
    let leaked = |frames: Vec<Value>, other: &str| {
        frames
            .iter()
            .any(|f| f["type"] == "registration" && f["data"]["id"] == other)
    };
    assert!(!leaked(frames_until_pong(&mut ann_ws).await, &bob_reg));
    assert!(!leaked(frames_until_pong(&mut bob_ws).await, &ann_reg));

    // A bad token ends the connection's identity and its private subscriptions.
    send(&mut bob_ws, json!({"type": "auth", "token": "not.a.token"})).await;
    assert_eq!(next_of(&mut bob_ws, "error").await["code"], "unauthorized");
    send(
        &mut bob_ws,
        json!({"type": "subscribe", "topic": bob_topic}),
    )
    .await;
    assert_eq!(next_of(&mut bob_ws, "error").await["code"], "unauthorized");
    // An invalid header refuses the upgrade itself.
    let refused = tokio_tungstenite::connect_async({
        use tokio_tungstenite::tungstenite::client::IntoClientRequest;
        let mut r = format!("ws://{}/api/v1/ws", server.addr)
            .into_client_request()
            .unwrap();
        r.headers_mut()
            .insert("authorization", "Bearer forged".parse().unwrap());
        r
    })
    .await;
    assert!(
        refused.is_err(),
        "an invalid bearer token must not open the hub"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn private_subscriptions_end_when_the_token_expires() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(
        &dir.path().join("data"),
        &[("AUTH__ACCESS_TTL_SECS", "10"), ("AUTH__LEEWAY_SECS", "0")],
    );
    let api = Api::new(&server);
    api.wait_ready().await;
    let (ann_id, ann) = api.signed_in("ann@example.com").await;
    let mut ws = connect(&server, Some(ann["access_token"].as_str().unwrap())).await;
    let topic = format!("registrations:{ann_id}");
    send(&mut ws, json!({"type": "subscribe", "topic": topic})).await;
    assert_eq!(next_of(&mut ws, "subscribed").await["topic"], topic);
    // The token lives 10 s: the subscription ends then (waited for with a generous deadline).
    let expired = tokio::time::timeout(Duration::from_secs(30), async {
        loop {
            match ws.next().await {
                Some(Ok(Message::Text(text))) => {
                    let value: Value = serde_json::from_str(&text).unwrap();
                    if value["type"] == "error" {
                        return value;
                    }
                }
                Some(Ok(_)) => {}
                other => panic!("connection ended: {other:?}"),
            }
        }
    })
    .await
    .expect("the subscription outlived its token");
    assert_eq!(expired["code"], "token_expired");

    // A fresh token of the same user, and the topic again: pushes resume.
    let login = api
        .post(
            "/api/v1/auth/login",
            &json!({"email": "ann@example.com", "password": "correct horse battery"}),
            None,
        )
        .await;
    let fresh = login.str("access_token");
    send(&mut ws, json!({"type": "auth", "token": fresh})).await;
    next_of(&mut ws, "authenticated").await;
    send(&mut ws, json!({"type": "subscribe", "topic": topic})).await;
    assert_eq!(next_of(&mut ws, "subscribed").await["topic"], topic);
    let admin = Api::admin(&server).await;
    let (event, tt) = admin.published_event(5, 600, 2).await;
    let held = admin
        .with_token(Some(fresh))
        .hold(&event, &tt, 1, None)
        .await;
    assert_eq!(held.status, 201, "{:?}", held.body);
    pushed(&mut ws, &held.str("id"), "held").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scanners_scan_over_the_hub_and_hear_other_gates() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(&dir.path().join("data"), &[]);
    let admin = Api::admin(&server).await;
    let (event, tt) = admin.published_event(10, 600, 4).await;
    let held = admin.hold(&event, &tt, 2, None).await.str("id");
    let confirmed = admin
        .post(
            &format!("/api/v1/registrations/{held}/confirm"),
            &json!({}),
            None,
        )
        .await;
    let codes: Vec<String> = confirmed.body["tickets"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["code"].as_str().unwrap().to_owned())
        .collect();
    let anonymous = admin.with_token(None);
    let (sam_id, sam) = anonymous.signed_in("sam@example.com").await;
    let member = admin
        .at(
            reqwest::Method::PUT,
            &format!("/api/v1/events/{event}/members/{sam_id}"),
        )
        .json(&json!({"role": "staff"}));
    assert_eq!(admin.send(member).await.status, 200);
    // Roles per event live on the event: Sam's token need not change.
    let (_, ann) = anonymous.signed_in("ann@example.com").await;

    let topic = format!("checkin:{event}");
    let mut gate_a = connect(&server, sam["access_token"].as_str()).await;
    let mut gate_b = connect(&server, admin.token.as_deref()).await;
    let mut buyer = connect(&server, ann["access_token"].as_str()).await;
    for ws in [&mut gate_a, &mut gate_b] {
        send(ws, json!({"type": "subscribe", "topic": topic})).await;
        assert_eq!(next_of(ws, "subscribed").await["topic"], topic);
    }
    // A buyer may neither listen nor scan.
    send(&mut buyer, json!({"type": "subscribe", "topic": topic})).await;
    assert_eq!(next_of(&mut buyer, "error").await["code"], "forbidden");
    send(
        &mut buyer,
        json!({"type": "scan", "event_id": event, "ticket_code": codes[0]}),
    )
    .await;
    assert_eq!(next_of(&mut buyer, "error").await["code"], "forbidden");

    // Gate A admits ticket 1; gate B hears of it.
    let scan = |code: &str, gate: &str, reference: &str, nonce: Option<&str>| json!({"type": "scan", "event_id": event, "ticket_code": code, "gate": gate, "ref": reference, "nonce": nonce});
    send(&mut gate_a, scan(&codes[0], "north", "r1", Some("a-1"))).await;
    let answer = next_of(&mut gate_a, "scan_result").await;
    assert_eq!(
        (answer["ref"].as_str(), answer["data"]["result"].as_str()),
        (Some("r1"), Some("admitted"))
    );
    let heard = next_of(&mut gate_b, "scan").await;
    assert_eq!(
        (
            heard["data"]["result"].as_str(),
            heard["data"]["gate"].as_str()
        ),
        (Some("admitted"), Some("north"))
    );
    assert_eq!(heard["data"]["ticket_id"], answer["data"]["ticket_id"]);

    // Gate B presents the same ticket: a duplicate naming gate A's admission.
    send(&mut gate_b, scan(&codes[0], "south", "r2", None)).await;
    let dup = next_of(&mut gate_b, "scan_result").await;
    assert_eq!(
        (
            dup["data"]["result"].as_str(),
            dup["data"]["first_gate"].as_str()
        ),
        (Some("duplicate"), Some("north"))
    );
    // Gate A reconnects and retries its scan with the same nonce: the first answer again.
    drop(gate_a);
    let mut gate_a = connect(&server, sam["access_token"].as_str()).await;
    send(
        &mut gate_a,
        scan(&codes[0], "north", "r1-retry", Some("a-1")),
    )
    .await;
    let retry = next_of(&mut gate_a, "scan_result").await;
    assert_eq!(
        (retry["ref"].as_str(), retry["data"]["result"].as_str()),
        (Some("r1-retry"), Some("admitted"))
    );
    // A forged code, and a second ticket.
    send(&mut gate_a, scan("T2FORGED", "north", "r3", None)).await;
    assert_eq!(
        next_of(&mut gate_a, "scan_result").await["data"]["result"],
        "invalid_signature"
    );
    send(&mut gate_a, scan(&codes[1], "north", "r4", None)).await;
    assert_eq!(
        next_of(&mut gate_a, "scan_result").await["data"]["result"],
        "admitted"
    );

    // Statistics follow on the topic and over HTTP: 2 admitted (both at north), 1 duplicate.
    let stats = loop {
        let frame = next_of(&mut gate_b, "stats").await;
        if frame["data"]["admitted"] == 2 {
            break frame;
        }
    };
    assert_eq!(stats["data"]["duplicates"], 1);
    assert_eq!(stats["data"]["per_gate"][0]["gate"], "north");
    assert_eq!(stats["data"]["per_gate"][0]["admitted"], 2);
    let per_minute: u64 = stats["data"]["per_minute"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["admitted"].as_u64().unwrap())
        .sum();
    assert_eq!(per_minute, 2);
    let http = admin
        .get(&format!("/api/v1/events/{event}/checkin-stats"))
        .await;
    assert_eq!(
        (
            http.body["admitted"].as_u64(),
            http.body["duplicates"].as_u64()
        ),
        (Some(2), Some(1))
    );
    // And as metrics, for the SREs' dashboards (set once the scans are durable).
    for (series, value) in [
        (
            format!("regengine_event_checkin_admitted_total{{event=\"{event}\"}}"),
            2.0,
        ),
        (
            format!("regengine_event_checkin_duplicates_total{{event=\"{event}\"}}"),
            1.0,
        ),
        (
            format!("regengine_event_checkin_exits_total{{event=\"{event}\"}}"),
            0.0,
        ),
        (
            format!(
                "regengine_event_checkin_admitted_by_gate_total{{event=\"{event}\",gate=\"north\"}}"
            ),
            2.0,
        ),
    ] {
        assert_eq!(admin.metric(&series).await, Some(value), "{series}");
    }
    let buyer_api = admin.with_token(Some(ann["access_token"].as_str().unwrap().to_owned()));
    assert_eq!(
        buyer_api
            .get(&format!("/api/v1/events/{event}/checkin-stats"))
            .await
            .status,
        403
    );
}
