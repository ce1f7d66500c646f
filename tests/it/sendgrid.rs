//! E-mail through SendGrid's API, against a local SendGrid that follows its documented formats
//! (`tests/support/fake_sendgrid.py`): the confirmation mail's request read back (QR codes
//! decoded, calendar read by Python's `icalendar`), retried through 503s, refused with 400 into
//! a dead letter; and the signed event webhook, signed by the fake with a key of its own
//! (Python's `cryptography`), marking deliveries delivered and bounced, forged and stale
//! batches refused.

use data_encoding::BASE64;
use serde_json::{Value, json};
use std::time::Duration;
use tests::mail::{FakeSendGrid, SENDGRID_API_KEY, read_ics};
use tests::{Api, Server, wait_for};

const HOOK: &str = "/api/v1/notifications/webhooks/sendgrid";

async fn start(dir: &std::path::Path, sendgrid: &FakeSendGrid) -> Server {
    let key = sendgrid.public_key().await;
    Server::start(
        dir,
        &[
            ("OUTBOX__DELIVERY", "sendgrid"),
            ("OUTBOX__SENDGRID__API_BASE", &sendgrid.base),
            ("OUTBOX__SENDGRID__API_KEY", SENDGRID_API_KEY),
            ("OUTBOX__SENDGRID__WEBHOOK_PUBLIC_KEY", &key),
            ("OUTBOX__LINK_BASE_URL", "https://front.example"),
            ("OUTBOX__FROM", "Tickets <tickets@front.example>"),
            ("OUTBOX__RETRY_MS", "100"),
            ("OUTBOX__RETRY_MAX_MS", "400"),
        ],
    )
}

async fn delivery(admin: &Api, message: &str) -> Value {
    let r = admin
        .get(&format!("/api/v1/messages/{message}/deliveries"))
        .await;
    assert_eq!(r.status, 200, "{r:?}");
    r.body["items"][0].clone()
}

