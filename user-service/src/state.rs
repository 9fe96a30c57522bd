//! What every handler shares: the user store, the password hasher, the token issuer, the throttles and the
//! metrics, and how far the startup worker has got. Built once by `startup`; nothing here knows how the
//! application is assembled.
use std::sync::{
    Arc, Mutex,
    atomic::{AtomicBool, Ordering},
};

use platform::http::proxies::TrustedProxies;

use crate::{
    error::ApiError,
    metrics::Metrics,
    password::PasswordHasher,
    store::UserStore,
    throttle::{LoginThrottle, RegistrationThrottle},
    tokens::TokenIssuer,
};

#[derive(Clone)]
pub struct AppState {
    inner: Arc<Inner>,
    readiness: Arc<Readiness>,
}

/// Set by the startup worker as MongoDB becomes usable and the admin account is seeded.
struct Readiness {
    bootstrapped: AtomicBool,
    admin_seed: Mutex<AdminSeedStatus>,
}

pub struct Inner {
    pub store: UserStore,
    pub hasher: PasswordHasher,
    pub tokens: TokenIssuer,
    pub throttle: LoginThrottle,
    pub registrations: RegistrationThrottle,
    pub trusted_proxies: TrustedProxies,
    pub metrics: Arc<Metrics>,
}

/// Where the admin account of ADMIN_EMAIL / ADMIN_USERNAME stands, as `/ready` reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AdminSeedStatus {
    /// No admin account is configured.
    NotConfigured,
    /// Not created or updated yet (MongoDB not reached yet).
    Pending,
    Done,
    /// The configuration contradicts the database: retrying cannot help, an operator must act.
    Conflict(String),
}

impl AdminSeedStatus {
    /// The value of `checks.adminSeed` in `/ready`; none when no admin is configured.
    pub fn check(&self) -> Option<&'static str> {
        match self {
            Self::NotConfigured => None,
            Self::Pending => Some("pending"),
            Self::Done => Some("done"),
            Self::Conflict(_) => Some("conflict"),
        }
    }
}

impl std::ops::Deref for AppState {
    type Target = Inner;
    fn deref(&self) -> &Inner {
        &self.inner
    }
}

impl AppState {
    pub fn new(inner: Inner, admin_seed: AdminSeedStatus) -> Self {
        let readiness = Readiness { bootstrapped: AtomicBool::new(false), admin_seed: Mutex::new(admin_seed) };
        Self { inner: Arc::new(inner), readiness: Arc::new(readiness) }
    }

    /// True once the indexes exist: before that, uniqueness is not guaranteed, so writes wait.
    pub fn is_bootstrapped(&self) -> bool {
        self.readiness.bootstrapped.load(Ordering::Acquire)
    }

    pub fn mark_bootstrapped(&self) {
        self.readiness.bootstrapped.store(true, Ordering::Release);
    }

    pub fn require_bootstrapped(&self) -> Result<(), ApiError> {
        if self.is_bootstrapped() { Ok(()) } else { Err(crate::error::unavailable()) }
    }

    pub fn admin_seed(&self) -> AdminSeedStatus {
        self.readiness.admin_seed.lock().unwrap_or_else(std::sync::PoisonError::into_inner).clone()
    }

    pub fn set_admin_seed(&self, status: AdminSeedStatus) {
        *self.readiness.admin_seed.lock().unwrap_or_else(std::sync::PoisonError::into_inner) = status;
    }
}
