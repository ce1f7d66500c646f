//! E-mail: messages rendered from templates ([`templates`]) with what the store knows about
//! them ([`Facts`]), built as MIME with the tickets' QR codes and the event's calendar entry
//! ([`mime`], [`ics`]), and handed to a transport: an SMTP server ([`smtp`]), the
//! development spool file ([`spool`]), or the log.

pub mod ics;
pub mod mime;
pub mod sendgrid;
pub mod smtp;
pub mod spool;
pub mod templates;

use chrono::{DateTime, Utc};
use engine::message::{MessageKind, OutboxMessage, RefundCause};
use engine::notify::{SendError, Sent};
use serde::Serialize;
use std::sync::Arc;

/// What the store knows about a message's subject, read when it is sent (the message itself
/// carries only ids and what was decided).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Facts {
    /// The recipient's locale (`de-AT`, `fr`, ...): their account's, else the event's; the
    /// templates fall back to English.
    pub locale: Option<String>,
    /// The event, if the message concerns one.
    pub event: Option<EventFacts>,
    /// The attendee's name, if known.
    pub attendee_name: Option<String>,
    /// The registration's tickets (a confirmation), each with its signed code.
    pub tickets: Vec<engine::message::TicketLine>,
    /// The ticket type's name and the number of seats, if the message concerns a registration.
    pub ticket_type: Option<String>,
    /// Where a one-click unsubscribe of a non-transactional message goes (RFC 8058: the
    /// URL with its token); none: no `List-Unsubscribe` header.
    pub unsubscribe_url: Option<String>,
    /// A broadcast's subject and body (what a `broadcast` message says).
    pub broadcast: Option<BroadcastFacts>,
    /// Money going back for the registration (refunded or being refunded), in minor units
    /// of the currency, if any.
    pub refund: Option<(i64, String)>,
    /// What a hold still asks its buyer to pay (a `payment_due` message).
    pub due: Option<DueFacts>,
}

/// What an unpaid hold asks for: the amount, for how many seats, and until when they are
/// held.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DueFacts {
    /// In minor units of `currency`.
    pub amount_minor: i64,
    pub currency: String,
    pub quantity: u16,
    pub held_until: DateTime<Utc>,
}

/// What a manager's broadcast says.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BroadcastFacts {
    pub subject: String,
    /// Plain text; blank lines separate paragraphs.
    pub body: String,
}

/// The unsubscribe URL `message` carries: none for a transactional one.
pub(crate) fn unsubscribe_url<'a>(message: &OutboxMessage, facts: &'a Facts) -> Option<&'a str> {
    (!transactional(&message.kind))
        .then_some(facts.unsubscribe_url.as_deref())
        .flatten()
}

/// An event as messages show it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EventFacts {
    pub id: engine::ids::EventId,
    pub title: String,
    pub venue: Option<String>,
    pub starts_at: DateTime<Utc>,
    pub ends_at: DateTime<Utc>,
    /// How often the event was changed (the calendar entry's `SEQUENCE`).
    pub version: u64,
    /// How its messages look (none: plain).
    pub branding: Option<engine::model::EventBranding>,
}

impl From<&engine::model::EventRecord> for EventFacts {
    fn from(record: &engine::model::EventRecord) -> Self {
        Self {
            id: record.id,
            title: record.title.clone(),
            venue: record.venue.clone(),
            starts_at: record.starts_at,
            ends_at: record.ends_at,
            version: record.version,
            branding: record.branding.clone(),
        }
    }
}

/// The buttons' colour of messages without a branding colour.
pub const DEFAULT_ACCENT: &str = "#1d4ed8";

/// A message rendered for e-mail.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rendered {
    pub subject: String,
    pub text: String,
    pub html: String,
    /// The page the message points to (verification, registration, event), if any.
    pub link: Option<String>,
}

/// A message rendered for the in-app inbox or an SMS: the e-mail's subject, text and link,
/// without the HTML (not rendered at all).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Notice {
    pub subject: String,
    pub text: String,
    pub link: Option<String>,
}

