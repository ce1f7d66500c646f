//! The provider relay: carries out the calls the pools' decisions need. It reads the provider
//! jobs the read model keeps (written in the batch of the decision): a refund is made with the
//! refund's id as the idempotency key and its answer reported to the registration's pool (whose
//! batch removes the job); a payment nobody completed before its hold ended is canceled (best
//! effort: the job is removed once the provider answered either way). A crash between the call and the report repeats the
//! call with the same key on the next start, which the provider answers with the same
//! refund: money goes back once.
//!
//! A provider that cannot be reached (or a call that timed out: its outcome is unknown) is
//! retried with the same key after `refund_retry`, doubling up to 32x, for as long as it takes:
//! a refund is marked failed only when the provider refuses it (the money then stays captured,
//! the refund is listed with its payment, and a manager can ask again). After
//! `refund_attempts_max` calls a refund counts as stuck (`refunds_stuck`, logged) and is still
//! retried. A provider's answer is kept until the pool recorded it, so a pool that is briefly
//! unavailable makes the relay retry the record, not the call. A cancellation is best effort:
//! dropped after `refund_attempts_max` calls that could not reach the provider. A manual payment (cash at the box office) is refunded by hand: its refund succeeds
//! as soon as it is decided.

use super::Engine;
use crate::failure::chain;
use crate::payment::{JobAction, Provider, ProviderError, ProviderJob, RefundCall, RefundState};
use crate::pool::PoolCommand;
use futures::StreamExt;
use std::collections::HashMap;
use std::time::{Duration, Instant};
use tokio::sync::watch;
use uuid::Uuid;

/// Jobs read per round (jobs waiting for their next try are read too, so the bound is what one
/// round may look at, not what it may run).
const BATCH_MAX: usize = 4096;
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

