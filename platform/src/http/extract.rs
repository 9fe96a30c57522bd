//! A JSON body extractor whose rejections use the shared error body (axum's own answer is plain text).
use axum::{
    extract::{FromRequest, Request, rejection::JsonRejection},
    http::StatusCode,
};
use serde::de::DeserializeOwned;

use super::error::ApiError;

pub struct JsonBody<T>(pub T);

impl<S, T> FromRequest<S> for JsonBody<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request(request: Request, state: &S) -> Result<Self, Self::Rejection> {
        match axum::Json::<T>::from_request(request, state).await {
            Ok(axum::Json(value)) => Ok(Self(value)),
            Err(rejection) => Err(rejection_to_error(&rejection)),
        }
    }
}

fn rejection_to_error(rejection: &JsonRejection) -> ApiError {
    match rejection {
        JsonRejection::MissingJsonContentType(_) => {
            ApiError::new(StatusCode::UNSUPPORTED_MEDIA_TYPE, "Expected a request with Content-Type: application/json")
        }
        JsonRejection::JsonSyntaxError(_) => ApiError::new(StatusCode::BAD_REQUEST, "Malformed JSON body"),
        JsonRejection::JsonDataError(error) => ApiError::new(
            StatusCode::BAD_REQUEST,
            format!(
                "Invalid JSON body: {}",
                error.body_text().trim_start_matches("Failed to deserialize the JSON body into the target type: ")
            ),
        ),
        other if other.status() == StatusCode::PAYLOAD_TOO_LARGE => {
            ApiError::new(StatusCode::PAYLOAD_TOO_LARGE, "Request body too large")
        }
        _ => ApiError::new(StatusCode::BAD_REQUEST, "Cannot read request body"),
    }
}

#[cfg(test)]
mod tests {
    use axum::{Router, body::Body, http::Request as HttpRequest, response::IntoResponse, routing::post};
    use tower::ServiceExt as _;

    use super::*;

    #[derive(serde::Deserialize)]
    struct Order {
        #[allow(dead_code)]
        quantity: u32,
    }

    async fn status_of(content_type: Option<&str>, body: &str) -> (StatusCode, serde_json::Value) {
        let app = Router::new().route("/", post(|JsonBody(_): JsonBody<Order>| async { "ok".into_response() }));
        let mut request = HttpRequest::post("/");
        if let Some(content_type) = content_type {
            request = request.header("content-type", content_type);
        }
        let response = app.oneshot(request.body(Body::from(body.to_owned())).unwrap()).await.unwrap();
        let status = response.status();
        let bytes = axum::body::to_bytes(response.into_body(), 1 << 16).await.unwrap();
        (status, serde_json::from_slice(&bytes).unwrap_or(serde_json::Value::Null))
    }

    #[tokio::test]
    async fn rejections_are_json_errors_with_the_right_status() {
        let json = Some("application/json");
        assert_eq!(status_of(json, r#"{"quantity": 2}"#).await.0, StatusCode::OK);
        for (content_type, body, status) in [
            (None, r#"{"quantity": 2}"#, StatusCode::UNSUPPORTED_MEDIA_TYPE),
            (json, "{not json", StatusCode::BAD_REQUEST),
            (json, r#"{"quantity": "two"}"#, StatusCode::BAD_REQUEST),
        ] {
            let (answered, body) = status_of(content_type, body).await;
            assert_eq!(answered, status, "{body}");
            assert_eq!(body["success"], false, "{body}");
        }
    }
}
