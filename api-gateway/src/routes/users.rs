//! /users/*: forwarded to the user-service, statuses and bodies unchanged.
use std::net::SocketAddr;

use axum::{
    extract::{ConnectInfo, State},
    http::{HeaderMap, Method},
    response::Response,
};
use bytes::Bytes;

use crate::{error::ApiError, routes::Authenticated, startup::AppState};

pub async fn register(
    State(state): State<AppState>,
    ConnectInfo(client): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    state.users.forward(Method::POST, "/users/register", &headers, Some(client), Some(body)).await
}

/// The client's address travels as `X-Forwarded-For` so that login throttling sees the real client.
pub async fn login(
    State(state): State<AppState>,
    ConnectInfo(client): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    state.users.forward(Method::POST, "/users/login", &headers, Some(client), Some(body)).await
}

pub async fn me(
    State(state): State<AppState>,
    _caller: Authenticated,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    state.users.forward(Method::GET, "/users/me", &headers, None, None).await
}
