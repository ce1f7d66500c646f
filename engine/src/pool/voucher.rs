//! Vouchers, decided by the pool that sells their seats, like the seats themselves: a
//! voucher's uses are counted by one actor, so two buyers cannot both take its last use.
//! That is why every ticket type of a voucher must share one pool.
//!
//! - A use is a seat: a hold of 3 seats with a voucher takes 3 of its `max_uses`. Uses are
//!   taken with the hold and given back when the hold expires or the registration is
//!   canceled (so `uses` always equals the seats of live registrations that redeemed it).
//! - A voucher that reserves seats sets aside its remaining uses from the pool: general sale
//!   cannot take them, its holders can. The reservation ends with its last use or when it is
//!   deactivated. A pool never has `held + confirmed + reserved > capacity`.
//! - A deactivated voucher cannot be redeemed again; registrations made with it keep their
//!   price. A reserving voucher is deactivated by its pool when its `valid_until` passes, so
//!   seats it can no longer sell go back to general sale (and to the waiting list).

use super::{PoolEvent, PoolOutcome, PoolState};
use crate::error::DomainError;
use crate::ids::TicketTypeId;
use crate::pricing::Discount;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeSet, HashMap};

/// Vouchers per pool at most.
pub const VOUCHERS_PER_POOL_MAX: usize = 10_000;
/// Seats one voucher may cover at most.
pub const VOUCHER_USES_MAX: u32 = 1_000_000;
/// Shortest and longest voucher code.
pub const VOUCHER_CODE_LEN: std::ops::RangeInclusive<usize> = 4..=32;

/// What an organizer decided a voucher does.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct VoucherDef {
    /// The code buyers type: upper case, `A-Z 0-9 - _`; unique in its event.
    pub code: String,
    /// Ticket types it may be redeemed for (all in this pool; at least one).
    pub ticket_types: Vec<TicketTypeId>,
    /// Its reduction of the unit price (`None`: an access code at the full price).
    pub discount: Option<Discount>,
    /// Seats it may be used for in total.
    pub max_uses: u32,
    /// Not redeemable before.
    #[serde(default, with = "chrono::serde::ts_milliseconds_option")]
    pub valid_from: Option<DateTime<Utc>>,
    /// Not redeemable from then on.
    #[serde(default, with = "chrono::serde::ts_milliseconds_option")]
    pub valid_until: Option<DateTime<Utc>>,
    /// Whether its remaining uses are set aside from the pool.
    pub reserve_seats: bool,
}

impl VoucherDef {
    /// Why a hold of `ticket_type` at `now` may not redeem it, if it may not.
    pub fn refusal(&self, ticket_type: TicketTypeId, now: DateTime<Utc>) -> Option<&'static str> {
        if self.valid_from.is_some_and(|from| now < from) {
            Some("not_yet_valid")
        } else if self.valid_until.is_some_and(|until| now >= until) {
            Some("expired")
        } else if !self.ticket_types.contains(&ticket_type) {
            Some("wrong_ticket_type")
        } else {
            None
        }
    }
}

/// A voucher and how much of it is used.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Voucher {
    /// What it does.
    pub def: VoucherDef,
    /// Seats of live (held or confirmed) registrations that redeemed it.
    pub uses: u32,
    /// Whether it may still be redeemed.
    pub active: bool,
}

impl Voucher {
    /// Uses left.
    pub fn remaining(&self) -> u32 {
        self.def.max_uses - self.uses
    }

    /// Seats it sets aside from the pool now.
    pub fn reserved(&self) -> u32 {
        if self.active && self.def.reserve_seats {
            self.remaining()
        } else {
            0
        }
    }
}

/// A pool's vouchers (never removed: registrations refer to them by index).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Vouchers {
    list: Vec<Voucher>,
    /// Code → index; derived.
    #[serde(skip)]
    by_code: HashMap<String, u32>,
    /// Seats set aside by active reserving vouchers; derived.
    #[serde(skip)]
    reserved: u32,
    /// `valid_until` (ms) of active reserving vouchers, with their index; derived.
    #[serde(skip)]
    deadlines: BTreeSet<(i64, u32)>,
}

impl Vouchers {
    /// The index of `code`.
    pub fn index(&self, code: &str) -> Option<u32> {
        self.by_code.get(code).copied()
    }

    /// The voucher at `index`.
    pub fn get(&self, index: u32) -> &Voucher {
        &self.list[index as usize]
    }

    /// The voucher `code`.
    pub fn by_code(&self, code: &str) -> Option<&Voucher> {
        self.index(code).map(|i| self.get(i))
    }

    /// How many there are.
    pub fn len(&self) -> usize {
        self.list.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.list.is_empty()
    }

    /// Seats set aside by active reserving vouchers.
    pub fn reserved(&self) -> u32 {
        self.reserved
    }

    /// The earliest end (ms) of an active reserving voucher's validity.
    pub fn next_deadline(&self) -> Option<i64> {
        self.deadlines.first().map(|(ms, _)| *ms)
    }

    /// Active reserving vouchers whose validity ended at or before `now_ms`.
    pub fn due(&self, now_ms: i64) -> Vec<u32> {
        self.deadlines
            .iter()
            .take_while(|(ms, _)| *ms <= now_ms)
            .map(|(_, i)| *i)
            .collect()
    }

    fn deadline(voucher: &Voucher) -> Option<i64> {
        (voucher.active && voucher.def.reserve_seats)
            .then_some(voucher.def.valid_until?.timestamp_millis())
    }

