//! Reminders before an event, from the durable schedule: every confirmed registration's
//! attendee gets one per reminder offset, none goes to a canceled registration, a kill -9
//! before the reminder is due loses nothing, and one already queued is not queued again
//! after a restart. Reminder offsets are validated with the event.

use chrono::{SecondsFormat, Utc};
use serde_json::{Value, json};
use std::time::Duration;
use tests::{Api, Server, mailed, wait_for};

const FAST_SCHEDULE: [(&str, &str); 1] = [("OUTBOX__SCHEDULE_POLL_MS", "50")];

/// A published free event starting in `starts_in_secs`, reminding `offsets` before; (event,
/// ticket type).
async fn event_starting_in(admin: &Api, starts_in_secs: i64, offsets: Value) -> (String, String) {
    let starts = Utc::now() + chrono::Duration::seconds(starts_in_secs);
    let ends = starts + chrono::Duration::hours(2);
    let r = admin
        .post(
            "/api/v1/events",
            &json!({"title": "Soon", "starts_at": starts.to_rfc3339_opts(SecondsFormat::Secs, true),
                "ends_at": ends.to_rfc3339_opts(SecondsFormat::Secs, true),
                "reminder_offsets_secs": offsets}),
            None,
        )
        .await;
    assert_eq!(r.status, 201, "{r:?}");
    let event = r.str("id");
    assert_eq!(r.body["reminder_offsets_secs"], offsets);
    let tt = admin
        .post(
            &format!("/api/v1/events/{event}/ticket-types"),
            &json!({"name": "GA", "price_minor": 0, "currency": "EUR", "capacity": 10, "max_per_order": 2}),
            None,
        )
        .await;
    assert_eq!(tt.status, 201, "{tt:?}");
    let published = admin
        .post(&format!("/api/v1/events/{event}/publish"), &json!({}), None)
        .await;
    assert_eq!(published.status, 200, "{published:?}");
    (event, tt.str("id"))
}

fn attendee(name: &str) -> Value {
    json!({"name": name, "email": format!("{}@example.com", name.to_lowercase())})
}

#[tokio::test]
async fn attendees_are_reminded_once_per_offset_across_a_crash() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let server = Server::start(&data, &FAST_SCHEDULE);
    let admin = Api::admin(&server).await;
    // Due 6 s from now; the hour before is already past when it is published: not scheduled.
    let (event, tt) = event_starting_in(&admin, 66, json!([60, 3600])).await;
    let ann = admin.confirmed(&event, &tt, attendee("Ann"), 2).await;
    admin.confirmed(&event, &tt, attendee("Bob"), 1).await;
    let cat = admin.confirmed(&event, &tt, attendee("Cat"), 1).await;
    let canceled = admin
        .post(
            &format!(
                "/api/v1/registrations/{}/cancel",
                cat["id"].as_str().unwrap()
            ),
            &json!({}),
            None,
        )
        .await;
    assert_eq!(canceled.status, 200, "{canceled:?}");
    // Crash before it is due: the schedule is durable.
    assert!(mailed(&server, "ann@example.com", "event_reminder").is_empty());
    server.kill9();
    let server = Server::start(&data, &FAST_SCHEDULE);
    Api::new(&server).wait_ready().await;

    let reminded = wait_for(Duration::from_secs(30), || async {
        let ann = mailed(&server, "ann@example.com", "event_reminder");
        let bob = mailed(&server, "bob@example.com", "event_reminder");
        (!ann.is_empty() && !bob.is_empty()).then_some((ann, bob))
    })
    .await
    .expect("both attendees reminded");
    let (ann_mails, bob_mails) = reminded;
    assert_eq!((ann_mails.len(), bob_mails.len()), (1, 1));
    let mail = &ann_mails[0];
    assert_eq!(
        mail["link"].as_str().unwrap(),
        format!(
            "http://127.0.0.1:8080/registrations/{}",
            ann["id"].as_str().unwrap()
        )
    );
    assert!(
        mail["text"].as_str().unwrap().contains("Soon is coming up"),
        "{mail}"
    );
    assert!(
        mail["subject"]
            .as_str()
            .unwrap()
            .starts_with("Reminder: Soon")
    );
    assert_eq!(
        mail["tickets"].as_array().unwrap().len(),
        2,
        "Ann's two tickets"
    );
    assert!(mailed(&server, "cat@example.com", "event_reminder").is_empty());

    // After a restart nothing is queued again: a later event's reminder (due after the first
    // in the schedule's order) arrives, and the first ones are still one each.
    let server = server.restart(&FAST_SCHEDULE);
    let admin = Api::admin(&server).await;
    let (later, later_tt) = event_starting_in(&admin, 65, json!([60])).await;
    admin.confirmed(&later, &later_tt, attendee("Dan"), 1).await;
    wait_for(Duration::from_secs(30), || async {
        (!mailed(&server, "dan@example.com", "event_reminder").is_empty()).then_some(())
    })
    .await
    .expect("the later event's reminder");
    assert_eq!(
        mailed(&server, "ann@example.com", "event_reminder").len(),
        1
    );
    assert_eq!(
        mailed(&server, "bob@example.com", "event_reminder").len(),
        1
    );
    let queued = admin
        .metric(r#"regengine_notify_reminders_total{result="queued"}"#)
        .await;
    assert_eq!(queued, Some(1.0), "only Dan's since the restart");
}

