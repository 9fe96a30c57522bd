//! Throttling against password guessing and registration floods, exact under concurrency.
//!
//! A login attempt is *reserved* before its password is hashed: under one lock, every counter it
//! falls under is checked and incremented, so a burst of N concurrent guesses gets at most the limit
//! through to the hash and the rest are refused at once. A success releases its reservation; a
//! failure keeps it; an attempt that ends without a verdict (database down, hash queue full, the
//! caller gone) releases it too, since it verified nothing.
//!
//! Login counters, per fixed window (OWASP's recommendation: failures from one address must not
//! lock the account for its owner at another):
//! - account + client address, tight (10): guessing one account from one address;
//! - account, looser (50): the ceiling for a guesser spread over many addresses;
//! - client address, loose (100): one address guessing many accounts.
//!
//! Keys are normalised and small: the parsed email (at most 254 bytes) and the client's IP address
//! (IPv6 by its /64, the block one subscriber usually holds). Each table holds at most `capacity`
//! keys; when full, expired windows go first, then the oldest window: it never stops counting (it
//! never fails open). Counters live in this process: with several replicas the effective limits are
//! multiplied by the replica count.
use std::{
    collections::{HashMap, VecDeque},
    hash::Hash,
    net::IpAddr,
    sync::Mutex,
    time::{Duration, Instant},
};

use crate::domain::Email;

/// Keys per table: a flood of distinct keys evicts the oldest instead of growing memory.
pub const DEFAULT_CAPACITY: usize = 100_000;

/// The throttling key of a client address: IPv4 as is, IPv6 by its /64 prefix.
pub fn address_key(address: IpAddr) -> IpAddr {
    match address.to_canonical() {
        IpAddr::V6(v6) => IpAddr::V6((u128::from(v6) & !((1u128 << 64) - 1)).into()),
        v4 => v4,
    }
}

#[derive(Debug, Clone, Copy)]
struct Window {
    started: Instant,
    count: u32,
}

/// Fixed-window counts per key, bounded to `capacity` keys (oldest evicted first).
#[derive(Debug)]
struct Counter<K> {
    limit: u32,
    capacity: usize,
    windows: HashMap<K, Window>,
    /// Keys in the order their windows started; an entry whose window has since restarted is stale
    /// and skipped when it reaches the front.
    order: VecDeque<(Instant, K)>,
}

impl<K: Hash + Eq + Clone> Counter<K> {
    fn new(limit: u32, capacity: usize) -> Self {
        Self { limit, capacity: capacity.max(1), windows: HashMap::new(), order: VecDeque::new() }
    }

    /// How long `key` stays blocked, when its window is at the limit.
    fn blocked_for(&self, key: &K, now: Instant, window: Duration) -> Option<Duration> {
        let entry = self.windows.get(key)?;
        let ends = entry.started + window;
        (entry.count >= self.limit && ends > now).then(|| ends - now)
    }

    /// Drops the windows at the front of the order that have ended or restarted, and, while the
    /// table is full, the oldest live ones.
    fn make_room(&mut self, now: Instant, window: Duration) {
        while let Some((started, key)) = self.order.front() {
            let current = self.windows.get(key).map(|entry| entry.started);
            let stale = current != Some(*started);
            let expired = *started + window <= now;
            let full = self.windows.len() >= self.capacity;
            if !(stale || expired || full) {
                break;
            }
            if !stale {
                self.windows.remove(key);
            }
            self.order.pop_front();
        }
    }

    /// Counts one more attempt for `key`; returns the start of the window it was counted in.
    fn add(&mut self, key: &K, now: Instant, window: Duration) -> Instant {
        if let Some(entry) = self.windows.get_mut(key) {
            if entry.started + window > now {
                entry.count = entry.count.saturating_add(1);
                return entry.started;
            }
            *entry = Window { started: now, count: 1 };
            self.order.push_back((now, key.clone()));
            return now;
        }
        self.make_room(now, window);
        self.windows.insert(key.clone(), Window { started: now, count: 1 });
        self.order.push_back((now, key.clone()));
        now
    }

    /// Takes back one attempt counted in the window that started at `started` (not in a later one).
    fn release(&mut self, key: &K, started: Instant) {
        if let Some(entry) = self.windows.get_mut(key)
            && entry.started == started
        {
            entry.count = entry.count.saturating_sub(1);
        }
    }

    fn clear(&mut self, key: &K) {
        self.windows.remove(key);
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.windows.len()
    }
}

fn longest(waits: impl IntoIterator<Item = Option<Duration>>) -> Option<Duration> {
    waits.into_iter().flatten().max()
}

