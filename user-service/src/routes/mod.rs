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
use platform::http::{error, observe};

use crate::state::AppState;

pub fn router(state: AppState) -> Router {
    let metrics = state.metrics.clone();
    let routes = Router::new()
        .route("/health", get(health::health))
        .route("/ready", get(health::ready))
        .route("/.well-known/jwks.json", get(jwks::jwks))
        .route("/users/register", post(users::register))
        .route("/users/login", post(users::login))
        .route("/users/me", get(users::me))
        .route("/metrics", get(observe::metrics).with_state(metrics.registry.clone()));
    observe::counted(error::with_fallbacks(routes), metrics.http.clone()).with_state(state)
}
