//! Managers preview what their event's attendees will receive: any message kind about a
//! registration or the event, in any of the templates' languages, rendered from the event as
//! it is now with a sample attendee and ticket (the same templates and links as the mails).

use super::AppState;
use super::auth::Authenticated;
use super::error::{ApiResult, Problem};
use super::extract::{ApiQuery, PathId};
use super::policy::managed_event;
use axum::extract::State;
use axum::routing::get;
use axum::{Json, Router};
use chrono::Utc;
use engine::error::{DomainError, FieldError};
use engine::ids::{EventId, RegistrationId};
use engine::message::{MessageKind, OutboxMessage, RefundCause, TicketLine};
use engine::model::EventRecord;
use integrations::mail::templates::{Templates, pick_locale};
use integrations::mail::{BroadcastFacts, DueFacts, EventFacts, Facts};
use serde::{Deserialize, Serialize};
use std::sync::Arc;
use utoipa::{IntoParams, ToSchema};

/// What previews are rendered with.
#[derive(Clone)]
pub struct Previews {
    pub templates: Arc<Templates>,
    /// The ticketing front's base URL (the messages' links).
    pub base_url: String,
    /// The domain of message and content ids.
    pub domain: String,
}

/// The kinds a manager may preview (the account messages are not about an event).
const KINDS: [&str; 10] = [
    "confirmed",
    "payment_due",
    "registration_canceled",
    "event_reminder",
    "event_changed",
    "event_canceled",
    "tickets",
    "waitlist_offer",
    "payment_refunded",
    "payment_reminder",
];

pub(super) fn router() -> Router<AppState> {
    Router::new().route("/api/v1/events/{id}/messages/preview", get(preview))
}

/// Which message, in which language.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct PreviewParams {
    /// `confirmed`, `payment_due`, `registration_canceled`, `event_reminder`, `event_changed`,
    /// `event_canceled`, `tickets`, `waitlist_offer`, `payment_refunded` or `payment_reminder`.
    #[param(max_length = 32)]
    kind: String,
    /// A language tag (`de`, `fr-CH`, ...); templates it has none for fall back to English.
    #[param(max_length = 35)]
    locale: Option<String>,
}

/// A message as the attendee would get it.
#[derive(Debug, Serialize, ToSchema)]
#[schema(examples(preview_example))]
pub struct PreviewDto {
    kind: String,
    /// The language of the templates used.
    locale: String,
    subject: String,
    text: String,
    html: String,
    /// The page of the ticketing front it points to.
    link: Option<String>,
}

fn preview_example() -> serde_json::Value {
    serde_json::json!({"kind": "event_reminder", "locale": "en",
        "subject": "Reminder: Flash sale on 2030-06-01 18:00 UTC",
        "text": "Hello Ada Lovelace,\n\nFlash sale is coming up.", "html": "<p>Hello Ada Lovelace</p>",
        "link": "https://tickets.example/registrations/00000000-0000-0000-0000-000000000000",
    })
}

/// The sample message of `kind` about `event`.
fn sample(kind: &str, event: &EventRecord) -> Option<MessageKind> {
    let (event_id, registration_id) = (event.id, RegistrationId(uuid::Uuid::nil()));
    let (amount_minor, currency) = sample_price(event);
    let soon = Utc::now() + chrono::Duration::hours(24);
    Some(match kind {
        "confirmed" => MessageKind::Confirmed {
            event_id,
            registration_id,
        },
        "payment_due" => MessageKind::PaymentDue {
            event_id,
            registration_id,
        },
        "event_reminder" => MessageKind::EventReminder {
            event_id,
            registration_id,
            offset_secs: 86_400,
        },
        "registration_canceled" => MessageKind::RegistrationCanceled {
            event_id,
            registration_id,
        },
        "event_changed" => MessageKind::EventChanged {
            event_id,
            registration_id,
            version: event.version,
            changed: vec!["starts_at".into(), "venue".into()],
        },
        "event_canceled" => MessageKind::EventCanceled {
            event_id,
            event_title: event.title.clone(),
            registration_id: Some(registration_id),
            tickets_revoked: true,
        },
        "tickets" => MessageKind::Tickets {
            event_title: event.title.clone(),
            registration_id,
            tickets: sample_tickets(),
        },
        "waitlist_offer" => MessageKind::WaitlistOffer {
            registration_id,
            quantity: 2,
            expires_at: soon,
        },
        "payment_refunded" => MessageKind::PaymentRefunded {
            registration_id,
            amount_minor,
            currency,
            cause: RefundCause::LatePayment,
        },
        "payment_reminder" => MessageKind::PaymentReminder {
            registration_id,
            amount_minor,
            currency,
            reference: Some("RF18539007547034".into()),
            deadline: soon,
        },
        _ => return None,
    })
}

