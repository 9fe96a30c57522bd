//! Password hashing with argon2id, off the async executor, with bounded concurrency and a bounded
//! queue.
//!
//! Parameters are one of OWASP's recommended argon2id settings (m = 7 MiB, t = 5, p = 1): the same
//! CPU cost as the 19 MiB setting, with less memory per hash so that the service stays small while
//! logins saturate the CPU. Hashes run on a fixed set of dedicated threads (one per permitted
//! concurrent hash), not on tokio's blocking pool: a login burst queues here. Each thread allocates
//! argon2's 7 MiB working memory once and reuses it for every hash: allocating and freeing 7 MiB per
//! login fragments the heap, which measured 85–300 MB resident under a login load.
//!
//! The queue in front of the threads holds at most `queue_limit` jobs: past that a hash is refused
//! at once (`HashError::Busy`, answered 503 with Retry-After) rather than making every caller wait
//! longer. A job whose caller has gone (the request was dropped or timed out) is skipped before it
//! hashes. Both are counted in `password_hash_jobs_dropped_total{reason}`.
use std::{
    sync::{Arc, Mutex, mpsc},
    thread,
};

use argon2::{
    Algorithm, Argon2, Block, Params, Version,
    password_hash::phc::{Output, ParamsString, PasswordHash, Salt},
};

use crate::domain::Password;

pub const MEMORY_KIB: u32 = 7 * 1024;
pub const ITERATIONS: u32 = 5;
pub const PARALLELISM: u32 = 1;

#[derive(Debug, thiserror::Error)]
pub enum HashError {
    #[error("password hashing failed: {0}")]
    Hash(String),
    #[error("the password hashing threads are gone")]
    WorkersGone,
    /// The queue is full: the service sheds this hash instead of queueing it.
    #[error("the password hashing queue is full")]
    Busy,
}

/// Work for a hashing thread, given that thread's reusable argon2 memory; false when it did not
/// run because its caller had gone.
type Job = Box<dyn FnOnce(&mut [Block]) -> bool + Send>;

const OUTPUT_LEN: usize = 32;

#[derive(Clone)]
pub struct PasswordHasher {
    jobs: mpsc::SyncSender<Job>,
    /// `password_hash_jobs_dropped_total`, by reason (`queue_full`, `caller_gone`).
    dropped: prometheus::IntCounterVec,
    /// Verified against when the account does not exist, so that unknown emails and wrong
    /// passwords take the same time (no user enumeration by timing).
    dummy_hash: Arc<str>,
}

fn params() -> Params {
    Params::new(MEMORY_KIB, ITERATIONS, PARALLELISM, Some(OUTPUT_LEN)).expect("constant argon2 parameters are valid")
}

fn argon2() -> Argon2<'static> {
    Argon2::new(Algorithm::Argon2id, Version::V0x13, params())
}

fn hash_error(error: impl std::fmt::Display) -> HashError {
    HashError::Hash(error.to_string())
}

/// A new PHC string for `password` with a random salt, computed in `memory`.
fn hash_in(password: &[u8], memory: &mut [Block]) -> Result<String, HashError> {
    let salt = argon2::password_hash::generate_salt();
    let mut out = [0u8; OUTPUT_LEN];
    argon2().hash_password_into_with_memory(password, &salt, &mut out, memory).map_err(hash_error)?;
    let phc = PasswordHash {
        algorithm: Algorithm::Argon2id.ident(),
        version: Some(Version::V0x13.into()),
        params: ParamsString::try_from(&params()).map_err(hash_error)?,
        salt: Some(Salt::new(&salt).map_err(hash_error)?),
        hash: Some(Output::new(&out).map_err(hash_error)?),
    };
    Ok(phc.to_string())
}

