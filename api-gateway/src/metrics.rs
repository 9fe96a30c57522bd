//! Prometheus metrics, served at `GET /metrics`: requests by route and status, and the outcome of
//! every call to a service behind the gateway, with the state of each circuit breaker.
//! One registry per application (not a global one), so several gateways in one test process keep
//! their own counts.
use std::time::{Duration, Instant};

use axum::{
    extract::{MatchedPath, Request, State},
    http::{Method, StatusCode, header},
    middleware::Next,
    response::{IntoResponse, Response},
};
use prometheus::{HistogramOpts, HistogramVec, IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry};

use crate::startup::AppState;

/// Latency buckets in seconds, from a cached read (~1 ms) to a timed-out call (10 s).
const BUCKETS: &[f64] = &[0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0];

pub struct Metrics {
    registry: Registry,
    http_requests: IntCounterVec,
    http_duration: HistogramVec,
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
        let http_requests = IntCounterVec::new(
            Opts::new("http_server_requests_total", "HTTP requests answered, by route and status"),
            &["method", "route", "status"],
        )
        .expect("valid metric");
        let http_duration = HistogramVec::new(
            HistogramOpts::new("http_server_request_duration_seconds", "Time to answer an HTTP request")
                .buckets(BUCKETS.to_vec()),
            &["method", "route", "status"],
        )
        .expect("valid metric");
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
            Box::new(http_requests.clone()) as Box<dyn prometheus::core::Collector>,
            Box::new(http_duration.clone()),
            Box::new(downstream_requests.clone()),
            Box::new(downstream_duration.clone()),
            Box::new(breaker_open.clone()),
        ] {
            registry.register(collector).expect("metric names are unique");
        }
        Self { registry, http_requests, http_duration, downstream_requests, downstream_duration, breaker_open }
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

    fn observe_request(&self, method: &Method, route: &str, status: StatusCode, elapsed: Duration) {
        // Only standard methods become label values: a client cannot grow the series without bound.
        let method = match *method {
            Method::GET
            | Method::POST
            | Method::PATCH
            | Method::DELETE
            | Method::PUT
            | Method::HEAD
            | Method::OPTIONS => method.as_str(),
            _ => "OTHER",
        };
        let labels = [method, route, status.as_str()];
        self.http_requests.with_label_values(&labels).inc();
        self.http_duration.with_label_values(&labels).observe(elapsed.as_secs_f64());
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

/// Middleware: counts and times every request under its route template (`/orders/{id}`, never the
/// raw path, which would make one series per order); requests no route matched count as `unmatched`.
pub async fn track_requests(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let started = Instant::now();
    let method = request.method().clone();
    let route = request.extensions().get::<MatchedPath>().map(|path| path.as_str().to_owned());
    let response = next.run(request).await;
    let route = route.as_deref().unwrap_or("unmatched");
    state.metrics.observe_request(&method, route, response.status(), started.elapsed());
    response
}

/// GET /metrics.
pub async fn render(State(state): State<AppState>) -> impl IntoResponse {
    ([(header::CONTENT_TYPE, prometheus::TEXT_FORMAT)], state.metrics.render())
}
