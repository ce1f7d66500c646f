//! The gateway's typed configuration: the defaults of `config/default.toml`, then the keys an
//! optional `--config` file sets, then environment overrides `REGENGINE__SECTION__KEY=value`
//! (see [`load`]). Unknown keys are rejected, and `validate` checks ranges and how limits
//! relate, once, at start-up: a value out of range is an error naming its key, never clamped.

pub mod load;
mod outbox_checks;
mod webhooks;

pub use webhooks::WebhooksSection;

pub use load::{ConfigError, DEFAULTS, ENV_PREFIX, redacted};
use serde::Deserialize;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// The whole configuration.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// HTTP server.
    pub http: HttpConfig,
    /// Embedded store and journal.
    pub storage: StorageConfig,
    /// Engine limits.
    pub engine: EngineSection,
    /// Idempotency-Key cache.
    pub idempotency: IdempotencyConfig,
    /// WebSocket hub.
    pub websocket: WebSocketConfig,
    /// Accounts and tokens.
    pub auth: AuthConfig,
    /// Messages to send.
    pub outbox: OutboxSection,
    /// Organizer webhooks.
    pub webhooks: WebhooksSection,
    /// Payments and their providers.
    pub payments: PaymentsConfig,
    /// Rate limits.
    pub rate_limit: crate::ratelimit::RateLimitConfig,
    /// Logging.
    pub log: LogConfig,
}

/// Payments: the hold extension, the refund relay, and each provider.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PaymentsConfig {
    /// Starting a payment keeps the hold at least this long.
    pub hold_extension_secs: u32,
    /// First retry delay of a failed refund call (doubling up to 32x).
    pub refund_retry_ms: u64,
    /// Refund calls tried before the refund is marked failed.
    pub refund_attempts_max: u32,
    /// Stripe PaymentIntents.
    pub stripe: StripeConfig,
    /// PayPal Orders v2.
    pub paypal: PayPalConfig,
    /// Bank transfers with a structured creditor reference.
    pub bank_transfer: BankTransferConfig,
}

impl BankTransferConfig {
    /// The server-wide payee, when transfers are enabled.
    pub fn settings(&self) -> Option<engine::model::BankTransferSettings> {
        self.enabled.then(|| engine::model::BankTransferSettings {
            payee: self.payee.clone(),
            iban: self.iban.clone(),
            bic: self.bic.clone(),
            deadline_hours: self.deadline_hours,
        })
    }
}

/// Bank transfers: who is paid, and how long the seats wait for the money.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BankTransferConfig {
    /// Whether buyers may pay by transfer.
    pub enabled: bool,
    /// The payee's name, IBAN and BIC, as the buyer's bank needs them.
    pub payee: String,
    pub iban: String,
    pub bic: String,
    /// The seats are held this long from the start of the payment (the transfer's deadline).
    pub deadline_hours: u32,
    /// A buyer whose transfer has not arrived is reminded this long before its deadline
    /// (events' own settings included; 0: no reminders; none when the deadline is nearer).
    pub reminder_before_secs: u64,
    /// Largest uploaded bank statement (CSV or CAMT.053), in bytes (larger: 413).
    pub statement_bytes_max: usize,
}

/// PayPal's API and webhooks.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PayPalConfig {
    /// Whether PayPal takes payments here.
    pub enabled: bool,
    /// The API's base URL.
    pub api_base: String,
    /// The REST app's client id and secret (from the environment).
    pub client_id: String,
    pub client_secret: String,
    /// The webhook's id at PayPal (its deliveries are verified with it).
    pub webhook_id: String,
    /// Where PayPal sends the buyer after approving / canceling (`{registration_id}` is
    /// replaced).
    pub return_url: String,
    pub cancel_url: String,
    /// One outbound call's limit.
    pub request_timeout_ms: u64,
}

/// Stripe's API and webhooks.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StripeConfig {
    /// Whether Stripe takes payments here.
    pub enabled: bool,
    /// The API's base URL.
    pub api_base: String,
    /// The secret API key (from the environment).
    pub secret_key: String,
    /// Webhook signing secrets accepted (several during a rotation).
    pub webhook_secrets: Vec<String>,
    /// Largest distance of a webhook's signed time from now.
    pub webhook_tolerance_secs: u64,
    /// One outbound call's limit.
    pub request_timeout_ms: u64,
}

