//! /orders: the token is checked here, then again by the order-service (defence in depth).
use axum::{
    extract::{OriginalUri, Path, State},
    http::{HeaderMap, Method, StatusCode},
    response::Response,
};
use bytes::Bytes;

use crate::{error::ApiError, routes::Authenticated, state::AppState};

/// Places an order for a product; it is processed asynchronously (`pending` → `processed`).
#[utoipa::path(post, path = "/orders", operation_id = "createOrder", tag = "orders", security(("bearer" = [])), request_body = crate::openapi::CreateOrder,
    params(("Idempotency-Key" = Option<String>, Header, description = "Retries with the same key within 24 h replay the first answer and create nothing")),
    responses(
        (status = 201, description = "Created and queued for processing", body = crate::openapi::OrderCreated),
        (status = 400, description = "Invalid fields (quantity not an integer 1–100, missing or unknown fields)", body = crate::openapi::ErrorBody),
        (status = 401, description = "Missing, invalid or expired token", body = crate::openapi::ErrorBody),
        (status = 403, description = "`userId` is not the caller", body = crate::openapi::ErrorBody),
        (status = 422, description = "Unknown product, or the idempotency key was used with another body", body = crate::openapi::ErrorBody),
        (status = 503, description = "order-service or product-service unavailable", body = crate::openapi::ErrorBody),
))]
pub async fn create(
    State(state): State<AppState>,
    _caller: Authenticated,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    state.orders.forward(Method::POST, "/orders", &headers, Some(body)).await
}

/// The caller's orders (every order for an admin), newest first.
#[utoipa::path(get, path = "/orders", operation_id = "listOrders", tag = "orders", security(("bearer" = [])),
    params(
        ("limit" = Option<u32>, Query, description = "Page size, 1–100 (default 20)"),
        ("before" = Option<String>, Query, description = "`nextCursor` of the previous page"),
    ),
    responses(
        (status = 200, description = "A page of orders", body = crate::openapi::OrderList),
        (status = 400, description = "Invalid `limit` or `before`", body = crate::openapi::ErrorBody),
        (status = 401, description = "Missing, invalid or expired token", body = crate::openapi::ErrorBody),
        (status = 503, description = "order-service unavailable", body = crate::openapi::ErrorBody),
))]
pub async fn list(
    State(state): State<AppState>,
    _caller: Authenticated,
    headers: HeaderMap,
    OriginalUri(uri): OriginalUri,
) -> Result<Response, ApiError> {
    let path = uri.path_and_query().map_or("/orders", |path| path.as_str());
    state.orders.forward(Method::GET, path, &headers, None).await
}

/// One of the caller's orders.
#[utoipa::path(get, path = "/orders/{id}", operation_id = "getOrder", tag = "orders", security(("bearer" = [])),
    params(("id" = String, Path, description = "The order id from POST /orders")),
    responses(
        (status = 200, description = "The order", body = crate::openapi::OrderEnvelope),
        (status = 401, description = "Missing, invalid or expired token", body = crate::openapi::ErrorBody),
        (status = 404, description = "No such order, or not the caller's", body = crate::openapi::ErrorBody),
        (status = 503, description = "order-service unavailable", body = crate::openapi::ErrorBody),
))]
pub async fn get(
    State(state): State<AppState>,
    _caller: Authenticated,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    if !is_order_id(&id) {
        return Err(ApiError::new(StatusCode::NOT_FOUND, "Order not found"));
    }
    state.orders.forward(Method::GET, &format!("/orders/{id}"), &headers, None).await
}

/// The shape of an order id (UUIDs today): anything else cannot name an order and never reaches
/// the order-service.
pub fn is_order_id(id: &str) -> bool {
    (1..=64).contains(&id.len()) && id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}
