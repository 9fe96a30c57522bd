//! What every HTTP service records about each request, declared once: the server span (OpenTelemetry's HTTP
//! semantic conventions, so stock trace UIs group routes and show failed requests) and the two request metrics
//! (`http_server_requests_total`, `http_server_request_duration_seconds`).
use std::{
    sync::Arc,
    time::{Duration, Instant},
};

use axum::{
    Router,
    extract::{MatchedPath, Request, State},
    http::{Method, StatusCode},
    middleware::Next,
    response::{IntoResponse as _, Response},
};
use prometheus::{HistogramOpts, HistogramVec, IntCounterVec, Opts, Registry};
use tower::ServiceBuilder;
use tower_http::{
    request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer},
    trace::TraceLayer,
};
use tracing::field::Empty;

use crate::metrics::BUCKETS;

/// Wraps `router` in the request-id and trace layers: an `x-request-id` is made when the request has none and
/// sent back with the response; each request gets a server span ([`request_span`]) whose status is recorded
/// when the response leaves ([`record_status`]). Layers added after this one see the span.
pub fn traced<S: Clone + Send + Sync + 'static>(router: Router<S>) -> Router<S> {
    router.layer(
        ServiceBuilder::new()
            .layer(SetRequestIdLayer::x_request_id(MakeRequestUuid))
            .layer(TraceLayer::new_for_http().make_span_with(request_span).on_response(record_status))
            .layer(PropagateRequestIdLayer::x_request_id()),
    )
}

/// The server span of one request, a child of the caller's trace when it sent `traceparent`. Named by the
/// route template (`GET /orders/{id}`), never the raw path: one span name per order would defeat grouping.
pub fn request_span<B>(request: &http::Request<B>) -> tracing::Span {
    let request_id = request.headers().get("x-request-id").and_then(|value| value.to_str().ok()).unwrap_or("-");
    let method = method_label(request.method());
    let route = request.extensions().get::<MatchedPath>().map(MatchedPath::as_str);
    let name = match route {
        Some(route) => format!("{method} {route}"),
        None => method.to_owned(),
    };
    let span = tracing::info_span!(
        "request",
        otel.name = %name,
        otel.kind = "server",
        otel.status_code = Empty,
        http.request.method = method,
        http.route = route,
        url.path = %request.uri().path(),
        request_id = %request_id,
        trace_id = Empty,
        http.response.status_code = Empty,
    );
    crate::telemetry::continue_trace(&span, request.headers());
    span
}

/// Records the response's status on its span; a 5xx marks the span failed (a 4xx is the client's error, not
/// the server's, as the conventions say for server spans).
pub fn record_status<B>(response: &http::Response<B>, _latency: Duration, span: &tracing::Span) {
    span.record("http.response.status_code", response.status().as_u16());
    if response.status().is_server_error() {
        span.record("otel.status_code", "error");
    }
}

/// A method as a span attribute or metric label: the standard ones by name, anything else `_OTHER`, so a
/// client cannot grow the label values without bound.
pub fn method_label(method: &Method) -> &'static str {
    match *method {
        Method::GET => "GET",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::PATCH => "PATCH",
        Method::DELETE => "DELETE",
        Method::HEAD => "HEAD",
        Method::OPTIONS => "OPTIONS",
        Method::CONNECT => "CONNECT",
        Method::TRACE => "TRACE",
        _ => "_OTHER",
    }
}

/// The request metrics of one service, registered on its registry.
pub struct HttpMetrics {
    requests: IntCounterVec,
    duration: HistogramVec,
}

impl HttpMetrics {
    pub fn register(registry: &Registry) -> Arc<Self> {
        let labels = &["method", "route", "status"];
        let requests = IntCounterVec::new(
            Opts::new("http_server_requests_total", "HTTP requests answered, by route and status"),
            labels,
        )
        .expect("valid metric");
        let duration = HistogramVec::new(
            HistogramOpts::new("http_server_request_duration_seconds", "Time to answer an HTTP request")
                .buckets(BUCKETS.to_vec()),
            labels,
        )
        .expect("valid metric");
        registry.register(Box::new(requests.clone())).expect("metric names are unique");
        registry.register(Box::new(duration.clone())).expect("metric names are unique");
        Arc::new(Self { requests, duration })
    }

    fn observe(&self, method: &Method, route: &str, status: StatusCode, elapsed: Duration) {
        let labels = [method_label(method), route, status.as_str()];
        self.requests.with_label_values(&labels).inc();
        self.duration.with_label_values(&labels).observe(elapsed.as_secs_f64());
    }
}

/// `router` with every request counted and timed by [`track_requests`], also those its fallbacks answer.
pub fn counted<S: Clone + Send + Sync + 'static>(router: Router<S>, metrics: Arc<HttpMetrics>) -> Router<S> {
    router.layer(axum::middleware::from_fn_with_state(metrics, track_requests))
}

/// Middleware (`axum::middleware::from_fn_with_state(metrics, track_requests)`, on the router whose routes it
/// counts; see [`counted`]): counts and times every request under its route template; requests no route matched count as
/// `unmatched`.
pub async fn track_requests(State(metrics): State<Arc<HttpMetrics>>, request: Request, next: Next) -> Response {
    let started = Instant::now();
    let method = request.method().clone();
    let route = request.extensions().get::<MatchedPath>().map(|path| path.as_str().to_owned());
    let response = next.run(request).await;
    metrics.observe(&method, route.as_deref().unwrap_or("unmatched"), response.status(), started.elapsed());
    response
}

