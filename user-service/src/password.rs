//! Password hashing with argon2id, off the async executor and with bounded concurrency.
//!
//! Parameters are one of OWASP's recommended argon2id settings (m = 7 MiB, t = 5, p = 1): the same
//! CPU cost as the 19 MiB setting, with less memory per hash so that the service stays small while
//! logins saturate the CPU. The semaphore caps how many hashes run at once, so a login burst queues
//! here instead of spawning hundreds of blocking threads each holding 7 MiB.
use std::sync::Arc;

use argon2::{
    Algorithm, Argon2, Params, Version,
    password_hash::{PasswordHasher as _, PasswordVerifier as _, phc::PasswordHash},
};
use tokio::sync::Semaphore;

use crate::domain::Password;

pub const MEMORY_KIB: u32 = 7 * 1024;
pub const ITERATIONS: u32 = 5;
pub const PARALLELISM: u32 = 1;

#[derive(Debug, thiserror::Error)]
pub enum HashError {
    #[error("password hashing failed: {0}")]
    Hash(String),
    #[error("password hashing task failed: {0}")]
    Task(#[from] tokio::task::JoinError),
}

#[derive(Clone)]
pub struct PasswordHasher {
    permits: Arc<Semaphore>,
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
        Ok(Self { permits: Arc::new(Semaphore::new(concurrency)), dummy_hash: dummy_hash.into() })
    }

    /// Returns the PHC string (`$argon2id$v=19$m=7168,t=5,p=1$salt$hash`) with a random salt.
    pub async fn hash(&self, password: &Password) -> Result<String, HashError> {
        let password = password.expose().to_owned();
        let _permit = self.permits.acquire().await.expect("the semaphore is never closed");
        tokio::task::spawn_blocking(move || {
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
        let _permit = self.permits.acquire().await.expect("the semaphore is never closed");
        let matches = tokio::task::spawn_blocking(move || {
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
