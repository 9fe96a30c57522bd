//! /users/*: forwarded to the user-service, statuses and bodies unchanged.
use axum::{
    extract::State,
    http::{HeaderMap, Method},
    response::Response,
};
use bytes::Bytes;

use crate::{error::ApiError, routes::Authenticated, state::AppState};

/// Creates a customer account.
#[utoipa::path(post, path = "/users/register", operation_id = "registerUser", tag = "users", request_body = crate::openapi::RegisterRequest, responses(
    (status = 201, description = "Registered", body = crate::openapi::Registered),
    (status = 400, description = "Invalid fields (see `errors`), unknown fields or malformed JSON", body = crate::openapi::ErrorBody),
    (status = 409, description = "Email or username already taken", body = crate::openapi::ErrorBody),
    (status = 413, description = "Body too large", body = crate::openapi::ErrorBody),
    (status = 415, description = "Not a JSON content type", body = crate::openapi::ErrorBody),
    (status = 503, description = "user-service unavailable; retry after `Retry-After` seconds", body = crate::openapi::ErrorBody),
))]
pub async fn register(State(state): State<AppState>, headers: HeaderMap, body: Bytes) -> Result<Response, ApiError> {
    state.users.forward(Method::POST, "/users/register", &headers, Some(body)).await
}

/// Exchanges email and password for a bearer token.
///
/// The client's address travels as `X-Forwarded-For` (see `crate::client_address`) so that login
/// throttling sees the real client.
#[utoipa::path(post, path = "/users/login", operation_id = "login", tag = "users", request_body = crate::openapi::LoginRequest, responses(
    (status = 200, description = "Logged in: use `token` as `Authorization: Bearer <token>`", body = crate::openapi::LoggedIn),
    (status = 400, description = "Missing or malformed fields", body = crate::openapi::ErrorBody),
    (status = 401, description = "Unknown email or wrong password (the same answer for both)", body = crate::openapi::ErrorBody),
    (status = 429, description = "Too many failures for this account or address; retry after `Retry-After` seconds", body = crate::openapi::ErrorBody),
    (status = 503, description = "user-service unavailable", body = crate::openapi::ErrorBody),
))]
pub async fn login(State(state): State<AppState>, headers: HeaderMap, body: Bytes) -> Result<Response, ApiError> {
    state.users.forward(Method::POST, "/users/login", &headers, Some(body)).await
}

/// The caller's profile.
#[utoipa::path(get, path = "/users/me", operation_id = "getMe", tag = "users", security(("bearer" = [])), responses(
    (status = 200, description = "The caller", body = crate::openapi::Me),
    (status = 401, description = "Missing, invalid or expired token", body = crate::openapi::ErrorBody),
    (status = 503, description = "user-service unavailable", body = crate::openapi::ErrorBody),
))]
pub async fn me(
    State(state): State<AppState>,
    _caller: Authenticated,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    state.users.forward(Method::GET, "/users/me", &headers, None).await
}
