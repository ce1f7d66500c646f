//! Model test of the pool: thousands of random sequences of hold, confirm, cancel, expire,
//! check-in and crash-and-replay, checked after every step against a reference model.

use super::*;
use crate::error::DomainError;
use crate::ids::{
    EventId, PoolId, RegistrationId, TicketId, TicketTypeId, UserId, WaitlistEntryId,
};
use crate::model::{Attendee, EventStatus, RegistrationStatus};
use crate::payment::{Provider, ProviderReport, RefundReason, RefundState, Report};
use chrono::{DateTime, Duration, Utc};
use proptest::prelude::*;
use std::collections::HashMap;

#[derive(Clone, Debug)]
enum Op {
    Hold {
        quantity: u16,
        ttl_ms: i64,
        key: Option<u8>,
        /// One of three accounts, or anonymous.
        user: Option<u8>,
        /// A voucher (index among those created; beyond them: an unknown code).
        voucher: Option<u8>,
        /// A free ticket (confirms without payment) or one at 10.00 EUR.
        free: bool,
    },
    StartPayment(usize),
    /// A provider report on a registration's payment: `kind` 0 succeeded, 1 failed,
    /// 2 canceled, 3 refunded, 4 disputed; under one of two provider references; the same
    /// fields make the same provider event id (a redelivery).
    Report {
        reg: usize,
        kind: u8,
        reference: u8,
        wrong_amount: bool,
        refunded: u8,
    },
    MarkPaid(usize),
    Refund {
        reg: usize,
        amount: Option<i64>,
    },
    SettleRefund {
        which: usize,
        ok: bool,
    },
    CreateVoucher {
        max_uses: u32,
        reserve: bool,
        /// Valid for this long (ms) from its creation.
        valid_ms: Option<i64>,
    },
    DeactivateVoucher(usize),
    JoinWaitlist {
        user: u8,
        quantity: u16,
    },
    LeaveWaitlist(usize),
    Confirm(usize),
    Cancel(usize),
    CheckIn {
        reg: usize,
        seat: u16,
    },
    Advance(i64),
    ExpireDue,
    CrashAndReplay {
        via_snapshot: bool,
    },
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => (1u16..5, 1i64..2_000, proptest::option::of(0u8..6), proptest::option::of(0u8..3),
              proptest::option::of(0u8..4), any::<bool>())
            .prop_map(|(quantity, ttl_ms, key, user, voucher, free)| Op::Hold { quantity, ttl_ms, key, user, voucher, free }),
        3 => any::<usize>().prop_map(Op::StartPayment),
        4 => (any::<usize>(), 0u8..5, 0u8..2, proptest::bool::weighted(0.1), 0u8..3)
            .prop_map(|(reg, kind, reference, wrong_amount, refunded)| Op::Report { reg, kind, reference, wrong_amount, refunded }),
        1 => any::<usize>().prop_map(Op::MarkPaid),
        1 => (any::<usize>(), proptest::option::of(1i64..2_500)).prop_map(|(reg, amount)| Op::Refund { reg, amount }),
        1 => (any::<usize>(), any::<bool>()).prop_map(|(which, ok)| Op::SettleRefund { which, ok }),
        1 => (1u32..6, any::<bool>(), proptest::option::of(1i64..3_000))
            .prop_map(|(max_uses, reserve, valid_ms)| Op::CreateVoucher { max_uses, reserve, valid_ms }),
        1 => any::<usize>().prop_map(Op::DeactivateVoucher),
        2 => (0u8..3, 1u16..4).prop_map(|(user, quantity)| Op::JoinWaitlist { user, quantity }),
        1 => any::<usize>().prop_map(Op::LeaveWaitlist),
        2 => any::<usize>().prop_map(Op::Confirm),
        1 => any::<usize>().prop_map(Op::Cancel),
        2 => (any::<usize>(), 0u16..5).prop_map(|(reg, seat)| Op::CheckIn { reg, seat }),
        2 => (0i64..1_500).prop_map(Op::Advance),
        1 => Just(Op::ExpireDue),
        1 => any::<bool>().prop_map(|via_snapshot| Op::CrashAndReplay { via_snapshot }),
    ]
}

/// The reference model: what each registration should be, by plain bookkeeping.
#[derive(Default)]
struct Model {
    regs: Vec<(RegistrationId, u16, RegistrationStatus, i64)>,
    admitted: std::collections::HashSet<(RegistrationId, u16)>,
    /// The account of each registration made by one.
    users: HashMap<RegistrationId, UserId>,
    /// Vouchers created: (max uses, reserves seats, active).
    vouchers: Vec<(u32, bool, bool)>,
    /// Their end of validity (ms).
    voucher_until: Vec<Option<i64>>,
    /// The voucher each registration redeemed.
    voucher_of: HashMap<RegistrationId, usize>,
    /// Waiting entries in joining order: (id, account, seats).
    waiting: Vec<(WaitlistEntryId, UserId, u16)>,
    /// Registrations that cost money (confirmed only once paid).
    priced: std::collections::HashSet<RegistrationId>,
}

/// Live seats per account allowed of the one ticket type in the model test.
const MAX_PER_ACCOUNT: u16 = 5;

impl Model {
    /// Held + confirmed seats of `user`.
    fn live_seats_of(&self, user: UserId) -> u32 {
        self.regs
            .iter()
            .filter(|r| self.users.get(&r.0) == Some(&user))
            .filter(|r| {
                matches!(
                    r.2,
                    RegistrationStatus::Held | RegistrationStatus::Confirmed
                )
            })
            .map(|r| u32::from(r.1))
            .sum()
    }

    /// Seats of live registrations that redeemed voucher `v`.
    fn uses(&self, v: usize) -> u32 {
        self.regs
            .iter()
            .filter(|r| self.voucher_of.get(&r.0) == Some(&v))
            .filter(|r| {
                matches!(
                    r.2,
                    RegistrationStatus::Held | RegistrationStatus::Confirmed
                )
            })
            .map(|r| u32::from(r.1))
            .sum()
    }

    /// Seats set aside by active reserving vouchers.
    fn reserved(&self) -> u32 {
        (0..self.vouchers.len())
            .filter(|&v| self.vouchers[v].1 && self.vouchers[v].2)
            .map(|v| self.vouchers[v].0 - self.uses(v))
            .sum()
    }

    fn counts(&self) -> (u32, u32) {
        self.regs
            .iter()
            .fold((0, 0), |(h, c), (_, q, s, _)| match s {
                RegistrationStatus::Held => (h + u32::from(*q), c),
                RegistrationStatus::Confirmed => (h, c + u32::from(*q)),
                _ => (h, c),
            })
    }
}

fn token(key: u8) -> IdempotencyToken {
    IdempotencyToken {
        key: [key; 16],
        request: [key; 16],
    }
}

/// The attendee of the hand-written tests.
fn attendee_a() -> Attendee {
    Attendee {
        name: "A".into(),
        email: "a@example.com".into(),
    }
}

/// An anonymous one-seat hold of a free ticket for ten minutes.
/// Runs commands on a published event's pool, each of which must succeed, recording their
/// events in `journal`; each call answers its events.
fn recorder(
    journal: &mut Vec<PoolEvent>,
) -> impl FnMut(&mut PoolState, PoolCommand, DateTime<Utc>) -> Vec<PoolEvent> + '_ {
    move |state, cmd, at| {
        let (events, r) = state.execute(cmd, EventStatus::Published, at);
        assert!(r.is_ok(), "{r:?}");
        journal.extend(events.clone());
        events
    }
}

/// `journal` applied to an empty pool of `capacity` seats like `state`'s.
fn replayed(state: &PoolState, capacity: u32, journal: &[PoolEvent]) -> PoolState {
    let mut rebuilt = PoolState::new(state.event_id, state.pool_id(), capacity);
    for (i, e) in journal.iter().enumerate() {
        rebuilt.apply(i as u64 + 1, e);
    }
    rebuilt
}

fn one_seat_hold(event_id: EventId, id: RegistrationId, tt: TicketTypeId) -> HoldCommand {
    HoldCommand {
        registration_id: id,
        event_id,
        ticket_type_id: tt,
        quantity: 1,
        attendee: attendee_a(),
        user_id: None,
        max_per_account: None,
        ttl: Duration::minutes(10),
        idempotency: None,
        unit_price_minor: 0,
        currency: "EUR".into(),
        voucher: None,
        tax: None,
        payment_due_after: None,
    }
}

