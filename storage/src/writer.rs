//! The group-commit journal writer.
//!
//! One dedicated thread takes appends from the bounded queue, up to `batch_events_max`
//! events or until `batch_wait_max` has passed since the first one, and then:
//! 1. checks each append's first sequence number against its stream's head (a gap or a
//!    duplicate is refused with `SequenceConflict`, and nothing of it is written);
//! 2. merges each stream's accepted events into ONE journal record for this flush;
//! 3. projects the read models (and the event records, which are the event streams' snapshots);
//! 4. writes it all as one atomic fjall batch and fsyncs it (`SyncData`);
//! 5. only then completes the appends, in order, and hands pool snapshots to a separate
//!    snapshot thread (a snapshot is never written before its events are durable, and a large
//!    one never delays a commit).
//!
//! A failed write or fsync is fatal: it is not retried (the kernel may have dropped the
//! dirty pages), no pending append gets a success, the writer stops taking appends and calls
//! `on_fatal`, whose job is to end the process so recovery from what is durable is the only
//! way back.

use crate::codec::{JOURNAL_VERSION, JournalRecordRef, encode, encode_compact};
pub use crate::error::WriterError;
use crate::error::err;
use crate::keys;
use crate::projection::{Overlay, PoolEvents};
use crate::store::Db;
use engine::ids::StreamId;
use engine::ports::{
    AppendRequest, JournalError, JournalReceiver, Snapshot, StoreError, StreamEvent,
};
use fjall::PersistMode;
use std::collections::hash_map::Entry;
use std::collections::{HashMap, HashSet, VecDeque};
use std::time::{Duration, Instant};

/// Fenced (stream, incarnation) pairs remembered; a fenced actor stops within moments.
const FENCED_MAX: usize = 10_000;

/// Heads cached per stream before the cache is cleared (reloaded lazily from the journal).
const HEADS_CACHED_MAX: usize = 100_000;

/// Group-commit settings.
#[derive(Clone, Debug)]
pub struct JournalConfig {
    /// Most events in one durable batch.
    pub batch_events_max: usize,
    /// Longest a batch waits for more appends after its first one.
    pub batch_wait_max: Duration,
}

/// The writer thread.
pub struct JournalWriter {
    thread: std::thread::JoinHandle<()>,
}

/// Callback run once when the journal fails; it must stop the process.
pub type OnFatal = Box<dyn FnOnce(WriterError) + Send>;

impl JournalWriter {
    /// Starts the writer on its own thread, consuming `rx` until every sender is dropped.
    pub fn spawn(
        db: Db,
        rx: JournalReceiver,
        config: JournalConfig,
        on_fatal: OnFatal,
    ) -> std::io::Result<Self> {
        let thread = std::thread::Builder::new()
            .name("journal-writer".into())
            .spawn(move || {
                let runtime = match tokio::runtime::Builder::new_current_thread()
                    .enable_time()
                    .build()
                {
                    Ok(rt) => rt,
                    Err(e) => return on_fatal(WriterError::Runtime(e)),
                };
                runtime.block_on(run(db, rx, config, on_fatal));
            })?;
        Ok(Self { thread })
    }

    /// Waits until the writer has drained its queue and stopped (all senders dropped).
    pub fn join(self) {
        let _ = self.thread.join();
    }
}

