use axum::{Json, extract::State, http::StatusCode, response::IntoResponse};
use serde_json::json;

use crate::state::AppState;

/// Liveness: 200 while the process runs.
#[utoipa::path(get, path = "/health", operation_id = "health", tag = "health", responses((status = 200, description = "The gateway runs", body = crate::openapi::Health)))]
pub async fn health() -> impl IntoResponse {
    Json(json!({ "status": "ok", "service": "api-gateway" }))
}

/// Readiness: 200 only when every downstream service says it is ready.
#[utoipa::path(get, path = "/ready", operation_id = "ready", tag = "health", responses(
    (status = 200, description = "Every service is ready", body = crate::openapi::Readiness),
    (status = 503, description = "At least one service is down; `checks` says which", body = crate::openapi::Readiness),
))]
pub async fn ready(State(state): State<AppState>) -> impl IntoResponse {
    let (users, products, orders, payments) = tokio::join!(
        state.users.is_ready(),
        state.products.is_ready(),
        state.orders.is_ready(),
        state.payments.is_ready()
    );
    let services = [
        ("user-service", users),
        ("product-service", products),
        ("order-service", orders),
        ("payment-service", payments),
    ];
    let checks: serde_json::Map<String, serde_json::Value> =
        services.iter().map(|(name, up)| ((*name).to_owned(), json!(if *up { "up" } else { "down" }))).collect();
    let down: Vec<&str> = services.iter().filter(|(_, up)| !up).map(|(name, _)| *name).collect();
    if down.is_empty() {
        (StatusCode::OK, Json(json!({ "status": "ready", "checks": checks })))
    } else {
        let message = format!("Not ready: {} down", down.join(", "));
        (StatusCode::SERVICE_UNAVAILABLE, Json(json!({ "success": false, "message": message, "checks": checks })))
    }
}
