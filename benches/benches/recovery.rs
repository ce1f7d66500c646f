//! Recovery: time from opening the store to ready (every published event activated, pools
//! rebuilt from snapshot + journal tail, overdue holds expired) with 1,000,000 journaled
//! registrations in one hot pool, after a stop that did not flush memtables.
//!
//! `cargo bench -p benches --bench recovery`. `BENCH_REGISTRATIONS` changes the count;
//! `BENCH_DATA_DIR=path` keeps the populated store there, to time the real server on it.

use benches::default_journal;
use engine::Engine;
use engine::clock::TokioClock;
use engine::model::EventStatus;
use engine::ports::JournalHandle;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;
use storage::{Db, DbOptions, JournalWriter};

async fn start(path: &Path) -> (Engine, Db, JournalWriter) {
    let db = Db::open(path, &DbOptions::default()).expect("open");
    let (handle, rx) = JournalHandle::channel(16_384);
    let writer = JournalWriter::spawn(
        db.clone(),
        rx,
        default_journal(),
        Box::new(|e| panic!("journal: {e}")),
    )
    .expect("writer");
    let engine = Engine::start(
        benches::engine_config(),
        Arc::new(db.clone()),
        handle,
        Arc::new(TokioClock::new()),
        vec![Arc::new(engine::notify::LogSender)],
        engine::payment::PaymentProviders::default(),
    )
    .await
    .expect("engine");
    (engine, db, writer)
}

fn main() {
    let total: usize = benches::env_count("BENCH_REGISTRATIONS", 1_000_000);
    let tmp = tempfile::tempdir().expect("tempdir");
    let path: PathBuf = std::env::var("BENCH_DATA_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|_| tmp.path().to_owned());
    let runtime = benches::runtime();
    runtime.block_on(async {
        let (engine, db, writer) = start(&path).await;
        let event = engine
            .create_event(benches::new_event("Recovery", 86_400), None, None)
            .await
            .expect("event");
        let (_, tt) = engine
            .create_ticket_type(event.id, benches::general_admission(total as u32), None)
            .await
            .expect("ticket type");
        engine
            .transition_event(event.id, EventStatus::Published)
            .await
            .expect("publish");
        let fixture = benches::Fixture::from_parts(engine.clone(), vec![(event.id, tt.id)]);
        let started = Instant::now();
        fixture.holds(total, 512).await;
        println!(
            "recovery/populate {total} registrations in {:.1}s",
            started.elapsed().as_secs_f64()
        );
        engine.shutdown().await;
        drop((fixture, engine));
        writer.join();
        // No memtable flush: the next open replays the store's own journal, as after a crash.
        drop(db);
    });
    runtime.block_on(async {
        let started = Instant::now();
        let (engine, _db, _writer) = start(&path).await;
        let opened = started.elapsed();
        let events = engine.recover().await.expect("recover");
        let ready = started.elapsed();
        println!(
            "recovery/start_to_ready {total} registrations: open {:.2}s, ready {:.2}s ({events} event(s) activated)",
            opened.as_secs_f64(),
            ready.as_secs_f64()
        );
        engine.shutdown().await;
    });
    if std::env::var("BENCH_DATA_DIR").is_ok() {
        std::mem::forget(tmp);
    }
}
