//! What stands between a client and a failing service: per downstream service a bulkhead (a cap
//! on calls in flight: overload answers 503 at once instead of queueing without bound), a circuit
//! breaker (after repeated failures calls are refused at once with 503 + Retry-After; after a
//! pause one probe is let through, and success closes it again), and retries with exponential
//! backoff and jitter for calls that are safe to repeat (reads, or writes that carry an
//! idempotency key). The breaker is the `failsafe` crate's state machine.
use std::{future::Future, sync::Arc, time::Duration};

use failsafe::{StateMachine, backoff, failure_policy, failure_policy::ConsecutiveFailures};
use tokio::sync::Semaphore;

use crate::backoff::Backoff;

/// The shortest open period `failsafe`'s backoffs accept.
pub const MIN_OPEN: Duration = Duration::from_secs(1);

type Breaker = StateMachine<ConsecutiveFailures<backoff::Exponential>, BreakerState>;

/// Mirrors the breaker's state into the `circuit_breaker_open` gauge: 1 while open or half-open
/// (calls are refused, or only a probe goes through), 0 once closed again.
struct BreakerState {
    name: &'static str,
    gauge: prometheus::IntGauge,
}

impl failsafe::Instrument for BreakerState {
    fn on_call_rejected(&self) {}

    fn on_open(&self) {
        tracing::warn!(service = self.name, "circuit breaker opened");
        self.gauge.set(1);
    }

    fn on_half_open(&self) {
        self.gauge.set(1);
    }

    fn on_closed(&self) {
        tracing::info!(service = self.name, "circuit breaker closed");
        self.gauge.set(0);
    }
}

#[derive(Debug, Clone, Copy)]
pub struct Settings {
    /// Consecutive failures that open the breaker.
    pub failures_to_open: u32,
    /// How long the breaker stays open at first, in whole seconds (it doubles while probes keep
    /// failing, up to 8x); at least one second (the `failsafe` backoff's own lower bound).
    pub open_for: Duration,
    /// Calls in flight at once; more are refused with 503.
    pub max_in_flight: usize,
    /// Extra attempts for calls that are safe to repeat.
    pub retries: u32,
}

/// Why a guarded call did not reach the service, or how it failed there.
#[derive(Debug)]
pub enum Refusal<E> {
    /// The breaker is open: the service failed repeatedly and is given time to recover.
    Open,
    /// Too many calls in flight to this service.
    Overloaded,
    /// The call was made and failed.
    Failed(E),
}

/// How one attempt ended, as the breaker and the retry loop see it.
pub enum Outcome<T, E> {
    /// The service answered (even a 4xx is an answer): counts as a success.
    Answered(T),
    /// The service failed to answer properly (transport error, timeout, 5xx) but produced a value
    /// to relay if this is the last attempt.
    FailedWith(T),
    /// No answer at all; worth another attempt.
    Error(E),
    /// No answer within the deadline: a failure, but not retried (its time budget is spent).
    TimedOut(E),
}

pub struct Guard {
    name: &'static str,
    breaker: Breaker,
    in_flight: Arc<Semaphore>,
    settings: Settings,
}

impl Guard {
    /// `state` is the breaker's gauge (see `Metrics::breaker_gauge`).
    pub fn new(name: &'static str, settings: Settings, state: prometheus::IntGauge) -> Self {
        let open_for = settings.open_for.max(MIN_OPEN);
        let policy = failure_policy::consecutive_failures(
            settings.failures_to_open.max(1),
            backoff::exponential(open_for, open_for * 8),
        );
        Self {
            name,
            breaker: failsafe::Config::new()
                .failure_policy(policy)
                .instrument(BreakerState { name, gauge: state })
                .build(),
            in_flight: Arc::new(Semaphore::new(settings.max_in_flight.max(1))),
            settings,
        }
    }