    /// Adds a new voucher (no uses, active).
    pub(super) fn add(&mut self, def: VoucherDef) {
        let index = self.list.len() as u32;
        let voucher = Voucher {
            def,
            uses: 0,
            active: true,
        };
        self.reserved += voucher.reserved();
        if let Some(ms) = Self::deadline(&voucher) {
            self.deadlines.insert((ms, index));
        }
        let previous = self.by_code.insert(voucher.def.code.clone(), index);
        assert!(
            previous.is_none(),
            "voucher {} created twice",
            voucher.def.code
        );
        self.list.push(voucher);
    }

    /// Takes `seats` uses of the voucher at `index`.
    pub(super) fn take(&mut self, index: u32, seats: u32) {
        self.update(index, |v| {
            v.uses += seats;
            assert!(v.uses <= v.def.max_uses, "voucher {} overused", v.def.code);
        });
    }

    /// Gives `seats` uses of the voucher at `index` back.
    pub(super) fn release(&mut self, index: u32, seats: u32) {
        self.update(index, |v| v.uses -= seats);
    }

    /// Deactivates the voucher at `index`.
    pub(super) fn deactivate(&mut self, index: u32) {
        if let Some(ms) = Self::deadline(&self.list[index as usize]) {
            self.deadlines.remove(&(ms, index));
        }
        self.update(index, |v| v.active = false);
    }

    fn update(&mut self, index: u32, change: impl FnOnce(&mut Voucher)) {
        let voucher = &mut self.list[index as usize];
        self.reserved -= voucher.reserved();
        change(voucher);
        self.reserved += voucher.reserved();
    }

    /// Rebuilds the derived index and reservation after decoding, with the uses counted from
    /// the live registrations (`uses[i]`: seats of live registrations that redeemed voucher
    /// `i`); an error if the stored uses disagree.
    pub(super) fn restore(&mut self, uses: &HashMap<u32, u32>) -> Result<(), String> {
        if let Some(bad) = uses.keys().find(|i| **i as usize >= self.list.len()) {
            return Err(format!(
                "a registration redeemed voucher {bad}, which does not exist"
            ));
        }
        self.by_code.clear();
        self.reserved = 0;
        self.deadlines.clear();
        for (i, voucher) in self.list.iter().enumerate() {
            let counted = uses.get(&(i as u32)).copied().unwrap_or(0);
            if counted != voucher.uses {
                return Err(format!(
                    "voucher {} has {} uses, its registrations {counted}",
                    voucher.def.code, voucher.uses
                ));
            }
            self.by_code.insert(voucher.def.code.clone(), i as u32);
            self.reserved += voucher.reserved();
            if let Some(ms) = Self::deadline(voucher) {
                self.deadlines.insert((ms, i as u32));
            }
        }
        Ok(())
    }

    /// Every voucher, in creation order.
    pub fn iter(&self) -> impl Iterator<Item = &Voucher> {
        self.list.iter()
    }
}

impl PoolState {
    pub(super) fn decide_create_voucher(
        &mut self,
        def: VoucherDef,
        now: DateTime<Utc>,
        events: &mut Vec<PoolEvent>,
    ) -> Result<PoolOutcome, DomainError> {
        if self.vouchers.index(&def.code).is_some() {
            return Err(DomainError::VoucherExists);
        }
        if self.vouchers.len() >= VOUCHERS_PER_POOL_MAX {
            return Err(DomainError::LimitReached("vouchers per pool"));
        }
        let available = self.counts().available();
        if def.reserve_seats && def.max_uses > available {
            return Err(DomainError::SoldOut { available });
        }
        let code = def.code.clone();
        self.emit(
            events,
            PoolEvent::VoucherCreated {
                event_id: self.event_id,
                voucher: def,
                at: now,
            },
        );
        Ok(self.voucher_outcome(&code))
    }

    pub(super) fn decide_deactivate_voucher(
        &mut self,
        code: &str,
        now: DateTime<Utc>,
        events: &mut Vec<PoolEvent>,
    ) -> Result<PoolOutcome, DomainError> {
        let voucher = self
            .vouchers
            .by_code(code)
            .ok_or(DomainError::VoucherNotFound)?;
        // Deactivating twice changes nothing.
        if voucher.active {
            self.emit(
                events,
                PoolEvent::VoucherDeactivated {
                    event_id: self.event_id,
                    code: code.to_owned(),
                    at: now,
                },
            );
        }
        Ok(self.voucher_outcome(code))
    }

    fn voucher_outcome(&self, code: &str) -> PoolOutcome {
        let voucher = self.vouchers.by_code(code).expect("voucher just decided");
        PoolOutcome::Voucher(Box::new(voucher.clone()))
    }

    /// Deactivates the reserving vouchers whose validity ended at or before `now`: they can
    /// sell nothing more, so their seats go back.
    pub(super) fn deactivate_due_vouchers(
        &mut self,
        now: DateTime<Utc>,
        events: &mut Vec<PoolEvent>,
    ) {
        for index in self.vouchers.due(now.timestamp_millis()) {
            let code = self.vouchers.get(index).def.code.clone();
            self.emit(
                events,
                PoolEvent::VoucherDeactivated {
                    event_id: self.event_id,
                    code,
                    at: now,
                },
            );
        }
    }

    pub(super) fn apply_voucher_created(&mut self, def: &VoucherDef) {
        self.vouchers.add(def.clone());
    }

    pub(super) fn apply_voucher_deactivated(&mut self, code: &str) {
        let index = self
            .vouchers
            .index(code)
            .expect("deactivation of an unknown voucher");
        self.vouchers.deactivate(index);
    }
}
