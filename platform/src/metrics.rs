//! Prometheus plumbing every service shares: a registry that already carries the process's own metrics
//! (`process_resident_memory_bytes`, `process_cpu_seconds_total`, open file descriptors, start time), and the
//! text rendering `GET /metrics` answers with. Each service declares its own metrics on that registry.
use prometheus::{Encoder as _, Registry};

/// Latency buckets in seconds, from a fast database command (~0.5 ms) to a timed-out call (10 s); every
/// service's histograms use them, so dashboards compare like with like.
pub const BUCKETS: &[f64] = &[0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0];

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