/// Whether `password` matches the PHC string, recomputed with the string's own parameters.
fn verify_in(password: &[u8], phc: &str, memory: &mut [Block]) -> Result<bool, HashError> {
    let parsed = PasswordHash::new(phc).map_err(hash_error)?;
    let algorithm = Algorithm::try_from(parsed.algorithm.as_str()).map_err(hash_error)?;
    let version = parsed.version.map(Version::try_from).transpose().map_err(hash_error)?.unwrap_or_default();
    let params = Params::try_from(&parsed).map_err(hash_error)?;
    let (Some(salt), Some(expected)) = (parsed.salt, parsed.hash) else {
        return Err(HashError::Hash("PHC string without salt or hash".into()));
    };
    let hasher = Argon2::new(algorithm, version, params.clone());
    let mut out = vec![0u8; expected.as_bytes().len()];
    if params.block_count() <= memory.len() {
        hasher.hash_password_into_with_memory(password, salt.as_ref(), &mut out, memory).map_err(hash_error)?;
    } else {
        hasher.hash_password_into(password, salt.as_ref(), &mut out).map_err(hash_error)?;
    }
    // Constant time: every byte is compared whatever the first difference.
    let difference = out.iter().zip(expected.as_bytes()).fold(0u8, |acc, (a, b)| acc | (a ^ b));
    Ok(difference == 0 && out.len() == expected.as_bytes().len())
}

