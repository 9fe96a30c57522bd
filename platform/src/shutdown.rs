//! Stopping: the future that resolves when the process is asked to stop (Ctrl-C or SIGTERM), the signal that
//! tells background tasks to finish their work (a `CancellationToken`), and the workers (a `TaskTracker`) that
//! are waited for up to a drain deadline.

use std::{future::Future, time::Duration};

use tokio_util::{sync::CancellationToken, task::TaskTracker};

/// How long a service's background workers get to finish once asked (a consumer committing its offsets, a relay
/// publishing what is left and flushing its producer) before they are given up on.
pub const WORKER_DRAIN: Duration = Duration::from_secs(15);

/// The future that tells a service to stop, as `service_main` hands it over.
pub type Signal = std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send>>;

/// Resolves on the first Ctrl-C (SIGINT) or SIGTERM.
pub async fn signal() {
    let ctrl_c = async {
        if let Err(error) = tokio::signal::ctrl_c().await {
            tracing::error!(%error, "cannot listen for Ctrl-C");
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut stream) => {
                stream.recv().await;
            }
            Err(error) => {
                tracing::error!(%error, "cannot listen for SIGTERM");
                std::future::pending::<()>().await;
            }
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => tracing::info!("Ctrl-C received, shutting down"),
        () = terminate => tracing::info!("SIGTERM received, shutting down"),
    }
}

/// Creates the pair that tells background tasks to finish: the application keeps the [`StopHandle`], each task
/// gets a clone of the [`StopSignal`].
pub fn stop_channel() -> (StopHandle, StopSignal) {
    let token = CancellationToken::new();
    (StopHandle(token.clone()), StopSignal(token))
}

pub struct StopHandle(CancellationToken);

impl StopHandle {
    pub fn stop(&self) {
        self.0.cancel();
    }
}

#[derive(Clone)]
pub struct StopSignal(CancellationToken);

impl StopSignal {
    /// Resolves once stopping was requested.
    pub async fn stopped(&mut self) {
        self.0.cancelled().await;
    }

    pub fn is_stopped(&self) -> bool {
        self.0.is_cancelled()
    }
}

/// The background tasks of one application (relays, consumers, bootstrap loops), stopped together: each gets a
/// [`StopSignal`], and [`Workers::stop`] asks them all to finish, then waits for them up to a deadline.
pub struct Workers {
    token: CancellationToken,
    tracker: TaskTracker,
}

impl Default for Workers {
    fn default() -> Self {
        Self::new()
    }
}

impl Workers {
    pub fn new() -> Self {
        Self { token: CancellationToken::new(), tracker: TaskTracker::new() }
    }

    /// What a task watches to know it should finish.
    pub fn signal(&self) -> StopSignal {
        StopSignal(self.token.clone())
    }

    /// Runs `task` on the runtime as one of these workers.
    pub fn spawn(&self, task: impl Future<Output = ()> + Send + 'static) {
        self.tracker.spawn(task);
    }

    /// Asks every worker to finish and waits for them, at most `deadline` (a consumer committing its offsets,
    /// a relay flushing its producer). False when some were still running at the deadline: they are left to
    /// the runtime's shutdown.
    pub async fn stop(self, deadline: Duration) -> bool {
        self.token.cancel();
        self.tracker.close();
        let finished = tokio::time::timeout(deadline, self.tracker.wait()).await.is_ok();
        if !finished {
            tracing::warn!(running = self.tracker.len(), "workers still running at the drain deadline");
        }
        finished
    }
}

/// One background task stopped on its own, for an application that stops its tasks in a given order (the
/// payment-service stops its health monitor before draining calls, its relay after): asked to finish, then
/// waited for up to a deadline; aborted if dropped unstopped (an application dropped without running).
pub struct Task {
    stop: StopHandle,
    handle: Option<tokio::task::JoinHandle<()>>,
}

impl Task {
    pub fn spawn<F, Fut>(task: F) -> Self
    where
        F: FnOnce(StopSignal) -> Fut,
        Fut: Future<Output = ()> + Send + 'static,
    {
        let (stop, signal) = stop_channel();
        Self { stop, handle: Some(tokio::spawn(task(signal))) }
    }

    /// Asks the task to finish and waits for it, at most `deadline`; false when it had to be aborted.
    pub async fn stop(&mut self, deadline: Duration) -> bool {
        self.stop.stop();
        let Some(mut handle) = self.handle.take() else { return true };
        match tokio::time::timeout(deadline, &mut handle).await {
            Ok(Ok(())) => true,
            Ok(Err(error)) => {
                tracing::error!(%error, "a background task failed");
                true
            }
            Err(_) => {
                tracing::warn!("a background task was still running at the drain deadline");
                handle.abort();
                false
            }
        }
    }
}

