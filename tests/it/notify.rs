//! Notifications against a real SMTP server (aiosmtpd, started by the test): the confirmation
//! mail read back with a MIME parser from other hands, its QR codes decoded, its calendar
//! entry read by Python's `icalendar`; an SMTP server down, then back; and kill -9 while a
//! mail is on the wire (it arrives again, with the same Message-ID).

use mail_parser::{MessageParser, MimeHeaders};
use serde_json::json;
use std::path::Path;
use std::time::Duration;
use tests::mail::{SmtpSink, read_ics};
use tests::{Api, Server, wait_for};

const FRONT: &str = "https://front.example";

fn smtp_env(port: u16) -> Vec<(String, String)> {
    vec![
        ("OUTBOX__DELIVERY".into(), "smtp".into()),
        ("OUTBOX__SMTP__HOST".into(), "127.0.0.1".into()),
        ("OUTBOX__SMTP__PORT".into(), port.to_string()),
        ("OUTBOX__SMTP__SECURITY".into(), "none".into()),
        ("OUTBOX__SMTP__TIMEOUT_MS".into(), "2000".into()),
        ("OUTBOX__LINK_BASE_URL".into(), FRONT.into()),
        (
            "OUTBOX__FROM".into(),
            "Tickets <tickets@front.example>".into(),
        ),
        ("OUTBOX__RETRY_MS".into(), "100".into()),
        ("OUTBOX__RETRY_MAX_MS".into(), "400".into()),
        ("OUTBOX__ATTEMPTS_MAX".into(), "1000".into()),
    ]
}

fn start(data: &Path, env: &[(String, String)]) -> Server {
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    Server::start(data, &env)
}

/// Holds `quantity` seats for `email` (an attendee name that needs escaping in HTML) and
/// confirms them; the registration as the API shows it.
async fn confirmed(
    admin: &Api,
    event: &str,
    tt: &str,
    email: &str,
    quantity: u16,
) -> serde_json::Value {
    let attendee = json!({"name": "Zoë <Z> O'Neil", "email": email});
    admin.confirmed(event, tt, attendee, quantity).await
}

/// Waits until the sink in `dir` holds at least `n` messages; returns them all.
async fn received(dir: &Path, n: usize, within: Duration) -> Vec<Vec<u8>> {
    wait_for(within, || async {
        let all = tests::mail::received(dir);
        (all.len() >= n).then_some(all)
    })
    .await
    .unwrap_or_else(|| panic!("{n} mail(s) expected, {} arrived", tests::mail::count(dir)))
}

