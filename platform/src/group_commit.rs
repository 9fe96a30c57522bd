//! Group commit: concurrent callers' writes gathered into one database command.
//!
//! One writer task owns the queue. It waits for the first job (`recv().await`), then takes whatever else is
//! already queued (`try_recv`) up to `max_batch`, writes that batch with one call of the writer function, and
//! answers every caller with its own result. A batch is what piled up while the previous one was being
//! written, so an idle service writes a lone job at once: there is no timer and no added latency.
//!
//! The queue is bounded: [`GroupCommit::submit`] refuses at once with [`SubmitError::QueueFull`] rather than
//! letting callers wait without limit (the service answers 503 + `Retry-After`). A caller that gave up (its
//! future dropped) before its job was taken is skipped, so abandoned work is not written. Each batch runs in
//! its own task: a writer that panics fails that batch's callers ([`SubmitError::Stopped`]), not the queue.
use std::future::Future;

use tokio::sync::{mpsc, oneshot};

/// Sizes of the queue and of one batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Jobs that may wait for the writer (at least 1); more are refused with [`SubmitError::QueueFull`].
    pub queue: usize,
    /// Most jobs written in one batch (at least 1).
    pub max_batch: usize,
}

/// Why a job was not written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SubmitError {
    /// The queue is full: the caller should come back later.
    QueueFull,
    /// The writer has stopped, or its batch failed without an answer for this job (a panic).
    Stopped,
}

impl std::fmt::Display for SubmitError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::QueueFull => "write queue full",
            Self::Stopped => "writer stopped",
        })
    }
}

impl std::error::Error for SubmitError {}

/// What one turn of the writer did, for metrics.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct BatchReport {
    /// Jobs handed to the writer function together.
    pub written: usize,
    /// Jobs whose caller had gone before the writer took them.
    pub skipped: usize,
}

struct Job<J, R> {
    input: J,
    reply: oneshot::Sender<R>,
}

/// The handle callers submit jobs through; cheap to clone. The writer task ends when every handle is dropped.
pub struct GroupCommit<J, R> {
    jobs: mpsc::Sender<Job<J, R>>,
}

impl<J, R> Clone for GroupCommit<J, R> {
    fn clone(&self) -> Self {
        Self { jobs: self.jobs.clone() }
    }
}

impl<J: Send + 'static, R: Send + 'static> GroupCommit<J, R> {
    /// Starts the writer task (needs a Tokio runtime). `write` gets a batch and must return one result per
    /// job, in the batch's order; a job without a result gets [`SubmitError::Stopped`]. `on_batch` is told what
    /// every turn did.
    pub fn spawn<W, F>(limits: Limits, mut write: W, on_batch: impl Fn(BatchReport) + Send + 'static) -> Self
    where
        W: FnMut(Vec<J>) -> F + Send + 'static,
        F: Future<Output = Vec<R>> + Send + 'static,
    {
        let max_batch = limits.max_batch.max(1);
        let (jobs, mut queue) = mpsc::channel::<Job<J, R>>(limits.queue.max(1));
        tokio::spawn(async move {
            while let Some(first) = queue.recv().await {
                let mut inputs = Vec::with_capacity(max_batch);
                let mut replies = Vec::with_capacity(max_batch);
                let mut report = BatchReport::default();
                let mut next = Some(first);
                while let Some(job) = next.take() {
                    if job.reply.is_closed() {
                        report.skipped += 1;
                    } else {
                        inputs.push(job.input);
                        replies.push(job.reply);
                    }
                    if replies.len() < max_batch {
                        next = queue.try_recv().ok();
                    }
                }
                report.written = replies.len();
                on_batch(report);
                if replies.is_empty() {
                    continue;
                }
                // Its own task, so that a panicking write fails this batch only (its replies are dropped).
                if let Ok(results) = tokio::spawn(write(inputs)).await {
                    for (reply, result) in replies.into_iter().zip(results) {
                        let _ = reply.send(result);
                    }
                }
            }
        });
        Self { jobs }
    }

    /// Queues `input` and waits for its own result; refuses at once when the queue is full.
    pub async fn submit(&self, input: J) -> Result<R, SubmitError> {
        let (reply, answer) = oneshot::channel();
        self.jobs.try_send(Job { input, reply }).map_err(|error| match error {
            mpsc::error::TrySendError::Full(_) => SubmitError::QueueFull,
            mpsc::error::TrySendError::Closed(_) => SubmitError::Stopped,
        })?;
        answer.await.map_err(|_| SubmitError::Stopped)
    }

    /// Jobs waiting for the writer now (not counting the batch being written).
    pub fn queued(&self) -> usize {
        self.jobs.max_capacity() - self.jobs.capacity()
    }
}

#[cfg(test)]
mod tests {
    use std::{
        sync::{Arc, Mutex},
        time::Duration,
    };

    use tokio::sync::{Semaphore, mpsc::UnboundedReceiver};

    use super::*;

    /// A writer that doubles its inputs, reports every batch it gets, and waits for a permit before answering.
    fn gated(limits: Limits) -> (GroupCommit<u32, u32>, UnboundedReceiver<Vec<u32>>, Arc<Semaphore>) {
        let (calls, called) = mpsc::unbounded_channel();
        let gate = Arc::new(Semaphore::new(0));
        let writer_gate = gate.clone();
        let group = GroupCommit::spawn(
            limits,
            move |batch: Vec<u32>| {
                let _ = calls.send(batch.clone());
                let gate = writer_gate.clone();
                async move {
                    gate.acquire().await.expect("gate open").forget();
                    batch.iter().map(|n| n * 2).collect()
                }
            },
            |_| {},
        );
        (group, called, gate)
    }

