//! The pool: a quota of seats and every decision on it, as a sans-IO state machine.
//!
//! `PoolState::execute(command, now)` decides, returns the domain events it produced and
//! applies them with the same `apply` that replays the journal, so live state and state
//! rebuilt from the journal cannot drift apart. The `PoolActor` is a thin shell around it.
//!
//! Architecture Invariant: after every applied event, `held + confirmed + reserved <=
//! capacity`, where `reserved` are the seats set aside by vouchers (asserted in `apply`,
//! proven by the property test in `tests.rs`).

use crate::error::DomainError;
use crate::ids::{
    CheckInListId, EventId, PoolId, RegistrationId, TicketId, TicketTypeId, UserId, WaitlistEntryId,
};
use crate::model::{Attendee, EventStatus, RegistrationStatus};
use chrono::{DateTime, Duration, Utc};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeSet, HashMap};

pub mod scan;
#[cfg(test)]
mod tests;
pub mod voucher;
pub mod waitlist;

use crate::pricing::Price;
pub use crate::values::{GATE_LEN_MAX, IdempotencyToken};

/// When and where a ticket was first admitted.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Admission {
    /// Time of admission.
    #[serde(with = "chrono::serde::ts_milliseconds")]
    pub at: DateTime<Utc>,
    /// Gate, if the scanner named one.
    pub gate: Option<String>,
}

/// Domain events of a pool stream.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum PoolEvent {
    /// Seats were reserved for a new registration until `expires_at`.
    SeatsHeld {
        /// The new registration.
        registration_id: RegistrationId,
        /// Its event (for read models).
        event_id: EventId,
        /// The ticket type bought.
        ticket_type_id: TicketTypeId,
        /// Seats held.
        quantity: u16,
        /// Who it is for.
        attendee: Attendee,
        /// The signed-in account that holds it.
        #[serde(default)]
        user_id: Option<UserId>,
        /// The client's idempotency key, if it sent one.
        idempotency: Option<IdempotencyToken>,
        /// When the hold runs out.
        #[serde(with = "chrono::serde::ts_milliseconds")]
        expires_at: DateTime<Utc>,
        /// When.
        #[serde(with = "chrono::serde::ts_milliseconds")]
        at: DateTime<Utc>,
        /// The voucher redeemed (its code), if any.
        #[serde(default)]
        voucher: Option<String>,
        /// What it costs, decided with the hold (journals from before prices: `None`).
        #[serde(default)]
        price: Option<Price>,
    },
    /// A voucher was created.
    VoucherCreated {
        /// Its event (for read models).
        event_id: EventId,
        /// What it does.
        voucher: voucher::VoucherDef,
        /// When.
        #[serde(with = "chrono::serde::ts_milliseconds")]
        at: DateTime<Utc>,
    },
    /// A user joined a ticket type's waiting list.
    WaitlistJoined {
        /// Its event (for read models).
        event_id: EventId,
        /// The place.
        entry: waitlist::WaitlistEntry,
        /// When.
        #[serde(with = "chrono::serde::ts_milliseconds")]
        at: DateTime<Utc>,
    },
    /// A user left the waiting list.
    WaitlistLeft {
        /// The place.
        entry_id: WaitlistEntryId,
        /// When.
        #[serde(with = "chrono::serde::ts_milliseconds")]
        at: DateTime<Utc>,
    },
    /// Seats that came back were offered to a waiting entry: a hold reserved for its account
    /// until `expires_at` (claimed by confirming it).
    WaitlistOffered {
        /// The new registration (held).
        registration_id: RegistrationId,
        /// Its event (for read models).
        event_id: EventId,
        /// The place it came from (now off the list).
        entry_id: WaitlistEntryId,
        /// The account it is reserved for.
        user_id: UserId,
        /// The ticket type.
        ticket_type_id: TicketTypeId,
        /// Seats.
        quantity: u16,
        /// Who it is for.
        attendee: Attendee,
        /// What it costs.
        price: Price,
        /// When the offer runs out.
        #[serde(with = "chrono::serde::ts_milliseconds")]
        expires_at: DateTime<Utc>,
        /// When.
        #[serde(with = "chrono::serde::ts_milliseconds")]
        at: DateTime<Utc>,
    },
    /// A voucher was deactivated: no more redemptions, its reserved seats go back.
    VoucherDeactivated {
        /// Its event (for read models).
        event_id: EventId,
        /// Its code.
        code: String,
        /// When.
        #[serde(with = "chrono::serde::ts_milliseconds")]
        at: DateTime<Utc>,
    },
    /// A hold ran out; its seats went back to the pool.
    HoldExpired {
        /// The registration.
        registration_id: RegistrationId,
        /// The account that holds it (who is told).
        #[serde(default)]
        user_id: Option<UserId>,
        /// When.
        #[serde(with = "chrono::serde::ts_milliseconds")]
        at: DateTime<Utc>,
    },
    /// A hold was confirmed; one ticket per seat was issued.
    RegistrationConfirmed {
        /// The registration.
        registration_id: RegistrationId,
        /// The account that holds it (who is told).
        #[serde(default)]
        user_id: Option<UserId>,
        /// The tickets, in seat order.
        tickets: Vec<TicketId>,
        /// The pool's number of the first ticket (the others follow in seat order).
        #[serde(default)]
        first_number: u64,
        /// When.
        #[serde(with = "chrono::serde::ts_milliseconds")]
        at: DateTime<Utc>,
    },
    /// A hold or confirmed registration was canceled; its seats went back to the pool.
    RegistrationCanceled {
        /// The registration.
        registration_id: RegistrationId,
        /// The account that holds it (who is told).
        #[serde(default)]
        user_id: Option<UserId>,
        /// When.
        #[serde(with = "chrono::serde::ts_milliseconds")]
        at: DateTime<Utc>,
    },
    /// A scan was decided: an admission, an exit, or a duplicate (recorded, not admitted).
    Scanned {
        /// The registration.
        registration_id: RegistrationId,
        /// The account that holds it (who is told).
        #[serde(default)]
        user_id: Option<UserId>,
        /// The ticket.
        ticket_id: TicketId,
        /// Seat index of the ticket in its registration.
        ticket_index: u16,
        /// The check-in list (`None`: the event's default list).
        list: Option<CheckInListId>,
        /// Entry or exit.
        direction: scan::Direction,
        /// When (for an uploaded offline scan, when it was made) and at which gate.
        admission: Admission,
        /// An uploaded offline scan.
        offline: bool,
        /// The scanner's nonce: the same nonce is applied once.
        nonce: Option<[u8; 16]>,
        /// How it ended.
        result: scan::ScanResult,
        /// For an uploaded scan earlier than the admission known: that admission, which it
        /// replaces as the first.
        #[serde(default)]
        superseded: Option<Admission>,
        /// Whether this admission is now the ticket's earliest on any list (the ticket's
        /// first admission, as its read model shows it, becomes this one). `None` in journals
        /// written before the pool said so: the projection then compares with the row.
        #[serde(default)]
        first_on_ticket: Option<bool>,
    },
    /// A ticket was admitted (journals before check-in lists; replayed as a default-list
    /// admission).
    AttendeeCheckedIn {
        /// The registration.
        registration_id: RegistrationId,
        /// The account that holds it (who is told).
        #[serde(default)]
        user_id: Option<UserId>,
        /// The ticket.
        ticket_id: TicketId,
        /// Seat index of the ticket in its registration.
        ticket_index: u16,
        /// When and where.
        admission: Admission,
    },
}