/// The relay's memory between rounds: jobs waiting for their next try, and providers'
/// answers the pool has not recorded yet.
#[derive(Default)]
struct Pending {
    backoff: Backoff,
    answered: HashMap<Uuid, RefundState>,
}

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
        let mut pending = Pending::default();
        loop {
            if *shutdown.borrow() {
                return;
            }
            let jobs = match self.ctx.store.provider_jobs(BATCH_MAX) {
                Ok(jobs) => jobs,
                Err(e) => {
                    tracing::error!(error = %chain(&e), "reading provider jobs failed");
                    Vec::new()
                }
            };
            let refunds = jobs
                .iter()
                .filter(|j| matches!(j.action, JobAction::Refund { .. }))
                .count();
            metrics::gauge!("regengine_refunds_waiting").set(refunds as f64);
            let stuck = pending
                .backoff
                .values()
                .filter(|(calls, _)| *calls >= config.attempts_max)
                .count();
            metrics::gauge!("regengine_refunds_stuck").set(stuck as f64);
            pending
                .backoff
                .retain(|id, _| jobs.iter().any(|j| j.id == *id));
            pending
                .answered
                .retain(|id, _| jobs.iter().any(|j| j.id == *id));
            let now = Instant::now();
            let due: Vec<ProviderJob> = jobs
                .into_iter()
                .filter(|j| pending.backoff.get(&j.id).is_none_or(|(_, at)| *at <= now))
                .collect();
            // Answers already had: record them again, without calling the provider again.
            let (answered, to_call): (Vec<ProviderJob>, Vec<ProviderJob>) = due
                .into_iter()
                .partition(|j| pending.answered.contains_key(&j.id));
            for job in answered {
                let state = pending.answered[&job.id];
                self.record(&job, state, &config, &mut pending).await;
            }
            let calls = to_call.into_iter().map(|job| {
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
                self.settle(&job, result, &config, &mut pending).await;
            }
            let backoff = &pending.backoff;
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
    async fn carry_out(&self, job: &ProviderJob) -> Result<String, ProviderError> {
        let (amount_minor, currency) = match &job.action {
            JobAction::Refund {
                amount_minor,
                currency,
            } => (*amount_minor, currency.clone()),
            JobAction::Cancel => (0, String::new()),
        };
        if job.provider == Provider::Manual {
            return Ok(format!("manual:{}", job.id));
        }
        let Some(adapter) = self.ctx.payments.get(job.provider) else {
            return Err(ProviderError::Unavailable(format!(
                "{} is not configured",
                job.provider.as_str()
            )));
        };
        if job.action == JobAction::Cancel {
            return adapter
                .cancel(&job.provider_ref)
                .await
                .map(|()| String::new());
        }
        adapter
            .refund(&RefundCall {
                refund_id: job.id,
                registration_id: job.registration_id,
                provider_ref: job.provider_ref.clone(),
                amount_minor,
                currency,
            })
            .await
    }

    /// A cancellation's outcome: done when the provider answered, whatever it said (a
    /// payment completed meanwhile cannot be canceled, and its webhook decides), or given up
    /// after `attempts_max` calls that could not reach it.
    fn cancel_done(
        &self,
        job: &ProviderJob,
        result: &Result<String, ProviderError>,
        config: &RefundRelayConfig,
        backoff: &mut Backoff,
    ) {
        let outcome = match result {
            Ok(_) => "canceled",
            Err(ProviderError::Rejected(_)) => "refused",
            Err(ProviderError::Unavailable(why)) => {
                let calls = backoff.get(&job.id).map_or(1, |(n, _)| n + 1);
                if calls < config.attempts_max {
                    let delay = config.retry * 2u32.pow((calls - 1).min(5));
                    backoff.insert(job.id, (calls, Instant::now() + delay));
                    return;
                }
                tracing::warn!(job = %job.id, error = %why, "payment not canceled at the provider; giving up");
                "given_up"
            }
        };
        metrics::counter!("regengine_payment_cancellations_total", "provider" => job.provider.as_str(), "result" => outcome)
            .increment(1);
        backoff.remove(&job.id);
        if let Err(e) = self.ctx.store.provider_job_done(job.id) {
            tracing::warn!(job = %job.id, error = %chain(&e), "removing a done cancellation failed");
        }
    }

    /// A call's outcome: a refund's answer is recorded; a provider that could not be reached
    /// is tried again later with the same key (never marked failed: the outcome is unknown).
    async fn settle(
        &self,
        job: &ProviderJob,
        result: Result<String, ProviderError>,
        config: &RefundRelayConfig,
        pending: &mut Pending,
    ) {
        if job.action == JobAction::Cancel {
            self.cancel_done(job, &result, config, &mut pending.backoff);
            return;
        }
        let provider = job.provider.as_str();
        let state = match result {
            Ok(_) => RefundState::Succeeded,
            Err(ProviderError::Unavailable(why)) => {
                let calls = pending.backoff.get(&job.id).map_or(1, |(n, _)| n + 1);
                let delay = config.retry * 2u32.pow((calls - 1).min(5));
                pending
                    .backoff
                    .insert(job.id, (calls, Instant::now() + delay));
                if calls == config.attempts_max {
                    tracing::error!(refund = %job.id, provider, calls, error = %why, "refund still not answered; retrying with the same key");
                } else {
                    tracing::warn!(refund = %job.id, provider, calls, error = %why, "refund call failed; retrying");
                }
                metrics::counter!("regengine_refunds_total", "provider" => provider, "result" => "retried")
                    .increment(1);
                return;
            }
            Err(ProviderError::Rejected(why)) => {
                tracing::error!(refund = %job.id, provider, error = %why, "refund refused by the provider");
                RefundState::Failed
            }
        };
        pending.answered.insert(job.id, state);
        self.record(job, state, config, pending).await;
    }

    /// Reports a provider's answer to the pool; if that fails, the answer is kept and the
    /// record retried (the provider is not called again).
    async fn record(
        &self,
        job: &ProviderJob,
        state: RefundState,
        config: &RefundRelayConfig,
        pending: &mut Pending,
    ) {
        let command = PoolCommand::RefundSettled {
            registration_id: job.registration_id,
            refund_id: job.id,
            state,
        };
        match self.pool_command(job.event_id, job.pool_id, command).await {
            Ok(_) => {
                pending.backoff.remove(&job.id);
                pending.answered.remove(&job.id);
                let result = match state {
                    RefundState::Succeeded => "succeeded",
                    _ => "failed",
                };
                metrics::counter!("regengine_refunds_total", "provider" => job.provider.as_str(), "result" => result)
                    .increment(1);
                self.wake_invoices();
            }
            Err(e) => {
                tracing::warn!(refund = %job.id, error = %e, "recording a refund's answer failed; retrying the record");
                let calls = pending.backoff.get(&job.id).map_or(0, |(n, _)| *n);
                pending
                    .backoff
                    .insert(job.id, (calls, Instant::now() + config.retry));
            }
        }
    }
}