/// A one-seat place on the waiting list of `user`, joined at `t0`, at 1.00 EUR.
fn one_seat_place(user: UserId, tt: TicketTypeId, t0: DateTime<Utc>) -> waitlist::WaitlistEntry {
    waitlist::WaitlistEntry {
        id: WaitlistEntryId::new(),
        user_id: user,
        ticket_type_id: tt,
        quantity: 1,
        attendee: attendee_a(),
        unit_price_minor: 100,
        currency: "EUR".into(),
        max_per_account: None,
        offer_ttl_secs: 60,
        joined_at: t0,
        sales_end: None,
        tax: None,
    }
}

fn run(capacity: u32, ops: Vec<Op>) {
    let event_id = EventId::new();
    let pool_id = PoolId::new();
    let mut state = PoolState::new(event_id, pool_id, capacity);
    let mut journal: Vec<PoolEvent> = Vec::new();
    let mut snapshot: Option<PoolState> = None;
    let mut model = Model::default();
    let mut now = DateTime::from_timestamp_millis(1_700_000_000_000).unwrap();
    let attendee = Attendee {
        name: "A".into(),
        email: "a@example.com".into(),
    };
    let ticket_type_id = TicketTypeId::new();
    let accounts = [UserId::new(), UserId::new(), UserId::new()];
    let code = |v: usize| format!("CODE{v}");

    for op in ops {
        let command = match &op {
            Op::Hold {
                quantity,
                ttl_ms,
                key,
                user,
                voucher,
                free,
            } => PoolCommand::Hold(Box::new(HoldCommand {
                registration_id: RegistrationId::new(),
                event_id,
                ticket_type_id,
                quantity: *quantity,
                attendee: attendee.clone(),
                user_id: user.map(|u| accounts[usize::from(u)]),
                max_per_account: Some(MAX_PER_ACCOUNT),
                ttl: Duration::milliseconds(*ttl_ms),
                idempotency: key.map(token),
                unit_price_minor: if *free { 0 } else { 1_000 },
                currency: "EUR".into(),
                voucher: voucher.map(|v| code(usize::from(v))),
                tax: None,
                // Payment links fall due among the expiries (and must replay the same).
                payment_due_after: Some(std::time::Duration::from_millis(200)),
            })),
            Op::StartPayment(i) => PoolCommand::StartPayment(Box::new(payment::StartPayment {
                registration_id: pick(&model, *i),
                event_id,
                provider: Provider::Stripe,
                hold_until: now + Duration::milliseconds(3_000),
                currency: "EUR".into(),
                max_per_account: Some(MAX_PER_ACCOUNT),
                buyer_email: "a@example.com".into(),
                // Reminders fall due among the expiries (and must replay to the same state).
                remind_at: Some(now + Duration::milliseconds(1_500)),
                billing: None,
            })),
            Op::Report {
                reg,
                kind,
                reference,
                wrong_amount,
                refunded,
            } => {
                let id = pick(&model, *reg);
                let total = total_of(&journal, id);
                PoolCommand::Report(
                    id,
                    Box::new(report(total, *kind, *reference, *wrong_amount, *refunded)),
                )
            }
            Op::MarkPaid(i) => PoolCommand::MarkPaid {
                registration_id: pick(&model, *i),
                event_id,
                reference: format!("manual-{i}"),
            },
            Op::Refund { reg, amount } => PoolCommand::Refund(payment::RefundRequest {
                registration_id: pick(&model, *reg),
                amount_minor: *amount,
                reason: RefundReason::Requested,
            }),
            Op::SettleRefund { which, ok } => {
                let pending: Vec<_> = state
                    .payments()
                    .pending_refunds()
                    .map(|(id, r)| (id, r.id))
                    .collect();
                let (registration_id, refund_id) = pending
                    .get(which % pending.len().max(1))
                    .copied()
                    .unwrap_or((RegistrationId::new(), uuid::Uuid::new_v4()));
                PoolCommand::RefundSettled {
                    registration_id,
                    refund_id,
                    state: if *ok {
                        RefundState::Succeeded
                    } else {
                        RefundState::Failed
                    },
                }
            }
            Op::CreateVoucher {
                max_uses,
                reserve,
                valid_ms,
            } => PoolCommand::CreateVoucher(Box::new(voucher::VoucherDef {
                code: code(model.vouchers.len()),
                ticket_types: vec![ticket_type_id],
                discount: Some(crate::pricing::Discount::Percent(10)),
                max_uses: *max_uses,
                valid_from: None,
                valid_until: valid_ms.map(|ms| now + Duration::milliseconds(ms)),
                reserve_seats: *reserve,
            })),
            Op::DeactivateVoucher(v) => {
                PoolCommand::DeactivateVoucher(code(v % model.vouchers.len().max(1)))
            }
            Op::JoinWaitlist { user, quantity } => {
                PoolCommand::JoinWaitlist(Box::new(waitlist::WaitlistEntry {
                    id: WaitlistEntryId::new(),
                    user_id: accounts[usize::from(*user)],
                    ticket_type_id,
                    quantity: *quantity,
                    attendee: attendee.clone(),
                    unit_price_minor: 1_000,
                    currency: "EUR".into(),
                    max_per_account: Some(MAX_PER_ACCOUNT),
                    offer_ttl_secs: 1,
                    joined_at: now,
                    sales_end: None,
                    tax: None,
                }))
            }
            Op::LeaveWaitlist(i) => match model.waiting.get(i % model.waiting.len().max(1)) {
                Some((entry_id, user_id, _)) => PoolCommand::LeaveWaitlist {
                    entry_id: *entry_id,
                    user_id: *user_id,
                },
                None => PoolCommand::LeaveWaitlist {
                    entry_id: WaitlistEntryId::new(),
                    user_id: accounts[0],
                },
            },
            Op::Confirm(i) | Op::Cancel(i) if model.regs.is_empty() => {
                let _ = i;
                PoolCommand::Confirm(RegistrationId::new())
            }
            Op::Confirm(i) => PoolCommand::Confirm(model.regs[i % model.regs.len()].0),
            Op::Cancel(i) => PoolCommand::Cancel(model.regs[i % model.regs.len()].0),
            Op::CheckIn { reg, seat } => {
                let registration_id = if model.regs.is_empty() {
                    RegistrationId::new()
                } else {
                    model.regs[reg % model.regs.len()].0
                };
                PoolCommand::Scan(Box::new(ScanCommand {
                    registration_id,
                    ticket_id: TicketId::new(),
                    ticket_index: *seat,
                    ticket_type_id,
                    list: scan::ListRules::default_list(),
                    direction: scan::Direction::Entry,
                    gate: Some("north".into()),
                    scanned_at: None,
                    nonce: None,
                }))
            }
            Op::Advance(ms) => {
                now += Duration::milliseconds(*ms);
                continue;
            }
            Op::ExpireDue => PoolCommand::ExpireDue,
            Op::CrashAndReplay { via_snapshot } => {
                let mut rebuilt = match (&snapshot, via_snapshot) {
                    (Some(snap), true) => {
                        let bytes = rmp_serde::to_vec_named(snap).unwrap();
                        let mut s: PoolState = rmp_serde::from_slice(&bytes).unwrap();
                        s.restore_derived().unwrap();
                        s
                    }
                    _ => PoolState::new(event_id, pool_id, capacity),
                };
                let from = rebuilt.seq() as usize;
                for (i, e) in journal.iter().enumerate().skip(from) {
                    rebuilt.apply(i as u64 + 1, e);
                }
                assert_eq!(
                    rebuilt, state,
                    "state rebuilt from the journal differs from live state"
                );
                state = rebuilt;
                snapshot = Some(state.clone());
                continue;
            }
        };

        // What the model expects, decided before the pool decides.
        let before = model.counts();
        let reserved_before = model.reserved();
        let (events, outcome) = state.execute(command.clone(), EventStatus::Published, now);
        journal.extend(events.iter().cloned());

        match (&command, &outcome) {
            (
                PoolCommand::Hold(cmd),
                Ok(PoolOutcome::Held {
                    replayed: false,
                    expires_at,
                    price,
                    ..
                }),
            ) => {
                assert!(before.0 + before.1 + reserved_before <= capacity);
                let price = price.as_ref().expect("a new hold has a price");
                assert_eq!(
                    price.subtotal_minor,
                    cmd.unit_price_minor * i64::from(cmd.quantity)
                );
                if let Some(c) = &cmd.voucher {
                    let v: usize = c[4..].parse().unwrap();
                    let (max, reserve, active) = model.vouchers[v];
                    assert!(active, "redeemed a deactivated voucher");
                    assert!(
                        model.voucher_until[v].is_none_or(|t| now.timestamp_millis() < t),
                        "redeemed an expired voucher"
                    );
                    assert!(
                        model.uses(v) + u32::from(cmd.quantity) <= max,
                        "voucher overused"
                    );
                    let own = if reserve { max - model.uses(v) } else { 0 };
                    assert!(
                        before.0 + before.1 + reserved_before - own + u32::from(cmd.quantity)
                            <= capacity
                    );
                    assert_eq!(
                        price.discount_minor,
                        cmd.unit_price_minor / 10 * i64::from(cmd.quantity)
                    );
                    model.voucher_of.insert(cmd.registration_id, v);
                } else {
                    assert!(
                        before.0 + before.1 + reserved_before + u32::from(cmd.quantity) <= capacity
                    );
                    assert_eq!(price.discount_minor, 0);
                }
                if let Some(user) = cmd.user_id {
                    assert!(
                        model.live_seats_of(user) + u32::from(cmd.quantity)
                            <= u32::from(MAX_PER_ACCOUNT),
                        "an account got more than its limit"
                    );
                    model.users.insert(cmd.registration_id, user);
                }
                model.regs.push((
                    cmd.registration_id,
                    cmd.quantity,
                    RegistrationStatus::Held,
                    expires_at.timestamp_millis(),
                ));
                if price.total_minor > 0 {
                    model.priced.insert(cmd.registration_id);
                }
            }
            (
                PoolCommand::StartPayment(_)
                | PoolCommand::Report(..)
                | PoolCommand::MarkPaid { .. }
                | PoolCommand::Refund(_)
                | PoolCommand::RefundSettled { .. },
                outcome,
            ) => follow_payment(
                &mut model,
                &state,
                outcome,
                &events,
                capacity - before.0 - before.1,
            ),
            (
                PoolCommand::Hold(cmd),
                Ok(PoolOutcome::Held {
                    replayed: true,
                    registration_id,
                    ..
                }),
            ) => {
                assert!(cmd.idempotency.is_some(), "replay without a key");
                assert!(model.regs.iter().any(|r| r.0 == *registration_id));
            }
            (PoolCommand::Hold(cmd), Err(DomainError::AccountLimitReached { max, held })) => {
                let user = cmd.user_id.expect("a limit without an account");
                assert_eq!(*held, model.live_seats_of(user));
                assert_eq!(*max, MAX_PER_ACCOUNT);
                assert!(held + u32::from(cmd.quantity) > u32::from(*max));
            }
            (PoolCommand::Hold(cmd), Err(DomainError::SoldOut { available })) => {
                let own = cmd.voucher.as_ref().map_or(0, |c| {
                    let v: usize = c[4..].parse().unwrap();
                    let (max, reserve, _) = model.vouchers[v];
                    if reserve { max - model.uses(v) } else { 0 }
                });
                assert_eq!(
                    *available,
                    capacity - before.0 - before.1 - reserved_before + own
                );
                assert!(u32::from(cmd.quantity) > *available);
            }
            (PoolCommand::Hold(cmd), Err(DomainError::VoucherNotValid { reason })) => {
                let v: usize = cmd.voucher.as_ref().expect("no voucher")[4..]
                    .parse()
                    .unwrap();
                match *reason {
                    "unknown" => assert!(v >= model.vouchers.len()),
                    "deactivated" => assert!(!model.vouchers[v].2),
                    "expired" => {
                        assert!(model.voucher_until[v].is_some_and(|t| t <= now.timestamp_millis()))
                    }
                    other => panic!("unexpected refusal {other}"),
                }
            }
            (PoolCommand::Hold(cmd), Err(DomainError::VoucherUsedUp { remaining })) => {
                let v: usize = cmd.voucher.as_ref().expect("no voucher")[4..]
                    .parse()
                    .unwrap();
                assert_eq!(*remaining, model.vouchers[v].0 - model.uses(v));
                assert!(u32::from(cmd.quantity) > *remaining);
            }
            (PoolCommand::CreateVoucher(def), Ok(PoolOutcome::Voucher(_))) => {
                if def.reserve_seats {
                    assert!(before.0 + before.1 + reserved_before + def.max_uses <= capacity);
                }
                model.vouchers.push((def.max_uses, def.reserve_seats, true));
                model
                    .voucher_until
                    .push(def.valid_until.map(|t| t.timestamp_millis()));
            }
            (PoolCommand::CreateVoucher(def), Err(DomainError::SoldOut { available })) => {
                assert!(def.reserve_seats);
                assert_eq!(*available, capacity - before.0 - before.1 - reserved_before);
                assert!(def.max_uses > *available);
                // The code is not taken: the next creation reuses the index.
            }
            (PoolCommand::DeactivateVoucher(c), Ok(PoolOutcome::Voucher(v))) => {
                let i: usize = c[4..].parse().unwrap();
                assert!(!v.active);
                model.vouchers[i].2 = false;
            }
            (PoolCommand::DeactivateVoucher(_), Err(DomainError::VoucherNotFound)) => {
                assert!(model.vouchers.is_empty());
            }
            (PoolCommand::JoinWaitlist(e), Ok(PoolOutcome::Waitlisted { position, .. })) => {
                assert!(
                    !model.waiting.iter().any(|w| w.1 == e.user_id),
                    "one place per account"
                );
                let free = capacity - before.0 - before.1 - reserved_before;
                assert!(u32::from(e.quantity) > free, "joined with seats to buy");
                model.waiting.push((e.id, e.user_id, e.quantity));
                assert_eq!(*position, model.waiting.len());
            }
            (PoolCommand::JoinWaitlist(e), Err(DomainError::NotSoldOut { available })) => {
                assert_eq!(*available, capacity - before.0 - before.1 - reserved_before);
                assert!(u32::from(e.quantity) <= *available);
            }
            (PoolCommand::JoinWaitlist(e), Err(DomainError::AccountLimitReached { max, held })) => {
                assert_eq!(*held, model.live_seats_of(e.user_id));
                assert!(held + u32::from(e.quantity) > u32::from(*max));
            }
            (PoolCommand::JoinWaitlist(e), Err(DomainError::AlreadyWaiting)) => {
                assert!(model.waiting.iter().any(|w| w.1 == e.user_id));
            }
            (PoolCommand::LeaveWaitlist { entry_id, .. }, Ok(PoolOutcome::LeftWaitlist)) => {
                let at = model.waiting.iter().position(|w| w.0 == *entry_id);
                model.waiting.remove(at.expect("left a place not waiting"));
            }
            (
                PoolCommand::LeaveWaitlist { entry_id, .. },
                Err(DomainError::WaitlistEntryNotFound),
            ) => {
                assert!(!model.waiting.iter().any(|w| w.0 == *entry_id));
            }
            (PoolCommand::Confirm(id), result) | (PoolCommand::Cancel(id), result) => {
                if let Some(r) = model.regs.iter_mut().find(|r| r.0 == *id) {
                    let expired = r.2 == RegistrationStatus::Held && now.timestamp_millis() >= r.3;
                    match result {
                        Err(DomainError::PaymentRequired { total_minor, .. }) => {
                            assert!(
                                model.priced.contains(id),
                                "a free registration needs no payment"
                            );
                            assert!(*total_minor > 0);
                            assert_eq!(r.2, RegistrationStatus::Held);
                        }
                        Ok(PoolOutcome::Confirmed { tickets }) => {
                            assert!(!model.priced.contains(id), "confirmed without payment");
                            assert!(!expired && r.2 == RegistrationStatus::Held);
                            assert_eq!(tickets.len(), usize::from(r.1));
                            r.2 = RegistrationStatus::Confirmed;
                        }
                        Ok(PoolOutcome::Canceled) => {
                            assert!(!expired);
                            assert!(matches!(
                                r.2,
                                RegistrationStatus::Held | RegistrationStatus::Confirmed
                            ));
                            r.2 = RegistrationStatus::Canceled;
                        }
                        Err(DomainError::HoldExpired { .. }) => {
                            assert!(expired);
                            r.2 = RegistrationStatus::Expired;
                        }
                        Err(DomainError::InvalidRegistrationState { status, .. }) => {
                            assert_eq!(*status, r.2)
                        }
                        // Terminal registrations are forgotten by the pool.
                        Err(DomainError::RegistrationNotFound) => {
                            assert!(matches!(
                                r.2,
                                RegistrationStatus::Expired | RegistrationStatus::Canceled
                            ))
                        }
                        other => panic!("unexpected {other:?}"),
                    }
                } else {
                    assert_eq!(result, &Err(DomainError::RegistrationNotFound));
                }
            }
            (PoolCommand::Scan(cmd), result) => {
                let known = model.regs.iter().find(|r| r.0 == cmd.registration_id);
                let key = (cmd.registration_id, cmd.ticket_index);
                match result {
                    Ok(PoolOutcome::Scanned {
                        result: scan::ScanResult::Admitted,
                        ..
                    }) => {
                        let r = known.expect("admitted an unknown registration");
                        assert_eq!(r.2, RegistrationStatus::Confirmed);
                        assert!(cmd.ticket_index < r.1);
                        assert!(model.admitted.insert(key), "admitted twice");
                    }
                    Ok(PoolOutcome::Scanned {
                        result: scan::ScanResult::Duplicate,
                        ..
                    }) => {
                        assert!(model.admitted.contains(&key))
                    }
                    // A canceled registration is forgotten with its admissions: its tickets are
                    // unknown to the pool (the facade reports them revoked).
                    Err(DomainError::TicketNotFound)
                        if known.map(|r| r.2) == Some(RegistrationStatus::Canceled) => {}
                    Err(_) => assert!(!model.admitted.contains(&key)),
                    other => panic!("unexpected {other:?}"),
                }
            }
            (PoolCommand::ExpireDue, Ok(PoolOutcome::Expired(n))) => {
                let mut expected = 0;
                for r in model.regs.iter_mut() {
                    if r.2 == RegistrationStatus::Held && r.3 <= now.timestamp_millis() {
                        r.2 = RegistrationStatus::Expired;
                        expected += 1;
                    }
                }
                assert_eq!(*n, expected);
                // Reserving vouchers past their validity give their seats back.
                for v in 0..model.vouchers.len() {
                    let (_, reserve, active) = model.vouchers[v];
                    if reserve
                        && active
                        && model.voucher_until[v].is_some_and(|t| t <= now.timestamp_millis())
                    {
                        model.vouchers[v].2 = false;
                    }
                }
            }
            (cmd, outcome) => panic!("unexpected outcome {outcome:?} for {cmd:?}"),
        }

        // Offers made in this turn: each to a place still waiting, once; each a hold.
        for e in &events {
            if let PoolEvent::WaitlistOffered {
                registration_id,
                entry_id,
                user_id,
                quantity,
                expires_at,
                ..
            } = e
            {
                let at = model.waiting.iter().position(|w| w.0 == *entry_id);
                let (_, user, wanted) = model
                    .waiting
                    .remove(at.expect("offer to a place not waiting"));
                assert_eq!((user, wanted), (*user_id, *quantity));
                model.users.insert(*registration_id, *user_id);
                model.priced.insert(*registration_id);
                model.regs.push((
                    *registration_id,
                    *quantity,
                    RegistrationStatus::Held,
                    expires_at.timestamp_millis(),
                ));
            }
        }

        let counts = state.counts();
        assert!(
            counts.held + counts.confirmed + counts.reserved <= counts.capacity,
            "oversold"
        );
        // Free seats never sit unused while a waiting place fits them.
        let free = counts.capacity - counts.held - counts.confirmed - counts.reserved;
        for (_, user, wanted) in &model.waiting {
            let fits = u32::from(*wanted) <= free
                && model.live_seats_of(*user) + u32::from(*wanted) <= u32::from(MAX_PER_ACCOUNT);
            assert!(!fits, "a waiting place fits {free} free seats");
        }
        assert_eq!(
            state.waitlist().len(),
            model.waiting.len(),
            "waiting list differs"
        );
        assert_eq!(counts.reserved, model.reserved(), "reserved seats differ");
        for v in 0..model.vouchers.len() {
            let voucher = state.vouchers().by_code(&code(v)).expect("voucher kept");
            assert_eq!(voucher.uses, model.uses(v), "voucher uses differ");
            assert!(voucher.uses <= voucher.def.max_uses, "voucher overused");
            assert_eq!(voucher.active, model.vouchers[v].2);
        }
        for user in accounts {
            let live = state.live_seats_of(user, ticket_type_id);
            assert_eq!(live, model.live_seats_of(user), "per-account seats differ");
            assert!(
                live <= u32::from(MAX_PER_ACCOUNT),
                "per-account limit exceeded"
            );
        }
        assert_eq!(
            (counts.held, counts.confirmed),
            model.counts(),
            "counts differ from the model"
        );
        for (id, _, status, _) in &model.regs {
            let live = matches!(
                status,
                RegistrationStatus::Held | RegistrationStatus::Confirmed
            );
            let expected = live.then_some(*status);
            assert_eq!(
                state.registration_status(*id),
                expected,
                "live registrations only"
            );
        }
        // Pool memory is bounded by live registrations, which hold at least one seat each.
        assert!(state.registration_count() <= counts.capacity as usize);
        check_payments(&model, &state);
    }

    // Ticket numbers: 1, 2, 3, ... in confirmation order, none reused.
    let mut next_number = 1;
    for e in &journal {
        if let PoolEvent::RegistrationConfirmed {
            tickets,
            first_number,
            ..
        } = e
        {
            assert_eq!(*first_number, next_number, "ticket numbers run on");
            next_number += tickets.len() as u64;
        }
    }

    // Final replay from the whole journal equals the live state.
    assert_eq!(replayed(&state, capacity, &journal), state);
}