/// Accounts, password hashing and tokens.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuthConfig {
    /// `iss` of access tokens (and the only one accepted).
    pub issuer: String,
    /// `aud` of access tokens (and the only one accepted).
    pub audience: String,
    /// Lifetime of an access token.
    pub access_ttl_secs: u64,
    /// Lifetime of a refresh token (each use issues a new one with a fresh lifetime).
    pub refresh_ttl_secs: u64,
    /// Clock skew tolerated on `exp` and `nbf`.
    pub leeway_secs: u64,
    /// Key id (`kid`) of the signing key.
    pub signing_kid: String,
    /// File holding the HS256 signing key (at least 32 bytes); relative paths are inside
    /// `storage.data_dir`. Created with a random key on first start if missing.
    pub signing_key_file: PathBuf,
    /// Earlier keys still accepted for verification while their tokens live, as
    /// `kid = "file"` (key rotation: move the old key here, set a new signing key).
    pub verify_keys: std::collections::BTreeMap<String, PathBuf>,
    /// Argon2id memory in KiB (OWASP: 19456 with t=2, p=1).
    pub argon2_memory_kib: u32,
    /// Argon2id passes.
    pub argon2_iterations: u32,
    /// Password hashes computed at once (each takes a blocking thread); more wait.
    pub hashing_concurrency_max: usize,
    /// Hash requests waiting for a slot; beyond that logins and sign-ups get 503.
    pub hashing_queue_max: usize,
    /// Access tokens remembered as verified (0 disables the cache); each use still checks
    /// the token's expiry.
    pub verified_tokens_cached_max: usize,
    /// Genuine ticket codes remembered (a 16-byte digest per ticket) so online scans skip the
    /// signature arithmetic; 0 disables.
    pub verified_codes_cached_max: usize,
    /// The first admin: if set, and the environment variable
    /// `REGENGINE_BOOTSTRAP_ADMIN_PASSWORD` holds a password, an admin account with this
    /// e-mail is created at start-up unless one exists. Empty: no bootstrap.
    pub bootstrap_admin_email: String,
    /// How long an e-mail verification link works.
    pub email_token_ttl_secs: u64,
    /// How long a password-reset link works.
    pub reset_token_ttl_secs: u64,
}

/// The outbox of messages to send, and how e-mail is delivered.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OutboxSection {
    /// How e-mail goes out.
    pub delivery: Delivery,
    /// The sender of every mail (`Name <address>`).
    pub from: String,
    /// The domain of message ids (`<id@domain>`) and inline images' content ids.
    pub message_id_domain: String,
    /// A directory whose `{kind}.{locale}.jinja` files replace the built-in templates
    /// (empty: the built-in ones only).
    pub templates_dir: String,
    /// Sends in flight at most, per channel.
    pub concurrency: usize,
    /// Sends started per second at most (0: no limit).
    pub rate_per_sec: u32,
    /// Longest wait between two attempts of one delivery.
    pub retry_max_ms: u64,
    /// Days a finished delivery (sent, skipped) stays readable before it is pruned.
    pub delivery_retention_days: u32,
    /// The SMTP server (`delivery = "smtp"`).
    pub smtp: SmtpSection,
    /// SendGrid (`delivery = "sendgrid"`) and its event webhook.
    pub sendgrid: SendGridSection,
    /// Twilio: the SMS channel and its status callbacks.
    pub twilio: TwilioSection,
    /// The file of the `file` adapter; relative paths are inside `storage.data_dir`.
    pub file: PathBuf,
    /// Size at which the file is rotated (to `<file>.1`, replacing an older one).
    pub file_bytes_max: u64,
    /// Base of the links in messages: the front end's address.
    pub link_base_url: String,
    /// Messages waiting at most; beyond it, requests that would add one get 503.
    pub pending_max: usize,
    /// Wait after a failed delivery (doubling per failure up to `retry_max_ms`, with jitter).
    pub retry_ms: u64,
    /// Attempts after which a delivery is dead (listed for admins to replay or discard).
    pub attempts_max: u32,
    /// Messages the relay reads from the store per round.
    pub relay_batch_max: usize,
    /// Notifications kept per in-app inbox (the oldest beyond it are pruned).
    pub inbox_max: usize,
    /// Reminders before an event that sets none of its own, in seconds before its start.
    pub reminder_offsets_secs: Vec<u32>,
    /// Seconds after a priced hold that its buyer, if they have not paid or started paying,
    /// is sent the payment link (at most halfway through the hold; 0: never; the pool
    /// decides it, see `EngineConfig::payment_due_after`).
    pub payment_due_after_secs: u64,
    /// Longest wait between two looks at the reminder schedule's next entry.
    pub schedule_poll_ms: u64,
    /// Recipients of managers' broadcasts queued per second.
    pub broadcast_rate_per_sec: u32,
    /// Broadcasts one event may send in any 24 hours.
    pub broadcasts_per_day: usize,
    /// The public URL of `POST /api/v1/unsubscribe` as mail clients reach it (this API's
    /// public address + `/api/v1/unsubscribe`): reminders carry it with a token as
    /// `List-Unsubscribe` (one click, RFC 8058). Empty: no such header.
    pub unsubscribe_url: String,
}

