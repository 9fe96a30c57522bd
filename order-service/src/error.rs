//! One error type for every route: `platform::http::error`'s status code and shared JSON error body; here,
//! what this service's own failures become.
pub use platform::http::error::{ApiError, FieldError};

use crate::store::StoreError;

impl From<StoreError> for ApiError {
    fn from(error: StoreError) -> Self {
        match error {
            StoreError::Unavailable(cause) => {
                tracing::warn!(error = %cause, "database unavailable");
                Self::unavailable("Order storage temporarily unavailable")
            }
            other => Self::internal(other),
        }
    }
}