#[tokio::test]
async fn mail_through_sendgrid_is_retried_refused_and_tracked_by_its_signed_events() {
    let dir = tempfile::tempdir().unwrap();
    // Refuses @invalid.example; the first two sends meet a 503.
    let sendgrid = FakeSendGrid::start("invalid.example", 2);
    let server = start(dir.path(), &sendgrid).await;
    let admin = Api::admin(&server).await;
    let (event, tt) = admin.published_event(10, 600, 4).await;
    let registration = admin
        .confirmed(
            &event,
            &tt,
            json!({"name": "Ada", "email": "ada@example.com"}),
            2,
        )
        .await;

    let sent = wait_for(Duration::from_secs(30), || async {
        let (sent, _) = sendgrid.sent().await;
        (!sent.is_empty()).then_some(sent)
    })
    .await
    .expect("the confirmation reaches SendGrid");
    assert_eq!(sent.len(), 1, "{sent:?}");
    let mail = &sent[0];
    let (_, stats) = sendgrid.sent().await;
    assert_eq!(stats["unavailable"], 2, "two 503s, retried: {stats}");
    assert_eq!(mail["subject"], "Confirmed: Flash sale");
    assert_eq!(
        mail["from"],
        json!({"email": "tickets@front.example", "name": "Tickets"})
    );
    let person = &mail["personalizations"][0];
    assert_eq!(person["to"], json!([{"email": "ada@example.com"}]));
    let message = person["custom_args"]["message_id"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(uuid::Uuid::parse_str(&message).is_ok(), "{message}");
    let html = mail["content"][1]["value"].as_str().unwrap();
    let id = registration["id"].as_str().unwrap();
    assert!(
        html.contains(&format!("https://front.example/registrations/{id}")),
        "{html}"
    );

    // Each ticket's QR inline (the HTML shows it by content id), the event as event.ics.
    let mut decoded = Vec::new();
    let mut calendars = Vec::new();
    for a in mail["attachments"].as_array().unwrap() {
        let bytes = BASE64
            .decode(a["content"].as_str().unwrap().as_bytes())
            .unwrap();
        match a["type"].as_str().unwrap() {
            "image/png" => {
                let cid = a["content_id"].as_str().unwrap();
                assert_eq!(a["disposition"], "inline");
                assert!(
                    html.contains(&format!("cid:{cid}")),
                    "{cid} not in the HTML"
                );
                decoded.push(tests::decode_qr_png(&bytes));
            }
            "text/calendar" => {
                assert_eq!(a["filename"], "event.ics");
                calendars.push(bytes);
            }
            other => panic!("unexpected attachment {other}"),
        }
    }
    let mut codes: Vec<String> = registration["tickets"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["code"].as_str().unwrap().to_owned())
        .collect();
    decoded.sort();
    codes.sort();
    assert_eq!(decoded, codes, "the QR codes carry the tickets' codes");
    assert_eq!(calendars.len(), 1);
    assert_eq!(read_ics(&calendars[0])["summary"], "Flash sale");

    // Sent, with SendGrid's id, after three attempts.
    let row = wait_for(Duration::from_secs(10), || async {
        let d = delivery(&admin, &message).await;
        (d["status"] == "sent").then_some(d)
    })
    .await
    .expect("marked sent");
    assert_eq!(row["provider_id"], mail["x_message_id"]);
    assert_eq!(row["attempts"], 3);

    // A 400 is final: a dead letter, tried once.
    admin
        .confirmed(
            &event,
            &tt,
            json!({"name": "Nobody", "email": "nobody@invalid.example"}),
            1,
        )
        .await;
    let dead = admin.dead_deliveries("email").await;
    assert_eq!(dead[0]["attempts"], 1, "{dead:?}");
    assert!(
        dead[0]["last_error"].as_str().unwrap().contains("400"),
        "{dead:?}"
    );

    // The signed event webhook: `delivered` for our message (with a `processed` and a mail
    // that is not ours, which change nothing).
    let hook = server.url(HOOK);
    let now = chrono::Utc::now().timestamp();
    let event_of = |name: &str, extra: Value| {
        let mut e = json!({"email": "ada@example.com", "event": name, "timestamp": now,
            "sg_event_id": format!("ev-{name}"), "sg_message_id": mail["x_message_id"],
            "message_id": message});
        e.as_object_mut()
            .unwrap()
            .extend(extra.as_object().unwrap().clone());
        e
    };
    let batch = json!([
        event_of("processed", json!({})),
        event_of("delivered", json!({"response": "250 OK"})),
        {"email": "x@example.com", "event": "delivered", "timestamp": now},
    ]);
    // Forged (changed after signing) and stale (an hour old) batches change nothing.
    let (status, body) = sendgrid.deliver_events(&hook, &batch, true, None).await;
    assert_eq!(status, 400, "{body}");
    let (status, body) = sendgrid
        .deliver_events(&hook, &batch, false, Some(now - 3600))
        .await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(delivery(&admin, &message).await["status"], "sent");
    let unsigned = admin
        .post_raw(HOOK, "application/json", batch.to_string().into_bytes())
        .await;
    assert_eq!(unsigned.status, 400, "{unsigned:?}");

    let (status, body) = sendgrid.deliver_events(&hook, &batch, false, None).await;
    assert_eq!(status, 200, "{body}");
    let received: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(received, json!({"events": 1, "applied": 1}));
    assert_eq!(delivery(&admin, &message).await["status"], "delivered");
    // SendGrid retries deliveries: the same batch again applies nothing.
    let (_, body) = sendgrid.deliver_events(&hook, &batch, false, None).await;
    assert_eq!(serde_json::from_str::<Value>(&body).unwrap()["applied"], 0);

    // A bounce reported later wins, with SendGrid's reason.
    let bounce = json!([event_of(
        "bounce",
        json!({"type": "bounce", "reason": "550 5.1.1 mailbox unavailable"})
    )]);
    let (status, body) = sendgrid.deliver_events(&hook, &bounce, false, None).await;
    assert_eq!(status, 200, "{body}");
    let row = delivery(&admin, &message).await;
    assert_eq!(row["status"], "bounced");
    assert!(
        row["last_error"].as_str().unwrap().contains("5.1.1"),
        "{row}"
    );
    let bounced = admin
        .metric(r#"regengine_notify_provider_events_total{channel="email",event="bounce"}"#)
        .await;
    assert_eq!(bounced, Some(1.0));
}
