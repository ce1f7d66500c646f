//! Organizer webhooks against a receiver that verifies every delivery with the Standard
//! Webhooks reference library (`tests/support/webhook_receiver.py`): an organizer-wide and an
//! event endpoint hear what they subscribed to, signed, retried on failure with the same
//! `webhook-id`, logged, replayed; a rotated secret signs beside the new one; a delivery
//! that failed for good is dead until replayed; kill -9 before a delivery went out loses
//! nothing. And endpoints that point into the internal network, or bad input, are refused.

use serde_json::{Value, json};
use std::time::Duration;
use tests::webhooks::Receiver;
use tests::{Api, Server, wait_for};

const FAST_RETRIES: [(&str, &str); 4] = [
    ("WEBHOOKS__ALLOW_PRIVATE_TARGETS", "true"),
    ("WEBHOOKS__RETRY_MS", "100"),
    ("WEBHOOKS__RETRY_MAX_MS", "300"),
    ("WEBHOOKS__ATTEMPTS_MAX", "3"),
];

/// Waits until the receiver got `n` deliveries at least; all of them.
async fn received(receiver: &Receiver, n: usize) -> Vec<Value> {
    wait_for(Duration::from_secs(20), || async {
        let got = receiver.received().await;
        (got.len() >= n).then_some(got)
    })
    .await
    .unwrap_or_else(|| panic!("fewer than {n} deliveries arrived"))
}

/// An endpoint's log (newest first).
async fn log(api: &Api, endpoint: &str) -> Vec<Value> {
    let r = api
        .get(&format!("/api/v1/webhooks/{endpoint}/deliveries"))
        .await;
    assert_eq!(r.status, 200, "{r:?}");
    r.body["items"].as_array().cloned().unwrap_or_default()
}

/// Waits until `endpoint`'s delivery `id` has `status`; the log item.
async fn delivery_status(api: &Api, endpoint: &str, id: &str, status: &str) -> Value {
    wait_for(Duration::from_secs(20), || async {
        log(api, endpoint)
            .await
            .into_iter()
            .find(|d| d["id"] == id && d["status"] == status)
    })
    .await
    .unwrap_or_else(|| panic!("delivery {id} never {status}"))
}

async fn endpoint(api: &Api, body: Value) -> (String, String) {
    let r = api.post("/api/v1/webhooks", &body, None).await;
    assert_eq!(r.status, 201, "{r:?}");
    (r.str("id"), r.str("secret"))
}

/// The types of the distinct deliveries (by `webhook-id`) to `path`, sorted.
fn types_of(deliveries: &[Value], path: &str) -> Vec<String> {
    let by_id: std::collections::BTreeMap<&str, &str> = deliveries
        .iter()
        .filter(|d| d["path"] == path)
        .map(|d| {
            let kind = d["payload"]["type"].as_str().unwrap();
            (d["id"].as_str().unwrap(), kind)
        })
        .collect();
    let mut types: Vec<String> = by_id.values().map(|t| (*t).to_owned()).collect();
    types.sort();
    types
}

fn find<'a>(deliveries: &'a [Value], path: &str, kind: &str) -> &'a Value {
    deliveries
        .iter()
        .find(|d| d["path"] == path && d["payload"]["type"] == kind)
        .unwrap_or_else(|| panic!("no {kind} to {path}"))
}

