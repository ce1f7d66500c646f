//! What the metrics mean: every family the server emits (engine, storage, integrations,
//! gateway), with its unit and HELP text, described to the recorder at start so each scrape
//! carries them (`promtool check metrics` rejects a family without HELP). A unit test reads
//! the workspace's sources and fails on a metric missing here, or described as another kind.

pub mod export;

use metrics::Unit;

/// The server's version and the commit it was built from (`gateway/build.rs`).
pub const VERSION: &str = env!("CARGO_PKG_VERSION");
pub const COMMIT: &str = env!("REGENGINE_COMMIT");
/// What `--version` prints after the name.
pub const VERSION_LONG: &str = concat!(
    env!("CARGO_PKG_VERSION"),
    " (commit ",
    env!("REGENGINE_COMMIT"),
    ")"
);

/// A family's kind.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Counter,
    Gauge,
    Histogram,
}

use Kind::{Counter, Gauge, Histogram};

/// Every family: kind, name, unit, HELP (a line each).
#[rustfmt::skip]
pub const CATALOGUE: &[(Kind, &str, Unit, &str)] = &[
    (Gauge, "regengine_build_info", Unit::Count, "Always 1; its labels say the version and the commit the server was built from."),
    // Engine: commands, actors, admission.
    (Counter, "regengine_engine_commands_total", Unit::Count, "Pool commands decided, by command (hold, confirm, cancel, ...) and result (ok or the refusal)."),
    (Counter, "regengine_engine_expiries_total", Unit::Count, "Holds expired by their deadline."),
    (Counter, "regengine_engine_registrations_closed_total", Unit::Count, "Registrations closed because their event was canceled (their seats released)."),
    (Counter, "regengine_engine_events_created_total", Unit::Count, "Events created."),
    (Counter, "regengine_engine_activations_total", Unit::Count, "Event actors activated (at recovery or on first use after passivation)."),
    (Counter, "regengine_engine_recovery_failures_total", Unit::Count, "Event activations that failed at recovery."),
    (Counter, "regengine_engine_actor_restarts_total", Unit::Count, "Actors restarted after a failure, by actor (event, pool)."),
    (Counter, "regengine_engine_admission_rejected_total", Unit::Count, "Requests refused at an actor's admission bound (answered 503), by kind."),
    (Gauge, "regengine_engine_admission_inflight", Unit::Count, "Requests admitted to actors and not yet answered, by kind."),
    (Gauge, "regengine_engine_active_events", Unit::Count, "Event actors running (not passivated)."),
    (Counter, "regengine_cache_lookups_total", Unit::Count, "Lookups in the engine's bounded caches, by cache and result (hit, miss)."),
    (Gauge, "regengine_ready", Unit::Count, "1 once recovery finished and the server answers /readyz with 200, else 0."),
    (Gauge, "regengine_recovery_seconds", Unit::Seconds, "Time from start to ready at the last start (store opened, events activated, pools rebuilt)."),
    // Journal.
    (Histogram, "regengine_journal_flush_seconds", Unit::Seconds, "Time to write and fsync one journal batch."),
    (Histogram, "regengine_journal_batch_events", Unit::Count, "Domain events per fsynced journal batch."),
    (Histogram, "regengine_journal_batch_appends", Unit::Count, "Appends (acknowledgements waiting on the fsync) per journal batch."),
    (Histogram, "regengine_journal_snapshot_seconds", Unit::Seconds, "Time to write one pool snapshot."),
    (Gauge, "regengine_journal_queue_depth", Unit::Count, "Appends waiting for the journal writer (bounded by regengine_journal_queue_max)."),
    (Gauge, "regengine_journal_queue_max", Unit::Count, "Appends the journal writer's queue holds (storage.journal_queue_max); a full queue answers 503."),
    (Counter, "regengine_journal_failures_total", Unit::Count, "Journal batches that failed to write (their appends were refused)."),
    (Counter, "regengine_journal_sequence_conflicts_total", Unit::Count, "Appends refused because their stream had moved on (a stale or racing writer)."),
    (Counter, "regengine_journal_snapshots_dropped_total", Unit::Count, "Pool snapshots not written because the snapshot queue was full (the journal tail still covers them)."),
    // HTTP and connections.
    (Histogram, "regengine_http_request_duration_seconds", Unit::Seconds, "Request latency to the response head, by method, matched route and status; 429s, and 503s of shedding and timeouts, included."),
    (Counter, "regengine_http_requests_shed_total", Unit::Count, "Requests refused with 503 because the server was at http.concurrency_max."),
    (Counter, "regengine_http_requests_timed_out_total", Unit::Count, "Requests answered 503 after http.request_timeout_ms."),
    (Gauge, "regengine_http_connections_open", Unit::Count, "Client connections open."),
    (Gauge, "regengine_http_connections_max", Unit::Count, "Client connections allowed at once (http.connections_max)."),
    (Counter, "regengine_http_connections_refused_total", Unit::Count, "Connections refused at accept, by reason."),
    (Counter, "regengine_http_connections_closed_total", Unit::Count, "Connections closed by the server, by reason (slow or idle clients, eviction, write errors)."),
    (Counter, "regengine_http_accept_errors_total", Unit::Count, "Errors accepting connections (file descriptors exhausted and the like)."),
    (Counter, "regengine_rate_limited_total", Unit::Count, "Requests refused with 429 by a rate-limit budget, by budget."),
    (Gauge, "regengine_rate_limit_redis_connected", Unit::Count, "1 while the shared rate limiter reaches Redis, else 0 (local buckets then)."),
    (Counter, "regengine_rate_limit_redis_fallbacks_total", Unit::Count, "Rate-limit decisions made locally because Redis failed."),
    (Counter, "regengine_audit_write_failures_total", Unit::Count, "Audit entries that could not be written."),
    // Accounts.
    (Counter, "regengine_auth_signups_total", Unit::Count, "Accounts created."),
    (Counter, "regengine_auth_logins_total", Unit::Count, "Sign-ins, by result (ok, failed)."),
    (Counter, "regengine_auth_refreshes_total", Unit::Count, "Token refreshes, by result."),
    (Counter, "regengine_auth_emails_verified_total", Unit::Count, "E-mail addresses verified."),
    (Counter, "regengine_auth_password_resets_requested_total", Unit::Count, "Password resets requested."),
    (Counter, "regengine_auth_password_resets_total", Unit::Count, "Passwords reset with a valid token."),
    (Gauge, "regengine_auth_hashing_waiting", Unit::Count, "Sign-ins and sign-ups waiting for a password-hash slot (bounded by auth.hashing_queue_max)."),
    (Counter, "regengine_auth_hashing_rejected_total", Unit::Count, "Sign-ins and sign-ups refused with 503 because the password-hash queue was full."),
    // WebSockets.
    (Gauge, "regengine_ws_connections", Unit::Count, "WebSocket connections open."),
    (Gauge, "regengine_ws_writer_tasks", Unit::Count, "WebSocket writer tasks running."),
    (Counter, "regengine_ws_pushes_total", Unit::Count, "Messages pushed to WebSocket subscribers."),
    (Counter, "regengine_ws_pushes_dropped_total", Unit::Count, "Pushes dropped because a subscriber's buffer was full."),
    (Counter, "regengine_ws_clients_dropped_total", Unit::Count, "WebSocket clients disconnected, by reason (lagging)."),
    // Check-in.
    (Counter, "regengine_checkin_hub_scans_total", Unit::Count, "Scans received on the check-in hub."),
    (Counter, "regengine_checkin_offline_scans_total", Unit::Count, "Scans uploaded by offline scanners."),
    // Payments.
    (Counter, "regengine_payments_total", Unit::Count, "Payments finished, by provider and result."),
    (Counter, "regengine_payment_webhooks_total", Unit::Count, "Provider webhooks accepted, by provider and result."),
    (Counter, "regengine_payment_webhook_rejections_total", Unit::Count, "Provider webhooks refused (bad signature, stale, malformed), by provider."),
    (Histogram, "regengine_payment_webhook_to_confirmation_seconds", Unit::Seconds, "Time from a payment webhook's arrival to the registration's durable confirmation, by provider."),
    (Counter, "regengine_payment_reports_total", Unit::Count, "Provider reports applied to payments, by provider, report and result."),
    (Counter, "regengine_payment_cancellations_total", Unit::Count, "Payments canceled at the provider, by provider and result."),
    (Counter, "regengine_refunds_total", Unit::Count, "Refund attempts, by provider and result."),
    (Gauge, "regengine_refunds_waiting", Unit::Count, "Refunds queued for a provider."),
    (Gauge, "regengine_refunds_stuck", Unit::Count, "Refunds that failed payments.refund_attempts_max calls and are still being retried (stuck)."),
    (Counter, "regengine_invoices_issued_total", Unit::Count, "Invoices and credit notes issued, by kind."),
    (Gauge, "regengine_invoice_jobs_waiting", Unit::Count, "Registrations waiting for their invoice document."),
    (Counter, "regengine_bank_statement_lines_total", Unit::Count, "Bank statement lines imported, by result (applied, exception)."),
    (Counter, "regengine_bank_statement_exceptions_resolved_total", Unit::Count, "Bank statement exceptions resolved by an operator, by action."),
    // Outbox and notifications.
    (Gauge, "regengine_outbox_pending", Unit::Count, "Messages committed and not yet fanned out into deliveries (bounded by outbox.pending_max)."),
    (Counter, "regengine_outbox_refused_total", Unit::Count, "Messages refused because the outbox was full (outbox.pending_max): the request that made one answered 503, or the background work that made one logged it."),
    (Counter, "regengine_outbox_fanned_out_total", Unit::Count, "Messages fanned out into deliveries, by kind."),
    (Counter, "regengine_outbox_dead_letters_total", Unit::Count, "Messages that could not be fanned out (kept for admins)."),
    (Counter, "regengine_notify_attempts_total", Unit::Count, "Delivery attempts, by channel and result (sent, retry, failed, skipped)."),
    (Histogram, "regengine_notify_send_seconds", Unit::Seconds, "Time of one send to a provider, by channel."),
    (Gauge, "regengine_notify_backlog", Unit::Count, "Deliveries queued, by channel."),
    (Gauge, "regengine_notify_oldest_age_seconds", Unit::Seconds, "Age of the oldest queued delivery, by channel."),
    (Counter, "regengine_notify_deliveries_pruned_total", Unit::Count, "Finished deliveries removed after their retention."),
    (Counter, "regengine_notify_reminders_total", Unit::Count, "Event reminders, by result (queued, late)."),
    (Counter, "regengine_notify_broadcast_messages_total", Unit::Count, "Messages queued for managers' broadcasts."),
    (Counter, "regengine_notify_provider_events_total", Unit::Count, "Delivery reports from providers (delivered, bounced, ...), by channel and event."),
    (Counter, "regengine_notify_webhook_rejections_total", Unit::Count, "Provider delivery reports refused (bad signature, malformed), by provider."),
    // Per event: series that leave the scrape when the event is not in use (see `export`).
    (Gauge, "regengine_event_pool_available_seats", Unit::Count, "Seats a pool can still hold, by event and pool."),
    (Counter, "regengine_event_holds_total", Unit::Count, "Hold commands decided, by event, pool and result (ok, sold_out, replayed, refused)."),
    (Counter, "regengine_event_checkin_admitted_total", Unit::Count, "Tickets admitted (durable total), by event."),
    (Counter, "regengine_event_checkin_admitted_by_gate_total", Unit::Count, "Tickets admitted (durable total), by event and gate."),
    (Counter, "regengine_event_checkin_exits_total", Unit::Count, "Exits recorded (durable total), by event."),
    (Counter, "regengine_event_checkin_duplicates_total", Unit::Count, "Scans refused because the ticket was already inside (durable total), by event."),
    // The runtime, refreshed at each scrape (process_* families come from metrics-process).
    (Gauge, "regengine_tokio_workers", Unit::Count, "Worker threads of the async runtime."),
    (Gauge, "regengine_tokio_alive_tasks", Unit::Count, "Tasks alive on the async runtime."),
    (Gauge, "regengine_tokio_global_queue_depth", Unit::Count, "Tasks waiting in the runtime's global queue (a growing queue: the workers cannot keep up)."),
];

