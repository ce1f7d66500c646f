//! Rate limits: GCRA (the token bucket as a single "theoretical arrival time" per key), per
//! budget and key (client IP, account, or e-mail address for login attempts).
//!
//! With `rate_limit.redis_url` set, the buckets live in Redis (one Lua script per check, using
//! Redis's clock), so several gateways share one budget. Redis is an accelerator, not a
//! dependency: when it does not answer within `redis_timeout_ms` the gateway uses its local
//! buckets for a second and tries again, so sales go on while Redis is down.
//!
//! Memory is bounded: keys live in shards of at most `keys_max / SHARDS` entries. Making room
//! in a full shard takes constant time (a client spraying addresses must not make every
//! request scan the table): of the oldest few keys, the one whose bucket refills soonest goes
//! (one full again carries no information), and the others move to the back. A key being
//! limited hard (a password under attack) refills last, so fresh keys go before it; which
//! shard a key lands in is keyed by a per-process random hash, so it cannot be aimed at.

use serde::Deserialize;
use std::collections::{HashMap, VecDeque};
use std::hash::{BuildHasher, RandomState};
use std::sync::Mutex;
use std::time::{Duration, Instant};

const SHARDS: usize = 16;

/// A budget: a sustained rate and a burst.
#[derive(Clone, Copy, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Rate {
    /// Requests per second, sustained.
    pub per_sec: f64,
    /// Requests allowed at once after a quiet period.
    pub burst: u32,
}

impl Rate {
    fn valid(&self) -> bool {
        self.per_sec > 0.0 && self.per_sec.is_finite() && self.burst >= 1
    }
}

/// What a limit protects; each has its own budget.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Budget {
    /// Login attempts per client IP.
    LoginPerIp,
    /// Login attempts per account (e-mail address): password guessing.
    LoginPerAccount,
    /// Sign-ups per client IP.
    SignupPerIp,
    /// Holds per signed-in account.
    HoldsPerAccount,
    /// Holds per client IP.
    HoldsPerIp,
    /// Reads per client IP.
    ReadsPerIp,
    /// Other changes per client IP.
    WritesPerIp,
    /// Requests that send an e-mail, per client IP.
    MailPerIp,
    /// Requests that send an e-mail, per target address.
    MailPerAddress,
}

impl Budget {
    /// Label for metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            Budget::LoginPerIp => "login_per_ip",
            Budget::LoginPerAccount => "login_per_account",
            Budget::SignupPerIp => "signup_per_ip",
            Budget::HoldsPerAccount => "holds_per_account",
            Budget::HoldsPerIp => "holds_per_ip",
            Budget::ReadsPerIp => "reads_per_ip",
            Budget::WritesPerIp => "writes_per_ip",
            Budget::MailPerIp => "mail_per_ip",
            Budget::MailPerAddress => "mail_per_address",
        }
    }
}

/// The `[rate_limit]` configuration.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RateLimitConfig {
    /// Off: nothing is limited (load tests from one machine).
    pub enabled: bool,
    /// Keys tracked at most (all budgets together).
    pub keys_max: usize,
    /// Login attempts per client IP.
    pub login_per_ip: Rate,
    /// Login attempts per account.
    pub login_per_account: Rate,
    /// Sign-ups per client IP.
    pub signup_per_ip: Rate,
    pub holds_per_account: Rate,
    /// Holds per client IP.
    pub holds_per_ip: Rate,
    /// Reads per client IP.
    pub reads_per_ip: Rate,
    /// Other changes per client IP.
    pub writes_per_ip: Rate,
    /// Requests that send an e-mail, per client IP.
    pub mail_per_ip: Rate,
    /// Requests that send an e-mail, per target address.
    pub mail_per_address: Rate,
    /// Shared buckets in Redis (`redis://host:port`); empty: in process only.
    pub redis_url: String,
    /// Longest wait for Redis before falling back to local buckets.
    pub redis_timeout_ms: u64,
}

