//! The pool's shared vocabulary: the commands it takes, the events it journals, the outcomes it
//! answers with, and the fields of its state. Each feature (`sale`, `scan`, `voucher`,
//! `waitlist`, `close`) decides its commands and applies its events in its own file.

use super::{payment, scan, voucher, waitlist};
use crate::ids::{
    CheckInListId, EventId, PoolId, RegistrationId, TicketId, TicketTypeId, UserId, WaitlistEntryId,
};
use crate::model::{Attendee, RegistrationStatus};
use crate::payment::{Ignored, Provider, ProviderReport, RefundState};
use crate::pricing::Price;
use crate::values::IdempotencyToken;
use chrono::{DateTime, Duration, Utc};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeSet, HashMap};

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
        #[serde(with = "chrono::serde::ts_milliseconds")]
        at: DateTime<Utc>,
        /// The voucher redeemed (its code), if any.
        #[serde(default)]
        voucher: Option<String>,
        /// What it costs, decided with the hold (journals from before prices: `None`).
        #[serde(default)]
        price: Option<Price>,
        /// When its buyer is to be sent the payment link if it is still unpaid then (a
        /// priced hold, with the link configured; none: never).
        #[serde(default, with = "chrono::serde::ts_milliseconds_option")]
        payment_due_at: Option<DateTime<Utc>>,
    },
    /// A voucher was created.
    VoucherCreated {
        /// Its event (for read models).
        event_id: EventId,
        /// What it does.
        voucher: voucher::VoucherDef,
        #[serde(with = "chrono::serde::ts_milliseconds")]
        at: DateTime<Utc>,
    },
    /// A user joined a ticket type's waiting list.
    WaitlistJoined {
        /// Its event (for read models).
        event_id: EventId,
        /// The place.
        entry: waitlist::WaitlistEntry,
        #[serde(with = "chrono::serde::ts_milliseconds")]
        at: DateTime<Utc>,
    },
    /// A user left the waiting list.
    WaitlistLeft {
        /// The place.
        entry_id: WaitlistEntryId,
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
        #[serde(with = "chrono::serde::ts_milliseconds")]
        at: DateTime<Utc>,
    },
    /// A voucher was deactivated: no more redemptions, its reserved seats go back.
    VoucherDeactivated {
        /// Its event (for read models).
        event_id: EventId,
        code: String,
        #[serde(with = "chrono::serde::ts_milliseconds")]
        at: DateTime<Utc>,
    },
    /// A hold ran out; its seats went back to the pool.
    HoldExpired {
        registration_id: RegistrationId,
        /// The account that holds it (who is told).
        #[serde(default)]
        user_id: Option<UserId>,
        #[serde(with = "chrono::serde::ts_milliseconds")]
        at: DateTime<Utc>,
    },
    /// A hold was confirmed; one ticket per seat was issued.
    RegistrationConfirmed {
        registration_id: RegistrationId,
        /// The account that holds it (who is told).
        #[serde(default)]
        user_id: Option<UserId>,
        /// The tickets, in seat order.
        tickets: Vec<TicketId>,
        /// The pool's number of the first ticket (the others follow in seat order).
        #[serde(default)]
        first_number: u64,
        #[serde(with = "chrono::serde::ts_milliseconds")]
        at: DateTime<Utc>,
    },
    /// A hold or confirmed registration was canceled; its seats went back to the pool.
    RegistrationCanceled {
        registration_id: RegistrationId,
        /// The account that holds it (who is told).
        #[serde(default)]
        user_id: Option<UserId>,
        #[serde(with = "chrono::serde::ts_milliseconds")]
        at: DateTime<Utc>,
    },
    /// A scan was decided: an admission, an exit, or a duplicate (recorded, not admitted).
    Scanned {
        registration_id: RegistrationId,
        /// The account that holds it (who is told).
        #[serde(default)]
        user_id: Option<UserId>,
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
    /// Paying for a held registration started (or started again): the hold lasts at least
    /// until `hold_until`.
    PaymentStarted {
        registration_id: RegistrationId,
        /// Its event (for read models).
        event_id: EventId,
        provider: Provider,
        /// The attempt, from 1.
        attempt: u32,
        /// What is due (the total journaled with the hold).
        amount_minor: i64,
        currency: String,
        /// The ticket type's per-account limit (a late payment retakes seats within it).
        #[serde(default)]
        max_per_account: Option<u16>,
        /// The attendee's address (told if the payment is refunded on its own).
        #[serde(default)]
        buyer_email: String,
        #[serde(with = "chrono::serde::ts_milliseconds")]
        hold_until: DateTime<Utc>,
        #[serde(with = "chrono::serde::ts_milliseconds")]
        at: DateTime<Utc>,
        /// When to remind the buyer that the payment is still due (bank transfers).
        #[serde(default, with = "chrono::serde::ts_milliseconds_option")]
        remind_at: Option<DateTime<Utc>>,
        /// Who the invoice is made out to, if the buyer gave billing details.
        #[serde(default)]
        billing: Option<crate::invoice::document::Party>,
    },
    /// The buyer was reminded that a payment is still due (a `payment_reminder` message,
    /// committed with this event: once).
    PaymentReminded {
        registration_id: RegistrationId,
        /// The seats are released then.
        #[serde(with = "chrono::serde::ts_milliseconds")]
        deadline: DateTime<Utc>,
        #[serde(with = "chrono::serde::ts_milliseconds")]
        at: DateTime<Utc>,
    },
    /// A priced hold was still unpaid, with no payment started, when its buyer was due the
    /// payment link (the read model writes the `payment_due` message with this event: once).
    PaymentDue {
        registration_id: RegistrationId,
        #[serde(with = "chrono::serde::ts_milliseconds")]
        at: DateTime<Utc>,
    },
    /// The provider has the attempt (its id: an intent, an order, a reference).
    PaymentPending {
        registration_id: RegistrationId,
        attempt: u32,
        provider_ref: String,
        #[serde(with = "chrono::serde::ts_milliseconds")]
        at: DateTime<Utc>,
    },
    /// A provider's verified report, applied once per provider event id (`ignored`: it
    /// changed nothing, and why).
    PaymentReported {
        registration_id: RegistrationId,
        report: Box<ProviderReport>,
        ignored: Option<Ignored>,
        #[serde(with = "chrono::serde::ts_milliseconds")]
        at: DateTime<Utc>,
    },
    /// A registration whose hold had expired was paid and took its seats again (it is
    /// confirmed next, in the same batch).
    SeatsRetaken {
        registration_id: RegistrationId,
        #[serde(with = "chrono::serde::ts_milliseconds")]
        at: DateTime<Utc>,
    },
    /// A refund was decided; the relay carries it out.
    RefundRequested {
        registration_id: RegistrationId,
        refund: payment::Refund,
        #[serde(with = "chrono::serde::ts_milliseconds")]
        at: DateTime<Utc>,
    },
    /// The provider answered a refund.
    RefundSettled {
        registration_id: RegistrationId,
        refund_id: uuid::Uuid,
        state: RefundState,
        #[serde(with = "chrono::serde::ts_milliseconds")]
        at: DateTime<Utc>,
    },
    /// A ticket was admitted (journals before check-in lists; replayed as a default-list
    /// admission).
    AttendeeCheckedIn {
        registration_id: RegistrationId,
        /// The account that holds it (who is told).
        #[serde(default)]
        user_id: Option<UserId>,
        ticket_id: TicketId,
        /// Seat index of the ticket in its registration.
        ticket_index: u16,
        /// When and where.
        admission: Admission,
    },
}

