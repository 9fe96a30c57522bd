//! Liveness and readiness probes.
use std::time::Duration;

use axum::{Json, extract::State, http::StatusCode, response::IntoResponse};
use serde_json::json;

use crate::state::AppState;

/// Liveness: 200 while the process runs.
pub async fn health() -> impl IntoResponse {
    Json(json!({ "status": "ok", "service": "product-service" }))
}

/// Readiness: 200 only when MongoDB answers and the indexes and seed products are in place.
pub async fn ready(State(state): State<AppState>) -> impl IntoResponse {
    let mongodb_up = state.is_bootstrapped()
        && matches!(tokio::time::timeout(Duration::from_secs(1), state.catalogue.store().ping()).await, Ok(Ok(())));
    if mongodb_up {
        (StatusCode::OK, Json(json!({ "status": "ready", "checks": { "mongodb": "up" } })))
    } else {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({ "success": false, "message": "Not ready: mongodb is down", "checks": { "mongodb": "down" } })),
        )
    }
}