/// A registration of the model (or an unknown one when there is none).
fn pick(model: &Model, i: usize) -> RegistrationId {
    if model.regs.is_empty() {
        RegistrationId::new()
    } else {
        model.regs[i % model.regs.len()].0
    }
}

/// A registration's total as journaled with its hold or offer (0 if unknown).
fn total_of(journal: &[PoolEvent], id: RegistrationId) -> i64 {
    journal
        .iter()
        .find_map(|e| match e {
            PoolEvent::SeatsHeld {
                registration_id,
                price,
                ..
            } if *registration_id == id => price.as_ref().map(|p| p.total_minor),
            PoolEvent::WaitlistOffered {
                registration_id,
                price,
                ..
            } if *registration_id == id => Some(price.total_minor),
            _ => None,
        })
        .unwrap_or(0)
}

/// A provider's report; the same fields give the same event id, as a redelivery does.
fn report(total: i64, kind: u8, reference: u8, wrong_amount: bool, refunded: u8) -> ProviderReport {
    let amount = total + i64::from(wrong_amount);
    let refunded_minor = total * i64::from(refunded) / 2;
    let report = match kind {
        0 => Report::Succeeded {
            amount_minor: amount,
            currency: "EUR".into(),
        },
        1 => Report::Failed {
            reason: "card_declined".into(),
        },
        2 => Report::Canceled,
        3 => Report::Refunded {
            captured_minor: Some(amount),
            refunded_minor,
            currency: "EUR".into(),
        },
        _ => Report::Disputed,
    };
    ProviderReport {
        provider: Provider::Stripe,
        event_id: format!("evt_{kind}_{reference}_{wrong_amount}_{refunded}"),
        provider_ref: Some(format!("pi_{reference}")),
        report,
    }
}

