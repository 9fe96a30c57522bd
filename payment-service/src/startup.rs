//! Application: wiring, gRPC server (payments, health, reflection), listener (port 0 in tests), background
//! workers (storage health, outbox relay, the order events consumer, the metrics side server) and graceful shutdown.
use std::{future::Future, sync::Arc};

use anyhow::Context as _;
use platform::group_commit::Limits;
use tokio::net::TcpListener;
use tonic::{
    service::Routes,
    transport::{Server, ServerTlsConfig, server::TcpIncoming},
};

use crate::{
    auth::JwksVerifier,
    config::Config,
    config::ServerLimits,
    domain::DecisionRule,
    events::{
        OrderEventsConsumer, OutboxRelay,
        producer::EventProducer,
        relay::{self, Lease, RelayInbox},
    },
    grpc::PaymentApi,
    grpc::health::{self, HealthStatus},
    grpc::telemetry::RpcTelemetryLayer,
    metrics::{self, Metrics},
    projection::{OrderProjection, ProcessedOrders},
    proto::{self, payment_service_server::PaymentServiceServer},
    shutdown::{StopSignal, Task, WORKER_DRAIN},
    store::PaymentStore,
    use_cases::payments::{self, Payments, ProjectionReads},
};

/// Requests to this service are a few hundred bytes; anything much larger is not a payment.
const MAX_MESSAGE_BYTES: usize = 16 * 1024;

pub struct Application {
    listener: TcpListener,
    routes: Routes,
    health: HealthStatus,
    metrics: Arc<Metrics>,
    metrics_port: u16,
    /// The gRPC port's TLS (GRPC_TLS_CERT_FILE, GRPC_TLS_KEY_FILE); None: plaintext.
    tls: Option<ServerTlsConfig>,
    storage_monitor: Task,
    outbox_relay: Task,
    order_events: Task,
    metrics_server: Task,
}

impl Application {
    /// Binds the listener and starts the background workers; never fails because MongoDB or Kafka is down
    /// (health reports NOT_SERVING and the workers retry until they answer).
    pub async fn build(config: Config) -> anyhow::Result<Self> {
        let metrics = Arc::new(Metrics::new());
        let client = platform::mongo::connect(
            &config.mongodb.uri.0,
            "payment-service",
            config.mongodb.timeout,
            &metrics.mongodb,
        )
        .await
        .context("MONGODB_URI is not a usable MongoDB connection string")?;
        let database = client.database(&config.mongodb.database);
        let lease = Lease::new(config.replica_id.clone(), config.outbox_lease);
        let store = PaymentStore::new(database.clone()).holding_new_events(lease.clone());
        let projection = OrderProjection::new(&database);
        let relay_inbox = Arc::new(RelayInbox::new(relay::INBOX_LIMIT));
        let relay = OutboxRelay::new(store.clone(), config.kafka.clone(), relay_inbox.clone(), metrics.clone(), lease)
            .context("KAFKA_BROKERS: cannot create the Kafka producer")?;
        let dead_letters =
            EventProducer::new(&config.kafka.connection).context("KAFKA_BROKERS: cannot create the Kafka producer")?;
        // As many calls may wait for their order as may wait for the writer.
        let processed = ProcessedOrders::new(config.write_queue);
        let consumer = OrderEventsConsumer::new(
            config.kafka.clone(),
            &config.replica_id,
            projection.clone(),
            processed.clone(),
            dead_letters,
            metrics.clone(),
        )
        .context("KAFKA_BROKERS: cannot create the Kafka consumer")?;
        let http = platform::tls::http_client(&config.common.tls)?
            .build()
            .context("cannot create the HTTP client for the JWKS")?;
        let limits = Limits { queue: config.write_queue, max_batch: config.write_batch };
        let api = PaymentApi::new(
            Payments::new(
                store.clone(),
                DecisionRule::new(config.decline_above_cents),
                payments::payment_writer(store.clone(), relay_inbox, limits, &metrics),
                ProjectionReads {
                    lookups: payments::lookup_reader(store.clone(), projection, limits, &metrics),
                    processed,
                    order_wait: config.pay_order_wait,
                },
                metrics.clone(),
            ),
            JwksVerifier::new(&config.jwt.jwks_url, &config.jwt.issuer, &config.jwt.audience, http),
        );

        let (reporter, health_server) = tonic_health::server::health_reporter();
        let health = HealthStatus::new(reporter).await;
        // Reflection in both versions: v1, and the v1alpha that many deployed tools (grpcurl before
        // 1.8.8, older Postman and Evans) still speak.
        let reflection = || {
            tonic_reflection::server::Builder::configure()
                .register_encoded_file_descriptor_set(proto::FILE_DESCRIPTOR_SET)
                .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        };
        let reflection_v1 = reflection().build_v1().context("cannot build the gRPC reflection service")?;
        let reflection_v1alpha =
            reflection().build_v1alpha().context("cannot build the gRPC reflection service (v1alpha)")?;
        let payments = PaymentServiceServer::new(api).max_decoding_message_size(MAX_MESSAGE_BYTES);
        let routes =
            Routes::new(health_server).add_service(reflection_v1).add_service(reflection_v1alpha).add_service(payments);

        let tls = match &config.grpc_tls {
            Some(identity) => Some(platform::tls::grpc_server(identity).context("GRPC_TLS_KEY_FILE")?),
            None => None,
        };
        let listener = TcpListener::bind((config.common.host, config.common.port))
            .await
            .with_context(|| format!("cannot listen on {}:{} (HOST/PORT)", config.common.host, config.common.port))?;
        tracing::info!(address = %listener.local_addr()?, "payment-service listening");
        let metrics_listener =
            TcpListener::bind((config.common.host, config.metrics_port)).await.with_context(|| {
                format!("cannot listen on {}:{} (HOST/METRICS_PORT)", config.common.host, config.metrics_port)
            })?;
        let metrics_address = metrics_listener.local_addr()?;
        tracing::info!(address = %metrics_address, "metrics at GET /metrics");
        let storage_monitor = Task::spawn({
            let health = health.clone();
            move |stop| health::watch_storage(store, health, stop)
        });
        let outbox_relay = Task::spawn(move |stop| relay.run(stop));
        let order_events = Task::spawn(move |stop| consumer.run(stop));
        let metrics_server = Task::spawn({
            let router = metrics::router(metrics.clone());
            let limits = config.metrics_server;
            move |stop| serve_metrics(metrics_listener, router, limits, stop)
        });
        Ok(Self {
            listener,
            routes,
            health,
            metrics,
            metrics_port: metrics_address.port(),
            tls,
            storage_monitor,
            outbox_relay,
            order_events,
            metrics_server,
        })
    }