async fn run(db: Db, mut rx: JournalReceiver, config: JournalConfig, on_fatal: OnFatal) {
    let snapshotter = match Snapshotter::spawn(db.clone()) {
        Ok(s) => s,
        Err(e) => return on_fatal(WriterError::SnapshotThread(e)),
    };
    let mut fences = Fences::default();
    let mut batch: Vec<AppendRequest> = Vec::new();
    while let Some(first) = rx.recv().await {
        let deadline = tokio::time::Instant::now() + config.batch_wait_max;
        let mut events = first.events.len();
        batch.push(first);
        while events < config.batch_events_max {
            let next = match rx.try_recv() {
                Ok(r) => r,
                Err(tokio::sync::mpsc::error::TryRecvError::Empty)
                    if !config.batch_wait_max.is_zero() =>
                {
                    match tokio::time::timeout_at(deadline, rx.recv()).await {
                        Ok(Some(r)) => r,
                        _ => break,
                    }
                }
                Err(_) => break,
            };
            events += next.events.len();
            batch.push(next);
        }
        metrics::gauge!("regengine_journal_queue_depth").set(rx.len() as f64);
        match flush(&db, &mut fences, &mut batch, events) {
            Ok((outcomes, pool_snapshots)) => {
                for (request, outcome) in batch.drain(..).zip(outcomes) {
                    request.done.complete(outcome.map_or(Ok(()), Err));
                }
                for snapshot in pool_snapshots {
                    snapshotter.offer(snapshot);
                }
            }
            Err(e) => {
                tracing::error!(error = %engine::failure::chain(&e), "journal write failed; stopping");
                metrics::counter!("regengine_journal_failures_total").increment(1);
                for request in batch.drain(..) {
                    request.done.complete(Err(JournalError::Io(e.clone())));
                }
                rx.close();
                while let Some(request) = rx.recv().await {
                    request.done.complete(Err(JournalError::Stopped));
                }
                return on_fatal(WriterError::Write(e));
            }
        }
        if fences.heads.len() > HEADS_CACHED_MAX {
            fences.heads.clear();
        }
    }
    // Let the snapshot thread finish what it has, then sync everything.
    let Snapshotter { tx, thread } = snapshotter;
    drop(tx);
    let _ = thread.join();
    if let Err(e) = db.db.persist(PersistMode::SyncAll) {
        on_fatal(WriterError::Persist(err(e)));
    }
}

/// Per-stream sequence state of the writer.
#[derive(Default)]
struct Fences {
    /// Last durable sequence number per stream (a cache of what the journal holds).
    heads: HashMap<StreamId, u64>,
    /// (stream, incarnation) pairs that lost a sequence race: all their appends are refused.
    fenced: HashSet<(StreamId, u64)>,
    /// Insertion order of `fenced`, to bound it.
    fenced_order: VecDeque<(StreamId, u64)>,
    /// The event of each pool projected.
    pool_events: PoolEvents,
}

impl Fences {
    fn fence(&mut self, stream: StreamId, writer: u64) {
        if writer != 0 && self.fenced.insert((stream, writer)) {
            self.fenced_order.push_back((stream, writer));
            if self.fenced_order.len() > FENCED_MAX
                && let Some(old) = self.fenced_order.pop_front()
            {
                self.fenced.remove(&old);
            }
        }
    }
}

/// Writes one batch durably. On success the caller completes each append with the returned
/// outcome (`None` = durable); on error it completes them all with the error.
fn flush(
    db: &Db,
    fences: &mut Fences,
    batch: &mut [AppendRequest],
    events: usize,
) -> Result<(Vec<Option<JournalError>>, Vec<PoolSnapshot>), StoreError> {
    let started = Instant::now();
    let mut admitted = Admitted::default();
    let outcomes = batch
        .iter_mut()
        .map(|request| admit(db, fences, request, &mut admitted))
        .collect::<Result<Vec<_>, _>>()?;
    let mut wb = db.db.batch().durability(Some(PersistMode::SyncData));
    let mut overlay = Overlay::default();
    stage_records(db, fences, &mut wb, &mut overlay, admitted.records)?;
    let pool_snapshots = stage_snapshots(db, &mut wb, admitted.snapshots)?;
    // The transactional outbox: messages commit with the events that caused them.
    for message in admitted.outbox {
        let bytes = encode(&message).map_err(err)?;
        wb.insert(&db.outbox, message.id.as_bytes().to_vec(), bytes);
    }
    let checkin_stats = overlay.checkin_stats();
    overlay.write(db, &mut wb)?;
    // One atomic write and one fsync for the whole batch.
    if !wb.is_empty() {
        wb.commit().map_err(err)?;
        db.delivery_state.committed();
    }
    // Once durable: the check-in counters (per-event series).
    for (event, stats) in &checkin_stats {
        stats.publish_metrics(*event);
    }
    metrics::histogram!("regengine_journal_batch_events").record(events as f64);
    metrics::histogram!("regengine_journal_batch_appends").record(batch.len() as f64);
    metrics::histogram!("regengine_journal_flush_seconds").record(started.elapsed().as_secs_f64());
    Ok((outcomes, pool_snapshots))
}