/// SendGrid's mail send API and its signed event webhook.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SendGridSection {
    pub api_base: String,
    /// From the environment (`REGENGINE__OUTBOX__SENDGRID__API_KEY`).
    pub api_key: String,
    pub request_timeout_ms: u64,
    /// The event webhook's verification key (base64 DER, from SendGrid's mail settings);
    /// empty: the event webhook is off (404).
    pub webhook_public_key: String,
    /// Largest distance between a delivery's signed timestamp and now.
    pub webhook_tolerance_secs: u64,
}

/// Twilio's Messages API (the SMS channel) and its signed status callbacks.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TwilioSection {
    /// Off: no SMS channel (no SMS deliveries are planned).
    pub enabled: bool,
    pub api_base: String,
    pub account_sid: String,
    /// From the environment (`REGENGINE__OUTBOX__TWILIO__AUTH_TOKEN`); also the key of the
    /// status callbacks' signatures.
    pub auth_token: String,
    /// The sender: a phone number in E.164 or a messaging service SID (`MG...`).
    pub from: String,
    /// The public URL Twilio calls back, exactly as Twilio sees it (the signature covers it):
    /// `https://<this API's public address>/api/v1/notifications/webhooks/twilio`. Empty: no
    /// status callbacks (deliveries stay `sent`).
    pub status_callback_url: String,
    pub request_timeout_ms: u64,
}

/// An SMTP server.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SmtpSection {
    pub host: String,
    pub port: u16,
    /// `implicit` (TLS, port 465), `starttls` (587) or `none` (a local relay only).
    pub security: integrations::mail::smtp::Security,
    /// Empty: no authentication.
    pub username: String,
    /// From the environment (`REGENGINE__OUTBOX__SMTP__PASSWORD`), never the file.
    pub password: String,
    /// Opening a connection (through greeting, EHLO, STARTTLS and AUTH) and checking an idle
    /// one take at most this long; a message's own transaction up to 10 minutes (RFC 5321).
    pub timeout_ms: u64,
    /// Connections kept open at most.
    pub pool_max: u32,
}