#[tokio::test]
async fn endpoints_hear_what_they_asked_for_signed_retried_logged_and_replayed() {
    let dir = tempfile::tempdir().unwrap();
    let receiver = Receiver::start();
    let server = Server::start(&dir.path().join("data"), &FAST_RETRIES);
    let admin = Api::admin(&server).await;
    let (_, organizer) = admin.account("org@example.com", &["organizer"]).await;
    let (event, tt) = organizer.published_event(10, 600, 2).await;

    // Every event of the organizer, every type; and this event's confirmations only.
    let (all, all_secret) = endpoint(
        &organizer,
        json!({"url": format!("{}/org", receiver.base), "description": "CRM"}),
    )
    .await;
    let (confirmed_only, confirmed_secret) = endpoint(
        &organizer,
        json!({"url": format!("{}/event", receiver.base), "event_id": event,
            "event_types": ["registration.confirmed"]}),
    )
    .await;
    receiver.secrets(&[&all_secret, &confirmed_secret]).await;
    // The first delivery is refused once: retried with the same id.
    receiver.script(&[503]).await;

    let (_, buyer) = admin.account("ann@example.com", &[]).await;
    let attendee = json!({"name": "Ann", "email": "ann@example.com"});
    let registration = buyer.confirmed(&event, &tt, attendee, 1).await;
    let reg = registration["id"].as_str().unwrap();
    let code = registration["tickets"][0]["code"].as_str().unwrap();
    let scan = organizer
        .post(
            &format!("/api/v1/events/{event}/check-ins"),
            &json!({"ticket_code": code, "gate": "north"}),
            None,
        )
        .await;
    assert_eq!(scan.status, 200, "{scan:?}");
    let held = buyer.hold(&event, &tt, 1, None).await;
    let canceled = buyer
        .post(
            &format!("/api/v1/registrations/{}/cancel", held.str("id")),
            &json!({}),
            None,
        )
        .await;
    assert_eq!(canceled.status, 200, "{canceled:?}");
    let patched = organizer
        .patch(
            &format!("/api/v1/events/{event}"),
            &json!({"title": "Flash sale II"}),
        )
        .await;
    assert_eq!(patched.status, 200, "{patched:?}");

    // 6 happenings for the organizer's endpoint, 1 for the event's, 1 retry.
    let got = received(&receiver, 8).await;
    assert!(
        got.iter().all(|d| d["content_type"] == "application/json"),
        "{got:?}"
    );
    for d in &got {
        let secret = if d["path"] == "/org" {
            &all_secret
        } else {
            &confirmed_secret
        };
        assert_eq!(d["verified_with"], json!([secret]), "{d}");
    }
    let refused: Vec<&Value> = got.iter().filter(|d| d["answered"] == 503).collect();
    assert_eq!(refused.len(), 1);
    let retried = got.iter().filter(|d| d["id"] == refused[0]["id"]).count();
    assert_eq!(retried, 2, "the retry carries the same webhook-id");
    assert_eq!(
        types_of(&got, "/org"),
        [
            "checkin.admitted",
            "event.changed",
            "registration.canceled",
            "registration.confirmed",
            "registration.held",
            "registration.held",
        ]
    );
    assert_eq!(types_of(&got, "/event"), ["registration.confirmed"]);
    let event_delivery = find(&got, "/event", "registration.confirmed")["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let confirmation = find(&got, "/org", "registration.confirmed");
    let data = &confirmation["payload"]["data"];
    assert_eq!(data["registration_id"], reg);
    assert_eq!(data["event_id"], event);
    assert_eq!(data["status"], "confirmed");
    assert_eq!(data["attendee"]["email"], "ann@example.com");
    assert_eq!(data["ticket_ids"].as_array().unwrap().len(), 1);
    let admitted = find(&got, "/org", "checkin.admitted");
    assert_eq!(admitted["payload"]["data"]["gate"], "north");
    let changed = find(&got, "/org", "event.changed");
    assert_eq!(changed["payload"]["data"]["title"], "Flash sale II");
    assert_eq!(changed["payload"]["data"]["changed"], json!(["title"]));

    // The log: newest first, each sent, the refused one after two attempts.
    // (Deliveries to the two endpoints go out concurrently: the refused one may be either's.)
    let first_id = refused[0]["id"].as_str().unwrap();
    let first_endpoint = if refused[0]["path"] == "/org" {
        &all
    } else {
        &confirmed_only
    };
    let first = delivery_status(&organizer, first_endpoint, first_id, "sent").await;
    assert_eq!(first["attempts"], 2, "{first}");
    assert_eq!(first["response"], "HTTP 200");
    let items = log(&organizer, &all).await;
    assert_eq!(items.len(), 6);
    assert_eq!(items[0]["type"], "event.changed");
    assert_eq!(items[0]["id"], changed["id"]);
    assert_eq!(items[0]["payload"], changed["payload"]);
    assert_eq!(items[5]["type"], "registration.held");

    // A replay posts it again with the same id.
    let confirmation_id = confirmation["id"].as_str().unwrap();
    let r = organizer
        .post(
            &format!("/api/v1/webhooks/{all}/deliveries/{confirmation_id}/replay"),
            &json!({}),
            None,
        )
        .await;
    assert_eq!(r.status, 200, "{r:?}");
    let got = received(&receiver, 9).await;
    assert_eq!(got[8]["id"], confirmation_id);
    assert_eq!(got[8]["payload"], confirmation["payload"]);

    // A rotated secret: for a while each delivery is signed with both.
    let r = organizer
        .post(
            &format!("/api/v1/webhooks/{all}/rotate-secret"),
            &json!({}),
            None,
        )
        .await;
    assert_eq!(r.status, 200, "{r:?}");
    let new_secret = r.str("secret");
    assert_ne!(new_secret, all_secret);
    receiver
        .secrets(&[&all_secret, &new_secret, &confirmed_secret])
        .await;
    // Turned off, the event endpoint hears nothing more.
    let r = organizer
        .patch(
            &format!("/api/v1/webhooks/{confirmed_only}"),
            &json!({"enabled": false}),
        )
        .await;
    assert_eq!(
        (r.status, &r.body["enabled"]),
        (200, &json!(false)),
        "{r:?}"
    );
    let r = organizer
        .post(
            &format!("/api/v1/webhooks/{confirmed_only}/deliveries/{event_delivery}/replay"),
            &json!({}),
            None,
        )
        .await;
    assert_eq!(
        r.status, 409,
        "a disabled endpoint's delivery would only be skipped"
    );
    assert_eq!(r.str("code"), "webhook_endpoint_disabled");
    // A receiver that refuses every attempt: the delivery is dead, until replayed.
    receiver.script(&[500, 500, 500]).await;
    let again = organizer
        .patch(
            &format!("/api/v1/events/{event}"),
            &json!({"venue": "Hall B"}),
        )
        .await;
    assert_eq!(again.status, 200, "{again:?}");
    let got = received(&receiver, 12).await;
    let last = &got[11];
    assert_eq!(last["path"], "/org");
    assert_eq!(last["verified_with"], json!([all_secret, new_secret]));
    assert_eq!(last["signature"].as_str().unwrap().split(' ').count(), 2);
    let dead_id = last["id"].as_str().unwrap();
    let dead = delivery_status(&organizer, &all, dead_id, "failed").await;
    assert_eq!(dead["attempts"], 3);
    assert!(
        dead["last_error"].as_str().unwrap().contains("HTTP 500"),
        "{dead}"
    );
    let r = organizer
        .post(
            &format!("/api/v1/webhooks/{all}/deliveries/{dead_id}/replay"),
            &json!({}),
            None,
        )
        .await;
    assert_eq!(r.status, 200, "{r:?}");
    delivery_status(&organizer, &all, dead_id, "sent").await;
    assert_eq!(received(&receiver, 13).await[12]["id"], dead_id);

    // The disabled event endpoint hears nothing of a confirmation the organizer's hears of.
    let attendee = json!({"name": "Ann", "email": "ann@example.com"});
    buyer.confirmed(&event, &tt, attendee, 1).await;
    let got = received(&receiver, 15).await;
    assert_eq!(types_of(&got, "/event"), ["registration.confirmed"]);

    // Nobody else sees or changes these endpoints.
    let (_, other) = admin.account("other@example.com", &["organizer"]).await;
    for path in [
        format!("/api/v1/webhooks/{all}"),
        format!("/api/v1/webhooks/{all}/deliveries"),
    ] {
        assert_eq!(other.get(&path).await.status, 404, "{path}");
        assert_eq!(buyer.get(&path).await.status, 404, "{path}");
    }
    let r = buyer
        .post("/api/v1/webhooks", &json!({"url": receiver.base}), None)
        .await;
    assert_eq!(r.status, 403, "{r:?}");
    let r = other
        .get(&format!("/api/v1/webhooks?event_id={event}"))
        .await;
    assert_eq!(r.status, 403, "{r:?}");
    let listed = organizer
        .get(&format!("/api/v1/webhooks?event_id={event}"))
        .await;
    assert_eq!(listed.body["items"].as_array().unwrap().len(), 1);
    assert!(listed.body["items"][0].get("secret").is_none());
    let r = other
        .send(other.at(reqwest::Method::DELETE, &format!("/api/v1/webhooks/{all}")))
        .await;
    assert_eq!(r.status, 404);

    // Audited like every organizer action.
    let actions = admin
        .audit_actions(&format!("/api/v1/events/{event}/audit"))
        .await;
    for action in ["POST /api/v1/webhooks", "PATCH /api/v1/webhooks/{id}"] {
        assert!(actions.iter().any(|a| a == action), "{actions:?}");
    }
}

#[tokio::test]
async fn a_delivery_not_yet_made_survives_kill_9_with_its_id() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let receiver = Receiver::start();
    let server = Server::start(&data, &FAST_RETRIES);
    let admin = Api::admin(&server).await;
    let (event, tt) = admin.published_event(10, 600, 2).await;
    let (hook, secret) = endpoint(
        &admin,
        json!({"url": format!("{}/in", receiver.base), "event_id": event,
            "event_types": ["registration.held"]}),
    )
    .await;
    receiver.secrets(&[&secret]).await;
    // Refused until the crash: the delivery is committed, not made.
    receiver.script(&[503; 3]).await;
    let held = admin.hold(&event, &tt, 1, None).await;
    assert_eq!(held.status, 201, "{held:?}");
    let first = received(&receiver, 1).await;
    let id = first[0]["id"].as_str().unwrap().to_owned();
    server.kill9();

    receiver.script(&[]).await;
    let server = Server::start(&data, &FAST_RETRIES);
    let admin = Api::admin(&server).await;
    let delivered = wait_for(Duration::from_secs(20), || async {
        receiver
            .received()
            .await
            .into_iter()
            .find(|d| d["answered"] == 200)
    })
    .await
    .expect("delivered after the restart");
    assert_eq!(delivered["id"], id.as_str());
    assert_eq!(delivered["verified_with"], json!([secret]));
    assert_eq!(
        delivered["payload"]["data"]["registration_id"],
        held.str("id")
    );
    delivery_status(&admin, &hook, &id, "sent").await;
}

