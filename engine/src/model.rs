//! Domain records and commands of events and ticket types, with their validation.
//!
//! Validation lives in the constructors (`NewEvent::validate`, ...): a command that
//! reaches an actor is already known to be well-formed, and every problem of a command
//! is reported at once as a list of `FieldError`s.
//!
//! This file holds the records (`EventRecord`, `TicketType`, `PoolDef`, `EventRole`) and the
//! limits; by topic: `commands` (what creates and changes them), `stream` (the event stream's
//! events and how a record is built from them), `checkin` (check-in lists), `attendee`, and
//! `validation` (the checks commands are made of).

use crate::error::DomainError;
use crate::ids::{EventId, PoolId, TicketTypeId, UserId};
pub use crate::values::{EventStatus, IdempotencyToken, RegistrationStatus};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

mod attendee;
mod checkin;
mod commands;
mod stream;
mod validation;

pub use attendee::{Attendee, normalize_email};
pub use checkin::{CHECKIN_LISTS_MAX, CheckInList, LIST_GATES_MAX};
pub use commands::{
    BankTransferSettings, EventBranding, EventPatch, InvoiceSettings, LOGO_URL_LEN_MAX, NewEvent,
    NewTicketType, REMINDER_OFFSET_SECS, REMINDERS_MAX, SeatSource, valid_locale,
};
pub use stream::EventEvent;
pub(crate) use validation::check_text;
pub use validation::{event_time_window, is_stray_control};

/// Longest title of an event or name of a ticket type, in characters.
pub const TITLE_LEN_MAX: usize = 200;
/// Longest event description, in characters.
pub const DESCRIPTION_LEN_MAX: usize = 10_000;
/// Longest venue, category, gate or attendee name, in characters.
pub const SHORT_TEXT_LEN_MAX: usize = 200;
/// Longest e-mail address (RFC 5321 path limit).
pub const EMAIL_LEN_MAX: usize = 254;
/// Shortest and longest hold TTL an event may configure, in seconds.
pub const HOLD_TTL_SECS_MIN: u32 = 1;
/// Upper bound of a hold TTL: one day.
pub const HOLD_TTL_SECS_MAX: u32 = 86_400;
/// Largest capacity of one pool.
pub const POOL_CAPACITY_MAX: u32 = 10_000_000;
/// Largest `max_per_order` of a ticket type.
pub const PER_ORDER_MAX: u16 = 100;
/// Largest price of one ticket in minor units (10 billion major units of a 2-decimal currency).
pub const PRICE_MINOR_MAX: i64 = 1_000_000_000_000;
/// Earliest time an event (or a ticket type's sales window) may name: years before are typos
/// or probes (year 0, the Unix epoch), never a real event.
pub const EVENT_TIME_MIN: &str = "2000-01-01T00:00:00Z";
/// Latest: far enough for any real booking, and every time keeps a four-digit year (RFC 3339
/// has no room for year 10000).
pub const EVENT_TIME_MAX: &str = "2199-12-31T23:59:59Z";

/// A ticket type: what a buyer picks. It draws seats from one pool.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TicketType {
    pub id: TicketTypeId,
    /// Display name.
    pub name: String,
    /// Price of one seat in minor units of `currency`.
    pub price_minor: i64,
    /// ISO 4217 code.
    pub currency: String,
    /// The pool the seats come from.
    pub pool_id: PoolId,
    /// Most seats one registration may hold.
    pub max_per_order: u16,
    /// Most live seats (held + confirmed) one account may have of this ticket type.
    #[serde(default)]
    pub max_per_account: Option<u16>,
    /// When it was created.
    pub created_at: DateTime<Utc>,
    /// Fewest seats one registration may hold (default 1).
    #[serde(default = "one")]
    pub min_per_order: u16,
    /// No holds before (sales start).
    #[serde(default)]
    pub sales_start: Option<DateTime<Utc>>,
    /// No holds from then on (sales end).
    #[serde(default)]
    pub sales_end: Option<DateTime<Utc>>,
    /// VAT rate in basis points (1900 is 19 %), 0..=`VAT_RATE_BP_MAX`.
    #[serde(default)]
    pub vat_rate_bp: u16,
}

impl TicketType {
    /// How VAT applies to this ticket type's price in `event`.
    pub fn tax_rule(&self, event: &EventRecord) -> crate::pricing::TaxRule {
        crate::pricing::TaxRule {
            rate_bp: self.vat_rate_bp,
            included: event
                .invoicing
                .as_ref()
                .is_none_or(|i| i.prices_include_vat),
        }
    }
}

fn one() -> u16 {
    1
}

