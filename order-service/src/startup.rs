//! Application: state, router, listener (port 0 in tests), background workers (bootstrap, outbox
//! relay, lifecycle consumer) and graceful shutdown.
use std::{
    future::Future,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::Duration,
};

use anyhow::Context as _;
use axum::{Router, http::Request};
use platform::group_commit::{GroupCommit, Limits};
use rdkafka::producer::FutureProducer;
use tokio::{
    net::TcpListener,
    sync::{Notify, watch},
    task::JoinHandle,
};
use tower::ServiceBuilder;
use tower_http::{
    limit::RequestBodyLimitLayer,
    request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer},
    trace::TraceLayer,
};
use tracing::field::Empty;

use crate::{
    auth::JwksVerifier,
    backoff::Backoff,
    catalog::ProductCatalog,
    config::{Config, ServerLimits, Topics},
    error::ApiError,
    events::{
        consumer::{LifecycleConsumer, TopicSetup},
        kafka,
        relay::OutboxRelay,
    },
    metrics::Metrics,
    routes,
    store::{self, OrderDocument, OrderStore, StoreError},
};

/// New orders, written by one group-commit writer (`insert_many` per batch).
pub type OrderWrites = GroupCommit<OrderDocument, Result<(), StoreError>>;
/// Idempotency-key lookups, answered by one group-commit reader (one `find` per batch).
pub type ScopeLookups = GroupCommit<String, Result<Option<OrderDocument>, StoreError>>;

const MAX_BODY_BYTES: usize = 16 * 1024;

#[derive(Clone)]
pub struct AppState(Arc<Inner>);

pub struct Inner {
    pub store: OrderStore,
    pub order_writes: OrderWrites,
    pub scope_lookups: ScopeLookups,
    pub catalog: ProductCatalog,
    pub verifier: JwksVerifier,
    pub producer: FutureProducer,
    pub topics: Topics,
    pub relay_wake: Arc<Notify>,
    pub idempotency_ttl: Duration,
    pub metrics: Metrics,
    bootstrapped: AtomicBool,
    topics_ready: AtomicBool,
}

impl std::ops::Deref for AppState {
    type Target = Inner;
    fn deref(&self) -> &Inner {
        &self.0
    }
}

impl AppState {
    /// True once the indexes exist: before that, idempotency keys are not guaranteed unique.
    pub fn is_bootstrapped(&self) -> bool {
        self.bootstrapped.load(Ordering::Acquire)
    }

    pub fn topics_ready(&self) -> bool {
        self.topics_ready.load(Ordering::Acquire)
    }

    pub fn require_bootstrapped(&self) -> Result<(), ApiError> {
        if self.is_bootstrapped() { Ok(()) } else { Err(ApiError::unavailable("Order storage is starting up")) }
    }
}

pub struct Application {
    listener: TcpListener,
    router: Router,
    limits: ServerLimits,
    state: AppState,
    workers: Workers,
}

struct Workers {
    stop: watch::Sender<bool>,
    handles: Vec<JoinHandle<()>>,
}

