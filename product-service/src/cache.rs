//! A small, bounded, time-limited read cache.
//!
//! Entries live for a fixed TTL and are all dropped by [`ReadCache::invalidate_all`]. A read that started
//! before an invalidation cannot put its (possibly stale) result back afterwards: inserts carry the
//! [`Generation`] observed before the read, and an invalidation moves the generation on.
use std::{
    collections::HashMap,
    hash::Hash,
    sync::Mutex,
    time::{Duration, Instant},
};

/// The cache state a read started from; see the module documentation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Generation(u64);

pub struct ReadCache<K, V> {
    ttl: Duration,
    capacity: usize,
    state: Mutex<State<K, V>>,
}

struct State<K, V> {
    generation: u64,
    entries: HashMap<K, (Instant, V)>,
}

impl<K: Eq + Hash, V: Clone> ReadCache<K, V> {
    /// A zero `ttl` disables the cache: nothing is stored, every read goes to the source.
    pub fn new(ttl: Duration, capacity: usize) -> Self {
        Self { ttl, capacity, state: Mutex::new(State { generation: 0, entries: HashMap::new() }) }
    }

    pub fn get(&self, key: &K) -> Option<V> {
        if self.ttl.is_zero() {
            return None;
        }
        let state = self.lock();
        let (stored_at, value) = state.entries.get(key)?;
        (stored_at.elapsed() < self.ttl).then(|| value.clone())
    }

    /// Take this before reading from the source, and hand it to [`ReadCache::insert`] afterwards.
    pub fn generation(&self) -> Generation {
        Generation(self.lock().generation)
    }

    /// Stores `value` unless the cache was invalidated since `read_started` was taken.
    pub fn insert(&self, key: K, value: V, read_started: Generation) {
        if self.ttl.is_zero() {
            return;
        }
        let mut state = self.lock();
        if state.generation != read_started.0 {
            return;
        }
        if state.entries.len() >= self.capacity && !state.entries.contains_key(&key) {
            let ttl = self.ttl;
            state.entries.retain(|_, (stored_at, _)| stored_at.elapsed() < ttl);
            // Still full of live entries: start over rather than track recency; entries are cheap to reload.
            if state.entries.len() >= self.capacity {
                state.entries.clear();
            }
        }
        state.entries.insert(key, (Instant::now(), value));
    }

    pub fn invalidate_all(&self) {
        let mut state = self.lock();
        state.generation = state.generation.wrapping_add(1);
        state.entries.clear();
    }

    pub fn len(&self) -> usize {
        self.lock().entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// A panic while holding the lock cannot leave the map half-updated in a harmful way (worst case, one
    /// entry is missing), so a poisoned lock is simply taken over.
    fn lock(&self) -> std::sync::MutexGuard<'_, State<K, V>> {
        self.state.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cache(ttl_ms: u64, capacity: usize) -> ReadCache<u32, &'static str> {
        ReadCache::new(Duration::from_millis(ttl_ms), capacity)
    }

    #[test]
    fn stored_values_are_served_until_they_expire() {
        let cache = cache(50, 10);
        cache.insert(1, "one", cache.generation());
        assert_eq!(cache.get(&1), Some("one"));
        std::thread::sleep(Duration::from_millis(60));
        assert_eq!(cache.get(&1), None);
    }

    #[test]
    fn zero_ttl_stores_nothing() {
        let cache = cache(0, 10);
        cache.insert(1, "one", cache.generation());
        assert_eq!(cache.get(&1), None);
        assert!(cache.is_empty());
    }

    #[test]
    fn a_read_that_started_before_an_invalidation_is_not_stored() {
        let cache = cache(10_000, 10);
        let before = cache.generation();
        cache.invalidate_all();
        cache.insert(1, "stale", before);
        assert_eq!(cache.get(&1), None);
        cache.insert(1, "fresh", cache.generation());
        assert_eq!(cache.get(&1), Some("fresh"));
    }

    #[test]
    fn invalidation_drops_everything() {
        let cache = cache(10_000, 10);
        cache.insert(1, "one", cache.generation());
        cache.insert(2, "two", cache.generation());
        cache.invalidate_all();
        assert!(cache.is_empty());
    }

    #[test]
    fn the_cache_never_grows_past_its_capacity() {
        let cache = cache(10_000, 3);
        for key in 0..10 {
            cache.insert(key, "value", cache.generation());
            assert!(cache.len() <= 3);
        }
        assert_eq!(cache.get(&9), Some("value"), "the newest entry is kept");
    }
}