impl PoolEvent {
    /// The registration a payment event concerns (`None` for every other event).
    pub fn payment_registration(&self) -> Option<RegistrationId> {
        match self {
            PoolEvent::PaymentStarted {
                registration_id, ..
            }
            | PoolEvent::PaymentPending {
                registration_id, ..
            }
            | PoolEvent::PaymentReported {
                registration_id, ..
            }
            | PoolEvent::SeatsRetaken {
                registration_id, ..
            }
            | PoolEvent::RefundRequested {
                registration_id, ..
            }
            | PoolEvent::RefundSettled {
                registration_id, ..
            }
            | PoolEvent::PaymentReminded {
                registration_id, ..
            } => Some(*registration_id),
            _ => None,
        }
    }

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
            | PoolEvent::PaymentStarted { .. }
            | PoolEvent::PaymentDue { .. }
            | PoolEvent::PaymentReminded { .. }
            | PoolEvent::PaymentPending { .. }
            | PoolEvent::PaymentReported { .. }
            | PoolEvent::SeatsRetaken { .. }
            | PoolEvent::RefundRequested { .. }
            | PoolEvent::RefundSettled { .. }
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
    /// Deactivate a voucher, by code (deactivating twice changes nothing).
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
    /// Start paying for a held registration (extends the hold).
    StartPayment(Box<payment::StartPayment>),
    /// The provider has the current attempt, under `provider_ref`.
    PaymentPending {
        registration_id: RegistrationId,
        attempt: u32,
        provider_ref: String,
    },
    /// A provider's verified report on a registration's payment.
    Report(RegistrationId, Box<ProviderReport>),
    /// A manager's "mark paid" (`reference` makes a retry change nothing).
    MarkPaid {
        registration_id: RegistrationId,
        event_id: EventId,
        reference: String,
    },
    /// Refund (part of) a registration's payment.
    Refund(payment::RefundRequest),
    /// The provider answered a refund.
    RefundSettled {
        registration_id: RegistrationId,
        refund_id: uuid::Uuid,
        state: RefundState,
    },
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
    pub event_id: EventId,
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
    /// How VAT applies to the price (none: not recorded).
    pub tax: Option<crate::pricing::TaxRule>,
    /// How long after the hold its buyer is sent the payment link if it is priced and still
    /// unpaid (at most halfway through the hold; none: never).
    pub payment_due_after: Option<std::time::Duration>,
}

