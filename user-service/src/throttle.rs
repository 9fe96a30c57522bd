//! Login throttling against password guessing: tight per account, loose per client address, so
//! one attacked account never locks out the other users behind the same address.
//!
//! Counters live in this process (a fixed window per key). With several replicas each keeps its
//! own counts, so the effective limit is multiplied by the replica count; the per-account limit
//! stays small enough for that to remain a strong bound.
use std::{
    collections::HashMap,
    sync::Mutex,
    time::{Duration, Instant},
};

/// Past this many tracked keys, expired windows are swept before inserting.
const SWEEP_THRESHOLD: usize = 10_000;
/// Hard bound on memory: a flood of distinct keys cannot grow the table past this.
const MAX_KEYS: usize = 200_000;

#[derive(Debug)]
struct Window {
    started: Instant,
    failures: u32,
}

#[derive(Debug)]
struct Counter {
    limit: u32,
    windows: HashMap<String, Window>,
}

impl Counter {
    fn blocked_for(&self, key: &str, now: Instant, window: Duration) -> Option<Duration> {
        let entry = self.windows.get(key)?;
        let ends = entry.started + window;
        (entry.failures >= self.limit && ends > now).then(|| ends - now)
    }

    fn record(&mut self, key: &str, now: Instant, window: Duration) {
        if self.windows.len() >= SWEEP_THRESHOLD {
            self.windows.retain(|_, entry| entry.started + window > now);
        }
        if self.windows.len() >= MAX_KEYS && !self.windows.contains_key(key) {
            return;
        }
        let entry = self.windows.entry(key.to_owned()).or_insert(Window { started: now, failures: 0 });
        if entry.started + window <= now {
            *entry = Window { started: now, failures: 0 };
        }
        entry.failures = entry.failures.saturating_add(1);
    }
}

#[derive(Debug)]
pub struct LoginThrottle {
    window: Duration,
    inner: Mutex<(Counter, Counter)>,
}

impl LoginThrottle {
    pub fn new(per_account: u32, per_address: u32, window: Duration) -> Self {
        Self {
            window,
            inner: Mutex::new((
                Counter { limit: per_account, windows: HashMap::new() },
                Counter { limit: per_address, windows: HashMap::new() },
            )),
        }
    }

    /// `Some(wait)` when this account or this address has failed too often in the current window.
    pub fn check(&self, account: &str, address: &str) -> Option<Duration> {
        let now = Instant::now();
        let guard = self.inner.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        let (accounts, addresses) = &*guard;
        match (accounts.blocked_for(account, now, self.window), addresses.blocked_for(address, now, self.window)) {
            (Some(a), Some(b)) => Some(a.max(b)),
            (a, b) => a.or(b),
        }
    }

    pub fn record_failure(&self, account: &str, address: &str) {
        let now = Instant::now();
        let mut guard = self.inner.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        guard.0.record(account, now, self.window);
        guard.1.record(address, now, self.window);
    }

    /// A successful login clears the account's failures (not the address's).
    pub fn record_success(&self, account: &str) {
        let mut guard = self.inner.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        guard.0.windows.remove(account);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_account_is_blocked_after_its_limit_and_others_are_not() {
        let throttle = LoginThrottle::new(3, 100, Duration::from_secs(60));
        for _ in 0..3 {
            assert!(throttle.check("victim", "1.2.3.4").is_none());
            throttle.record_failure("victim", "1.2.3.4");
        }
        assert!(throttle.check("victim", "1.2.3.4").is_some());
        assert!(throttle.check("victim", "5.6.7.8").is_some(), "the account limit holds from any address");
        assert!(throttle.check("neighbour", "1.2.3.4").is_none(), "other users behind the address still log in");
    }

    #[test]
    fn an_address_is_blocked_after_its_looser_limit() {
        let throttle = LoginThrottle::new(3, 5, Duration::from_secs(60));
        for i in 0..5 {
            throttle.record_failure(&format!("account{i}"), "1.2.3.4");
        }
        assert!(throttle.check("fresh", "1.2.3.4").is_some());
        assert!(throttle.check("fresh", "9.9.9.9").is_none());
    }

    #[test]
    fn success_resets_the_account() {
        let throttle = LoginThrottle::new(2, 100, Duration::from_secs(60));
        throttle.record_failure("a", "ip");
        throttle.record_failure("a", "ip");
        throttle.record_success("a");
        assert!(throttle.check("a", "ip").is_none());
    }
}
