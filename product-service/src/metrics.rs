//! Prometheus metrics, served at `GET /metrics`: requests by route and status, and the latency of
//! every MongoDB command.
//! One registry per application (not a global one), so several apps in one test process keep their
//! own counts.
use std::sync::Arc;

use axum::{extract::State, http::header, response::IntoResponse};
use platform::http::observe::{BUCKETS, HttpMetrics};
use prometheus::{HistogramOpts, HistogramVec, Registry};

pub struct Metrics {
    registry: Registry,
    /// Requests by route and status (`platform::http::observe::track_requests`).
    pub http: Arc<HttpMetrics>,
    mongodb_duration: HistogramVec,
}

impl Metrics {
    pub fn new() -> Self {
        let registry = platform::metrics::registry();
        let http = HttpMetrics::register(&registry);
        let mongodb_duration = HistogramVec::new(
            HistogramOpts::new(
                "mongodb_command_duration_seconds",
                "Time MongoDB commands took, by command and outcome",
            )
            .buckets(BUCKETS.to_vec()),
            &["command", "outcome"],
        )
        .expect("valid metric");
        registry.register(Box::new(mongodb_duration.clone())).expect("metric names are unique");
        Self { registry, http, mongodb_duration }
    }

    /// The histogram `store::connect` feeds from the driver's command monitoring (labels: command, outcome).
    pub fn mongodb_command_duration(&self) -> HistogramVec {
        self.mongodb_duration.clone()
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
