//! /orders: the token is checked here, then again by the order-service (defence in depth).
use axum::{
    extract::{OriginalUri, Path, State},
    http::{HeaderMap, Method, StatusCode},
    response::Response,
};
use bytes::Bytes;

use crate::{error::ApiError, routes::Authenticated, startup::AppState};

pub async fn create(
    State(state): State<AppState>,
    _caller: Authenticated,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    state.orders.forward(Method::POST, "/orders", &headers, None, Some(body)).await
}

pub async fn list(
    State(state): State<AppState>,
    _caller: Authenticated,
    headers: HeaderMap,
    OriginalUri(uri): OriginalUri,
) -> Result<Response, ApiError> {
    let path = uri.path_and_query().map_or("/orders", |path| path.as_str());
    state.orders.forward(Method::GET, path, &headers, None, None).await
}

pub async fn get(
    State(state): State<AppState>,
    _caller: Authenticated,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    if !is_order_id(&id) {
        return Err(ApiError::new(StatusCode::NOT_FOUND, "Order not found"));
    }
    state.orders.forward(Method::GET, &format!("/orders/{id}"), &headers, None, None).await
}

/// The shape of an order id (UUIDs today): anything else cannot name an order and never reaches
/// the order-service.
pub fn is_order_id(id: &str) -> bool {
    (1..=64).contains(&id.len()) && id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}