/// Follows what a payment command did to the seats, from its events, and checks it.
fn follow_payment(
    model: &mut Model,
    state: &PoolState,
    outcome: &Result<PoolOutcome, DomainError>,
    events: &[PoolEvent],
    free_before: u32,
) {
    if let Ok(PoolOutcome::Reported {
        duplicate: true, ..
    }) = outcome
    {
        assert!(events.is_empty(), "a redelivery decided something");
    }
    let mut retaken = 0u32;
    for e in events {
        let status_of = |model: &mut Model, id: RegistrationId| {
            let at = model.regs.iter().position(|r| r.0 == id);
            at.expect("event for a registration the model knows")
        };
        match e {
            PoolEvent::PaymentStarted {
                registration_id,
                hold_until,
                ..
            } => {
                let i = status_of(model, *registration_id);
                assert_eq!(model.regs[i].2, RegistrationStatus::Held);
                model.regs[i].3 = model.regs[i].3.max(hold_until.timestamp_millis());
            }
            PoolEvent::SeatsRetaken {
                registration_id, ..
            } => {
                let i = status_of(model, *registration_id);
                assert_eq!(
                    model.regs[i].2,
                    RegistrationStatus::Expired,
                    "retook a live registration"
                );
                retaken += u32::from(model.regs[i].1);
                assert!(
                    retaken <= free_before,
                    "a late payment took seats that were not free"
                );
                model.regs[i].2 = RegistrationStatus::Held;
            }
            PoolEvent::RegistrationConfirmed {
                registration_id, ..
            } => {
                let i = status_of(model, *registration_id);
                assert_eq!(model.regs[i].2, RegistrationStatus::Held);
                let paid = state.payment(*registration_id).is_some_and(|p| p.paid());
                assert!(paid, "confirmed by a payment that is not the total");
                model.regs[i].2 = RegistrationStatus::Confirmed;
            }
            PoolEvent::RegistrationCanceled {
                registration_id, ..
            } => {
                let i = status_of(model, *registration_id);
                assert!(matches!(
                    model.regs[i].2,
                    RegistrationStatus::Held | RegistrationStatus::Confirmed
                ));
                model.regs[i].2 = RegistrationStatus::Canceled;
            }
            PoolEvent::HoldExpired {
                registration_id, ..
            } => {
                let i = status_of(model, *registration_id);
                assert_eq!(model.regs[i].2, RegistrationStatus::Held);
                model.regs[i].2 = RegistrationStatus::Expired;
            }
            _ => {}
        }
    }
}

