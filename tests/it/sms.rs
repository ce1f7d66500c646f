//! Text messages through Twilio's Messages API, against a local Twilio that follows its
//! documented formats (`tests/support/fake_twilio.py`): an account that asked for SMS and has
//! a phone number gets its confirmation as a text in its language; one that did not is
//! skipped; a number Twilio refuses for good is a dead letter; Twilio's signed status
//! callbacks (signed by the fake with Python's hmac, over the public callback URL a reverse
//! proxy forwards) mark deliveries delivered or bounced, and forged ones are refused.

use serde_json::{Value, json};
use std::time::Duration;
use tests::twilio::{FakeTwilio, TWILIO_ACCOUNT_SID, TWILIO_AUTH_TOKEN};
use tests::{Api, Server, wait_for};

const CALLBACK: &str = "https://api.front.example/api/v1/notifications/webhooks/twilio";

/// A signed-in account with `phone` that asked (or not) for SMS, in `locale`.
async fn account(admin: &Api, email: &str, phone: &str, sms: bool, locale: &str) -> Api {
    let buyer = admin.buyer(email).await;
    let profile = json!({"phone": phone, "preferences": {"locale": locale, "time_zone": "UTC",
        "transactional": {"email": true, "sms": sms, "push": true},
        "reminders": {"email": true, "sms": false, "push": true},
        "marketing": {"email": false, "sms": false, "push": false}}});
    let r = buyer.patch("/api/v1/users/me", &profile).await;
    assert_eq!(r.status, 200, "{r:?}");
    buyer
}

/// The SMS delivery of `message` as admins see it.
async fn sms_delivery(admin: &Api, message: &str) -> Value {
    let r = admin
        .get(&format!("/api/v1/messages/{message}/deliveries"))
        .await;
    let items = r.body["items"].as_array().cloned().unwrap_or_default();
    items
        .into_iter()
        .find(|d| d["channel"] == "sms")
        .unwrap_or_else(|| panic!("no SMS delivery: {r:?}"))
}

/// The message id Twilio was given with a text (in its status callback URL).
fn message_id(text: &Value) -> String {
    let callback = text["status_callback"].as_str().unwrap();
    let (url, id) = callback.split_once("?message_id=").unwrap();
    assert_eq!(url, CALLBACK);
    id.to_owned()
}

