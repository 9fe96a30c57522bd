//! Password hashing with argon2id, off the async executor and with bounded concurrency.
//!
//! Parameters are one of OWASP's recommended argon2id settings (m = 7 MiB, t = 5, p = 1): the same
//! CPU cost as the 19 MiB setting, with less memory per hash so that the service stays small while
//! logins saturate the CPU. Hashes run on a fixed set of dedicated threads (one per permitted
//! concurrent hash), not on tokio's blocking pool: a login burst queues here, and only those few
//! threads ever hold argon2's 7 MiB working memory (the allocator keeps a freed block per thread
//! arena, so hundreds of blocking threads would each keep one: hundreds of MB).
use std::{
    sync::{Arc, Mutex, mpsc},
    thread,
};

use argon2::{
    Algorithm, Argon2, Params, Version,
    password_hash::{PasswordHasher as _, PasswordVerifier as _, phc::PasswordHash},
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
}

type Job = Box<dyn FnOnce() + Send>;

#[derive(Clone)]
pub struct PasswordHasher {
    jobs: mpsc::Sender<Job>,
    /// Verified against when the account does not exist, so that unknown emails and wrong
    /// passwords take the same time (no user enumeration by timing).
    dummy_hash: Arc<str>,
}

fn argon2() -> Argon2<'static> {
    let params = Params::new(MEMORY_KIB, ITERATIONS, PARALLELISM, None).expect("constant argon2 parameters are valid");
    Argon2::new(Algorithm::Argon2id, Version::V0x13, params)
}

impl PasswordHasher {
    pub fn new(concurrency: usize) -> Result<Self, HashError> {
        let dummy_hash = argon2()
            .hash_password(b"dummy password for timing equalisation")
            .map_err(|error| HashError::Hash(error.to_string()))?
            .to_string();
        let (jobs, queue) = mpsc::channel::<Job>();
        let queue = Arc::new(Mutex::new(queue));
        for index in 0..concurrency.max(1) {
            let queue = queue.clone();
            thread::Builder::new()
                .name(format!("argon2-{index}"))
                .spawn(move || {
                    loop {
                        // The lock is held only while taking a job, never while hashing.
                        let job = queue.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).recv();
                        match job {
                            Ok(job) => job(),
                            Err(_) => return,
                        }
                    }
                })
                .map_err(|error| HashError::Hash(error.to_string()))?;
        }
        Ok(Self { jobs, dummy_hash: dummy_hash.into() })
    }

    /// Runs `work` on a hashing thread and waits for its result without blocking the executor.
    async fn run<T: Send + 'static>(&self, work: impl FnOnce() -> T + Send + 'static) -> Result<T, HashError> {
        let (done, result) = tokio::sync::oneshot::channel();
        let job: Job = Box::new(move || {
            let _ = done.send(work());
        });
        self.jobs.send(job).map_err(|_| HashError::WorkersGone)?;
        result.await.map_err(|_| HashError::WorkersGone)
    }

    /// Returns the PHC string (`$argon2id$v=19$m=7168,t=5,p=1$salt$hash`) with a random salt.
    pub async fn hash(&self, password: &Password) -> Result<String, HashError> {
        let password = password.expose().to_owned();
        self.run(move || {
            argon2()
                .hash_password(password.as_bytes())
                .map(|hash| hash.to_string())
                .map_err(|error| HashError::Hash(error.to_string()))
        })
        .await?
    }

    /// True when `password` matches `stored`; with no stored hash, spends the same time and says no.
    pub async fn verify(&self, password: &str, stored: Option<&str>) -> Result<bool, HashError> {
        let known = stored.is_some();
        let phc = stored.unwrap_or(&self.dummy_hash).to_owned();
        let password = password.to_owned();
        let matches = self
            .run(move || {
                let parsed = PasswordHash::new(&phc).map_err(|error| HashError::Hash(error.to_string()))?;
                Ok::<_, HashError>(argon2().verify_password(password.as_bytes(), &parsed).is_ok())
            })
            .await??;
        Ok(known && matches)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn hashes_are_salted_argon2id_phc_strings_that_verify() {
        let hasher = PasswordHasher::new(1).unwrap();
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