/// Money is consistent: refunds within captures, confirmed registrations paid.
fn check_payments(model: &Model, state: &PoolState) {
    for (id, _, status, _) in &model.regs {
        let payment = state.payment(*id);
        if *status == RegistrationStatus::Confirmed && model.priced.contains(id) {
            assert!(payment.is_some_and(|p| p.paid()), "confirmed and not paid");
        }
        if let Some(p) = payment {
            assert!(
                p.refunded_minor() <= p.captured_minor(),
                "refunded more than captured"
            );
            assert!(p.refundable_minor() >= 0);
            assert!(
                p.refunded_minor() + p.refunding_minor() <= p.captured_minor() + p.refunded_minor()
            );
            assert!(p.attempt <= payment::ATTEMPTS_MAX);
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2_000, ..ProptestConfig::default() })]

    #[test]
    fn pool_never_oversells_and_replays_to_live_state(capacity in 1u32..12, ops in proptest::collection::vec(op(), 1..80)) {
        run(capacity, ops);
    }
}

#[test]
fn confirm_racing_expiry_ends_in_exactly_one_state() {
    let event_id = EventId::new();
    let mut state = PoolState::new(event_id, PoolId::new(), 2);
    let t0 = DateTime::from_timestamp_millis(1_700_000_000_000).unwrap();
    let id = RegistrationId::new();
    let hold = HoldCommand {
        registration_id: id,
        event_id,
        ticket_type_id: TicketTypeId::new(),
        quantity: 2,
        attendee: Attendee {
            name: "A".into(),
            email: "a@example.com".into(),
        },
        user_id: None,
        max_per_account: None,
        ttl: Duration::milliseconds(1_000),
        idempotency: None,
        unit_price_minor: 0,
        currency: "EUR".into(),
        voucher: None,
        tax: None,
        payment_due_after: None,
    };
    let (_, r) = state.execute(
        PoolCommand::Hold(Box::new(hold)),
        EventStatus::Published,
        t0,
    );
    assert!(r.is_ok());
    // The confirm arrives at the deadline, before the timer's ExpireDue: expiry wins.
    let at_deadline = t0 + Duration::milliseconds(1_000);
    let (events, r) = state.execute(
        PoolCommand::Confirm(id),
        EventStatus::Published,
        at_deadline,
    );
    assert!(matches!(r, Err(DomainError::HoldExpired { .. })));
    assert!(matches!(events.as_slice(), [PoolEvent::HoldExpired { .. }]));
    // The timer then finds nothing to expire, and the seats are counted once.
    let (events, r) = state.execute(PoolCommand::ExpireDue, EventStatus::Published, at_deadline);
    assert_eq!(r, Ok(PoolOutcome::Expired(0)));
    assert!(events.is_empty());
    assert_eq!(
        state.counts(),
        PoolCounts {
            capacity: 2,
            held: 0,
            confirmed: 0,
            reserved: 0,
        }
    );
}

#[test]
fn places_whose_sales_ended_leave_the_line_instead_of_getting_seats() {
    let event_id = EventId::new();
    let mut state = PoolState::new(event_id, PoolId::new(), 1);
    let t0 = DateTime::from_timestamp_millis(1_700_000_000_000).unwrap();
    let (tt, user) = (TicketTypeId::new(), UserId::new());
    let id = RegistrationId::new();
    let (_, r) = state.execute(
        PoolCommand::Hold(Box::new(one_seat_hold(event_id, id, tt))),
        EventStatus::Published,
        t0,
    );
    assert!(r.is_ok());
    let entry = waitlist::WaitlistEntry {
        max_per_account: Some(1),
        sales_end: Some(t0 + Duration::seconds(1)),
        ..one_seat_place(user, tt, t0)
    };
    let (_, r) = state.execute(
        PoolCommand::JoinWaitlist(Box::new(entry.clone())),
        EventStatus::Published,
        t0,
    );
    assert!(matches!(r, Ok(PoolOutcome::Waitlisted { position: 1, .. })));
    // After the end of sales the seat comes back: the place leaves, general sale gets it.
    let (events, r) = state.execute(
        PoolCommand::Cancel(id),
        EventStatus::Published,
        t0 + Duration::seconds(2),
    );
    assert_eq!(r, Ok(PoolOutcome::Canceled));
    assert!(matches!(
        events.as_slice(),
        [
            PoolEvent::RegistrationCanceled { .. },
            PoolEvent::WaitlistLeft { .. }
        ]
    ));
    assert_eq!(state.counts().available(), 1);
    assert!(state.waitlist().is_empty());
}

#[test]
fn a_scan_says_when_it_becomes_the_tickets_first_admission_on_any_list() {
    let event_id = EventId::new();
    let mut state = PoolState::new(event_id, PoolId::new(), 2);
    let t0 = DateTime::from_timestamp_millis(1_700_000_000_000).unwrap();
    let (id, tt) = (RegistrationId::new(), TicketTypeId::new());
    let hold = HoldCommand {
        registration_id: id,
        event_id,
        ticket_type_id: tt,
        quantity: 2,
        attendee: Attendee {
            name: "A".into(),
            email: "a@example.com".into(),
        },
        user_id: None,
        max_per_account: None,
        ttl: Duration::minutes(10),
        idempotency: None,
        unit_price_minor: 0,
        currency: "EUR".into(),
        voucher: None,
        tax: None,
        payment_due_after: None,
    };
    let published = EventStatus::Published;
    assert!(
        state
            .execute(PoolCommand::Hold(Box::new(hold)), published, t0)
            .1
            .is_ok()
    );
    let (_, confirmed) = state.execute(PoolCommand::Confirm(id), published, t0);
    let Ok(PoolOutcome::Confirmed { tickets, .. }) = confirmed else {
        panic!("{confirmed:?}")
    };
    let reentry = scan::ListRules {
        id: Some(crate::ids::CheckInListId::new()),
        allow_reentry: true,
        ..scan::ListRules::default_list()
    };
    let mut scan_seat =
        |index: u16, list: &scan::ListRules, direction, offline_ms: Option<i64>, now_ms: i64| {
            let now = t0 + Duration::milliseconds(now_ms);
            let command = PoolCommand::Scan(Box::new(ScanCommand {
                registration_id: id,
                ticket_id: tickets[usize::from(index)],
                ticket_index: index,
                ticket_type_id: tt,
                list: list.clone(),
                direction,
                gate: Some("north".into()),
                scanned_at: offline_ms.map(|ms| t0 + Duration::milliseconds(ms)),
                nonce: None,
            }));
            let (events, result) = state.execute(command, published, now);
            assert!(result.is_ok(), "{result:?}");
            match events.as_slice() {
                [
                    PoolEvent::Scanned {
                        result,
                        first_on_ticket,
                        ..
                    },
                ] => (
                    result.clone(),
                    first_on_ticket.expect("the pool always says"),
                ),
                other => panic!("{other:?}"),
            }
        };
    let (entry, exit) = (scan::Direction::Entry, scan::Direction::Exit);
    let mut scan = |list: &scan::ListRules, direction, offline_ms: Option<i64>, now_ms: i64| {
        scan_seat(0, list, direction, offline_ms, now_ms)
    };
    let default = scan::ListRules::default_list();
    use scan::ScanResult::{Admitted, Duplicate, Exited};
    // The first admission anywhere is the ticket's first.
    assert_eq!(scan(&default, entry, None, 1_000), (Admitted, true));
    assert_eq!(scan(&default, entry, None, 2_000), (Duplicate, false));
    // A later first admission on another list, and a re-entry there, are not.
    assert_eq!(scan(&reentry, entry, None, 3_000), (Admitted, false));
    assert_eq!(scan(&reentry, exit, None, 4_000), (Exited, false));
    assert_eq!(scan(&reentry, entry, None, 5_000), (Admitted, false));
    // An uploaded offline scan earlier than every admission known becomes the first.
    assert_eq!(scan(&reentry, entry, Some(500), 6_000), (Admitted, true));
    // One between the two known admissions is earlier on its list only.
    assert_eq!(scan(&default, entry, Some(800), 7_000), (Admitted, false));
    // The other seat's admissions are its own: its first admission is its first.
    assert_eq!(
        scan_seat(1, &reentry, entry, Some(700), 8_000),
        (Admitted, true)
    );
    assert_eq!(
        scan_seat(1, &default, entry, None, 9_000),
        (Admitted, false)
    );
}