impl RateLimitConfig {
    /// Checks every budget.
    pub fn validate(&self) -> Result<(), String> {
        let all = [
            self.login_per_ip,
            self.login_per_account,
            self.signup_per_ip,
            self.holds_per_account,
            self.holds_per_ip,
            self.reads_per_ip,
            self.writes_per_ip,
            self.mail_per_ip,
            self.mail_per_address,
        ];
        if !all.iter().all(Rate::valid) {
            return Err("rate_limit: every per_sec must be > 0 and every burst >= 1".into());
        }
        if self.keys_max < SHARDS {
            return Err(format!("rate_limit.keys_max must be >= {SHARDS}"));
        }
        if self.redis_timeout_ms == 0 {
            return Err("rate_limit.redis_timeout_ms must be >= 1".into());
        }
        Ok(())
    }

    fn rate(&self, budget: Budget) -> Rate {
        match budget {
            Budget::LoginPerIp => self.login_per_ip,
            Budget::LoginPerAccount => self.login_per_account,
            Budget::SignupPerIp => self.signup_per_ip,
            Budget::HoldsPerAccount => self.holds_per_account,
            Budget::HoldsPerIp => self.holds_per_ip,
            Budget::ReadsPerIp => self.reads_per_ip,
            Budget::WritesPerIp => self.writes_per_ip,
            Budget::MailPerIp => self.mail_per_ip,
            Budget::MailPerAddress => self.mail_per_address,
        }
    }
}

/// GCRA in Redis: KEYS[1] the bucket; ARGV interval and tolerance in µs. Returns 0 when
/// allowed, else the µs to wait. Uses Redis's clock so every gateway agrees.
const GCRA_LUA: &str = r#"
local interval = tonumber(ARGV[1])
local tolerance = tonumber(ARGV[2])
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local tat = tonumber(redis.call('GET', KEYS[1]) or now)
if tat < now then tat = now end
if tat - now > tolerance then return tat - now - tolerance end
local new = tat + interval
redis.call('SET', KEYS[1], new, 'PX', math.floor((new - now) / 1000) + 1000)
return 0
"#;

/// How long the local buckets are used after Redis failed to answer.
const REDIS_BACKOFF: Duration = Duration::from_secs(1);

/// The Redis side of the limiter.
struct Shared {
    conn: std::sync::RwLock<Option<redis::aio::ConnectionManager>>,
    script: redis::Script,
    timeout: Duration,
    /// Until when (ns since the limiter's epoch) Redis is skipped.
    down_until: std::sync::atomic::AtomicU64,
}

/// Rate limiter: Redis-shared buckets when configured and reachable, local ones otherwise.
pub struct Limiter {
    local: LocalLimiter,
    shared: Option<std::sync::Arc<Shared>>,
}

impl Limiter {
    /// A limiter with `config`'s budgets; with a Redis URL, connects in the background (the
    /// local buckets serve until the connection is up).
    pub fn new(config: RateLimitConfig) -> Result<Self, String> {
        let shared = if config.enabled && !config.redis_url.is_empty() {
            let client = redis::Client::open(config.redis_url.as_str())
                .map_err(|e| format!("rate_limit.redis_url: {e}"))?;
            let timeout = Duration::from_millis(config.redis_timeout_ms);
            let shared = std::sync::Arc::new(Shared {
                conn: std::sync::RwLock::new(None),
                script: redis::Script::new(GCRA_LUA),
                timeout,
                down_until: std::sync::atomic::AtomicU64::new(0),
            });
            let connecting = shared.clone();
            tokio::spawn(async move {
                let options = redis::aio::ConnectionManagerConfig::new()
                    .set_connection_timeout(Some(timeout * 4))
                    .set_response_timeout(Some(timeout))
                    .set_number_of_retries(2);
                loop {
                    match client
                        .get_connection_manager_with_config(options.clone())
                        .await
                    {
                        Ok(conn) => {
                            tracing::info!("rate limits shared through Redis");
                            metrics::gauge!("regengine_rate_limit_redis_connected").set(1.0);
                            *connecting.conn.write().unwrap_or_else(|e| e.into_inner()) =
                                Some(conn);
                            return;
                        }
                        Err(e) => {
                            tracing::warn!(error = %e, "Redis unreachable; local rate limits meanwhile");
                            tokio::time::sleep(REDIS_BACKOFF).await;
                        }
                    }
                }
            });
            Some(shared)
        } else {
            None
        };
        Ok(Self {
            local: LocalLimiter::new(config),
            shared,
        })
    }

    /// Whether limits apply at all.
    pub fn enabled(&self) -> bool {
        self.local.config.enabled
    }