#[derive(Debug, Clone, Copy)]
pub struct LoginLimits {
    /// Failures for one account from one client address.
    pub per_account_address: u32,
    /// Failures for one account from all addresses together.
    pub per_account: u32,
    /// Failures from one address over all accounts.
    pub per_address: u32,
    pub window: Duration,
    /// Keys each table holds at most.
    pub capacity: usize,
}

#[derive(Debug)]
struct LoginCounters {
    pairs: Counter<(String, IpAddr)>,
    accounts: Counter<String>,
    addresses: Counter<IpAddr>,
}

#[derive(Debug)]
pub struct LoginThrottle {
    window: Duration,
    inner: Mutex<LoginCounters>,
}

/// One reserved login attempt. `succeeded` releases it, `failed` keeps it counted; dropped without
/// either (the attempt was never verified), it is released.
#[must_use = "an attempt dropped without a verdict is released"]
pub struct LoginAttempt<'a> {
    throttle: &'a LoginThrottle,
    account: Option<(String, Instant, Instant)>,
    address: IpAddr,
    address_started: Instant,
    settled: bool,
}

impl LoginAttempt<'_> {
    /// The password was right: this attempt is not a failure, and the account's failures from
    /// this address are forgotten (not those from other addresses, nor the address's).
    pub fn succeeded(mut self) {
        self.settled = true;
        let mut counters = self.throttle.lock();
        if let Some((account, _, account_started)) = &self.account {
            counters.pairs.clear(&(account.clone(), self.address));
            counters.accounts.release(account, *account_started);
        }
        counters.addresses.release(&self.address, self.address_started);
    }

    /// The password was wrong (or the account unknown): the attempt stays counted.
    pub fn failed(mut self) {
        self.settled = true;
    }
}

impl Drop for LoginAttempt<'_> {
    fn drop(&mut self) {
        if self.settled {
            return;
        }
        let mut counters = self.throttle.lock();
        if let Some((account, pair_started, account_started)) = &self.account {
            counters.pairs.release(&(account.clone(), self.address), *pair_started);
            counters.accounts.release(account, *account_started);
        }
        counters.addresses.release(&self.address, self.address_started);
    }
}

