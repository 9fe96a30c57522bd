//! One error type for every route: `platform::http::error`'s status code and shared JSON error body; here,
//! what this service's own refusals and failures become.
pub use platform::http::error::{ApiError, FieldError};

use crate::{password::HashError, store::StoreError};

/// Too many failed logins for this account or address.
pub fn too_many_attempts(retry_after_secs: u64) -> ApiError {
    ApiError::too_many_requests("Too many failed login attempts; try again later", retry_after_secs)
}

/// Too many registrations from this client address.
pub fn too_many_registrations(retry_after_secs: u64) -> ApiError {
    ApiError::too_many_requests("Too many registrations from this address; try again later", retry_after_secs)
}

/// The database could not be reached in time: the client may retry.
pub fn unavailable() -> ApiError {
    ApiError::unavailable("Service temporarily unavailable")
}

/// Load shedding: the password hashing queue is full. Retry-After marks it as a deliberate, short-lived
/// refusal (the gateway's breaker does not count it as the service failing).
pub fn busy() -> ApiError {
    ApiError::unavailable("Too many logins and registrations at once; retry shortly")
}

impl From<HashError> for ApiError {
    fn from(error: HashError) -> Self {
        match error {
            HashError::Busy => {
                tracing::warn!("password hashing queue full: shedding the request");
                busy()
            }
            other => Self::internal(other),
        }
    }
}

impl From<StoreError> for ApiError {
    fn from(error: StoreError) -> Self {
        match error {
            StoreError::Unavailable(cause) => {
                tracing::warn!(error = %cause, "database unavailable");
                unavailable()
            }
            other => Self::internal(other),
        }
    }
}