#[test]
fn closing_a_canceled_event_ends_every_registration_and_refuses_confirmation() {
    let event_id = EventId::new();
    let mut state = PoolState::new(event_id, PoolId::new(), 3);
    let t0 = DateTime::from_timestamp_millis(1_700_000_000_000).unwrap();
    let tt = TicketTypeId::new();
    let (held, confirmed, pending) = (
        RegistrationId::new(),
        RegistrationId::new(),
        RegistrationId::new(),
    );
    for id in [held, confirmed, pending] {
        let (_, r) = state.execute(
            PoolCommand::Hold(Box::new(one_seat_hold(event_id, id, tt))),
            EventStatus::Published,
            t0,
        );
        assert!(r.is_ok());
    }
    let (_, r) = state.execute(PoolCommand::Confirm(confirmed), EventStatus::Published, t0);
    assert!(matches!(r, Ok(PoolOutcome::Confirmed { .. })));
    let entry = one_seat_place(UserId::new(), tt, t0);
    let (_, r) = state.execute(
        PoolCommand::JoinWaitlist(Box::new(entry)),
        EventStatus::Published,
        t0,
    );
    assert!(r.is_ok());

    // Canceled, not yet closed: a confirmation is refused, and changes nothing.
    let (events, r) = state.execute(PoolCommand::Confirm(pending), EventStatus::Canceled, t0);
    assert_eq!(r, Err(DomainError::EventNotOpen(EventStatus::Canceled)));
    assert!(events.is_empty());
    // Closing only happens for a canceled event.
    let (events, r) = state.execute(
        PoolCommand::CloseCanceledEvent(100),
        EventStatus::Published,
        t0,
    );
    assert!(r.is_err() && events.is_empty());

    // A chunk of one first: the earliest registration by id; the rest stays live.
    let (events, r) = state.execute(
        PoolCommand::CloseCanceledEvent(1),
        EventStatus::Canceled,
        t0,
    );
    let Ok(PoolOutcome::Closed {
        registrations: first,
        waitlist,
    }) = r
    else {
        panic!("{r:?}");
    };
    assert_eq!((first.len(), waitlist.len(), events.len()), (1, 0, 1));
    assert!(state.has_live_registrations());
    let (events, r) = state.execute(
        PoolCommand::CloseCanceledEvent(100),
        EventStatus::Canceled,
        t0,
    );
    let Ok(PoolOutcome::Closed {
        mut registrations,
        waitlist,
    }) = r
    else {
        panic!("{r:?}");
    };
    registrations.extend(first);
    registrations.sort();
    let mut expected = vec![(held, false), (confirmed, true), (pending, false)];
    expected.sort();
    assert_eq!(registrations, expected);
    assert_eq!(waitlist.len(), 1);
    assert_eq!(events.len(), 3);
    assert_eq!(state.counts().available(), 3);
    assert!(!state.has_live_registrations());
    // A second close finds nothing.
    let (events, r) = state.execute(
        PoolCommand::CloseCanceledEvent(100),
        EventStatus::Canceled,
        t0,
    );
    assert!(events.is_empty());
    assert!(matches!(r, Ok(PoolOutcome::Closed { registrations, .. }) if registrations.is_empty()));
    // The canceled registrations cannot be confirmed.
    let (_, r) = state.execute(PoolCommand::Confirm(confirmed), EventStatus::Canceled, t0);
    assert!(r.is_err());
}

/// A priced one-seat hold (10.00 EUR) for `ttl`, then a Stripe payment started on it.
fn paid_hold_started(
    state: &mut PoolState,
    event_id: EventId,
    tt: TicketTypeId,
    ttl: Duration,
    t0: DateTime<Utc>,
) -> RegistrationId {
    let id = RegistrationId::new();
    let hold = HoldCommand {
        unit_price_minor: 1_000,
        ttl,
        ..one_seat_hold(event_id, id, tt)
    };
    let (_, r) = state.execute(
        PoolCommand::Hold(Box::new(hold)),
        EventStatus::Published,
        t0,
    );
    assert!(r.is_ok());
    let start = payment::StartPayment {
        registration_id: id,
        event_id,
        provider: Provider::Stripe,
        hold_until: t0,
        currency: "EUR".into(),
        max_per_account: None,
        buyer_email: "a@example.com".into(),
        remind_at: None,
        billing: None,
    };
    let (_, r) = state.execute(
        PoolCommand::StartPayment(Box::new(start)),
        EventStatus::Published,
        t0,
    );
    assert!(matches!(r, Ok(PoolOutcome::Payment { .. })), "{r:?}");
    id
}

fn succeeded(event_id: &str, reference: &str) -> Box<ProviderReport> {
    Box::new(ProviderReport {
        provider: Provider::Stripe,
        event_id: event_id.into(),
        provider_ref: Some(reference.into()),
        report: Report::Succeeded {
            amount_minor: 1_000,
            currency: "EUR".into(),
        },
    })
}

#[test]
fn a_payment_confirms_once_and_its_redelivery_changes_nothing() {
    let event_id = EventId::new();
    let mut state = PoolState::new(event_id, PoolId::new(), 2);
    let t0 = DateTime::from_timestamp_millis(1_700_000_000_000).unwrap();
    let id = paid_hold_started(
        &mut state,
        event_id,
        TicketTypeId::new(),
        Duration::minutes(1),
        t0,
    );
    let (_, r) = state.execute(PoolCommand::Confirm(id), EventStatus::Published, t0);
    assert!(matches!(
        r,
        Err(DomainError::PaymentRequired {
            total_minor: 1_000,
            ..
        })
    ));
    // A capture of another amount is recorded and confirms nothing.
    let mut wrong = succeeded("evt_wrong", "pi_1");
    wrong.report = Report::Succeeded {
        amount_minor: 999,
        currency: "EUR".into(),
    };
    let (events, r) = state.execute(PoolCommand::Report(id, wrong), EventStatus::Published, t0);
    assert_eq!(events.len(), 1);
    assert!(matches!(
        r,
        Ok(PoolOutcome::Reported {
            ignored: Some(crate::payment::Ignored::AmountMismatch),
            ..
        })
    ));
    assert_eq!(
        state.registration_status(id),
        Some(RegistrationStatus::Held)
    );
    let (events, r) = state.execute(
        PoolCommand::Report(id, succeeded("evt_1", "pi_1")),
        EventStatus::Published,
        t0,
    );
    assert!(matches!(
        r,
        Ok(PoolOutcome::Reported {
            duplicate: false,
            ignored: None,
            ..
        })
    ));
    assert!(matches!(events[1], PoolEvent::RegistrationConfirmed { .. }));
    assert_eq!(
        state.registration_status(id),
        Some(RegistrationStatus::Confirmed)
    );
    let (events, r) = state.execute(
        PoolCommand::Report(id, succeeded("evt_1", "pi_1")),
        EventStatus::Published,
        t0,
    );
    assert!(events.is_empty());
    assert!(matches!(
        r,
        Ok(PoolOutcome::Reported {
            duplicate: true,
            ..
        })
    ));
    // `failed` after the capture is recorded and ignored.
    let failed = Box::new(ProviderReport {
        report: Report::Failed {
            reason: "late".into(),
        },
        ..*succeeded("evt_2", "pi_1")
    });
    let (_, r) = state.execute(PoolCommand::Report(id, failed), EventStatus::Published, t0);
    assert!(matches!(
        r,
        Ok(PoolOutcome::Reported {
            ignored: Some(crate::payment::Ignored::AfterCapture),
            ..
        })
    ));
    assert_eq!(
        state.payment(id).unwrap().state(),
        crate::payment::PaymentState::Succeeded
    );
}

