//! Application: state, schema, router, listener (port 0 in tests), background bootstrap, graceful shutdown.
use std::{
    future::Future,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::Duration,
};

use anyhow::Context as _;
use axum::{
    Router,
    extract::DefaultBodyLimit,
    http::{Request, Response},
};
use tokio::{net::TcpListener, task::JoinHandle};
use tower::ServiceBuilder;
use tower_http::{
    request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer},
    trace::TraceLayer,
};

use crate::{
    auth::JwksVerifier,
    backoff::Backoff,
    catalogue::Catalogue,
    config::{Config, ServerLimits},
    error::ServiceError,
    graphql,
    metrics::Metrics,
    routes::{self, GraphqlEndpoint},
    seed::SEED_PRODUCTS,
    store::{self, ProductStore},
};

#[derive(Clone)]
pub struct AppState(Arc<Inner>);

pub struct Inner {
    pub catalogue: Catalogue,
    bootstrapped: AtomicBool,
}

impl std::ops::Deref for AppState {
    type Target = Inner;
    fn deref(&self) -> &Inner {
        &self.0
    }
}

impl AppState {
    /// True once the indexes and the seed products exist: before that, a listing would be incomplete and a
    /// new product could be given a seed's id.
    pub fn is_bootstrapped(&self) -> bool {
        self.bootstrapped.load(Ordering::Acquire)
    }

    pub fn require_bootstrapped(&self) -> Result<(), ServiceError> {
        if self.is_bootstrapped() { Ok(()) } else { Err(ServiceError::Unavailable) }
    }
}

pub struct Application {
    listener: TcpListener,
    router: Router,
    limits: ServerLimits,
    bootstrap: JoinHandle<()>,
}

impl Application {
    /// Binds the listener and starts connecting to MongoDB in the background; never fails
    /// because MongoDB is down (the service reports not-ready until it answers).
    pub async fn build(config: Config) -> anyhow::Result<Self> {
        let metrics = Arc::new(Metrics::new());
        let client = store::connect(
            &config.mongodb_uri.0,
            "product-service",
            config.mongodb_timeout,
            metrics.mongodb_command_duration(),
        )
        .await
        .context("MONGODB_URI is not a usable MongoDB connection string")?;
        let store = ProductStore::new(client.database(&config.mongodb_database));
        let state = AppState(Arc::new(Inner {
            catalogue: Catalogue::new(store, config.product_cache_ttl),
            bootstrapped: AtomicBool::new(false),
        }));
        let verifier = JwksVerifier::new(
            config.jwks_url.0.clone(),
            &config.jwt_issuer,
            &config.jwt_audience,
            platform::tls::http_client(&config.common.tls)?.build()?,
        );
        let endpoint = GraphqlEndpoint {
            schema: graphql::build_schema(state.clone(), &config.graphql),
            verifier: Arc::new(verifier),
            max_body_bytes: config.graphql.max_body_bytes,
        };
        let bootstrap = tokio::spawn(bootstrap(state.clone()));
        let listener = TcpListener::bind((config.common.host, config.common.port))
            .await
            .with_context(|| format!("cannot listen on {}:{} (HOST/PORT)", config.common.host, config.common.port))?;
        tracing::info!(address = %listener.local_addr()?, "product-service listening");
        let router = with_middleware(routes::router(state, endpoint, metrics), config.graphql.max_body_bytes);
        Ok(Self { listener, router, limits: config.server, bootstrap })
    }

    pub fn port(&self) -> u16 {
        self.listener.local_addr().map(|address| address.port()).unwrap_or(0)
    }

    /// Serves until `shutdown` resolves, then stops accepting and lets in-flight requests finish
    /// (for at most SHUTDOWN_DRAIN_MS).
    pub async fn run_until(self, shutdown: impl Future<Output = ()> + Send + 'static) -> anyhow::Result<()> {
        platform::http::server::serve(self.listener, self.router, self.limits, shutdown).await?;
        self.bootstrap.abort();
        tracing::info!("product-service stopped");
        Ok(())
    }
}

fn with_middleware(router: Router, max_body_bytes: usize) -> Router {
    router.layer(
        ServiceBuilder::new()
            .layer(SetRequestIdLayer::x_request_id(MakeRequestUuid))
            .layer(TraceLayer::new_for_http().make_span_with(request_span).on_response(record_status))
            .layer(PropagateRequestIdLayer::x_request_id())
            // Applied by the body extractor, which turns an oversized body into the handler's JSON 413.
            .layer(DefaultBodyLimit::max(max_body_bytes)),
    )
}

/// One span per request, carrying the request id so every log line of the request can be found by it, and
/// a child of the caller's trace when it sent `traceparent`. `POST /graphql` records the operation's name
/// once the body is read (see `routes::graphql`).
fn request_span<B>(request: &Request<B>) -> tracing::Span {
    let request_id = request.headers().get("x-request-id").and_then(|value| value.to_str().ok()).unwrap_or("-");
    let span = tracing::info_span!(
        "request",
        otel.name = %span_name(request),
        otel.kind = "server",
        method = %request.method(),
        path = %request.uri().path(),
        request_id = %request_id,
        trace_id = tracing::field::Empty,
        graphql.operation.name = tracing::field::Empty,
        http.response.status_code = tracing::field::Empty,
    );
    crate::telemetry::continue_trace(&span, request.headers());
    span
}

/// `POST /graphql`: the route template, never the raw path (a client could vary it without bound,
/// defeating grouping in the trace UI); unmatched requests are named by their method alone.
fn span_name<B>(request: &Request<B>) -> String {
    match request.extensions().get::<axum::extract::MatchedPath>() {
        Some(route) => format!("{} {}", request.method(), route.as_str()),
        None => request.method().to_string(),
    }
}

fn record_status<B>(response: &Response<B>, _latency: Duration, span: &tracing::Span) {
    span.record("http.response.status_code", response.status().as_u16());
}

/// Creates the indexes and seeds a fresh catalogue, retrying with backoff until MongoDB answers.
async fn bootstrap(state: AppState) {
    let mut backoff = Backoff::new(Duration::from_millis(100), Duration::from_secs(5));
    loop {
        match bootstrap_once(&state).await {
            Ok(()) => {
                state.bootstrapped.store(true, Ordering::Release);
                tracing::info!("connected to MongoDB; indexes and catalogue ready");
                return;
            }
            Err(error) => {
                let delay = backoff.next_delay();
                let retry_in_ms = u64::try_from(delay.as_millis()).unwrap_or(u64::MAX);
                tracing::warn!(error = %format!("{error:#}"), retry_in_ms, "MongoDB not ready");
                tokio::time::sleep(delay).await;
            }
        }
    }
}

async fn bootstrap_once(state: &AppState) -> anyhow::Result<()> {
    let store = state.catalogue.store();
    store.ensure_indexes().await?;
    if store.seed_once(&SEED_PRODUCTS).await? {
        tracing::info!(count = SEED_PRODUCTS.len(), "seeded the catalogue");
    }
    Ok(())
}
