//! The journal's own guarantees against a real fjall store: sequence checks (gap and
//! duplicate refused, nothing written), one record per stream per flush with replay from any
//! sequence number, barriers, and the read models written in the same batch.

use crate::{Db, DbOptions, JournalConfig, JournalWriter};
use engine::ids::{EventId, PoolId, RegistrationId, StreamId, TicketId, TicketTypeId, UserId};
use engine::model::{Attendee, RegistrationStatus};
use engine::pool::PoolEvent;
use engine::ports::{AppendRequest, Completion, JournalError, JournalHandle, Store, StreamEvent};
use std::time::Duration;

struct Harness {
    db: Db,
    journal: JournalHandle,
    _dir: tempfile::TempDir,
}

/// A journal writer over `db`, and the handle that appends to it.
fn writer(db: &Db, batch_wait: Duration) -> (JournalHandle, JournalWriter) {
    let (journal, rx) = JournalHandle::channel(64);
    let config = JournalConfig {
        batch_events_max: 1024,
        batch_wait_max: batch_wait,
    };
    let writer = JournalWriter::spawn(
        db.clone(),
        rx,
        config,
        Box::new(|e| panic!("journal failed: {e}")),
    )
    .unwrap();
    (journal, writer)
}

fn harness(batch_wait: Duration) -> Harness {
    let dir = tempfile::tempdir().unwrap();
    let db = Db::open(dir.path(), &DbOptions::default()).unwrap();
    let (journal, _) = writer(&db, batch_wait);
    Harness {
        db,
        journal,
        _dir: dir,
    }
}

/// A fixed account id per e-mail address (its first 16 bytes, zero-padded).
fn account(email: &str) -> UserId {
    let mut bytes = [0u8; 16];
    let n = email.len().min(16);
    bytes[..n].copy_from_slice(&email.as_bytes()[..n]);
    UserId(uuid::Uuid::from_bytes(bytes))
}

fn held(event_id: EventId, registration_id: RegistrationId, email: &str) -> StreamEvent {
    let at = chrono::DateTime::from_timestamp_millis(1_700_000_000_000).unwrap();
    StreamEvent::Pool(PoolEvent::SeatsHeld {
        registration_id,
        event_id,
        ticket_type_id: TicketTypeId::new(),
        quantity: 2,
        attendee: Attendee {
            name: "A".into(),
            email: email.into(),
        },
        // A fixed account per e-mail address.
        user_id: Some(account(email)),
        idempotency: None,
        expires_at: at + chrono::Duration::minutes(10),
        at,
        voucher: None,
        price: Some(engine::pricing::quote(4500, "EUR", 2, None)),
        payment_due_at: None,
    })
}

fn replayed(db: &Db, stream: StreamId, after: u64) -> Vec<u64> {
    let mut seqs = Vec::new();
    db.replay(stream, after, &mut |seq, _| {
        seqs.push(seq);
        Ok(())
    })
    .unwrap();
    seqs
}

#[tokio::test]
async fn gaps_and_duplicates_are_refused_and_write_nothing() {
    let h = harness(Duration::ZERO);
    let stream = StreamId::Pool(PoolId::new());
    let event = EventId::new();
    let append = |seq: u64| {
        h.journal.append_and_wait(
            stream,
            seq,
            vec![held(event, RegistrationId::new(), "a@x.io")],
            None,
            Vec::new(),
        )
    };
    append(1).await.unwrap();
    append(2).await.unwrap();
    let gap = append(4).await;
    assert!(
        matches!(
            gap,
            Err(JournalError::SequenceConflict {
                expected: 3,
                got: 4,
                ..
            })
        ),
        "{gap:?}"
    );
    let duplicate = append(2).await;
    assert!(
        matches!(
            duplicate,
            Err(JournalError::SequenceConflict {
                expected: 3,
                got: 2,
                ..
            })
        ),
        "{duplicate:?}"
    );
    assert_eq!(replayed(&h.db, stream, 0), [1, 2]);
    assert_eq!(h.db.head(&stream).unwrap(), 2);
    append(3).await.unwrap();
    assert_eq!(replayed(&h.db, stream, 0), [1, 2, 3]);
}