impl LoginThrottle {
    pub fn new(limits: LoginLimits) -> Self {
        Self {
            window: limits.window,
            inner: Mutex::new(LoginCounters {
                pairs: Counter::new(limits.per_account_address, limits.capacity),
                accounts: Counter::new(limits.per_account, limits.capacity),
                addresses: Counter::new(limits.per_address, limits.capacity),
            }),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, LoginCounters> {
        self.inner.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Reserves an attempt for `account` (None: the email cannot be an account, so only the
    /// address is counted) from `address`, or says how long to wait when a limit is reached.
    pub fn reserve(&self, account: Option<&Email>, address: IpAddr) -> Result<LoginAttempt<'_>, Duration> {
        let now = Instant::now();
        let address = address_key(address);
        let account = account.map(|email| email.as_str().to_owned());
        let mut counters = self.lock();
        let pair = account.as_ref().map(|account| (account.clone(), address));
        let blocked = longest([
            pair.as_ref().and_then(|pair| counters.pairs.blocked_for(pair, now, self.window)),
            account.as_ref().and_then(|account| counters.accounts.blocked_for(account, now, self.window)),
            counters.addresses.blocked_for(&address, now, self.window),
        ]);
        if let Some(wait) = blocked {
            return Err(wait);
        }
        let account = match (account, pair) {
            (Some(account), Some(pair)) => {
                let pair_started = counters.pairs.add(&pair, now, self.window);
                let account_started = counters.accounts.add(&account, now, self.window);
                Some((account, pair_started, account_started))
            }
            _ => None,
        };
        let address_started = counters.addresses.add(&address, now, self.window);
        drop(counters);
        Ok(LoginAttempt { throttle: self, account, address, address_started, settled: false })
    }
}

/// Registrations per client address per window: every registration with valid fields counts,
/// whatever its outcome (a 409 costs a lookup and tells whether an email is registered).
#[derive(Debug)]
pub struct RegistrationThrottle {
    window: Duration,
    addresses: Mutex<Counter<IpAddr>>,
}

impl RegistrationThrottle {
    pub fn new(per_address: u32, window: Duration, capacity: usize) -> Self {
        Self { window, addresses: Mutex::new(Counter::new(per_address, capacity)) }
    }

    /// Counts a registration from `address`, or says how long to wait when its limit is reached.
    pub fn admit(&self, address: IpAddr) -> Result<(), Duration> {
        let now = Instant::now();
        let address = address_key(address);
        let mut addresses = self.addresses.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        if let Some(wait) = addresses.blocked_for(&address, now, self.window) {
            return Err(wait);
        }
        addresses.add(&address, now, self.window);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(198, 51, 100, 1));
    const B: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(203, 0, 113, 9));

    fn limits(per_account_address: u32, per_account: u32, per_address: u32) -> LoginLimits {
        LoginLimits { per_account_address, per_account, per_address, window: Duration::from_secs(60), capacity: 1000 }
    }

    fn email(raw: &str) -> Email {
        Email::parse(raw).unwrap()
    }

    #[test]
    fn an_account_is_blocked_from_the_guessing_address_but_not_from_another() {
        let throttle = LoginThrottle::new(limits(3, 100, 100));
        let victim = email("victim@example.com");
        for _ in 0..3 {
            throttle.reserve(Some(&victim), A).unwrap().failed();
        }
        assert!(throttle.reserve(Some(&victim), A).is_err());
        throttle.reserve(Some(&victim), B).expect("the owner at another address still gets in").succeeded();
        throttle.reserve(Some(&email("neighbour@example.com")), A).expect("other accounts from A").failed();
    }

    #[test]
    fn the_account_ceiling_holds_across_addresses() {
        let throttle = LoginThrottle::new(limits(3, 5, 100));
        let victim = email("victim@example.com");
        for i in 0..5u8 {
            throttle.reserve(Some(&victim), IpAddr::from([192, 0, 2, i])).unwrap().failed();
        }
        assert!(throttle.reserve(Some(&victim), B).is_err());
    }

    #[test]
    fn an_address_is_blocked_after_its_looser_limit() {
        let throttle = LoginThrottle::new(limits(3, 100, 5));
        for i in 0..5 {
            throttle.reserve(Some(&email(&format!("account{i}@example.com"))), A).unwrap().failed();
        }
        assert!(throttle.reserve(Some(&email("fresh@example.com")), A).is_err());
        assert!(throttle.reserve(None, A).is_err(), "emails that cannot be accounts count against the address");
        throttle.reserve(Some(&email("fresh@example.com")), B).unwrap().failed();
    }

    #[test]
    fn reservations_in_flight_count_before_their_verdict() {
        let throttle = LoginThrottle::new(limits(2, 100, 100));
        let victim = email("victim@example.com");
        let first = throttle.reserve(Some(&victim), A).unwrap();
        let second = throttle.reserve(Some(&victim), A).unwrap();
        assert!(throttle.reserve(Some(&victim), A).is_err(), "two guesses in flight use up the limit");
        first.succeeded();
        drop(second);
        throttle.reserve(Some(&victim), A).expect("released attempts free their places").failed();
    }

    #[test]
    fn success_forgets_the_accounts_failures_from_that_address() {
        let throttle = LoginThrottle::new(limits(2, 100, 100));
        let account = email("a@example.com");
        throttle.reserve(Some(&account), A).unwrap().failed();
        throttle.reserve(Some(&account), A).unwrap().succeeded();
        throttle.reserve(Some(&account), A).unwrap().failed();
        throttle.reserve(Some(&account), A).expect("one failure since the success").failed();
    }

    #[test]
    fn ipv6_clients_are_keyed_by_their_64_bit_prefix() {
        let one: IpAddr = "2001:db8:1:2:aaaa::1".parse().unwrap();
        let same_block: IpAddr = "2001:db8:1:2:bbbb::2".parse().unwrap();
        let other_block: IpAddr = "2001:db8:1:3::1".parse().unwrap();
        assert_eq!(address_key(one), address_key(same_block));
        assert_ne!(address_key(one), address_key(other_block));
        let mapped: IpAddr = "::ffff:198.51.100.1".parse().unwrap();
        assert_eq!(address_key(mapped), A);
    }

    #[test]
    fn a_full_table_evicts_its_oldest_key_and_keeps_counting() {
        let mut counter: Counter<u32> = Counter::new(1, 3);
        let now = Instant::now();
        let window = Duration::from_secs(60);
        for key in 0..3 {
            counter.add(&key, now, window);
        }
        counter.add(&3, now + Duration::from_millis(1), window);
        assert_eq!(counter.len(), 3, "bounded");
        assert!(counter.blocked_for(&0, now, window).is_none(), "the oldest key went");
        assert!(counter.blocked_for(&3, now, window).is_some(), "the new key is counted: no failing open");
        assert!(counter.blocked_for(&2, now, window).is_some());
    }

    #[test]
    fn registrations_are_limited_per_address() {
        let throttle = RegistrationThrottle::new(2, Duration::from_secs(60), 1000);
        assert!(throttle.admit(A).is_ok());
        assert!(throttle.admit(A).is_ok());
        assert!(throttle.admit(A).is_err());
        assert!(throttle.admit(B).is_ok());
    }
}
