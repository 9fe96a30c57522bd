//! The HTTP surface: one module per resource, handlers stay thin (parse → domain → store → respond).
mod health;
mod metrics;
mod orders;

use axum::{Router, routing::get};

pub use platform::http::bearer::Authenticated;
use platform::http::{error, observe};

use crate::state::AppState;

pub fn router(state: AppState) -> Router {
    let routes = Router::new()
        .route("/health", get(health::health))
        .route("/ready", get(health::ready))
        .route("/orders", get(orders::list).post(orders::create))
        .route("/orders/{id}", get(orders::get))
        .route("/metrics", get(metrics::render));
    observe::counted(error::with_fallbacks(routes), state.metrics.http.clone()).with_state(state)
}