impl Application {
    /// Binds the listener and starts the workers; MongoDB or Kafka being down does not fail
    /// the build: the workers retry with backoff and the service reports not-ready meanwhile.
    pub async fn build(config: Config) -> anyhow::Result<Self> {
        let metrics = Metrics::new();
        let client = store::connect(
            &config.mongodb_uri.0,
            "order-service",
            config.mongodb_timeout,
            metrics.mongodb_commands.clone(),
            metrics.mongodb_commands_issued.clone(),
        )
        .await
        .context("MONGODB_URI is not a usable MongoDB connection string")?;
        // Idle connections are dropped before the product-service's HEADER_READ_TIMEOUT_MS (10 s by
        // default), which closes them too: never reuse one just as the service closes it.
        let http = platform::tls::http_client(&config.common.tls)?.pool_idle_timeout(Duration::from_secs(5)).build()?;
        let producer = kafka::producer(&config.kafka).context("KAFKA_BROKERS")?;
        let consumer = kafka::consumer(
            &config.kafka,
            &config.kafka_consumer_group,
            &config.replica_id,
            metrics.kafka_consumer_lag.clone(),
            metrics.kafka_consumer_assigned.clone(),
        )
        .context("KAFKA_BROKERS")?;
        let store = OrderStore::new(client.database(&config.mongodb_database));
        let limits = Limits { queue: config.write_queue, max_batch: config.write_batch };
        let writer = store.clone();
        let order_writes = GroupCommit::spawn(
            limits,
            move |orders: Vec<OrderDocument>| {
                let store = writer.clone();
                async move { store.insert_batch(&orders).await }
            },
            metrics.batch_observer("orders"),
        );
        let reader = store.clone();
        let scope_lookups = GroupCommit::spawn(
            limits,
            move |scopes: Vec<String>| {
                let store = reader.clone();
                async move {
                    match store.find_by_idempotency_scopes(&scopes).await {
                        // Several callers may ask for one scope (retries of one key): each gets it.
                        Ok(found) => scopes.iter().map(|scope| Ok(found.get(scope).cloned())).collect(),
                        Err(error) => vec![Err(error); scopes.len()],
                    }
                }
            },
            metrics.batch_observer("idempotency_lookups"),
        );
        let state = AppState(Arc::new(Inner {
            store,
            order_writes,
            scope_lookups,
            catalog: ProductCatalog::new(http.clone(), &config.product_service_url, config.product_service_timeout),
            verifier: JwksVerifier::new(&config.jwks_url, &config.jwt_issuer, &config.jwt_audience, http),
            producer: producer.clone(),
            topics: config.topics.clone(),
            relay_wake: Arc::new(Notify::new()),
            idempotency_ttl: config.idempotency_ttl,
            metrics: metrics.clone(),
            bootstrapped: AtomicBool::new(false),
            topics_ready: AtomicBool::new(false),
        }));

        let (stop, stopped) = watch::channel(false);
        let topic_setup = TopicSetup {
            kafka: config.kafka.clone(),
            names: topic_names(&config.topics),
            partitions: config.kafka_partitions,
            replication: config.kafka_replication_factor,
        };
        let relay = OutboxRelay {
            store: state.store.clone(),
            producer: producer.clone(),
            topic_setup: topic_setup.clone(),
            wake: state.relay_wake.clone(),
            poll_interval: config.outbox_poll_interval,
            metrics: metrics.clone(),
            owner: config.replica_id.clone(),
            lease: config.outbox_lease,
        };
        let lifecycle = LifecycleConsumer {
            consumer,
            store: state.store.clone(),
            producer,
            topics: config.topics.clone(),
            relay_wake: state.relay_wake.clone(),
            topic_setup: topic_setup.clone(),
            metrics,
        };
        let handles = vec![
            tokio::spawn(bootstrap_mongodb(state.clone(), stopped.clone())),
            tokio::spawn(relay.run(stopped.clone())),
            tokio::spawn(bootstrap_kafka_then_consume(state.clone(), topic_setup, lifecycle, stopped)),
        ];

        let listener = TcpListener::bind((config.common.host, config.common.port))
            .await
            .with_context(|| format!("cannot listen on {}:{} (HOST/PORT)", config.common.host, config.common.port))?;
        tracing::info!(address = %listener.local_addr()?, "order-service listening");
        let router = with_middleware(routes::router(state.clone()));
        Ok(Self { listener, router, limits: config.server, state, workers: Workers { stop, handles } })
    }

    pub fn port(&self) -> u16 {
        self.listener.local_addr().map(|address| address.port()).unwrap_or(0)
    }

    pub fn state(&self) -> AppState {
        self.state.clone()
    }