/// HTTP server settings.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpConfig {
    /// Listen address (`127.0.0.1:0` picks a free port).
    pub bind: SocketAddr,
    /// The admin listener's address (`/metrics`, `/healthz`, `/readyz`); empty: none, and
    /// `/metrics` is served on `bind`. See [`HttpConfig::admin_addr`].
    pub admin_bind: String,
    /// Requests handled at once; the rest are shed with 503.
    pub concurrency_max: usize,
    /// Per-request timeout.
    pub request_timeout_ms: u64,
    /// Largest request body.
    pub body_bytes_max: usize,
    /// Graceful shutdown drain time.
    pub shutdown_grace_ms: u64,
    /// `Retry-After` sent with 503s.
    pub retry_after_secs: u32,
    /// Browser origins allowed to call the API (CORS); empty: no CORS headers at all.
    pub cors_allowed_origins: Vec<String>,
    /// Send `Strict-Transport-Security` (only behind a TLS-terminating proxy).
    pub hsts: bool,
    /// Responses larger than this many bytes are gzip-compressed for clients that accept it
    /// (API routes only; the Swagger UI assets are never compressed on the fly).
    pub compress_above_bytes: u16,
    /// Connections open at once; at the bound the one waiting longest for a request is
    /// closed to admit a new one, and if none is waiting the new one is refused. Lowered at
    /// start-up (with a warning) if the open-file limit cannot hold it.
    pub connections_max: usize,
    /// Connections from one client address at once (0: no bound); more are refused.
    pub connections_per_ip_max: usize,
    /// An open connection with no request in progress (just accepted, or between keep-alive
    /// requests) is closed after this long.
    pub keep_alive_timeout_ms: u64,
    /// From a request's first byte to the end of its head; a slower client is disconnected.
    pub header_read_timeout_ms: u64,
    /// Time to receive a whole request body, from the end of its head; slower: 408.
    pub body_read_timeout_ms: u64,
    /// A response write (or a WebSocket frame) that makes no progress for this long closes
    /// the connection: the peer stopped reading.
    pub write_timeout_ms: u64,
    /// Largest request head (request line and headers); larger: 431.
    pub header_bytes_max: usize,
    /// Connections the kernel queues for `accept` (capped by `net.core.somaxconn`).
    pub listen_backlog: u32,
    /// Proxies (CIDRs) whose `Forwarded` / `X-Forwarded-For` name the client for the
    /// per-address rate limits; empty: the connection's peer is the client.
    pub trusted_proxies: Vec<String>,
    /// The one header the trusted proxies write the client's address in.
    pub forwarded_header: crate::client_ip::ForwardedHeader,
}

impl HttpConfig {
    /// The admin listener's address, when one is configured (and valid: checked at start).
    pub fn admin_addr(&self) -> Option<SocketAddr> {
        self.admin_bind.parse().ok()
    }
}

/// Storage settings.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StorageConfig {
    /// Directory of the embedded store.
    pub data_dir: PathBuf,
    /// Block cache bytes.
    pub cache_bytes: u64,
    /// Background flush/compaction threads.
    pub worker_threads: usize,
    /// Bytes of the store's own write-ahead journal before memtables are flushed (>= 64 MiB);
    /// bounds the replay after a crash.
    pub journal_bytes_max: u64,
    /// Most events per durable batch.
    pub batch_events_max: usize,
    /// Longest a batch waits for more appends, in microseconds.
    pub batch_wait_max_us: u64,
    /// Appends queued for the writer.
    pub journal_queue_max: usize,
}

/// Engine limits.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EngineSection {
    /// Longest wait for an actor's answer.
    pub call_timeout_ms: u64,
    /// In-flight calls per pool actor.
    pub pool_inflight_max: u32,
    /// In-flight calls per event actor.
    pub event_inflight_max: u32,
    pub hold_ttl_default_secs: u32,
    /// Snapshot interval of pools, in events.
    pub snapshot_every_events: u64,
    /// Idle time before an event is passivated.
    pub passivate_after_secs: u64,
    pub ticket_types_per_event_max: usize,
    /// Events in memory at once.
    pub events_active_max: usize,
    /// Pool restarts an event tolerates.
    pub pool_restarts_max: u32,
    /// How long a waiting-list offer is reserved.
    pub waitlist_offer_secs: u32,
    /// Ticket routes kept in memory for scans (0: off).
    pub ticket_routes_cached_max: usize,
}

/// Idempotency cache settings.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IdempotencyConfig {
    /// Responses remembered.
    pub entries_max: usize,
    /// Bytes of response bodies remembered.
    pub bytes_max: usize,
    /// How long a response is remembered.
    pub ttl_secs: u64,
}

/// WebSocket settings.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WebSocketConfig {
    /// Topics per connection.
    pub subscriptions_max: usize,
    /// Frames buffered per connection.
    pub send_buffer_max: usize,
    /// Pushes per second per topic per connection.
    pub pushes_per_sec_max: u32,
    /// Milliseconds a connection may make no progress on its socket, with pushes waiting,
    /// before it is disconnected.
    pub lag_timeout_ms: u64,
}

