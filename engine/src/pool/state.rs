//! A pool's state outside any one feature: an empty pool, the derived indexes rebuilt after a
//! snapshot is decoded, and the read-only queries the actor and the facade ask.

use super::{PoolCounts, PoolState, payment, scan, voucher, waitlist};
use crate::ids::{EventId, PoolId, RegistrationId, TicketTypeId, UserId};
use crate::model::RegistrationStatus;
use chrono::{DateTime, Utc};
use std::collections::{BTreeSet, HashMap};

impl PoolState {
    /// An empty pool.
    pub fn new(event_id: EventId, pool_id: PoolId, capacity: u32) -> Self {
        Self {
            pool_id,
            event_id,
            capacity,
            held: 0,
            confirmed: 0,
            seq: 0,
            regs: HashMap::new(),
            idempotency: HashMap::new(),
            admitted: HashMap::new(),
            expiries: BTreeSet::new(),
            reminders: BTreeSet::new(),
            payment_dues: BTreeSet::new(),
            per_account: HashMap::new(),
            tickets_issued: 0,
            presence: HashMap::new(),
            nonces: scan::Nonces::default(),
            vouchers: voucher::Vouchers::default(),
            waitlist: waitlist::Waitlist::default(),
            payments: payment::Payments::default(),
        }
    }

    /// Rebuilds derived indexes after decoding a snapshot, and checks the counters.
    pub fn restore_derived(&mut self) -> Result<(), String> {
        // Admissions from before check-in lists: the default list's.
        for ((registration, index), first) in std::mem::take(&mut self.admitted) {
            scan::apply(
                self.presence.entry(registration).or_default(),
                index,
                None,
                &scan::ScanResult::Admitted,
                &first,
                false,
            );
        }
        self.expiries = self
            .regs
            .iter()
            .filter(|(_, r)| r.status == RegistrationStatus::Held)
            .map(|(id, r)| (r.expires_at_ms, *id))
            .collect();
        self.reminders = self.payments.reminders().collect();
        self.payment_dues = self.payment_dues_of_regs();
        let (held, confirmed) = self
            .regs
            .values()
            .fold((0u32, 0u32), |(h, c), r| match r.status {
                RegistrationStatus::Held => (h + u32::from(r.quantity), c),
                RegistrationStatus::Confirmed => (h, c + u32::from(r.quantity)),
                _ => (h, c),
            });
        self.per_account.clear();
        for r in self.regs.values() {
            if let (Some(account), RegistrationStatus::Held | RegistrationStatus::Confirmed) =
                (r.account, r.status)
            {
                *self.per_account.entry(account).or_default() += u32::from(r.quantity);
            }
        }
        let mut voucher_uses: HashMap<u32, u32> = HashMap::new();
        for r in self.regs.values() {
            if let (Some(v), RegistrationStatus::Held | RegistrationStatus::Confirmed) =
                (r.voucher, r.status)
            {
                *voucher_uses.entry(v).or_default() += u32::from(r.quantity);
            }
        }
        self.vouchers.restore(&voucher_uses)?;
        if held != self.held || confirmed != self.confirmed {
            return Err(format!(
                "snapshot counters disagree: held {} vs {held}, confirmed {} vs {confirmed}",
                self.held, self.confirmed
            ));
        }
        Ok(())
    }

    pub fn pool_id(&self) -> PoolId {
        self.pool_id
    }

    /// Sequence number of the last applied event.
    pub fn seq(&self) -> u64 {
        self.seq
    }

    /// Current seat counts.
    pub fn counts(&self) -> PoolCounts {
        PoolCounts {
            capacity: self.capacity,
            held: self.held,
            confirmed: self.confirmed,
            reserved: self.vouchers.reserved(),
        }
    }

    /// The pool's vouchers.
    pub fn vouchers(&self) -> &voucher::Vouchers {
        &self.vouchers
    }

    /// The pool's waiting list.
    pub fn waitlist(&self) -> &waitlist::Waitlist {
        &self.waitlist
    }

    /// Live seats (held + confirmed) `user` has of `ticket_type` in this pool.
    pub fn live_seats_of(&self, user: UserId, ticket_type: TicketTypeId) -> u32 {
        self.per_account
            .get(&(user, ticket_type))
            .copied()
            .unwrap_or(0)
    }

    /// Registrations the pool remembers (any status).
    pub fn registration_count(&self) -> usize {
        self.regs.len()
    }

    /// Entries a snapshot of this pool writes (registrations, admissions, presences, scan
    /// nonces, idempotency keys, waiting places): what one snapshot costs.
    pub fn weight(&self) -> usize {
        self.regs.len()
            + self.idempotency.len()
            + self.admitted.len()
            + self.presence.values().map(Vec::len).sum::<usize>()
            + self.nonces.len()
            + self.waitlist.len()
            + self.payments.len()
    }

    /// The earliest hold deadline, if any hold is live.
    pub fn next_expiry(&self) -> Option<DateTime<Utc>> {
        // Holds run out, and so do reserving vouchers (their seats then go back).
        let hold = self.expiries.first().map(|(ms, _)| *ms);
        let reminder = self.reminders.first().map(|(ms, _)| *ms);
        let link = self.payment_dues.first().map(|(ms, _)| *ms);
        [hold, reminder, link, self.vouchers.next_deadline()]
            .into_iter()
            .flatten()
            .min()
            .and_then(DateTime::from_timestamp_millis)
    }

    /// Whether payment reminders (or payment links) are pending.
    pub fn has_reminders(&self) -> bool {
        !self.reminders.is_empty() || !self.payment_dues.is_empty()
    }

    /// Status of a registration the pool knows.
    pub fn registration_status(&self, id: RegistrationId) -> Option<RegistrationStatus> {
        self.regs.get(&id).map(|r| r.status)
    }
}