#[tokio::test]
async fn endpoints_into_the_internal_network_and_bad_input_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(&dir.path().join("data"), &[]);
    let admin = Api::admin(&server).await;
    let (event, _) = admin.published_event(10, 600, 2).await;
    let refused = |body: Value, field: &'static str| {
        let admin = admin.clone();
        async move {
            let r = admin.post("/api/v1/webhooks", &body, None).await;
            assert_eq!(r.status, 422, "{body}: {r:?}");
            let errors = r.body["errors"].as_array().unwrap();
            assert!(errors.iter().any(|e| e["field"] == field), "{body}: {r:?}");
        }
    };
    for url in [
        "http://127.0.0.1:8080/hook",
        "http://localhost/hook",
        "http://10.0.0.7/hook",
        "http://169.254.169.254/latest/meta-data/",
        "http://[::1]/hook",
        "http://[::ffff:192.168.0.1]/hook",
        "ftp://93.184.216.34/hook",
        "https://user:secret@93.184.216.34/hook",
        "not a url",
    ] {
        refused(json!({"url": url}), "url").await;
    }
    refused(
        json!({"url": "https://93.184.216.34/", "event_types": ["registration.held", "ticket.sold"]}),
        "event_types",
    )
    .await;
    refused(
        json!({"url": "https://93.184.216.34/", "description": "x".repeat(201)}),
        "description",
    )
    .await;
    let r = admin
        .post(
            "/api/v1/webhooks",
            &json!({"url": "https://93.184.216.34/", "event_id": uuid::Uuid::now_v7()}),
            None,
        )
        .await;
    assert_eq!(r.status, 404, "{r:?}");
    // At most 20 per event.
    for i in 0..20 {
        let body = json!({"url": format!("https://93.184.216.34/{i}"), "event_id": event});
        assert_eq!(
            admin.post("/api/v1/webhooks", &body, None).await.status,
            201
        );
    }
    let body = json!({"url": "https://93.184.216.34/21", "event_id": event});
    let r = admin.post("/api/v1/webhooks", &body, None).await;
    assert_eq!(
        (r.status, r.str("code")),
        (409, "limit_reached".into()),
        "{r:?}"
    );
    // Nothing refused was stored.
    let listed = admin
        .get(&format!("/api/v1/webhooks?event_id={event}"))
        .await;
    assert_eq!(listed.body["items"].as_array().unwrap().len(), 20);
    assert_eq!(admin.get("/api/v1/webhooks").await.body["items"], json!([]));
}