impl Drop for Task {
    fn drop(&mut self) {
        if let Some(handle) = self.handle.take() {
            handle.abort();
        }
    }
}

/// Retries `attempt` with capped, jittered backoff until it succeeds (true) or stopping is requested (false).
/// Startup never fails because a dependency is down: the service reports not-ready meanwhile.
pub async fn retry_until_ok<F, Fut, E>(what: &str, stop: &mut StopSignal, attempt: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<(), E>>,
    E: std::fmt::Display,
{
    if stop.is_stopped() {
        return false;
    }
    let warn = |error: E, delay: Duration| {
        tracing::warn!(%error, retry_in_ms = delay.as_millis() as u64, "{what} not ready");
    };
    retry(stop, attempt, warn).await.is_some()
}

/// Runs `attempt` until it succeeds, waiting a capped, jittered backoff after each failure (told to `failed` with
/// the coming delay); None when stopping is requested first. For work that must be done before going on (a
/// consumer's batch, a dead letter), whatever the outage.
pub async fn retry<T, E, F, Fut>(
    stop: &mut StopSignal,
    mut attempt: F,
    mut failed: impl FnMut(E, Duration),
) -> Option<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, E>>,
{
    let mut backoff = crate::backoff::Backoff::new(Duration::from_millis(100), Duration::from_secs(5));
    loop {
        match attempt().await {
            Ok(value) => return Some(value),
            Err(error) => {
                let delay = backoff.next_delay();
                failed(error, delay);
                tokio::select! {
                    () = tokio::time::sleep(delay) => {}
                    () = stop.stopped() => return None,
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{
        Arc,
        atomic::{AtomicU32, Ordering},
    };

    use super::*;

    #[tokio::test]
    async fn stop_waits_for_workers_that_finish_their_work() {
        let workers = Workers::new();
        let finished = Arc::new(AtomicU32::new(0));
        for _ in 0..3 {
            let (mut signal, finished) = (workers.signal(), finished.clone());
            workers.spawn(async move {
                signal.stopped().await;
                tokio::time::sleep(Duration::from_millis(20)).await; // the last commit
                finished.fetch_add(1, Ordering::SeqCst);
            });
        }
        assert!(workers.stop(Duration::from_secs(5)).await);
        assert_eq!(finished.load(Ordering::SeqCst), 3, "every worker finished before stop returned");
    }

    #[tokio::test]
    async fn stop_gives_up_at_the_deadline_on_a_worker_that_ignores_the_signal() {
        let workers = Workers::new();
        workers.spawn(std::future::pending());
        assert!(!workers.stop(Duration::from_millis(50)).await);
    }

    #[tokio::test]
    async fn a_task_finishes_its_work_when_stopped_and_is_aborted_past_the_deadline() {
        let finished = Arc::new(AtomicU32::new(0));
        let done = finished.clone();
        let mut task = Task::spawn(move |mut stop| async move {
            stop.stopped().await;
            done.fetch_add(1, Ordering::SeqCst);
        });
        assert!(task.stop(Duration::from_secs(5)).await);
        assert_eq!(finished.load(Ordering::SeqCst), 1);
        let mut stubborn = Task::spawn(|_| std::future::pending());
        assert!(!stubborn.stop(Duration::from_millis(50)).await);
    }

    #[tokio::test]
    async fn retry_until_ok_retries_until_success_and_gives_up_when_stopped() {
        let (handle, mut signal) = stop_channel();
        let attempts = AtomicU32::new(0);
        let ok = retry_until_ok("test", &mut signal, || {
            let attempt = attempts.fetch_add(1, Ordering::SeqCst);
            async move { if attempt < 2 { Err("down") } else { Ok(()) } }
        })
        .await;
        assert!(ok);
        assert_eq!(attempts.load(Ordering::SeqCst), 3);

        handle.stop();
        assert!(!retry_until_ok("test", &mut signal, || async { Err::<(), _>("down") }).await);
    }

    #[tokio::test]
    async fn retry_returns_the_first_success_after_telling_each_failure() {
        let (handle, mut signal) = stop_channel();
        let attempts = AtomicU32::new(0);
        let mut failures = Vec::new();
        let value = retry(
            &mut signal,
            || {
                let attempt = attempts.fetch_add(1, Ordering::SeqCst);
                async move { if attempt < 2 { Err(attempt) } else { Ok("done") } }
            },
            |error, _delay| failures.push(error),
        )
        .await;
        assert_eq!((value, failures), (Some("done"), vec![0, 1]));

        handle.stop();
        assert_eq!(retry(&mut signal, || async { Err::<(), _>("down") }, |_, _| {}).await, None);
    }
}