#[tokio::test]
async fn one_record_per_stream_per_flush_replays_from_any_sequence_number() {
    // A long batch window so the appends below land in one flush and merge into one record.
    let h = harness(Duration::from_millis(200));
    let stream = StreamId::Pool(PoolId::new());
    let event = EventId::new();
    let mut waits = Vec::new();
    for seq in 1..=5 {
        let (done, rx) = Completion::channel();
        let events = vec![held(event, RegistrationId::new(), "a@x.io")];
        h.journal
            .append(AppendRequest {
                writer: 0,
                stream,
                first_seq: seq,
                events,
                snapshot: None,
                outbox: Vec::new(),
                done,
            })
            .await;
        waits.push(rx);
    }
    for rx in waits {
        rx.await.unwrap().unwrap();
    }
    let records = h.db.journal.prefix(stream.key()).count();
    assert_eq!(
        records, 1,
        "five appends of one flush make one journal record"
    );
    for after in 0..=5 {
        assert_eq!(
            replayed(&h.db, stream, after),
            ((after + 1)..=5).collect::<Vec<_>>()
        );
    }
}

#[tokio::test]
async fn a_barrier_completes_after_earlier_appends_are_durable() {
    let h = harness(Duration::ZERO);
    let stream = StreamId::Pool(PoolId::new());
    let (done, first) = Completion::channel();
    let events = vec![held(EventId::new(), RegistrationId::new(), "a@x.io")];
    h.journal
        .append(AppendRequest {
            writer: 0,
            stream,
            first_seq: 1,
            events,
            snapshot: None,
            outbox: Vec::new(),
            done,
        })
        .await;
    let (done, barrier) = Completion::channel();
    let other = StreamId::Pool(PoolId::new());
    h.journal
        .append(AppendRequest {
            writer: 0,
            stream: other,
            first_seq: 0,
            events: vec![],
            snapshot: None,
            outbox: Vec::new(),
            done,
        })
        .await;
    barrier.await.unwrap().unwrap();
    // By the time the barrier completed, the earlier append had completed too.
    assert_eq!(first.await.unwrap(), Ok(()));
    assert_eq!(h.db.head(&stream).unwrap(), 1);
}