impl PasswordHasher {
    /// `dropped` counts the jobs refused or skipped (see `metrics::password_hash_dropped`).
    pub fn new(concurrency: usize, queue_limit: usize, dropped: prometheus::IntCounterVec) -> Result<Self, HashError> {
        let dummy_hash =
            hash_in(b"dummy password for timing equalisation", &mut vec![Block::default(); params().block_count()])?;
        let (jobs, queue) = mpsc::sync_channel::<Job>(queue_limit.max(1));
        let queue = Arc::new(Mutex::new(queue));
        for index in 0..concurrency.max(1) {
            let queue = queue.clone();
            let caller_gone = dropped.with_label_values(&["caller_gone"]);
            thread::Builder::new()
                .name(format!("argon2-{index}"))
                .spawn(move || {
                    let mut memory = vec![Block::default(); params().block_count()];
                    loop {
                        // The lock is held only while taking a job, never while hashing.
                        let job = queue.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).recv();
                        match job {
                            Ok(job) => {
                                if !job(&mut memory) {
                                    caller_gone.inc();
                                }
                            }
                            Err(_) => return,
                        }
                    }
                })
                .map_err(|error| HashError::Hash(error.to_string()))?;
        }
        Ok(Self { jobs, dropped, dummy_hash: dummy_hash.into() })
    }

    /// Runs `work` on a hashing thread and waits for its result without blocking the executor.
    async fn run<T: Send + 'static>(
        &self,
        work: impl FnOnce(&mut [Block]) -> T + Send + 'static,
    ) -> Result<T, HashError> {
        let (done, result) = tokio::sync::oneshot::channel();
        let job: Job = Box::new(move |memory| {
            // `result` is dropped with the caller's future: a request that went away (client gone,
            // timed out) takes its hash with it.
            if done.is_closed() {
                return false;
            }
            let _ = done.send(work(memory));
            true
        });
        match self.jobs.try_send(job) {
            Ok(()) => {}
            Err(mpsc::TrySendError::Full(_)) => {
                self.dropped.with_label_values(&["queue_full"]).inc();
                return Err(HashError::Busy);
            }
            Err(mpsc::TrySendError::Disconnected(_)) => return Err(HashError::WorkersGone),
        }
        result.await.map_err(|_| HashError::WorkersGone)
    }

    /// Returns the PHC string (`$argon2id$v=19$m=7168,t=5,p=1$salt$hash`) with a random salt.
    pub async fn hash(&self, password: &Password) -> Result<String, HashError> {
        let password = password.expose().to_owned();
        self.run(move |memory| hash_in(password.as_bytes(), memory)).await?
    }

    /// True when `password` matches `stored`; with no stored hash, spends the same time and says no.
    pub async fn verify(&self, password: &str, stored: Option<&str>) -> Result<bool, HashError> {
        let known = stored.is_some();
        let phc = stored.unwrap_or(&self.dummy_hash).to_owned();
        let password = password.to_owned();
        let matches = self.run(move |memory| verify_in(password.as_bytes(), &phc, memory)).await??;
        Ok(known && matches)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures::FutureExt as _;

    fn dropped_counter() -> prometheus::IntCounterVec {
        prometheus::IntCounterVec::new(prometheus::Opts::new("dropped", "test"), &["reason"]).unwrap()
    }

    // Multi-threaded: the test blocks its own thread while the busy job runs on a worker.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_full_queue_refuses_at_once_and_abandoned_jobs_never_run() {
        let dropped = dropped_counter();
        let hasher = PasswordHasher::new(1, 2, dropped.clone()).unwrap();
        let (started, has_started) = std::sync::mpsc::channel::<()>();
        let (release, wait) = std::sync::mpsc::channel::<()>();
        let busy = tokio::spawn({
            let hasher = hasher.clone();
            async move {
                hasher
                    .run(move |_| {
                        let _ = started.send(());
                        let _ = wait.recv();
                    })
                    .await
            }
        });
        has_started.recv().expect("the only thread is busy");
        let ran = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let abandoned = hasher.run({
            let ran = ran.clone();
            move |_| ran.store(true, std::sync::atomic::Ordering::SeqCst)
        });
        assert!(abandoned.now_or_never().is_none(), "queued, then its caller goes");
        let mut waiting = Box::pin(hasher.run(|_| 7));
        assert!((&mut waiting).now_or_never().is_none(), "queued behind it: the queue is full");
        let refused = hasher.run(|_| 0).await;
        assert!(matches!(refused, Err(HashError::Busy)), "refused at once, not queued");
        assert_eq!(dropped.with_label_values(&["queue_full"]).get(), 1);
        release.send(()).unwrap();
        busy.await.unwrap().unwrap();
        assert_eq!(waiting.await.unwrap(), 7, "the job still wanted runs");
        assert!(!ran.load(std::sync::atomic::Ordering::SeqCst), "the abandoned job never ran");
        assert_eq!(dropped.with_label_values(&["caller_gone"]).get(), 1);
    }

    #[test]
    fn hashes_from_the_standard_argon2_api_verify_and_ours_verify_there() {
        use argon2::password_hash::{PasswordHasher as _, PasswordVerifier as _};
        let mut memory = vec![Block::default(); params().block_count()];
        let standard = argon2().hash_password(b"s3cret-password").unwrap().to_string();
        assert!(verify_in(b"s3cret-password", &standard, &mut memory).unwrap());
        assert!(!verify_in(b"other-password", &standard, &mut memory).unwrap());
        let ours = hash_in(b"s3cret-password", &mut memory).unwrap();
        let parsed = PasswordHash::new(&ours).unwrap();
        assert!(argon2().verify_password(b"s3cret-password", &parsed).is_ok());
    }

    #[tokio::test]
    async fn hashes_are_salted_argon2id_phc_strings_that_verify() {
        let hasher = PasswordHasher::new(1, 8, dropped_counter()).unwrap();
        let password = Password::parse("correct horse battery").unwrap();
        let first = hasher.hash(&password).await.unwrap();
        let second = hasher.hash(&password).await.unwrap();
        assert!(first.starts_with("$argon2id$v=19$m=7168,t=5,p=1$"), "{first}");
        assert_ne!(first, second, "a random salt makes every hash unique");
        assert!(hasher.verify("correct horse battery", Some(&first)).await.unwrap());
        assert!(!hasher.verify("wrong horse battery", Some(&first)).await.unwrap());
        assert!(!hasher.verify("correct horse battery", None).await.unwrap());
    }
}
