//! Shared fixture of the benchmarks: an engine over a real fjall store in a temporary
//! directory with the real group-commit journal writer, exactly as the server composes it.

use engine::clock::TokioClock;
use engine::ids::{EventId, TicketTypeId};
use engine::model::{EventStatus, NewEvent, NewTicketType, SeatSource};
use engine::ports::JournalHandle;
use engine::{Engine, EngineConfig, HoldRequest};
use hdrhistogram::Histogram;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};
use storage::{Db, DbOptions, JournalConfig, JournalWriter};

/// The server's allocator, so the figures are the server's.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// An engine with `pools` published ticket types (one pool each), spread over events of at
/// most 100 ticket types.
pub struct Fixture {
    pub engine: Engine,
    /// (event, ticket type) of every pool.
    pub targets: Vec<(EventId, TicketTypeId)>,
    writer: Option<JournalWriter>,
    _dir: Option<tempfile::TempDir>,
}

/// Group-commit settings of the server's default configuration.
pub fn default_journal() -> JournalConfig {
    JournalConfig {
        batch_events_max: 4096,
        batch_wait_max: Duration::from_micros(100),
    }
}

impl Fixture {
    /// Builds the fixture; `capacity` seats per pool.
    pub async fn new(pools: usize, capacity: u32, journal: JournalConfig) -> Fixture {
        let dir = tempfile::tempdir().expect("tempdir");
        let db = Db::open(dir.path(), &DbOptions::default()).expect("open store");
        let (handle, rx) = JournalHandle::channel(16_384);
        let writer = JournalWriter::spawn(
            db.clone(),
            rx,
            journal,
            Box::new(|e| panic!("journal failed: {e}")),
        )
        .expect("writer");
        let engine = Engine::start(
            engine_config(),
            Arc::new(db),
            handle,
            Arc::new(TokioClock::new()),
            vec![Arc::new(engine::notify::LogSender)],
            engine::payment::PaymentProviders::default(),
        )
        .await
        .expect("engine");
        let mut targets = Vec::with_capacity(pools);
        while targets.len() < pools {
            let event = engine
                .create_event(new_event("Bench", 3_600), None, None)
                .await
                .expect("event");
            for _ in 0..(pools - targets.len()).min(100) {
                let (_, tt) = engine
                    .create_ticket_type(event.id, general_admission(capacity), None)
                    .await
                    .expect("ticket type");
                targets.push((event.id, tt.id));
            }
            engine
                .transition_event(event.id, EventStatus::Published)
                .await
                .expect("publish");
        }
        Fixture {
            engine,
            targets,
            writer: Some(writer),
            _dir: Some(dir),
        }
    }

    /// Stops the engine and waits for the journal writer, as the server does at shutdown,
    /// before the temporary directory goes away.
    pub async fn close(self) {
        let Fixture {
            engine,
            writer,
            _dir: dir,
            ..
        } = self;
        engine.shutdown().await;
        drop(engine);
        if let Some(writer) = writer {
            tokio::task::spawn_blocking(move || writer.join())
                .await
                .expect("join writer");
        }
        drop(dir);
    }

    /// A fixture over an engine built elsewhere.
    pub fn from_parts(engine: Engine, targets: Vec<(EventId, TicketTypeId)>) -> Fixture {
        Fixture {
            engine,
            targets,
            writer: None,
            _dir: None,
        }
    }

    /// `total` holds of one seat from `concurrency` tasks, round-robin over the pools.
    /// Returns (elapsed, latency histogram in µs).
    pub async fn holds(&self, total: usize, concurrency: usize) -> (Duration, Histogram<u64>) {
        let next = Arc::new(AtomicUsize::new(0));
        let targets = Arc::new(self.targets.clone());
        let started = Instant::now();
        let tasks: Vec<_> = (0..concurrency)
            .map(|_| {
                let (engine, next, targets) = (self.engine.clone(), next.clone(), targets.clone());
                tokio::spawn(async move {
                    // Raw samples: a histogram per task would cost more than the holds.
                    let mut latency = Vec::new();
                    loop {
                        let i = next.fetch_add(1, Ordering::Relaxed);
                        if i >= total {
                            return latency;
                        }
                        let (event_id, ticket_type_id) = targets[i % targets.len()];
                        let request = HoldRequest {
                            event_id,
                            ticket_type_id,
                            quantity: 1,
                            attendee_name: "Bench Buyer".into(),
                            attendee_email: "buyer@example.com".into(),
                            idempotency: None,
                            user_id: None,
                            voucher: None,
                        };
                        let t = Instant::now();
                        engine.hold(request).await.expect("hold");
                        latency.push(t.elapsed().as_micros().max(1) as u64);
                    }
                })
            })
            .collect();
        let mut samples = Vec::with_capacity(total);
        for t in tasks {
            samples.extend(t.await.expect("task"));
        }
        let elapsed = started.elapsed();
        let mut all = Histogram::<u64>::new_with_bounds(1, 60_000_000, 3).expect("histogram");
        for us in samples {
            let _ = all.record(us);
        }
        (elapsed, all)
    }
}

