//! Model test of the pool: thousands of random sequences of hold, confirm, cancel, expire,
//! check-in and crash-and-replay, checked after every step against a reference model.

use super::*;
use crate::model::{Attendee, EventStatus};
use proptest::prelude::*;

#[derive(Clone, Debug)]
enum Op {
    Hold {
        quantity: u16,
        ttl_ms: i64,
        key: Option<u8>,
        /// One of three accounts, or anonymous.
        user: Option<u8>,
    },
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
        4 => (1u16..5, 1i64..2_000, proptest::option::of(0u8..6), proptest::option::of(0u8..3))
            .prop_map(|(quantity, ttl_ms, key, user)| Op::Hold { quantity, ttl_ms, key, user }),
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

    for op in ops {
        let command = match &op {
            Op::Hold {
                quantity,
                ttl_ms,
                key,
                user,
            } => PoolCommand::Hold(HoldCommand {
                registration_id: RegistrationId::new(),
                event_id,
                ticket_type_id,
                quantity: *quantity,
                attendee: attendee.clone(),
                user_id: user.map(|u| accounts[usize::from(u)]),
                max_per_account: Some(MAX_PER_ACCOUNT),
                ttl: Duration::milliseconds(*ttl_ms),
                idempotency: key.map(token),
            }),
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
        let (events, outcome) = state.execute(command.clone(), EventStatus::Published, now);
        journal.extend(events.iter().cloned());

        match (&command, &outcome) {
            (
                PoolCommand::Hold(cmd),
                Ok(PoolOutcome::Held {
                    replayed: false,
                    expires_at,
                    ..
                }),
            ) => {
                assert!(before.0 + before.1 + u32::from(cmd.quantity) <= capacity);
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
            }
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
                assert_eq!(*available, capacity - before.0 - before.1);
                assert!(u32::from(cmd.quantity) > *available);
            }
            (PoolCommand::Confirm(id), result) | (PoolCommand::Cancel(id), result) => {
                if let Some(r) = model.regs.iter_mut().find(|r| r.0 == *id) {
                    let expired = r.2 == RegistrationStatus::Held && now.timestamp_millis() >= r.3;
                    match result {
                        Ok(PoolOutcome::Confirmed { tickets }) => {
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
            }
            (cmd, outcome) => panic!("unexpected outcome {outcome:?} for {cmd:?}"),
        }

        let counts = state.counts();
        assert!(
            counts.held + counts.confirmed <= counts.capacity,
            "oversold"
        );
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
    let mut rebuilt = PoolState::new(event_id, pool_id, capacity);
    for (i, e) in journal.iter().enumerate() {
        rebuilt.apply(i as u64 + 1, e);
    }
    assert_eq!(rebuilt, state);
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
    };
    let (_, r) = state.execute(PoolCommand::Hold(hold), EventStatus::Published, t0);
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
            confirmed: 0
        }
    );
}
