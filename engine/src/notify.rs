//! Notifications: how a message in the outbox becomes deliveries, one per channel, each
//! drained by its channel's worker with its own bounded concurrency, rate and retries.
//!
//! The outbox relay fans a message out ([`plan`]) into delivery rows written with the
//! message's removal from the outbox in one store write; the read model writes the
//! confirmation messages' deliveries itself, in the batch of the confirmation. A worker per
//! channel ([`worker::run`]) sends what is due through its [`Sender`] and records the outcome;
//! a failure is retried with exponential backoff and jitter, and after `attempts_max` the
//! delivery is dead: listed, replayed or discarded by an admin. Every attempt of one delivery
//! carries the message's id, so a provider or a receiver can recognise a repeat after a crash.

pub mod broadcasts;
pub mod inbox;
pub mod reminders;
pub mod worker;

use crate::message::{MessageKind, OutboxMessage};
use crate::values::BoxFuture;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// Where a delivery goes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Channel {
    /// E-mail (SMTP, SendGrid, or the development file).
    Email,
    /// The account's in-app inbox (and its live WebSocket topic).
    InApp,
    /// A text message to the account's phone (Twilio).
    Sms,
    /// An organizer's webhook endpoint.
    Webhook,
}

impl Channel {
    /// Every channel, in code order.
    pub const ALL: [Channel; 4] = [
        Channel::Email,
        Channel::InApp,
        Channel::Sms,
        Channel::Webhook,
    ];

    /// Its name (metrics, API).
    pub fn as_str(self) -> &'static str {
        match self {
            Channel::Email => "email",
            Channel::InApp => "in_app",
            Channel::Sms => "sms",
            Channel::Webhook => "webhook",
        }
    }

    /// Its one-byte code in store keys.
    pub fn code(self) -> u8 {
        match self {
            Channel::Email => 1,
            Channel::InApp => 2,
            Channel::Sms => 3,
            Channel::Webhook => 4,
        }
    }

    /// The channel of a key's code.
    pub fn from_code(code: u8) -> Option<Channel> {
        Channel::ALL.into_iter().find(|c| c.code() == code)
    }
}

/// A set of channels: the ones that have a worker (a channel without one gets no
/// deliveries, which would wait for ever).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Channels(u8);

impl Channels {
    /// The channels of `channels`.
    pub fn of(channels: impl IntoIterator<Item = Channel>) -> Self {
        Self(channels.into_iter().fold(0, |set, c| set | 1 << c.code()))
    }

    pub fn contains(self, channel: Channel) -> bool {
        self.0 & 1 << channel.code() != 0
    }

    /// As stored in an atomic.
    pub fn bits(self) -> u8 {
        self.0
    }

    pub fn from_bits(bits: u8) -> Self {
        Self(bits)
    }
}

impl Default for Channels {
    /// E-mail and the in-app inbox: what every server has.
    fn default() -> Self {
        Self::of([Channel::Email, Channel::InApp])
    }
}

/// Where a delivery stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DeliveryStatus {
    /// Waiting for its (next) attempt.
    Queued,
    /// Accepted by the provider (the SMTP server, the API).
    Sent,
    /// The provider reports it delivered.
    Delivered,
    /// The provider reports it bounced (or dropped, or marked as spam).
    Bounced,
    /// Given up: every attempt failed, or the provider refused it for good (a dead letter).
    Failed,
    /// Not sent because it no longer applies (a confirmation whose registration was
    /// canceled before it went out).
    Skipped,
}

impl DeliveryStatus {
    /// Its name.
    pub fn as_str(self) -> &'static str {
        match self {
            DeliveryStatus::Queued => "queued",
            DeliveryStatus::Sent => "sent",
            DeliveryStatus::Delivered => "delivered",
            DeliveryStatus::Bounced => "bounced",
            DeliveryStatus::Failed => "failed",
            DeliveryStatus::Skipped => "skipped",
        }
    }
}

/// One message on one channel.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Delivery {
    /// The message's id (also the id every attempt carries to the provider).
    pub message_id: Uuid,
    pub channel: Channel,
    pub status: DeliveryStatus,
    /// Attempts made so far.
    pub attempts: u32,
    /// When it is due (queued), in milliseconds since the epoch.
    #[serde(with = "chrono::serde::ts_milliseconds")]
    pub due_at: DateTime<Utc>,
    /// The last failure, if any.
    pub last_error: Option<String>,
    /// The provider's id for it (an SMTP queue id, a SendGrid or Twilio id), once sent.
    pub provider_id: Option<String>,
    /// The message's kind (listing and metrics without reading the message).
    pub kind: String,
    /// When the message was created (the backlog's age).
    #[serde(with = "chrono::serde::ts_milliseconds")]
    pub created_at: DateTime<Utc>,
    /// Its last change.
    #[serde(with = "chrono::serde::ts_milliseconds")]
    pub updated_at: DateTime<Utc>,
}