impl PoolEvent {
    /// The registration an event concerns and the account holding it, if any.
    pub fn account(&self) -> Option<(UserId, RegistrationId)> {
        let (user, registration) = match self {
            PoolEvent::SeatsHeld {
                user_id,
                registration_id,
                ..
            }
            | PoolEvent::HoldExpired {
                user_id,
                registration_id,
                ..
            }
            | PoolEvent::RegistrationConfirmed {
                user_id,
                registration_id,
                ..
            }
            | PoolEvent::RegistrationCanceled {
                user_id,
                registration_id,
                ..
            }
            | PoolEvent::AttendeeCheckedIn {
                user_id,
                registration_id,
                ..
            }
            | PoolEvent::Scanned {
                user_id,
                registration_id,
                ..
            } => (user_id, registration_id),
            PoolEvent::WaitlistOffered {
                user_id,
                registration_id,
                ..
            } => return Some((*user_id, *registration_id)),
            PoolEvent::VoucherCreated { .. }
            | PoolEvent::VoucherDeactivated { .. }
            | PoolEvent::WaitlistJoined { .. }
            | PoolEvent::WaitlistLeft { .. } => {
                return None;
            }
        };
        user.map(|u| (u, *registration))
    }
}

/// A command to a pool. Fields are validated by the caller (the engine facade).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PoolCommand {
    /// Hold seats (boxed: it carries the attendee, price and voucher).
    Hold(Box<HoldCommand>),
    /// Confirm a hold.
    Confirm(RegistrationId),
    /// Cancel a hold or a confirmed registration.
    Cancel(RegistrationId),
    /// Scan a ticket in or out (boxed: the largest command by far).
    Scan(Box<ScanCommand>),
    /// Create a voucher (its code checked unique in the event by the caller).
    CreateVoucher(Box<voucher::VoucherDef>),
    /// Deactivate a voucher.
    DeactivateVoucher(String),
    /// Join a ticket type's waiting list (`joined_at` is set by the pool).
    JoinWaitlist(Box<waitlist::WaitlistEntry>),
    /// Leave the waiting list.
    LeaveWaitlist {
        /// The place.
        entry_id: WaitlistEntryId,
        /// Its account (only it may leave).
        user_id: UserId,
    },
    /// Where an entry is on the waiting list (decides nothing).
    WaitlistPosition(WaitlistEntryId),
    /// Expire every hold whose deadline has passed.
    ExpireDue,
    /// The event was canceled: cancel live registrations (held seats go back, issued tickets
    /// are revoked) and remove waiting places, at most this many in all (a large pool is
    /// closed over several turns).
    CloseCanceledEvent(usize),
}