#[tokio::test]
async fn reminder_offsets_are_checked() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(&dir.path().join("data"), &[]);
    let admin = Api::admin(&server).await;
    let starts = "2030-06-01T18:00:00Z";
    for offsets in [
        json!([30]),
        json!([3600, 3600]),
        json!([60, 120, 180, 240, 300, 360]),
        json!([2_592_001]),
    ] {
        let r = admin
            .post(
                "/api/v1/events",
                &json!({"title": "T", "starts_at": starts, "ends_at": "2030-06-01T20:00:00Z",
                    "reminder_offsets_secs": offsets}),
                None,
            )
            .await;
        assert_eq!(r.status, 422, "{offsets}: {r:?}");
        assert_eq!(
            r.body["errors"][0]["field"], "reminder_offsets_secs",
            "{r:?}"
        );
    }
    let r = admin
        .post(
            "/api/v1/events",
            &json!({"title": "T", "starts_at": starts, "ends_at": "2030-06-01T20:00:00Z"}),
            None,
        )
        .await;
    assert_eq!(r.status, 201, "{r:?}");
    assert_eq!(
        r.body["reminder_offsets_secs"],
        Value::Null,
        "the server's default"
    );
    let patched = admin
        .patch(
            &format!("/api/v1/events/{}", r.str("id")),
            &json!({"reminder_offsets_secs": []}),
        )
        .await;
    assert_eq!(patched.status, 200, "{patched:?}");
    assert_eq!(patched.body["reminder_offsets_secs"], json!([]));
}