/// The price of a seat of the event's first ticket type (a sample one if it is free).
fn sample_price(event: &EventRecord) -> (i64, String) {
    event
        .ticket_types
        .first()
        .map_or((2_500, "EUR".to_owned()), |t| {
            (t.price_minor.max(1), t.currency.clone())
        })
}

/// Two seats of the event's first ticket type, held for its hold time from now.
fn sample_due(event: &EventRecord) -> DueFacts {
    let (unit_minor, currency) = sample_price(event);
    DueFacts {
        amount_minor: unit_minor.saturating_mul(2),
        currency,
        quantity: 2,
        held_until: Utc::now() + chrono::Duration::seconds(i64::from(event.hold_ttl_secs)),
    }
}

fn sample_tickets() -> Vec<TicketLine> {
    vec![TicketLine {
        number: "A1-000001".into(),
        code: "SAMPLE-TICKET-CODE".into(),
    }]
}

/// A message of the event as an attendee would get it, rendered with a sample attendee
/// (Ada Lovelace) and ticket (event managers).
#[utoipa::path(get, path = "/api/v1/events/{id}/messages/preview", tag = "notifications",
    security(("bearer" = [])), params(("id" = uuid::Uuid, Path), PreviewParams),
    responses((status = 200, body = PreviewDto), (status = 400, body = Problem), (status = 401, body = Problem),
        (status = 403, body = Problem), (status = 404, body = Problem), (status = 422, body = Problem)))]
pub(crate) async fn preview(
    State(state): State<AppState>,
    Authenticated(principal): Authenticated,
    PathId(id): PathId<EventId>,
    ApiQuery(p): ApiQuery<PreviewParams>,
) -> ApiResult<Json<PreviewDto>> {
    let event = managed_event(&state, &principal, id)?;
    let Some(kind) = sample(&p.kind, &event) else {
        let message = format!("must be one of {}", KINDS.join(", "));
        return Err(DomainError::Validation(vec![FieldError::new("kind", message)]).into());
    };
    render(&state.previews, &event, kind, p.locale, None).map(Json)
}

/// `kind` about `event` as Ada Lovelace would get it, in `locale` (none: the event's).
pub(super) fn render(
    previews: &Previews,
    event: &EventRecord,
    kind: MessageKind,
    locale: Option<String>,
    broadcast: Option<BroadcastFacts>,
) -> ApiResult<PreviewDto> {
    if locale
        .as_deref()
        .is_some_and(|l| !engine::model::valid_locale(l))
    {
        let problem = FieldError::new("locale", "must be a language tag such as de or fr-CH");
        return Err(DomainError::Validation(vec![problem]).into());
    }
    let message = OutboxMessage::new("ada@example.com", None, kind, Utc::now());
    // The locale asked for, else the event's (what a guest would get).
    let locale = locale.or_else(|| event.locale.clone());
    let facts = Facts {
        locale: locale.clone(),
        event: Some(EventFacts::from(event)),
        attendee_name: Some("Ada Lovelace".into()),
        tickets: sample_tickets(),
        ticket_type: event.ticket_types.first().map(|t| t.name.clone()),
        unsubscribe_url: None,
        broadcast,
        refund: None,
        due: Some(sample_due(event)),
    };
    let rendered = previews
        .templates
        .render(&message, &facts, &previews.base_url, &previews.domain)
        .map_err(super::error::ApiError::Internal)?;
    Ok(PreviewDto {
        kind: message.kind.as_str().to_owned(),
        locale: pick_locale(locale.as_deref()).to_owned(),
        subject: rendered.subject,
        text: rendered.text,
        html: rendered.html,
        link: rendered.link,
    })
}
