//! Organizer webhooks: endpoints that organizers (for all their events) or an event's
//! managers (for that event) register, and the domain happenings they are told about.
//!
//! The read model decides the deliveries: when it projects a happening that an enabled
//! endpoint subscribes to, it writes, in the batch of the happening itself, one message per
//! endpoint (its id derived from the endpoint and the happening, so projecting it again
//! writes the same rows), its delivery on the [`Channel::Webhook`] channel, and a log entry
//! holding what the delivery says ([`HookData`]). A sender outside the engine renders the
//! entry as JSON, signs it following the Standard Webhooks convention with the endpoint's
//! secret and posts it; the webhook channel's worker retries it with backoff like any other
//! delivery.

use crate::ids::{EventId, RegistrationId, TicketId, TicketTypeId, UserId};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// What an endpoint can be told about.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum HookType {
    RegistrationHeld,
    RegistrationConfirmed,
    RegistrationCanceled,
    RegistrationExpired,
    PaymentSucceeded,
    PaymentRefunded,
    CheckinAdmitted,
    EventPublished,
    EventChanged,
    EventCanceled,
}

impl HookType {
    /// Every type, in code order.
    pub const ALL: [HookType; 10] = [
        HookType::RegistrationHeld,
        HookType::RegistrationConfirmed,
        HookType::RegistrationCanceled,
        HookType::RegistrationExpired,
        HookType::PaymentSucceeded,
        HookType::PaymentRefunded,
        HookType::CheckinAdmitted,
        HookType::EventPublished,
        HookType::EventChanged,
        HookType::EventCanceled,
    ];

    /// Its name on the wire (`type` of the payload, the endpoints' filters).
    pub fn as_str(self) -> &'static str {
        match self {
            HookType::RegistrationHeld => "registration.held",
            HookType::RegistrationConfirmed => "registration.confirmed",
            HookType::RegistrationCanceled => "registration.canceled",
            HookType::RegistrationExpired => "registration.expired",
            HookType::PaymentSucceeded => "payment.succeeded",
            HookType::PaymentRefunded => "payment.refunded",
            HookType::CheckinAdmitted => "checkin.admitted",
            HookType::EventPublished => "event.published",
            HookType::EventChanged => "event.changed",
            HookType::EventCanceled => "event.canceled",
        }
    }

    /// The type named `name`.
    pub fn parse(name: &str) -> Option<HookType> {
        HookType::ALL.into_iter().find(|t| t.as_str() == name)
    }

    fn bit(self) -> u16 {
        1 << HookType::ALL.iter().position(|t| *t == self).unwrap_or(0)
    }
}

/// A set of types; empty means every type.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct HookTypes(u16);

impl HookTypes {
    pub fn of(types: impl IntoIterator<Item = HookType>) -> Self {
        Self(types.into_iter().fold(0, |set, t| set | t.bit()))
    }

    /// Whether an endpoint with this filter wants `t`.
    pub fn wants(self, t: HookType) -> bool {
        self.0 == 0 || self.0 & t.bit() != 0
    }

    /// The types named (empty: every type).
    pub fn list(self) -> Vec<HookType> {
        HookType::ALL
            .into_iter()
            .filter(|t| self.0 & t.bit() != 0)
            .collect()
    }
}

/// Whose happenings an endpoint hears.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Scope {
    /// One event's.
    Event(EventId),
    /// Every event the organizer owns.
    Organizer(UserId),
}

/// Most endpoints one event or one organizer may have.
pub const ENDPOINTS_PER_SCOPE_MAX: usize = 20;

/// How long a rotated secret still signs deliveries beside the new one, so a receiver can
/// switch over without dropping any.
pub const ROTATION_OVERLAP_SECS: i64 = 24 * 3600;

/// A registered endpoint.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Endpoint {
    pub id: Uuid,
    pub scope: Scope,
    /// Where deliveries are posted (http or https; checked against private addresses).
    pub url: String,
    /// The types it wants (empty: all).
    pub types: HookTypes,
    pub description: String,
    /// Off: its deliveries are skipped until it is enabled again (and can be replayed).
    pub enabled: bool,
    /// The signing secret, `whsec_` + base64 of its key.
    pub secret: String,
    /// The secret it replaced, still signing until `previous_until`.
    pub previous_secret: Option<String>,
    #[serde(with = "chrono::serde::ts_milliseconds_option")]
    pub previous_until: Option<DateTime<Utc>>,
    pub created_by: UserId,
    #[serde(with = "chrono::serde::ts_milliseconds")]
    pub created_at: DateTime<Utc>,
    #[serde(with = "chrono::serde::ts_milliseconds")]
    pub updated_at: DateTime<Utc>,
}

impl Endpoint {
    /// The secrets a delivery made `now` is signed with: the current one, and the one it
    /// replaced while its overlap lasts.
    pub fn signing_secrets(&self, now: DateTime<Utc>) -> Vec<&str> {
        let mut secrets = vec![self.secret.as_str()];
        if let (Some(previous), Some(until)) = (&self.previous_secret, self.previous_until)
            && now < until
        {
            secrets.push(previous);
        }
        secrets
    }
}

/// What a delivery tells, as the log keeps it (rendered as the payload's `data`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum HookData {
    Registration(RegistrationData),
    Payment(PaymentData),
    CheckIn(CheckInData),
    Event(EventData),
}

