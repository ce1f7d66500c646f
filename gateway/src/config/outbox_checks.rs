//! The checks of `[outbox]` (its bounds, the mail transports, Twilio, the links).

use super::{Config, Delivery};

impl Config {
    /// The outbox's bounds and its delivery's settings.
    pub(super) fn outbox_checks(&self) -> Vec<(bool, &'static str)> {
        let mut checks = vec![
            (
                self.outbox.pending_max > 0 && self.outbox.file_bytes_max >= 4096,
                "outbox.pending_max must be > 0 and outbox.file_bytes_max >= 4096",
            ),
            (
                self.outbox.retry_ms >= 10 && self.outbox.attempts_max >= 1,
                "outbox.retry_ms must be >= 10 and outbox.attempts_max >= 1",
            ),
            (
                (1..=10_000).contains(&self.outbox.relay_batch_max),
                "outbox.relay_batch_max must be 1..=10000",
            ),
            (
                (1..=10_000).contains(&self.outbox.inbox_max),
                "outbox.inbox_max must be 1..=10000",
            ),
            (
                self.outbox.reminder_offsets_secs.len() <= engine::model::REMINDERS_MAX
                    && self
                        .outbox
                        .reminder_offsets_secs
                        .iter()
                        .all(|o| engine::model::REMINDER_OFFSET_SECS.contains(o))
                    && (10..=60_000).contains(&self.outbox.schedule_poll_ms),
                "outbox.reminder_offsets_secs must have at most 5 entries of 60..=2592000, and \
                 outbox.schedule_poll_ms be 10..=60000",
            ),
            (
                self.outbox.payment_due_after_secs <= 86_400,
                "outbox.payment_due_after_secs must be 0..=86400",
            ),
            (
                (1..=100_000).contains(&self.outbox.broadcast_rate_per_sec)
                    && (1..=1_000).contains(&self.outbox.broadcasts_per_day),
                "outbox.broadcast_rate_per_sec must be 1..=100000 and outbox.broadcasts_per_day \
                 1..=1000",
            ),
            (
                (1..=1_024).contains(&self.outbox.concurrency)
                    && self.outbox.retry_max_ms >= self.outbox.retry_ms
                    && (1..=3_650).contains(&self.outbox.delivery_retention_days),
                "outbox.concurrency must be 1..=1024, outbox.retry_max_ms >= outbox.retry_ms and \
                 outbox.delivery_retention_days 1..=3650",
            ),
        ];
        checks.extend(self.delivery_checks());
        checks
    }

    /// The mail providers', Twilio's and the links' settings.
    fn delivery_checks(&self) -> Vec<(bool, &'static str)> {
        vec![
            (
                integrations::mail::mime::mailbox(&self.outbox.from).is_ok(),
                "outbox.from must be a mailbox (\"Name <address>\" or an address)",
            ),
            (
                !self.outbox.message_id_domain.is_empty()
                    && self
                        .outbox
                        .message_id_domain
                        .chars()
                        .all(|c| c.is_ascii_alphanumeric() || c == '.' || c == '-'),
                "outbox.message_id_domain must be a domain name",
            ),
            (
                self.outbox.delivery != Delivery::Smtp
                    || (!self.outbox.smtp.host.is_empty()
                        && self.outbox.smtp.port > 0
                        && self.outbox.smtp.timeout_ms >= 100
                        && (1..=256).contains(&self.outbox.smtp.pool_max)),
                "outbox.smtp needs a host, a port, timeout_ms >= 100 and pool_max 1..=256",
            ),
            (
                self.outbox.delivery != Delivery::Sendgrid
                    || (!self.outbox.sendgrid.api_key.is_empty()
                        && (self.outbox.sendgrid.api_base.starts_with("https://")
                            || self.outbox.sendgrid.api_base.starts_with("http://"))
                        && self.outbox.sendgrid.request_timeout_ms >= 100),
                "outbox.sendgrid needs an api_key, an http(s) api_base and request_timeout_ms >= 100",
            ),
            (
                self.outbox.sendgrid.webhook_public_key.is_empty()
                    || integrations::mail::sendgrid::EventVerifier::new(
                        &self.outbox.sendgrid.webhook_public_key,
                        self.outbox.sendgrid.webhook_tolerance_secs,
                    )
                    .is_ok(),
                "outbox.sendgrid.webhook_public_key must be a base64 DER P-256 public key",
            ),
            (
                !self.outbox.twilio.enabled || self.twilio_complete(),
                "outbox.twilio needs an account_sid, an auth_token, a from (E.164 or MG...), an http(s) api_base, an http(s) status_callback_url without a query or none, and request_timeout_ms >= 100",
            ),
            (
                self.outbox.unsubscribe_url.is_empty()
                    || ((self.outbox.unsubscribe_url.starts_with("https://")
                        || self.outbox.unsubscribe_url.starts_with("http://"))
                        && !self.outbox.unsubscribe_url.contains(['?', '#'])),
                "outbox.unsubscribe_url must be empty or an http(s) URL without a query",
            ),
            (
                self.outbox.link_base_url.starts_with("http://")
                    || self.outbox.link_base_url.starts_with("https://"),
                "outbox.link_base_url must be an http(s) URL",
            ),
        ]
    }
}