/// Gauges of things that come and go (connections, waiting requests), present at 0 from the
/// start so that dashboards and alerts see a value, not an absent series, before the first one.
const ZERO_AT_START: &[&str] = &[
    "regengine_ws_connections",
    "regengine_ws_writer_tasks",
    "regengine_http_connections_open",
    "regengine_auth_hashing_waiting",
];

/// Describes every family to the installed recorder, sets `build_info`, and the gauges of
/// [`ZERO_AT_START`].
pub fn describe() {
    for (kind, name, unit, help) in CATALOGUE {
        match kind {
            Counter => metrics::describe_counter!(*name, *unit, *help),
            Gauge => metrics::describe_gauge!(*name, *unit, *help),
            Histogram => metrics::describe_histogram!(*name, *unit, *help),
        }
    }
    metrics::gauge!("regengine_build_info", "version" => VERSION, "commit" => COMMIT).set(1.0);
    for name in ZERO_AT_START {
        metrics::gauge!(*name).set(0.0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::{BTreeMap, BTreeSet};
    use std::path::Path;

    /// `(kind, name)` of every call of the counter, gauge and histogram macros with a literal
    /// name in `dir`.
    fn emitted(dir: &Path, found: &mut BTreeSet<(String, String)>) {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                emitted(&path, found);
                continue;
            }
            if path.extension().is_none_or(|e| e != "rs") {
                continue;
            }
            let text = std::fs::read_to_string(&path).unwrap();
            for kind in ["counter", "gauge", "histogram"] {
                let call = format!("{kind}!(");
                for (at, _) in text.match_indices(&call) {
                    let rest = text[at + call.len()..].trim_start();
                    if let Some(name) = rest.strip_prefix('"').and_then(|r| r.split('"').next()) {
                        found.insert((kind.to_owned(), name.to_owned()));
                    }
                }
            }
        }
    }

    #[test]
    fn every_metric_emitted_is_described_once_as_its_kind() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
        let mut found = BTreeSet::new();
        for krate in ["engine", "storage", "integrations", "gateway"] {
            emitted(&root.join(krate).join("src"), &mut found);
        }
        assert!(found.len() > 50, "the scan found the metrics: {found:?}");
        let mut described = BTreeMap::new();
        for (kind, name, _, help) in CATALOGUE {
            assert!(
                help.ends_with('.') && !help.contains('\n'),
                "{name}: {help}"
            );
            assert!(name.starts_with("regengine_"), "{name}: one prefix");
            assert_eq!(
                name.ends_with("_total"),
                *kind == Counter,
                "{name}: counters, and only they, end in _total"
            );
            let kind = format!("{kind:?}").to_lowercase();
            assert!(described.insert(*name, kind).is_none(), "{name} twice");
        }
        for (kind, name) in &found {
            assert_eq!(described.get(name.as_str()), Some(kind), "{name} ({kind})");
        }
        let emitted: BTreeSet<&str> = found.iter().map(|(_, n)| n.as_str()).collect();
        for name in described.keys() {
            assert!(
                emitted.contains(name),
                "{name} is described but never emitted"
            );
        }
    }
}