/// A message's main link: the page of the ticketing front it points to (built from the
/// front's base URL, never from the API's own address).
pub fn link(base: &str, message: &OutboxMessage) -> Option<String> {
    let base = base.trim_end_matches('/');
    Some(match (&message.kind, message.kind.registration_id()) {
        (MessageKind::VerifyEmail { token, .. }, _) => format!("{base}/verify-email?token={token}"),
        (MessageKind::ResetPassword { token, .. }, _) => {
            format!("{base}/reset-password?token={token}")
        }
        (MessageKind::PaymentDue { .. }, Some(id)) => format!("{base}/registrations/{id}/pay"),
        (_, Some(id)) => format!("{base}/registrations/{id}"),
        (MessageKind::EventCanceled { event_id, .. }, None) => format!("{base}/events/{event_id}"),
        (_, None) => return None,
    })
}

/// The tickets a message carries: its own (a resend), or the registration's (a
/// confirmation, read when sent).
pub fn tickets<'a>(
    message: &'a OutboxMessage,
    facts: &'a Facts,
) -> &'a [engine::message::TicketLine] {
    match &message.kind {
        MessageKind::Tickets { tickets, .. } => tickets,
        _ => &facts.tickets,
    }
}

/// Whether a kind is transactional (the person asked for it or must know it): those go
/// whatever the preferences say and carry no unsubscribe link.
pub fn transactional(kind: &MessageKind) -> bool {
    match kind {
        MessageKind::VerifyEmail { .. }
        | MessageKind::ResetPassword { .. }
        | MessageKind::Tickets { .. }
        | MessageKind::Confirmed { .. }
        | MessageKind::WaitlistOffer { .. }
        | MessageKind::PaymentRefunded { .. }
        | MessageKind::PaymentReminder { .. }
        | MessageKind::EventCanceled { .. }
        | MessageKind::EventChanged { .. }
        | MessageKind::RegistrationCanceled { .. }
        | MessageKind::PaymentDue { .. }
        | MessageKind::Webhook { .. } => true,
        MessageKind::EventReminder { .. } | MessageKind::Broadcast { .. } => false,
    }
}

/// What a template sees: the message's own fields, the facts, and the link. Absent values
/// are left out (not `none`), so a template that uses one without `{% if %}` fails the check
/// at start instead of printing nothing.
#[derive(Serialize)]
pub(crate) struct Context<'a> {
    kind: &'static str,
    locale: &'a str,
    base_url: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    link: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    attendee_name: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    event: Option<EventContext<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    ticket_type: Option<&'a str>,
    tickets: Vec<TicketContext<'a>>,
    /// The event's brand above the message, if it has a branding.
    #[serde(skip_serializing_if = "Option::is_none")]
    brand: Option<BrandContext<'a>>,
    /// The colour of headings and buttons (`#rrggbb`).
    accent: &'a str,
    /// Kind-specific fields (see [`Context::new`]).
    #[serde(flatten)]
    fields: Fields<'a>,
}

#[derive(Serialize)]
struct BrandContext<'a> {
    /// The branding's name, else the event's title.
    name: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    logo_url: Option<&'a str>,
}

#[derive(Serialize)]
struct EventContext<'a> {
    title: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    venue: Option<&'a str>,
    starts_at: String,
    ends_at: String,
    url: String,
}

#[derive(Serialize)]
struct TicketContext<'a> {
    number: &'a str,
    code: &'a str,
    /// The `cid:` of its QR image in the mail.
    cid: String,
}

/// The fields only some kinds have.
#[derive(Serialize)]
#[serde(untagged)]
enum Fields<'a> {
    Token {
        expires_at: String,
    },
    Offer {
        quantity: u16,
        expires_at: String,
    },
    Due {
        amount: String,
        currency: &'a str,
        quantity: u16,
        expires_at: String,
    },
    Money {
        amount: String,
        currency: &'a str,
        #[serde(skip_serializing_if = "Option::is_none")]
        cause: Option<&'static str>,
        #[serde(skip_serializing_if = "Option::is_none")]
        reference: Option<&'a str>,
        #[serde(skip_serializing_if = "Option::is_none")]
        deadline: Option<String>,
    },
    Canceled {
        event_title: &'a str,
        tickets_revoked: bool,
        waitlist: bool,
    },
    Tickets {
        event_title: &'a str,
    },
    Broadcast {
        broadcast: BroadcastContext<'a>,
    },
    Changed {
        /// `starts_at`, `ends_at`, `venue`.
        changed: &'a [String],
    },
    Refund {
        #[serde(skip_serializing_if = "Option::is_none")]
        refund: Option<String>,
        #[serde(skip_serializing_if = "Option::is_none")]
        currency: Option<&'a str>,
    },
    None {},
}

