//! The actors that own state: one `EventActor` per active event, supervising one
//! `PoolActor` per pool; a `RootActor` supervises the event actors and keeps the registry
//! of active events clean. Shared pieces (admission gates, the per-event shared view) live
//! here.

pub(crate) mod event_actor;
pub(crate) mod pool_actor;
mod pool_metrics;
pub(crate) mod root;

use crate::clock::SharedClock;
use crate::config::EngineConfig;
use crate::error::{EngineError, EngineResult};
use crate::ids::{EventId, PoolId};
use crate::model::{EventRecord, EventStatus};
use crate::pool::PoolCounts;
use crate::ports::{JournalHandle, Store};
use dashmap::DashMap;
use ractor::{ActorRef, RpcReplyPort, rpc::CallResult};
use std::collections::HashMap;
use std::sync::atomic::{AtomicI64, AtomicU32, Ordering};
use std::sync::{Arc, RwLock};
use tokio::sync::{OnceCell, watch};

/// What every actor needs from the outside world.
pub(crate) struct Ctx {
    pub store: Arc<dyn Store>,
    pub journal: JournalHandle,
    pub clock: SharedClock,
    pub config: EngineConfig,
    pub registry: Arc<Registry>,
    /// Per-account feeds of registration changes.
    pub feeds: Arc<crate::feeds::UserFeeds<crate::ids::RegistrationId>>,
    /// The outbox's bound (actors reserve room for the messages their decisions send).
    pub outbox: Arc<crate::outbox::OutboxGauge>,
    /// The payment providers configured.
    pub payments: crate::payment::PaymentProviders,
}

/// Active events: one lazily initialised handle per event id.
pub(crate) type Registry = DashMap<EventId, Arc<OnceCell<EventHandle>>>;

/// A reply port carrying an engine result, and the caller's admission permit: the permit is
/// released when the answer is sent (after durability), not when the caller stops waiting,
/// so a stalled actor's mailbox cannot grow past its gate even as callers time out.
pub(crate) struct Reply<T> {
    port: RpcReplyPort<EngineResult<T>>,
    _permit: Permit,
}

impl<T> Reply<T> {
    /// Sends the answer; `Err` if the caller is gone (it timed out).
    pub fn send(self, answer: EngineResult<T>) -> Result<(), ()> {
        self.port.send(answer).map_err(|_| ())
    }
}

/// Seat counts of every pool of an event, published after each decision. Readers take a
/// copy from the watch channel; they never send a message.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Availability {
    /// Incremented on every change.
    pub version: u64,
    /// The event's status.
    pub status: Option<EventStatus>,
    /// Counts per pool.
    pub pools: HashMap<PoolId, PoolCounts>,
}

/// An in-flight bound for one actor: callers enter before sending, leave when answered.
/// Over the bound they get `Overloaded` at once, so a mailbox never grows past it.
#[derive(Clone, Debug)]
pub(crate) struct Gate {
    inflight: Arc<AtomicU32>,
    max: u32,
    kind: &'static str,
}

/// Proof of admission; leaving the gate on drop.
pub(crate) struct Permit {
    inflight: Arc<AtomicU32>,
    kind: &'static str,
}

impl Gate {
    pub fn new(max: u32, kind: &'static str) -> Self {
        Self {
            inflight: Arc::new(AtomicU32::new(0)),
            max,
            kind,
        }
    }

    pub fn enter(&self) -> EngineResult<Permit> {
        let before = self.inflight.fetch_add(1, Ordering::AcqRel);
        if before >= self.max {
            self.inflight.fetch_sub(1, Ordering::AcqRel);
            metrics::counter!("regengine_engine_admission_rejected_total", "kind" => self.kind)
                .increment(1);
            return Err(EngineError::Overloaded);
        }
        metrics::gauge!("regengine_engine_admission_inflight", "kind" => self.kind).increment(1.0);
        Ok(Permit {
            inflight: self.inflight.clone(),
            kind: self.kind,
        })
    }

    pub fn inflight(&self) -> u32 {
        self.inflight.load(Ordering::Acquire)
    }
}

impl Drop for Permit {
    fn drop(&mut self) {
        self.inflight.fetch_sub(1, Ordering::AcqRel);
        metrics::gauge!("regengine_engine_admission_inflight", "kind" => self.kind).decrement(1.0);
    }
}

/// A pool actor and its admission gate.
#[derive(Clone)]
pub(crate) struct PoolHandle {
    pub actor: ActorRef<pool_actor::PoolMsg>,
    pub gate: Gate,
}

