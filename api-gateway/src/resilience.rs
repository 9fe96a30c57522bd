//! What stands between a client and a failing service: per downstream service a bulkhead (a cap
//! on calls in flight: overload answers 503 at once instead of queueing without bound), a circuit
//! breaker, and retries with exponential backoff and jitter for calls that are safe to repeat
//! (reads, or writes that carry an idempotency key).
//!
//! The breaker is a small state machine of our own (the `failsafe` crate's half-open state lets
//! every call through, which is a stampede on a service that is just recovering):
//!
//! - **closed**: calls go through; `failures_to_open` consecutive failures open it;
//! - **open**: calls are refused at once (503, `Retry-After` = the time until the next probe);
//! - **half-open** once the open period is over: the first call is the one probe, every other call
//!   is refused as if open until the probe's verdict: success closes the breaker, failure opens it
//!   again for twice as long (up to 8x the first period).
use std::{
    future::Future,
    sync::{Arc, Mutex, PoisonError},
    time::{Duration, Instant},
};

use tokio::sync::Semaphore;

use crate::backoff::Backoff;

/// The longest open period, as a multiple of the first.
const MAX_OPEN_FACTOR: u32 = 8;

/// Retry-After for calls refused while the probe is in flight: its verdict is due within the
/// downstream timeout, and it may well close the breaker.
const PROBE_RETRY_AFTER: Duration = Duration::from_secs(1);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    Closed {
        failures: u32,
    },
    Open {
        until: Instant,
    },
    /// The probe is in flight.
    HalfOpen,
}

#[derive(Debug)]
struct State {
    phase: Phase,
    /// The period of the last opening (doubles while probes fail).
    open_for: Duration,
    /// Counts transitions: a verdict on a call admitted before the last one says nothing about now.
    epoch: u64,
}

/// One service's circuit breaker. `circuit_breaker_open` mirrors it: 1 while open or half-open
/// (calls are refused, or only the probe goes through), 0 once closed.
pub struct Breaker {
    name: &'static str,
    failures_to_open: u32,
    first_open_for: Duration,
    state: Mutex<State>,
    gauge: prometheus::IntGauge,
}

/// The breaker's answer to a call.
#[derive(Debug)]
pub enum Admission<'a> {
    /// Go ahead, and settle the ticket with the call's verdict.
    Admitted(Ticket<'a>),
    /// Refused without calling; the next probe is due in `retry_after`.
    Refused { retry_after: Duration },
}

/// An admitted call, until its verdict. Dropped unsettled (the caller gave up mid-call), a probe
/// gives its turn to the next call: an abandoned probe must not leave the breaker half-open forever.
pub struct Ticket<'a> {
    breaker: &'a Breaker,
    epoch: u64,
    probe: bool,
    settled: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Verdict {
    Success,
    Failure,
    Abandoned,
}

impl std::fmt::Debug for Ticket<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ticket").field("service", &self.breaker.name).field("probe", &self.probe).finish()
    }
}

impl Ticket<'_> {
    pub fn is_probe(&self) -> bool {
        self.probe
    }

    pub fn succeeded(mut self) {
        self.settle(Verdict::Success, Instant::now());
    }

    pub fn failed(mut self) {
        self.settle(Verdict::Failure, Instant::now());
    }

    fn settle(&mut self, verdict: Verdict, now: Instant) {
        self.settled = true;
        self.breaker.record(self.epoch, self.probe, verdict, now);
    }
}

impl Drop for Ticket<'_> {
    fn drop(&mut self) {
        if !self.settled {
            self.settle(Verdict::Abandoned, Instant::now());
        }
    }
}

