//! Prometheus metrics, served at `GET /metrics`: requests by route and status, and the latency of every MongoDB
//! command; nothing else of this service's own.
pub use platform::http::observe::ServiceMetrics as Metrics;
