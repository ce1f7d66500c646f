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

use super::{PoolEvent, PoolOutcome, PoolState, millis_to_time};
use crate::error::DomainError;
use crate::ids::{RegistrationId, TicketTypeId, UserId, WaitlistEntryId};
use crate::model::{Attendee, EventStatus};
use chrono::{DateTime, Duration, Utc};
use serde::{Deserialize, Serialize};
use std::collections::VecDeque;

/// Waiting entries per pool at most.
pub const WAITLIST_MAX: usize = 10_000;

/// A place on a waiting list.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct WaitlistEntry {
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
    /// Set by the pool when it decides the join (what the caller sent is overwritten).
    #[serde(with = "chrono::serde::ts_milliseconds")]
    pub joined_at: DateTime<Utc>,
    /// The ticket type's end of sales: no offer from then on (the place is dropped).
    #[serde(default, with = "chrono::serde::ts_milliseconds_option")]
    pub sales_end: Option<DateTime<Utc>>,
    /// How VAT applies to the offer's price (none: joined before VAT was recorded).
    #[serde(default)]
    pub tax: Option<crate::pricing::TaxRule>,
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

impl PoolState {
    /// Offers free seats to waiting entries, in joining order, each that fits.
    pub(super) fn offer_freed(&mut self, now: DateTime<Utc>, events: &mut Vec<PoolEvent>) {
        loop {
            let available = self.counts().available();
            if available == 0
                || self
                    .waitlist
                    .smallest()
                    .is_none_or(|q| u32::from(q) > available)
            {
                return;
            }
            // Places whose ticket type's sales ended get nothing; they leave the line.
            if let Some(gone) = self
                .waitlist
                .first_fitting(|e| e.sales_end.is_some_and(|end| now >= end))
            {
                let entry_id = gone.id;
                self.emit(events, PoolEvent::WaitlistLeft { entry_id, at: now });
                continue;
            }
            let fits = |e: &WaitlistEntry| {
                u32::from(e.quantity) <= available
                    && e.max_per_account.is_none_or(|max| {
                        self.live_seats_of(e.user_id, e.ticket_type_id) + u32::from(e.quantity)
                            <= u32::from(max)
                    })
            };
            let Some(entry) = self.waitlist.first_fitting(fits).cloned() else {
                return;
            };
            let ttl = Duration::seconds(i64::from(entry.offer_ttl_secs));
            let price = crate::pricing::quote(
                entry.unit_price_minor,
                &entry.currency,
                entry.quantity,
                None,
            )
            .taxed(entry.tax);
            self.emit(
                events,
                PoolEvent::WaitlistOffered {
                    registration_id: RegistrationId::new(),
                    event_id: self.event_id,
                    entry_id: entry.id,
                    user_id: entry.user_id,
                    ticket_type_id: entry.ticket_type_id,
                    quantity: entry.quantity,
                    attendee: entry.attendee,
                    price,
                    expires_at: millis_to_time((now + ttl).timestamp_millis()),
                    at: now,
                },
            );
        }
    }

    pub(super) fn decide_join_waitlist(
        &mut self,
        mut entry: WaitlistEntry,
        event_status: EventStatus,
        now: DateTime<Utc>,
        events: &mut Vec<PoolEvent>,
    ) -> Result<PoolOutcome, DomainError> {
        if event_status != EventStatus::Published {
            return Err(DomainError::EventNotOpen(event_status));
        }
        if self.waitlist.waits(entry.user_id, entry.ticket_type_id) {
            return Err(DomainError::AlreadyWaiting);
        }
        // A place the account's limit would never let it take is refused now.
        if let Some(max) = entry.max_per_account {
            let held = self.live_seats_of(entry.user_id, entry.ticket_type_id);
            if held + u32::from(entry.quantity) > u32::from(max) {
                return Err(DomainError::AccountLimitReached { max, held });
            }
        }
        let available = self.counts().available();
        if u32::from(entry.quantity) <= available {
            return Err(DomainError::NotSoldOut { available });
        }
        if self.waitlist.len() >= WAITLIST_MAX {
            return Err(DomainError::LimitReached("waiting list"));
        }
        entry.joined_at = now;
        let entry_id = entry.id;
        self.emit(
            events,
            PoolEvent::WaitlistJoined {
                event_id: self.event_id,
                entry,
                at: now,
            },
        );
        Ok(PoolOutcome::Waitlisted {
            entry_id,
            position: self.waitlist.len(),
        })
    }

    pub(super) fn decide_leave_waitlist(
        &mut self,
        entry_id: WaitlistEntryId,
        user_id: UserId,
        now: DateTime<Utc>,
        events: &mut Vec<PoolEvent>,
    ) -> Result<PoolOutcome, DomainError> {
        match self.waitlist.position(entry_id) {
            Some((_, e)) if e.user_id == user_id => {
                self.emit(events, PoolEvent::WaitlistLeft { entry_id, at: now });
                Ok(PoolOutcome::LeftWaitlist)
            }
            _ => Err(DomainError::WaitlistEntryNotFound),
        }
    }

    pub(super) fn waitlist_position(
        &self,
        entry_id: WaitlistEntryId,
    ) -> Result<PoolOutcome, DomainError> {
        self.waitlist
            .position(entry_id)
            .map(|(position, _)| PoolOutcome::Waitlisted { entry_id, position })
            .ok_or(DomainError::WaitlistEntryNotFound)
    }

    pub(super) fn apply_waitlist_joined(&mut self, entry: &WaitlistEntry) {
        self.waitlist.push(entry.clone());
    }

    pub(super) fn apply_waitlist_left(&mut self, entry_id: WaitlistEntryId) {
        self.waitlist
            .remove(entry_id)
            .expect("leave of an entry not waiting");
    }

    pub(super) fn apply_waitlist_offered(&mut self, event: &PoolEvent) {
        let PoolEvent::WaitlistOffered {
            registration_id,
            entry_id,
            user_id,
            ticket_type_id,
            quantity,
            expires_at,
            price,
            ..
        } = event
        else {
            unreachable!("apply_waitlist_offered of {event:?}");
        };
        self.waitlist
            .remove(*entry_id)
            .expect("offer to an entry not waiting");
        self.hold_seats(
            *registration_id,
            super::SeatsHold {
                quantity: *quantity,
                account: Some((*user_id, *ticket_type_id)),
                expires_at: *expires_at,
                total_minor: price.total_minor,
                currency: &price.currency,
            },
            None,
            None,
        );
    }
}
