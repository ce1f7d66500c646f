//! The gateway's typed configuration: `config/default.toml` (or `--config`) plus
//! environment overrides `REGENGINE__SECTION__KEY=value`. Unknown keys are rejected, and
//! `validate` checks how limits relate, once, at start-up.

use serde::Deserialize;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Prefix of environment overrides.
pub const ENV_PREFIX: &str = "REGENGINE__";

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
    /// Rate limits.
    pub rate_limit: crate::ratelimit::RateLimitConfig,
    /// Logging.
    pub log: LogConfig,
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

/// The outbox of messages to send, and the adapter that delivers them until the
/// notification service lands.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OutboxSection {
    /// Where messages go.
    pub delivery: Delivery,
    /// The file of the `file` adapter; relative paths are inside `storage.data_dir`.
    pub file: PathBuf,
    /// Size at which the file is rotated (to `<file>.1`, replacing an older one).
    pub file_bytes_max: u64,
    /// Base of the links in messages: the front end's address.
    pub link_base_url: String,
    /// Messages waiting at most; beyond it, requests that would add one get 503.
    pub pending_max: usize,
    /// Wait after a failed delivery (doubling up to 32x).
    pub retry_ms: u64,
    /// Failed deliveries in a row after which a message goes to the dead letters.
    pub attempts_max: u32,
}

/// HTTP server settings.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpConfig {
    /// Listen address (`127.0.0.1:0` picks a free port).
    pub bind: SocketAddr,
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
    /// Default hold TTL.
    pub hold_ttl_default_secs: u32,
    /// Snapshot interval of pools, in events.
    pub snapshot_every_events: u64,
    /// Idle time before an event is passivated.
    pub passivate_after_secs: u64,
    /// Ticket types per event.
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
    /// Reads `path` and applies the overrides found in `env`.
    pub fn load(
        path: &Path,
        env: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Self, String> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| format!("reading {}: {e}", path.display()))?;
        let mut table: toml::Table =
            toml::from_str(&text).map_err(|e| format!("parsing {}: {e}", path.display()))?;
        for (name, value) in env {
            let Some(rest) = name.strip_prefix(ENV_PREFIX) else {
                continue;
            };
            let keys: Vec<String> = rest.split("__").map(str::to_lowercase).collect();
            set_path(&mut table, &keys, &value).map_err(|e| format!("{name}: {e}"))?;
        }
        let config: Config = toml::Value::Table(table)
            .try_into()
            .map_err(|e| format!("configuration: {e}"))?;
        config.validate()?;
        Ok(config)
    }

    /// Checks values and how they relate.
    pub fn validate(&self) -> Result<(), String> {
        let mut checks = self
            .http_checks()
            .into_iter()
            .chain(self.core_checks())
            .chain(self.account_checks());
        if let Some((_, message)) = checks.find(|(ok, _)| !ok) {
            return Err(message.to_owned());
        }
        self.rate_limit.validate()
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
                self.idempotency.entries_max > 0,
                "idempotency.entries_max must be > 0",
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

    /// Accounts (hashing, tokens) and the outbox.
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
            (
                self.outbox.pending_max > 0 && self.outbox.file_bytes_max >= 4096,
                "outbox.pending_max must be > 0 and outbox.file_bytes_max >= 4096",
            ),
            (
                self.outbox.link_base_url.starts_with("http://")
                    || self.outbox.link_base_url.starts_with("https://"),
                "outbox.link_base_url must be an http(s) URL",
            ),
        ]
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
            outbox: engine::outbox::OutboxConfig {
                pending_max: self.outbox.pending_max,
                batch_max: 64,
                retry_after: Duration::from_millis(self.outbox.retry_ms.max(10)),
                attempts_max: self.outbox.attempts_max.max(1),
            },
        }
    }
}

/// Sets `keys` (a path of lower-case names) in `table` to `raw`, parsed as a TOML value when
/// it is one (numbers, booleans) and as a string otherwise. Only existing keys may be set.
fn set_path(table: &mut toml::Table, keys: &[String], raw: &str) -> Result<(), String> {
    let (last, parents) = keys.split_last().ok_or("empty key")?;
    let mut current = table;
    for key in parents {
        current = current
            .get_mut(key)
            .and_then(|v| v.as_table_mut())
            .ok_or_else(|| format!("unknown section `{key}`"))?;
    }
    let existing = current
        .get(last)
        .ok_or_else(|| format!("unknown key `{last}`"))?;
    let value = match existing {
        toml::Value::String(_) => toml::Value::String(raw.to_owned()),
        _ => toml::from_str::<toml::Table>(&format!("v = {raw}"))
            .ok()
            .and_then(|mut t| t.remove("v"))
            .ok_or_else(|| format!("`{raw}` is not a valid value"))?,
    };
    current.insert(last.clone(), value);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn default_path() -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../config/default.toml")
    }

    #[test]
    fn default_file_loads_and_env_overrides_apply() {
        let env = [
            ("REGENGINE__HTTP__BIND".to_owned(), "127.0.0.1:0".to_owned()),
            (
                "REGENGINE__ENGINE__HOLD_TTL_DEFAULT_SECS".to_owned(),
                "42".to_owned(),
            ),
            ("UNRELATED".to_owned(), "x".to_owned()),
        ];
        let config = Config::load(&default_path(), env).unwrap();
        assert_eq!(config.http.bind.port(), 0);
        assert_eq!(config.engine.hold_ttl_default_secs, 42);
        assert_eq!(config.log.format, LogFormat::Json);
        assert_eq!(config.outbox.delivery, Delivery::File);
    }

    #[test]
    fn closed_choices_are_enums_and_a_typo_names_the_choices() {
        let env = [("REGENGINE__LOG__FORMAT".to_owned(), "text".to_owned())];
        assert_eq!(
            Config::load(&default_path(), env).unwrap().log.format,
            LogFormat::Text
        );
        let env = [("REGENGINE__OUTBOX__DELIVERY".to_owned(), "smtp".to_owned())];
        let error = Config::load(&default_path(), env).unwrap_err();
        assert!(
            error.contains("unknown variant `smtp`") && error.contains("`file`"),
            "{error}"
        );
    }

    #[test]
    fn unknown_keys_are_rejected() {
        let env = [("REGENGINE__HTTP__BINDD".to_owned(), "x".to_owned())];
        assert!(
            Config::load(&default_path(), env)
                .unwrap_err()
                .contains("unknown key")
        );
        let env = [(
            "REGENGINE__ENGINE__HOLD_TTL_DEFAULT_SECS".to_owned(),
            "ten".to_owned(),
        )];
        assert!(Config::load(&default_path(), env).is_err());
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.toml");
        let text = std::fs::read_to_string(default_path()).unwrap() + "\n[extra]\nx = 1\n";
        std::fs::write(&path, text).unwrap();
        assert!(
            Config::load(&path, [])
                .unwrap_err()
                .contains("unknown field")
        );
    }
}
