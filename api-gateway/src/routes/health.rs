use axum::{Json, extract::State, http::StatusCode, response::IntoResponse};
use serde_json::json;

use crate::startup::AppState;

/// Liveness: 200 while the process runs.
pub async fn health() -> impl IntoResponse {
    Json(json!({ "status": "ok", "service": "api-gateway" }))
}

/// Readiness: 200 only when every downstream service says it is ready.
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
