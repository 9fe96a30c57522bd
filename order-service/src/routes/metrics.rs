//! `GET /metrics`: the service's Prometheus registry (see `crate::metrics`).
use axum::{extract::State, response::IntoResponse};

use crate::state::AppState;

/// The outbox backlog is counted now, so it costs nothing between scrapes: this replica's orders whose event is not
/// yet published (in memory), and the events still waiting in the outbox of earlier versions (from its index); when
/// MongoDB cannot answer, the last count stays.
pub async fn render(State(state): State<AppState>) -> impl IntoResponse {
    match state.store.outbox_backlog().await {
        Ok(backlog) => {
            let backlog = backlog.saturating_add(state.relay_inbox.unpublished.len() as u64);
            state.metrics.outbox_backlog.set(i64::try_from(backlog).unwrap_or(i64::MAX));
        }
        Err(error) => tracing::debug!(%error, "cannot count the outbox backlog"),
    }
    platform::metrics::exposition(&state.metrics.registry)
}