/// A broadcast as templates see it: the body as written (text part) and as paragraphs of
/// lines (HTML part: each line escaped on its own, joined with `<br>`).
#[derive(Serialize)]
struct BroadcastContext<'a> {
    subject: &'a str,
    body: &'a str,
    paragraphs: Vec<Vec<&'a str>>,
}

impl<'a> BroadcastContext<'a> {
    fn of(facts: &'a BroadcastFacts) -> Self {
        let mut paragraphs: Vec<Vec<&str>> = vec![Vec::new()];
        for line in facts.body.lines().map(str::trim_end) {
            match paragraphs.last_mut() {
                // A blank line ends a paragraph (several: still one break).
                Some(current) if line.trim().is_empty() && !current.is_empty() => {
                    paragraphs.push(Vec::new());
                }
                Some(current) if !line.trim().is_empty() => current.push(line),
                _ => {}
            }
        }
        paragraphs.retain(|p| !p.is_empty());
        Self {
            subject: &facts.subject,
            body: facts.body.trim(),
            paragraphs,
        }
    }
}

impl<'a> Fields<'a> {
    /// The fields of the kinds whose fields were read when sent (in `facts`).
    fn read(kind: &'a MessageKind, facts: &'a Facts) -> Option<Self> {
        Some(match kind {
            MessageKind::RegistrationCanceled { .. } => Fields::Refund {
                refund: facts
                    .refund
                    .as_ref()
                    .map(|(minor, currency)| amount(*minor, currency)),
                currency: facts.refund.as_ref().map(|(_, currency)| currency.as_str()),
            },
            MessageKind::PaymentDue { .. } => {
                facts
                    .due
                    .as_ref()
                    .map_or(Fields::None {}, |due| Fields::Due {
                        amount: amount(due.amount_minor, &due.currency),
                        currency: &due.currency,
                        quantity: due.quantity,
                        expires_at: when(due.held_until),
                    })
            }
            MessageKind::Broadcast { .. } => {
                facts
                    .broadcast
                    .as_ref()
                    .map_or(Fields::None {}, |b| Fields::Broadcast {
                        broadcast: BroadcastContext::of(b),
                    })
            }
            _ => return None,
        })
    }

    /// The fields of `kind` (some read when sent, in `facts`).
    fn of(kind: &'a MessageKind, facts: &'a Facts) -> Self {
        if let Some(fields) = Self::read(kind, facts) {
            return fields;
        }
        match kind {
            MessageKind::EventChanged { changed, .. } => Fields::Changed { changed },
            MessageKind::RegistrationCanceled { .. }
            | MessageKind::PaymentDue { .. }
            | MessageKind::Broadcast { .. } => Fields::None {},
            MessageKind::VerifyEmail { expires_at, .. }
            | MessageKind::ResetPassword { expires_at, .. } => Fields::Token {
                expires_at: when(*expires_at),
            },
            MessageKind::WaitlistOffer {
                quantity,
                expires_at,
                ..
            } => Fields::Offer {
                quantity: *quantity,
                expires_at: when(*expires_at),
            },
            MessageKind::PaymentRefunded {
                amount_minor,
                currency,
                cause,
                ..
            } => Fields::Money {
                amount: amount(*amount_minor, currency),
                currency,
                cause: Some(match cause {
                    RefundCause::LatePayment => "late_payment",
                    RefundCause::DoublePayment => "double_payment",
                }),
                reference: None,
                deadline: None,
            },
            MessageKind::PaymentReminder {
                amount_minor,
                currency,
                reference,
                deadline,
                ..
            } => Fields::Money {
                amount: amount(*amount_minor, currency),
                currency,
                cause: None,
                reference: reference.as_deref(),
                deadline: Some(when(*deadline)),
            },
            MessageKind::EventCanceled {
                event_title,
                registration_id,
                tickets_revoked,
                ..
            } => Fields::Canceled {
                event_title,
                tickets_revoked: *tickets_revoked,
                waitlist: registration_id.is_none(),
            },
            MessageKind::Tickets { event_title, .. } => Fields::Tickets { event_title },
            MessageKind::Confirmed { .. }
            | MessageKind::EventReminder { .. }
            | MessageKind::Webhook { .. } => Fields::None {},
        }
    }
}

