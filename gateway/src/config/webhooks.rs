//! `[webhooks]`: organizer webhooks (Standard Webhooks), their own worker settings (a
//! receiver that is down is retried over hours, not minutes) and the switch that lets tests
//! post to loopback.

use serde::Deserialize;
use std::time::Duration;

/// Organizer webhooks.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WebhooksSection {
    /// Off: endpoints cannot be registered and nothing is posted (the routes answer 404).
    pub enabled: bool,
    /// One POST's timeout (connecting included).
    pub request_timeout_ms: u64,
    /// Deliveries in flight at most.
    pub concurrency: usize,
    /// Deliveries started per second at most (0: no limit).
    pub rate_per_sec: u32,
    /// Wait after a first failure, doubled per failure up to `retry_max_ms`, with jitter.
    pub retry_ms: u64,
    pub retry_max_ms: u64,
    /// Attempts after which a delivery is dead (listed, replayable).
    pub attempts_max: u32,
    /// Let endpoints point at loopback, private and link-local addresses. For tests and
    /// closed networks only: otherwise a webhook is a way into the internal network.
    pub allow_private_targets: bool,
}

impl WebhooksSection {
    pub(super) fn checks(&self) -> Vec<(bool, &'static str)> {
        vec![(
            self.request_timeout_ms >= 100
                && (1..=1_024).contains(&self.concurrency)
                && self.retry_ms >= 10
                && self.retry_max_ms >= self.retry_ms
                && (1..=100).contains(&self.attempts_max),
            "webhooks needs request_timeout_ms >= 100, concurrency 1..=1024, retry_ms >= 10, \
             retry_max_ms >= retry_ms and attempts_max 1..=100",
        )]
    }

    /// The webhook channel's worker settings (`retention`: the other channels').
    pub fn worker_config(&self, retention: Duration) -> engine::notify::worker::WorkerConfig {
        engine::notify::worker::WorkerConfig {
            concurrency: self.concurrency,
            rate_per_sec: self.rate_per_sec,
            retry_after: Duration::from_millis(self.retry_ms),
            retry_max: Duration::from_millis(self.retry_max_ms),
            attempts_max: self.attempts_max,
            retention,
            ..engine::notify::worker::WorkerConfig::default()
        }
    }
}