impl TicketType {
    /// Whether it may be bought at `now`, and if not, why.
    pub fn on_sale(&self, now: DateTime<Utc>) -> Result<(), DomainError> {
        if let Some(start) = self.sales_start
            && now < start
        {
            return Err(DomainError::NotOnSale {
                reason: "not_started",
                at: start,
            });
        }
        if let Some(end) = self.sales_end
            && now >= end
        {
            return Err(DomainError::NotOnSale {
                reason: "ended",
                at: end,
            });
        }
        Ok(())
    }
}

impl EventRecord {
    /// Whether `tt` may be bought at `now`: its own sales window, and never once the event
    /// has ended (a published event from the past sells nothing).
    pub fn on_sale(&self, tt: &TicketType, now: DateTime<Utc>) -> Result<(), DomainError> {
        tt.on_sale(now)?;
        if now >= self.ends_at {
            return Err(DomainError::NotOnSale {
                reason: "ended",
                at: self.ends_at,
            });
        }
        Ok(())
    }
}

/// A pool (quota) of seats.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PoolDef {
    pub id: PoolId,
    /// Seats it can give out in total (held + confirmed).
    pub capacity: u32,
}

/// The durable state of an event: written by its `EventActor`, read by queries.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct EventRecord {
    pub id: EventId,
    pub title: String,
    pub description: String,
    /// Where it happens.
    pub venue: Option<String>,
    /// A category for filtering (`music`, `conference`, ...).
    pub category: Option<String>,
    pub starts_at: DateTime<Utc>,
    /// After `starts_at`; nothing is sold from then on.
    pub ends_at: DateTime<Utc>,
    /// How long a hold lasts before it expires, in seconds.
    pub hold_ttl_secs: u32,
    /// Until then a buyer who cancels a paid registration is refunded in full.
    #[serde(default)]
    pub refund_until: Option<DateTime<Utc>>,
    /// Who bank transfers for this event pay, and their deadline (none: the server's).
    #[serde(default)]
    pub bank_transfer: Option<BankTransferSettings>,
    /// Who sells on its invoices, and whether its prices include VAT (none: the organizer's
    /// account name, prices gross).
    #[serde(default)]
    pub invoicing: Option<InvoiceSettings>,
    pub status: EventStatus,
    /// When it was created.
    pub created_at: DateTime<Utc>,
    /// When it last changed.
    pub updated_at: DateTime<Utc>,
    /// Ticket types, in creation order.
    pub ticket_types: Vec<TicketType>,
    /// Pools, in creation order.
    pub pools: Vec<PoolDef>,
    /// The sequence number of the last journaled event of its stream.
    pub version: u64,
    /// The account that created it (organizer or admin); it manages the event.
    #[serde(default)]
    pub owner: Option<UserId>,
    /// Accounts with a role in this event (co-organizers and scanning staff), sorted by id.
    #[serde(default)]
    pub members: Vec<(UserId, EventRole)>,
    /// Id of the event's current ticket-signing key (1, 2, ...): ticket codes are signed with
    /// it, and only codes signed with it are accepted; rotating it re-keys every ticket.
    #[serde(default = "first_ticket_key")]
    pub ticket_key: u8,
    /// Check-in lists (besides the default list: every ticket type, any gate, no re-entry).
    #[serde(default)]
    pub checkin_lists: Vec<CheckInList>,
    /// When attendees are reminded, in seconds before the start (none: the server's default;
    /// empty: never).
    #[serde(default)]
    pub reminder_offsets_secs: Option<Vec<u32>>,
    /// How its messages look.
    #[serde(default)]
    pub branding: Option<EventBranding>,
    /// The language of its messages to people who chose none.
    #[serde(default)]
    pub locale: Option<String>,
}

/// Most accounts with a role in one event.
pub const EVENT_MEMBERS_MAX: usize = 1_000;

fn first_ticket_key() -> u8 {
    1
}

/// A role an account holds in one event.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EventRole {
    /// Manages the event like its owner.
    Organizer,
    /// Checks tickets in at this event, nothing else.
    Staff,
}

impl EventRole {
    /// The wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            EventRole::Organizer => "organizer",
            EventRole::Staff => "staff",
        }
    }
}

impl EventRecord {
    /// The role `user` holds in this event, if any (the owner counts as an organizer).
    pub fn role_of(&self, user: UserId) -> Option<EventRole> {
        if self.owner == Some(user) {
            return Some(EventRole::Organizer);
        }
        self.members
            .binary_search_by_key(&user, |(u, _)| *u)
            .ok()
            .map(|i| self.members[i].1)
    }

    /// The ticket type with this id.
    pub fn ticket_type(&self, id: TicketTypeId) -> Option<&TicketType> {
        self.ticket_types.iter().find(|t| t.id == id)
    }

    /// The pool with this id.
    pub fn pool(&self, id: PoolId) -> Option<&PoolDef> {
        self.pools.iter().find(|p| p.id == id)
    }
}
