//! A rendered message as MIME: `multipart/mixed` of a `multipart/related` (the text and HTML
//! alternatives, and each ticket's QR code as an inline PNG the HTML shows by `cid:`) and,
//! when the message concerns an event with tickets, the event as `event.ics`.
//!
//! The `Message-ID` is `<{message id}@{domain}>`: the same on every attempt of one message, so
//! a receiver (or a person) can tell a repeat after a crash from a second message.

use super::{Facts, Rendered};
use engine::message::OutboxMessage;
use lettre::Message;
use lettre::message::header::{ContentType, HeaderName, HeaderValue};
use lettre::message::{Attachment, Mailbox, MultiPart, SinglePart};

/// What every mail shares.
#[derive(Clone, Debug)]
pub struct Settings {
    /// The sender (`Tickets <tickets@example.com>`).
    pub from: Mailbox,
    /// The domain of message ids and content ids.
    pub domain: String,
}

/// A mailbox: `Name <address>` or an address.
pub fn mailbox(text: &str) -> Result<Mailbox, String> {
    text.parse().map_err(|e| format!("{e}"))
}

/// The `Message-ID` of a message (with its angle brackets).
pub fn message_id(message: &OutboxMessage, domain: &str) -> String {
    format!("<{}@{domain}>", message.id)
}

/// The MIME message of `rendered`.
pub fn build(
    message: &OutboxMessage,
    facts: &Facts,
    rendered: &Rendered,
    settings: &Settings,
) -> Result<Message, String> {
    let to: Mailbox = message
        .to
        .parse()
        .map_err(|e| format!("recipient address refused: {e}"))?;
    let mut builder = Message::builder()
        .from(settings.from.clone())
        .to(to)
        .subject(rendered.subject.clone())
        .message_id(Some(message_id(message, &settings.domain)))
        .date(message.created_at.into());
    if let Some(url) = super::unsubscribe_url(message, facts) {
        builder = builder
            .raw_header(HeaderValue::new(
                HeaderName::new_from_ascii_str("List-Unsubscribe"),
                format!("<{url}>"),
            ))
            .raw_header(HeaderValue::new(
                HeaderName::new_from_ascii_str("List-Unsubscribe-Post"),
                "List-Unsubscribe=One-Click".to_owned(),
            ));
    }
    let alternative =
        MultiPart::alternative_plain_html(rendered.text.clone(), rendered.html.clone());
    let tickets = super::tickets(message, facts);
    let mut related = MultiPart::related().multipart(alternative);
    for ticket in tickets {
        let png =
            crate::qr::png(&ticket.code).map_err(|e| format!("QR of {}: {e}", ticket.number))?;
        let cid = super::ticket_cid(&ticket.number, &settings.domain);
        related = related.singlepart(
            Attachment::new_inline_with_name(cid, format!("ticket-{}.png", ticket.number)).body(
                png,
                ContentType::parse("image/png").map_err(|e| e.to_string())?,
            ),
        );
    }
    let mut mixed = MultiPart::mixed().multipart(related);
    if let Some(ics) = calendar(message, facts, rendered, settings) {
        let calendar = ContentType::parse("text/calendar; charset=utf-8; method=PUBLISH")
            .map_err(|e| e.to_string())?;
        mixed = mixed.singlepart(attachment("event.ics", ics, calendar));
    }
    builder.multipart(mixed).map_err(|e| e.to_string())
}

/// The event's calendar entry, for a message that carries tickets to it.
pub fn calendar(
    message: &OutboxMessage,
    facts: &Facts,
    rendered: &Rendered,
    settings: &Settings,
) -> Option<String> {
    let tickets = super::tickets(message, facts);
    let event = facts.event.as_ref().filter(|_| !tickets.is_empty())?;
    let numbers: Vec<&str> = tickets.iter().map(|t| t.number.as_str()).collect();
    Some(super::ics::event(
        event,
        &settings.domain,
        message.created_at,
        rendered.link.as_deref().unwrap_or_default(),
        &numbers.join(", "),
    ))
}

fn attachment(name: &str, body: String, content_type: ContentType) -> SinglePart {
    Attachment::new(name.to_owned()).body(body, content_type)
}
