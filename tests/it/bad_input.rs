//! Bad input gets the documented 4xx problem+json and changes nothing.

use serde_json::{Value, json};
use tests::{Api, Server};

async fn state_of(api: &Api, event: &str) -> (Value, (u64, u64, u64, u64), Value) {
    let record = api.get(&format!("/api/v1/events/{event}")).await.body;
    let regs = api
        .get(&format!("/api/v1/events/{event}/registrations?limit=500"))
        .await
        .body;
    (record, api.availability(event).await, regs)
}

fn expect(reply: &tests::Reply, status: u16, code: &str) {
    assert_eq!(reply.status, status, "{reply:?}");
    assert_eq!(reply.content_type, "application/problem+json", "{reply:?}");
    assert_eq!(reply.str("code"), code, "{reply:?}");
    assert_eq!(reply.body["type"], format!("/problems/{code}"));
    assert_eq!(reply.body["status"], status);
    assert!(reply.body["title"].is_string() && reply.body["detail"].is_string());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_is_refused_with_problem_json_and_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(
        &dir.path().join("data"),
        &[("HTTP__BODY_BYTES_MAX", "4096")],
    );
    let api = Api::admin(&server).await;
    let (event, tt) = api.published_event(10, 600, 4).await;
    let held = api.hold(&event, &tt, 1, None).await;
    assert_eq!(held.status, 201);
    let before = state_of(&api, &event).await;
    let regs = format!("/api/v1/events/{event}/registrations");

    expect(
        &api.post_raw(&regs, "application/json", b"{\"ticket_type_id\": ".to_vec())
            .await,
        400,
        "malformed_json",
    );
    expect(
        &api.post_raw(&regs, "application/json", b"{} trailing".to_vec())
            .await,
        400,
        "malformed_json",
    );
    expect(
        &api.post_raw(&regs, "text/plain", b"{}".to_vec()).await,
        415,
        "unsupported_media_type",
    );
    let wrong_type = api.post(&regs, &json!({"ticket_type_id": tt, "quantity": "two", "attendee": {"name": "A", "email": "a@x.io"}}), None).await;
    expect(&wrong_type, 422, "invalid_body");
    assert_eq!(wrong_type.body["errors"][0]["field"], "quantity");
    for quantity in [0, -1, 5] {
        let r = api.post(&regs, &json!({"ticket_type_id": tt, "quantity": quantity, "attendee": {"name": "A", "email": "a@x.io"}}), None).await;
        expect(&r, 422, "validation_failed");
        assert_eq!(r.body["errors"][0]["field"], "quantity");
    }
    let r = api.post(&regs, &json!({"ticket_type_id": tt, "quantity": 1, "attendee": {"name": "", "email": "nope"}}), None).await;
    expect(&r, 422, "validation_failed");
    let fields: Vec<_> = r.body["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["field"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(fields, ["attendee.name", "attendee.email"]);
    // Mass assignment: fields the endpoint does not own are refused, not ignored.
    let r = api.post(&regs, &json!({"ticket_type_id": tt, "quantity": 1, "status": "confirmed", "attendee": {"name": "A", "email": "a@x.io"}}), None).await;
    expect(&r, 422, "invalid_body");
    let r = api.post(&regs, &json!({"ticket_type_id": uuid::Uuid::new_v4(), "quantity": 1, "attendee": {"name": "A", "email": "a@x.io"}}), None).await;
    expect(&r, 422, "validation_failed");
    let big = json!({"ticket_type_id": tt, "quantity": 1, "attendee": {"name": "x".repeat(5000), "email": "a@x.io"}});
    expect(&api.post(&regs, &big, None).await, 413, "payload_too_large");

    // Unknown and malformed ids.
    let unknown = uuid::Uuid::new_v4();
    expect(
        &api.get(&format!("/api/v1/events/{unknown}")).await,
        404,
        "event_not_found",
    );
    expect(&api.post(&format!("/api/v1/events/{unknown}/registrations"), &json!({"ticket_type_id": tt, "quantity": 1, "attendee": {"name": "A", "email": "a@x.io"}}), None).await, 404, "event_not_found");
    expect(
        &api.get(&format!("/api/v1/registrations/{unknown}")).await,
        404,
        "registration_not_found",
    );
    expect(
        &api.post(
            &format!("/api/v1/registrations/{unknown}/confirm"),
            &json!({}),
            None,
        )
        .await,
        404,
        "registration_not_found",
    );
    expect(
        &api.get("/api/v1/events/not-a-uuid").await,
        400,
        "invalid_path_parameter",
    );
    expect(&api.get("/api/v1/nowhere").await, 404, "not_found");
    expect(
        &api.get("/api/v1/events?status=bogus").await,
        400,
        "invalid_query",
    );

    // Invalid transitions.
    expect(
        &api.post(&format!("/api/v1/events/{event}/publish"), &json!({}), None)
            .await,
        409,
        "invalid_transition",
    );
    let draft = api.post("/api/v1/events", &json!({"title": "D", "starts_at": "2030-01-01T00:00:00Z", "ends_at": "2030-01-02T00:00:00Z"}), None).await;
    let draft_id = draft.str("id");
    expect(
        &api.post(
            &format!("/api/v1/events/{draft_id}/complete"),
            &json!({}),
            None,
        )
        .await,
        409,
        "invalid_transition",
    );
    expect(
        &api.post(
            &format!("/api/v1/events/{draft_id}/publish"),
            &json!({}),
            None,
        )
        .await,
        422,
        "validation_failed",
    );
    let bad_event = api.post("/api/v1/events", &json!({"title": " ", "starts_at": "2030-01-02T00:00:00Z", "ends_at": "2030-01-01T00:00:00Z", "hold_ttl_secs": 0}), None).await;
    expect(&bad_event, 422, "validation_failed");
    assert_eq!(bad_event.body["errors"].as_array().unwrap().len(), 3);
    let bad_tt = api
        .post(
            &format!("/api/v1/events/{event}/ticket-types"),
            &json!({"name": "X", "price_minor": -1, "currency": "eur", "capacity": 0}),
            None,
        )
        .await;
    expect(&bad_tt, 422, "validation_failed");
    // Idempotency-Key must be printable ASCII, 1..=255 characters.
    let r = api.hold(&event, &tt, 1, Some(&"k".repeat(300))).await;
    expect(&r, 400, "invalid_idempotency_key");

    assert_eq!(
        state_of(&api, &event).await,
        before,
        "bad input changed state"
    );
}
