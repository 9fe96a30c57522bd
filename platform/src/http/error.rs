//! The error every HTTP route answers with: a status code and the shared JSON body
//! `{"success": false, "message": "...", "errors": [{"field", "message"}]}`, with `Retry-After` when the
//! client may retry. Internal causes are logged here and never sent to the client.
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

    /// A dependency could not be reached in time: the client may retry.
    pub fn unavailable(message: impl Into<String>) -> Self {
        Self::new(StatusCode::SERVICE_UNAVAILABLE, message).retry_after(1)
    }

    /// A limit was reached: the client may retry after `secs` seconds (at least 1).
    pub fn too_many_requests(message: impl Into<String>, secs: u64) -> Self {
        Self::new(StatusCode::TOO_MANY_REQUESTS, message).retry_after(secs)
    }

    /// `Retry-After` in whole seconds, at least 1 (0 would invite an immediate retry storm).
    pub fn retry_after(mut self, secs: u64) -> Self {
        self.retry_after_secs = Some(secs.max(1));
        self
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

/// `router` answering what none of its routes does with the JSON 404 and 405 below.
pub fn with_fallbacks<S: Clone + Send + Sync + 'static>(router: axum::Router<S>) -> axum::Router<S> {
    router.fallback(not_found).method_not_allowed_fallback(method_not_allowed)
}

/// The fallback of every router: a JSON 404 naming the path.
pub async fn not_found(uri: axum::http::Uri) -> ApiError {
    ApiError::new(StatusCode::NOT_FOUND, format!("No route for {}", uri.path()))
}

/// The fallback for a known path with another method: a JSON 405.
pub async fn method_not_allowed(method: axum::http::Method, uri: axum::http::Uri) -> ApiError {
    ApiError::new(StatusCode::METHOD_NOT_ALLOWED, format!("Method {method} not allowed on {}", uri.path()))
}

/// A refused token: 401, or 503 when the signing keys cannot be fetched (not the caller's fault).
#[cfg(feature = "auth")]
impl From<crate::auth::AuthError> for ApiError {
    fn from(error: crate::auth::AuthError) -> Self {
        use crate::auth::AuthError;
        match error {
            AuthError::Missing => Self::unauthorized("Missing bearer token"),
            AuthError::Invalid(_) => Self::unauthorized("Invalid or expired token"),
            AuthError::KeysUnavailable(_) => Self::unavailable("Cannot verify tokens right now"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn parts(error: ApiError) -> (StatusCode, Option<String>, serde_json::Value) {
        let response = error.into_response();
        let status = response.status();
        let retry_after = response.headers().get(header::RETRY_AFTER).map(|value| value.to_str().unwrap().to_owned());
        let bytes = axum::body::to_bytes(response.into_body(), 1 << 16).await.expect("a body");
        (status, retry_after, serde_json::from_slice(&bytes).expect("JSON"))
    }

    #[tokio::test]
    async fn a_validation_error_lists_its_fields() {
        let error = ApiError::validation(vec![FieldError { field: "email", message: "is not an email".into() }]);
        let (status, retry_after, body) = parts(error).await;
        assert_eq!((status, retry_after), (StatusCode::BAD_REQUEST, None));
        assert_eq!(
            body,
            serde_json::json!({"success": false, "message": "Validation failed",
                "errors": [{"field": "email", "message": "is not an email"}]})
        );
    }

    #[tokio::test]
    async fn refusals_the_client_may_retry_carry_retry_after_of_at_least_a_second() {
        let (status, retry_after, body) = parts(ApiError::unavailable("Storage unavailable")).await;
        assert_eq!((status, retry_after.as_deref()), (StatusCode::SERVICE_UNAVAILABLE, Some("1")));
        assert_eq!(body, serde_json::json!({"success": false, "message": "Storage unavailable"}));
        let (status, retry_after, _) = parts(ApiError::too_many_requests("Slow down", 0)).await;
        assert_eq!((status, retry_after.as_deref()), (StatusCode::TOO_MANY_REQUESTS, Some("1")));
    }

    #[tokio::test]
    async fn an_internal_error_sends_no_internals() {
        let (status, _, body) = parts(ApiError::internal("connection refused at 10.0.0.7:27017")).await;
        assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR);
        assert_eq!(body, serde_json::json!({"success": false, "message": "Internal server error"}));
    }
}