impl Delivery {
    /// A new delivery of `message` on `channel`, due now.
    pub fn queued(message: &OutboxMessage, channel: Channel, now: DateTime<Utc>) -> Self {
        Self {
            message_id: message.id,
            channel,
            status: DeliveryStatus::Queued,
            attempts: 0,
            due_at: now,
            last_error: None,
            provider_id: None,
            kind: message.kind.as_str().to_owned(),
            created_at: message.created_at,
            updated_at: now,
        }
    }
}

/// The deliveries a message needs, on the `channels` that have a worker. Every kind there is
/// today is transactional (what the person asked for, or must know about their registration
/// or account), so it goes by e-mail whatever the account's preferences say; a message for
/// an account also goes to its in-app inbox and by SMS (whose workers skip it if the
/// account's preferences turn that channel off, or it has no mobile number), except the ones
/// carrying a single-use token (a verification or password-reset link is kept nowhere but in
/// the mail).
pub fn plan(message: &OutboxMessage, now: DateTime<Utc>, channels: Channels) -> Vec<Delivery> {
    let mut deliveries = Vec::with_capacity(3);
    if !message.to.is_empty() && channels.contains(Channel::Email) {
        deliveries.push(Delivery::queued(message, Channel::Email, now));
    }
    let token = matches!(
        message.kind,
        MessageKind::VerifyEmail { .. } | MessageKind::ResetPassword { .. }
    );
    if message.user_id.is_some() && !token {
        for channel in [Channel::InApp, Channel::Sms] {
            if channels.contains(channel) {
                deliveries.push(Delivery::queued(message, channel, now));
            }
        }
    }
    deliveries
}

/// The message telling an attendee their registration is confirmed, with their tickets. Its
/// id is derived from the registration (and the confirmation's time, so ids stay in creation
/// order): the read model writes it with the confirmation, and writing it again writes the
/// same rows.
pub fn confirmation_message(
    to: &str,
    user_id: Option<crate::ids::UserId>,
    event_id: crate::ids::EventId,
    registration_id: crate::ids::RegistrationId,
    at: DateTime<Utc>,
) -> OutboxMessage {
    // A registration id is a UUIDv7: its last ten bytes are (mostly) random and unique.
    let mut random = [0u8; 10];
    random.copy_from_slice(&registration_id.as_bytes()[6..]);
    let millis = u64::try_from(at.timestamp_millis()).unwrap_or(0);
    OutboxMessage {
        id: uuid::Builder::from_unix_timestamp_millis(millis, &random).into_uuid(),
        to: to.to_owned(),
        user_id,
        kind: MessageKind::Confirmed {
            event_id,
            registration_id,
        },
        created_at: at,
    }
}

/// What the read model tells a registration's attendee by itself, with the change that
/// causes it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AttendeeNotice {
    /// Confirmed: the tickets.
    Confirmed,
    /// A confirmed registration canceled (not with its event).
    Canceled,
    /// A priced hold the pool found still unpaid (`PoolEvent::PaymentDue`): the payment link.
    PaymentDue,
}

/// The message of `notice` to the attendee of `registration_id`, dated `at`. Its id derives
/// from the registration (and `at`): each happens once per registration, and writing it
/// again writes the same rows.
pub fn attendee_message(
    notice: AttendeeNotice,
    to: &str,
    user_id: Option<crate::ids::UserId>,
    event_id: crate::ids::EventId,
    registration_id: crate::ids::RegistrationId,
    at: DateTime<Utc>,
) -> OutboxMessage {
    let (tag, kind): (&[u8], _) = match notice {
        AttendeeNotice::Confirmed => {
            return confirmation_message(to, user_id, event_id, registration_id, at);
        }
        AttendeeNotice::Canceled => (
            b"canceled",
            MessageKind::RegistrationCanceled {
                event_id,
                registration_id,
            },
        ),
        AttendeeNotice::PaymentDue => (
            b"payment_due",
            MessageKind::PaymentDue {
                event_id,
                registration_id,
            },
        ),
    };
    OutboxMessage::about_registration(tag, to, user_id, kind, at)
}