#[tokio::test]
async fn read_models_are_written_with_the_events() {
    let h = harness(Duration::ZERO);
    let pool = PoolId::new();
    let stream = StreamId::Pool(pool);
    let event = EventId::new();
    let reg = RegistrationId::new();
    h.journal
        .append_and_wait(
            stream,
            1,
            vec![held(event, reg, "ann@example.com")],
            None,
            Vec::new(),
        )
        .await
        .unwrap();
    let view = h.db.registration(reg).unwrap().unwrap();
    assert_eq!(
        (view.status, view.pool_id, view.quantity),
        (RegistrationStatus::Held, pool, 2)
    );
    let tickets = vec![TicketId::new(), TicketId::new()];
    let at = chrono::DateTime::from_timestamp_millis(1_700_000_060_000).unwrap();
    let confirmed = StreamEvent::Pool(PoolEvent::RegistrationConfirmed {
        registration_id: reg,
        user_id: Some(account("ann@example.com")),
        tickets: tickets.clone(),
        first_number: 7,
        at,
    });
    h.journal
        .append_and_wait(stream, 2, vec![confirmed], None, Vec::new())
        .await
        .unwrap();
    let view = h.db.registration(reg).unwrap().unwrap();
    assert_eq!(view.status, RegistrationStatus::Confirmed);
    assert_eq!(view.tickets, tickets);
    let ticket = h.db.ticket(tickets[1]).unwrap().unwrap();
    assert_eq!(
        (
            ticket.registration_id,
            ticket.event_id,
            ticket.index,
            ticket.number
        ),
        (reg, event, 1, 8)
    );
    let by_event = h.db.registrations_by_event(event, None, None, 10).unwrap();
    assert_eq!(by_event.items.len(), 1);
    let by_email =
        h.db.registrations_by_email("ann@example.com", None, 10)
            .unwrap();
    assert_eq!(by_email.items[0].id, reg);
    assert!(
        h.db.registrations_by_email("bob@example.com", None, 10)
            .unwrap()
            .items
            .is_empty()
    );
    let ann = account("ann@example.com");
    let by_user = h.db.registrations_by_user(ann, None, 10).unwrap();
    assert_eq!(by_user.items.len(), 1);
    assert_eq!(by_user.items[0].user_id, Some(ann));
    assert!(
        h.db.registrations_by_user(UserId::new(), None, 10)
            .unwrap()
            .items
            .is_empty()
    );

    // Canceling the confirmed registration puts its tickets on the event's revocation list.
    assert_eq!(h.db.revocations(event, 0, 10).unwrap(), (vec![], 0));
    let canceled = StreamEvent::Pool(PoolEvent::RegistrationCanceled {
        registration_id: reg,
        user_id: Some(ann),
        at,
    });
    h.journal
        .append_and_wait(stream, 3, vec![canceled], None, Vec::new())
        .await
        .unwrap();
    let (all, latest) = h.db.revocations(event, 0, 10).unwrap();
    assert_eq!(latest, 2);
    let revoked: Vec<(u64, TicketId)> = all.iter().map(|r| (r.version, r.ticket_id)).collect();
    assert_eq!(revoked, [(1, tickets[0]), (2, tickets[1])]);
    let (since_1, _) = h.db.revocations(event, 1, 10).unwrap();
    assert_eq!(since_1.len(), 1);
    assert_eq!(
        h.db.revocations(EventId::new(), 0, 10).unwrap(),
        (vec![], 0)
    );
}

#[tokio::test]
async fn a_copy_that_lost_a_sequence_race_stays_fenced_out() {
    let h = harness(Duration::ZERO);
    let stream = StreamId::Pool(PoolId::new());
    let event = EventId::new();
    let append = |writer: u64, seq: u64| {
        let (done, rx) = Completion::channel();
        let events = vec![held(event, RegistrationId::new(), "a@x.io")];
        let journal = h.journal.clone();
        async move {
            journal
                .append(AppendRequest {
                    stream,
                    writer,
                    first_seq: seq,
                    events,
                    snapshot: None,
                    outbox: Vec::new(),
                    done,
                })
                .await;
            rx.await.unwrap()
        }
    };
    // Two copies of the pool both loaded seq 1. Copy 7 wins seq 2; copy 8 loses it.
    append(7, 1).await.unwrap();
    append(7, 2).await.unwrap();
    assert!(matches!(
        append(8, 2).await,
        Err(JournalError::SequenceConflict { .. })
    ));
    // Copy 8's next append carries seq 3 = head + 1, but it decided on a state that never
    // became durable: it stays refused.
    assert!(matches!(
        append(8, 3).await,
        Err(JournalError::SequenceConflict { .. })
    ));
    assert_eq!(replayed(&h.db, stream, 0), [1, 2]);
    // The winner goes on.
    append(7, 3).await.unwrap();
    assert_eq!(replayed(&h.db, stream, 0), [1, 2, 3]);
}