#[tokio::test]
async fn a_confirmation_mail_reaches_a_real_smtp_server_with_its_qr_codes_and_calendar() {
    let dir = tempfile::tempdir().unwrap();
    let maildir = dir.path().join("mail");
    let sink = SmtpSink::start(&maildir);
    let server = start(&dir.path().join("data"), &smtp_env(sink.port));
    let admin = Api::admin(&server).await;
    let (event, tt) = admin.published_event(10, 600, 4).await;
    let registration = confirmed(&admin, &event, &tt, "zoe@example.com", 2).await;
    let id = registration["id"].as_str().unwrap();

    let raw = received(&maildir, 1, Duration::from_secs(30)).await;
    assert_eq!(raw.len(), 1, "one mail: the confirmation");
    let mail = MessageParser::default()
        .parse(&raw[0])
        .expect("MIME parses");
    assert_eq!(mail.subject(), Some("Confirmed: Flash sale"));
    assert!(mail.from().unwrap().contains("tickets@front.example"));
    assert!(mail.to().unwrap().contains("zoe@example.com"));
    let message_id = mail.message_id().expect("a Message-ID");
    let (uuid, domain) = message_id.split_once('@').expect("id@domain");
    assert!(uuid::Uuid::parse_str(uuid).is_ok(), "{message_id}");
    assert_eq!(domain, "regengine.localhost");

    let text = mail.body_text(0).expect("a text part");
    let html = mail.body_html(0).expect("an HTML part");
    let link = format!("{FRONT}/registrations/{id}");
    assert!(text.contains(&link), "{text}");
    assert!(html.contains(&link), "{html}");
    assert!(
        text.contains("Zoë <Z> O'Neil"),
        "text is not escaped: {text}"
    );
    assert!(html.contains("Zoë &lt;Z&gt;"), "HTML is escaped: {html}");
    let tickets = registration["tickets"].as_array().unwrap();
    assert_eq!(tickets.len(), 2);
    let mut codes: Vec<String> = Vec::new();
    for ticket in tickets {
        let (number, code) = (
            ticket["number"].as_str().unwrap(),
            ticket["code"].as_str().unwrap(),
        );
        assert!(text.contains(number) && text.contains(code), "{text}");
        codes.push(code.to_owned());
    }

    // Each ticket's QR code is an inline PNG the HTML shows by its Content-ID.
    let mut decoded: Vec<String> = Vec::new();
    let mut calendars = Vec::new();
    for part in mail.attachments() {
        if part.is_content_type("image", "png") {
            let cid = part.content_id().expect("inline images have a Content-ID");
            assert!(
                html.contains(&format!("cid:{cid}")),
                "{cid} not in the HTML"
            );
            decoded.push(tests::decode_qr_png(part.contents()));
        } else if part.is_content_type("text", "calendar") {
            assert_eq!(part.attachment_name(), Some("event.ics"));
            calendars.push(part.contents().to_vec());
        }
    }
    decoded.sort();
    codes.sort();
    assert_eq!(decoded, codes, "the QR codes carry the tickets' codes");

    assert_eq!(calendars.len(), 1, "the event as a calendar entry");
    let ics = read_ics(&calendars[0]);
    assert_eq!(ics["summary"], "Flash sale");
    assert_eq!(ics["method"], "PUBLISH");
    assert_eq!(ics["start"], "2030-06-01T18:00:00+00:00");
    assert_eq!(ics["end"], "2030-06-01T23:00:00+00:00");
    assert_eq!(ics["tz"], "UTC");
    assert_eq!(ics["uid"], format!("{event}@regengine.localhost"));

    // Sent once: nothing more arrives, and the attempt is counted.
    let sent = wait_for(Duration::from_secs(10), || async {
        admin
            .metric(r#"regengine_notify_attempts_total{channel="email",result="sent"}"#)
            .await
            .filter(|n| *n >= 1.0)
    })
    .await;
    assert_eq!(sent, Some(1.0));
    assert_eq!(tests::mail::received(&maildir).len(), 1);
    drop(sink);
}

#[tokio::test]
async fn a_branded_event_mails_someone_registered_for_them_in_its_language_with_its_logo() {
    let dir = tempfile::tempdir().unwrap();
    let maildir = dir.path().join("mail");
    let sink = SmtpSink::start(&maildir);
    let server = start(&dir.path().join("data"), &smtp_env(sink.port));
    let admin = Api::admin(&server).await;
    let (event, tt) = admin.published_event(10, 600, 4).await;
    let path = format!("/api/v1/events/{event}");
    for (bad, field) in [
        (json!({"branding": {"color": "red"}}), "branding.color"),
        (
            json!({"branding": {"logo_url": "http://cdn.example/l.png"}}),
            "branding.logo_url",
        ),
        (
            json!({"branding": {"logo_url": "https://cdn.example/a b.png"}}),
            "branding.logo_url",
        ),
        (json!({"branding": {"name": ""}}), "branding.name"),
        (json!({"locale": "deutsch!"}), "locale"),
    ] {
        let r = admin.patch(&path, &bad).await;
        assert_eq!(r.status, 422, "{bad}: {r:?}");
        assert_eq!(r.body["errors"][0]["field"], field, "{r:?}");
    }
    assert!(
        admin.get(&path).await.body["branding"].is_null(),
        "nothing changed"
    );
    let logo = "https://cdn.example.org/orchestra.png";
    let branding = json!({"name": "City Orchestra", "logo_url": logo, "color": "#7c2d12"});
    let patched = admin
        .patch(&path, &json!({"branding": branding, "locale": "de-AT"}))
        .await;
    assert_eq!(patched.status, 200, "{patched:?}");
    assert_eq!(patched.body["branding"], branding);
    assert_eq!(patched.body["locale"], "de-AT");

    // The admin (English) registers someone else: they get the event's language.
    confirmed(&admin, &event, &tt, "zoe@example.com", 1).await;
    let raw = received(&maildir, 1, Duration::from_secs(30)).await;
    let mail = MessageParser::default()
        .parse(&raw[0])
        .expect("MIME parses");
    assert_eq!(mail.subject(), Some("Bestätigt: Flash sale"));
    let html = mail.body_html(0).expect("an HTML part");
    assert!(
        html.contains(&format!(r#"<img src="{logo}" alt="City Orchestra""#)),
        "{html}"
    );
    assert!(
        html.contains("background:#7c2d12"),
        "the brand's colour: {html}"
    );

    // The manager's preview shows the same (the event's language when none is asked for).
    let preview = admin
        .get(&format!("{path}/messages/preview?kind=confirmed"))
        .await;
    assert_eq!(preview.status, 200, "{preview:?}");
    assert_eq!(preview.body["locale"], "de");
    assert!(preview.str("html").contains(logo), "{preview:?}");

    // The admin's own registration: the admin's language.
    confirmed(&admin, &event, &tt, tests::ADMIN_EMAIL, 1).await;
    let raw = received(&maildir, 2, Duration::from_secs(30)).await;
    let subjects: Vec<String> = raw
        .iter()
        .map(|r| {
            MessageParser::default()
                .parse(r)
                .unwrap()
                .subject()
                .unwrap()
                .to_owned()
        })
        .collect();
    assert!(
        subjects.contains(&"Confirmed: Flash sale".to_owned()),
        "{subjects:?}"
    );
    drop(sink);
}

#[tokio::test]
async fn with_the_smtp_server_down_mail_waits_with_backoff_and_all_of_it_arrives_once_it_is_back() {
    let dir = tempfile::tempdir().unwrap();
    let maildir = dir.path().join("mail");
    // A port nothing listens on yet: the sink's, stopped.
    let probe = SmtpSink::start(&dir.path().join("probe"));
    let port = probe.port;
    probe.stop();
    let server = start(&dir.path().join("data"), &smtp_env(port));
    let admin = Api::admin(&server).await;
    let (event, tt) = admin.published_event(10, 600, 1).await;
    for n in 0..3 {
        confirmed(&admin, &event, &tt, &format!("p{n}@example.com"), 1).await;
    }
    // Retried with backoff, the backlog visible.
    let retries = wait_for(Duration::from_secs(20), || async {
        admin
            .metric(r#"regengine_notify_attempts_total{channel="email",result="retry"}"#)
            .await
            .filter(|n| *n >= 6.0)
    })
    .await;
    assert!(retries.is_some(), "the sends were retried");
    let backlog = wait_for(Duration::from_secs(10), || async {
        admin
            .metric(r#"regengine_notify_backlog{channel="email"}"#)
            .await
            .filter(|n| *n == 3.0)
    })
    .await;
    assert_eq!(backlog, Some(3.0), "three deliveries wait");
    assert_eq!(tests::mail::count(&maildir), 0);

    let sink = SmtpSink::start_on(&maildir, port);
    let raw = received(&maildir, 3, Duration::from_secs(30)).await;
    let mut to: Vec<String> = raw
        .iter()
        .map(|r| {
            let m = MessageParser::default().parse(r).unwrap();
            m.to()
                .unwrap()
                .first()
                .unwrap()
                .address()
                .unwrap()
                .to_owned()
        })
        .collect();
    to.sort();
    assert_eq!(to, ["p0@example.com", "p1@example.com", "p2@example.com"]);
    let drained = wait_for(Duration::from_secs(10), || async {
        admin
            .metric(r#"regengine_notify_backlog{channel="email"}"#)
            .await
            .filter(|n| *n == 0.0)
    })
    .await;
    assert_eq!(drained, Some(0.0));
    drop(sink);
}

#[tokio::test]
async fn kill_9_while_a_mail_is_on_the_wire_sends_it_again_with_the_same_message_id() {
    let dir = tempfile::tempdir().unwrap();
    let maildir = dir.path().join("mail");
    let data = dir.path().join("data");
    // This server takes the message but never acknowledges it.
    let withholding = SmtpSink::withholding(&maildir);
    let server = start(&data, &smtp_env(withholding.port));
    let admin = Api::admin(&server).await;
    let (event, tt) = admin.published_event(10, 600, 1).await;
    confirmed(&admin, &event, &tt, "kim@example.com", 1).await;
    received(&maildir, 1, Duration::from_secs(30)).await;
    server.kill9();
    withholding.stop();

    let sink = SmtpSink::start(&maildir);
    let server = start(&data, &smtp_env(sink.port));
    let raw = received(&maildir, 2, Duration::from_secs(30)).await;
    let ids: Vec<String> = raw
        .iter()
        .map(|r| {
            let m = MessageParser::default().parse(r).unwrap();
            assert_eq!(m.subject(), Some("Confirmed: Flash sale"));
            m.message_id().unwrap().to_owned()
        })
        .collect();
    assert_eq!(ids[0], ids[1], "a repeat carries the same Message-ID");
    drop(server);
    drop(sink);
}

#[tokio::test]
async fn a_refused_address_is_a_dead_letter_that_admins_list_replay_and_discard() {
    let dir = tempfile::tempdir().unwrap();
    let maildir = dir.path().join("mail");
    let sink = SmtpSink::start(&maildir);
    let server = start(&dir.path().join("data"), &smtp_env(sink.port));
    let admin = Api::admin(&server).await;
    let (event, tt) = admin.published_event(10, 600, 1).await;
    confirmed(&admin, &event, &tt, "refused@example.com", 1).await;
    confirmed(&admin, &event, &tt, "ok@example.com", 1).await;
    received(&maildir, 1, Duration::from_secs(30)).await;

    // The 550 is permanent: dead after one attempt, not retried.
    let dead = admin.dead_deliveries("email").await;
    assert_eq!(dead.len(), 1, "{dead:?}");
    let d = &dead[0];
    assert_eq!(d["status"], "failed");
    assert_eq!(d["channel"], "email");
    assert_eq!(d["kind"], "confirmed");
    assert_eq!(d["attempts"], 1);
    assert!(d["last_error"].as_str().unwrap().contains("550"), "{d}");
    let id = d["message_id"].as_str().unwrap().to_owned();
    let status = admin
        .get(&format!("/api/v1/messages/{id}/deliveries"))
        .await;
    assert_eq!(status.status, 200, "{status:?}");
    assert_eq!(status.body["items"][0]["status"], "failed");

    // Buyers may not see or touch it; bad input changes nothing.
    let buyer = admin.buyer("nosy@example.com").await;
    assert_eq!(buyer.get("/api/v1/deliveries/dead").await.status, 403);
    let replay = format!("/api/v1/messages/{id}/deliveries/email/replay");
    assert_eq!(buyer.post(&replay, &json!({}), None).await.status, 403);
    let bad = admin
        .post(
            &format!("/api/v1/messages/{id}/deliveries/pigeon/replay"),
            &json!({}),
            None,
        )
        .await;
    assert_eq!(bad.status, 400, "{bad:?}");
    let unknown = admin
        .post(
            &format!(
                "/api/v1/messages/{}/deliveries/email/replay",
                uuid::Uuid::now_v7()
            ),
            &json!({}),
            None,
        )
        .await;
    assert_eq!(unknown.status, 404, "{unknown:?}");
    assert_eq!(unknown.body["code"], "delivery_not_found");

    // A replay tries again with the same message id (refused again: dead again).
    let replayed = admin.post(&replay, &json!({}), None).await;
    assert_eq!(replayed.status, 200, "{replayed:?}");
    assert_eq!(replayed.body["status"], "queued");
    assert_eq!(replayed.body["attempts"], 0);
    let again = wait_for(Duration::from_secs(20), || async {
        let r = admin
            .get(&format!("/api/v1/messages/{id}/deliveries"))
            .await;
        (r.body["items"][0]["status"] == "failed").then_some(r)
    })
    .await
    .expect("dead again");
    assert_eq!(again.body["items"][0]["attempts"], 1);

    // In bulk (after an outage): only the kind asked for; bad input changes nothing.
    let bulk = "/api/v1/deliveries/dead/replay";
    let none = admin
        .post(bulk, &json!({"kind": "verify_email"}), None)
        .await;
    assert_eq!(
        (none.status, none.body["replayed"].as_u64()),
        (200, Some(0)),
        "{none:?}"
    );
    let bad = admin.post(bulk, &json!({"limit": 0}), None).await;
    assert_eq!(bad.status, 422, "{bad:?}");
    // A body is an object: serde would read an array as the fields in order.
    let array = admin.post(bulk, &json!([null, null]), None).await;
    assert_eq!(array.status, 422, "{array:?}");
    assert_eq!(array.body["errors"][0]["field"], "body", "{array:?}");
    let all = admin.post(bulk, &json!({"kind": "confirmed"}), None).await;
    assert_eq!(all.body["replayed"], 1, "{all:?}");
    wait_for(Duration::from_secs(20), || async {
        let r = admin
            .get(&format!("/api/v1/messages/{id}/deliveries"))
            .await;
        (r.body["items"][0]["status"] == "failed").then_some(())
    })
    .await
    .expect("dead once more");

    // Discarded: gone from the dead letters; a second discard finds nothing.
    let path = format!("/api/v1/messages/{id}/deliveries/email");
    let gone = admin.send(admin.at(reqwest::Method::DELETE, &path)).await;
    assert_eq!(gone.status, 204, "{gone:?}");
    let page = admin.get("/api/v1/deliveries/dead").await;
    assert_eq!(page.body["items"].as_array().unwrap().len(), 0);
    let twice = admin.send(admin.at(reqwest::Method::DELETE, &path)).await;
    assert_eq!(twice.status, 404);
    // The replay and the discard are in the audit log.
    let actions = admin.audit_actions("/api/v1/audit").await;
    for action in [
        "POST /api/v1/messages/{id}/deliveries/{channel}/replay",
        "DELETE /api/v1/messages/{id}/deliveries/{channel}",
    ] {
        assert!(actions.iter().any(|a| a == action), "{actions:?}");
    }
    let refused = tests::mail::received(&maildir).iter().any(|raw| {
        let m = MessageParser::default().parse(raw).unwrap();
        m.to().unwrap().contains("refused@example.com")
    });
    assert!(!refused, "nothing reached the refused address");
    drop(sink);
}

#[tokio::test]
async fn a_canceled_registration_is_told_once_but_not_again_when_its_event_is_canceled() {
    let dir = tempfile::tempdir().unwrap();
    let maildir = dir.path().join("mail");
    let sink = SmtpSink::start(&maildir);
    let server = start(&dir.path().join("data"), &smtp_env(sink.port));
    let admin = Api::admin(&server).await;
    let (event, tt) = admin.published_event(10, 600, 4).await;
    let (_, eve) = admin.account("eve@example.com", &[]).await;
    let attendee = json!({"name": "Eve", "email": "eve@example.com"});
    let mine = eve.confirmed(&event, &tt, attendee, 1).await;
    confirmed(&admin, &event, &tt, "zoe@example.com", 1).await;
    let subjects = |all: &[Vec<u8>]| -> Vec<(String, String)> {
        all.iter()
            .map(|raw| {
                let m = MessageParser::default().parse(raw).unwrap();
                let to = m
                    .to()
                    .unwrap()
                    .first()
                    .unwrap()
                    .address()
                    .unwrap()
                    .to_owned();
                (m.subject().unwrap_or_default().to_owned(), to)
            })
            .collect()
    };
    let count =
        |all: &[(String, String)], subject: &str| all.iter().filter(|(s, _)| s == subject).count();
    wait_for(Duration::from_secs(30), || async {
        let all = subjects(&tests::mail::received(&maildir));
        (count(&all, "Confirmed: Flash sale") == 2).then_some(())
    })
    .await
    .expect("both confirmations");
    let cancel = format!(
        "/api/v1/registrations/{}/cancel",
        mine["id"].as_str().unwrap()
    );
    assert_eq!(eve.post(&cancel, &json!({}), None).await.status, 200);
    let told = wait_for(Duration::from_secs(30), || async {
        let all = tests::mail::received(&maildir);
        all.into_iter().find(|raw| {
            MessageParser::default().parse(raw).unwrap().subject()
                == Some("Registration canceled: Flash sale")
        })
    })
    .await
    .expect("the cancellation mail");
    let mail = MessageParser::default().parse(&told).unwrap();
    assert!(mail.to().unwrap().first().unwrap().address() == Some("eve@example.com"));
    assert!(
        mail.body_text(0)
            .unwrap()
            .contains("no longer admit anyone")
    );

    // The event's cancellation tells Zoe with its own message, not this one.
    let r = admin
        .post(&format!("/api/v1/events/{event}/cancel"), &json!({}), None)
        .await;
    assert_eq!(r.status, 200, "{r:?}");
    wait_for(Duration::from_secs(30), || async {
        let all = subjects(&tests::mail::received(&maildir));
        all.contains(&("Canceled: Flash sale".into(), "zoe@example.com".into()))
            .then_some(())
    })
    .await
    .expect("the event's cancellation");
    let settled = tests::mail::settled(&admin, &maildir).await;
    let all = subjects(&settled);
    assert_eq!(
        count(&all, "Registration canceled: Flash sale"),
        1,
        "{all:?}"
    );
    drop(sink);
}