/// State of an active event that callers read without messaging its actor.
pub(crate) struct EventShared {
    pub id: EventId,
    /// The event as last decided (routing: ticket type → pool). Never held across `.await`.
    pub record: RwLock<Arc<EventRecord>>,
    /// Pool actors by pool id; replaced when a pool restarts.
    pub pools: RwLock<HashMap<PoolId, PoolHandle>>,
    /// Seat counts, published by pool actors after each decision.
    pub availability: watch::Sender<Availability>,
    /// When a caller last used this event (ms since epoch), for passivation.
    pub last_used_ms: AtomicI64,
    /// Decided scans, published by pool actors once durable (scanners' hubs listen).
    pub scans: tokio::sync::broadcast::Sender<crate::pool::scan::ScanNotice>,
    /// Pools with payment reminders pending: their timers must run, so the event is not
    /// passivated.
    pub reminding_pools: std::sync::Mutex<std::collections::HashSet<PoolId>>,
}

impl EventShared {
    pub fn record(&self) -> Arc<EventRecord> {
        // A poisoned lock means a panic while swapping an Arc; the value is still whole.
        self.record
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    pub fn set_record(&self, record: EventRecord) {
        *self.record.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(record);
    }

    pub fn pool(&self, id: PoolId) -> Option<PoolHandle> {
        self.pools
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(&id)
            .cloned()
    }

    pub fn set_pool(&self, id: PoolId, handle: PoolHandle) {
        self.pools
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .insert(id, handle);
    }

    pub fn pool_handles(&self) -> Vec<PoolHandle> {
        self.pools
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .values()
            .cloned()
            .collect()
    }

    /// Sets the event's per-event series again: every pool's seat gauge from the last
    /// published counts, and the check-in counters from the durable statistics if it has any.
    /// Series that are not set for a while leave the scrape (the gateway's exporter drops
    /// them), so the event's tick keeps a live event's series there however quiet it is.
    pub fn republish_series(&self, store: &dyn crate::ports::Store) {
        {
            let availability = self.availability.borrow();
            for (pool, counts) in &availability.pools {
                set_available_seats(&seat_labels(self.id, *pool), counts.available());
            }
        }
        match store.checkin_stats(self.id) {
            Ok(stats) if stats.admitted + stats.duplicates + stats.exits > 0 => {
                stats.publish_metrics(self.id);
            }
            Ok(_) => {}
            Err(e) => {
                tracing::warn!(event = %self.id, error = %e, "check-in statistics unreadable")
            }
        }
    }
}

/// The labels of a pool's per-event series, built once per pool actor (the strings are shared,
/// so setting the gauge after each decision allocates nothing for them).
pub(crate) fn seat_labels(event: EventId, pool: PoolId) -> Vec<metrics::Label> {
    let text = |s: String| metrics::SharedString::from(Arc::<str>::from(s));
    vec![
        metrics::Label::new("event", text(event.to_string())),
        metrics::Label::new("pool", text(pool.to_string())),
    ]
}

/// The seats a pool can still hold, per event and pool: a per-event series (its name starts
/// with `regengine_event_`).
pub(crate) fn set_available_seats(labels: &[metrics::Label], available: u32) {
    metrics::gauge!("regengine_event_pool_available_seats", labels.iter())
        .set(f64::from(available));
}

/// An active event: its actor and its shared state.
#[derive(Clone)]
pub(crate) struct EventHandle {
    pub actor: ActorRef<event_actor::EventMsg>,
    pub gate: Gate,
    pub shared: Arc<EventShared>,
}

/// Calls an actor through its gate with a timeout, mapping transport outcomes to errors.
pub(crate) async fn call<M, T>(
    actor: &ActorRef<M>,
    gate: &Gate,
    timeout: std::time::Duration,
    build: impl FnOnce(Reply<T>) -> M,
) -> EngineResult<T>
where
    M: ractor::Message,
    T: Send + 'static,
{
    let permit = gate.enter()?;
    let build = move |port| {
        build(Reply {
            port,
            _permit: permit,
        })
    };
    match actor.call(build, Some(timeout)).await {
        Ok(CallResult::Success(result)) => result,
        Ok(CallResult::Timeout) => Err(EngineError::Timeout),
        Ok(CallResult::SenderError) => Err(EngineError::Unavailable("actor restarting".into())),
        Err(_) => Err(EngineError::Unavailable("actor stopped".into())),
    }
}
