//! The journal alone: throughput and commit latency (submit → durable) against the batch size
//! limit, with appends of one event from many streams, as pool actors produce them, and at
//! most `OUTSTANDING` appends waiting at once (like callers waiting for their reply).
//!
//! `cargo bench -p benches --bench journal`

use benches::quantiles_ms;
use engine::ids::{EventId, PoolId, RegistrationId, StreamId, TicketTypeId};
use engine::model::Attendee;
use engine::pool::PoolEvent;
use engine::ports::{AppendRequest, Completion, JournalHandle, StreamEvent};
use hdrhistogram::Histogram;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use storage::{Db, DbOptions, JournalConfig, JournalWriter};

const STREAMS: usize = 256;
/// Appends in flight at once.
const OUTSTANDING: usize = 1024;

fn main() {
    let total: usize = benches::env_count("BENCH_EVENTS", 200_000);
    let runtime = benches::runtime();
    for batch_events_max in [1usize, 16, 128, 1024, 4096] {
        let n = if batch_events_max == 1 {
            total / 50
        } else {
            total
        };
        runtime.block_on(run(batch_events_max, n));
    }
}

async fn run(batch_events_max: usize, total: usize) {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = Db::open(dir.path(), &DbOptions::default()).expect("open");
    let (handle, rx) = JournalHandle::channel(16_384);
    let config = JournalConfig {
        batch_events_max,
        batch_wait_max: Duration::from_micros(100),
    };
    let writer = JournalWriter::spawn(db, rx, config, Box::new(|e| panic!("journal failed: {e}")))
        .expect("writer");
    let latency = Arc::new(Mutex::new(
        Histogram::<u64>::new_with_bounds(1, 60_000_000, 3).expect("histogram"),
    ));
    let streams: Vec<PoolId> = (0..STREAMS).map(|_| PoolId::new()).collect();
    let mut seqs = vec![0u64; STREAMS];
    let event_id = EventId::new();
    let (done_tx, mut done_rx) = tokio::sync::mpsc::channel::<()>(total.max(1));
    let outstanding = Arc::new(tokio::sync::Semaphore::new(OUTSTANDING));
    let started = Instant::now();
    for i in 0..total {
        let permit = outstanding
            .clone()
            .acquire_owned()
            .await
            .expect("semaphore");
        let s = i % STREAMS;
        seqs[s] += 1;
        let at = chrono::Utc::now();
        let event = PoolEvent::SeatsHeld {
            registration_id: RegistrationId::new(),
            event_id,
            ticket_type_id: TicketTypeId(uuid::Uuid::nil()),
            quantity: 1,
            attendee: Attendee {
                name: "Bench Buyer".into(),
                email: "buyer@example.com".into(),
            },
            user_id: None,
            idempotency: None,
            expires_at: at + chrono::Duration::hours(1),
            at,
            voucher: None,
            price: Some(engine::pricing::quote(1_000, "EUR", 1, None)),
            // A priced hold carries when its payment link is due (the default 120 s).
            payment_due_at: Some(at + chrono::Duration::minutes(2)),
        };
        let (latency, done_tx, submitted) = (latency.clone(), done_tx.clone(), Instant::now());
        let done = Completion::new(move |r| {
            r.expect("durable");
            drop(permit);
            let _ = latency
                .lock()
                .unwrap()
                .record(submitted.elapsed().as_micros().max(1) as u64);
            let _ = done_tx.try_send(());
        });
        let request = AppendRequest {
            writer: 1,
            stream: StreamId::Pool(streams[s]),
            first_seq: seqs[s],
            events: vec![StreamEvent::Pool(event)],
            snapshot: None,
            outbox: Vec::new(),
            done,
        };
        handle.append(request).await;
    }
    for _ in 0..total {
        done_rx.recv().await.expect("completion");
    }
    let elapsed = started.elapsed();
    drop(handle);
    writer.join();
    let latency = latency.lock().unwrap();
    println!(
        "journal batch_events_max={batch_events_max:<5} {total} events in {:.2}s = {:>9.0} events/s  flush latency {}",
        elapsed.as_secs_f64(),
        total as f64 / elapsed.as_secs_f64(),
        quantiles_ms(&latency)
    );
}