/// Where outbox messages go.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Delivery {
    /// Each message appended as a JSON line to `outbox.file` (development and tests).
    File,
    /// Only logged, without its link: nothing reaches anyone.
    Log,
    /// Sent to the SMTP server of `outbox.smtp`.
    Smtp,
    /// Sent through SendGrid's API (`outbox.sendgrid`).
    Sendgrid,
}

/// How log lines are written.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LogFormat {
    /// One JSON object per line (for log collectors).
    Json,
    /// Human-readable lines.
    Text,
}

/// Log settings.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LogConfig {
    /// Line format.
    pub format: LogFormat,
    /// `tracing` filter directive.
    pub filter: String,
}

impl Config {
    /// The defaults, then the keys `file` sets, then the overrides found in `env`; validated.
    pub fn load(
        file: Option<&Path>,
        env: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Self, ConfigError> {
        Self::from_table(load::layered(file, env)?)
    }

    /// The configuration `table` describes (every key present), validated.
    pub fn from_table(table: toml::Table) -> Result<Self, ConfigError> {
        // Through the text form, so a value of the wrong type is reported with its key and line.
        let config: Config =
            toml::from_str(&table.to_string()).map_err(|source| ConfigError::Syntax {
                layer: "configuration".to_owned(),
                source: Box::new(source),
            })?;
        config.validate()?;
        Ok(config)
    }

    /// Checks values and how they relate.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let mut checks = self
            .http_checks()
            .into_iter()
            .chain(self.core_checks())
            .chain(self.account_checks())
            .chain(self.outbox_checks())
            .chain(self.webhooks.checks())
            .chain(self.payment_checks());
        if let Some((_, message)) = checks.find(|(ok, _)| !ok) {
            return Err(ConfigError::Invalid(message.to_owned()));
        }
        self.rate_limit.validate().map_err(ConfigError::Invalid)
    }

    /// `[http]`: bounds, deadlines and how they relate.
    fn http_checks(&self) -> Vec<(bool, &'static str)> {
        vec![
            (
                self.http.concurrency_max > 0,
                "http.concurrency_max must be > 0",
            ),
            (
                self.http.body_bytes_max >= 1024,
                "http.body_bytes_max must be >= 1024",
            ),
            (
                self.payments.bank_transfer.statement_bytes_max >= 1024,
                "payments.bank_transfer.statement_bytes_max must be >= 1024",
            ),
            (
                self.http.request_timeout_ms > self.engine.call_timeout_ms,
                "http.request_timeout_ms must exceed engine.call_timeout_ms",
            ),
            (
                self.http.connections_max >= 16,
                "http.connections_max must be >= 16",
            ),
            (
                self.http.keep_alive_timeout_ms >= 100
                    && self.http.header_read_timeout_ms >= 100
                    && self.http.write_timeout_ms >= 100,
                "http.keep_alive_timeout_ms, header_read_timeout_ms and write_timeout_ms must be >= 100",
            ),
            (
                self.http.body_read_timeout_ms >= 100
                    && self.http.body_read_timeout_ms < self.http.request_timeout_ms,
                "http.body_read_timeout_ms must be >= 100 and below http.request_timeout_ms (a slow body is the client's 408, not the server's 503)",
            ),
            (
                (8192..=1 << 20).contains(&self.http.header_bytes_max),
                "http.header_bytes_max must be 8192..=1048576",
            ),
            (
                (16..=65_535).contains(&self.http.listen_backlog),
                "http.listen_backlog must be 16..=65535",
            ),
            (
                self.http.admin_bind.is_empty() || self.http.admin_addr().is_some(),
                "http.admin_bind must be empty or an address such as \"127.0.0.1:9090\"",
            ),
            (
                self.http
                    .admin_addr()
                    .is_none_or(|admin| admin.port() == 0 || admin.port() != self.http.bind.port()),
                "http.admin_bind must use another port than http.bind",
            ),
            (
                crate::client_ip::TrustedProxies::parse(
                    &self.http.trusted_proxies,
                    self.http.forwarded_header,
                )
                .is_ok(),
                "http.trusted_proxies must be CIDRs or addresses such as \"10.0.0.0/8\" or \"::1\"",
            ),
            (
                self.http.cors_allowed_origins.iter().all(|origin| {
                    (origin.starts_with("https://") || origin.starts_with("http://"))
                        && axum::http::HeaderValue::from_str(origin).is_ok()
                }),
                "http.cors_allowed_origins must be http(s) origins such as \"https://tickets.example.com\"",
            ),
        ]
    }

