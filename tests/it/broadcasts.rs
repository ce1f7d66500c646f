//! A manager's broadcast to every attendee, against a real SMTP server: previewed first
//! (nothing sent, nothing stored), refused when malformed or oversize, then sent once to each
//! confirmed registration (not to canceled ones or bare holds), audited, bounded per day, with
//! a one-click unsubscribe only where the mail goes to the account's own address.

use mail_parser::{Message, MessageParser, MimeHeaders};
use serde_json::{Value, json};
use std::time::Duration;
use tests::mail::{read_ics, with_smtp};
use tests::{Api, wait_for};

fn attendee(name: &str) -> Value {
    json!({"name": name, "email": format!("{}@example.com", name.to_lowercase())})
}

fn parsed(raw: &[Vec<u8>]) -> Vec<Message<'_>> {
    raw.iter()
        .map(|r| MessageParser::default().parse(r).expect("MIME parses"))
        .collect()
}

#[tokio::test]
async fn a_manager_previews_then_sends_a_message_to_every_attendee_once() {
    let dir = tempfile::tempdir().unwrap();
    let (sink, server, maildir) = with_smtp(
        dir.path(),
        &[
            ("OUTBOX__BROADCASTS_PER_DAY", "1"),
            (
                "OUTBOX__UNSUBSCRIBE_URL",
                "https://api.front.example/api/v1/unsubscribe",
            ),
        ],
    );
    let admin = Api::admin(&server).await;
    let (event, tt) = admin.published_event(10, 600, 2).await;
    let (_, eve) = admin.account("eve@example.com", &[]).await;
    let (_, bob) = admin.account("bob@example.com", &[]).await;
    let (_, cat) = admin.account("cat@example.com", &[]).await;
    let (_, dan) = admin.account("dan@example.com", &[]).await;
    eve.confirmed(&event, &tt, attendee("Eve"), 1).await;
    bob.confirmed(&event, &tt, attendee("Bob"), 2).await;
    // The admin registers someone else; Cat cancels (once her mail is out); Dan only holds.
    admin.confirmed(&event, &tt, attendee("Zoe"), 1).await;
    let canceled = cat.confirmed(&event, &tt, attendee("Cat"), 1).await;
    let held = dan
        .post(
            &format!("/api/v1/events/{event}/registrations"),
            &json!({"ticket_type_id": tt, "quantity": 1, "attendee": attendee("Dan")}),
            None,
        )
        .await;
    assert_eq!(held.status, 201, "{held:?}");
    // (Each account's verification mail arrives too.)
    let arrived = |subject: &'static str, n: usize| {
        let maildir = maildir.clone();
        async move {
            wait_for(Duration::from_secs(30), || async {
                let all = tests::mail::received(&maildir);
                let count = parsed(&all)
                    .iter()
                    .filter(|m| m.subject() == Some(subject))
                    .count();
                (count >= n).then_some(all)
            })
            .await
            .unwrap_or_else(|| panic!("{n} mails \"{subject}\" expected"))
        }
    };
    arrived("Confirmed: Flash sale", 4).await;
    let path = format!(
        "/api/v1/registrations/{}/cancel",
        canceled["id"].as_str().unwrap()
    );
    let cancel = cat.post(&path, &json!({}), None).await;
    assert_eq!(cancel.status, 200, "{cancel:?}");

    let broadcasts = format!("/api/v1/events/{event}/broadcasts");
    let long = "x".repeat(20_001);
    for (bad, field) in [
        (
            json!({"subject": "Hi\r\nBcc: all@example.com", "body": "b"}),
            "subject",
        ),
        (json!({"subject": "", "body": "b"}), "subject"),
        (json!({"subject": "s".repeat(201), "body": "b"}), "subject"),
        (json!({"subject": "Hi", "body": "  "}), "body"),
        (json!({"subject": "Hi", "body": long}), "body"),
    ] {
        let r = admin.post(&broadcasts, &bad, None).await;
        assert_eq!(r.status, 422, "{r:?}");
        assert_eq!(r.body["errors"][0]["field"], field, "{r:?}");
    }
    let message = json!({
        "subject": "Doors <early>",
        "body": "Dear all,\n\nDoors open at 17:00.\nBring <ID> & a smile.\n",
    });

    // The preview: rendered as an attendee would get it, nothing stored or sent.
    let preview = admin
        .post(&format!("{broadcasts}/preview?locale=de"), &message, None)
        .await;
    assert_eq!(preview.status, 200, "{preview:?}");
    assert_eq!(preview.body["kind"], "broadcast");
    assert_eq!(preview.body["locale"], "de");
    assert_eq!(preview.body["subject"], "Doors <early>");
    let html = preview.str("html");
    assert!(
        html.contains("<p>Doors open at 17:00.<br>Bring &lt;ID&gt; &amp; a smile.</p>"),
        "{html}"
    );
    assert!(html.contains("<h1 style=\"font-size:20px;margin-top:0\">Doors &lt;early&gt;</h1>"));
    assert!(preview.str("text").contains("Bring <ID> & a smile."));
    assert!(
        preview
            .str("text")
            .contains("eine Nachricht der Veranstalter")
    );
    let listed = admin.get(&broadcasts).await;
    assert_eq!(listed.body["items"], json!([]), "a preview stores nothing");
    assert_eq!(eve.post(&broadcasts, &message, None).await.status, 403);

    let sent = admin.post(&broadcasts, &message, None).await;
    assert_eq!(sent.status, 202, "{sent:?}");
    let id = sent.str("id");
    let done = wait_for(Duration::from_secs(30), || async {
        let b = admin.get(&format!("{broadcasts}/{id}")).await;
        (b.body["status"] == "queued").then_some(b)
    })
    .await
    .expect("the broadcast is queued to everyone");
    assert_eq!(done.body["recipients_queued"], 3, "{done:?}");
    assert_eq!(done.body["subject"], "Doors <early>");

    let raw = arrived("Doors <early>", 3).await;
    let mails = parsed(&raw);
    let news: Vec<&Message> = mails
        .iter()
        .filter(|m| m.subject() == Some("Doors <early>"))
        .collect();
    let mut to: Vec<String> = news
        .iter()
        .map(|m| {
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
    assert_eq!(
        to,
        ["bob@example.com", "eve@example.com", "zoe@example.com"]
    );
    for mail in &news {
        let text = mail.body_text(0).unwrap();
        assert!(text.contains("Bring <ID> & a smile."), "{text}");
        let own = mail.to().unwrap().first().unwrap().address() != Some("zoe@example.com");
        assert_eq!(
            mail.header_raw("List-Unsubscribe").is_some(),
            own,
            "unsubscribe only for the account's own address"
        );
    }

    // A day's quota of one: the next is refused until the first is a day old.
    let again = admin.post(&broadcasts, &message, None).await;
    assert_eq!(again.status, 429, "{again:?}");
    let retry: u64 = again.retry_after.as_deref().unwrap().parse().unwrap();
    assert!(retry > 86_000, "{retry}");
    let unknown = format!("{broadcasts}/{}", uuid::Uuid::now_v7());
    assert_eq!(admin.get(&unknown).await.status, 404);
    let listed = admin.get(&broadcasts).await;
    assert_eq!(listed.body["items"].as_array().unwrap().len(), 1);
    let audit = admin
        .audit_actions(&format!("/api/v1/events/{event}/audit"))
        .await;
    assert!(
        audit.contains(&"POST /api/v1/events/{id}/broadcasts".to_owned()),
        "{audit:?}"
    );
    // Nothing more: once every mail sent is in the sink, three of them are the broadcast.
    let settled = tests::mail::settled(&admin, &maildir).await;
    let news = parsed(&settled)
        .iter()
        .filter(|m| m.subject() == Some("Doors <early>"))
        .count();
    assert_eq!(news, 3, "once each");
    drop(sink);
}

#[tokio::test]
async fn attendees_are_told_when_the_time_or_place_changes_with_an_updated_calendar_entry() {
    let dir = tempfile::tempdir().unwrap();
    let (sink, server, maildir) = with_smtp(dir.path(), &[]);
    let admin = Api::admin(&server).await;
    let (event, tt) = admin.published_event(10, 600, 2).await;
    admin.confirmed(&event, &tt, attendee("Eve"), 1).await;
    admin.confirmed(&event, &tt, attendee("Bob"), 2).await;
    let path = format!("/api/v1/events/{event}");
    // A description is not news; the start and the place are.
    let r = admin
        .patch(&path, &json!({"description": "Bring a coat."}))
        .await;
    assert_eq!(r.status, 200, "{r:?}");
    let r = admin
        .patch(
            &path,
            &json!({"starts_at": "2030-06-01T19:00:00Z", "venue": "Hall <2>"}),
        )
        .await;
    assert_eq!(r.status, 200, "{r:?}");
    let version = r.body["version"].as_u64().unwrap();

    let changed = |all: &[Vec<u8>]| {
        all.iter()
            .filter(|raw| {
                MessageParser::default().parse(raw).unwrap().subject()
                    == Some("Changed: Flash sale")
            })
            .cloned()
            .collect::<Vec<_>>()
    };
    let notices = wait_for(Duration::from_secs(30), || async {
        let notices = changed(&tests::mail::received(&maildir));
        (notices.len() >= 2).then_some(notices)
    })
    .await
    .expect("both attendees are told");
    for mail in parsed(&notices) {
        let text = mail.body_text(0).unwrap();
        assert!(
            text.contains("the time or place of Flash sale has changed"),
            "{text}"
        );
        assert!(
            text.contains("When: 2030-06-01 19:00 UTC – 2030-06-01 23:00 UTC (changed)"),
            "{text}"
        );
        assert!(text.contains("Where: Hall <2> (changed)"), "{text}");
        let html = mail.body_html(0).unwrap();
        assert!(html.contains("Hall &lt;2&gt; <em>(changed)</em>"), "{html}");
        let ics = mail
            .attachments()
            .find(|p| p.attachment_name() == Some("event.ics"))
            .expect("the updated calendar entry");
        let ics = read_ics(ics.contents());
        assert_eq!(ics["start"], "2030-06-01T19:00:00+00:00");
        assert_eq!(ics["location"], "Hall <2>");
        assert_eq!(ics["sequence"], version, "calendars replace the old entry");
    }
    let listed = admin.get(&format!("{path}/broadcasts")).await;
    let items = listed.body["items"].as_array().unwrap().clone();
    assert_eq!(items.len(), 1, "{listed:?}");
    assert_eq!(items[0]["kind"], "event_changed");
    assert_eq!(items[0]["changed"], json!(["starts_at", "venue"]));
    // Once every mail sent is in the sink: two notices, one each.
    let settled = tests::mail::settled(&admin, &maildir).await;
    assert_eq!(changed(&settled).len(), 2);
    drop(sink);
}