    /// Serves until `shutdown` resolves: stops accepting, finishes in-flight requests (for at most
    /// SHUTDOWN_DRAIN_MS), then stops the workers (the consumer commits its offsets, the relay
    /// flushes the producer).
    pub async fn run_until(self, shutdown: impl Future<Output = ()> + Send + 'static) -> anyhow::Result<()> {
        let served = platform::http::server::serve(self.listener, self.router, self.limits, shutdown).await;
        let _ = self.workers.stop.send(true);
        for handle in self.workers.handles {
            if tokio::time::timeout(Duration::from_secs(15), handle).await.is_err() {
                tracing::warn!("a worker did not stop in time");
            }
        }
        served?;
        tracing::info!("order-service stopped");
        Ok(())
    }
}

fn with_middleware(router: Router) -> Router {
    router.layer(
        ServiceBuilder::new()
            .layer(SetRequestIdLayer::x_request_id(MakeRequestUuid))
            .layer(TraceLayer::new_for_http().make_span_with(request_span).on_response(record_status))
            .layer(PropagateRequestIdLayer::x_request_id())
            .layer(RequestBodyLimitLayer::new(MAX_BODY_BYTES)),
    )
}

/// The server span of one request: a child of the caller's trace when it sent `traceparent`.
fn request_span<B>(request: &Request<B>) -> tracing::Span {
    let request_id = request.headers().get("x-request-id").and_then(|value| value.to_str().ok()).unwrap_or("-");
    let span = tracing::info_span!(
        "request",
        otel.name = %span_name(request),
        otel.kind = "server",
        method = %request.method(),
        path = %request.uri().path(),
        request_id = %request_id,
        trace_id = Empty,
        http.response.status_code = Empty,
    );
    crate::telemetry::continue_trace(&span, request.headers());
    span
}

/// `GET /orders/{id}`: the route template, never the raw path (one span name per order would
/// defeat grouping in the trace UI); unmatched requests are named by their method alone.
fn span_name<B>(request: &Request<B>) -> String {
    match request.extensions().get::<axum::extract::MatchedPath>() {
        Some(route) => format!("{} {}", request.method(), route.as_str()),
        None => request.method().to_string(),
    }
}

fn record_status<B>(response: &axum::http::Response<B>, _latency: Duration, span: &tracing::Span) {
    span.record("http.response.status_code", response.status().as_u16());
}

/// Retries `attempt` with capped, jittered backoff until it succeeds or the app stops.
async fn retry_until_ok<F, Fut, E>(what: &str, mut stopped: watch::Receiver<bool>, mut attempt: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<(), E>>,
    E: std::fmt::Display,
{
    let mut backoff = Backoff::new(Duration::from_millis(100), Duration::from_secs(5));
    loop {
        match attempt().await {
            Ok(()) => return true,
            Err(error) => {
                let delay = backoff.next_delay();
                tracing::warn!(%error, retry_in_ms = delay.as_millis() as u64, "{what} not ready");
                tokio::select! {
                    () = tokio::time::sleep(delay) => {}
                    _ = stopped.changed() => return false,
                }
            }
        }
    }
}

async fn bootstrap_mongodb(state: AppState, stopped: watch::Receiver<bool>) {
    if retry_until_ok("MongoDB", stopped, || state.store.ensure_indexes()).await {
        state.bootstrapped.store(true, Ordering::Release);
        tracing::info!("connected to MongoDB; indexes ready");
    }
}

/// The topics this service writes or reads, dead letters included.
fn topic_names(topics: &Topics) -> Vec<String> {
    vec![
        topics.new_order.clone(),
        topics.order_processed.clone(),
        topics.payment_processed.clone(),
        Topics::dead_letter(&topics.new_order),
        Topics::dead_letter(&topics.payment_processed),
    ]
}

/// Creates the topics this service owns or reads, then runs the lifecycle consumer.
async fn bootstrap_kafka_then_consume(
    state: AppState,
    topic_setup: TopicSetup,
    consumer: LifecycleConsumer,
    stopped: watch::Receiver<bool>,
) {
    if retry_until_ok("Kafka", stopped.clone(), || topic_setup.ensure()).await {
        state.topics_ready.store(true, Ordering::Release);
        tracing::info!("connected to Kafka; topics ready");
        consumer.run(stopped).await;
    }
}
