//! One error type for every route: `platform::http::error`'s status code and shared JSON error body.
pub use platform::http::error::{ApiError, FieldError};