/// `p50/p99/p99.9` of a µs histogram, in ms.
pub fn quantiles_ms(h: &Histogram<u64>) -> String {
    let q = |x: f64| h.value_at_quantile(x) as f64 / 1000.0;
    format!(
        "p50 {:.2} ms  p99 {:.2} ms  p99.9 {:.2} ms",
        q(0.5),
        q(0.99),
        q(0.999)
    )
}

/// A count from the environment variable `name`, or `default`.
pub fn env_count(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// The runtime the server uses on this machine: two workers.
pub fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime")
}

/// A ticket type with a new pool of `capacity` seats, up to 10 per order, no account limit.
pub fn general_admission(capacity: u32) -> NewTicketType {
    NewTicketType {
        name: "GA".into(),
        price_minor: 1_000,
        currency: "EUR".into(),
        seats: SeatSource::NewPool { capacity },
        max_per_order: 10,
        max_per_account: None,
        min_per_order: 1,
        sales_start: None,
        sales_end: None,
        vat_rate_bp: 0,
    }
}

/// A draft event starting now, with a hold TTL of `hold_ttl_secs`.
pub fn new_event(title: &str, hold_ttl_secs: u32) -> NewEvent {
    NewEvent {
        title: title.into(),
        description: String::new(),
        venue: None,
        category: None,
        starts_at: chrono::Utc::now(),
        ends_at: chrono::Utc::now() + chrono::Duration::hours(3),
        hold_ttl_secs: Some(hold_ttl_secs),
        refund_until: None,
        bank_transfer: None,
        invoicing: None,
        reminder_offsets_secs: None,
        branding: None,
        locale: None,
    }
}

/// CPU time (user + system) this process has used so far, all threads, in seconds; `None`
/// where `/proc` is unavailable. On a noisy shared machine, CPU per operation moves far less
/// than wall-clock throughput.
pub fn cpu_seconds() -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // Fields after the parenthesised command name; utime and stime are fields 14 and 15.
    let rest = &stat[stat.rfind(')')? + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks: f64 = fields.get(11)?.parse::<f64>().ok()? + fields.get(12)?.parse::<f64>().ok()?;
    Some(ticks / 100.0) // USER_HZ is 100 on Linux
}

/// `cpu N µs/op` between two [`cpu_seconds`] readings, or nothing.
pub fn cpu_per_op(before: Option<f64>, after: Option<f64>, ops: usize) -> String {
    match (before, after) {
        (Some(b), Some(a)) => format!("cpu {:.1} µs/op", (a - b) * 1e6 / ops as f64),
        _ => String::new(),
    }
}

/// The engine's bounds in the benchmarks: the server's defaults (`config/default.toml`, which
/// the engine does not read) where they bear on a measurement, and no in-flight bound on a
/// pool, so a bench measures the pool rather than its admission limit.
pub fn engine_config() -> EngineConfig {
    EngineConfig {
        call_timeout: Duration::from_secs(5),
        pool_inflight_max: 1 << 20,
        event_inflight_max: 1_024,
        hold_ttl_default_secs: 600,
        snapshot_every_events: 10_000,
        passivate_after: Duration::from_secs(600),
        ticket_types_per_event_max: 100,
        events_active_max: 100_000,
        pool_restarts_max: 10,
        outbox: engine::outbox::OutboxConfig {
            pending_max: 10_000,
            batch_max: 64,
            retry_after: Duration::from_secs(1),
        },
        notify: engine::notify::worker::WorkerConfig::default(),
        reminders: engine::notify::reminders::ReminderConfig::default(),
        broadcasts: engine::notify::broadcasts::BroadcastConfig::default(),
        waitlist_offer_secs: 3_600,
        ticket_routes_cached_max: 1_000_000,
        payment_hold_extension_secs: 900,
        bank_transfer: None,
        bank_reminder_before: None,
        payment_due_after: None,
        refund_retry: std::time::Duration::from_secs(1),
        refund_attempts_max: 8,
    }
}
