//! The product-service's GraphQL API as the REST routes use it. Client input only ever travels
//! in `variables`, never pasted into query text (the original was injectable that way).
use axum::http::{HeaderMap, StatusCode};
use serde_json::{Value, json};

use crate::{
    downstream::{Downstream, DownstreamError},
    error::ApiError,
};

pub const PRODUCT_FIELDS: &str = "id name price description createdAt updatedAt";

/// Sends one GraphQL operation; returns `data`, or the first error mapped to an HTTP status.
pub async fn execute(
    products: &Downstream,
    query: &str,
    variables: Value,
    incoming: &HeaderMap,
) -> Result<Value, ApiError> {
    let body = json!({ "query": query, "variables": variables });
    let mut headers = HeaderMap::new();
    // x-forwarded-for: the client address the gateway derived (crate::client_address).
    for name in ["authorization", "x-request-id", "x-forwarded-for"] {
        if let Some(value) = incoming.get(name) {
            headers.insert(name, value.clone());
        }
    }
    headers.insert("content-type", "application/json".parse().map_err(ApiError::internal)?);
    let bytes = serde_json::to_vec(&body).map_err(ApiError::internal)?;
    let response = products.send(axum::http::Method::POST, "/graphql", &headers, Some(bytes.into())).await?;
    let status = response.status();
    let mut payload: Value = response.json().await.map_err(|error| ApiError::from(products.classify(&error)))?;
    if let Some(error) = payload["errors"].as_array().and_then(|errors| errors.first()) {
        return Err(graphql_error(error));
    }
    if !status.is_success() {
        return Err(ApiError::from(DownstreamError::Unavailable(products.name, format!("status {status}"))));
    }
    Ok(payload.get_mut("data").map(Value::take).unwrap_or_default())
}

/// GraphQL error codes (extensions.code) → the HTTP status a REST client expects.
fn graphql_error(error: &Value) -> ApiError {
    let message = error["message"].as_str().unwrap_or("Product request failed").to_owned();
    let status = match error["extensions"]["code"].as_str().unwrap_or_default() {
        "BAD_USER_INPUT" | "GRAPHQL_VALIDATION_FAILED" | "GRAPHQL_PARSE_FAILED" => StatusCode::BAD_REQUEST,
        "UNAUTHENTICATED" => StatusCode::UNAUTHORIZED,
        "FORBIDDEN" => StatusCode::FORBIDDEN,
        "NOT_FOUND" => StatusCode::NOT_FOUND,
        "SERVICE_UNAVAILABLE" => return ApiError::unavailable(message),
        _ => {
            tracing::warn!(%error, "unexpected GraphQL error from product-service");
            return ApiError::new(StatusCode::BAD_GATEWAY, "product-service failed to answer");
        }
    };
    ApiError::new(status, message)
}