    pub fn name(&self) -> &'static str {
        self.name
    }

    /// Retry-After for a refused call: the breaker's initial open time, rounded up to seconds.
    pub fn retry_after_secs(&self) -> u64 {
        self.settings.open_for.as_secs().max(1)
    }

    /// Runs `attempt` under the bulkhead and the breaker, repeating it (when `repeatable`) after
    /// failures with backoff, at most `retries` more times.
    pub async fn call<T, E, F, Fut>(&self, repeatable: bool, mut attempt: F) -> Result<T, Refusal<E>>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Outcome<T, E>>,
    {
        let _permit = self.in_flight.clone().try_acquire_owned().map_err(|_| {
            tracing::warn!(service = self.name, "bulkhead full: refusing the call");
            Refusal::Overloaded
        })?;
        let mut backoff = Backoff::new(Duration::from_millis(50), Duration::from_millis(400));
        let attempts = if repeatable { self.settings.retries + 1 } else { 1 };
        let mut attempt_number = 0;
        loop {
            attempt_number += 1;
            if !self.breaker.is_call_permitted() {
                return Err(Refusal::Open);
            }
            let last = attempt_number >= attempts;
            match attempt().await {
                Outcome::Answered(value) => {
                    self.breaker.on_success();
                    return Ok(value);
                }
                Outcome::FailedWith(value) => {
                    self.breaker.on_error();
                    if last {
                        return Ok(value);
                    }
                }
                Outcome::Error(error) => {
                    self.breaker.on_error();
                    if last {
                        return Err(Refusal::Failed(error));
                    }
                }
                Outcome::TimedOut(error) => {
                    self.breaker.on_error();
                    return Err(Refusal::Failed(error));
                }
            }
            let delay = backoff.next_delay();
            tracing::debug!(
                service = self.name,
                attempt = attempt_number,
                delay_ms = delay.as_millis() as u64,
                "retrying"
            );
            tokio::time::sleep(delay).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn gauge() -> prometheus::IntGauge {
        prometheus::IntGauge::new("circuit_breaker_open", "test").expect("a gauge")
    }

    fn settings() -> Settings {
        Settings { failures_to_open: 3, open_for: Duration::from_secs(1), max_in_flight: 2, retries: 2 }
    }

    #[tokio::test]
    async fn repeated_failures_open_the_breaker_and_a_later_success_closes_it() {
        let state = gauge();
        let guard = Guard::new("test", settings(), state.clone());
        for _ in 0..3 {
            let result: Result<(), Refusal<&str>> = guard.call(false, || async { Outcome::Error("down") }).await;
            assert!(matches!(result, Err(Refusal::Failed("down"))));
        }
        let refused: Result<(), Refusal<&str>> = guard.call(false, || async { Outcome::Answered(()) }).await;
        assert!(matches!(refused, Err(Refusal::Open)), "open: refused without calling");
        assert_eq!(state.get(), 1, "the gauge shows the breaker open");
        tokio::time::sleep(Duration::from_millis(2_100)).await;
        let probe: Result<u8, Refusal<&str>> = guard.call(false, || async { Outcome::Answered(7) }).await;
        assert!(matches!(probe, Ok(7)), "half-open: the probe goes through and closes the breaker");
        let after: Result<u8, Refusal<&str>> = guard.call(false, || async { Outcome::Answered(8) }).await;
        assert!(matches!(after, Ok(8)));
        assert_eq!(state.get(), 0, "the gauge shows it closed again");
    }

    #[tokio::test]
    async fn only_repeatable_calls_are_retried() {
        let guard = Guard::new("test", Settings { failures_to_open: 100, ..settings() }, gauge());
        let calls = std::sync::atomic::AtomicU32::new(0);
        let _: Result<(), Refusal<()>> = guard
            .call(false, || {
                calls.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                async { Outcome::Error(()) }
            })
            .await;
        assert_eq!(calls.swap(0, std::sync::atomic::Ordering::SeqCst), 1, "a write is never retried blindly");
        let result: Result<u32, Refusal<()>> = guard
            .call(true, || {
                let n = calls.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                async move { if n < 2 { Outcome::Error(()) } else { Outcome::Answered(n) } }
            })
            .await;
        assert!(matches!(result, Ok(2)), "a read succeeds on its third attempt");
    }

    #[tokio::test]
    async fn a_full_bulkhead_refuses_at_once() {
        let guard = Arc::new(Guard::new("test", settings(), gauge()));
        let (release, wait) = tokio::sync::oneshot::channel::<()>();
        let wait = Arc::new(tokio::sync::Mutex::new(Some(wait)));
        let mut slow = Vec::new();
        for _ in 0..2 {
            let guard = guard.clone();
            let wait = wait.clone();
            slow.push(tokio::spawn(async move {
                let _: Result<(), Refusal<()>> = guard
                    .call(false, || {
                        let wait = wait.clone();
                        async move {
                            if let Some(wait) = wait.lock().await.take() {
                                let _ = wait.await;
                            } else {
                                tokio::time::sleep(Duration::from_millis(300)).await;
                            }
                            Outcome::Answered(())
                        }
                    })
                    .await;
            }));
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
        let refused: Result<(), Refusal<()>> = guard.call(false, || async { Outcome::Answered(()) }).await;
        assert!(matches!(refused, Err(Refusal::Overloaded)));
        let _ = release.send(());
        for task in slow {
            task.await.unwrap();
        }
    }
}