    /// Storage, engine, idempotency and WebSocket settings.
    fn core_checks(&self) -> Vec<(bool, &'static str)> {
        vec![
            (
                self.storage.batch_events_max > 0,
                "storage.batch_events_max must be > 0",
            ),
            (
                self.storage.journal_queue_max > 0,
                "storage.journal_queue_max must be > 0",
            ),
            (
                self.storage.worker_threads >= 1,
                "storage.worker_threads must be >= 1",
            ),
            (
                self.storage.journal_bytes_max >= 64 << 20,
                "storage.journal_bytes_max must be >= 67108864 (64 MiB, the store's minimum)",
            ),
            (
                self.engine.pool_inflight_max > 0 && self.engine.event_inflight_max > 0,
                "engine inflight bounds must be > 0",
            ),
            (
                (1..=86_400).contains(&self.engine.hold_ttl_default_secs),
                "engine.hold_ttl_default_secs must be 1..=86400",
            ),
            (
                (1..=604_800).contains(&self.engine.waitlist_offer_secs),
                "engine.waitlist_offer_secs must be 1..=604800",
            ),
            (
                self.engine.snapshot_every_events > 0,
                "engine.snapshot_every_events must be > 0",
            ),
            (
                self.idempotency.entries_max > 0 && self.idempotency.bytes_max >= 65_536,
                "idempotency.entries_max must be > 0 and idempotency.bytes_max >= 65536",
            ),
            (
                self.websocket.send_buffer_max > 0 && self.websocket.subscriptions_max > 0,
                "websocket bounds must be > 0",
            ),
            (
                (1..=100).contains(&self.websocket.pushes_per_sec_max),
                "websocket.pushes_per_sec_max must be 1..=100",
            ),
        ]
    }

    /// Payments and their providers.
    fn payment_checks(&self) -> Vec<(bool, &'static str)> {
        let p = &self.payments;
        let stripe = &p.stripe;
        vec![
            (
                (1..=86_400).contains(&p.hold_extension_secs),
                "payments.hold_extension_secs must be 1..=86400",
            ),
            (
                p.refund_retry_ms >= 10 && (1..=100).contains(&p.refund_attempts_max),
                "payments.refund_retry_ms must be >= 10 and payments.refund_attempts_max 1..=100",
            ),
            (
                stripe.api_base.starts_with("https://") || stripe.api_base.starts_with("http://"),
                "payments.stripe.api_base must be an http(s) URL",
            ),
            (
                !stripe.enabled
                    || (!stripe.secret_key.is_empty()
                        && !stripe.webhook_secrets.is_empty()
                        && stripe.webhook_secrets.iter().all(|s| !s.is_empty())),
                "payments.stripe.enabled needs payments.stripe.secret_key and \
                 payments.stripe.webhook_secrets (from the environment)",
            ),
            (
                !p.paypal.enabled
                    || (!p.paypal.client_id.is_empty()
                        && !p.paypal.client_secret.is_empty()
                        && !p.paypal.webhook_id.is_empty()),
                "payments.paypal.enabled needs payments.paypal.client_id, client_secret and \
                 webhook_id (from the environment)",
            ),
            (
                [
                    &p.paypal.api_base,
                    &p.paypal.return_url,
                    &p.paypal.cancel_url,
                ]
                .iter()
                .all(|u| u.starts_with("https://") || u.starts_with("http://"))
                    && (100..=120_000).contains(&p.paypal.request_timeout_ms),
                "payments.paypal.api_base, return_url and cancel_url must be http(s) URLs and \
                 request_timeout_ms 100..=120000",
            ),
            (
                (1..=720).contains(&p.bank_transfer.deadline_hours)
                    && (!p.bank_transfer.enabled
                        || !(p.bank_transfer.payee.is_empty() || p.bank_transfer.iban.is_empty())),
                "payments.bank_transfer.deadline_hours must be 1..=720, and enabled needs payee \
                 and iban",
            ),
            (
                (1..=3_600).contains(&stripe.webhook_tolerance_secs),
                "payments.stripe.webhook_tolerance_secs must be 1..=3600",
            ),
            (
                (100..=120_000).contains(&stripe.request_timeout_ms),
                "payments.stripe.request_timeout_ms must be 100..=120000",
            ),
        ]
    }

