//! The two ways a request fails.
//!
//! - [`ServiceError`]: inside GraphQL. It becomes an entry of the response's `errors` with a message safe to
//!   show and `extensions.code`: NOT_FOUND, BAD_USER_INPUT, UNAUTHENTICATED, FORBIDDEN, SERVICE_UNAVAILABLE or
//!   INTERNAL_SERVER_ERROR. Internal causes are logged here and never sent.
//! - [`HttpError`]: before GraphQL runs (unknown route, wrong method, oversized or unreadable body). It is an
//!   HTTP status with the shared error body `{"success": false, "message", "errors"}`, whose `errors` entries
//!   also have the GraphQL shape `{"message", "extensions": {"code"}}`, so REST and GraphQL clients both
//!   understand it.
use axum::{
    Json,
    http::StatusCode,
    response::{IntoResponse, Response},
};
use serde_json::json;

use crate::{auth::AuthError, domain::InvalidInput, store::StoreError};

/// Everything a GraphQL resolver can fail with.
///
/// Deliberately not `Display`: async-graphql turns any `Display` error into a client-visible message, so an
/// accidental `?` on a database error would leak its text. Resolvers return `Result<_, ServiceError>` and the
/// only way out is `From<ServiceError> for async_graphql::Error` below.
#[derive(Debug)]
pub enum ServiceError {
    NotFound,
    BadUserInput(InvalidInput),
    Unauthenticated(&'static str),
    Forbidden,
    /// MongoDB or the signing keys cannot be reached right now: the client may retry.
    Unavailable,
    /// The cause has been logged where it happened.
    Internal,
}

impl ServiceError {
    pub fn code(&self) -> &'static str {
        match self {
            Self::NotFound => "NOT_FOUND",
            Self::BadUserInput(_) => "BAD_USER_INPUT",
            Self::Unauthenticated(_) => "UNAUTHENTICATED",
            Self::Forbidden => "FORBIDDEN",
            Self::Unavailable => "SERVICE_UNAVAILABLE",
            Self::Internal => "INTERNAL_SERVER_ERROR",
        }
    }

    fn message(&self) -> &str {
        match self {
            Self::NotFound => "Product not found",
            Self::BadUserInput(invalid) => &invalid.message,
            Self::Unauthenticated(reason) => reason,
            Self::Forbidden => "Admin role required",
            Self::Unavailable => "Service temporarily unavailable",
            Self::Internal => "Internal server error",
        }
    }
}

impl From<ServiceError> for async_graphql::Error {
    fn from(error: ServiceError) -> Self {
        let mut graphql_error = async_graphql::Error::new(error.message());
        let extensions = graphql_error.extensions.get_or_insert_with(Default::default);
        extensions.set("code", error.code());
        if let ServiceError::BadUserInput(invalid) = &error {
            extensions.set("field", invalid.field);
        }
        graphql_error
    }
}

impl From<InvalidInput> for ServiceError {
    fn from(invalid: InvalidInput) -> Self {
        Self::BadUserInput(invalid)
    }
}

impl From<StoreError> for ServiceError {
    fn from(error: StoreError) -> Self {
        match error {
            StoreError::Unavailable(cause) => {
                tracing::warn!(error = %cause, "database unavailable");
                Self::Unavailable
            }
            other => {
                tracing::error!(error = %other, "internal error");
                Self::Internal
            }
        }
    }
}

impl From<&AuthError> for ServiceError {
    fn from(error: &AuthError) -> Self {
        match error {
            AuthError::Missing => Self::Unauthenticated("Authentication required"),
            AuthError::Invalid(reason) => {
                tracing::debug!(%reason, "token rejected");
                Self::Unauthenticated("Invalid or expired token")
            }
            // Already logged by the verifier.
            AuthError::KeysUnavailable(_) => Self::Unavailable,
        }
    }
}

/// A failure answered with an HTTP status instead of a GraphQL response.
#[derive(Debug)]
pub struct HttpError {
    status: StatusCode,
    code: &'static str,
    message: String,
}

impl HttpError {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self { status, code, message: message.into() }
    }
}

impl IntoResponse for HttpError {
    fn into_response(self) -> Response {
        let body = json!({
            "success": false,
            "message": self.message,
            "errors": [{ "message": self.message, "extensions": { "code": self.code } }],
        });
        (self.status, Json(body)).into_response()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn code_of(error: &async_graphql::Error) -> Option<String> {
        match error.extensions.as_ref()?.get("code")? {
            async_graphql::Value::String(code) => Some(code.clone()),
            _ => None,
        }
    }

    #[test]
    fn internal_errors_carry_a_fixed_message_and_code() {
        let error = async_graphql::Error::from(ServiceError::from(StoreError::Corrupt("secret detail".into())));
        assert_eq!(error.message, "Internal server error");
        assert_eq!(code_of(&error).as_deref(), Some("INTERNAL_SERVER_ERROR"));
    }

    #[test]
    fn invalid_input_names_the_field() {
        let error = async_graphql::Error::from(ServiceError::from(InvalidInput::new("price", "too high")));
        assert_eq!(error.message, "too high");
        assert_eq!(code_of(&error).as_deref(), Some("BAD_USER_INPUT"));
        let field = error.extensions.as_ref().and_then(|extensions| extensions.get("field").cloned());
        assert_eq!(field, Some(async_graphql::Value::String("price".into())));
    }

    #[test]
    fn token_details_are_not_sent_to_the_client() {
        let error = async_graphql::Error::from(ServiceError::from(&AuthError::Invalid("ExpiredSignature".into())));
        assert_eq!(error.message, "Invalid or expired token");
        assert_eq!(code_of(&error).as_deref(), Some("UNAUTHENTICATED"));
    }
}
