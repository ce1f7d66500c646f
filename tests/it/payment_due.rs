//! A priced hold left unpaid sends its buyer the payment link, over a real SMTP server (and
//! into their in-app inbox): what is due, for how many seats, until when they are held, and
//! the ticketing front's payment page. A hold paid or being paid by then is not asked (the
//! pool decides it with its expiries: nothing is written for it).

use mail_parser::MessageParser;
use serde_json::json;
use std::time::Duration;
use tests::mail::with_smtp;
use tests::{Api, wait_for};

/// Seconds after a hold that it asks for payment (the test's; 120 by default).
const AFTER: &str = "4";

#[tokio::test]
async fn an_unpaid_hold_mails_its_payment_link_and_a_paid_one_does_not() {
    let dir = tempfile::tempdir().unwrap();
    let (sink, server, maildir) = with_smtp(
        dir.path(),
        &[
            ("OUTBOX__PAYMENT_DUE_AFTER_SECS", AFTER),
            ("OUTBOX__LINK_BASE_URL", "https://front.example"),
            ("PAYMENTS__BANK_TRANSFER__ENABLED", "true"),
            ("PAYMENTS__BANK_TRANSFER__PAYEE", "Night at the Opera Ltd"),
            ("PAYMENTS__BANK_TRANSFER__IBAN", "DE89370400440532013000"),
            ("PAYMENTS__BANK_TRANSFER__BIC", "COBADEFFXXX"),
        ],
    );
    let admin = Api::admin(&server).await;
    let (event, tt) = admin.published_priced_event(10, 600, 4, 4_250).await;
    let (_, ann) = admin.account("ann@example.com", &[]).await;
    let hold = |quantity: u16| {
        let ann = &ann;
        let (event, tt) = (&event, &tt);
        async move {
            let body = json!({"ticket_type_id": tt, "quantity": quantity,
                "attendee": {"name": "Ann <A> Lee", "email": "ann@example.com"}});
            let r = ann
                .post(
                    &format!("/api/v1/events/{event}/registrations"),
                    &body,
                    None,
                )
                .await;
            assert_eq!(r.status, 201, "{r:?}");
            r
        }
    };
    // Paid at once (a manager's mark-paid), and a bank transfer started: neither is asked.
    let paid = hold(1).await.str("id");
    let r = admin
        .post(
            &format!("/api/v1/registrations/{paid}/mark-paid"),
            &json!({}),
            None,
        )
        .await;
    assert_eq!(r.status, 200, "{r:?}");
    let paying = hold(1).await.str("id");
    let r = ann
        .post(
            &format!("/api/v1/registrations/{paying}/payments"),
            &json!({"provider": "bank_transfer"}),
            None,
        )
        .await;
    assert_eq!(r.status, 201, "{r:?}");
    // Left unpaid: asked, once.
    let unpaid = hold(2).await;
    let (unpaid_id, held_until) = (unpaid.str("id"), unpaid.str("expires_at"));

    let subject = "Complete your order: Flash sale";
    let raw = wait_for(Duration::from_secs(30), || async {
        tests::mail::received(&maildir)
            .into_iter()
            .find(|raw| MessageParser::default().parse(raw).unwrap().subject() == Some(subject))
    })
    .await
    .expect("the payment link mail");
    let mail = MessageParser::default().parse(&raw).unwrap();
    assert!(mail.to().unwrap().contains("ann@example.com"));
    assert!(mail.message_id().is_some());
    assert!(
        mail.header_raw("List-Unsubscribe").is_none(),
        "transactional"
    );
    let text = mail.body_text(0).unwrap();
    let html = mail.body_html(0).unwrap();
    let link = format!("https://front.example/registrations/{unpaid_id}/pay");
    // 2 × 42.50 EUR, held until the hold's end (as the API showed it, to the minute).
    let until = chrono::DateTime::parse_from_rfc3339(&held_until)
        .unwrap()
        .format("%Y-%m-%d %H:%M UTC")
        .to_string();
    for part in [&text, &html] {
        assert!(part.contains(&link), "{part}");
        assert!(part.contains("85.00 EUR"), "{part}");
        assert!(part.contains(&until), "{until} in {part}");
        assert!(part.contains("2 seat(s) (GA)"), "{part}");
    }
    assert!(text.contains("Ann <A> Lee"), "{text}");
    assert!(html.contains("Ann &lt;A&gt; Lee"), "{html}");
    assert!(mail.attachments().next().is_none(), "no tickets yet");

    // The two others were due earlier, and the pool asked neither (paid, being paid): no
    // message at all, not even a skipped one.
    let all = tests::mail::settled(&admin, &maildir).await;
    let subjects: Vec<String> = all
        .iter()
        .map(|raw| {
            let m = MessageParser::default().parse(raw).unwrap();
            m.subject().unwrap_or_default().to_owned()
        })
        .collect();
    let asked = subjects.iter().filter(|s| *s == subject).count();
    assert_eq!(asked, 1, "{subjects:?}");
    assert!(subjects.contains(&"Confirmed: Flash sale".to_owned()));
    let skipped = admin
        .metric(r#"regengine_notify_attempts_total{channel="email",result="skipped"}"#)
        .await;
    assert!(skipped.is_none_or(|n| n == 0.0), "{skipped:?}");

    // The account's inbox gets it too (its own channel: maybe after the mail), same link.
    let due = wait_for(Duration::from_secs(30), || async {
        let inbox = ann.get("/api/v1/users/me/notifications").await;
        assert_eq!(inbox.status, 200, "{inbox:?}");
        let items = inbox.body["items"].as_array().cloned().unwrap_or_default();
        let due: Vec<_> = items
            .into_iter()
            .filter(|i| i["kind"] == "payment_due")
            .collect();
        (!due.is_empty()).then_some(due)
    })
    .await
    .expect("the payment link in the inbox");
    assert_eq!(due.len(), 1, "{due:?}");
    assert_eq!(due[0]["link"], link.as_str());
    assert_eq!(due[0]["title"], subject);
    drop(sink);
}
