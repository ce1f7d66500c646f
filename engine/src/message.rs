//! Messages to people (what the outbox holds and a sink delivers): a value type with no
//! behaviour beyond its constructor, so the journal port and the outbox both use it without
//! depending on each other.

use crate::ids::UserId;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// A message waiting to be delivered.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct OutboxMessage {
    /// Its id (UUIDv7 from the system clock: the outbox is delivered in creation order).
    pub id: Uuid,
    /// The recipient's address.
    pub to: String,
    /// The account it concerns.
    pub user_id: Option<UserId>,
    /// What to send.
    pub kind: MessageKind,
    /// When it was queued.
    #[serde(with = "chrono::serde::ts_milliseconds")]
    pub created_at: DateTime<Utc>,
}

/// The kinds of message, with what a template needs to render each.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MessageKind {
    /// Confirm the address: carries the single-use verification token.
    VerifyEmail {
        /// The token (only its digest is stored with the account).
        token: String,
        /// When it stops working.
        #[serde(with = "chrono::serde::ts_milliseconds")]
        expires_at: DateTime<Utc>,
    },
    /// A registration's tickets (sent again on an organizer's request).
    Tickets {
        /// The event's title.
        event_title: String,
        registration_id: crate::ids::RegistrationId,
        /// Each ticket's printed number and signed code.
        tickets: Vec<TicketLine>,
    },
    /// A registration is confirmed: the attendee's tickets (rendered when sent, from the
    /// registration as it then is).
    Confirmed {
        event_id: crate::ids::EventId,
        registration_id: crate::ids::RegistrationId,
    },
    /// Choose a new password: carries the single-use reset token.
    ResetPassword {
        /// The token (only its digest is stored with the account).
        token: String,
        /// When it stops working.
        #[serde(with = "chrono::serde::ts_milliseconds")]
        expires_at: DateTime<Utc>,
    },
    /// Seats came back and are reserved for a waiting-list entry until `expires_at`: claim
    /// them by confirming the registration.
    WaitlistOffer {
        /// The registration holding the seats.
        registration_id: crate::ids::RegistrationId,
        /// Seats.
        quantity: u16,
        /// When the offer runs out (the seats then go to the next person waiting).
        #[serde(with = "chrono::serde::ts_milliseconds")]
        expires_at: DateTime<Utc>,
    },
    /// A payment is being refunded on its own (it came after the seats were gone, or twice).
    PaymentRefunded {
        registration_id: crate::ids::RegistrationId,
        /// The refund, in minor units of `currency`.
        amount_minor: i64,
        currency: String,
        cause: RefundCause,
    },
    /// A bank transfer is still due: what to pay, the reference to quote, and until when the
    /// seats are held.
    PaymentReminder {
        registration_id: crate::ids::RegistrationId,
        amount_minor: i64,
        currency: String,
        /// The structured creditor reference (`RF…`) to quote, if the payment has one.
        reference: Option<String>,
        /// The transfer's deadline: the seats are released then.
        #[serde(with = "chrono::serde::ts_milliseconds")]
        deadline: DateTime<Utc>,
    },
    /// The event was canceled: the registration (or waiting-list place) ended with it, and
    /// its tickets, if any, no longer admit anyone.
    EventCanceled {
        event_id: crate::ids::EventId,
        /// The event's title.
        event_title: String,
        /// The registration ended (`None`: a place on the waiting list).
        registration_id: Option<crate::ids::RegistrationId>,
        /// Whether it had tickets (now revoked).
        tickets_revoked: bool,
    },
    /// The event is coming up: a reminder to a confirmed registration's attendee, scheduled
    /// `offset_secs` before the start (rendered when sent, from the registration and the
    /// event as they then are).
    EventReminder {
        event_id: crate::ids::EventId,
        registration_id: crate::ids::RegistrationId,
        offset_secs: u32,
    },
    /// A confirmed registration was canceled (by its buyer or an organizer; not with its
    /// event, which has its own message): its tickets no longer admit anyone, and a refund,
    /// if one is due, is on its way (read when sent).
    RegistrationCanceled {
        event_id: crate::ids::EventId,
        registration_id: crate::ids::RegistrationId,
    },
    /// The event's time or place changed (`changed`: `starts_at`, `ends_at`, `venue`); told
    /// to each confirmed registration's attendee with the event as it then is (version
    /// `version`).
    EventChanged {
        event_id: crate::ids::EventId,
        registration_id: crate::ids::RegistrationId,
        version: u64,
        changed: Vec<String>,
    },
    /// An event manager's message to every attendee (rendered when sent, from the stored
    /// broadcast; see `notify::broadcasts`).
    Broadcast {
        event_id: crate::ids::EventId,
        registration_id: crate::ids::RegistrationId,
        broadcast_id: Uuid,
    },
    /// A priced hold is still unpaid a while after it was made: what is due, until when the
    /// seats are held, and the link to pay (read when sent, from the registration as it then
    /// is; not sent if by then it is paid, a payment is under way, or the hold ended).
    PaymentDue {
        event_id: crate::ids::EventId,
        registration_id: crate::ids::RegistrationId,
    },
    /// A delivery to an organizer's webhook endpoint (what it says is in its log entry).
    Webhook {
        endpoint_id: Uuid,
        kind: crate::webhooks::HookType,
    },
}