/// What a batch's admitted appends add up to.
#[derive(Default)]
struct Admitted {
    /// One record per stream: its first sequence number and its events, in arrival order.
    records: Vec<(StreamId, u64, Vec<StreamEvent>)>,
    /// Index of each stream's record in `records`.
    record_of: HashMap<StreamId, usize>,
    /// The latest snapshot each stream asked for.
    snapshots: HashMap<StreamId, Snapshot>,
    outbox: Vec<engine::outbox::OutboxMessage>,
}

/// Admits one append into `admitted` (its events, snapshot and messages), or refuses it with
/// a sequence conflict: its first sequence number is not its stream's next, or its writer
/// was fenced on that stream by an earlier conflict.
fn admit(
    db: &Db,
    fences: &mut Fences,
    request: &mut AppendRequest,
    admitted: &mut Admitted,
) -> Result<Option<JournalError>, StoreError> {
    if request.events.is_empty() {
        // A barrier: no sequence check. It may carry messages no state change causes.
        admitted.outbox.append(&mut request.outbox);
        return Ok(None);
    }
    let head = match fences.heads.get(&request.stream) {
        Some(h) => *h,
        None => db.head(&request.stream)?,
    };
    fences.heads.insert(request.stream, head);
    let fenced = fences.fenced.contains(&(request.stream, request.writer));
    if fenced || request.first_seq != head + 1 {
        let conflict = JournalError::SequenceConflict {
            stream: request.stream,
            expected: head + 1,
            got: request.first_seq,
        };
        if request.is_fenced() {
            tracing::error!(error = %conflict, writer = request.writer, fenced, "append refused");
        } else {
            // An optimistic writer (a user stream) lost a race: it reads again and retries.
            tracing::debug!(error = %conflict, "append refused");
        }
        metrics::counter!("regengine_journal_sequence_conflicts_total").increment(1);
        fences.fence(request.stream, request.writer);
        return Ok(Some(conflict));
    }
    let events = std::mem::take(&mut request.events);
    fences
        .heads
        .insert(request.stream, head + events.len() as u64);
    match admitted.record_of.entry(request.stream) {
        Entry::Occupied(e) => admitted.records[*e.get()].2.extend(events),
        Entry::Vacant(e) => {
            e.insert(admitted.records.len());
            admitted
                .records
                .push((request.stream, request.first_seq, events));
        }
    }
    if let Some(snapshot) = request.snapshot.take() {
        admitted.snapshots.insert(request.stream, snapshot);
    }
    admitted.outbox.append(&mut request.outbox);
    Ok(None)
}