/// Hold seats for a new registration.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HoldCommand {
    /// Id for the registration, chosen by the caller so retries can be matched.
    pub registration_id: RegistrationId,
    /// The event.
    pub event_id: EventId,
    /// The ticket type.
    pub ticket_type_id: TicketTypeId,
    /// Seats, already checked against `max_per_order`.
    pub quantity: u16,
    /// Who it is for.
    pub attendee: Attendee,
    /// The signed-in account that holds it.
    pub user_id: Option<UserId>,
    /// Most live seats (held + confirmed) one account may have of this ticket type.
    pub max_per_account: Option<u16>,
    /// How long the hold lasts.
    pub ttl: Duration,
    /// The client's idempotency key.
    pub idempotency: Option<IdempotencyToken>,
    /// The ticket type's price of one seat.
    pub unit_price_minor: i64,
    /// The ticket type's currency.
    pub currency: String,
    /// A voucher code to redeem (normalised: trimmed, upper case).
    pub voucher: Option<String>,
}

/// Scan one ticket on a check-in list.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ScanCommand {
    /// The registration the ticket belongs to.
    pub registration_id: RegistrationId,
    /// The ticket.
    pub ticket_id: TicketId,
    /// The ticket's seat index.
    pub ticket_index: u16,
    /// The ticket's type.
    pub ticket_type_id: TicketTypeId,
    /// The list's rules.
    pub list: scan::ListRules,
    /// Entry or exit.
    pub direction: scan::Direction,
    /// Gate, at most `GATE_LEN_MAX` characters.
    pub gate: Option<String>,
    /// For an uploaded offline scan: when it was made (at most now).
    pub scanned_at: Option<DateTime<Utc>>,
    /// The scanner's nonce.
    pub nonce: Option<[u8; 16]>,
}

/// What a successful command produced.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PoolOutcome {
    /// A new hold, or the earlier one for the same idempotency key (`replayed`).
    Held {
        /// The registration.
        registration_id: RegistrationId,
        /// Its current status (a replay may find it confirmed by now).
        status: RegistrationStatus,
        /// When the hold runs out.
        expires_at: DateTime<Utc>,
        /// When the hold was decided (for a replay: when the retry was answered).
        at: DateTime<Utc>,
        /// Whether this is an earlier registration returned for a retried key.
        replayed: bool,
        /// What it costs (`None` for a replay: read the registration).
        price: Option<Price>,
    },
    /// The hold is confirmed.
    Confirmed {
        /// The tickets issued.
        tickets: Vec<TicketId>,
    },
    /// The registration is canceled.
    Canceled,
    /// A scan was decided.
    Scanned {
        /// Admitted, exited or duplicate.
        result: scan::ScanResult,
        /// The ticket's first admission on the list (for a duplicate: the one that stands).
        first: Admission,
    },
    /// Expired holds (possibly none).
    Expired(usize),
    /// What closing a canceled event ended: the registrations canceled (and whether each had
    /// tickets), and the waiting-list places removed — the people to tell.
    Closed {
        /// Canceled registrations: id, and whether it was confirmed.
        registrations: Vec<(RegistrationId, bool)>,
        /// Removed waiting-list places.
        waitlist: Vec<waitlist::WaitlistEntry>,
    },
    /// A voucher as it is now (created, or deactivated).
    Voucher(Box<voucher::Voucher>),
    /// On the waiting list, at `position` (1 = next).
    Waitlisted {
        /// The place.
        entry_id: WaitlistEntryId,
        /// Entries ahead of it, plus one.
        position: usize,
    },
    /// Off the waiting list.
    LeftWaitlist,
}

/// What the pool remembers of one registration. Kept small: this is per live registration.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
struct RegEntry {
    quantity: u16,
    status: RegistrationStatus,
    /// Hold deadline, milliseconds since the epoch.
    expires_at_ms: i64,
    /// The idempotency key it was created with, to forget the key with the registration.
    idempotency_key: Option<[u8; 16]>,
    /// The account and ticket type its seats count against (per-account limits).
    #[serde(default)]
    account: Option<(UserId, TicketTypeId)>,
    /// The voucher it redeemed (index in the pool's vouchers).
    #[serde(default)]
    voucher: Option<u32>,
}

impl RegEntry {
    fn user(&self) -> Option<UserId> {
        self.account.map(|(user, _)| user)
    }
}

/// Seat counts of a pool, as published to readers after every decision.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PoolCounts {
    /// Seats in total.
    pub capacity: u32,
    /// Seats held.
    pub held: u32,
    /// Seats confirmed.
    pub confirmed: u32,
    /// Seats set aside by vouchers (only their holders may take them).
    pub reserved: u32,
}

impl PoolCounts {
    /// Seats still available to anyone.
    pub fn available(&self) -> u32 {
        self.capacity - self.held - self.confirmed - self.reserved
    }
}

