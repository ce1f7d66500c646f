//! The in-app inbox: a confirmation reaches the account's inbox (in its locale) and its live
//! `notifications:{user}` topic; the account pages, counts and marks its notifications read
//! (pushed to its other connections); nobody else sees or touches them; an account that turns
//! in-app notifications off gets none; single-use links never land there.

use serde_json::json;
use std::time::Duration;
use tests::ws::{Socket, connect, next_of, send};
use tests::{Api, Server, wait_for};

async fn subscribe(ws: &mut Socket, topic: &str) {
    send(ws, json!({"type": "subscribe", "topic": topic})).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn confirmations_reach_the_accounts_inbox_live_and_only_theirs() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(
        &dir.path().join("data"),
        &[("OUTBOX__LINK_BASE_URL", "https://front.example")],
    );
    let admin = Api::admin(&server).await;
    let (event, tt) = admin.published_event(10, 600, 4).await;
    let anonymous = admin.with_token(None);
    let (ann_id, ann) = anonymous.signed_in("ann@example.com").await;
    let ann_token = ann["access_token"].as_str().unwrap().to_owned();
    let ann = admin.with_token(Some(ann_token.clone()));
    let (_, bob) = anonymous.signed_in("bob@example.com").await;
    let bob_token = bob["access_token"].as_str().unwrap().to_owned();
    let bob = admin.with_token(Some(bob_token.clone()));
    let topic = format!("notifications:{ann_id}");

    // Nobody but Ann listens to Ann's inbox.
    let mut stranger = connect(&server, None).await;
    subscribe(&mut stranger, &topic).await;
    assert_eq!(
        next_of(&mut stranger, "error").await["code"],
        "unauthorized"
    );
    let mut bob_ws = connect(&server, Some(&bob_token)).await;
    subscribe(&mut bob_ws, &topic).await;
    assert_eq!(next_of(&mut bob_ws, "error").await["code"], "forbidden");

    // Ann listens on two connections; her verification mail is not in the inbox (its link
    // is single-use), so it starts empty.
    let mut phone = connect(&server, Some(&ann_token)).await;
    let mut laptop = connect(&server, Some(&ann_token)).await;
    for ws in [&mut phone, &mut laptop] {
        subscribe(ws, &topic).await;
        assert_eq!(next_of(ws, "subscribed").await["topic"], topic);
        assert_eq!(next_of(ws, "unread").await["data"]["unread"], 0);
    }

    // In German, as her account asks.
    let prefs = |push: bool| {
        json!({"preferences": {"locale": "de-DE", "time_zone": "Europe/Berlin",
            "transactional": {"email": true, "sms": false, "push": push},
            "reminders": {"email": true, "sms": false, "push": true},
            "marketing": {"email": false, "sms": false, "push": false}}})
    };
    assert_eq!(
        ann.patch("/api/v1/users/me", &prefs(true)).await.status,
        200
    );
    let first = ann.confirmed_one(&event, &tt).await;
    let pushed = next_of(&mut phone, "notification").await;
    assert_eq!(pushed["topic"], topic);
    assert_eq!(pushed["unread"], 1);
    let n = &pushed["data"];
    assert_eq!(n["kind"], "confirmed");
    assert_eq!(n["title"], "Bestätigt: Flash sale");
    assert_eq!(
        n["link"],
        format!("https://front.example/registrations/{first}")
    );
    assert!(n["read_at"].is_null());
    assert_eq!(
        next_of(&mut laptop, "notification").await["data"]["id"],
        n["id"]
    );
    let second = ann.confirmed_one(&event, &tt).await;
    let pushed = next_of(&mut phone, "notification").await;
    assert_eq!(pushed["unread"], 2);
    assert!(
        pushed["data"]["body"]
            .as_str()
            .unwrap()
            .contains("Flash sale")
    );

    // Newest first, in pages.
    let page = ann.get("/api/v1/users/me/notifications?limit=1").await;
    assert_eq!(page.status, 200, "{page:?}");
    assert_eq!(page.body["unread"], 2);
    let items = page.body["items"].as_array().unwrap();
    assert_eq!(items.len(), 1);
    assert!(items[0]["link"].as_str().unwrap().ends_with(&second));
    let before = page.body["next_before"]
        .as_str()
        .expect("a next page")
        .to_owned();
    let rest = ann
        .get(&format!(
            "/api/v1/users/me/notifications?limit=1&before={before}"
        ))
        .await;
    let items = rest.body["items"].as_array().unwrap();
    assert_eq!(items.len(), 1);
    assert_eq!(items[0]["id"], n["id"]);
    assert!(rest.body["next_before"].is_null(), "{rest:?}");
    let bad = ann.get("/api/v1/users/me/notifications?limit=0").await;
    assert_eq!(bad.status, 400, "{bad:?}");

    // Only Ann's: Bob sees an empty inbox and cannot mark hers.
    let theirs = bob.get("/api/v1/users/me/notifications").await;
    assert_eq!(theirs.body["items"], json!([]));
    assert_eq!(theirs.body["unread"], 0);
    let id = n["id"].as_str().unwrap();
    let read = format!("/api/v1/users/me/notifications/{id}/read");
    let refused = bob.post(&read, &json!({}), None).await;
    assert_eq!(refused.status, 404, "{refused:?}");
    assert_eq!(refused.body["code"], "notification_not_found");
    assert_eq!(
        ann.get("/api/v1/users/me/notifications").await.body["unread"],
        2
    );

    // Read on the phone: the laptop hears the new count; reading again changes nothing.
    let done = ann.post(&read, &json!({}), None).await;
    assert_eq!(done.status, 200, "{done:?}");
    assert!(done.body["read_at"].is_string());
    assert_eq!(next_of(&mut laptop, "unread").await["data"]["unread"], 1);
    let again = ann.post(&read, &json!({}), None).await;
    assert_eq!(again.body["read_at"], done.body["read_at"]);
    let all = ann
        .post("/api/v1/users/me/notifications/read", &json!({}), None)
        .await;
    assert_eq!(all.body, json!({"marked": 1, "unread": 0}), "{all:?}");
    assert_eq!(next_of(&mut laptop, "unread").await["data"]["unread"], 0);

    // In-app notifications turned off: the next confirmation is mailed, not put in the inbox.
    assert_eq!(
        ann.patch("/api/v1/users/me", &prefs(false)).await.status,
        200
    );
    ann.confirmed_one(&event, &tt).await;
    let skipped = wait_for(Duration::from_secs(20), || async {
        admin
            .metric(r#"regengine_notify_attempts_total{channel="in_app",result="skipped"}"#)
            .await
            .filter(|n| *n >= 1.0)
    })
    .await;
    assert_eq!(skipped, Some(1.0));
    let page = ann.get("/api/v1/users/me/notifications").await;
    assert_eq!(page.body["items"].as_array().unwrap().len(), 2);

    // The inbox is durable.
    drop((phone, laptop, bob_ws, stranger));
    let server = server.restart(&[("OUTBOX__LINK_BASE_URL", "https://front.example")]);
    let ann = Api::new(&server).with_token(Some(ann_token));
    ann.wait_ready().await;
    let page = ann.get("/api/v1/users/me/notifications").await;
    assert_eq!(page.status, 200, "{page:?}");
    assert_eq!(page.body["items"].as_array().unwrap().len(), 2);
    assert_eq!(page.body["unread"], 0);
}
