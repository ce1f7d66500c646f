//! Idempotency keys are per account, in memory and durably: two organizers (or a buyer and
//! another) who happen to send the same key each get their own result, while each one's
//! retry — before or after a restart — gets its first answer back.

use serde_json::json;
use tests::{Api, Reply, Server};

async fn post_with_key(api: &Api, path: &str, body: &serde_json::Value, key: &str) -> Reply {
    api.post(path, body, Some(key)).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_same_key_from_two_accounts_makes_two_things_and_retries_replay() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let server = Server::start(&data, &[]);
    let admin = Api::admin(&server).await;
    let (_, alice) = admin.account("alice@example.com", &["organizer"]).await;
    let (bob_id, bob) = admin.account("bob@example.com", &["organizer"]).await;
    let (_, ann) = admin.account("ann@example.com", &[]).await;
    let (_, ben) = admin.account("ben@example.com", &[]).await;
    let key = "shared-key-1";
    let event_body = json!({"title": "Same body", "starts_at": "2030-06-01T18:00:00Z",
                            "ends_at": "2030-06-01T23:00:00Z"});
    let tt_body = json!({"name": "GA", "price_minor": 1000, "currency": "EUR", "capacity": 10});

    // Events: Alice first; then, after a restart (only the durable record is left), Bob with
    // the same key and body gets his own draft, and Alice's retry gets hers.
    let alice_event = post_with_key(&alice, "/api/v1/events", &event_body, key).await;
    assert_eq!(alice_event.status, 201, "{:?}", alice_event.body);
    let event = alice_event.str("id");
    // Bob co-organizes Alice's event: both may add ticket types to it.
    let member = alice
        .send(
            alice
                .at(
                    reqwest::Method::PUT,
                    &format!("/api/v1/events/{event}/members/{bob_id}"),
                )
                .json(&json!({"role": "organizer"})),
        )
        .await;
    assert_eq!(member.status, 200, "{:?}", member.body);
    let tt_path = format!("/api/v1/events/{event}/ticket-types");
    let alice_tt = post_with_key(&alice, &tt_path, &tt_body, key).await;
    assert_eq!(alice_tt.status, 201, "{:?}", alice_tt.body);
    let published = alice
        .post(&format!("/api/v1/events/{event}/publish"), &json!({}), None)
        .await;
    assert_eq!(published.status, 200, "{:?}", published.body);
    let hold_path = format!("/api/v1/events/{event}/registrations");
    let hold_body = json!({"ticket_type_id": alice_tt.str("id"), "quantity": 1,
                           "attendee": {"name": "Buyer", "email": "buyer@example.com"}});
    let ann_hold = post_with_key(&ann, &hold_path, &hold_body, key).await;
    assert_eq!(ann_hold.status, 201, "{:?}", ann_hold.body);

    let tokens = [&alice, &bob, &ann, &ben].map(|a| a.token.clone());
    let server = server.restart(&[]);
    let base = Api::new(&server);
    base.wait_ready().await;
    let [alice, bob, ann, ben] = tokens.map(|t| base.with_token(t));

    // POST /events
    let bob_event = post_with_key(&bob, "/api/v1/events", &event_body, key).await;
    assert_eq!(bob_event.status, 201, "{:?}", bob_event.body);
    assert_ne!(bob_event.str("id"), event, "Bob was handed Alice's draft");
    assert_eq!(
        bob.get(&format!("/api/v1/events/{}", bob_event.str("id")))
            .await
            .status,
        200
    );
    let again = post_with_key(&alice, "/api/v1/events", &event_body, key).await;
    assert_eq!((again.status, again.str("id")), (201, event.clone()));

    // POST /events/{id}/ticket-types, by the co-organizer with the same key and body.
    let bob_tt = post_with_key(&bob, &tt_path, &tt_body, key).await;
    assert_eq!(bob_tt.status, 201, "{:?}", bob_tt.body);
    assert_ne!(bob_tt.str("id"), alice_tt.str("id"));
    let again = post_with_key(&alice, &tt_path, &tt_body, key).await;
    assert_eq!((again.status, again.str("id")), (201, alice_tt.str("id")));

    // POST /events/{id}/registrations
    let ben_hold = post_with_key(&ben, &hold_path, &hold_body, key).await;
    assert_eq!(ben_hold.status, 201, "{:?}", ben_hold.body);
    assert_ne!(ben_hold.str("id"), ann_hold.str("id"));
    let again = post_with_key(&ann, &hold_path, &hold_body, key).await;
    assert_eq!(again.str("id"), ann_hold.str("id"));
    let (_, held, _, _) = base.availability(&event).await;
    assert_eq!(held, 2, "one hold each, none twice");

    // Without a restart (the in-memory replay answers first), the same holds.
    let buyer_event = post_with_key(&ben, "/api/v1/events", &event_body, key).await;
    assert_eq!(buyer_event.status, 403, "a buyer may not create events");
    let bob_again = post_with_key(&bob, "/api/v1/events", &event_body, key).await;
    assert_eq!(bob_again.str("id"), bob_event.str("id"));
    assert_ne!(bob_again.str("id"), event);
}