#[tokio::test]
async fn audit_entries_are_listed_per_event_in_pages() {
    use crate::audit::AuditEntry;
    let h = harness(Duration::ZERO);
    let (a, b) = (EventId::new(), EventId::new());
    let entry = |event: Option<EventId>, n: i64| AuditEntry {
        at_ms: 1_700_000_000_000 + n,
        actor: uuid::Uuid::nil(),
        actor_roles: vec!["admin".into()],
        action: format!("POST /x/{n}"),
        target: "/x".into(),
        event_id: event.map(|e| e.0),
        request_id: format!("r{n}"),
        status: 200,
    };
    for n in 0..5 {
        h.db.append_audit(&entry(Some(a), n)).unwrap();
    }
    h.db.append_audit(&entry(Some(b), 9)).unwrap();
    h.db.append_audit(&entry(None, 7)).unwrap();
    let (first, cursor) = h.db.audit(Some(a), None, 2).unwrap();
    assert_eq!(
        first.iter().map(|e| e.at_ms).collect::<Vec<_>>(),
        [1_700_000_000_000, 1_700_000_000_001]
    );
    let (second, cursor) = h.db.audit(Some(a), cursor, 2).unwrap();
    assert_eq!(second[0].request_id, "r2");
    let (last, end) = h.db.audit(Some(a), cursor, 2).unwrap();
    assert_eq!((last.len(), end), (1, None));
    assert_eq!(h.db.audit(Some(b), None, 10).unwrap().0.len(), 1);
    assert_eq!(h.db.audit(None, None, 10).unwrap().0[0].request_id, "r7");
}

#[tokio::test]
async fn outbox_messages_commit_with_their_events_only() {
    use engine::outbox::{MessageKind, OutboxMessage};
    let h = harness(Duration::ZERO);
    let stream = StreamId::Pool(PoolId::new());
    let message = |to: &str| {
        let kind = MessageKind::VerifyEmail {
            token: "ev1.x".into(),
            expires_at: chrono::Utc::now(),
        };
        OutboxMessage::new(to, None, kind, chrono::Utc::now())
    };
    let append = |seq: u64, to: &str| {
        let (done, rx) = Completion::channel();
        let request = AppendRequest {
            writer: 0,
            stream,
            first_seq: seq,
            events: vec![held(EventId::new(), RegistrationId::new(), "a@x.io")],
            snapshot: None,
            outbox: vec![message(to)],
            done,
        };
        (request, rx)
    };
    let (ok, ok_rx) = append(1, "first@x.io");
    h.journal.append(ok).await;
    assert_eq!(ok_rx.await.unwrap(), Ok(()));
    // A refused append's message is not written.
    let (gap, gap_rx) = append(5, "refused@x.io");
    h.journal.append(gap).await;
    assert!(matches!(
        gap_rx.await.unwrap(),
        Err(JournalError::SequenceConflict { .. })
    ));
    let (next, next_rx) = append(2, "second@x.io");
    h.journal.append(next).await;
    assert_eq!(next_rx.await.unwrap(), Ok(()));

    let pending = |db: &Db| -> Vec<String> {
        db.outbox(10)
            .unwrap()
            .into_iter()
            .map(|(_, m)| m.unwrap().to)
            .collect()
    };
    assert_eq!(pending(&h.db), ["first@x.io", "second@x.io"]);
    assert_eq!(h.db.outbox_len().unwrap(), 2);
    let (first, _) = h.db.outbox(1).unwrap().remove(0);
    h.db.outbox_remove(first).unwrap();
    assert_eq!(pending(&h.db), ["second@x.io"]);
    let (second, _) = h.db.outbox(1).unwrap().remove(0);
    h.db.outbox_dead_letter(second).unwrap();
    assert!(pending(&h.db).is_empty());
    assert_eq!(h.db.outbox_dead.len().unwrap(), 1);
}

