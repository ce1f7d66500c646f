//! What the metrics mean: every family the server emits (engine, storage, integrations,
//! gateway), with its unit and HELP text, described to the recorder at start so each scrape
//! carries them (`promtool check metrics` rejects a family without HELP). A unit test reads
//! the workspace's sources and fails on a metric missing here, or described as another kind.

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
    (Gauge, "build_info", Unit::Count, "Always 1; its labels say the version and the commit the server was built from."),
    // Engine: commands, actors, admission.
    (Counter, "engine_commands_total", Unit::Count, "Pool commands decided, by command (hold, confirm, cancel, ...) and result (ok or the refusal)."),
    (Counter, "engine_expiries_total", Unit::Count, "Holds expired by their deadline."),
    (Counter, "engine_registrations_closed_total", Unit::Count, "Registrations closed because their event was canceled (their seats released)."),
    (Counter, "engine_events_created_total", Unit::Count, "Events created."),
    (Counter, "engine_activations_total", Unit::Count, "Event actors activated (at recovery or on first use after passivation)."),
    (Counter, "engine_recovery_failures_total", Unit::Count, "Event activations that failed at recovery."),
    (Counter, "engine_actor_restarts_total", Unit::Count, "Actors restarted after a failure, by actor (event, pool)."),
    (Counter, "engine_admission_rejected_total", Unit::Count, "Requests refused at an actor's admission bound (answered 503), by kind."),
    (Gauge, "engine_admission_inflight", Unit::Count, "Requests admitted to actors and not yet answered, by kind."),
    (Gauge, "engine_active_events", Unit::Count, "Event actors running (not passivated)."),
    (Gauge, "engine_pool_available_seats", Unit::Count, "Seats a pool can still hold, by pool."),
    (Counter, "cache_lookups_total", Unit::Count, "Lookups in the engine's bounded caches, by cache and result (hit, miss)."),
    (Gauge, "recovery_seconds", Unit::Seconds, "Time from start to ready at the last start (store opened, events activated, pools rebuilt)."),
    // Journal.
    (Histogram, "journal_flush_seconds", Unit::Seconds, "Time to write and fsync one journal batch."),
    (Histogram, "journal_batch_events", Unit::Count, "Domain events per fsynced journal batch."),
    (Histogram, "journal_batch_appends", Unit::Count, "Appends (acknowledgements waiting on the fsync) per journal batch."),
    (Histogram, "journal_snapshot_seconds", Unit::Seconds, "Time to write one pool snapshot."),
    (Gauge, "journal_queue_depth", Unit::Count, "Appends waiting for the journal writer (bounded by journal.queue_max)."),
    (Counter, "journal_failures_total", Unit::Count, "Journal batches that failed to write (their appends were refused)."),
    (Counter, "journal_sequence_conflicts_total", Unit::Count, "Appends refused because their stream had moved on (a stale or racing writer)."),
    (Counter, "journal_snapshots_dropped_total", Unit::Count, "Pool snapshots not written because the snapshot queue was full (the journal tail still covers them)."),
    // HTTP and connections.
    (Histogram, "http_request_duration_seconds", Unit::Seconds, "Request latency from the first byte read to the response, by method, matched route and status."),
    (Counter, "http_requests_shed_total", Unit::Count, "Requests refused with 503 because the server was at http.concurrency_max."),
    (Counter, "http_requests_timed_out_total", Unit::Count, "Requests answered 503 after http.request_timeout_ms."),
    (Gauge, "http_connections_open", Unit::Count, "Client connections open."),
    (Gauge, "http_connections_max", Unit::Count, "Client connections allowed at once (http.connections_max)."),
    (Counter, "http_connections_refused_total", Unit::Count, "Connections refused at accept, by reason."),
    (Counter, "http_connections_closed_total", Unit::Count, "Connections closed by the server, by reason (slow or idle clients, eviction, write errors)."),
    (Counter, "http_accept_errors_total", Unit::Count, "Errors accepting connections (file descriptors exhausted and the like)."),
    (Counter, "rate_limited_total", Unit::Count, "Requests refused with 429 by a rate-limit budget, by budget."),
    (Gauge, "rate_limit_redis_connected", Unit::Count, "1 while the shared rate limiter reaches Redis, else 0 (local buckets then)."),
    (Counter, "rate_limit_redis_fallbacks_total", Unit::Count, "Rate-limit decisions made locally because Redis failed."),
    (Counter, "audit_write_failures_total", Unit::Count, "Audit entries that could not be written."),
    // Accounts.
    (Counter, "auth_signups_total", Unit::Count, "Accounts created."),
    (Counter, "auth_logins_total", Unit::Count, "Sign-ins, by result (ok, failed)."),
    (Counter, "auth_refreshes_total", Unit::Count, "Token refreshes, by result."),
    (Counter, "auth_emails_verified_total", Unit::Count, "E-mail addresses verified."),
    (Counter, "auth_password_resets_requested_total", Unit::Count, "Password resets requested."),
    (Counter, "auth_password_resets_total", Unit::Count, "Passwords reset with a valid token."),
    (Counter, "auth_hashing_rejected_total", Unit::Count, "Sign-ins and sign-ups refused with 503 because the password-hash queue was full."),
    // WebSockets.
    (Gauge, "ws_connections", Unit::Count, "WebSocket connections open."),
    (Gauge, "ws_writer_tasks", Unit::Count, "WebSocket writer tasks running."),
    (Counter, "ws_pushes_total", Unit::Count, "Messages pushed to WebSocket subscribers."),
    (Counter, "ws_pushes_dropped_total", Unit::Count, "Pushes dropped because a subscriber's buffer was full."),
    (Counter, "ws_clients_dropped_total", Unit::Count, "WebSocket clients disconnected, by reason (lagging)."),
    // Check-in.
    (Gauge, "checkin_admitted", Unit::Count, "Tickets admitted so far, by event."),
    (Gauge, "checkin_admitted_by_gate", Unit::Count, "Tickets admitted so far, by event and gate."),
    (Gauge, "checkin_exits", Unit::Count, "Exits recorded so far, by event."),
    (Gauge, "checkin_duplicates", Unit::Count, "Scans of tickets already inside so far, by event."),
    (Counter, "checkin_hub_scans_total", Unit::Count, "Scans received on the check-in hub."),
    (Counter, "checkin_offline_scans_total", Unit::Count, "Scans uploaded by offline scanners."),
    // Payments.
    (Counter, "payments_total", Unit::Count, "Payments finished, by provider and result."),
    (Counter, "payment_webhooks_total", Unit::Count, "Provider webhooks accepted, by provider and result."),
    (Counter, "payment_webhook_rejections_total", Unit::Count, "Provider webhooks refused (bad signature, stale, malformed), by provider."),
    (Histogram, "payment_webhook_to_confirmation_seconds", Unit::Seconds, "Time from a payment webhook's arrival to the registration's durable confirmation, by provider."),
    (Counter, "payment_reports_total", Unit::Count, "Provider reports applied to payments, by provider, report and result."),
    (Counter, "payment_cancellations_total", Unit::Count, "Payments canceled at the provider, by provider and result."),
    (Counter, "refunds_total", Unit::Count, "Refund attempts, by provider and result."),
    (Gauge, "refunds_waiting", Unit::Count, "Refunds queued for a provider."),
    (Gauge, "refunds_stuck", Unit::Count, "Refunds that failed payments.refund_attempts_max calls and are still being retried (stuck)."),
    (Counter, "invoices_issued_total", Unit::Count, "Invoices and credit notes issued, by kind."),
    (Gauge, "invoice_jobs_waiting", Unit::Count, "Registrations waiting for their invoice document."),
    (Counter, "bank_statement_lines_total", Unit::Count, "Bank statement lines imported, by result (applied, exception)."),
    (Counter, "bank_statement_exceptions_resolved_total", Unit::Count, "Bank statement exceptions resolved by an operator, by action."),
    // Outbox and notifications.
    (Gauge, "outbox_pending", Unit::Count, "Messages committed and not yet fanned out into deliveries (bounded by outbox.pending_max)."),
    (Counter, "outbox_refused_total", Unit::Count, "Requests refused with 503 because the outbox was full."),
    (Counter, "outbox_fanned_out_total", Unit::Count, "Messages fanned out into deliveries, by kind."),
    (Counter, "outbox_dead_letters_total", Unit::Count, "Messages that could not be fanned out (kept for admins)."),
    (Counter, "notify_attempts_total", Unit::Count, "Delivery attempts, by channel and result (sent, retry, failed, skipped)."),
    (Histogram, "notify_send_seconds", Unit::Seconds, "Time of one send to a provider, by channel."),
    (Gauge, "notify_backlog", Unit::Count, "Deliveries queued, by channel."),
    (Gauge, "notify_oldest_age_seconds", Unit::Seconds, "Age of the oldest queued delivery, by channel."),
    (Counter, "notify_deliveries_pruned_total", Unit::Count, "Finished deliveries removed after their retention."),
    (Counter, "notify_reminders_total", Unit::Count, "Event reminders, by result (queued, late)."),
    (Counter, "notify_broadcast_messages_total", Unit::Count, "Messages queued for managers' broadcasts."),
    (Counter, "notify_provider_events_total", Unit::Count, "Delivery reports from providers (delivered, bounced, ...), by channel and event."),
    (Counter, "notify_webhook_rejections_total", Unit::Count, "Provider delivery reports refused (bad signature, malformed), by provider."),
];

/// Describes every family to the installed recorder, and sets `build_info`.
pub fn describe() {
    for (kind, name, unit, help) in CATALOGUE {
        match kind {
            Counter => metrics::describe_counter!(*name, *unit, *help),
            Gauge => metrics::describe_gauge!(*name, *unit, *help),
            Histogram => metrics::describe_histogram!(*name, *unit, *help),
        }
    }
    metrics::gauge!("build_info", "version" => VERSION, "commit" => COMMIT).set(1.0);
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
