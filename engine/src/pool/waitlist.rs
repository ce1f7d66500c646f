//! The waiting list of a pool's ticket types, decided by the pool actor like its seats.
//!
//! - A signed-in user joins when the ticket type cannot be bought (fewer seats available than
//!   asked for). One place per account and ticket type.
//! - Whenever seats come back (a hold expires, a registration is canceled, a voucher's
//!   reservation ends), the pool offers them in the same actor turn: in joining order, each
//!   waiting entry that fits gets a hold reserved for its account with the entry's own offer
//!   expiry (`PoolEvent::WaitlistOffered`). General sale never sees those seats.
//! - An offer is claimed by confirming its registration. An unclaimed offer expires like any
//!   hold, and its seats go to the next entry in the same turn.
//! - A place whose ticket type's sales ended is dropped (`WaitlistLeft`) instead of offered.
//! - Entries that do not fit (more seats than are free) keep their place; a smaller entry
//!   behind them may be served first, so freed seats never wait unused.

use crate::ids::{TicketTypeId, UserId, WaitlistEntryId};
use crate::model::Attendee;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use std::collections::VecDeque;

/// Waiting entries per pool at most.
pub const WAITLIST_MAX: usize = 10_000;

/// A place on a waiting list.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct WaitlistEntry {
    /// Its id.
    pub id: WaitlistEntryId,
    /// Who waits.
    pub user_id: UserId,
    /// For which ticket type.
    pub ticket_type_id: TicketTypeId,
    /// Seats wanted (checked against the ticket type's order limits).
    pub quantity: u16,
    /// Who the seats are for.
    pub attendee: Attendee,
    /// The ticket type's price of one seat, for the offer's price.
    pub unit_price_minor: i64,
    /// The ticket type's currency.
    pub currency: String,
    /// The ticket type's per-account limit.
    pub max_per_account: Option<u16>,
    /// How long an offer stays reserved, in seconds.
    pub offer_ttl_secs: u32,
    /// When it joined.
    #[serde(with = "chrono::serde::ts_milliseconds")]
    pub joined_at: DateTime<Utc>,
    /// The ticket type's end of sales: no offer from then on (the place is dropped).
    #[serde(default, with = "chrono::serde::ts_milliseconds_option")]
    pub sales_end: Option<DateTime<Utc>>,
}

/// Waiting entries in joining order.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Waitlist {
    queue: VecDeque<WaitlistEntry>,
}

impl Waitlist {
    /// Entries waiting.
    pub fn len(&self) -> usize {
        self.queue.len()
    }

    /// Whether nobody waits.
    pub fn is_empty(&self) -> bool {
        self.queue.is_empty()
    }

    /// Whether `user` waits for `ticket_type`.
    pub fn waits(&self, user: UserId, ticket_type: TicketTypeId) -> bool {
        self.queue
            .iter()
            .any(|e| e.user_id == user && e.ticket_type_id == ticket_type)
    }

    /// The entry `id` and its place (1 = next).
    pub fn position(&self, id: WaitlistEntryId) -> Option<(usize, &WaitlistEntry)> {
        self.queue
            .iter()
            .enumerate()
            .find(|(_, e)| e.id == id)
            .map(|(i, e)| (i + 1, e))
    }

    /// Fewest seats any entry waits for.
    pub fn smallest(&self) -> Option<u16> {
        self.queue.iter().map(|e| e.quantity).min()
    }

    /// The first entry, in joining order, for which `fits` holds.
    pub fn first_fitting(&self, fits: impl Fn(&WaitlistEntry) -> bool) -> Option<&WaitlistEntry> {
        self.queue.iter().find(|e| fits(e))
    }

    pub(super) fn push(&mut self, entry: WaitlistEntry) {
        self.queue.push_back(entry);
    }

    pub(super) fn remove(&mut self, id: WaitlistEntryId) -> Option<WaitlistEntry> {
        let at = self.queue.iter().position(|e| e.id == id)?;
        self.queue.remove(at)
    }
}