impl Breaker {
    pub fn new(name: &'static str, failures_to_open: u32, open_for: Duration, gauge: prometheus::IntGauge) -> Self {
        let open_for = open_for.max(Duration::from_millis(1));
        gauge.set(0);
        Self {
            name,
            failures_to_open: failures_to_open.max(1),
            first_open_for: open_for,
            state: Mutex::new(State { phase: Phase::Closed { failures: 0 }, open_for, epoch: 0 }),
            gauge,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        // Nothing panics while holding it; if something did, the state is still a valid state.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Whether a call may go through at `now`. The check and the move to half-open are one step
    /// under the lock, so among any number of simultaneous callers exactly one becomes the probe.
    pub fn admit(&self, now: Instant) -> Admission<'_> {
        let mut state = self.lock();
        let probe = match state.phase {
            Phase::Closed { .. } => false,
            Phase::Open { until } if now < until => return Admission::Refused { retry_after: until - now },
            Phase::Open { .. } => {
                state.phase = Phase::HalfOpen;
                state.epoch += 1;
                true
            }
            Phase::HalfOpen => return Admission::Refused { retry_after: PROBE_RETRY_AFTER },
        };
        Admission::Admitted(Ticket { breaker: self, epoch: state.epoch, probe, settled: false })
    }

    fn record(&self, epoch: u64, probe: bool, verdict: Verdict, now: Instant) {
        let mut state = self.lock();
        if state.epoch != epoch {
            return;
        }
        match (state.phase, probe, verdict) {
            (Phase::HalfOpen, true, Verdict::Success) => {
                state.phase = Phase::Closed { failures: 0 };
                state.epoch += 1;
                self.gauge.set(0);
                tracing::info!(service = self.name, "circuit breaker closed: the probe succeeded");
            }
            (Phase::HalfOpen, true, Verdict::Failure) => {
                let open_for = (state.open_for * 2).min(self.first_open_for * MAX_OPEN_FACTOR);
                state.phase = Phase::Open { until: now + open_for };
                state.open_for = open_for;
                state.epoch += 1;
                tracing::warn!(
                    service = self.name,
                    open_ms = open_for.as_millis() as u64,
                    "circuit breaker reopened: the probe failed"
                );
            }
            (Phase::HalfOpen, true, Verdict::Abandoned) => {
                // No verdict: the next call probes instead.
                state.phase = Phase::Open { until: now };
                state.epoch += 1;
            }
            (Phase::Closed { .. }, false, Verdict::Success) => state.phase = Phase::Closed { failures: 0 },
            (Phase::Closed { failures }, false, Verdict::Failure) => {
                let failures = failures + 1;
                if failures < self.failures_to_open {
                    state.phase = Phase::Closed { failures };
                } else {
                    state.phase = Phase::Open { until: now + self.first_open_for };
                    state.open_for = self.first_open_for;
                    state.epoch += 1;
                    self.gauge.set(1);
                    tracing::warn!(service = self.name, failures, "circuit breaker opened");
                }
            }
            _ => {}
        }
    }
}

#[derive(Debug, Clone, Copy)]
pub struct Settings {
    /// Consecutive failures that open the breaker.
    pub failures_to_open: u32,
    /// How long the breaker stays open at first (it doubles while probes keep failing, up to 8x).
    pub open_for: Duration,
    /// Calls in flight at once; more are refused with 503.
    pub max_in_flight: usize,
    /// Extra attempts for calls that are safe to repeat.
    pub retries: u32,
}

/// Why a guarded call did not reach the service, or how it failed there.
#[derive(Debug)]
pub enum Refusal<E> {
    /// The breaker is open (or its probe is in flight); the next probe is due in `retry_after`.
    Open { retry_after: Duration },
    /// Too many calls in flight to this service.
    Overloaded,
    /// The call was made and failed.
    Failed(E),
}

/// Whole seconds for a `Retry-After` header: rounded up, at least 1.
pub fn retry_after_secs(wait: Duration) -> u64 {
    (wait.as_secs() + u64::from(wait.subsec_nanos() > 0)).max(1)
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
        Self {
            name,
            breaker: Breaker::new(name, settings.failures_to_open, settings.open_for, state),
            in_flight: Arc::new(Semaphore::new(settings.max_in_flight.max(1))),
            settings,
        }
    }

