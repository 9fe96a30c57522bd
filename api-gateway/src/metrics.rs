//! Prometheus metrics, served at `GET /metrics`: requests by route and status, and the outcome of
//! every call to a service behind the gateway, with the state of each circuit breaker.
//! One registry per application (not a global one), so several gateways in one test process keep
//! their own counts.
use std::{sync::Arc, time::Duration};

use axum::http::StatusCode;
use platform::{http::observe::HttpMetrics, metrics::BUCKETS};
use prometheus::{HistogramOpts, HistogramVec, IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry};

pub struct Metrics {
    /// Every metric below, with the process's own; `GET /metrics` renders it.
    pub registry: Registry,
    /// Requests by route and status (`platform::http::observe::track_requests`).
    pub http: Arc<HttpMetrics>,
    downstream_requests: IntCounterVec,
    downstream_duration: HistogramVec,
    breaker_open: IntGaugeVec,
}

/// How a call to a service ended, as the `outcome` label says it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CallOutcome {
    Success,
    ClientError,
    ServerError,
    Timeout,
    Unavailable,
    CircuitOpen,
    Overloaded,
}

impl CallOutcome {
    fn label(self) -> &'static str {
        match self {
            Self::Success => "success",
            Self::ClientError => "client_error",
            Self::ServerError => "server_error",
            Self::Timeout => "timeout",
            Self::Unavailable => "unavailable",
            Self::CircuitOpen => "circuit_open",
            Self::Overloaded => "overloaded",
        }
    }

    pub fn of_status(status: StatusCode) -> Self {
        if status.is_server_error() {
            Self::ServerError
        } else if status.is_client_error() {
            Self::ClientError
        } else {
            Self::Success
        }
    }
}

impl Metrics {
    pub fn new() -> Self {
        let registry = platform::metrics::registry();
        let http = HttpMetrics::register(&registry);
        let downstream_requests = IntCounterVec::new(
            Opts::new("downstream_requests_total", "Calls to the services behind the gateway, by outcome"),
            &["service", "outcome"],
        )
        .expect("valid metric");
        let downstream_duration = HistogramVec::new(
            HistogramOpts::new(
                "downstream_request_duration_seconds",
                "Time a call to a service took, retries included",
            )
            .buckets(BUCKETS.to_vec()),
            &["service"],
        )
        .expect("valid metric");
        let breaker_open = IntGaugeVec::new(
            Opts::new("circuit_breaker_open", "1 while the circuit breaker for a service is open"),
            &["service"],
        )
        .expect("valid metric");
        for collector in [
            Box::new(downstream_requests.clone()) as Box<dyn prometheus::core::Collector>,
            Box::new(downstream_duration.clone()),
            Box::new(breaker_open.clone()),
        ] {
            registry.register(collector).expect("metric names are unique");
        }
        Self { registry, http, downstream_requests, downstream_duration, breaker_open }
    }

    /// The breaker gauge of one service (0 until its breaker first opens).
    pub fn breaker_gauge(&self, service: &str) -> IntGauge {
        let gauge = self.breaker_open.with_label_values(&[service]);
        gauge.set(0);
        gauge
    }

    pub fn observe_call(&self, service: &str, outcome: CallOutcome, elapsed: Duration) {
        self.downstream_requests.with_label_values(&[service, outcome.label()]).inc();
        self.downstream_duration.with_label_values(&[service]).observe(elapsed.as_secs_f64());
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}