#[test]
fn a_late_payment_takes_seats_left_or_is_refunded() {
    let event_id = EventId::new();
    let mut state = PoolState::new(event_id, PoolId::new(), 1);
    let t0 = DateTime::from_timestamp_millis(1_700_000_000_000).unwrap();
    let tt = TicketTypeId::new();
    let late = paid_hold_started(&mut state, event_id, tt, Duration::seconds(1), t0);
    let t1 = t0 + Duration::seconds(2);
    let (_, r) = state.execute(PoolCommand::ExpireDue, EventStatus::Published, t1);
    assert_eq!(r, Ok(PoolOutcome::Expired(1)));
    // Seats left: the payment takes them again and confirms.
    let (events, _) = state.execute(
        PoolCommand::Report(late, succeeded("evt_a", "pi_a")),
        EventStatus::Published,
        t1,
    );
    assert!(matches!(events[1], PoolEvent::SeatsRetaken { .. }));
    assert!(matches!(events[2], PoolEvent::RegistrationConfirmed { .. }));
    assert_eq!(state.counts().confirmed, 1);
    // No seats left: the next late payment is refunded in full, automatically.
    let mut other = PoolState::new(event_id, PoolId::new(), 1);
    let late = paid_hold_started(&mut other, event_id, tt, Duration::seconds(1), t0);
    let _ = other.execute(PoolCommand::ExpireDue, EventStatus::Published, t1);
    let taker = RegistrationId::new();
    let (_, r) = other.execute(
        PoolCommand::Hold(Box::new(one_seat_hold(event_id, taker, tt))),
        EventStatus::Published,
        t1,
    );
    assert!(r.is_ok());
    let (events, _) = other.execute(
        PoolCommand::Report(late, succeeded("evt_b", "pi_b")),
        EventStatus::Published,
        t1,
    );
    assert!(
        matches!(&events[1], PoolEvent::RefundRequested { refund, .. }
            if refund.amount_minor == 1_000 && refund.reason == RefundReason::RefundDue),
        "{events:?}"
    );
    assert_eq!(other.counts().held, 1, "the other buyer keeps the seat");
    assert_eq!(other.payment(late).unwrap().refunding_minor(), 1_000);
}

#[test]
fn a_refund_never_exceeds_the_capture_and_a_full_one_cancels() {
    let event_id = EventId::new();
    let mut state = PoolState::new(event_id, PoolId::new(), 2);
    let t0 = DateTime::from_timestamp_millis(1_700_000_000_000).unwrap();
    let id = paid_hold_started(
        &mut state,
        event_id,
        TicketTypeId::new(),
        Duration::minutes(1),
        t0,
    );
    let _ = state.execute(
        PoolCommand::Report(id, succeeded("evt_1", "pi_1")),
        EventStatus::Published,
        t0,
    );
    let refund = |amount| {
        PoolCommand::Refund(payment::RefundRequest {
            registration_id: id,
            amount_minor: amount,
            reason: RefundReason::Requested,
        })
    };
    let (_, r) = state.execute(refund(Some(1_001)), EventStatus::Published, t0);
    assert_eq!(
        r,
        Err(DomainError::RefundTooLarge {
            refundable_minor: 1_000
        })
    );
    let (_, r) = state.execute(refund(Some(400)), EventStatus::Published, t0);
    assert!(r.is_ok());
    assert_eq!(
        state.registration_status(id),
        Some(RegistrationStatus::Confirmed)
    );
    // The rest: everything is refunded, the registration ends.
    let (events, _) = state.execute(refund(None), EventStatus::Published, t0);
    assert!(
        matches!(&events[0], PoolEvent::RefundRequested { refund, .. } if refund.amount_minor == 600)
    );
    assert!(matches!(events[1], PoolEvent::RegistrationCanceled { .. }));
    let (_, r) = state.execute(refund(None), EventStatus::Published, t0);
    assert_eq!(
        r,
        Err(DomainError::RefundTooLarge {
            refundable_minor: 0
        })
    );
    // A failed refund makes its amount refundable again.
    let first = state.payment(id).unwrap().refunds[0].id;
    let _ = state.execute(
        PoolCommand::RefundSettled {
            registration_id: id,
            refund_id: first,
            state: RefundState::Failed,
        },
        EventStatus::Published,
        t0,
    );
    assert_eq!(state.payment(id).unwrap().refundable_minor(), 400);
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 500, ..ProptestConfig::default() })]

    /// Reports commute: any order of the same deliveries (with redeliveries) ends in the
    /// same money facts.
    #[test]
    fn provider_reports_commute(picks in proptest::collection::vec((0u8..5, 0u8..2, any::<bool>(), 0u8..3), 1..12), seed in any::<u64>()) {
        let run_in = |order: &[(u8, u8, bool, u8)]| {
            let event_id = EventId::new();
            let mut state = PoolState::new(event_id, PoolId::new(), 4);
            let t0 = DateTime::from_timestamp_millis(1_700_000_000_000).unwrap();
            let id = paid_hold_started(&mut state, event_id, TicketTypeId::new(), Duration::minutes(1), t0);
            for &(kind, reference, wrong, refunded) in order {
                let _ = state.execute(
                    PoolCommand::Report(id, Box::new(report(1_000, kind, reference, wrong, refunded))),
                    EventStatus::Published,
                    t0,
                );
            }
            let p = state.payment(id).unwrap().clone();
            let mut captures: Vec<_> = p.captures.iter().map(|c| (c.provider_ref.clone(), c.amount_minor, c.refunded_reported_minor)).collect();
            captures.sort();
            (captures, p.disputed, p.captures.is_empty().then_some(()).map_or(Some(p.state()), |()| None))
        };
        let mut shuffled = picks.clone();
        shuffled.extend(picks.iter().take(3).cloned());
        // A deterministic shuffle from the seed.
        let mut x = seed | 1;
        for i in (1..shuffled.len()).rev() {
            x ^= x << 13; x ^= x >> 7; x ^= x << 17;
            shuffled.swap(i, (x % (i as u64 + 1)) as usize);
        }
        prop_assert_eq!(run_in(&picks), run_in(&shuffled));
    }
}

#[test]
fn closing_a_canceled_event_refunds_every_capture_once_over_several_turns() {
    let event_id = EventId::new();
    let mut state = PoolState::new(event_id, PoolId::new(), 5);
    let mut journal = Vec::new();
    let t0 = DateTime::from_timestamp_millis(1_700_000_000_000).unwrap();
    let tt = TicketTypeId::new();
    let mut paid = Vec::new();
    for i in 0..3 {
        let id = paid_hold_started(&mut state, event_id, tt, Duration::minutes(5), t0);
        let (events, _) = state.execute(
            PoolCommand::Report(id, succeeded(&format!("evt_{i}"), &format!("pi_{i}"))),
            EventStatus::Published,
            t0,
        );
        journal.extend(events);
        paid.push(id);
    }
    // One paid registration was canceled before (its money still captured), one is held.
    let (events, _) = state.execute(PoolCommand::Cancel(paid[2]), EventStatus::Published, t0);
    journal.extend(events);
    let held = paid_hold_started(&mut state, event_id, tt, Duration::minutes(5), t0);
    // Turns of 2: registrations first, then refunds; a replay in between changes nothing.
    let mut turns = 0;
    while state.has_live_registrations() {
        let (events, r) = state.execute(
            PoolCommand::CloseCanceledEvent(2),
            EventStatus::Canceled,
            t0,
        );
        assert!(r.is_ok());
        journal.extend(events);
        turns += 1;
        assert!(turns < 10, "closing never ends");
    }
    assert!(turns >= 2);
    for id in &paid {
        let p = state.payment(*id).unwrap();
        assert_eq!(p.refunds.len(), 1, "refunded once: {p:?}");
        assert_eq!(p.refunds[0].reason, RefundReason::EventCanceled);
        assert_eq!(p.refunds[0].amount_minor, 1_000);
        assert_eq!(p.refundable_minor(), 0);
    }
    assert!(
        state.payment(held).unwrap().refunds.is_empty(),
        "nothing captured, nothing refunded"
    );
    assert_eq!(state.registration_status(held), None, "the hold ended");
    // A refund the provider refused is not asked again by the close.
    let refund = state.payment(paid[0]).unwrap().refunds[0].id;
    let _ = state.execute(
        PoolCommand::RefundSettled {
            registration_id: paid[0],
            refund_id: refund,
            state: RefundState::Failed,
        },
        EventStatus::Canceled,
        t0,
    );
    assert!(!state.has_live_registrations());
}

#[test]
fn a_refund_racing_a_redelivered_capture_refunds_once_and_seats_nothing_again() {
    let event_id = EventId::new();
    let mut state = PoolState::new(event_id, PoolId::new(), 2);
    let t0 = DateTime::from_timestamp_millis(1_700_000_000_000).unwrap();
    let id = paid_hold_started(
        &mut state,
        event_id,
        TicketTypeId::new(),
        Duration::minutes(1),
        t0,
    );
    let report = |event: &str| PoolCommand::Report(id, succeeded(event, "pi_1"));
    let _ = state.execute(report("evt_1"), EventStatus::Published, t0);
    let refund_all = PoolCommand::Refund(payment::RefundRequest {
        registration_id: id,
        amount_minor: None,
        reason: RefundReason::Requested,
    });
    let _ = state.execute(refund_all, EventStatus::Published, t0);
    assert_eq!(
        state.registration_status(id),
        None,
        "a full refund ends the registration"
    );
    // The capture delivered again (the same event, and another event of the same intent).
    for event in ["evt_1", "evt_1_again"] {
        let (events, r) = state.execute(report(event), EventStatus::Published, t0);
        assert!(
            events
                .iter()
                .all(|e| matches!(e, PoolEvent::PaymentReported { .. })),
            "{events:?}"
        );
        assert!(matches!(r, Ok(PoolOutcome::Reported { .. })), "{r:?}");
    }
    let p = state.payment(id).unwrap();
    assert_eq!((p.captures.len(), p.refunds.len()), (1, 1));
    assert_eq!(state.counts().confirmed + state.counts().held, 0);
}

