//! Rate limits: GCRA (the token bucket as a single "theoretical arrival time" per key) in
//! process, per budget and key (client IP, account, or e-mail address for login attempts).
//!
//! Memory is bounded: keys live in shards of at most `keys_max / SHARDS` entries; a full shard
//! first drops keys whose bucket is full again (they carry no information), then the key whose
//! bucket refills soonest.

use serde::Deserialize;
use std::collections::HashMap;
use std::collections::hash_map::DefaultHasher;
use std::hash::{Hash, Hasher};
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
    /// Holds per account.
    pub holds_per_account: Rate,
    /// Holds per client IP.
    pub holds_per_ip: Rate,
    /// Reads per client IP.
    pub reads_per_ip: Rate,
    /// Other changes per client IP.
    pub writes_per_ip: Rate,
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
        ];
        if !all.iter().all(Rate::valid) {
            return Err("rate_limit: every per_sec must be > 0 and every burst >= 1".into());
        }
        if self.keys_max < SHARDS {
            return Err(format!("rate_limit.keys_max must be >= {SHARDS}"));
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
        }
    }
}

/// In-process limiter.
pub struct Limiter {
    config: RateLimitConfig,
    epoch: Instant,
    /// Per shard: key digest → theoretical arrival time (ns since `epoch`).
    shards: Vec<Mutex<HashMap<u64, u64>>>,
    per_shard_max: usize,
}

impl Limiter {
    /// A limiter with `config`'s budgets.
    pub fn new(config: RateLimitConfig) -> Self {
        let per_shard_max = (config.keys_max / SHARDS).max(1);
        Self {
            config,
            epoch: Instant::now(),
            shards: (0..SHARDS).map(|_| Mutex::new(HashMap::new())).collect(),
            per_shard_max,
        }
    }

    /// Whether limits apply at all.
    pub fn enabled(&self) -> bool {
        self.config.enabled
    }

    /// Takes one request from `budget` for `key`: `Err(retry_after)` when over the limit.
    pub fn check(&self, budget: Budget, key: &[u8]) -> Result<(), Duration> {
        if !self.config.enabled {
            return Ok(());
        }
        let now = self.epoch.elapsed().as_nanos() as u64;
        self.check_at(budget, key, now)
    }

    fn check_at(&self, budget: Budget, key: &[u8], now: u64) -> Result<(), Duration> {
        let rate = self.config.rate(budget);
        let interval = (1e9 / rate.per_sec) as u64;
        let tolerance = interval.saturating_mul(u64::from(rate.burst) - 1);
        let mut hasher = DefaultHasher::new();
        (budget, key).hash(&mut hasher);
        let digest = hasher.finish();
        let mut shard = self.shards[(digest as usize) % SHARDS]
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        let tat = shard.get(&digest).copied().unwrap_or(now).max(now);
        if tat - now > tolerance {
            metrics::counter!("rate_limited_total", "budget" => budget.as_str()).increment(1);
            return Err(Duration::from_nanos(tat - now - tolerance));
        }
        if !shard.contains_key(&digest) && shard.len() >= self.per_shard_max {
            // Full buckets carry no state; else drop the one that refills soonest.
            shard.retain(|_, t| *t > now);
            if shard.len() >= self.per_shard_max
                && let Some((&oldest, _)) = shard.iter().min_by_key(|(_, t)| **t)
            {
                shard.remove(&oldest);
            }
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
        }
    }

    const SEC: u64 = 1_000_000_000;

    #[test]
    fn a_burst_then_the_sustained_rate() {
        let l = Limiter::new(config(2.0, 3, 1024));
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
        let l = Limiter::new(config(1.0, 1, SHARDS * 4));
        for i in 0..10_000u32 {
            let _ = l.check_at(Budget::ReadsPerIp, &i.to_be_bytes(), SEC);
        }
        let total: usize = l.shards.iter().map(|s| s.lock().unwrap().len()).sum();
        assert!(total <= SHARDS * 4, "{total} keys");
    }
}
