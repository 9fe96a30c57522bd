//! Prometheus plumbing every service shares: a registry that already carries the process's own metrics
//! (`process_resident_memory_bytes`, `process_cpu_seconds_total`, open file descriptors, start time), and the
//! text rendering `GET /metrics` answers with. Each service declares its own metrics on that registry.
use prometheus::{Encoder as _, Registry};

/// What a service answering HTTP from its own database measures in any case, on one [`registry`]: requests by
/// route and status, and MongoDB commands. A service registers its own metrics on `registry` too, and serves it
/// with `platform::http::observe::metrics`. One per application (not a global registry), so that several
/// applications in one test process keep their own counts.
#[cfg(feature = "mongodb")]
#[derive(Clone)]
pub struct ServiceMetrics {
    pub registry: Registry,
    /// Requests by route and status (`platform::http::observe::track_requests`).
    pub http: std::sync::Arc<crate::http::observe::HttpMetrics>,
    /// What the MongoDB client's command monitoring feeds.
    pub mongodb: crate::mongo::MongoMetrics,
}

#[cfg(feature = "mongodb")]
impl ServiceMetrics {
    pub fn new() -> Self {
        let registry = registry();
        let http = crate::http::observe::HttpMetrics::register(&registry);
        let mongodb = crate::mongo::MongoMetrics::register(&registry);
        Self { registry, http, mongodb }
    }
}

#[cfg(feature = "mongodb")]
impl Default for ServiceMetrics {
    fn default() -> Self {
        Self::new()
    }
}

/// A registry with the process metrics registered.
pub fn registry() -> Registry {
    let registry = Registry::new();
    // Linux only (read from /proc): the services' container images and this project's machines are Linux.
    #[cfg(target_os = "linux")]
    if let Err(error) = registry.register(Box::new(prometheus::process_collector::ProcessCollector::for_self())) {
        tracing::warn!(%error, "process metrics unavailable");
    }
    registry
}

/// What `GET /metrics` answers: the text exposition of `registry` with its content type (an axum response as is).
pub fn exposition(registry: &Registry) -> ([(http::header::HeaderName, &'static str); 1], Vec<u8>) {
    ([(http::header::CONTENT_TYPE, prometheus::TEXT_FORMAT)], render(registry))
}

/// The Prometheus text exposition of every metric in `registry`.
pub fn render(registry: &Registry) -> Vec<u8> {
    let mut buffer = Vec::new();
    if let Err(error) = prometheus::TextEncoder::new().encode(&registry.gather(), &mut buffer) {
        tracing::error!(%error, "cannot encode the metrics");
    }
    buffer
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_registry_reports_the_process_memory_and_cpu() {
        let text = String::from_utf8(render(&registry())).expect("UTF-8");
        // CPU seconds may still read 0 this early; memory and start time cannot.
        assert!(text.lines().any(|line| line.starts_with("process_cpu_seconds_total ")), "{text}");
        for name in ["process_resident_memory_bytes", "process_start_time_seconds"] {
            let line = text
                .lines()
                .find(|line| line.starts_with(&format!("{name} ")))
                .unwrap_or_else(|| panic!("{name} in {text}"));
            let value: f64 = line.split(' ').nth(1).expect("a value").parse().expect("a number");
            assert!(value > 0.0, "{line}");
        }
    }
}