    /// Waits (by yielding, not by the clock) until `n` jobs are queued; a test that never gets there times out.
    async fn until_queued(group: &GroupCommit<u32, u32>, n: usize) {
        tokio::time::timeout(Duration::from_secs(10), async {
            while group.queued() != n {
                tokio::task::yield_now().await;
            }
        })
        .await
        .expect("jobs queued");
    }

    #[tokio::test]
    async fn jobs_queued_while_the_writer_is_busy_go_out_as_one_batch_each_with_its_own_result() {
        let (group, mut called, gate) = gated(Limits { queue: 100, max_batch: 64 });
        let first = tokio::spawn({
            let group = group.clone();
            async move { group.submit(1).await }
        });
        assert_eq!(called.recv().await, Some(vec![1]), "an idle writer takes a lone job at once");
        let waiting: Vec<_> = (10..60)
            .map(|n| {
                let group = group.clone();
                tokio::spawn(async move { (n, group.submit(n).await) })
            })
            .collect();
        until_queued(&group, 50).await;
        gate.add_permits(2);
        assert_eq!(first.await.unwrap(), Ok(2));
        let second = called.recv().await.expect("a second batch");
        assert_eq!(second.len(), 50, "everything queued meanwhile is one batch");
        for task in waiting {
            let (n, result) = task.await.unwrap();
            assert_eq!(result, Ok(n * 2), "each caller gets its own result");
        }
    }

    #[tokio::test]
    async fn a_batch_never_exceeds_the_maximum() {
        let (group, mut called, gate) = gated(Limits { queue: 100, max_batch: 8 });
        let first = tokio::spawn({
            let group = group.clone();
            async move { group.submit(0).await }
        });
        called.recv().await.expect("first batch");
        let waiting: Vec<_> = (1..=20)
            .map(|n| {
                let group = group.clone();
                tokio::spawn(async move { group.submit(n).await })
            })
            .collect();
        until_queued(&group, 20).await;
        gate.add_permits(100);
        first.await.unwrap().unwrap();
        let sizes = [called.recv().await.unwrap().len(), called.recv().await.unwrap().len()];
        assert_eq!(sizes, [8, 8]);
        for task in waiting {
            task.await.unwrap().unwrap();
        }
        assert_eq!(called.recv().await.unwrap().len(), 4);
    }

    #[tokio::test]
    async fn a_full_queue_refuses_at_once() {
        let (group, mut called, gate) = gated(Limits { queue: 2, max_batch: 64 });
        let busy = tokio::spawn({
            let group = group.clone();
            async move { group.submit(1).await }
        });
        called.recv().await.expect("the writer took the first job");
        let queued: Vec<_> = [2, 3]
            .map(|n| {
                let group = group.clone();
                tokio::spawn(async move { group.submit(n).await })
            })
            .into_iter()
            .collect();
        until_queued(&group, 2).await;
        assert_eq!(group.submit(4).await, Err(SubmitError::QueueFull));
        gate.add_permits(2);
        assert_eq!(busy.await.unwrap(), Ok(2));
        for task in queued {
            assert!(task.await.unwrap().is_ok(), "queued jobs are still written");
        }
    }

    #[tokio::test]
    async fn a_caller_that_gave_up_before_its_job_was_taken_is_skipped() {
        let reports = Arc::new(Mutex::new(Vec::new()));
        let (calls, mut called) = mpsc::unbounded_channel();
        let gate = Arc::new(Semaphore::new(0));
        let group = {
            let (gate, reports) = (gate.clone(), reports.clone());
            GroupCommit::spawn(
                Limits { queue: 10, max_batch: 10 },
                move |batch: Vec<u32>| {
                    let _ = calls.send(batch.clone());
                    let gate = gate.clone();
                    async move {
                        gate.acquire().await.expect("gate open").forget();
                        batch
                    }
                },
                move |report| reports.lock().unwrap().push(report),
            )
        };
        let first = tokio::spawn({
            let group = group.clone();
            async move { group.submit(1).await }
        });
        called.recv().await.expect("first batch");
        let abandoned = tokio::spawn({
            let group = group.clone();
            async move { group.submit(2).await }
        });
        until_queued(&group, 1).await;
        abandoned.abort();
        assert!(abandoned.await.unwrap_err().is_cancelled());
        let kept = tokio::spawn({
            let group = group.clone();
            async move { group.submit(3).await }
        });
        until_queued(&group, 2).await;
        gate.add_permits(2);
        assert_eq!(first.await.unwrap(), Ok(1));
        assert_eq!(kept.await.unwrap(), Ok(3));
        assert_eq!(called.recv().await, Some(vec![3]), "the abandoned job was not written");
        assert_eq!(reports.lock().unwrap()[1], BatchReport { written: 1, skipped: 1 });
    }

    #[tokio::test]
    async fn a_batch_that_panics_fails_its_callers_and_the_writer_goes_on() {
        let group = GroupCommit::spawn(
            Limits { queue: 10, max_batch: 10 },
            |batch: Vec<u32>| async move {
                assert!(!batch.contains(&13), "unlucky batch");
                batch
            },
            |_| {},
        );
        assert_eq!(group.submit(13).await, Err(SubmitError::Stopped));
        assert_eq!(group.submit(7).await, Ok(7));
    }
}