/// Each stream's record into the write batch, and its events into the read models.
fn stage_records(
    db: &Db,
    fences: &mut Fences,
    wb: &mut fjall::OwnedWriteBatch,
    overlay: &mut Overlay,
    records: Vec<(StreamId, u64, Vec<StreamEvent>)>,
) -> Result<(), StoreError> {
    for (stream, first_seq, events) in records {
        let record = JournalRecordRef {
            v: JOURNAL_VERSION,
            events: &events,
        };
        let bytes = encode(&record).map_err(err)?;
        wb.insert(
            &db.journal,
            keys::journal(&stream, first_seq).to_vec(),
            bytes,
        );
        // A stream's events are projected in order; streams touch disjoint rows.
        for event in events {
            match (stream, event) {
                (StreamId::Pool(pool_id), StreamEvent::Pool(e)) => {
                    overlay.project(db, &mut fences.pool_events, pool_id, e)?
                }
                (StreamId::Event(event_id), StreamEvent::Event(e)) => {
                    overlay.project_event(event_id, &e);
                    overlay.event_effects(db, event_id, &e)?
                }
                (StreamId::User(user_id), StreamEvent::User(e)) => {
                    overlay.project_user(user_id, &e)
                }
                (StreamId::Ledger(_), StreamEvent::Ledger(e)) => overlay.project_ledger(e),
                (StreamId::Statements(event_id), StreamEvent::Statements(e)) => {
                    overlay.project_statements(db, event_id, e)?
                }
                _ => {
                    return Err(StoreError::Inconsistent(format!(
                        "event of the wrong kind on {stream}"
                    )));
                }
            }
        }
    }
    Ok(())
}

/// Event and user records (their read models) into the write batch; pool snapshots are
/// returned, to be written after the batch is durable, off the commit path (see
/// `Snapshotter`): they only shorten recovery.
fn stage_snapshots(
    db: &Db,
    wb: &mut fjall::OwnedWriteBatch,
    snapshots: HashMap<StreamId, Snapshot>,
) -> Result<Vec<PoolSnapshot>, StoreError> {
    let mut pool_snapshots = Vec::new();
    for (stream, snapshot) in snapshots {
        match snapshot {
            // The event record is also the event read model: it commits with its events.
            Snapshot::Event(record) => {
                let bytes = encode(&record).map_err(err)?;
                wb.insert(&db.events, record.id.as_bytes().to_vec(), bytes)
            }
            // Likewise the user record: the account read model.
            Snapshot::User(record) => {
                let bytes = encode(&record).map_err(err)?;
                wb.insert(&db.users, record.id.as_bytes().to_vec(), bytes)
            }
            Snapshot::Pool(state) => pool_snapshots.push((stream, state)),
        }
    }
    Ok(pool_snapshots)
}

/// Pool snapshots waiting for the snapshot thread; a full queue drops the newest one (the
/// next snapshot of that pool replaces it; meanwhile recovery replays a little more).
const SNAPSHOTS_QUEUED_MAX: usize = 4;

/// A pool snapshot taken at a sequence number that is already durable.
type PoolSnapshot = (StreamId, Box<engine::pool::PoolState>);

/// Encodes and writes pool snapshots on its own thread, so a snapshot of a large pool
/// (megabytes) never holds up a group commit.
struct Snapshotter {
    tx: std::sync::mpsc::SyncSender<PoolSnapshot>,
    thread: std::thread::JoinHandle<()>,
}

impl Snapshotter {
    fn spawn(db: Db) -> std::io::Result<Self> {
        let (tx, rx) = std::sync::mpsc::sync_channel::<PoolSnapshot>(SNAPSHOTS_QUEUED_MAX);
        let thread = std::thread::Builder::new()
            .name("snapshot-writer".into())
            .spawn(move || {
                for (stream, state) in rx {
                    let started = Instant::now();
                    let written = encode_compact(state.as_ref())
                        .map_err(err)
                        .and_then(|bytes| db.snapshots.insert(stream.key(), bytes).map_err(err));
                    match written {
                        Ok(()) => metrics::histogram!("regengine_journal_snapshot_seconds")
                            .record(started.elapsed().as_secs_f64()),
                        // Not fatal: the journal still holds everything; recovery replays more.
                        Err(e) => tracing::warn!(%stream, error = %engine::failure::chain(&e), "pool snapshot not written"),
                    }
                }
            })?;
        Ok(Self { tx, thread })
    }

    fn offer(&self, snapshot: PoolSnapshot) {
        if self.tx.try_send(snapshot).is_err() {
            metrics::counter!("regengine_journal_snapshots_dropped_total").increment(1);
        }
    }
}
