//! The flash sale: many concurrent buyers, few seats, retries with Idempotency-Key.

use futures::future::join_all;
use std::collections::HashSet;
use tests::{Api, Server};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_thousand_buyers_for_a_hundred_seats_sell_exactly_a_hundred() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(&dir.path().join("data"), &[]);
    let api = Api::admin(&server).await;
    let (event, tt) = api.published_event(100, 600, 4).await;

    let buyers = (0..2000).map(|i| {
        let (api, event, tt) = (api.clone(), event.clone(), tt.clone());
        tokio::spawn(async move {
            (
                i,
                api.hold(&event, &tt, 1, Some(&format!("buyer-{i}"))).await,
            )
        })
    });
    let replies: Vec<_> = join_all(buyers)
        .await
        .into_iter()
        .map(Result::unwrap)
        .collect();

    let won: Vec<_> = replies.iter().filter(|(_, r)| r.status == 201).collect();
    let sold_out = replies
        .iter()
        .filter(|(_, r)| r.status == 409 && r.str("code") == "sold_out")
        .count();
    let other: Vec<_> = replies
        .iter()
        .filter(|(_, r)| r.status != 201 && r.status != 409)
        .collect();
    assert!(other.is_empty(), "unexpected replies: {:?}", other.first());
    assert_eq!(won.len(), 100, "exactly the capacity is sold");
    assert_eq!(sold_out, 1900);
    let ids: HashSet<String> = won.iter().map(|(_, r)| r.str("id")).collect();
    assert_eq!(ids.len(), 100, "every winner got its own registration");
    for (_, r) in &replies {
        if r.status == 409 {
            assert_eq!(r.content_type, "application/problem+json");
            assert_eq!(r.body["type"], "/problems/sold_out");
        }
    }
    assert_eq!(api.availability(&event).await, (100, 100, 0, 0));
    let listed = api
        .get(&format!(
            "/api/v1/events/{event}/registrations?status=held&limit=500"
        ))
        .await;
    assert_eq!(listed.body["items"].as_array().unwrap().len(), 100);

    // A retried request with the same key returns the same registration and books nothing.
    let (i, first) = won[0];
    let again = api.hold(&event, &tt, 1, Some(&format!("buyer-{i}"))).await;
    assert_eq!(again.status, 201);
    assert_eq!(again.str("id"), first.str("id"));
    // The same key with a different body is refused.
    let other_body = api.hold(&event, &tt, 2, Some(&format!("buyer-{i}"))).await;
    assert_eq!(other_body.status, 422);
    assert_eq!(other_body.str("code"), "idempotency_key_reused");
    assert_eq!(api.availability(&event).await, (100, 100, 0, 0));

    // After a restart the gateway's cache is empty: the pool's durable idempotency answers.
    let server = server.restart(&[]);
    let api = Api::admin(&server).await;
    let after_restart = api.hold(&event, &tt, 1, Some(&format!("buyer-{i}"))).await;
    assert_eq!(after_restart.status, 201, "{after_restart:?}");
    assert_eq!(after_restart.str("id"), first.str("id"));
    assert_eq!(api.availability(&event).await, (100, 100, 0, 0));
    // The key is durable for the whole event: reusing it for another ticket type (another
    // pool) is refused, not booked.
    let other = api
        .post(
            &format!("/api/v1/events/{event}/ticket-types"),
            &serde_json::json!({"name": "VIP", "price_minor": 9000, "currency": "EUR", "capacity": 10}),
            None,
        )
        .await;
    assert_eq!(other.status, 201);
    let cross = api
        .hold(&event, &other.str("id"), 1, Some(&format!("buyer-{i}")))
        .await;
    assert_eq!(
        (cross.status, cross.str("code").as_str()),
        (422, "idempotency_key_reused"),
        "{cross:?}"
    );
    let vip = api
        .get(&format!("/api/v1/events/{event}/availability"))
        .await;
    assert_eq!(
        vip.body["ticket_types"][1]["held"], 0,
        "nothing booked on the other pool"
    );
}