/// What a service answering HTTP from its own database measures in any case, on one [`registry`]: requests by
/// route and status, and MongoDB commands. A service registers its own metrics on `registry` too, and serves it
/// with [`metrics`]. One per application (not a global registry), so that several
/// applications in one test process keep their own counts.
#[cfg(feature = "mongodb")]
#[derive(Clone)]
pub struct ServiceMetrics {
    pub registry: Registry,
    /// Requests by route and status (`platform::http::observe::track_requests`).
    pub http: std::sync::Arc<HttpMetrics>,
    /// What the MongoDB client's command monitoring feeds.
    pub mongodb: crate::mongo::MongoMetrics,
}

#[cfg(feature = "mongodb")]
impl ServiceMetrics {
    pub fn new() -> Self {
        let registry = crate::metrics::registry();
        let http = HttpMetrics::register(&registry);
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

/// `GET /metrics`, routed with the registry it renders (`get(metrics).with_state(registry)`).
pub async fn metrics(State(registry): State<Registry>) -> Response {
    crate::metrics::exposition(&registry).into_response()
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use axum::{body::Body, routing::get};
    use tower::ServiceExt as _;
    use tracing::{
        Subscriber,
        field::{Field, Visit},
        span::{Attributes, Id, Record},
    };
    use tracing_subscriber::{Layer, layer::Context, prelude::*, registry::LookupSpan};

    use super::*;

    /// Every field recorded on "request" spans, as text.
    #[derive(Clone, Default)]
    struct Fields(Arc<Mutex<Vec<(String, String)>>>);

    impl Visit for Fields {
        fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
            self.0.lock().unwrap().push((field.name().to_owned(), format!("{value:?}").trim_matches('"').to_owned()));
        }
        fn record_str(&mut self, field: &Field, value: &str) {
            self.0.lock().unwrap().push((field.name().to_owned(), value.to_owned()));
        }
    }

    impl<S: Subscriber + for<'a> LookupSpan<'a>> Layer<S> for Fields {
        fn on_new_span(&self, attributes: &Attributes<'_>, _: &Id, _: Context<'_, S>) {
            if attributes.metadata().name() == "request" {
                attributes.record(&mut self.clone());
            }
        }
        fn on_record(&self, _: &Id, values: &Record<'_>, _: Context<'_, S>) {
            values.record(&mut self.clone());
        }
    }

    impl Fields {
        fn get(&self, name: &str) -> Option<String> {
            self.0.lock().unwrap().iter().rev().find(|(field, _)| field == name).map(|(_, value)| value.clone())
        }
    }

    async fn request(router: Router, method: Method, uri: &str) -> (StatusCode, Fields) {
        let fields = Fields::default();
        let _guard = tracing_subscriber::registry().with(fields.clone()).set_default();
        let request = http::Request::builder().method(method).uri(uri).body(Body::empty()).unwrap();
        let response = traced(router).oneshot(request).await.unwrap();
        (response.status(), fields)
    }

    fn app() -> Router {
        Router::new()
            .route("/orders/{id}", get(|| async { "ok" }))
            .route("/broken", get(|| async { StatusCode::SERVICE_UNAVAILABLE }))
    }

    #[tokio::test]
    async fn request_span_follows_the_http_semantic_conventions() {
        let (status, fields) = request(app(), Method::GET, "/orders/42").await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(fields.get("otel.name").as_deref(), Some("GET /orders/{id}"));
        assert_eq!(fields.get("http.request.method").as_deref(), Some("GET"));
        assert_eq!(fields.get("http.route").as_deref(), Some("/orders/{id}"));
        assert_eq!(fields.get("url.path").as_deref(), Some("/orders/42"));
        assert_eq!(fields.get("http.response.status_code").as_deref(), Some("200"));
        assert_eq!(fields.get("otel.status_code"), None, "a success is not an error span");
    }

    #[tokio::test]
    async fn a_5xx_marks_the_request_span_as_an_error() {
        let (status, fields) = request(app(), Method::GET, "/broken").await;
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(fields.get("otel.status_code").as_deref(), Some("error"));
        assert_eq!(fields.get("http.response.status_code").as_deref(), Some("503"));
    }

    #[tokio::test]
    async fn a_4xx_is_not_an_error_span_and_unmatched_requests_have_no_route() {
        let (status, fields) = request(app(), Method::GET, "/nowhere").await;
        assert_eq!(status, StatusCode::NOT_FOUND);
        assert_eq!(fields.get("otel.status_code"), None);
        assert_eq!(fields.get("http.route"), None);
        assert_eq!(fields.get("otel.name").as_deref(), Some("GET"));
    }

    #[tokio::test]
    async fn unknown_methods_are_one_label() {
        let method = Method::from_bytes(b"BREW").unwrap();
        let (_, fields) = request(app(), method, "/orders/1").await;
        assert_eq!(fields.get("http.request.method").as_deref(), Some("_OTHER"));
    }

    #[tokio::test]
    async fn request_metrics_count_by_route_template_and_status() {
        let registry = Registry::new();
        let metrics = HttpMetrics::register(&registry);
        let router = app().layer(axum::middleware::from_fn_with_state(metrics, track_requests));
        for uri in ["/orders/1", "/orders/2", "/broken"] {
            let request = http::Request::builder().uri(uri).body(Body::empty()).unwrap();
            router.clone().oneshot(request).await.unwrap();
        }
        let text = String::from_utf8(crate::metrics::render(&registry)).unwrap();
        let count = |labels: &str| {
            let prefix = format!("http_server_requests_total{{{labels}}} ");
            text.lines().find_map(|line| line.strip_prefix(&prefix)).map(str::to_owned)
        };
        assert_eq!(count(r#"method="GET",route="/orders/{id}",status="200""#).as_deref(), Some("2"), "{text}");
        assert_eq!(count(r#"method="GET",route="/broken",status="503""#).as_deref(), Some("1"), "{text}");
        assert!(text.contains("http_server_request_duration_seconds_bucket"), "{text}");
    }
}
