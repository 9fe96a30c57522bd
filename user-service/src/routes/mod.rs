//! The HTTP surface: one module per resource, handlers stay thin (parse → domain → store → respond).
mod auth;
mod health;
mod jwks;
mod users;

use axum::{
    Router,
    http::{Method, StatusCode, Uri},
    routing::{get, post},
};

pub use auth::Authenticated;

use crate::{error::ApiError, state::AppState};

pub fn router(state: AppState) -> Router {
    let metrics = state.metrics.clone();
    Router::new()
        .route("/health", get(health::health))
        .route("/ready", get(health::ready))
        .route("/.well-known/jwks.json", get(jwks::jwks))
        .route("/users/register", post(users::register))
        .route("/users/login", post(users::login))
        .route("/users/me", get(users::me))
        .route("/metrics", get(crate::metrics::render).with_state(metrics.clone()))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(axum::middleware::from_fn_with_state(metrics.http.clone(), platform::http::observe::track_requests))
        .with_state(state)
}

async fn not_found(uri: Uri) -> ApiError {
    ApiError::new(StatusCode::NOT_FOUND, format!("No route for {}", uri.path()))
}

async fn method_not_allowed(method: Method, uri: Uri) -> ApiError {
    ApiError::new(StatusCode::METHOD_NOT_ALLOWED, format!("Method {method} not allowed on {}", uri.path()))
}
