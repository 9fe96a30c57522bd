//! Prometheus metrics, served at `GET /metrics`: requests by route and status, the latency of
//! every MongoDB command, and the password hashes shed or skipped.
//! One registry per application (not a global one), so several apps in one test process keep their
//! own counts.
use std::sync::Arc;

use axum::{extract::State, http::header, response::IntoResponse};
use platform::{http::observe::HttpMetrics, mongo::MongoMetrics};
use prometheus::{IntCounterVec, Opts, Registry};

pub struct Metrics {
    registry: Registry,
    /// Requests by route and status (`platform::http::observe::track_requests`).
    pub http: Arc<HttpMetrics>,
    /// What the MongoDB client's command monitoring feeds.
    pub mongodb: MongoMetrics,
    password_hash_dropped: IntCounterVec,
}

impl Metrics {
    pub fn new() -> Self {
        let registry = platform::metrics::registry();
        let http = HttpMetrics::register(&registry);
        let mongodb = MongoMetrics::register(&registry);
        let password_hash_dropped = IntCounterVec::new(
            Opts::new(
                "password_hash_jobs_dropped_total",
                "Password hashes not computed: refused with the queue full, or skipped with their caller gone",
            ),
            &["reason"],
        )
        .expect("valid metric");
        registry.register(Box::new(password_hash_dropped.clone())).expect("metric names are unique");
        // Both reasons are exposed from the start, at 0, so that alerts and dashboards find them.
        for reason in ["queue_full", "caller_gone"] {
            password_hash_dropped.with_label_values(&[reason]);
        }
        Self { registry, http, mongodb, password_hash_dropped }
    }

    /// The counter `PasswordHasher` feeds (label: reason = queue_full | caller_gone).
    pub fn password_hash_dropped(&self) -> IntCounterVec {
        self.password_hash_dropped.clone()
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