    /// Accounts (hashing, tokens).
    fn account_checks(&self) -> Vec<(bool, &'static str)> {
        vec![
            (
                self.auth.argon2_memory_kib >= 19_456 && self.auth.argon2_iterations >= 2,
                "auth.argon2_* must be at least OWASP's m=19456 KiB, t=2",
            ),
            (
                (10..=86_400).contains(&self.auth.access_ttl_secs),
                "auth.access_ttl_secs must be 10..=86400",
            ),
            (
                self.auth.refresh_ttl_secs > self.auth.access_ttl_secs,
                "auth.refresh_ttl_secs must exceed auth.access_ttl_secs",
            ),
            (
                self.auth.leeway_secs <= 300,
                "auth.leeway_secs must be <= 300",
            ),
            (
                self.auth.hashing_concurrency_max > 0 && self.auth.hashing_queue_max > 0,
                "auth hashing bounds must be > 0",
            ),
            (
                !self.auth.issuer.is_empty() && !self.auth.audience.is_empty(),
                "auth.issuer and auth.audience must be set",
            ),
            (
                (60..=7 * 86_400).contains(&self.auth.email_token_ttl_secs),
                "auth.email_token_ttl_secs must be 60..=604800",
            ),
            (
                (60..=86_400).contains(&self.auth.reset_token_ttl_secs),
                "auth.reset_token_ttl_secs must be 60..=86400",
            ),
        ]
    }

    /// Whether Twilio's settings are usable.
    fn twilio_complete(&self) -> bool {
        let t = &self.outbox.twilio;
        let http = |url: &str| url.starts_with("https://") || url.starts_with("http://");
        let sender = t.from.starts_with("MG") || integrations::twilio::e164(&t.from).is_some();
        !t.account_sid.is_empty()
            && !t.auth_token.is_empty()
            && sender
            && http(&t.api_base)
            && (t.status_callback_url.is_empty()
                || (http(&t.status_callback_url) && !t.status_callback_url.contains('?')))
            && t.request_timeout_ms >= 100
    }

    /// The engine's settings.
    pub fn engine_config(&self) -> engine::EngineConfig {
        let e = &self.engine;
        engine::EngineConfig {
            call_timeout: Duration::from_millis(e.call_timeout_ms),
            pool_inflight_max: e.pool_inflight_max,
            event_inflight_max: e.event_inflight_max,
            hold_ttl_default_secs: e.hold_ttl_default_secs,
            snapshot_every_events: e.snapshot_every_events,
            passivate_after: Duration::from_secs(e.passivate_after_secs),
            ticket_types_per_event_max: e.ticket_types_per_event_max,
            events_active_max: e.events_active_max,
            pool_restarts_max: e.pool_restarts_max,
            waitlist_offer_secs: e.waitlist_offer_secs,
            ticket_routes_cached_max: e.ticket_routes_cached_max,
            payment_hold_extension_secs: self.payments.hold_extension_secs,
            bank_transfer: self.payments.bank_transfer.settings(),
            bank_reminder_before: (self.payments.bank_transfer.reminder_before_secs > 0)
                .then(|| Duration::from_secs(self.payments.bank_transfer.reminder_before_secs)),
            payment_due_after: (self.outbox.payment_due_after_secs > 0)
                .then(|| Duration::from_secs(self.outbox.payment_due_after_secs)),
            refund_retry: Duration::from_millis(self.payments.refund_retry_ms),
            refund_attempts_max: self.payments.refund_attempts_max,
            outbox: engine::outbox::OutboxConfig {
                pending_max: self.outbox.pending_max,
                batch_max: self.outbox.relay_batch_max,
                retry_after: Duration::from_millis(self.outbox.retry_ms),
            },
            notify: engine::notify::worker::WorkerConfig {
                concurrency: self.outbox.concurrency,
                rate_per_sec: self.outbox.rate_per_sec,
                retry_after: Duration::from_millis(self.outbox.retry_ms),
                retry_max: Duration::from_millis(self.outbox.retry_max_ms),
                attempts_max: self.outbox.attempts_max,
                retention: Duration::from_secs(
                    u64::from(self.outbox.delivery_retention_days) * 86_400,
                ),
                ..engine::notify::worker::WorkerConfig::default()
            },
            reminders: engine::notify::reminders::ReminderConfig {
                poll: Duration::from_millis(self.outbox.schedule_poll_ms),
                ..engine::notify::reminders::ReminderConfig::default()
            },
            broadcasts: engine::notify::broadcasts::BroadcastConfig {
                poll: Duration::from_millis(self.outbox.schedule_poll_ms),
                rate_per_sec: self.outbox.broadcast_rate_per_sec,
                ..engine::notify::broadcasts::BroadcastConfig::default()
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load_env(env: &[(&str, &str)]) -> Result<Config, ConfigError> {
        let env = env.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned()));
        Config::load(None, env)
    }

    #[test]
    fn the_defaults_alone_are_a_valid_configuration_and_env_overrides_apply() {
        let config = load_env(&[
            ("REGENGINE__HTTP__BIND", "127.0.0.1:0"),
            ("REGENGINE__ENGINE__HOLD_TTL_DEFAULT_SECS", "42"),
            ("UNRELATED", "x"),
        ])
        .unwrap();
        assert_eq!(config.http.bind.port(), 0);
        assert_eq!(config.engine.hold_ttl_default_secs, 42);
        assert_eq!(config.log.format, LogFormat::Json);
        assert_eq!(config.outbox.delivery, Delivery::File);
    }

    #[test]
    fn the_full_default_file_as_a_layer_changes_nothing() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../config/default.toml");
        let from_file = load::layered(Some(&path), []).unwrap();
        assert_eq!(from_file, load::layered(None, []).unwrap());
    }

