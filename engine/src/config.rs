//! Limits and settings of the engine, passed in by the composition root.

use crate::outbox::OutboxConfig;
use std::time::Duration;

/// Engine settings. Every bound the engine enforces is here. There are no defaults in the
/// engine: the composition root passes every value (the server's are in
/// `config/default.toml`), so the defaults exist once.
#[derive(Clone, Debug)]
pub struct EngineConfig {
    /// Longest a caller waits for an actor's answer (including the durable write).
    pub call_timeout: Duration,
    /// In-flight calls allowed per pool actor before callers get `Overloaded`.
    pub pool_inflight_max: u32,
    /// In-flight calls allowed per event actor.
    pub event_inflight_max: u32,
    /// Hold TTL of events that do not set one.
    pub hold_ttl_default_secs: u32,
    /// A pool snapshots after this many events (or after half its weight, if larger: the
    /// entries a snapshot writes, so snapshot cost stays proportional to the events between
    /// snapshots).
    pub snapshot_every_events: u64,
    /// An event idle this long (no calls, no subscribers) is passivated.
    pub passivate_after: Duration,
    /// Ticket types one event may have.
    pub ticket_types_per_event_max: usize,
    /// Events that may be active (in memory) at once.
    pub events_active_max: usize,
    /// Pool restarts within a minute an event actor tolerates before it fails itself.
    pub pool_restarts_max: u32,
    /// The outbox's bound and the relay's pacing.
    pub outbox: OutboxConfig,
    /// The delivery workers' concurrency, rate and retries.
    pub notify: crate::notify::worker::WorkerConfig,
    /// The reminder schedule's task.
    pub reminders: crate::notify::reminders::ReminderConfig,
    /// The broadcasts' fan-out task.
    pub broadcasts: crate::notify::broadcasts::BroadcastConfig,
    /// How long seats offered to a waiting-list entry stay reserved for it.
    pub waitlist_offer_secs: u32,
    /// Tickets whose route (registration, pool, seat) is kept in memory for scans (0: every
    /// scan reads the ticket's read model).
    pub ticket_routes_cached_max: usize,
    /// Starting a payment keeps the hold at least this long from then (a buyer typing a
    /// card number does not lose the seats).
    pub payment_hold_extension_secs: u32,
    /// Who bank transfers pay, and their deadline, for events that set none of their own
    /// (`None`: such events take no transfers).
    pub bank_transfer: Option<crate::model::BankTransferSettings>,
    /// A bank transfer's buyer is reminded this long before its deadline, if still unpaid
    /// (none: no reminders).
    pub bank_reminder_before: Option<std::time::Duration>,
    /// A priced hold still unpaid (no payment started) this long after it was made sends its
    /// buyer the payment link, at most halfway through the hold (none: never).
    pub payment_due_after: Option<std::time::Duration>,
    /// First retry delay of a refund call that failed (doubling up to 32x).
    pub refund_retry: Duration,
    /// Refund calls before the refund is marked failed.
    pub refund_attempts_max: u32,
}