/// A registration as it stood after the happening.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RegistrationData {
    pub registration_id: RegistrationId,
    pub event_id: EventId,
    pub ticket_type_id: TicketTypeId,
    pub quantity: u16,
    /// `held`, `confirmed`, `canceled`, `expired`.
    pub status: String,
    pub attendee_name: String,
    pub attendee_email: String,
    pub user_id: Option<UserId>,
    #[serde(with = "chrono::serde::ts_milliseconds")]
    pub expires_at: DateTime<Utc>,
    /// The price to pay, in minor units of `currency` (none: free).
    pub total_minor: Option<i64>,
    pub currency: Option<String>,
    /// The tickets issued (confirmed registrations).
    pub tickets: Vec<TicketId>,
}

/// Money captured or refunded.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PaymentData {
    pub registration_id: RegistrationId,
    pub event_id: EventId,
    /// `stripe`, `paypal`, `bank_transfer`.
    pub provider: String,
    pub amount_minor: i64,
    pub currency: String,
    /// The provider's id of the payment (or of the refund).
    pub provider_ref: Option<String>,
    /// Our id of the refund (`payment.refunded`).
    pub refund_id: Option<Uuid>,
}

/// An admission at the door.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CheckInData {
    pub ticket_id: TicketId,
    pub registration_id: RegistrationId,
    pub event_id: EventId,
    pub gate: Option<String>,
    #[serde(with = "chrono::serde::ts_milliseconds")]
    pub admitted_at: DateTime<Utc>,
}

/// An event after the change.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct EventData {
    pub event_id: EventId,
    pub title: String,
    /// `published`, `canceled`, ...
    pub status: String,
    #[serde(with = "chrono::serde::ts_milliseconds")]
    pub starts_at: DateTime<Utc>,
    #[serde(with = "chrono::serde::ts_milliseconds")]
    pub ends_at: DateTime<Utc>,
    pub version: u64,
    /// The settings that changed (`event.changed`).
    pub changed: Vec<String>,
}

/// A happening, as the read model saw it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Happening {
    pub kind: HookType,
    pub event_id: EventId,
    /// What it is about (a registration, a ticket, the event; with `kind` and `at` it names
    /// the happening).
    pub subject: Uuid,
    pub at: DateTime<Utc>,
    pub data: HookData,
}

/// One delivery's log entry: what it says, kept for the delivery log and replays.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LogEntry {
    /// The message (and `webhook-id`).
    pub message_id: Uuid,
    pub endpoint_id: Uuid,
    pub kind: HookType,
    pub data: HookData,
    /// When it happened (the payload's `timestamp`).
    #[serde(with = "chrono::serde::ts_milliseconds")]
    pub at: DateTime<Utc>,
}

/// The entry of `happening` for `endpoint`; its message id is a UUIDv7 at the happening's
/// time whose random part is derived from the endpoint and the happening, so the same
/// happening projected again gives the same id (receivers deduplicate by it).
pub fn entry(endpoint: Uuid, happening: &Happening) -> LogEntry {
    let mut input = Vec::with_capacity(48);
    input.extend_from_slice(endpoint.as_bytes());
    input.extend_from_slice(happening.subject.as_bytes());
    input.extend_from_slice(happening.kind.as_str().as_bytes());
    input.extend_from_slice(&happening.at.timestamp_millis().to_be_bytes());
    LogEntry {
        message_id: crate::ids::derived_id(happening.at, &input),
        endpoint_id: endpoint,
        kind: happening.kind,
        data: happening.data.clone(),
        at: happening.at,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn happening(kind: HookType) -> Happening {
        let event_id = EventId::new();
        Happening {
            kind,
            event_id,
            subject: event_id.0,
            at: Utc::now(),
            data: HookData::Event(EventData {
                event_id,
                title: "t".into(),
                status: "published".into(),
                starts_at: Utc::now(),
                ends_at: Utc::now(),
                version: 2,
                changed: Vec::new(),
            }),
        }
    }

    #[test]
    fn an_empty_filter_wants_everything_and_a_list_only_its_types() {
        assert!(HookTypes::default().wants(HookType::EventCanceled));
        let some = HookTypes::of([HookType::RegistrationHeld, HookType::CheckinAdmitted]);
        assert!(some.wants(HookType::CheckinAdmitted));
        assert!(!some.wants(HookType::RegistrationConfirmed));
        assert_eq!(
            some.list(),
            [HookType::RegistrationHeld, HookType::CheckinAdmitted]
        );
        for t in HookType::ALL {
            assert_eq!(HookType::parse(t.as_str()), Some(t));
        }
    }

    #[test]
    fn one_happening_has_one_id_per_endpoint_and_repeats_it() {
        let h = happening(HookType::EventPublished);
        let (a, b) = (Uuid::now_v7(), Uuid::now_v7());
        assert_eq!(entry(a, &h).message_id, entry(a, &h).message_id);
        assert_ne!(entry(a, &h).message_id, entry(b, &h).message_id);
        let mut other = h.clone();
        other.kind = HookType::EventCanceled;
        assert_ne!(entry(a, &h).message_id, entry(a, &other).message_id);
        assert_eq!(entry(a, &h).message_id.get_version_num(), 7);
    }

    #[test]
    fn a_rotated_secret_signs_until_its_overlap_ends() {
        let now = Utc::now();
        let mut e = Endpoint {
            id: Uuid::now_v7(),
            scope: Scope::Organizer(UserId::new()),
            url: "https://hooks.example/in".into(),
            types: HookTypes::default(),
            description: String::new(),
            enabled: true,
            secret: "whsec_new".into(),
            previous_secret: Some("whsec_old".into()),
            previous_until: Some(now + chrono::Duration::hours(1)),
            created_by: UserId::new(),
            created_at: now,
            updated_at: now,
        };
        assert_eq!(e.signing_secrets(now), ["whsec_new", "whsec_old"]);
        e.previous_until = Some(now);
        assert_eq!(e.signing_secrets(now), ["whsec_new"]);
    }
}
