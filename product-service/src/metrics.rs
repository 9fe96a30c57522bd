//! Prometheus metrics, served at `GET /metrics`: requests by route and status, and the latency of
//! every MongoDB command.
//! One registry per application (not a global one), so several apps in one test process keep their
//! own counts.
use std::sync::Arc;

use axum::{extract::State, http::header, response::IntoResponse};
use platform::{http::observe::HttpMetrics, mongo::MongoMetrics};
use prometheus::Registry;

pub struct Metrics {
    registry: Registry,
    /// Requests by route and status (`platform::http::observe::track_requests`).
    pub http: Arc<HttpMetrics>,
    /// What the MongoDB client's command monitoring feeds.
    pub mongodb: MongoMetrics,
}

impl Metrics {
    pub fn new() -> Self {
        let registry = platform::metrics::registry();
        let http = HttpMetrics::register(&registry);
        let mongodb = MongoMetrics::register(&registry);
        Self { registry, http, mongodb }
    }

    /// The Prometheus text exposition of every metric.
    pub fn render(&self) -> Vec<u8> {
        platform::metrics::render(&self.registry)
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

/// GET /metrics.
pub async fn render(State(metrics): State<Arc<Metrics>>) -> impl IntoResponse {
    ([(header::CONTENT_TYPE, prometheus::TEXT_FORMAT)], metrics.render())
}
