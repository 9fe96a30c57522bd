//! Application: state, router, listener (port 0 in tests), background workers (bootstrap, outbox
//! relay, lifecycle consumer) and graceful shutdown.
use std::{future::Future, sync::Arc, time::Duration};

use anyhow::Context as _;
use axum::Router;
use platform::{
    group_commit::Limits,
    mongo::{CLAIM_INTERVAL, Lease, PublishedByReads, RoundSchedule},
};
use tokio::net::TcpListener;
use tower_http::limit::RequestBodyLimitLayer;

use platform::shutdown::{StopSignal, WORKER_DRAIN, Workers, retry_until_ok};

use crate::{
    auth::JwksVerifier,
    config::{Config, ServerLimits, Topics},
    events::{
        consumer::LifecycleConsumer,
        kafka::{self, TopicSetup},
        relay::{OutboxRelay, PUBLISHED_REMEMBERED, REVIVE_INTERVAL, RelayInbox},
    },
    metrics::Metrics,
    product_client::ProductClient,
    routes,
    state::{AppState, Inner},
    store::OrderStore,
    use_cases::place_order::PlaceOrder,
};

const MAX_BODY_BYTES: usize = 16 * 1024;

pub struct Application {
    listener: TcpListener,
    router: Router,
    limits: ServerLimits,
    state: AppState,
    workers: Workers,
}

impl Application {
    /// Binds the listener and starts the workers; MongoDB or Kafka being down does not fail
    /// the build: the workers retry with backoff and the service reports not-ready meanwhile.
    pub async fn build(config: Config) -> anyhow::Result<Self> {
        let metrics = Metrics::new();
        let client =
            platform::mongo::connect(&config.mongodb.uri.0, "order-service", config.mongodb.timeout, &metrics.mongodb)
                .await
                .context("MONGODB_URI is not a usable MongoDB connection string")?;
        // Idle connections are dropped before the product-service's HEADER_READ_TIMEOUT_MS (10 s by
        // default), which closes them too: never reuse one just as the service closes it.
        let http = platform::tls::http_client(&config.common.tls)?.pool_idle_timeout(Duration::from_secs(5)).build()?;
        let producer = Arc::new(kafka::producer(&config.kafka).context("KAFKA_BROKERS")?);
        let consumer = kafka::consumer(
            &config.kafka,
            &config.kafka_consumer_group,
            &config.replica_id,
            metrics.kafka_consumer_lag.clone(),
            metrics.kafka_consumer_assigned.clone(),
        )
        .context("KAFKA_BROKERS")?;
        let store = OrderStore::new(client.database(&config.mongodb.database))
            .holding_new_events(Lease::new(config.replica_id.clone(), config.outbox_lease));
        let relay_inbox = Arc::new(RelayInbox::default());
        let place_order = PlaceOrder::new(
            store.clone(),
            Limits { queue: config.write_queue, max_batch: config.write_batch },
            ProductClient::new(
                http.clone(),
                &config.product_service_url,
                config.product_service_timeout,
                metrics.product_lookups_shared.clone(),
            ),
            config.topics.new_order.clone(),
            config.idempotency_ttl,
            relay_inbox.clone(),
            metrics.clone(),
        );
        let state = AppState::new(Inner {
            store,
            place_order,
            verifier: JwksVerifier::new(&config.jwks_url, &config.jwt_issuer, &config.jwt_audience, http),
            producer: producer.clone(),
            topics: config.topics.clone(),
            relay_inbox,
            metrics: metrics.clone(),
        });

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
            inbox: state.relay_inbox.clone(),
            poll_interval: config.outbox_poll_interval,
            metrics: metrics.clone(),
            owner: config.replica_id.clone(),
            lease: config.outbox_lease,
            claims: RoundSchedule::every(CLAIM_INTERVAL),
            published_lately: PublishedByReads::new(PUBLISHED_REMEMBERED),
            revivals: RoundSchedule::every(REVIVE_INTERVAL),
            retry: Vec::new(),
            new_order_topic: config.topics.new_order.clone(),
            started: false,
        };
        let lifecycle = LifecycleConsumer {
            consumer,
            store: state.store.clone(),
            producer,
            topics: config.topics.clone(),
            topic_setup: topic_setup.clone(),
            last_repair: Default::default(),
            metrics,
        };
        let workers = Workers::new();
        workers.spawn(bootstrap_mongodb(state.clone(), workers.signal()));
        workers.spawn(relay.run(workers.signal()));
        workers.spawn(bootstrap_kafka_then_consume(state.clone(), topic_setup, lifecycle, workers.signal()));

        let listener = TcpListener::bind((config.common.host, config.common.port))
            .await
            .with_context(|| format!("cannot listen on {}:{} (HOST/PORT)", config.common.host, config.common.port))?;
        tracing::info!(address = %listener.local_addr()?, "order-service listening");
        let router = with_middleware(routes::router(state.clone()));
        Ok(Self { listener, router, limits: config.server, state, workers })
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
        self.workers.stop(WORKER_DRAIN).await;
        served?;
        tracing::info!("order-service stopped");
        Ok(())
    }
}

fn with_middleware(router: Router) -> Router {
    platform::http::observe::traced(router.layer(RequestBodyLimitLayer::new(MAX_BODY_BYTES)))
}

async fn bootstrap_mongodb(state: AppState, mut stop: StopSignal) {
    if retry_until_ok("MongoDB", &mut stop, || state.store.ensure_indexes()).await {
        state.mark_bootstrapped();
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
    mut stop: StopSignal,
) {
    if retry_until_ok("Kafka", &mut stop, || topic_setup.ensure()).await {
        state.mark_topics_ready();
        tracing::info!("connected to Kafka; topics ready");
        consumer.run(stop).await;
    }
}