#[tokio::test]
async fn scans_write_the_first_admission_and_statistics_without_rewriting_the_ticket() {
    let dir = tempfile::tempdir().unwrap();
    let db = Db::open(dir.path(), &DbOptions::default()).unwrap();
    let (pool, event, reg) = (PoolId::new(), EventId::new(), RegistrationId::new());
    let stream = StreamId::Pool(pool);
    let tickets = vec![TicketId::new(), TicketId::new()];
    let at =
        |s: i64| chrono::DateTime::from_timestamp_millis(1_700_000_000_000 + s * 1000).unwrap();
    let (journal, first_writer) = writer(&db, Duration::ZERO);
    let confirmed = StreamEvent::Pool(PoolEvent::RegistrationConfirmed {
        registration_id: reg,
        user_id: None,
        tickets: tickets.clone(),
        first_number: 1,
        at: at(60),
    });
    journal
        .append_and_wait(
            stream,
            1,
            vec![held(event, reg, "ann@example.com"), confirmed],
            None,
            Vec::new(),
        )
        .await
        .unwrap();
    drop(journal);
    first_writer.join();

    // A writer that never saw the pool's hold finds the scans' event through the ticket.
    let (journal, _writer) = writer(&db, Duration::ZERO);
    let scanned_as = |ticket: usize,
                      seconds: i64,
                      gate: &str,
                      result,
                      superseded: Option<i64>,
                      first: Option<bool>| {
        StreamEvent::Pool(PoolEvent::Scanned {
            registration_id: reg,
            user_id: None,
            ticket_id: tickets[ticket],
            ticket_index: 0,
            list: None,
            direction: engine::pool::scan::Direction::Entry,
            admission: engine::pool::Admission {
                at: at(seconds),
                gate: Some(gate.into()),
            },
            offline: superseded.is_some(),
            nonce: None,
            result,
            superseded: superseded.map(|s| engine::pool::Admission {
                at: at(s),
                gate: Some("north".into()),
            }),
            first_on_ticket: first,
        })
    };
    let scanned = |seconds: i64, gate: &str, result, superseded: Option<i64>, first: bool| {
        scanned_as(0, seconds, gate, result, superseded, Some(first))
    };
    use engine::pool::scan::ScanResult::{Admitted, Duplicate};
    let mut seq = 3;
    let mut append = async |event: StreamEvent| {
        journal
            .append_and_wait(stream, seq, vec![event], None, Vec::new())
            .await
            .unwrap();
        seq += 1;
    };
    let first_admission_of = |db: &Db, ticket: usize| {
        let ticket = db.ticket(tickets[ticket]).unwrap().unwrap();
        ticket.admission.map(|a| (a.at, a.gate.unwrap()))
    };
    let first_admission = |db: &Db| first_admission_of(db, 0);
    assert_eq!(first_admission(&db), None);
    append(scanned(120, "north", Admitted, None, true)).await;
    assert_eq!(first_admission(&db), Some((at(120), "north".into())));
    append(scanned(130, "south", Duplicate, None, false)).await;
    assert_eq!(first_admission(&db), Some((at(120), "north".into())));
    // A later admission (a re-entry, another list) is not the ticket's first.
    append(scanned(140, "west", Admitted, None, false)).await;
    assert_eq!(first_admission(&db), Some((at(120), "north".into())));
    // An uploaded offline scan made earlier takes over the first admission.
    append(scanned(90, "east", Admitted, Some(120), true)).await;
    assert_eq!(first_admission(&db), Some((at(90), "east".into())));
    let stats = db.checkin_stats(event).unwrap();
    // Admissions count re-entries too; the superseded one became a duplicate.
    assert_eq!((stats.admitted, stats.duplicates), (2, 2));
    assert_eq!(stats.per_gate.get("east"), Some(&1));
    // The other ticket of the registration was never admitted; its row is as issued.
    let other = db.ticket(tickets[1]).unwrap().unwrap();
    assert_eq!((other.admission, other.number), (None, 2));

    // Journals from before the pool said (`None`): the row is compared, earlier wins.
    append(scanned_as(1, 200, "north", Admitted, None, None)).await;
    assert_eq!(first_admission_of(&db, 1), Some((at(200), "north".into())));
    append(scanned_as(1, 210, "south", Admitted, None, None)).await;
    assert_eq!(first_admission_of(&db, 1), Some((at(200), "north".into())));
    // A newer first admission overrides the row's own; a later one leaves both alone.
    append(scanned_as(1, 150, "east", Admitted, Some(200), Some(true))).await;
    assert_eq!(first_admission_of(&db, 1), Some((at(150), "east".into())));
    append(scanned_as(1, 220, "west", Admitted, None, Some(false))).await;
    assert_eq!(first_admission_of(&db, 1), Some((at(150), "east".into())));
}
