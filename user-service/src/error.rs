//! One error type for every route: a status code and the shared JSON error body
//! `{"success": false, "message": "...", "errors": [{"field", "message"}]}`.
//! Internal causes are logged here and never sent to the client.
use axum::{
    Json,
    http::{HeaderValue, StatusCode, header},
    response::{IntoResponse, Response},
};
use serde::Serialize;

#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct FieldError {
    pub field: &'static str,
    pub message: String,
}

#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    message: String,
    errors: Vec<FieldError>,
    retry_after_secs: Option<u64>,
}

#[derive(Serialize)]
struct ErrorBody<'a> {
    success: bool,
    message: &'a str,
    #[serde(skip_serializing_if = "<[FieldError]>::is_empty")]
    errors: &'a [FieldError],
}

impl ApiError {
    pub fn new(status: StatusCode, message: impl Into<String>) -> Self {
        Self { status, message: message.into(), errors: Vec::new(), retry_after_secs: None }
    }

    pub fn validation(errors: Vec<FieldError>) -> Self {
        Self { errors, ..Self::new(StatusCode::BAD_REQUEST, "Validation failed") }
    }

    pub fn unauthorized(message: impl Into<String>) -> Self {
        Self::new(StatusCode::UNAUTHORIZED, message)
    }

    pub fn too_many_attempts(retry_after_secs: u64) -> Self {
        Self {
            retry_after_secs: Some(retry_after_secs.max(1)),
            ..Self::new(StatusCode::TOO_MANY_REQUESTS, "Too many failed login attempts; try again later")
        }
    }

    /// The database could not be reached in time: the client may retry.
    pub fn unavailable() -> Self {
        Self {
            retry_after_secs: Some(1),
            ..Self::new(StatusCode::SERVICE_UNAVAILABLE, "Service temporarily unavailable")
        }
    }

    /// Too many registrations from this client address.
    pub fn too_many_registrations(retry_after_secs: u64) -> Self {
        Self {
            retry_after_secs: Some(retry_after_secs.max(1)),
            ..Self::new(StatusCode::TOO_MANY_REQUESTS, "Too many registrations from this address; try again later")
        }
    }

    /// Load shedding: the password hashing queue is full. Retry-After marks it as a deliberate,
    /// short-lived refusal (the gateway's breaker does not count it as the service failing).
    pub fn busy() -> Self {
        Self {
            retry_after_secs: Some(1),
            ..Self::new(StatusCode::SERVICE_UNAVAILABLE, "Too many logins and registrations at once; retry shortly")
        }
    }

    /// Logs the cause and answers a bare 500.
    pub fn internal(cause: impl std::fmt::Display) -> Self {
        tracing::error!(error = %cause, "internal error");
        Self::new(StatusCode::INTERNAL_SERVER_ERROR, "Internal server error")
    }

    pub fn status(&self) -> StatusCode {
        self.status
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = ErrorBody { success: false, message: &self.message, errors: &self.errors };
        let mut response = (self.status, Json(body)).into_response();
        if let Some(secs) = self.retry_after_secs {
            response.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(secs));
        }
        response
    }
}

impl From<crate::password::HashError> for ApiError {
    fn from(error: crate::password::HashError) -> Self {
        match error {
            crate::password::HashError::Busy => {
                tracing::warn!("password hashing queue full: shedding the request");
                Self::busy()
            }
            other => Self::internal(other),
        }
    }
}

impl From<crate::store::StoreError> for ApiError {
    fn from(error: crate::store::StoreError) -> Self {
        match error {
            crate::store::StoreError::Unavailable(cause) => {
                tracing::warn!(error = %cause, "database unavailable");
                Self::unavailable()
            }
            other => Self::internal(other),
        }
    }
}
