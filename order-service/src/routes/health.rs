use std::time::Duration;

use axum::{Json, extract::State, http::StatusCode, response::IntoResponse};
use serde_json::json;

use crate::{events::kafka, state::AppState};

/// Liveness: 200 while the process runs.
pub async fn health() -> impl IntoResponse {
    Json(json!({ "status": "ok", "service": "order-service" }))
}

/// Readiness: 200 only when MongoDB (with its indexes) and Kafka (with its topics) answer.
pub async fn ready(State(state): State<AppState>) -> impl IntoResponse {
    let timeout = Duration::from_secs(1);
    let (mongodb_up, kafka_up) = tokio::join!(
        async {
            state.is_bootstrapped() && matches!(tokio::time::timeout(timeout, state.store.ping()).await, Ok(Ok(())))
        },
        async { state.topics_ready() && kafka::broker_answers(&state.producer.current(), timeout).await },
    );
    let word = |up: bool| if up { "up" } else { "down" };
    let checks = json!({ "mongodb": word(mongodb_up), "kafka": word(kafka_up) });
    if mongodb_up && kafka_up {
        (StatusCode::OK, Json(json!({ "status": "ready", "checks": checks })))
    } else {
        let down: Vec<&str> = [("mongodb", mongodb_up), ("kafka", kafka_up)]
            .into_iter()
            .filter(|(_, up)| !up)
            .map(|(name, _)| name)
            .collect();
        let message = format!("Not ready: {} down", down.join(" and "));
        (StatusCode::SERVICE_UNAVAILABLE, Json(json!({ "success": false, "message": message, "checks": checks })))
    }
}