/// How times are shown: UTC, to the minute.
pub(crate) fn when(at: DateTime<Utc>) -> String {
    at.format("%Y-%m-%d %H:%M UTC").to_string()
}

fn amount(minor: i64, currency: &str) -> String {
    crate::money::to_decimal(minor, currency).unwrap_or_else(|_| minor.to_string())
}

/// The `Content-ID` of ticket `number`'s QR image.
pub(crate) fn ticket_cid(number: &str, domain: &str) -> String {
    format!("ticket-{number}@{domain}")
}

impl<'a> Context<'a> {
    pub(crate) fn new(
        message: &'a OutboxMessage,
        facts: &'a Facts,
        locale: &'a str,
        base_url: &'a str,
        domain: &str,
    ) -> Self {
        let base = base_url.trim_end_matches('/');
        let fields = Fields::of(&message.kind, facts);
        let branding = facts
            .event
            .as_ref()
            .and_then(|e| Some((e, e.branding.as_ref()?)));
        Context {
            brand: branding.map(|(e, b)| BrandContext {
                name: b.name.as_deref().unwrap_or(&e.title),
                logo_url: b.logo_url.as_deref(),
            }),
            accent: branding
                .and_then(|(_, b)| b.color.as_deref())
                .unwrap_or(DEFAULT_ACCENT),
            kind: message.kind.as_str(),
            locale,
            base_url: base,
            link: link(base, message),
            attendee_name: facts.attendee_name.as_deref(),
            event: facts.event.as_ref().map(|e| EventContext {
                title: &e.title,
                venue: e.venue.as_deref(),
                starts_at: when(e.starts_at),
                ends_at: when(e.ends_at),
                url: format!("{base}/events/{}", e.id),
            }),
            ticket_type: facts.ticket_type.as_deref(),
            tickets: tickets(message, facts)
                .iter()
                .map(|t| TicketContext {
                    number: &t.number,
                    code: &t.code,
                    cid: ticket_cid(&t.number, domain),
                })
                .collect(),
            fields,
        }
    }
}

/// Where rendered mail goes.
pub enum Transport {
    /// An SMTP server.
    Smtp(smtp::Smtp),
    /// SendGrid's mail send API.
    SendGrid(sendgrid::SendGrid),
    /// The development spool file (JSON lines).
    Spool(spool::Spool),
    /// Only a log line (nothing reaches anyone).
    Log,
}

/// Renders messages and hands them to a transport.
pub struct Mailer {
    templates: Arc<templates::Templates>,
    transport: Transport,
    settings: mime::Settings,
    base_url: String,
}

impl Mailer {
    /// A mailer with checked `templates`, sending through `transport`; links start with
    /// `base_url` (the ticketing front).
    pub fn new(
        templates: Arc<templates::Templates>,
        transport: Transport,
        settings: mime::Settings,
        base_url: &str,
    ) -> Self {
        Self {
            templates,
            transport,
            settings,
            base_url: base_url.trim_end_matches('/').to_owned(),
        }
    }

    /// Renders `message` with `facts` and sends it. Rendering errors are permanent (the same
    /// message would fail again); the transport says whether its errors are.
    pub async fn send(&self, message: &OutboxMessage, facts: &Facts) -> Result<Sent, SendError> {
        let rendered = self
            .templates
            .render(message, facts, &self.base_url, &self.settings.domain)
            .map_err(SendError::Permanent)?;
        match &self.transport {
            Transport::Smtp(smtp) => {
                let email = mime::build(message, facts, &rendered, &self.settings)
                    .map_err(SendError::Permanent)?;
                smtp.send(email).await
            }
            Transport::SendGrid(sendgrid) => {
                sendgrid
                    .send(message, facts, &rendered, &self.settings)
                    .await
            }
            Transport::Spool(spool) => spool.append(message, facts, &rendered).await,
            Transport::Log => {
                tracing::info!(
                    id = %message.id,
                    kind = message.kind.as_str(),
                    to = %engine::outbox::mask(&message.to),
                    subject = %rendered.subject,
                    "message rendered (log transport: not sent)"
                );
                Ok(Sent::default())
            }
        }
    }
}
