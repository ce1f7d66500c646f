//! A bounded map for caches read on every request (verified tokens, genuine ticket codes,
//! derived keys, ticket routes): sharded locks so concurrent requests rarely meet, and
//! a full shard is emptied (its entries are recomputed on their next use, at full cost).

use std::borrow::Borrow;
use std::collections::HashMap;
use std::hash::Hash;
use std::sync::Mutex;

/// Shards per cache.
pub const SHARDS: usize = 16;

/// Up to `max` entries in `SHARDS` shards; `max = 0` caches nothing.
pub struct ShardedCache<K, V> {
    shards: Vec<Mutex<HashMap<K, V>>>,
    per_shard_max: usize,
    hits: metrics::Counter,
    misses: metrics::Counter,
}

impl<K: Eq + Hash, V: Clone> ShardedCache<K, V> {
    /// A cache of at most about `max` entries (0: off), counting its lookups in
    /// `cache_lookups_total{cache=name, result=hit|miss}`.
    pub fn new(name: &'static str, max: usize) -> Self {
        Self {
            shards: (0..SHARDS).map(|_| Mutex::new(HashMap::new())).collect(),
            per_shard_max: max.div_ceil(SHARDS),
            hits: metrics::counter!("cache_lookups_total", "cache" => name, "result" => "hit"),
            misses: metrics::counter!("cache_lookups_total", "cache" => name, "result" => "miss"),
        }
    }

    /// Its shard: `spread` is any uniformly distributed byte of the key.
    fn shard(&self, spread: u8) -> std::sync::MutexGuard<'_, HashMap<K, V>> {
        // A poisoned lock means a panic mid-insert; the map is still usable.
        self.shards[usize::from(spread) % SHARDS]
            .lock()
            .unwrap_or_else(|e| e.into_inner())
    }

    /// The value cached for `key`.
    pub fn get<Q>(&self, spread: u8, key: &Q) -> Option<V>
    where
        K: Borrow<Q>,
        Q: Eq + Hash + ?Sized,
    {
        if self.per_shard_max == 0 {
            return None;
        }
        let found = self.shard(spread).get(key).cloned();
        match found {
            Some(_) => self.hits.increment(1),
            None => self.misses.increment(1),
        }
        found
    }

    /// Caches `value` for `key`, emptying the shard first if it is full.
    pub fn put(&self, spread: u8, key: K, value: V) {
        if self.per_shard_max == 0 {
            return;
        }
        let mut shard = self.shard(spread);
        if shard.len() >= self.per_shard_max && !shard.contains_key(&key) {
            shard.clear();
        }
        shard.insert(key, value);
    }

    /// Whether nothing is cached.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Entries cached.
    pub fn len(&self) -> usize {
        self.shards
            .iter()
            .map(|s| s.lock().unwrap_or_else(|e| e.into_inner()).len())
            .sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bounded_and_off_at_zero() {
        let cache = ShardedCache::new("test", SHARDS * 2);
        for i in 0..1_000u32 {
            cache.put(i as u8, i, i);
        }
        assert!(cache.len() <= SHARDS * 2);
        cache.put(7, 7, 70);
        assert_eq!(cache.get(7, &7), Some(70));
        let off = ShardedCache::new("test", 0);
        off.put(1, 1, 1);
        assert_eq!((off.get(1, &1), off.len()), (None, 0));
    }
}
