//! The engine facade: what the gateway calls. It activates event actors on first use,
//! routes commands to the actor that owns the decision (through its admission gate, with a
//! timeout), and answers queries from the read models and published availability without
//! sending any message.
//!
//! This file holds the engine's start, recovery and shutdown and the routing every side
//! shares (activation, pool calls, idempotency keys); each side of the facade is a module:
//! `events`, `registrations`, `checkin`, `users`, `vouchers`, `waitlist`.

mod checkin;
mod deliveries;
mod events;
mod invoices;
mod payments;
mod refunds;
mod registrations;
mod statements;
mod users;
mod vouchers;
mod waitlist;

pub use checkin::ScanRequest;
pub use events::{AvailabilityFeed, EventAvailability, TicketTypeAvailability};
pub use payments::{PaymentStart, ReportOutcome};
pub use refunds::RefundRelayConfig;
pub use registrations::{Hold, HoldRequest};
pub use statements::Decision;
pub use vouchers::{NewVoucher, normalize_code as normalize_voucher_code};
pub use waitlist::JoinWaitlist;

use crate::actors::event_actor::{EventActor, EventArgs};
use crate::actors::pool_actor::PoolMsg;
use crate::actors::root::{EVENT_ACTOR_PREFIX, RootActor};
use crate::actors::{Availability, Ctx, EventHandle, EventShared, Gate, Registry, call};
use crate::cache::Cache;
use crate::clock::SharedClock;
use crate::config::EngineConfig;
use crate::error::{DomainError, EngineError, EngineResult};
use crate::ids::{EventId, TicketId, UserId};
use crate::model::EventStatus;
use crate::notify::{Sender, Wakes};
use crate::outbox::OutboxGauge;
use crate::pool::{IdempotencyToken, PoolCommand, PoolOutcome};
use crate::ports::{EventQuery, JournalHandle, Store, TicketRoute};
use ractor::{Actor, ActorRef};
use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use tokio::sync::{OnceCell, watch};

/// The scope of idempotency keys that belong to no event (event creation).
pub const GLOBAL_SCOPE: EventId = EventId(uuid::Uuid::nil());

/// The engine. Cheap to clone.
#[derive(Clone)]
pub struct Engine {
    ctx: Arc<Ctx>,
    root: ActorRef<()>,
    incarnation: Arc<AtomicU64>,
    /// E-mail addresses of sign-ups in flight (not durable yet): with the `users_by_email`
    /// read model, this makes e-mail addresses unique.
    signups: Arc<dashmap::DashSet<String>>,
    /// Voucher codes (`event/code`) being created: with the voucher read model, this makes
    /// codes unique per event.
    voucher_codes: Arc<dashmap::DashSet<String>>,
    /// Size of the outbox, and the relay's wake-up.
    outbox: Arc<OutboxGauge>,
    /// The delivery workers' wake-ups.
    wakes: Arc<Wakes>,
    /// Stops the outbox relay.
    relay_stop: Arc<watch::Sender<bool>>,
    /// Routes of tickets scanned or prepared for doors (immutable once issued: never stale).
    routes: Arc<Cache<TicketId, TicketRoute>>,
    /// Wakes the refund relay.
    refunds_wake: Arc<tokio::sync::Notify>,
    /// Wakes the invoice relay.
    invoices_wake: Arc<tokio::sync::Notify>,
}

/// A delivery worker per sender (one per channel), and the reminder schedule's task; all stop
/// when `stop` turns true.
fn spawn_notify(
    config: &EngineConfig,
    store: &Arc<dyn Store>,
    clock: &SharedClock,
    wakes: &Arc<Wakes>,
    senders: Vec<Arc<dyn Sender>>,
    stop: &watch::Sender<bool>,
) {
    for sender in senders {
        let worker = crate::notify::worker::Worker {
            store: store.clone(),
            wake: wakes.of(sender.channel()),
            sender: sender.clone(),
            clock: clock.clone(),
            config: sender
                .worker_config()
                .unwrap_or_else(|| config.notify.clone()),
        };
        tokio::spawn(crate::notify::worker::run(worker, stop.subscribe()));
    }
    tokio::spawn(crate::notify::reminders::run(
        store.clone(),
        wakes.clone(),
        clock.clone(),
        config.reminders.clone(),
        stop.subscribe(),
    ));
    tokio::spawn(crate::notify::broadcasts::run(
        store.clone(),
        wakes.clone(),
        clock.clone(),
        config.broadcasts.clone(),
        stop.subscribe(),
    ));
}