/// The reminder of `registration_id`'s attendee, `offset_secs` before the event starts at
/// `starts_at`, due `at`. Its id derives from all of these: queued again (a step repeated),
/// it is the same message; the event moved, it is a new one.
pub fn reminder_message(
    to: &str,
    user_id: Option<crate::ids::UserId>,
    event_id: crate::ids::EventId,
    registration_id: crate::ids::RegistrationId,
    offset_secs: u32,
    starts_at: DateTime<Utc>,
    at: DateTime<Utc>,
) -> OutboxMessage {
    let mut input = Vec::with_capacity(44);
    input.extend_from_slice(event_id.as_bytes());
    input.extend_from_slice(registration_id.as_bytes());
    input.extend_from_slice(&offset_secs.to_be_bytes());
    input.extend_from_slice(&starts_at.timestamp_millis().to_be_bytes());
    let kind = MessageKind::EventReminder {
        event_id,
        registration_id,
        offset_secs,
    };
    OutboxMessage::derived(&input, to, user_id, kind, at)
}

/// The message a webhook delivery carries (what it says is in its log entry).
pub fn webhook_message(entry: &crate::webhooks::LogEntry) -> OutboxMessage {
    OutboxMessage {
        id: entry.message_id,
        to: String::new(),
        user_id: None,
        kind: MessageKind::Webhook {
            endpoint_id: entry.endpoint_id,
            kind: entry.kind,
        },
        created_at: entry.at,
    }
}

/// One reminder of one event, as the schedule holds it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ScheduledReminder {
    pub event_id: crate::ids::EventId,
    /// How long before the start.
    pub offset_secs: u32,
    /// When it goes out (the start minus the offset).
    pub due_at: DateTime<Utc>,
    /// The start it was scheduled for.
    pub starts_at: DateTime<Utc>,
    /// The last registration already queued (none: not started).
    pub after: Option<crate::ids::RegistrationId>,
}

/// Whether a failure may pass if tried again.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SendError {
    /// Try again later (a timeout, a 4xx SMTP reply, a 5xx or 429 from an API).
    Retry(String),
    /// It will never pass (an address refused for good, a message that cannot be rendered):
    /// the delivery is dead at once.
    Permanent(String),
    /// It no longer applies (what it tells has since changed): not sent, not an error.
    Obsolete(String),
}

impl std::fmt::Display for SendError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SendError::Retry(e) => write!(f, "{e} (will retry)"),
            SendError::Permanent(e) => write!(f, "{e} (permanent)"),
            SendError::Obsolete(e) => write!(f, "{e} (not sent)"),
        }
    }
}

/// What a provider said when it accepted a message.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Sent {
    /// The provider's id for it, if it gives one.
    pub provider_id: Option<String>,
}

/// A channel's adapter (SMTP, SendGrid, Twilio, ...), implemented outside the engine: it
/// renders the message for its channel and hands it to the provider, carrying the message's
/// id so a repeat can be recognised.
pub trait Sender: Send + Sync + 'static {
    /// The channel it serves.
    fn channel(&self) -> Channel;
    /// Sends one message.
    fn send<'a>(&'a self, message: &'a OutboxMessage) -> BoxFuture<'a, Result<Sent, SendError>>;
    /// Its worker's settings, when not the engine's (webhooks retry over hours).
    fn worker_config(&self) -> Option<worker::WorkerConfig> {
        None
    }
}

/// A sender that only logs that a message went out (never its content): for deployments
/// with no provider configured, and for benchmarks.
#[derive(Clone, Copy, Debug, Default)]
pub struct LogSender;

impl Sender for LogSender {
    fn channel(&self) -> Channel {
        Channel::Email
    }

    fn send<'a>(&'a self, message: &'a OutboxMessage) -> BoxFuture<'a, Result<Sent, SendError>> {
        Box::pin(async move {
            tracing::info!(
                id = %message.id,
                kind = message.kind.as_str(),
                to = %crate::message::mask(&message.to),
                "message delivered (log sender: not sent)"
            );
            Ok(Sent::default())
        })
    }
}

/// Each channel's worker wake-up.
#[derive(Debug)]
pub struct Wakes {
    by_channel: [std::sync::Arc<tokio::sync::Notify>; Channel::ALL.len()],
    /// The channels with a worker.
    channels: Channels,
}

impl Wakes {
    /// The wake-ups of the workers of `channels`.
    pub fn new(channels: Channels) -> Self {
        Self {
            by_channel: Default::default(),
            channels,
        }
    }

