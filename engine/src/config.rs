//! Limits and settings of the engine, passed in by the composition root.

use crate::outbox::OutboxConfig;
use std::time::Duration;

/// Engine settings. Every bound the engine enforces is here.
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
    /// How long seats offered to a waiting-list entry stay reserved for it.
    pub waitlist_offer_secs: u32,
    /// Tickets whose route (registration, pool, seat) is kept in memory for scans (0: every
    /// scan reads the ticket's read model).
    pub ticket_routes_cached_max: usize,
}

impl Default for EngineConfig {
    fn default() -> Self {
        Self {
            call_timeout: Duration::from_secs(5),
            pool_inflight_max: 8_192,
            event_inflight_max: 1_024,
            hold_ttl_default_secs: 600,
            snapshot_every_events: 10_000,
            passivate_after: Duration::from_secs(600),
            ticket_types_per_event_max: 100,
            events_active_max: 100_000,
            pool_restarts_max: 10,
            outbox: OutboxConfig::default(),
            waitlist_offer_secs: 3_600,
            ticket_routes_cached_max: 1_000_000,
        }
    }
}