#[tokio::test]
async fn texts_go_to_those_who_asked_and_twilios_signed_callbacks_track_them() {
    let dir = tempfile::tempdir().unwrap();
    let twilio = FakeTwilio::start();
    let server = Server::start(
        &dir.path().join("data"),
        &[
            ("OUTBOX__TWILIO__ENABLED", "true"),
            ("OUTBOX__TWILIO__API_BASE", &twilio.base),
            ("OUTBOX__TWILIO__ACCOUNT_SID", TWILIO_ACCOUNT_SID),
            ("OUTBOX__TWILIO__AUTH_TOKEN", TWILIO_AUTH_TOKEN),
            ("OUTBOX__TWILIO__FROM", "+15017122661"),
            ("OUTBOX__TWILIO__STATUS_CALLBACK_URL", CALLBACK),
            ("OUTBOX__LINK_BASE_URL", "https://front.example"),
            ("OUTBOX__RETRY_MS", "100"),
            ("OUTBOX__RETRY_MAX_MS", "400"),
        ],
    );
    let admin = Api::admin(&server).await;
    let (event, tt) = admin.published_event(10, 600, 4).await;
    let ann = account(&admin, "ann@example.com", "+33 1 23 45 67 89", true, "fr").await;
    let bob = account(&admin, "bob@example.com", "+44 20 7946 0958", false, "en").await;
    let cat = account(&admin, "cat@example.com", "+1 555 010 0123", true, "en").await;

    // Ann asked for texts: her confirmation comes as one, in French, with its link.
    let first = ann.confirmed_one(&event, &tt).await;
    let texts = wait_for(Duration::from_secs(20), || async {
        let texts = twilio.messages().await;
        (!texts.is_empty()).then_some(texts)
    })
    .await
    .expect("a text reaches Twilio");
    assert_eq!(texts.len(), 1, "{texts:?}");
    let text = &texts[0];
    assert_eq!(text["to"], "+33123456789");
    assert_eq!(text["from"], "+15017122661");
    assert_eq!(
        text["body"],
        format!("Confirmé : Flash sale https://front.example/registrations/{first}")
    );
    let message = message_id(text);
    let sent = wait_for(Duration::from_secs(10), || async {
        let d = sms_delivery(&admin, &message).await;
        (d["status"] == "sent").then_some(d)
    })
    .await
    .expect("marked sent");
    assert_eq!(sent["provider_id"], text["sid"]);

    // Bob did not ask: skipped. Cat's number is refused for good: a dead letter, tried once.
    bob.confirmed_one(&event, &tt).await;
    cat.confirmed_one(&event, &tt).await;
    let dead = admin.dead_deliveries("sms").await.remove(0);
    assert_eq!(dead["attempts"], 1, "{dead}");
    assert!(
        dead["last_error"].as_str().unwrap().contains("21610"),
        "{dead}"
    );
    let skipped = wait_for(Duration::from_secs(10), || async {
        admin
            .metric(r#"regengine_notify_attempts_total{channel="sms",result="skipped"}"#)
            .await
            .filter(|n| *n >= 1.0)
    })
    .await;
    assert_eq!(skipped, Some(1.0));
    assert_eq!(
        twilio.messages().await.len(),
        1,
        "nothing reached Bob or Cat"
    );

    // Twilio's status callbacks, forwarded by the proxy behind the public URL. Forged ones
    // (changed after signing, or unsigned) change nothing; intermediate ones are read and
    // ignored; `delivered` marks it delivered.
    let sid = text["sid"].as_str().unwrap();
    let via = server.url("");
    let (status, body) = twilio.status(sid, "sent", None, true, &via).await;
    assert_eq!(status, 400, "{body}");
    let unsigned = admin
        .post_raw(
            &format!("/api/v1/notifications/webhooks/twilio?message_id={message}"),
            "application/x-www-form-urlencoded",
            b"MessageStatus=delivered".to_vec(),
        )
        .await;
    assert_eq!(unsigned.status, 400, "{unsigned:?}");
    let (status, body) = twilio.status(sid, "sent", None, false, &via).await;
    assert_eq!(
        (status, body.as_str()),
        (200, r#"{"events":0,"applied":0}"#)
    );
    assert_eq!(sms_delivery(&admin, &message).await["status"], "sent");
    let (status, body) = twilio.status(sid, "delivered", None, false, &via).await;
    assert_eq!(
        (status, body.as_str()),
        (200, r#"{"events":1,"applied":1}"#)
    );
    assert_eq!(sms_delivery(&admin, &message).await["status"], "delivered");

    // A text the carrier could not deliver is bounced, with Twilio's error code.
    ann.confirmed_one(&event, &tt).await;
    let texts = wait_for(Duration::from_secs(20), || async {
        let texts = twilio.messages().await;
        (texts.len() >= 2).then_some(texts)
    })
    .await
    .expect("a second text");
    let second = message_id(&texts[1]);
    wait_for(Duration::from_secs(10), || async {
        (sms_delivery(&admin, &second).await["status"] == "sent").then_some(())
    })
    .await
    .expect("marked sent");
    let sid = texts[1]["sid"].as_str().unwrap();
    let (status, _) = twilio
        .status(sid, "undelivered", Some(30003), false, &via)
        .await;
    assert_eq!(status, 200);
    let row = sms_delivery(&admin, &second).await;
    assert_eq!(row["status"], "bounced");
    assert!(
        row["last_error"].as_str().unwrap().contains("30003"),
        "{row}"
    );
}