/// Why money went back without anyone asking.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RefundCause {
    /// The payment arrived after the hold ended and its seats were gone.
    LatePayment,
    /// The registration was paid twice.
    DoublePayment,
}

/// One ticket in a message.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TicketLine {
    /// The printed number.
    pub number: String,
    /// The signed code (what its QR carries).
    pub code: String,
}

impl MessageKind {
    /// The registration the message is about, if any.
    pub fn registration_id(&self) -> Option<crate::ids::RegistrationId> {
        match self {
            MessageKind::Tickets {
                registration_id, ..
            }
            | MessageKind::Confirmed {
                registration_id, ..
            }
            | MessageKind::WaitlistOffer {
                registration_id, ..
            }
            | MessageKind::PaymentRefunded {
                registration_id, ..
            }
            | MessageKind::PaymentReminder {
                registration_id, ..
            }
            | MessageKind::EventReminder {
                registration_id, ..
            }
            | MessageKind::Broadcast {
                registration_id, ..
            }
            | MessageKind::EventChanged {
                registration_id, ..
            }
            | MessageKind::RegistrationCanceled {
                registration_id, ..
            }
            | MessageKind::PaymentDue {
                registration_id, ..
            } => Some(*registration_id),
            MessageKind::EventCanceled {
                registration_id, ..
            } => *registration_id,
            MessageKind::VerifyEmail { .. }
            | MessageKind::ResetPassword { .. }
            | MessageKind::Webhook { .. } => None,
        }
    }

    /// Whether it is news about an event the attendee registered for (a reminder, a
    /// manager's broadcast): the accounts' `reminders` preferences decide its channels, and
    /// mail carries a one-click unsubscribe; every other kind is transactional.
    pub fn is_event_news(&self) -> bool {
        matches!(
            self,
            MessageKind::EventReminder { .. } | MessageKind::Broadcast { .. }
        )
    }

    /// The kind's name (metrics, logs).
    pub fn as_str(&self) -> &'static str {
        match self {
            MessageKind::VerifyEmail { .. } => "verify_email",
            MessageKind::ResetPassword { .. } => "reset_password",
            MessageKind::Tickets { .. } => "tickets",
            MessageKind::Confirmed { .. } => "confirmed",
            MessageKind::WaitlistOffer { .. } => "waitlist_offer",
            MessageKind::EventCanceled { .. } => "event_canceled",
            MessageKind::PaymentRefunded { .. } => "payment_refunded",
            MessageKind::PaymentReminder { .. } => "payment_reminder",
            MessageKind::EventReminder { .. } => "event_reminder",
            MessageKind::Broadcast { .. } => "broadcast",
            MessageKind::EventChanged { .. } => "event_changed",
            MessageKind::RegistrationCanceled { .. } => "registration_canceled",
            MessageKind::PaymentDue { .. } => "payment_due",
            MessageKind::Webhook { .. } => "webhook",
        }
    }
}

impl OutboxMessage {
    /// A new message to `to`, created `now`.
    pub fn new(to: &str, user_id: Option<UserId>, kind: MessageKind, now: DateTime<Utc>) -> Self {
        Self {
            // Ordered by creation within the process (the outbox is delivered in id order).
            id: Uuid::now_v7(),
            to: to.to_owned(),
            user_id,
            kind,
            created_at: now,
        }
    }

    /// A message created `at` whose id derives from `input` and `at` (built again from the
    /// same facts, it is the same message: repeats are recognised).
    pub fn derived(
        input: &[u8],
        to: &str,
        user_id: Option<UserId>,
        kind: MessageKind,
        at: DateTime<Utc>,
    ) -> Self {
        Self {
            id: crate::ids::derived_id(at, input),
            to: to.to_owned(),
            user_id,
            kind,
            created_at: at,
        }
    }

    /// A message of `kind` whose id derives from its registration and `tag` (one of its kind
    /// per registration) and `at`: writing it again writes the same rows.
    pub fn about_registration(
        tag: &[u8],
        to: &str,
        user_id: Option<UserId>,
        kind: MessageKind,
        at: DateTime<Utc>,
    ) -> Self {
        let mut input = Vec::with_capacity(16 + tag.len());
        if let Some(id) = kind.registration_id() {
            input.extend_from_slice(id.as_bytes());
        }
        input.extend_from_slice(tag);
        Self::derived(&input, to, user_id, kind, at)
    }
}

/// `alice@example.com` → `a***@example.com`: enough to tell messages apart in a log.
pub fn mask(address: &str) -> String {
    match address.split_once('@') {
        Some((local, domain)) => {
            let first: String = local.chars().take(1).collect();
            format!("{first}***@{domain}")
        }
        None => "***".into(),
    }
}
