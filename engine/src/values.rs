//! Leaf value types: statuses, the idempotency token, a check-in list's rules and the gate
//! limit. They depend on nothing else in the crate but ids, so records, the pool, errors and
//! ports can all use them without importing each other.

use crate::ids::{CheckInListId, TicketTypeId};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// Longest gate name a scanner may send.
pub const GATE_LEN_MAX: usize = 64;

/// Lifecycle of an event: Draft → Published → Canceled | Completed. Draft → Canceled too.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EventStatus {
    /// Being prepared; not on sale.
    Draft,
    /// On sale and open for check-in.
    Published,
    /// Called off. Terminal.
    Canceled,
    /// Over. Terminal.
    Completed,
}

impl EventStatus {
    /// The status as its wire name.
    pub fn as_str(&self) -> &'static str {
        match self {
            EventStatus::Draft => "draft",
            EventStatus::Published => "published",
            EventStatus::Canceled => "canceled",
            EventStatus::Completed => "completed",
        }
    }
}

/// Lifecycle of a registration: Held → Confirmed | Expired | Canceled; Confirmed → Canceled.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RegistrationStatus {
    /// Seats reserved until `expires_at`.
    Held,
    /// Paid or otherwise confirmed; tickets issued.
    Confirmed,
    /// Canceled; seats returned to the pool.
    Canceled,
    /// The hold ran out; seats returned to the pool.
    Expired,
}

impl RegistrationStatus {
    /// The status as its wire name.
    pub fn as_str(&self) -> &'static str {
        match self {
            RegistrationStatus::Held => "held",
            RegistrationStatus::Confirmed => "confirmed",
            RegistrationStatus::Canceled => "canceled",
            RegistrationStatus::Expired => "expired",
        }
    }

    /// Parses a wire name.
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "held" => RegistrationStatus::Held,
            "confirmed" => RegistrationStatus::Confirmed,
            "canceled" => RegistrationStatus::Canceled,
            "expired" => RegistrationStatus::Expired,
            _ => return None,
        })
    }
}

/// A client's idempotency key and request, as digests (so state stays small).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct IdempotencyToken {
    /// Digest of the key (scoped by the caller, e.g. with the event id).
    pub key: [u8; 16],
    /// Digest of the request body: the same key with another body is refused.
    pub request: [u8; 16],
}

/// The rules of the list a scan is made on.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ListRules {
    /// The list; `None` is the event's default list.
    pub id: Option<CheckInListId>,
    /// Ticket types admitted (empty: all).
    pub ticket_types: Vec<TicketTypeId>,
    /// Gates it scans at (empty: any, or none named).
    pub gates: Vec<String>,
    /// Whether a ticket that exited may enter again.
    pub allow_reentry: bool,
    /// No admission before.
    pub opens_at: Option<DateTime<Utc>>,
    /// No admission after.
    pub closes_at: Option<DateTime<Utc>>,
}

impl ListRules {
    /// The event's default list.
    pub fn default_list() -> Self {
        Self {
            id: None,
            ticket_types: Vec::new(),
            gates: Vec::new(),
            allow_reentry: false,
            opens_at: None,
            closes_at: None,
        }
    }
}

/// A boxed future, for the object-safe ports whose adapters do I/O (the outbox's sink, payment
/// providers).
pub type BoxFuture<'a, T> = std::pin::Pin<Box<dyn std::future::Future<Output = T> + Send + 'a>>;