    /// The channels with a worker.
    pub fn channels(&self) -> Channels {
        self.channels
    }

    /// The wake-up of `channel`'s worker.
    pub fn of(&self, channel: Channel) -> std::sync::Arc<tokio::sync::Notify> {
        self.by_channel[Self::index(channel)].clone()
    }

    /// Wakes `channel`'s worker (deliveries were written for it).
    pub fn wake(&self, channel: Channel) {
        self.by_channel[Self::index(channel)].notify_one();
    }

    fn index(channel: Channel) -> usize {
        usize::from(channel.code() - 1)
    }
}

/// A delivery's next state after an attempt, `now`: sent, retried later with backoff and
/// jitter (`jitter` in [0, 1): a random fraction), or dead.
pub fn after_attempt(
    delivery: &Delivery,
    outcome: Result<Sent, SendError>,
    config: &worker::WorkerConfig,
    jitter: f64,
    now: DateTime<Utc>,
) -> Delivery {
    let mut next = delivery.clone();
    next.attempts += 1;
    next.updated_at = now;
    match outcome {
        Ok(sent) => {
            next.status = DeliveryStatus::Sent;
            next.provider_id = sent.provider_id;
            next.last_error = None;
        }
        Err(SendError::Permanent(e)) => {
            next.status = DeliveryStatus::Failed;
            next.last_error = Some(e);
        }
        Err(SendError::Obsolete(why)) => {
            next.status = DeliveryStatus::Skipped;
            next.last_error = Some(why);
        }
        Err(SendError::Retry(e)) => {
            next.last_error = Some(e);
            if next.attempts >= config.attempts_max {
                next.status = DeliveryStatus::Failed;
            } else {
                let wait = backoff(config, next.attempts, jitter);
                next.due_at = now + chrono::Duration::from_std(wait).unwrap_or_default();
            }
        }
    }
    next
}