    pub fn port(&self) -> u16 {
        self.listener.local_addr().map(|address| address.port()).unwrap_or(0)
    }

    /// The port of the metrics side server (`GET /metrics`).
    pub fn metrics_port(&self) -> u16 {
        self.metrics_port
    }

    /// Serves until `shutdown` resolves; then reports NOT_SERVING, stops accepting, lets in-flight calls finish,
    /// publishes what is left in the outbox (bounded), flushes the Kafka producer and stops the metrics server
    /// last (it can be scraped while the rest drains).
    pub async fn run_until(self, shutdown: impl Future<Output = ()> + Send + 'static) -> anyhow::Result<()> {
        let Self {
            listener,
            routes,
            health,
            metrics,
            metrics_port: _,
            tls,
            mut storage_monitor,
            mut outbox_relay,
            mut order_events,
            mut metrics_server,
        } = self;
        let incoming = TcpIncoming::from(listener).with_nodelay(Some(true));
        let stop_serving = async move {
            shutdown.await;
            // The monitor must not flip health back to SERVING while calls drain.
            storage_monitor.stop(WORKER_DRAIN).await;
            health.set(false).await;
            tracing::info!("shutting down: no new calls; finishing the ones in flight");
        };
        let mut server = Server::builder();
        if let Some(tls) = tls {
            server = server.tls_config(tls).context("the gRPC server's TLS settings")?;
        }
        let served = server
            .layer(RpcTelemetryLayer::new(metrics))
            .add_routes(routes)
            .serve_with_incoming_shutdown(incoming, stop_serving)
            .await;
        // After the server: calls that finished last may have stored events the relay should still publish.
        outbox_relay.stop(WORKER_DRAIN).await;
        order_events.stop(WORKER_DRAIN).await;
        metrics_server.stop(WORKER_DRAIN).await;
        served.context("the gRPC server failed")?;
        tracing::info!("payment-service stopped");
        Ok(())
    }
}

/// The metrics side server, with the same limits as every HTTP service (a slow client cannot hold a
/// connection), until stopped (then it lets the scrapes in flight finish, up to the drain deadline).
async fn serve_metrics(listener: TcpListener, router: axum::Router, limits: ServerLimits, mut stop: StopSignal) {
    let served = platform::http::server::serve(listener, router, limits, async move { stop.stopped().await }).await;
    if let Err(error) = served {
        tracing::error!(%error, "the metrics server failed");
    }
}
