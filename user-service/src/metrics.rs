//! Prometheus metrics, served at `GET /metrics`: requests by route and status and the latency of every MongoDB
//! command (`platform::http::observe::ServiceMetrics`), and the password hashes shed or skipped.
use prometheus::{IntCounterVec, Opts, Registry};

pub use platform::http::observe::ServiceMetrics as Metrics;

/// Registers on `registry` the counter `PasswordHasher` feeds: hashes not computed, by reason (`queue_full`,
/// `caller_gone`).
pub fn password_hash_dropped(registry: &Registry) -> IntCounterVec {
    let dropped = IntCounterVec::new(
        Opts::new(
            "password_hash_jobs_dropped_total",
            "Password hashes not computed: refused with the queue full, or skipped with their caller gone",
        ),
        &["reason"],
    )
    .expect("valid metric");
    registry.register(Box::new(dropped.clone())).expect("metric names are unique");
    // Both reasons are exposed from the start, at 0, so that alerts and dashboards find them.
    for reason in ["queue_full", "caller_gone"] {
        dropped.with_label_values(&[reason]);
    }
    dropped
}