/// Scan one ticket on a check-in list.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ScanCommand {
    /// The registration the ticket belongs to.
    pub registration_id: RegistrationId,
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
    /// A registration's payment as it is now.
    Payment {
        payment: Box<payment::Payment>,
        /// The hold's deadline, while it is held.
        expires_at: Option<DateTime<Utc>>,
    },
    /// A provider's report was applied (or was a redelivery: `duplicate`).
    Reported {
        duplicate: bool,
        /// Why it changed nothing, if it did not.
        ignored: Option<Ignored>,
        /// The payment's state after it.
        state: crate::payment::PaymentState,
    },
}

/// What the pool remembers of one registration. Kept small: this is per live registration.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(super) struct RegEntry {
    pub(super) quantity: u16,
    pub(super) status: RegistrationStatus,
    /// Hold deadline, milliseconds since the epoch.
    pub(super) expires_at_ms: i64,
    /// The idempotency key it was created with, to forget the key with the registration.
    pub(super) idempotency_key: Option<[u8; 16]>,
    /// The account and ticket type its seats count against (per-account limits).
    #[serde(default)]
    pub(super) account: Option<(UserId, TicketTypeId)>,
    /// The voucher it redeemed (index in the pool's vouchers).
    #[serde(default)]
    pub(super) voucher: Option<u32>,
    /// What it costs in all (minor units), as journaled with the hold (0: free, or a
    /// journal from before prices).
    #[serde(default)]
    pub(super) total_minor: i64,
    /// The total's ISO 4217 code.
    #[serde(default)]
    pub(super) currency: [u8; 3],
    /// When its buyer is due the payment link, while no payment was started (ms).
    #[serde(default)]
    pub(super) payment_due_at_ms: Option<i64>,
}

impl RegEntry {
    pub(super) fn user(&self) -> Option<UserId> {
        self.account.map(|(user, _)| user)
    }

    /// The total's currency code.
    pub(super) fn currency(&self) -> String {
        String::from_utf8_lossy(&self.currency).into_owned()
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
    pub(super) pool_id: PoolId,
    pub(super) event_id: EventId,
    pub(super) capacity: u32,
    pub(super) held: u32,
    pub(super) confirmed: u32,
    /// Sequence number of the last applied event.
    pub(super) seq: u64,
    pub(super) regs: HashMap<RegistrationId, RegEntry>,
    pub(super) idempotency: HashMap<[u8; 16], (RegistrationId, [u8; 16])>,
    pub(super) admitted: HashMap<(RegistrationId, u16), Admission>,
    /// Live holds ordered by deadline; derived from `regs`, rebuilt after decoding.
    #[serde(skip)]
    pub(super) expiries: BTreeSet<(i64, RegistrationId)>,
    /// Live seats (held + confirmed) per account and ticket type; derived from `regs`.
    #[serde(skip)]
    pub(super) per_account: HashMap<(UserId, TicketTypeId), u32>,
    /// Tickets issued so far: the next ticket gets number `tickets_issued + 1` (numbers are
    /// per pool, never reused, in confirmation order).
    #[serde(default)]
    pub(super) tickets_issued: u64,
    /// Tickets' presences on check-in lists, per registration (so a cancellation drops them
    /// with one removal).
    #[serde(default)]
    pub(super) presence: HashMap<RegistrationId, Vec<scan::Presence>>,
    /// Scan nonces already applied (bounded).
    #[serde(default)]
    pub(super) nonces: scan::Nonces,
    /// Vouchers of this pool's ticket types.
    #[serde(default)]
    pub(super) vouchers: voucher::Vouchers,
    /// Who waits for seats, in joining order.
    #[serde(default)]
    pub(super) waitlist: waitlist::Waitlist,
    /// Payments of registrations (kept after the registration is forgotten).
    #[serde(default)]
    pub(super) payments: payment::Payments,
    /// Reminders due for payments of held registrations, by time (rebuilt on load from the
    /// payments' `remind_at_ms`).
    #[serde(skip)]
    pub(super) reminders: BTreeSet<(i64, RegistrationId)>,
    /// Payment links due to unpaid holds, by time (rebuilt on load from the registrations'
    /// `payment_due_at_ms`).
    #[serde(skip)]
    pub(super) payment_dues: BTreeSet<(i64, RegistrationId)>,
}