#[tokio::test]
async fn a_reminder_can_be_unsubscribed_from_in_one_click() {
    use mail_parser::MessageParser;
    let dir = tempfile::tempdir().unwrap();
    let maildir = dir.path().join("mail");
    let sink = tests::mail::SmtpSink::start(&maildir);
    let port = sink.port.to_string();
    let public = "https://api.front.example/api/v1/unsubscribe";
    let env = [
        ("OUTBOX__SCHEDULE_POLL_MS", "50"),
        ("OUTBOX__DELIVERY", "smtp"),
        ("OUTBOX__SMTP__HOST", "127.0.0.1"),
        ("OUTBOX__SMTP__PORT", port.as_str()),
        ("OUTBOX__SMTP__SECURITY", "none"),
        ("OUTBOX__UNSUBSCRIBE_URL", public),
    ];
    let server = Server::start(&dir.path().join("data"), &env);
    let admin = Api::admin(&server).await;
    let (_, buyer) = admin.account("eve@example.com", &[]).await;
    let (event, tt) = event_starting_in(&admin, 66, json!([60])).await;
    buyer.confirmed(&event, &tt, attendee("Eve"), 1).await;
    let subject = |raw: &[u8]| {
        MessageParser::default()
            .parse(raw)
            .unwrap()
            .subject()
            .unwrap_or_default()
            .to_owned()
    };
    let with_subject = |prefix: &'static str| {
        tests::mail::received(&maildir)
            .into_iter()
            .find(|raw| subject(raw).starts_with(prefix))
    };
    let reminder = wait_for(Duration::from_secs(30), || async {
        with_subject("Reminder")
    })
    .await
    .expect("the reminder");
    let confirmation = with_subject("Confirmed").expect("the confirmation");
    let header = |raw: &[u8], name: &str| {
        MessageParser::default()
            .parse(raw)
            .unwrap()
            .header_raw(name)
            .map(|v| v.trim().to_owned())
    };
    assert_eq!(
        header(&confirmation, "List-Unsubscribe"),
        None,
        "transactional"
    );
    assert_eq!(
        header(&reminder, "List-Unsubscribe-Post").as_deref(),
        Some("List-Unsubscribe=One-Click")
    );
    let link = header(&reminder, "List-Unsubscribe").unwrap();
    let url = link
        .trim_start_matches('<')
        .trim_end_matches('>')
        .strip_prefix(public)
        .expect("the configured public URL");
    // What a mail client does (RFC 8058): a POST without a session.
    let anonymous = Api::new(&server);
    let forged = anonymous
        .post_raw(
            &format!("/api/v1/unsubscribe{}x", &url[..url.len() - 1]),
            "application/x-www-form-urlencoded",
            b"List-Unsubscribe=One-Click".to_vec(),
        )
        .await;
    assert_eq!(forged.status, 400, "{forged:?}");
    let done = anonymous
        .post_raw(
            &format!("/api/v1/unsubscribe{url}"),
            "application/x-www-form-urlencoded",
            b"List-Unsubscribe=One-Click".to_vec(),
        )
        .await;
    assert_eq!(done.status, 200, "{done:?}");
    assert_eq!(done.body["unsubscribed"], "reminders");
    let me = buyer.get("/api/v1/users/me").await;
    let preferences = &me.body["preferences"];
    assert_eq!(preferences["reminders"]["email"], false, "{me:?}");
    assert_eq!(preferences["transactional"]["email"], true);

    // The next reminder is not mailed (the confirmation still is).
    let (next, next_tt) = event_starting_in(&admin, 66, json!([60])).await;
    buyer.confirmed(&next, &next_tt, attendee("Eve"), 1).await;
    let skipped = wait_for(Duration::from_secs(30), || async {
        admin
            .metric(r#"regengine_notify_attempts_total{channel="email",result="skipped"}"#)
            .await
            .filter(|n| *n >= 1.0)
    })
    .await;
    assert_eq!(skipped, Some(1.0));
    let reminders = tests::mail::received(&maildir)
        .iter()
        .filter(|raw| subject(raw).starts_with("Reminder"))
        .count();
    assert_eq!(reminders, 1, "the second one was not mailed");
    drop(sink);
}

#[tokio::test]
async fn managers_preview_their_events_messages_in_each_language() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(&dir.path().join("data"), &[]);
    let admin = Api::admin(&server).await;
    let (event, _) = admin.published_event(10, 600, 2).await;
    let path = |kind: &str, locale: &str| {
        format!("/api/v1/events/{event}/messages/preview?kind={kind}&locale={locale}")
    };
    let de = admin.get(&path("event_reminder", "de-AT")).await;
    assert_eq!(de.status, 200, "{de:?}");
    assert_eq!(de.body["locale"], "de");
    assert!(
        de.str("subject").starts_with("Erinnerung: Flash sale"),
        "{de:?}"
    );
    assert!(de.str("text").contains("Ada Lovelace"), "{de:?}");
    assert!(de.str("html").contains("A1-000001"), "the sample ticket");
    assert!(
        de.str("link")
            .starts_with("http://127.0.0.1:8080/registrations/")
    );
    for kind in [
        "confirmed",
        "event_changed",
        "event_canceled",
        "tickets",
        "waitlist_offer",
        "payment_refunded",
        "payment_reminder",
    ] {
        let r = admin.get(&path(kind, "fr")).await;
        assert_eq!(
            (r.status, r.str("locale")),
            (200, "fr".into()),
            "{kind}: {r:?}"
        );
    }
    let unknown = admin.get(&path("event_reminder", "xx")).await;
    assert_eq!(
        unknown.body["locale"], "en",
        "English when there are no templates"
    );
    let account = admin.get(&path("verify_email", "en")).await;
    assert_eq!(account.status, 422, "{account:?}");
    assert_eq!(account.body["errors"][0]["field"], "kind");
    let (_, buyer) = admin.account("nosy@example.com", &[]).await;
    assert_eq!(buyer.get(&path("confirmed", "en")).await.status, 403);
}
