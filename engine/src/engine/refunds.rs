//! The refund relay: carries out refunds the pools decided. It reads the refund jobs the read
//! model keeps (written in the batch of the decision, removed in the batch of the answer),
//! calls each job's provider with the refund's id as the idempotency key, and reports the
//! answer to the registration's pool. A crash between the call and the report repeats the
//! call with the same key on the next start, which the provider answers with the same
//! refund: money goes back once.
//!
//! A provider that cannot be reached is retried after `refund_retry`, doubling up to 32x, at
//! most `refund_attempts_max` calls; a refusal (or the last failure) marks the refund failed:
//! the money stays captured, the refund is listed with its payment, and a manager can ask
//! again. A manual payment (cash at the box office) is refunded by hand: its refund succeeds
//! as soon as it is decided.

use super::Engine;
use crate::failure::chain;
use crate::payment::{Provider, ProviderError, RefundCall, RefundJob, RefundState};
use crate::pool::PoolCommand;
use futures::StreamExt;
use std::collections::HashMap;
use std::time::{Duration, Instant};
use tokio::sync::watch;
use uuid::Uuid;

/// Jobs read per round.
const BATCH_MAX: usize = 256;
/// Provider calls in flight at once.
const CONCURRENCY: usize = 8;
/// Longest wait between two rounds.
const IDLE_POLL: Duration = Duration::from_secs(1);

/// The relay's settings.
#[derive(Clone, Copy, Debug)]
pub struct RefundRelayConfig {
    /// First retry delay of a failed call.
    pub retry: Duration,
    /// Calls per refund before it is marked failed.
    pub attempts_max: u32,
}

/// A failing job: calls made, and when it may be tried again.
type Backoff = HashMap<Uuid, (u32, Instant)>;

impl Engine {
    /// Wakes the refund relay (a refund was just decided).
    pub(crate) fn wake_refunds(&self) {
        self.refunds_wake.notify_one();
    }

    /// Runs until `shutdown` turns true.
    pub(crate) async fn refund_relay(
        self,
        config: RefundRelayConfig,
        mut shutdown: watch::Receiver<bool>,
    ) {
        let mut backoff = Backoff::new();
        loop {
            if *shutdown.borrow() {
                return;
            }
            let jobs = match self.ctx.store.refund_jobs(BATCH_MAX) {
                Ok(jobs) => jobs,
                Err(e) => {
                    tracing::error!(error = %chain(&e), "reading refund jobs failed");
                    Vec::new()
                }
            };
            metrics::gauge!("refunds_waiting").set(jobs.len() as f64);
            backoff.retain(|id, _| jobs.iter().any(|j| j.refund_id == *id));
            let now = Instant::now();
            let due: Vec<RefundJob> = jobs
                .into_iter()
                .filter(|j| backoff.get(&j.refund_id).is_none_or(|(_, at)| *at <= now))
                .collect();
            let calls = due.into_iter().map(|job| {
                let engine = self.clone();
                async move {
                    let result = engine.carry_out(&job).await;
                    (job, result)
                }
            });
            let results: Vec<_> = futures::stream::iter(calls)
                .buffer_unordered(CONCURRENCY)
                .collect()
                .await;
            for (job, result) in results {
                self.settle(&job, result, &config, &mut backoff).await;
            }
            let next = backoff.values().map(|(_, at)| *at).min();
            // Refunds decided by an actor on its own (closing a canceled event) are found by
            // the next round: idle rounds are one scan of an empty keyspace a second.
            let wait = next.map_or(IDLE_POLL, |at| {
                at.saturating_duration_since(Instant::now()).min(IDLE_POLL)
            });
            tokio::select! {
                () = self.refunds_wake.notified() => {}
                () = tokio::time::sleep(wait) => {}
                changed = shutdown.changed() => if changed.is_err() {
                    return;
                },
            }
        }
    }

    /// Calls the job's provider.
    async fn carry_out(&self, job: &RefundJob) -> Result<String, ProviderError> {
        if job.provider == Provider::Manual {
            return Ok(format!("manual:{}", job.refund_id));
        }
        let Some(adapter) = self.ctx.payments.get(job.provider) else {
            return Err(ProviderError::Unavailable(format!(
                "{} is not configured",
                job.provider.as_str()
            )));
        };
        adapter
            .refund(&RefundCall {
                refund_id: job.refund_id,
                registration_id: job.registration_id,
                provider_ref: job.provider_ref.clone(),
                amount_minor: job.amount_minor,
                currency: job.currency.clone(),
            })
            .await
    }

    /// Reports a call's outcome to the pool, or schedules the next try.
    async fn settle(
        &self,
        job: &RefundJob,
        result: Result<String, ProviderError>,
        config: &RefundRelayConfig,
        backoff: &mut Backoff,
    ) {
        let provider = job.provider.as_str();
        let state = match result {
            Ok(_) => RefundState::Succeeded,
            Err(ProviderError::Unavailable(why)) => {
                let calls = backoff.get(&job.refund_id).map_or(1, |(n, _)| n + 1);
                if calls < config.attempts_max {
                    let delay = config.retry * 2u32.pow((calls - 1).min(5));
                    backoff.insert(job.refund_id, (calls, Instant::now() + delay));
                    tracing::warn!(refund = %job.refund_id, provider, calls, error = %why, "refund call failed; retrying");
                    metrics::counter!("refunds_total", "provider" => provider, "result" => "retried").increment(1);
                    return;
                }
                tracing::error!(refund = %job.refund_id, provider, calls, error = %why, "refund failed after its last attempt");
                RefundState::Failed
            }
            Err(ProviderError::Rejected(why)) => {
                tracing::error!(refund = %job.refund_id, provider, error = %why, "refund refused by the provider");
                RefundState::Failed
            }
        };
        let command = PoolCommand::RefundSettled {
            registration_id: job.registration_id,
            refund_id: job.refund_id,
            state,
        };
        match self.pool_command(job.event_id, job.pool_id, command).await {
            Ok(_) => {
                backoff.remove(&job.refund_id);
                let result = match state {
                    RefundState::Succeeded => "succeeded",
                    _ => "failed",
                };
                metrics::counter!("refunds_total", "provider" => provider, "result" => result)
                    .increment(1);
            }
            Err(e) => {
                // The answer is not recorded: the call is repeated (same key) next round.
                tracing::warn!(refund = %job.refund_id, error = %e, "recording a refund's answer failed; retrying");
                let calls = backoff.get(&job.refund_id).map_or(0, |(n, _)| *n);
                backoff.insert(job.refund_id, (calls, Instant::now() + config.retry));
            }
        }
    }
}
