//! A bounded concurrent map for caches read on every request (verified tokens, genuine ticket
//! codes, derived keys, ticket routes). `quick_cache` does the work: it shards by the key's
//! own hash (callers pick nothing), and when full it evicts one entry at a time with a
//! scan-resistant CLOCK-Pro policy, so a burst of one-off keys (a doors-open prepare of every
//! ticket) does not wipe the entries in use. Every lookup is counted in
//! `cache_lookups_total{cache, result="hit"|"miss"}`.

use quick_cache::Equivalent;
use std::hash::Hash;

/// Up to about `max` entries; `max = 0` caches nothing.
pub struct Cache<K, V> {
    /// `None` when off: no table, and every lookup a miss.
    inner: Option<quick_cache::sync::Cache<K, V>>,
    hits: metrics::Counter,
    misses: metrics::Counter,
}

impl<K: Eq + Hash, V: Clone> Cache<K, V> {
    /// A cache of about `max` entries (0: off), its lookups counted under `name`.
    pub fn new(name: &'static str, max: usize) -> Self {
        Self {
            inner: (max > 0).then(|| quick_cache::sync::Cache::new(max)),
            hits: metrics::counter!("regengine_cache_lookups_total", "cache" => name, "result" => "hit"),
            misses: metrics::counter!("regengine_cache_lookups_total", "cache" => name, "result" => "miss"),
        }
    }

    /// The value cached for `key`.
    pub fn get<Q>(&self, key: &Q) -> Option<V>
    where
        Q: Hash + Equivalent<K> + ?Sized,
    {
        let found = self.inner.as_ref().and_then(|cache| cache.get(key));
        match found {
            Some(_) => self.hits.increment(1),
            None => self.misses.increment(1),
        }
        found
    }

    /// Caches `value` for `key` (replacing an older value); when full, an entry that has not
    /// been used lately is evicted.
    pub fn put(&self, key: K, value: V) {
        if let Some(cache) = &self.inner {
            cache.insert(key, value);
        }
    }

    /// Whether nothing is cached.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Entries cached.
    pub fn len(&self) -> usize {
        self.inner.as_ref().map_or(0, quick_cache::sync::Cache::len)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bounded_and_off_at_zero() {
        let cache = Cache::new("test", 100);
        for i in 0..10_000u32 {
            cache.put(i, i);
        }
        assert!(cache.len() <= 100, "{} entries", cache.len());
        cache.put(7, 70);
        assert_eq!(cache.get(&7), Some(70));
        let off = Cache::new("test", 0);
        off.put(1, 1);
        assert_eq!((off.get(&1), off.len()), (None, 0));
    }

    #[test]
    fn entries_in_use_survive_a_burst_of_one_off_keys() {
        let cache = Cache::new("test", 1_000);
        for round in 0..3 {
            for hot in 0..100u32 {
                cache.put(hot, round);
                assert!(cache.get(&hot).is_some());
            }
        }
        for cold in 1_000..20_000u32 {
            cache.put(cold, 0);
        }
        let kept = (0..100u32).filter(|k| cache.get(k).is_some()).count();
        assert!(kept >= 90, "{kept} of 100 hot entries kept");
    }
}