impl Engine {
    /// Starts the engine's root actor over `store` and `journal`, the outbox relay that fans
    /// messages out into deliveries, and a delivery worker per sender (one per channel).
    pub async fn start(
        config: EngineConfig,
        store: Arc<dyn Store>,
        journal: JournalHandle,
        clock: SharedClock,
        senders: Vec<Arc<dyn Sender>>,
        payments: crate::payment::PaymentProviders,
    ) -> Result<Self, EngineError> {
        let pending = store.outbox_len().map_err(EngineError::Store)?;
        let outbox = Arc::new(OutboxGauge::new(pending, config.outbox.pending_max));
        let (relay_stop, relay_stopped) = watch::channel(false);
        let wakes = Arc::new(Wakes::new(crate::notify::Channels::of(
            senders.iter().map(|s| s.channel()),
        )));
        tokio::spawn(crate::outbox::relay(
            store.clone(),
            outbox.clone(),
            config.outbox.clone(),
            wakes.clone(),
            clock.clone(),
            relay_stopped,
        ));
        spawn_notify(&config, &store, &clock, &wakes, senders, &relay_stop);
        let registry: Arc<Registry> = Arc::new(Registry::new());
        let (root, _) = Actor::spawn(None, RootActor, registry.clone())
            .await
            .map_err(|e| EngineError::Unavailable(e.to_string()))?;
        let routes = Arc::new(Cache::new("ticket_routes", config.ticket_routes_cached_max));
        let ctx = Arc::new(Ctx {
            store,
            journal,
            clock,
            config,
            registry,
            feeds: Arc::new(crate::feeds::UserFeeds::default()),
            outbox: outbox.clone(),
            payments,
        });
        let relay_stopped_refunds = relay_stop.subscribe();
        let relay_stopped_invoices = relay_stop.subscribe();
        let engine = Self {
            ctx,
            root,
            incarnation: Arc::new(AtomicU64::new(0)),
            signups: Arc::new(dashmap::DashSet::new()),
            voucher_codes: Arc::new(dashmap::DashSet::new()),
            outbox,
            wakes,
            relay_stop: Arc::new(relay_stop),
            routes,
            refunds_wake: Arc::new(tokio::sync::Notify::new()),
            invoices_wake: Arc::new(tokio::sync::Notify::new()),
        };
        let refund_config = RefundRelayConfig {
            retry: engine.ctx.config.refund_retry,
            attempts_max: engine.ctx.config.refund_attempts_max,
        };
        tokio::spawn(
            engine
                .clone()
                .refund_relay(refund_config, relay_stopped_refunds),
        );
        tokio::spawn(engine.clone().invoice_relay(relay_stopped_invoices));
        Ok(engine)
    }

    /// Activates every published event (recovering its pools and expiring holds that ran
    /// out while the server was down), and every canceled event not yet over (its pools end
    /// what a crash kept them from ending when it was canceled). Returns how many events were
    /// activated.
    pub async fn recover(&self) -> EngineResult<usize> {
        let mut activated = 0;
        for (status, when) in [
            (EventStatus::Published, None),
            (EventStatus::Canceled, Some(crate::ports::When::Upcoming)),
        ] {
            let mut after = None;
            loop {
                let query = EventQuery {
                    status: Some(status),
                    when,
                    after,
                    limit: 500,
                    ..EventQuery::default()
                };
                let page = self
                    .ctx
                    .store
                    .events(&query, self.ctx.clock.now())
                    .map_err(EngineError::Store)?;
                for event in &page.items {
                    // One event that cannot be recovered must not keep every other one from
                    // selling: it is logged, counted, and activated again on its next use.
                    match self.handle(event.id).await {
                        Ok(_) => activated += 1,
                        Err(e) => {
                            metrics::counter!("regengine_engine_recovery_failures_total")
                                .increment(1);
                            tracing::error!(event = %event.id, error = %e, "event not recovered");
                        }
                    }
                }
                match page.next {
                    Some(next) => after = Some(next),
                    None => break,
                }
            }
        }
        Ok(activated)
    }

    /// Stops every actor. Appends already queued still complete.
    pub async fn shutdown(&self) {
        let _ = self.relay_stop.send(true);
        self.root.stop_children(Some("shutdown".into()));
        self.root.stop(Some("shutdown".into()));
    }

    /// The clock the engine decides with.
    pub fn clock(&self) -> &SharedClock {
        &self.ctx.clock
    }

    /// Changes to `user`'s registrations (their ids), from now on, once durable. The channel is
    /// bounded ([`crate::feeds::FEED_CAPACITY`]): a listener that falls behind gets `Lagged`
    /// and should re-read the registrations.
    pub fn registration_updates(&self, user: UserId) -> crate::feeds::RegistrationFeed {
        self.ctx.feeds.subscribe(user)
    }

    /// Number of active (in-memory) events.
    pub fn active_events(&self) -> usize {
        self.ctx.registry.len()
    }

    /// What an idempotency key created before in `scope` (an event, or [`GLOBAL_SCOPE`]):
    /// `Some(id)` for the same request, 422 for another request, `None` for a new key.
    fn idempotent(
        &self,
        scope: EventId,
        token: Option<IdempotencyToken>,
    ) -> EngineResult<Option<uuid::Uuid>> {
        let Some(token) = token else { return Ok(None) };
        match self
            .ctx
            .store
            .idempotent(scope, token.key)
            .map_err(EngineError::Store)?
        {
            Some((_, request)) if request != token.request => {
                Err(DomainError::IdempotencyMismatch.into())
            }
            Some((id, _)) => Ok(Some(id)),
            None => Ok(None),
        }
    }

