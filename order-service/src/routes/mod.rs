//! The HTTP surface: one module per resource, handlers stay thin (parse → domain → store → respond).
mod health;
mod orders;

use axum::{Router, routing::get};

pub use platform::http::bearer::Authenticated;

use crate::state::AppState;

pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/health", get(health::health))
        .route("/ready", get(health::ready))
        .route("/orders", get(orders::list).post(orders::create))
        .route("/orders/{id}", get(orders::get))
        .route("/metrics", get(crate::metrics::render))
        .fallback(platform::http::error::not_found)
        .method_not_allowed_fallback(platform::http::error::method_not_allowed)
        .layer(axum::middleware::from_fn_with_state(
            state.metrics.http.clone(),
            platform::http::observe::track_requests,
        ))
        .with_state(state)
}