/// The wait before attempt `attempts + 1`: `retry_after` doubled per failure up to
/// `retry_max`, then spread over [50 %, 100 %] of that by `jitter`, so deliveries that failed
/// together (a server down) do not all come back in the same instant.
pub fn backoff(config: &worker::WorkerConfig, attempts: u32, jitter: f64) -> std::time::Duration {
    let doubled = config
        .retry_after
        .saturating_mul(1u32 << attempts.saturating_sub(1).min(20));
    let capped = doubled.min(config.retry_max);
    capped.mul_f64(0.5 + 0.5 * jitter.clamp(0.0, 1.0))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn config() -> worker::WorkerConfig {
        worker::WorkerConfig {
            retry_after: Duration::from_secs(1),
            retry_max: Duration::from_secs(60),
            attempts_max: 4,
            ..worker::WorkerConfig::default()
        }
    }

    fn message() -> OutboxMessage {
        OutboxMessage::new(
            "ann@example.com",
            None,
            MessageKind::VerifyEmail {
                token: "t".into(),
                expires_at: Utc::now(),
            },
            Utc::now(),
        )
    }

    #[test]
    fn a_hold_asks_for_payment_after_the_delay_but_no_later_than_halfway() {
        use crate::pool::payment::payment_due_at;
        let at = chrono::DateTime::from_timestamp_millis(Utc::now().timestamp_millis()).unwrap();
        let secs = |s: i64| chrono::Duration::seconds(s);
        let after = std::time::Duration::from_secs(120);
        // A 10-minute hold: two minutes in.
        assert_eq!(payment_due_at(at, at + secs(600), after), at + secs(120));
        // A 3-minute hold: halfway, 90 s in.
        assert_eq!(payment_due_at(at, at + secs(180), after), at + secs(90));
        // A hold already over (a clock step): at once, never before it was made.
        assert_eq!(payment_due_at(at, at - secs(5), after), at);
        // Same registration, same message; another registration, another.
        let (event, reg) = (
            crate::ids::EventId::new(),
            crate::ids::RegistrationId::new(),
        );
        let one = attendee_message(
            AttendeeNotice::PaymentDue,
            "a@example.com",
            None,
            event,
            reg,
            at,
        );
        assert_eq!(
            one.id,
            attendee_message(
                AttendeeNotice::PaymentDue,
                "a@example.com",
                None,
                event,
                reg,
                at
            )
            .id
        );
        let other = crate::ids::RegistrationId::new();
        assert_ne!(
            one.id,
            attendee_message(
                AttendeeNotice::PaymentDue,
                "a@example.com",
                None,
                event,
                other,
                at
            )
            .id
        );
    }

    #[test]
    fn accounts_get_messages_in_app_too_but_never_a_single_use_token() {
        let now = Utc::now();
        let user = Some(crate::ids::UserId::new());
        let channels = |m: &OutboxMessage| -> Vec<Channel> {
            plan(m, now, Channels::default())
                .iter()
                .map(|d| d.channel)
                .collect()
        };
        let mut verify = message();
        assert_eq!(channels(&verify), [Channel::Email]);
        verify.user_id = user;
        assert_eq!(
            channels(&verify),
            [Channel::Email],
            "a token stays in the mail"
        );
        let event_id = crate::ids::EventId::new();
        let registration_id = crate::ids::RegistrationId::new();
        let confirmed = confirmation_message("a@example.com", user, event_id, registration_id, now);
        assert_eq!(channels(&confirmed), [Channel::Email, Channel::InApp]);
        let guest = confirmation_message("a@example.com", None, event_id, registration_id, now);
        assert_eq!(channels(&guest), [Channel::Email]);
        // SMS only where a worker sends it.
        let all = Channels::of(Channel::ALL);
        let planned: Vec<Channel> = plan(&confirmed, now, all)
            .iter()
            .map(|d| d.channel)
            .collect();
        assert_eq!(planned, [Channel::Email, Channel::InApp, Channel::Sms]);
        let mail_only = Channels::of([Channel::Email]);
        assert_eq!(plan(&confirmed, now, mail_only).len(), 1);
    }

    #[test]
    fn backoff_doubles_up_to_its_cap_and_jitter_spreads_it_over_the_upper_half() {
        let c = config();
        assert_eq!(backoff(&c, 1, 1.0), Duration::from_secs(1));
        assert_eq!(backoff(&c, 3, 1.0), Duration::from_secs(4));
        assert_eq!(backoff(&c, 30, 1.0), Duration::from_secs(60));
        assert_eq!(backoff(&c, 3, 0.0), Duration::from_secs(2));
        for attempts in 1..40 {
            let b = backoff(&c, attempts, 0.37);
            assert!(b >= Duration::from_millis(500) && b <= Duration::from_secs(60));
        }
    }

    #[test]
    fn a_failing_delivery_is_retried_until_its_attempts_run_out_then_dead() {
        let c = config();
        let now = Utc::now();
        let mut d = Delivery::queued(&message(), Channel::Email, now);
        for attempt in 1..c.attempts_max {
            d = after_attempt(&d, Err(SendError::Retry("down".into())), &c, 1.0, now);
            assert_eq!(d.status, DeliveryStatus::Queued, "attempt {attempt}");
            assert!(d.due_at > now);
        }
        d = after_attempt(&d, Err(SendError::Retry("down".into())), &c, 1.0, now);
        assert_eq!(d.status, DeliveryStatus::Failed);
        assert_eq!(d.attempts, c.attempts_max);
        assert_eq!(d.last_error.as_deref(), Some("down"));
    }

    #[test]
    fn a_permanent_refusal_is_dead_at_once_and_a_success_keeps_the_providers_id() {
        let c = config();
        let now = Utc::now();
        let d = Delivery::queued(&message(), Channel::Email, now);
        let dead = after_attempt(&d, Err(SendError::Permanent("550".into())), &c, 0.5, now);
        assert_eq!((dead.status, dead.attempts), (DeliveryStatus::Failed, 1));
        let sent = Sent {
            provider_id: Some("q1".into()),
        };
        let ok = after_attempt(&d, Ok(sent), &c, 0.5, now);
        assert_eq!(ok.status, DeliveryStatus::Sent);
        assert_eq!(ok.provider_id.as_deref(), Some("q1"));
    }

    #[test]
    fn a_confirmation_has_one_id_per_registration_in_creation_order() {
        let user = None;
        let event = crate::ids::EventId(Uuid::now_v7());
        let reg = crate::ids::RegistrationId(Uuid::now_v7());
        let at = Utc::now();
        let a = confirmation_message("a@example.com", user, event, reg, at);
        let b = confirmation_message("a@example.com", user, event, reg, at);
        assert_eq!(a.id, b.id);
        let other = crate::ids::RegistrationId(Uuid::now_v7());
        let later = confirmation_message(
            "a@example.com",
            user,
            event,
            other,
            at + chrono::Duration::milliseconds(1),
        );
        assert_ne!(a.id, later.id);
        assert!(a.id < later.id);
    }
}