    /// Takes one request from `budget` for `key`: `Err(retry_after)` when over the limit.
    pub async fn check(&self, budget: Budget, key: &[u8]) -> Result<(), Duration> {
        if !self.enabled() {
            return Ok(());
        }
        let now = self.local.epoch.elapsed().as_nanos() as u64;
        if let Some(shared) = &self.shared
            && now >= shared.down_until.load(std::sync::atomic::Ordering::Relaxed)
        {
            let conn = shared
                .conn
                .read()
                .unwrap_or_else(|e| e.into_inner())
                .clone();
            if let Some(mut conn) = conn {
                let rate = self.local.config.rate(budget);
                let interval_us = (1e6 / rate.per_sec) as u64;
                let tolerance_us = interval_us.saturating_mul(u64::from(rate.burst) - 1);
                let bucket = format!(
                    "regengine:rl:{}:{}",
                    budget.as_str(),
                    data_encoding::HEXLOWER.encode(key)
                );
                let mut call = shared.script.key(bucket);
                call.arg(interval_us).arg(tolerance_us);
                match tokio::time::timeout(shared.timeout, call.invoke_async::<u64>(&mut conn))
                    .await
                {
                    Ok(Ok(0)) => return Ok(()),
                    Ok(Ok(wait_us)) => {
                        metrics::counter!("regengine_rate_limited_total", "budget" => budget.as_str())
                            .increment(1);
                        return Err(Duration::from_micros(wait_us));
                    }
                    Ok(Err(e)) => {
                        tracing::warn!(error = %e, "Redis rate limit failed; local limits for now")
                    }
                    Err(_) => tracing::warn!("Redis rate limit timed out; local limits for now"),
                }
                metrics::counter!("regengine_rate_limit_redis_fallbacks_total").increment(1);
                shared.down_until.store(
                    now + REDIS_BACKOFF.as_nanos() as u64,
                    std::sync::atomic::Ordering::Relaxed,
                );
            }
        }
        self.local.check_at(budget, key, now)
    }
}

/// Keys looked at, at most, to make room in a full shard.
const EVICTION_PROBES: usize = 4;

/// One shard's buckets, and the order their keys arrived in.
#[derive(Default)]
struct Shard {
    /// Key digest → theoretical arrival time (ns since the limiter's epoch).
    tats: HashMap<u64, u64>,
    /// Every key of `tats` once, oldest first (a key still limiting that was probed for
    /// eviction went to the back).
    order: VecDeque<u64>,
}

impl Shard {
    fn insert(&mut self, digest: u64, tat: u64) {
        if self.tats.insert(digest, tat).is_none() {
            self.order.push_back(digest);
        }
    }

    /// Removes one key, in constant time: of the oldest [`EVICTION_PROBES`], the one whose
    /// bucket refills soonest; the others go to the back.
    fn evict(&mut self) {
        let mut probed = [(0u64, 0u64); EVICTION_PROBES];
        let mut n = 0;
        while n < EVICTION_PROBES
            && let Some(digest) = self.order.pop_front()
        {
            probed[n] = (digest, self.tats.get(&digest).copied().unwrap_or(0));
            n += 1;
        }
        let Some(soonest) = (0..n).min_by_key(|&i| probed[i].1) else {
            return;
        };
        for (i, (digest, _)) in probed[..n].iter().enumerate() {
            if i == soonest {
                self.tats.remove(digest);
            } else {
                self.order.push_back(*digest);
            }
        }
    }
}

/// In-process buckets.
struct LocalLimiter {
    config: RateLimitConfig,
    epoch: Instant,
    shards: Vec<Mutex<Shard>>,
    per_shard_max: usize,
    /// Keys the digests with this process's random keys (shards cannot be targeted).
    hashing: RandomState,
}

impl LocalLimiter {
    fn new(config: RateLimitConfig) -> Self {
        let per_shard_max = (config.keys_max / SHARDS).max(1);
        Self {
            config,
            epoch: Instant::now(),
            shards: (0..SHARDS).map(|_| Mutex::new(Shard::default())).collect(),
            per_shard_max,
            hashing: RandomState::new(),
        }
    }