    #[test]
    fn closed_choices_are_enums_and_a_typo_names_the_choices() {
        let config = load_env(&[("REGENGINE__LOG__FORMAT", "text")]).unwrap();
        assert_eq!(config.log.format, LogFormat::Text);
        let error = load_env(&[("REGENGINE__OUTBOX__DELIVERY", "pigeon")]).unwrap_err();
        let error = format!("{error}");
        assert!(
            error.contains("unknown variant `pigeon`") && error.contains("`smtp`"),
            "{error}"
        );
        assert!(error.contains("delivery"), "names the key: {error}");
    }

    #[test]
    fn unknown_keys_are_rejected() {
        let error = load_env(&[("REGENGINE__HTTP__BINDD", "x")]).unwrap_err();
        assert!(matches!(error, ConfigError::UnknownKey { .. }), "{error}");
        let error = load_env(&[("REGENGINE__ENGINE__HOLD_TTL_DEFAULT_SECS", "ten")]).unwrap_err();
        assert!(matches!(error, ConfigError::BadOverride { .. }), "{error}");
    }

    #[test]
    fn out_of_range_values_are_errors_naming_the_key_not_clamped() {
        for (variable, value, key) in [
            ("REGENGINE__OUTBOX__RETRY_MS", "0", "outbox.retry_ms"),
            (
                "REGENGINE__OUTBOX__ATTEMPTS_MAX",
                "0",
                "outbox.attempts_max",
            ),
            (
                "REGENGINE__OUTBOX__RELAY_BATCH_MAX",
                "0",
                "outbox.relay_batch_max",
            ),
            (
                "REGENGINE__HTTP__CONCURRENCY_MAX",
                "0",
                "http.concurrency_max",
            ),
        ] {
            let error = load_env(&[(variable, value)]).unwrap_err();
            assert!(matches!(error, ConfigError::Invalid(_)), "{error}");
            assert!(error.to_string().contains(key), "{error}");
        }
    }

    #[test]
    fn the_engine_gets_the_configured_values() {
        let config = load_env(&[
            ("REGENGINE__OUTBOX__RETRY_MS", "250"),
            ("REGENGINE__OUTBOX__RELAY_BATCH_MAX", "32"),
        ])
        .unwrap();
        let engine = config.engine_config();
        assert_eq!(engine.outbox.retry_after, Duration::from_millis(250));
        assert_eq!(engine.outbox.batch_max, 32);
        assert_eq!(
            engine.call_timeout,
            Duration::from_millis(config.engine.call_timeout_ms)
        );
    }
}
