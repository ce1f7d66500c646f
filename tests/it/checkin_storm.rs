//! Exactly-once admission over the CheckInHub: 8 scanners, 10,000 tickets, 2% of them presented
//! at two gates at once, and scanners that drop their connection and, after reconnecting, send
//! their unanswered scans again with the same nonces. Every ticket is admitted once; the
//! duplicates reported are exactly the duplicates injected.

use futures::{SinkExt, StreamExt};
use serde_json::{Value, json};
use std::collections::HashMap;
use std::time::Duration;
use tests::{Api, Server};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

const SCANNERS: usize = 8;
const TICKETS: usize = 10_000;
/// Every 50th ticket (2%) is also presented at a second gate.
const DUPLICATE_EVERY: usize = 50;
/// Scans in flight per scanner.
const WINDOW: usize = 64;

type Socket =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

async fn connect(server: &Server, token: &str) -> Socket {
    let mut request = format!("ws://{}/api/v1/ws", server.addr)
        .into_client_request()
        .unwrap();
    request
        .headers_mut()
        .insert("authorization", format!("Bearer {token}").parse().unwrap());
    tokio_tungstenite::connect_async(request).await.unwrap().0
}

/// One scanner: sends its scans (window of `WINDOW`), drops the connection once at `drop_at`
/// answers, reconnects and sends every unanswered scan again with its nonce. Returns the
/// result of each scan by its index.
async fn scanner(
    server: &Server,
    token: &str,
    event: &str,
    scans: Vec<(String, &'static str, String)>,
    drop_at: usize,
) -> Vec<String> {
    let mut results: HashMap<usize, String> = HashMap::new();
    let mut dropped = false;
    let mut ws = connect(server, token).await;
    let mut in_flight: Vec<usize> = Vec::new();
    let mut next = 0;
    while results.len() < scans.len() {
        while next < scans.len() && in_flight.len() < WINDOW {
            let (code, gate, nonce) = &scans[next];
            let frame = json!({"type": "scan", "event_id": event, "ticket_code": code,
                "gate": gate, "nonce": nonce, "ref": next.to_string()});
            ws.send(Message::text(frame.to_string())).await.unwrap();
            in_flight.push(next);
            next += 1;
        }
        if !dropped && results.len() >= drop_at {
            // The connection drops with answers outstanding; after reconnecting, the scanner
            // sends those scans again with the same nonces.
            dropped = true;
            drop(ws);
            ws = connect(server, token).await;
            for i in &in_flight {
                let (code, gate, nonce) = &scans[*i];
                let frame = json!({"type": "scan", "event_id": event, "ticket_code": code,
                    "gate": gate, "nonce": nonce, "ref": i.to_string()});
                ws.send(Message::text(frame.to_string())).await.unwrap();
            }
        }
        let frame = tokio::time::timeout(Duration::from_secs(60), ws.next())
            .await
            .expect("an answer within 60 s")
            .expect("connection open")
            .unwrap();
        let Message::Text(text) = frame else { continue };
        let v: Value = serde_json::from_str(&text).unwrap();
        assert_ne!(v["type"], "error", "{v}");
        if v["type"] == "scan_result" {
            let i: usize = v["ref"].as_str().unwrap().parse().unwrap();
            let result = v["data"]["result"].as_str().unwrap();
            if result == "failed" {
                // Not decided (the server was too busy): the scanner tries again, same nonce.
                let (code, gate, nonce) = &scans[i];
                let frame = json!({"type": "scan", "event_id": event, "ticket_code": code,
                    "gate": gate, "nonce": nonce, "ref": i.to_string()});
                ws.send(Message::text(frame.to_string())).await.unwrap();
                continue;
            }
            in_flight.retain(|j| *j != i);
            results.insert(i, result.to_owned());
        }
    }
    (0..scans.len())
        .map(|i| results.remove(&i).unwrap())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn eight_scanners_admit_each_ticket_exactly_once() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(&dir.path().join("data"), &[]);
    let api = Api::admin(&server).await;
    let token = api.token.clone().unwrap();
    let (event, tt) = api.published_event(TICKETS as u32, 600, 100).await;
    let mut codes = Vec::with_capacity(TICKETS);
    for _ in 0..TICKETS / 100 {
        let held = api.hold(&event, &tt, 100, None).await;
        assert_eq!(held.status, 201, "{:?}", held.body);
        let confirmed = api
            .post(
                &format!("/api/v1/registrations/{}/confirm", held.str("id")),
                &json!({}),
                None,
            )
            .await;
        for t in confirmed.body["tickets"].as_array().unwrap() {
            codes.push(t["code"].as_str().unwrap().to_owned());
        }
    }
    assert_eq!(codes.len(), TICKETS);

    // Each ticket goes to one scanner; every 50th also to the next scanner at another gate.
    let mut plans: Vec<Vec<(String, &'static str, String)>> = vec![Vec::new(); SCANNERS];
    let mut injected = 0;
    for (i, code) in codes.iter().enumerate() {
        plans[i % SCANNERS].push((code.clone(), "north", format!("{i}-a")));
        if i % DUPLICATE_EVERY == 0 {
            plans[(i + 1) % SCANNERS].push((code.clone(), "south", format!("{i}-b")));
            injected += 1;
        }
    }
    let runs = plans.into_iter().enumerate().map(|(s, plan)| {
        let (server, token, event) = (&server, token.clone(), event.clone());
        let codes = plan.iter().map(|p| p.0.clone()).collect::<Vec<_>>();
        async move {
            // Scanners drop their connection at different points.
            let drop_at = plan.len() / 4 + s * 37;
            let results = scanner(server, &token, &event, plan, drop_at).await;
            codes.into_iter().zip(results).collect::<Vec<_>>()
        }
    });
    let outcomes: Vec<(String, String)> = futures::future::join_all(runs)
        .await
        .into_iter()
        .flatten()
        .collect();

    let mut admitted: HashMap<&str, usize> = HashMap::new();
    let mut duplicates = 0;
    for (code, result) in &outcomes {
        match result.as_str() {
            "admitted" => *admitted.entry(code).or_default() += 1,
            "duplicate" => duplicates += 1,
            other => panic!("unexpected result {other}"),
        }
    }
    assert_eq!(admitted.len(), TICKETS, "every ticket admitted");
    assert!(
        admitted.values().all(|n| *n == 1),
        "no ticket admitted twice"
    );
    assert_eq!(
        duplicates, injected,
        "duplicates reported = duplicates injected"
    );
    // The server agrees: its export shows each ticket checked in.
    let export = api
        .http
        .get(server.url(&format!("/api/v1/events/{event}/tickets.csv")))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let checked_in = export
        .lines()
        .skip(1)
        .filter(|row| row.split(',').nth(9).is_some_and(|c| !c.is_empty()))
        .count();
    assert_eq!(checked_in, TICKETS);
}