    fn check_at(&self, budget: Budget, key: &[u8], now: u64) -> Result<(), Duration> {
        if !self.config.enabled {
            return Ok(());
        }
        let rate = self.config.rate(budget);
        let interval = (1e9 / rate.per_sec) as u64;
        let tolerance = interval.saturating_mul(u64::from(rate.burst) - 1);
        let digest = self.hashing.hash_one((budget, key));
        let mut shard = self.shards[(digest as usize) % SHARDS]
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        let known = shard.tats.get(&digest).copied();
        let tat = known.unwrap_or(now).max(now);
        if tat - now > tolerance {
            metrics::counter!("regengine_rate_limited_total", "budget" => budget.as_str())
                .increment(1);
            return Err(Duration::from_nanos(tat - now - tolerance));
        }
        if known.is_none() && shard.tats.len() >= self.per_shard_max {
            shard.evict();
        }
        shard.insert(digest, tat + interval);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(per_sec: f64, burst: u32, keys_max: usize) -> RateLimitConfig {
        let r = Rate { per_sec, burst };
        RateLimitConfig {
            enabled: true,
            keys_max,
            login_per_ip: r,
            login_per_account: r,
            signup_per_ip: r,
            holds_per_account: r,
            holds_per_ip: r,
            reads_per_ip: r,
            writes_per_ip: r,
            mail_per_ip: r,
            mail_per_address: r,
            redis_url: String::new(),
            redis_timeout_ms: 50,
        }
    }

    const SEC: u64 = 1_000_000_000;

    #[test]
    fn a_burst_then_the_sustained_rate() {
        let l = LocalLimiter::new(config(2.0, 3, 1024));
        let t0 = 10 * SEC;
        for _ in 0..3 {
            assert!(l.check_at(Budget::HoldsPerIp, b"ip", t0).is_ok());
        }
        let wait = l.check_at(Budget::HoldsPerIp, b"ip", t0).unwrap_err();
        assert_eq!(wait, Duration::from_millis(500));
        // Budgets and keys are independent.
        assert!(l.check_at(Budget::ReadsPerIp, b"ip", t0).is_ok());
        assert!(l.check_at(Budget::HoldsPerIp, b"other", t0).is_ok());
        // After the advertised wait, exactly one more.
        let t1 = t0 + SEC / 2;
        assert!(l.check_at(Budget::HoldsPerIp, b"ip", t1).is_ok());
        assert!(l.check_at(Budget::HoldsPerIp, b"ip", t1).is_err());
        // A refused request costs nothing: the wait does not grow.
        assert_eq!(
            l.check_at(Budget::HoldsPerIp, b"ip", t1).unwrap_err(),
            Duration::from_millis(500)
        );
    }

    #[test]
    fn memory_is_bounded_by_keys_max() {
        let l = LocalLimiter::new(config(1.0, 1, SHARDS * 4));
        for i in 0..10_000u32 {
            let _ = l.check_at(Budget::ReadsPerIp, &i.to_be_bytes(), SEC);
        }
        let total: usize = l.shards.iter().map(|s| s.lock().unwrap().tats.len()).sum();
        assert!(total <= SHARDS * 4, "{total} keys");
        for shard in &l.shards {
            let shard = shard.lock().unwrap();
            assert_eq!(
                shard.tats.len(),
                shard.order.len(),
                "one order entry per key"
            );
        }
    }

    #[test]
    fn eviction_drops_the_probed_key_that_refills_soonest() {
        let mut shard = Shard::default();
        let now = 100;
        shard.insert(1, now + 500_000); // limited hard: a password under attack
        shard.insert(2, now - 1); // full again: no information
        shard.insert(3, now + 50);
        shard.evict();
        assert_eq!(
            shard.order,
            [1, 3],
            "the spent key went; the others moved back in order"
        );
        assert!(!shard.tats.contains_key(&2));
        // Only limiting keys: the one refilling soonest goes, not the oldest.
        shard.evict();
        assert_eq!(shard.order, [1]);
        // A flood of fresh keys never pushes out the key limited hardest.
        for k in 10..1_000 {
            shard.insert(k, now + 10_000);
            shard.evict();
        }
        assert!(shard.tats.contains_key(&1), "the attacked key survives");
        assert_eq!(shard.tats.len(), shard.order.len());
        // A key seen again keeps its place.
        let kept = shard.order[0];
        shard.insert(kept, now + 60);
        assert_eq!(shard.order.len(), shard.tats.len());
    }
}
