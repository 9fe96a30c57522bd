//! Prometheus metrics, served at `GET /metrics`: requests by route and status, and the latency of
//! every MongoDB command.
//! One registry per application (not a global one), so several apps in one test process keep their
//! own counts.
use std::{
    sync::Arc,
    time::{Duration, Instant},
};

use axum::{
    extract::{MatchedPath, Request, State},
    http::{Method, StatusCode, header},
    middleware::Next,
    response::{IntoResponse, Response},
};
use prometheus::{HistogramOpts, HistogramVec, IntCounterVec, Opts, Registry};

/// Latency buckets in seconds, from a cached read (~1 ms) to a request waiting out the MongoDB timeout.
const BUCKETS: &[f64] = &[0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0];

pub struct Metrics {
    registry: Registry,
    http_requests: IntCounterVec,
    http_duration: HistogramVec,
    mongodb_duration: HistogramVec,
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
        let mongodb_duration = HistogramVec::new(
            HistogramOpts::new(
                "mongodb_command_duration_seconds",
                "Time MongoDB commands took, by command and outcome",
            )
            .buckets(BUCKETS.to_vec()),
            &["command", "outcome"],
        )
        .expect("valid metric");
        for collector in [
            Box::new(http_requests.clone()) as Box<dyn prometheus::core::Collector>,
            Box::new(http_duration.clone()),
            Box::new(mongodb_duration.clone()),
        ] {
            registry.register(collector).expect("metric names are unique");
        }
        Self { registry, http_requests, http_duration, mongodb_duration }
    }

    /// The histogram `store::connect` feeds from the driver's command monitoring (labels: command, outcome).
    pub fn mongodb_command_duration(&self) -> HistogramVec {
        self.mongodb_duration.clone()
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

/// Middleware: counts and times every request under its route template, never the raw path (which
/// a client could vary without bound); requests no route matched count as `unmatched`.
pub async fn track_requests(State(metrics): State<Arc<Metrics>>, request: Request, next: Next) -> Response {
    let started = Instant::now();
    let method = request.method().clone();
    let route = request.extensions().get::<MatchedPath>().map(|path| path.as_str().to_owned());
    let response = next.run(request).await;
    let route = route.as_deref().unwrap_or("unmatched");
    metrics.observe_request(&method, route, response.status(), started.elapsed());
    response
}

/// GET /metrics.
pub async fn render(State(metrics): State<Arc<Metrics>>) -> impl IntoResponse {
    ([(header::CONTENT_TYPE, prometheus::TEXT_FORMAT)], metrics.render())
}