#[test]
fn a_failure_of_an_earlier_attempt_leaves_the_current_one_alone() {
    let event_id = EventId::new();
    let mut state = PoolState::new(event_id, PoolId::new(), 2);
    let t0 = DateTime::from_timestamp_millis(1_700_000_000_000).unwrap();
    let id = paid_hold_started(
        &mut state,
        event_id,
        TicketTypeId::new(),
        Duration::minutes(1),
        t0,
    );
    let pending = |attempt, reference: &str| PoolCommand::PaymentPending {
        registration_id: id,
        attempt,
        provider_ref: reference.into(),
    };
    let _ = state.execute(pending(1, "pi_old"), EventStatus::Published, t0);
    let failed = |event: &str, reference: &str| {
        PoolCommand::Report(
            id,
            Box::new(ProviderReport {
                provider: Provider::Stripe,
                event_id: event.into(),
                provider_ref: Some(reference.into()),
                report: Report::Failed {
                    reason: "card_declined".into(),
                },
            }),
        )
    };
    let _ = state.execute(failed("evt_f1", "pi_old"), EventStatus::Published, t0);
    // A second attempt, then a late failure report of the first one.
    let start = payment::StartPayment {
        registration_id: id,
        event_id,
        provider: Provider::Stripe,
        hold_until: t0,
        currency: "EUR".into(),
        max_per_account: None,
        buyer_email: "a@example.com".into(),
        remind_at: None,
        billing: None,
    };
    let _ = state.execute(
        PoolCommand::StartPayment(Box::new(start)),
        EventStatus::Published,
        t0,
    );
    let _ = state.execute(pending(2, "pi_new"), EventStatus::Published, t0);
    let (_, r) = state.execute(failed("evt_f2", "pi_old"), EventStatus::Published, t0);
    assert!(
        matches!(
            r,
            Ok(PoolOutcome::Reported {
                ignored: Some(crate::payment::Ignored::NoChange),
                ..
            })
        ),
        "{r:?}"
    );
    assert_eq!(
        state.payment(id).unwrap().state(),
        crate::payment::PaymentState::Pending
    );
}

#[test]
fn a_transfer_still_due_is_reminded_once_and_a_paid_or_ended_one_never() {
    let event_id = EventId::new();
    let tt = TicketTypeId::new();
    let mut state = PoolState::new(event_id, PoolId::new(), 5);
    let t0 = DateTime::from_timestamp_millis(1_700_000_000_000).unwrap();
    let deadline = t0 + Duration::hours(48);
    let start = |id: RegistrationId| payment::StartPayment {
        registration_id: id,
        event_id,
        provider: Provider::BankTransfer,
        hold_until: deadline,
        currency: "EUR".into(),
        max_per_account: None,
        buyer_email: "a@example.com".into(),
        remind_at: Some(deadline - Duration::hours(24)),
        billing: None,
    };
    let mut journal = Vec::new();
    let mut run = recorder(&mut journal);
    let [unpaid, paid, canceled] = [(); 3].map(|()| RegistrationId::new());
    for id in [unpaid, paid, canceled] {
        let hold = HoldCommand {
            unit_price_minor: 1_000,
            ttl: Duration::minutes(10),
            ..one_seat_hold(event_id, id, tt)
        };
        run(&mut state, PoolCommand::Hold(Box::new(hold)), t0);
        run(
            &mut state,
            PoolCommand::StartPayment(Box::new(start(id))),
            t0,
        );
    }
    assert_eq!(state.next_expiry(), Some(deadline - Duration::hours(24)));
    let mut report = succeeded("line-1", "RF18");
    report.provider = Provider::BankTransfer;
    run(&mut state, PoolCommand::Report(paid, report), t0);
    run(&mut state, PoolCommand::Cancel(canceled), t0);
    let reminded = |events: &[PoolEvent]| -> Vec<RegistrationId> {
        events
            .iter()
            .filter_map(|e| match e {
                PoolEvent::PaymentReminded {
                    registration_id,
                    deadline: d,
                    ..
                } => {
                    assert_eq!(*d, deadline, "the reminder names the deadline");
                    Some(*registration_id)
                }
                _ => None,
            })
            .collect()
    };
    // Not yet; then once, for the one still unpaid; then never again, also after a replay.
    let early = run(&mut state, PoolCommand::ExpireDue, t0 + Duration::hours(23));
    assert!(reminded(&early).is_empty());
    let due = run(&mut state, PoolCommand::ExpireDue, t0 + Duration::hours(24));
    assert_eq!(reminded(&due), vec![unpaid]);
    let again = run(&mut state, PoolCommand::ExpireDue, t0 + Duration::hours(25));
    assert!(reminded(&again).is_empty());
    assert_eq!(
        state.next_expiry(),
        Some(deadline),
        "only the deadline is left"
    );
    drop(run);
    assert_eq!(replayed(&state, 5, &journal), state);
}

#[test]
fn an_unpaid_hold_is_due_its_payment_link_once_and_a_paid_free_or_ended_one_never() {
    let event_id = EventId::new();
    let tt = TicketTypeId::new();
    let mut state = PoolState::new(event_id, PoolId::new(), 10);
    let t0 = DateTime::from_timestamp_millis(1_700_000_000_000).unwrap();
    let mut journal = Vec::new();
    let mut run = recorder(&mut journal);
    let [unpaid, paid, paying, canceled, free] = [(); 5].map(|()| RegistrationId::new());
    for id in [unpaid, paid, paying, canceled, free] {
        let hold = HoldCommand {
            unit_price_minor: if id == free { 0 } else { 1_000 },
            ttl: Duration::minutes(10),
            payment_due_after: Some(std::time::Duration::from_secs(120)),
            ..one_seat_hold(event_id, id, tt)
        };
        let held = run(&mut state, PoolCommand::Hold(Box::new(hold)), t0);
        let due_at = match &held[0] {
            PoolEvent::SeatsHeld { payment_due_at, .. } => *payment_due_at,
            e => panic!("{e:?}"),
        };
        let expected = (id != free).then(|| t0 + Duration::minutes(2));
        assert_eq!(due_at, expected, "journaled with the hold");
    }
    assert_eq!(state.next_expiry(), Some(t0 + Duration::minutes(2)));
    let start = |id: RegistrationId| payment::StartPayment {
        registration_id: id,
        event_id,
        provider: Provider::Stripe,
        hold_until: t0 + Duration::minutes(10),
        currency: "EUR".into(),
        max_per_account: None,
        buyer_email: "a@example.com".into(),
        remind_at: None,
        billing: None,
    };
    for id in [paid, paying] {
        run(
            &mut state,
            PoolCommand::StartPayment(Box::new(start(id))),
            t0,
        );
    }
    run(
        &mut state,
        PoolCommand::Report(paid, succeeded("pi_1", "evt_1")),
        t0,
    );
    run(&mut state, PoolCommand::Cancel(canceled), t0);
    let asked = |events: &[PoolEvent]| -> Vec<RegistrationId> {
        events
            .iter()
            .filter_map(|e| match e {
                PoolEvent::PaymentDue {
                    registration_id, ..
                } => Some(*registration_id),
                _ => None,
            })
            .collect()
    };
    let before = state.clone();
    // Not yet; then once, for the one still unpaid with no payment started; then never again.
    let early = run(
        &mut state,
        PoolCommand::ExpireDue,
        t0 + Duration::seconds(119),
    );
    assert!(asked(&early).is_empty());
    let due = run(
        &mut state,
        PoolCommand::ExpireDue,
        t0 + Duration::minutes(2),
    );
    assert_eq!(asked(&due), vec![unpaid]);
    let again = run(
        &mut state,
        PoolCommand::ExpireDue,
        t0 + Duration::minutes(3),
    );
    assert!(asked(&again).is_empty());
    assert_eq!(state.next_expiry(), Some(t0 + Duration::minutes(10)));
    assert!(!state.has_reminders(), "nothing keeps the event awake now");
    // A snapshot rebuilds the links still due; the journal replays to the same state.
    let mut restored = before.clone();
    restored.payment_dues.clear();
    restored.restore_derived().unwrap();
    assert_eq!(restored, before);
    assert!(before.has_reminders());
    drop(run);
    assert_eq!(replayed(&state, 10, &journal), state);
}