    // ---- activation ---------------------------------------------------------------------

    /// The event's handle if it is active (in memory).
    fn active(&self, id: EventId) -> Option<EventHandle> {
        let cell = self.ctx.registry.get(&id).map(|e| e.value().clone())?;
        cell.get().cloned()
    }

    /// Sends `command` to the pool `pool_id` of the active event `h` and waits for its
    /// answer, which leaves once what it rests on is durable.
    async fn call_pool(
        &self,
        h: &EventHandle,
        pool_id: crate::ids::PoolId,
        command: PoolCommand,
    ) -> EngineResult<PoolOutcome> {
        let pool = h
            .shared
            .pool(pool_id)
            .ok_or_else(|| EngineError::Unavailable("pool restarting".into()))?;
        call(&pool.actor, &pool.gate, self.ctx.config.call_timeout, |r| {
            PoolMsg::Execute(command, r)
        })
        .await
    }

    /// Sends `command` to a pool of an event (activating it if needed); see `call_pool`.
    async fn pool_command(
        &self,
        event_id: EventId,
        pool_id: crate::ids::PoolId,
        command: PoolCommand,
    ) -> EngineResult<PoolOutcome> {
        let h = self.handle(event_id).await?;
        self.call_pool(&h, pool_id, command).await
    }

    /// The active handle of an event, activating it from durable state on first use.
    async fn handle(&self, id: EventId) -> EngineResult<EventHandle> {
        let now_ms = self.ctx.clock.now().timestamp_millis();
        if let Some(h) = self.active(id) {
            h.shared.last_used_ms.store(now_ms, Ordering::Relaxed);
            return Ok(h);
        }
        if self.ctx.registry.len() >= self.ctx.config.events_active_max {
            return Err(EngineError::Overloaded);
        }
        let cell = self
            .ctx
            .registry
            .entry(id)
            .or_insert_with(|| Arc::new(OnceCell::new()))
            .value()
            .clone();
        let result = cell.get_or_try_init(|| self.activate(id)).await.cloned();
        match result {
            Ok(h) => {
                h.shared.last_used_ms.store(now_ms, Ordering::Relaxed);
                Ok(h)
            }
            Err(e) => {
                self.ctx
                    .registry
                    .remove_if(&id, |_, c| Arc::ptr_eq(c, &cell) && c.get().is_none());
                Err(e)
            }
        }
    }

    async fn activate(&self, id: EventId) -> EngineResult<EventHandle> {
        let record = self.event(id)?;
        let shared = Arc::new(EventShared {
            id,
            record: std::sync::RwLock::new(Arc::new(record)),
            pools: std::sync::RwLock::new(HashMap::new()),
            availability: watch::Sender::new(Availability::default()),
            last_used_ms: AtomicI64::new(self.ctx.clock.now().timestamp_millis()),
            scans: tokio::sync::broadcast::Sender::new(crate::pool::scan::SCAN_FEED_CAPACITY),
            reminding_pools: std::sync::Mutex::new(std::collections::HashSet::new()),
        });
        let name = format!(
            "{EVENT_ACTOR_PREFIX}{id}:{}",
            self.incarnation.fetch_add(1, Ordering::Relaxed)
        );
        let args = EventArgs {
            ctx: self.ctx.clone(),
            shared: shared.clone(),
        };
        let (actor, _) = Actor::spawn_linked(Some(name), EventActor, args, self.root.get_cell())
            .await
            .map_err(|e| EngineError::Unavailable(format!("activating event {id}: {e}")))?;
        metrics::counter!("regengine_engine_activations_total").increment(1);
        let gate = Gate::new(self.ctx.config.event_inflight_max, "event");
        Ok(EventHandle {
            actor,
            gate,
            shared,
        })
    }
}

/// Read-decide-append cycles of an optimistic writer (a ledger, a statements stream) before the
/// caller gets a retryable error.
const APPEND_ATTEMPTS_MAX: usize = 16;

impl Engine {
    /// Appends `events` to `stream` at `first` and waits until durable. Unfenced: the
    /// sequence number alone decides who writes first (the loser gets `SequenceConflict`).
    async fn append_unfenced(
        &self,
        stream: crate::ids::StreamId,
        first: u64,
        events: Vec<crate::ports::StreamEvent>,
    ) -> Result<(), crate::failure::JournalError> {
        let (done, rx) = crate::ports::Completion::channel();
        let request = crate::ports::AppendRequest::unfenced(stream, first, events, done);
        self.ctx.journal.append(request).await;
        rx.await
            .unwrap_or(Err(crate::failure::JournalError::Stopped))
    }
}

/// A journal failure as the engine answers it: a stopped journal is "unavailable, retry".
fn journal_error(e: crate::failure::JournalError) -> EngineError {
    match e {
        crate::failure::JournalError::Stopped => EngineError::Unavailable("journal stopped".into()),
        other => EngineError::Journal(other),
    }
}