/// The authoritative state of one pool.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PoolState {
    pool_id: PoolId,
    event_id: EventId,
    capacity: u32,
    held: u32,
    confirmed: u32,
    /// Sequence number of the last applied event.
    seq: u64,
    regs: HashMap<RegistrationId, RegEntry>,
    idempotency: HashMap<[u8; 16], (RegistrationId, [u8; 16])>,
    admitted: HashMap<(RegistrationId, u16), Admission>,
    /// Live holds ordered by deadline; derived from `regs`, rebuilt after decoding.
    #[serde(skip)]
    expiries: BTreeSet<(i64, RegistrationId)>,
    /// Live seats (held + confirmed) per account and ticket type; derived from `regs`.
    #[serde(skip)]
    per_account: HashMap<(UserId, TicketTypeId), u32>,
    /// Tickets issued so far: the next ticket gets number `tickets_issued + 1` (numbers are
    /// per pool, never reused, in confirmation order).
    #[serde(default)]
    tickets_issued: u64,
    /// Tickets' presences on check-in lists, per registration (so a cancellation drops them
    /// with one removal).
    #[serde(default)]
    presence: HashMap<RegistrationId, Vec<scan::Presence>>,
    /// Scan nonces already applied (bounded).
    #[serde(default)]
    nonces: scan::Nonces,
    /// Vouchers of this pool's ticket types.
    #[serde(default)]
    vouchers: voucher::Vouchers,
    /// Who waits for seats, in joining order.
    #[serde(default)]
    waitlist: waitlist::Waitlist,
}

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
            per_account: HashMap::new(),
            tickets_issued: 0,
            presence: HashMap::new(),
            nonces: scan::Nonces::default(),
            vouchers: voucher::Vouchers::default(),
            waitlist: waitlist::Waitlist::default(),
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

    /// The pool id.
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
    }

    /// The earliest hold deadline, if any hold is live.
    pub fn next_expiry(&self) -> Option<DateTime<Utc>> {
        // Holds run out, and so do reserving vouchers (their seats then go back).
        let hold = self.expiries.first().map(|(ms, _)| *ms);
        [hold, self.vouchers.next_deadline()]
            .into_iter()
            .flatten()
            .min()
            .and_then(DateTime::from_timestamp_millis)
    }

    /// Status of a registration the pool knows.
    pub fn registration_status(&self, id: RegistrationId) -> Option<RegistrationStatus> {
        self.regs.get(&id).map(|r| r.status)
    }

    /// Decides `command` at time `now` for an event in status `event_status`, applies the
    /// events it produced, and returns them with the outcome. Events are returned even when
    /// the outcome is a refusal (a confirm of an expired hold journals the expiry).
    pub fn execute(
        &mut self,
        command: PoolCommand,
        event_status: EventStatus,
        now: DateTime<Utc>,
    ) -> (Vec<PoolEvent>, Result<PoolOutcome, DomainError>) {
        // The durable format keeps milliseconds: decide at that precision so what a caller is
        // told equals what a reader later reads.
        let now = millis_to_time(now.timestamp_millis());
        let mut events = Vec::new();
        let outcome = match command {
            PoolCommand::Hold(cmd) => self.decide_hold(*cmd, event_status, now, &mut events),
            PoolCommand::Confirm(id) => self.decide_confirm(id, event_status, now, &mut events),
            PoolCommand::Cancel(id) => self.decide_cancel(id, now, &mut events),
            PoolCommand::Scan(cmd) => self.decide_scan(*cmd, event_status, now, &mut events),
            PoolCommand::CreateVoucher(def) => self.decide_create_voucher(*def, now, &mut events),
            PoolCommand::DeactivateVoucher(code) => {
                self.decide_deactivate_voucher(&code, now, &mut events)
            }
            PoolCommand::JoinWaitlist(entry) => {
                self.decide_join_waitlist(*entry, event_status, now, &mut events)
            }
            PoolCommand::LeaveWaitlist { entry_id, user_id } => {
                match self.waitlist.position(entry_id) {
                    Some((_, e)) if e.user_id == user_id => {
                        self.emit(&mut events, PoolEvent::WaitlistLeft { entry_id, at: now });
                        Ok(PoolOutcome::LeftWaitlist)
                    }
                    _ => Err(DomainError::WaitlistEntryNotFound),
                }
            }
            PoolCommand::WaitlistPosition(entry_id) => self
                .waitlist
                .position(entry_id)
                .map(|(position, _)| PoolOutcome::Waitlisted { entry_id, position })
                .ok_or(DomainError::WaitlistEntryNotFound),
            PoolCommand::ExpireDue => Ok(PoolOutcome::Expired(
                self.decide_expire_due(now, &mut events),
            )),
            PoolCommand::CloseCanceledEvent(limit) => {
                self.decide_close_canceled(limit, event_status, now, &mut events)
            }
        };
        // Seats that came back (expiry, cancellation, a reservation's end) go to the waiting
        // list in this same turn, before anyone else can take them.
        if event_status == EventStatus::Published {
            self.offer_freed(now, &mut events);
        }
        (events, outcome)
    }

    /// Offers free seats to waiting entries, in joining order, each that fits.
    fn offer_freed(&mut self, now: DateTime<Utc>, events: &mut Vec<PoolEvent>) {
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
            let fits = |e: &waitlist::WaitlistEntry| {
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
            );
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

    fn decide_join_waitlist(
        &mut self,
        mut entry: waitlist::WaitlistEntry,
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
        if self.waitlist.len() >= waitlist::WAITLIST_MAX {
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

    fn emit(&mut self, events: &mut Vec<PoolEvent>, event: PoolEvent) {
        self.apply(self.seq + 1, &event);
        events.push(event);
    }

    fn decide_hold(
        &mut self,
        cmd: HoldCommand,
        event_status: EventStatus,
        now: DateTime<Utc>,
        events: &mut Vec<PoolEvent>,
    ) -> Result<PoolOutcome, DomainError> {
        if let Some(token) = cmd.idempotency
            && let Some((id, request)) = self.idempotency.get(&token.key)
        {
            if *request != token.request {
                return Err(DomainError::IdempotencyMismatch);
            }
            let reg = self.regs.get(id).ok_or(DomainError::RegistrationNotFound)?;
            return Ok(PoolOutcome::Held {
                registration_id: *id,
                status: reg.status,
                expires_at: millis_to_time(reg.expires_at_ms),
                at: now,
                replayed: true,
                price: None,
            });
        }
        if event_status != EventStatus::Published {
            return Err(DomainError::EventNotOpen(event_status));
        }
        if self.regs.contains_key(&cmd.registration_id) {
            return Err(DomainError::Validation(vec![
                crate::error::FieldError::new("registration_id", "already exists"),
            ]));
        }
        if let (Some(max), Some(user)) = (cmd.max_per_account, cmd.user_id) {
            let held = self.live_seats_of(user, cmd.ticket_type_id);
            if held + u32::from(cmd.quantity) > u32::from(max) {
                return Err(DomainError::AccountLimitReached { max, held });
            }
        }
        // A voucher's use is decided here, with the seats: the last use goes to one buyer.
        let voucher = match &cmd.voucher {
            None => None,
            Some(code) => {
                let index = self
                    .vouchers
                    .index(code)
                    .ok_or(DomainError::VoucherNotValid { reason: "unknown" })?;
                let v = self.vouchers.get(index);
                if !v.active {
                    return Err(DomainError::VoucherNotValid {
                        reason: "deactivated",
                    });
                }
                if let Some(reason) = v.def.refusal(cmd.ticket_type_id, now) {
                    return Err(DomainError::VoucherNotValid { reason });
                }
                if u32::from(cmd.quantity) > v.remaining() {
                    return Err(DomainError::VoucherUsedUp {
                        remaining: v.remaining(),
                    });
                }
                Some(v)
            }
        };
        // A reserving voucher's holder takes the seats set aside for it.
        let available = self.counts().available() + voucher.map_or(0, |v| v.reserved());
        if u32::from(cmd.quantity) > available {
            return Err(DomainError::SoldOut { available });
        }
        let price = crate::pricing::quote(
            cmd.unit_price_minor,
            &cmd.currency,
            cmd.quantity,
            voucher.map(|v| (v.def.code.as_str(), v.def.discount)),
        );
        // Millisecond precision: the durable format stores milliseconds.
        let expires_at = millis_to_time((now + cmd.ttl).timestamp_millis());
        let registration_id = cmd.registration_id;
        self.emit(
            events,
            PoolEvent::SeatsHeld {
                registration_id,
                event_id: cmd.event_id,
                ticket_type_id: cmd.ticket_type_id,
                quantity: cmd.quantity,
                attendee: cmd.attendee,
                user_id: cmd.user_id,
                idempotency: cmd.idempotency,
                expires_at,
                at: now,
                voucher: price.voucher.clone(),
                price: Some(price.clone()),
            },
        );
        Ok(PoolOutcome::Held {
            registration_id,
            status: RegistrationStatus::Held,
            expires_at,
            at: now,
            replayed: false,
            price: Some(price),
        })
    }

    fn decide_create_voucher(
        &mut self,
        def: voucher::VoucherDef,
        now: DateTime<Utc>,
        events: &mut Vec<PoolEvent>,
    ) -> Result<PoolOutcome, DomainError> {
        if self.vouchers.index(&def.code).is_some() {
            return Err(DomainError::VoucherExists);
        }
        if self.vouchers.len() >= voucher::VOUCHERS_PER_POOL_MAX {
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

    fn decide_deactivate_voucher(
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

    fn decide_confirm(
        &mut self,
        id: RegistrationId,
        event_status: EventStatus,
        now: DateTime<Utc>,
        events: &mut Vec<PoolEvent>,
    ) -> Result<PoolOutcome, DomainError> {
        let reg = *self
            .regs
            .get(&id)
            .ok_or(DomainError::RegistrationNotFound)?;
        // A canceled (or completed) event issues no tickets, and does not repeat that it did
        // (a repeated confirm between the cancellation and the close would answer 200 with
        // tickets about to be revoked); a draft has no holds.
        if event_status != EventStatus::Published {
            return Err(DomainError::EventNotOpen(event_status));
        }
        if reg.status != RegistrationStatus::Held {
            return Err(DomainError::InvalidRegistrationState {
                status: reg.status,
                action: "confirm",
            });
        }
        self.expire_if_overdue(id, reg, now, events)?;
        let tickets: Vec<TicketId> = (0..reg.quantity)
            .map(|_| TicketId(uuid::Uuid::new_v4()))
            .collect();
        self.emit(
            events,
            PoolEvent::RegistrationConfirmed {
                registration_id: id,
                user_id: reg.user(),
                tickets: tickets.clone(),
                first_number: self.tickets_issued + 1,
                at: now,
            },
        );
        Ok(PoolOutcome::Confirmed { tickets })
    }

    /// Cancels up to `limit` live registrations of a canceled event, in id order, then
    /// removes waiting places up to what is left of `limit`. What is closed stays closed (a
    /// restart repeats it only for what was not made durable).
    fn decide_close_canceled(
        &mut self,
        limit: usize,
        event_status: EventStatus,
        now: DateTime<Utc>,
        events: &mut Vec<PoolEvent>,
    ) -> Result<PoolOutcome, DomainError> {
        if event_status != EventStatus::Canceled {
            return Err(DomainError::EventNotOpen(event_status));
        }
        let mut live: Vec<(RegistrationId, RegEntry)> = self
            .regs
            .iter()
            .filter(|(_, r)| {
                matches!(
                    r.status,
                    RegistrationStatus::Held | RegistrationStatus::Confirmed
                )
            })
            .map(|(id, r)| (*id, *r))
            .collect();
        live.sort_by_key(|(id, _)| id.0);
        live.truncate(limit);
        let mut registrations = Vec::with_capacity(live.len());
        for (id, reg) in live {
            self.emit(
                events,
                PoolEvent::RegistrationCanceled {
                    registration_id: id,
                    user_id: reg.user(),
                    at: now,
                },
            );
            registrations.push((id, reg.status == RegistrationStatus::Confirmed));
        }
        let mut waitlist = Vec::new();
        while registrations.len() + waitlist.len() < limit
            && let Some(entry) = self.waitlist.first_fitting(|_| true).cloned()
        {
            self.emit(
                events,
                PoolEvent::WaitlistLeft {
                    entry_id: entry.id,
                    at: now,
                },
            );
            waitlist.push(entry);
        }
        Ok(PoolOutcome::Closed {
            registrations,
            waitlist,
        })
    }

    /// Whether anything is left for [`PoolCommand::CloseCanceledEvent`] to end.
    pub fn has_live_registrations(&self) -> bool {
        !self.waitlist.is_empty()
            || self.regs.values().any(|r| {
                matches!(
                    r.status,
                    RegistrationStatus::Held | RegistrationStatus::Confirmed
                )
            })
    }

    fn decide_cancel(
        &mut self,
        id: RegistrationId,
        now: DateTime<Utc>,
        events: &mut Vec<PoolEvent>,
    ) -> Result<PoolOutcome, DomainError> {
        let reg = *self
            .regs
            .get(&id)
            .ok_or(DomainError::RegistrationNotFound)?;
        match reg.status {
            RegistrationStatus::Held | RegistrationStatus::Confirmed => {
                self.expire_if_overdue(id, reg, now, events)?;
                self.emit(
                    events,
                    PoolEvent::RegistrationCanceled {
                        registration_id: id,
                        user_id: reg.user(),
                        at: now,
                    },
                );
                Ok(PoolOutcome::Canceled)
            }
            status => Err(DomainError::InvalidRegistrationState {
                status,
                action: "cancel",
            }),
        }
    }

    /// A hold whose deadline passed before its timer fired expires now, and the command that
    /// found it so is refused: the expiry wins, exactly once. Anything else passes.
    fn expire_if_overdue(
        &mut self,
        id: RegistrationId,
        reg: RegEntry,
        now: DateTime<Utc>,
        events: &mut Vec<PoolEvent>,
    ) -> Result<(), DomainError> {
        if reg.status != RegistrationStatus::Held || now.timestamp_millis() < reg.expires_at_ms {
            return Ok(());
        }
        self.emit(
            events,
            PoolEvent::HoldExpired {
                registration_id: id,
                user_id: reg.user(),
                at: now,
            },
        );
        Err(DomainError::HoldExpired {
            expired_at: millis_to_time(reg.expires_at_ms),
        })
    }

    fn decide_scan(
        &mut self,
        cmd: ScanCommand,
        event_status: EventStatus,
        now: DateTime<Utc>,
        events: &mut Vec<PoolEvent>,
    ) -> Result<PoolOutcome, DomainError> {
        // A retried scan gets its first answer and changes nothing.
        if let Some(nonce) = &cmd.nonce
            && let Some((result, first)) = self.nonces.get(nonce)
        {
            return Ok(PoolOutcome::Scanned {
                result: result.clone(),
                first: first.clone(),
            });
        }
        if event_status != EventStatus::Published {
            return Err(DomainError::EventNotOpen(event_status));
        }
        let reg = *self
            .regs
            .get(&cmd.registration_id)
            .ok_or(DomainError::TicketNotFound)?;
        match reg.status {
            RegistrationStatus::Confirmed => {}
            RegistrationStatus::Canceled => return Err(DomainError::TicketRevoked),
            status => {
                return Err(DomainError::InvalidRegistrationState {
                    status,
                    action: "check in",
                });
            }
        }
        if cmd.ticket_index >= reg.quantity {
            return Err(DomainError::TicketNotFound);
        }
        let rules = &cmd.list;
        let gate_ok =
            rules.gates.is_empty() || cmd.gate.as_ref().is_some_and(|g| rules.gates.contains(g));
        let type_ok =
            rules.ticket_types.is_empty() || rules.ticket_types.contains(&cmd.ticket_type_id);
        if !gate_ok || !type_ok {
            return Err(DomainError::NotAllowedAtGate);
        }
        let offline = cmd.scanned_at.is_some();
        let at = millis_to_time(cmd.scanned_at.unwrap_or(now).min(now).timestamp_millis());
        if let Some(opens_at) = rules.opens_at
            && at < opens_at
        {
            return Err(DomainError::NotYetValid { opens_at });
        }
        if let Some(closes_at) = rules.closes_at
            && at > closes_at
        {
            return Err(DomainError::CheckInClosed { closes_at });
        }
        let presences = self.presence.get(&cmd.registration_id);
        let presence = presences.and_then(|p| scan::find(p, cmd.ticket_index, rules.id));
        let result = scan::decide(
            presence,
            rules,
            cmd.direction,
            at,
            cmd.gate.as_deref(),
            offline,
        )
        .ok_or(DomainError::NotCheckedIn)?;
        // An uploaded scan that takes over the first admission: the one it replaces (for the
        // statistics, which count a ticket's first admission once).
        let superseded = match (&result, presence) {
            (scan::ScanResult::Admitted, Some(p)) if offline => Some(p.first.clone()),
            _ => None,
        };
        let first_on_ticket = result == scan::ScanResult::Admitted
            && presences.is_none_or(|p| {
                p.iter()
                    .filter(|p| p.index == cmd.ticket_index)
                    .all(|p| scan::earlier(at, cmd.gate.as_deref(), &p.first))
            });
        let admission = Admission { at, gate: cmd.gate };
        self.emit(
            events,
            PoolEvent::Scanned {
                registration_id: cmd.registration_id,
                user_id: reg.user(),
                ticket_id: cmd.ticket_id,
                ticket_index: cmd.ticket_index,
                list: rules.id,
                direction: cmd.direction,
                admission,
                offline,
                nonce: cmd.nonce,
                result: result.clone(),
                superseded,
                first_on_ticket: Some(first_on_ticket),
            },
        );
        let first = self
            .presence
            .get(&cmd.registration_id)
            .and_then(|p| scan::find(p, cmd.ticket_index, rules.id))
            .map(|p| p.first.clone())
            .ok_or(DomainError::NotCheckedIn)?;
        Ok(PoolOutcome::Scanned { result, first })
    }

    fn decide_expire_due(&mut self, now: DateTime<Utc>, events: &mut Vec<PoolEvent>) -> usize {
        let now_ms = now.timestamp_millis();
        let due: Vec<RegistrationId> = self
            .expiries
            .iter()
            .take_while(|(ms, _)| *ms <= now_ms)
            .map(|(_, id)| *id)
            .collect();
        for id in &due {
            let user_id = self.regs.get(id).and_then(RegEntry::user);
            self.emit(
                events,
                PoolEvent::HoldExpired {
                    registration_id: *id,
                    user_id,
                    at: now,
                },
            );
        }
        // Reserving vouchers past their validity can sell nothing more: their seats go back.
        for index in self.vouchers.due(now_ms) {
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
        due.len()
    }

    /// Applies one event with sequence number `seq`, live or on replay.
    ///
    /// # Panics
    /// On an event that the state cannot have produced (a bug or a corrupt journal): the
    /// actor fails and its supervisor restarts it from durable state.
    pub fn apply(&mut self, seq: u64, event: &PoolEvent) {
        assert_eq!(
            seq,
            self.seq + 1,
            "pool {} applies seq {seq} after {}",
            self.pool_id,
            self.seq
        );
        match event {
            PoolEvent::SeatsHeld {
                registration_id,
                ticket_type_id,
                quantity,
                user_id,
                idempotency,
                expires_at,
                voucher,
                ..
            } => {
                let voucher = voucher.as_deref().map(|code| {
                    let index = self
                        .vouchers
                        .index(code)
                        .expect("hold with an unknown voucher");
                    self.vouchers.take(index, u32::from(*quantity));
                    index
                });
                self.hold_seats(
                    *registration_id,
                    *quantity,
                    user_id.map(|u| (u, *ticket_type_id)),
                    *expires_at,
                    idempotency.as_ref(),
                    voucher,
                );
            }
            PoolEvent::WaitlistOffered {
                registration_id,
                entry_id,
                user_id,
                ticket_type_id,
                quantity,
                expires_at,
                ..
            } => {
                self.waitlist
                    .remove(*entry_id)
                    .expect("offer to an entry not waiting");
                self.hold_seats(
                    *registration_id,
                    *quantity,
                    Some((*user_id, *ticket_type_id)),
                    *expires_at,
                    None,
                    None,
                );
            }
            PoolEvent::WaitlistJoined { entry, .. } => self.waitlist.push(entry.clone()),
            PoolEvent::WaitlistLeft { entry_id, .. } => {
                self.waitlist
                    .remove(*entry_id)
                    .expect("leave of an entry not waiting");
            }
            PoolEvent::HoldExpired {
                registration_id, ..
            } => {
                let reg = self.transition(
                    *registration_id,
                    RegistrationStatus::Held,
                    RegistrationStatus::Expired,
                );
                self.held -= u32::from(reg.quantity);
                self.expiries.remove(&(reg.expires_at_ms, *registration_id));
                self.forget(*registration_id, reg);
            }
            PoolEvent::RegistrationConfirmed {
                registration_id,
                tickets,
                ..
            } => {
                let reg = self.transition(
                    *registration_id,
                    RegistrationStatus::Held,
                    RegistrationStatus::Confirmed,
                );
                assert_eq!(
                    tickets.len(),
                    usize::from(reg.quantity),
                    "one ticket per seat"
                );
                self.held -= u32::from(reg.quantity);
                self.confirmed += u32::from(reg.quantity);
                self.tickets_issued += tickets.len() as u64;
                self.expiries.remove(&(reg.expires_at_ms, *registration_id));
            }
            PoolEvent::RegistrationCanceled {
                registration_id, ..
            } => {
                let reg = self
                    .regs
                    .get_mut(registration_id)
                    .expect("cancel of an unknown registration");
                let was = reg.status;
                reg.status = RegistrationStatus::Canceled;
                let (quantity, expires_at_ms) = (u32::from(reg.quantity), reg.expires_at_ms);
                match was {
                    RegistrationStatus::Held => {
                        self.held -= quantity;
                        self.expiries.remove(&(expires_at_ms, *registration_id));
                    }
                    RegistrationStatus::Confirmed => self.confirmed -= quantity,
                    other => panic!("cancel of a {other:?} registration"),
                }
                let reg = *reg;
                self.forget(*registration_id, reg);
            }
            PoolEvent::AttendeeCheckedIn {
                registration_id,
                ticket_index,
                admission,
                ..
            } => scan::apply(
                self.presence.entry(*registration_id).or_default(),
                *ticket_index,
                None,
                &scan::ScanResult::Admitted,
                admission,
                false,
            ),
            PoolEvent::VoucherCreated { voucher, .. } => self.vouchers.add(voucher.clone()),
            PoolEvent::VoucherDeactivated { code, .. } => {
                let index = self
                    .vouchers
                    .index(code)
                    .expect("deactivation of an unknown voucher");
                self.vouchers.deactivate(index);
            }
            PoolEvent::Scanned {
                registration_id,
                ticket_index,
                list,
                admission,
                offline,
                nonce,
                result,
                ..
            } => {
                let presences = self.presence.entry(*registration_id).or_default();
                scan::apply(presences, *ticket_index, *list, result, admission, *offline);
                if let Some(nonce) = nonce {
                    let first = scan::find(presences, *ticket_index, *list)
                        .map_or_else(|| admission.clone(), |p| p.first.clone());
                    self.nonces.insert(*nonce, (result.clone(), first));
                }
            }
        }
        self.seq = seq;
        // Architecture Invariant: no oversell (seats set aside by vouchers included).
        assert!(
            self.held + self.confirmed + self.vouchers.reserved() <= self.capacity,
            "pool {} oversold",
            self.pool_id
        );
    }

    /// Records a new held registration (a hold, or a waiting-list offer).
    fn hold_seats(
        &mut self,
        id: RegistrationId,
        quantity: u16,
        account: Option<(UserId, TicketTypeId)>,
        expires_at: DateTime<Utc>,
        idempotency: Option<&IdempotencyToken>,
        voucher: Option<u32>,
    ) {
        let expires_at_ms = expires_at.timestamp_millis();
        if let Some(account) = account {
            *self.per_account.entry(account).or_default() += u32::from(quantity);
        }
        let previous = self.regs.insert(
            id,
            RegEntry {
                quantity,
                status: RegistrationStatus::Held,
                expires_at_ms,
                idempotency_key: idempotency.map(|t| t.key),
                account,
                voucher,
            },
        );
        assert!(previous.is_none(), "registration {id} held twice");
        self.held += u32::from(quantity);
        self.expiries.insert((expires_at_ms, id));
        if let Some(token) = idempotency {
            self.idempotency.insert(token.key, (id, token.request));
        }
    }

    /// Drops a registration that reached a terminal status (expired, canceled): nothing the
    /// pool decides depends on it any more, so pool memory is bounded by live registrations,
    /// which hold at least one seat each (at most `capacity` of them). Its read model keeps
    /// the history; the engine facade uses it to refine "unknown" into the precise refusal.
    fn forget(&mut self, id: RegistrationId, reg: RegEntry) {
        self.regs.remove(&id);
        // Its seats no longer count against its account.
        if let Some(account) = reg.account
            && let std::collections::hash_map::Entry::Occupied(mut e) =
                self.per_account.entry(account)
        {
            *e.get_mut() -= u32::from(reg.quantity);
            if *e.get() == 0 {
                e.remove();
            }
        }
        if let Some(key) = reg.idempotency_key {
            self.idempotency.remove(&key);
        }
        // Its voucher uses come back (and with them, a reserving voucher's seats).
        if let Some(voucher) = reg.voucher {
            self.vouchers.release(voucher, u32::from(reg.quantity));
        }
        self.presence.remove(&id);
    }

    fn transition(
        &mut self,
        id: RegistrationId,
        from: RegistrationStatus,
        to: RegistrationStatus,
    ) -> RegEntry {
        let reg = self
            .regs
            .get_mut(&id)
            .expect("transition of an unknown registration");
        assert_eq!(reg.status, from, "registration {id} is not {from:?}");
        reg.status = to;
        *reg
    }
}

fn millis_to_time(ms: i64) -> DateTime<Utc> {
    // Every stored deadline came from a valid DateTime, so it converts back.
    DateTime::from_timestamp_millis(ms).unwrap_or(DateTime::<Utc>::MAX_UTC)
}