    pub fn name(&self) -> &'static str {
        self.name
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
            let ticket = match self.breaker.admit(Instant::now()) {
                Admission::Admitted(ticket) => ticket,
                Admission::Refused { retry_after } => return Err(Refusal::Open { retry_after }),
            };
            let last = attempt_number >= attempts;
            match attempt().await {
                Outcome::Answered(value) => {
                    ticket.succeeded();
                    return Ok(value);
                }
                Outcome::FailedWith(value) => {
                    ticket.failed();
                    if last {
                        return Ok(value);
                    }
                }
                Outcome::Error(error) => {
                    ticket.failed();
                    if last {
                        return Err(Refusal::Failed(error));
                    }
                }
                Outcome::TimedOut(error) => {
                    ticket.failed();
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

    const SECOND: Duration = Duration::from_secs(1);

    fn breaker(gauge: &prometheus::IntGauge) -> Breaker {
        Breaker::new("test", 3, SECOND, gauge.clone())
    }

    fn admitted(admission: Admission<'_>) -> Ticket<'_> {
        match admission {
            Admission::Admitted(ticket) => ticket,
            Admission::Refused { retry_after } => panic!("refused, retry after {retry_after:?}"),
        }
    }

    fn refused(admission: Admission<'_>) -> Duration {
        match admission {
            Admission::Admitted(ticket) => panic!("admitted (probe: {})", ticket.is_probe()),
            Admission::Refused { retry_after } => retry_after,
        }
    }

    /// Opens `breaker` (3 consecutive failures) at `now`.
    fn open(breaker: &Breaker, now: Instant) {
        for _ in 0..3 {
            admitted(breaker.admit(now)).settle(Verdict::Failure, now);
        }
    }

    #[test]
    fn consecutive_failures_open_the_breaker_and_a_success_between_them_starts_the_count_again() {
        let gauge = gauge();
        let breaker = breaker(&gauge);
        let t0 = Instant::now();
        for _ in 0..2 {
            admitted(breaker.admit(t0)).settle(Verdict::Failure, t0);
        }
        admitted(breaker.admit(t0)).settle(Verdict::Success, t0);
        for _ in 0..2 {
            admitted(breaker.admit(t0)).settle(Verdict::Failure, t0);
        }
        assert!(!admitted(breaker.admit(t0)).is_probe(), "2 failures since the success: still closed");
        assert_eq!(gauge.get(), 0);
        admitted(breaker.admit(t0)).settle(Verdict::Failure, t0);
        assert_eq!(refused(breaker.admit(t0)), SECOND, "open: refused, the probe due after the open period");
        assert_eq!(refused(breaker.admit(t0 + SECOND / 4)), SECOND * 3 / 4, "Retry-After counts down");
        assert_eq!(gauge.get(), 1, "the gauge shows it open");
    }

    #[test]
    fn the_probe_decides_success_closes_and_failure_reopens_for_twice_as_long_up_to_eight_times() {
        let gauge = gauge();
        let breaker = breaker(&gauge);
        let mut now = Instant::now();
        open(&breaker, now);
        for expected in [2, 4, 8, 8] {
            now += breaker.lock().open_for;
            let probe = admitted(breaker.admit(now));
            assert!(probe.is_probe());
            assert_eq!(refused(breaker.admit(now)), PROBE_RETRY_AFTER, "refused while the probe is out");
            let mut probe = probe;
            probe.settle(Verdict::Failure, now);
            assert_eq!(refused(breaker.admit(now)), SECOND * expected, "reopened for {expected} s");
            assert_eq!(gauge.get(), 1);
        }
        now += SECOND * 8;
        admitted(breaker.admit(now)).settle(Verdict::Success, now);
        assert_eq!(gauge.get(), 0, "closed by the probe's success");
        assert!(!admitted(breaker.admit(now)).is_probe(), "closed: calls go through, none of them a probe");
        open(&breaker, now);
        assert_eq!(refused(breaker.admit(now)), SECOND, "the next opening starts again from the first period");
    }

    #[test]
    fn an_abandoned_probe_hands_its_turn_to_the_next_call() {
        let breaker = breaker(&gauge());
        let now = Instant::now();
        open(&breaker, now);
        let probe = admitted(breaker.admit(now + SECOND));
        assert!(probe.is_probe());
        drop(probe); // the client went away mid-call
        assert!(admitted(breaker.admit(now + SECOND)).is_probe(), "not half-open forever: the next call probes");
    }

    #[test]
    fn a_verdict_on_a_call_admitted_before_the_breaker_opened_changes_nothing() {
        let gauge = gauge();
        let breaker = breaker(&gauge);
        let now = Instant::now();
        let slow = admitted(breaker.admit(now));
        open(&breaker, now);
        let mut slow = slow;
        slow.settle(Verdict::Success, now);
        assert_eq!(refused(breaker.admit(now)), SECOND, "still open: only the probe may close it");
        assert_eq!(gauge.get(), 1);
    }

    #[test]
    fn retry_after_is_whole_seconds_rounded_up_and_at_least_one() {
        assert_eq!(retry_after_secs(Duration::ZERO), 1);
        assert_eq!(retry_after_secs(Duration::from_millis(200)), 1);
        assert_eq!(retry_after_secs(Duration::from_millis(4_001)), 5);
        assert_eq!(retry_after_secs(Duration::from_secs(40)), 40);
    }

    /// 50 calls reach a breaker whose open period is over at the same moment (a barrier, on several
    /// worker threads): exactly one is let through as the probe, and it stays in flight until every
    /// other call has its answer, so each of them really meets the half-open breaker.
    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn half_open_admits_exactly_one_probe() {
        const CALLERS: usize = 50;
        let open_for = Duration::from_millis(20);
        let state = gauge();
        let guard = Arc::new(Guard::new(
            "test",
            Settings { failures_to_open: 3, open_for, max_in_flight: CALLERS, retries: 0 },
            state.clone(),
        ));
        for _ in 0..3 {
            let _: Result<(), Refusal<()>> = guard.call(false, || async { Outcome::Error(()) }).await;
        }
        // Past the open period (the clock is monotonic): the next call is the probe.
        tokio::time::sleep(open_for * 2).await;

        let barrier = Arc::new(tokio::sync::Barrier::new(CALLERS));
        let calls_made = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let release = Arc::new(tokio::sync::Notify::new());
        let (answers, mut answered) = tokio::sync::mpsc::unbounded_channel();
        for _ in 0..CALLERS {
            let (guard, barrier, calls_made, release, answers) =
                (guard.clone(), barrier.clone(), calls_made.clone(), release.clone(), answers.clone());
            tokio::spawn(async move {
                barrier.wait().await;
                let result: Result<&str, Refusal<()>> = guard
                    .call(false, || async {
                        calls_made.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                        release.notified().await;
                        Outcome::Answered("probe answered")
                    })
                    .await;
                let _ = answers.send(result);
            });
        }
        drop(answers);
        let mut refusals = Vec::new();
        while refusals.len() < CALLERS - 1 {
            // Bounded: if more than one call got through, they all wait for the release and no answer comes.
            let answer = tokio::time::timeout(Duration::from_secs(10), answered.recv()).await.unwrap_or_else(|_| {
                panic!(
                    "{} calls reached the service and wait there",
                    calls_made.load(std::sync::atomic::Ordering::SeqCst)
                )
            });
            match answer.expect("every caller answers") {
                Err(Refusal::Open { retry_after }) => refusals.push(retry_after),
                other => panic!("only the probe may go through, and it is held: got {other:?}"),
            }
        }
        assert_eq!(calls_made.load(std::sync::atomic::Ordering::SeqCst), 1, "exactly one call reached the service");
        assert!(refusals.iter().all(|wait| *wait == PROBE_RETRY_AFTER), "{refusals:?}");
        release.notify_one();
        let probe = answered.recv().await.expect("the probe answers");
        assert!(matches!(probe, Ok("probe answered")), "{probe:?}");
        assert!(answered.recv().await.is_none(), "50 answers in all");
        assert_eq!(state.get(), 0, "the probe's success closed the breaker");
        let after: Result<u8, Refusal<()>> = guard.call(false, || async { Outcome::Answered(8) }).await;
        assert!(matches!(after, Ok(8)));
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
