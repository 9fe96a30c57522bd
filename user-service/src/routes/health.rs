use std::time::Duration;

use axum::{Json, extract::State, http::StatusCode, response::IntoResponse};
use serde_json::json;

use crate::state::{AdminSeedStatus, AppState};

/// Liveness: 200 while the process runs.
pub async fn health() -> impl IntoResponse {
    Json(json!({ "status": "ok", "service": "user-service" }))
}

/// Readiness: 200 only when MongoDB answers, the unique indexes exist, and the configured admin
/// account (if any) could be seeded. A conflicting admin seed is named in `checks.adminSeed`.
pub async fn ready(State(state): State<AppState>) -> impl IntoResponse {
    let mongodb_up = state.is_bootstrapped()
        && matches!(tokio::time::timeout(Duration::from_secs(1), state.store.ping()).await, Ok(Ok(())));
    let seed = state.admin_seed();
    let mut checks = json!({ "mongodb": if mongodb_up { "up" } else { "down" } });
    if let Some(check) = seed.check() {
        checks["adminSeed"] = json!(check);
    }
    match seed {
        AdminSeedStatus::Conflict(message) => (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(
                json!({ "success": false, "message": format!("Not ready: admin seed conflict: {message}"), "checks": checks }),
            ),
        ),
        _ if mongodb_up => (StatusCode::OK, Json(json!({ "status": "ready", "checks": checks }))),
        _ => (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({ "success": false, "message": "Not ready: mongodb is down", "checks": checks })),
        ),
    }
}
