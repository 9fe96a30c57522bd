//! The HTTP surface: one module per resource, handlers stay thin (parse → domain → store → respond).
mod auth;
mod health;
mod jwks;
mod users;

use axum::{
    Router,
    routing::{get, post},
};

pub use auth::Authenticated;

use crate::state::AppState;

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
        .fallback(platform::http::error::not_found)
        .method_not_allowed_fallback(platform::http::error::method_not_allowed)
        .layer(axum::middleware::from_fn_with_state(metrics.http.clone(), platform::http::observe::track_requests))
        .with_state(state)
}
