//! Spawns the real payment-service on port 0 against the engines started by `scripts/engines.py`
//! (MONGODB_URI, KAFKA_BROKERS). Every app gets its own database, topic prefix and token issuer, so tests run
//! in parallel without seeing each other's data.
#![allow(dead_code)]

pub mod kafka;

use std::{collections::HashMap, time::Duration};

use mongodb::bson::{Document, doc};
use payment_service::{
    config::Config,
    domain::PaymentStatus,
    events::PaymentProcessed,
    projection::{KnownOrder, OrderProjection, OrderStage},
    proto::{GetPaymentRequest, PayRequest, PayResponse, Payment, payment_service_client::PaymentServiceClient},
    startup::Application,
    store::{NewPayment, PaymentDocument, PendingEvent},
};
use tokio::{sync::oneshot, task::JoinHandle};
use tonic::{
    Request, Response, Status,
    transport::{Channel, Endpoint},
};
pub use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::{HealthCheckRequest, health_client::HealthClient};

pub use test_support::{Issuer, closed_port, engines::PrivateBroker};

pub const PAYMENT_SERVICE: &str = "payment.v1.PaymentService";

pub fn mongodb_uri() -> String {
    test_support::env("MONGODB_URI")
}

pub fn unique(prefix: &str) -> String {
    format!("{prefix}{}", uuid::Uuid::new_v4().simple())
}

pub struct TestApp {
    pub address: String,
    /// The port of the metrics side server.
    pub metrics_port: u16,
    pub database: String,
    pub mongodb_uri: String,
    pub brokers: String,
    /// The full name of the `payment-processed` topic (with this app's prefix).
    pub topic: String,
    /// The full names of the order topics the app's projection consumer reads.
    pub new_order_topic: String,
    pub order_processed_topic: String,
    /// The consumer group of the app's projection consumer.
    pub group: String,
    /// Plays the user-service: its JWKS is this app's JWKS_URL.
    pub issuer: Issuer,
    shutdown: Option<oneshot::Sender<()>>,
    handle: Option<JoinHandle<anyhow::Result<()>>>,
}

/// Starts the app with test defaults overridden by `settings`, and waits until its health is SERVING.
pub async fn spawn(settings: &[(&str, &str)]) -> TestApp {
    let app = spawn_unready(settings).await;
    app.wait_for_health(ServingStatus::Serving).await;
    app
}

/// Like [`spawn`], on `broker` instead of the shared one.
pub async fn spawn_on(broker: &PrivateBroker) -> TestApp {
    let settings = broker.service_settings();
    let pairs: Vec<(&str, &str)> = settings.iter().map(|(name, value)| (*name, value.as_str())).collect();
    spawn(&pairs).await
}

pub async fn spawn_unready(settings: &[(&str, &str)]) -> TestApp {
    spawn_with_jwks_delay(settings, Duration::ZERO).await
}

/// Like [`spawn_unready`], with the JWKS answering only after `jwks_delay` (to keep calls in flight).
pub async fn spawn_with_jwks_delay(settings: &[(&str, &str)], jwks_delay: Duration) -> TestApp {
    test_support::logs_on_request("payment-service");
    let issuer = Issuer::start_answering_after(jwks_delay).await;
    let jwks_url = issuer.jwks_url();
    let uri = mongodb_uri();
    let shared_broker = test_support::engines::shared_broker_settings();
    let (database, prefix) = (unique("payments_test_"), unique("t") + ".");
    // A group of its own: apps that share one would rebalance each other's partitions away.
    let group = unique("payment-service-");
    let mut source: HashMap<&str, &str> = HashMap::from([
        ("HOST", "127.0.0.1"),
        ("PORT", "0"),
        ("METRICS_PORT", "0"),
        ("MONGODB_URI", uri.as_str()),
        ("MONGODB_DATABASE", database.as_str()),
        ("KAFKA_TOPIC_PREFIX", prefix.as_str()),
        ("KAFKA_CONSUMER_GROUP", group.as_str()),
        ("JWKS_URL", jwks_url.as_str()),
    ]);
    source.extend(shared_broker.iter().map(|(name, value)| (*name, value.as_str())));
    source.extend(settings.iter().copied());
    let config = Config::from_source(&source).expect("test configuration is valid");
    let topic = config.kafka.payment_processed_topic.clone();
    let (new_order_topic, order_processed_topic) =
        (config.kafka.new_order_topic.clone(), config.kafka.order_processed_topic.clone());
    let (mongodb_uri, brokers) = (config.mongodb.uri.0.clone(), config.kafka.connection.brokers.clone());
    let database = config.mongodb.database.clone();
    let app = Application::build(config).await.expect("the app builds");
    let address = format!("http://127.0.0.1:{}", app.port());
    let metrics_port = app.metrics_port();
    let (shutdown, stopped) = oneshot::channel::<()>();
    let handle = tokio::spawn(app.run_until(async {
        let _ = stopped.await;
    }));
    TestApp {
        address,
        metrics_port,
        database,
        mongodb_uri,
        brokers,
        topic,
        new_order_topic,
        order_processed_topic,
        group: group.clone(),
        issuer,
        shutdown: Some(shutdown),
        handle: Some(handle),
    }
}

/// A successful payment of `order_id` (1,000 cents, by "alice") and its `payment-processed` event, as a `Pay` call
/// writes them.
pub fn new_payment(order_id: &str) -> NewPayment {
    let id = uuid::Uuid::now_v7().to_string();
    let data = PaymentProcessed {
        payment_id: id.clone(),
        order_id: order_id.to_owned(),
        user_id: "alice".into(),
        amount_cents: 1_000,
        currency: "EUR".into(),
        status: PaymentStatus::Success,
    };
    let event = PendingEvent {
        payment_id: id.clone(),
        order_id: order_id.to_owned(),
        outbox_event: serde_json::to_string(&data.event("2026-01-01T00:00:00.000Z".into())).expect("an envelope"),
        request_id: None,
        traceparent: None,
        tracestate: None,
    };
    let payment = PaymentDocument {
        id,
        order_id: order_id.to_owned(),
        user_id: "alice".into(),
        amount_cents: 1_000,
        currency: "EUR".into(),
        status: PaymentStatus::Success,
        reason: String::new(),
        idempotency_scope: format!("alice:{order_id}"),
        success_order_id: Some(order_id.to_owned()),
        created_at: mongodb::bson::DateTime::now(),
        request_id: None,
        traceparent: None,
        tracestate: None,
    };
    NewPayment { payment, event: Some(event) }
}

/// A request carrying `authorization: Bearer <token>`.
pub fn with_token<T>(message: T, token: &str) -> Request<T> {
    let mut request = Request::new(message);
    request.metadata_mut().insert("authorization", format!("Bearer {token}").parse().expect("ASCII metadata"));
    request
}

pub fn pay_request(order_id: &str, user_id: &str, amount_cents: i64, key: &str) -> PayRequest {
    PayRequest {
        order_id: order_id.to_owned(),
        user_id: user_id.to_owned(),
        amount_cents,
        currency: "EUR".to_owned(),
        idempotency_key: key.to_owned(),
    }
}

impl TestApp {
    pub async fn channel(&self) -> Channel {
        Endpoint::from_shared(self.address.clone()).expect("a valid address").connect().await.expect("connected")
    }

    pub async fn client(&self) -> PaymentServiceClient<Channel> {
        PaymentServiceClient::new(self.channel().await)
    }

    /// `Pay` as the customer `user_id`, for themselves.
    pub async fn pay(
        &self,
        order_id: &str,
        user_id: &str,
        amount_cents: i64,
        key: &str,
    ) -> Result<PayResponse, Status> {
        let request =
            with_token(pay_request(order_id, user_id, amount_cents, key), &self.issuer.token_for(user_id, "customer"));
        self.client().await.pay(request).await.map(Response::into_inner)
    }

    pub async fn get_payment(&self, payment_id: &str, token: &str) -> Result<Payment, Status> {
        let request = with_token(GetPaymentRequest { payment_id: payment_id.to_owned() }, token);
        self.client().await.get_payment(request).await.map(Response::into_inner)
    }

    pub async fn health(&self, service: &str) -> ServingStatus {
        let response = HealthClient::new(self.channel().await)
            .check(HealthCheckRequest { service: service.to_owned() })
            .await
            .expect("the health service answers");
        ServingStatus::try_from(response.into_inner().status).expect("a known status")
    }

    /// Waits (up to 30 s) until both the server and the payment service report `status`.
    pub async fn wait_for_health(&self, status: ServingStatus) {
        for _ in 0..600 {
            if self.health("").await == status && self.health(PAYMENT_SERVICE).await == status {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("payment-service at {} never reported {status:?}", self.address);
    }

    /// GET `path` on the metrics side server: status and body.
    pub async fn get_metrics_path(&self, path: &str) -> (u16, String) {
        let url = format!("http://127.0.0.1:{}{path}", self.metrics_port);
        let response = platform::tls::http_client(&Default::default())
            .expect("rustls with the web roots")
            .build()
            .expect("an HTTP client")
            .get(&url)
            .send()
            .await
            .expect("the metrics server answers");
        let status = response.status().as_u16();
        (status, response.text().await.expect("a text body"))
    }

    /// The value of one series in the Prometheus exposition (0 when absent).
    pub async fn metric(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        let (status, text) = self.get_metrics_path("/metrics").await;
        assert_eq!(status, 200, "{text}");
        metric_value(&text, name, labels).unwrap_or(0.0)
    }

    /// Polls the metric (every 50 ms, up to `wait`) until `done` holds for its value, which is returned;
    /// panics with the last value otherwise.
    pub async fn wait_for_metric(
        &self,
        name: &str,
        labels: &[(&str, &str)],
        wait: Duration,
        done: impl Fn(f64) -> bool,
    ) -> f64 {
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            let value = self.metric(name, labels).await;
            if done(value) {
                return value;
            }
            assert!(tokio::time::Instant::now() < deadline, "{name}{labels:?} is still {value} after {wait:?}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// The app's own record of orders (its projection), as the consumer would have built it from the order events:
    /// written straight into its database, for tests about `Pay` rather than about the consumer (those produce real
    /// events; see `tests/projection.rs`).
    pub async fn projection(&self) -> OrderProjection {
        let client = mongodb::Client::with_uri_str(&self.mongodb_uri).await.expect("a MongoDB client");
        OrderProjection::new(&client.database(&self.database))
    }

    /// A new order of `user_id`'s, processed (payable) for `total_cents` EUR, known to the app; its id.
    pub async fn known_order(&self, user_id: &str, total_cents: i64) -> String {
        self.known_order_at(user_id, total_cents, OrderStage::Processed).await
    }

    /// A new order known to the app at `stage`; its id.
    pub async fn known_order_at(&self, user_id: &str, total_cents: i64, stage: OrderStage) -> String {
        let order_id = uuid::Uuid::now_v7().to_string();
        self.know_order(&order_id, user_id, total_cents, stage).await;
        order_id
    }

    /// Records the order `order_id` in the app's projection.
    pub async fn know_order(&self, order_id: &str, user_id: &str, total_cents: i64, stage: OrderStage) {
        let order = KnownOrder::new(
            order_id.to_owned(),
            user_id.to_owned(),
            total_cents,
            "EUR".to_owned(),
            stage,
            unique("event-"),
        );
        self.projection().await.apply(&order).await.expect("the order is recorded");
    }

    /// Waits (up to 30 s) until the app's projection knows `order_id` at `stage` or later; what it knows then.
    pub async fn wait_for_known_order(&self, order_id: &str, stage: OrderStage) -> KnownOrder {
        let projection = self.projection().await;
        for _ in 0..300 {
            if let Some(order) = projection.find(order_id).await.expect("the projection answers")
                && order.stage >= stage
            {
                return order;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("order {order_id} never reached {stage:?} in the payment-service's projection");
    }

    /// The raw stored documents of the `payments` collection matching `filter`.
    pub async fn stored_payments(&self, filter: Document) -> Vec<Document> {
        use futures::TryStreamExt as _;
        let client = mongodb::Client::with_uri_str(&self.mongodb_uri).await.expect("a MongoDB client");
        let cursor = client.database(&self.database).collection::<Document>("payments").find(filter).await;
        cursor.expect("a cursor").try_collect().await.expect("documents")
    }

    /// The raw entries of the outbox (`payment_outbox`) whose events still wait to be published.
    pub async fn waiting_events(&self) -> Vec<Document> {
        use futures::TryStreamExt as _;
        let client = mongodb::Client::with_uri_str(&self.mongodb_uri).await.expect("a MongoDB client");
        let outbox = client.database(&self.database).collection::<Document>("payment_outbox");
        let cursor = outbox.find(doc! { "outboxPending": true }).await;
        cursor.expect("a cursor").try_collect().await.expect("documents")
    }

    pub async fn stored_payments_for_order(&self, order_id: &str) -> Vec<Document> {
        self.stored_payments(doc! { "orderId": order_id }).await
    }

    /// Graceful shutdown, waiting for `run_until` to return (at most 30 s: its drains have deadlines well within).
    pub async fn stop(mut self) -> anyhow::Result<()> {
        if let Some(shutdown) = self.shutdown.take() {
            let _ = shutdown.send(());
        }
        match self.handle.take() {
            Some(handle) => tokio::time::timeout(Duration::from_secs(30), handle)
                .await
                .expect("the server stopped within 30 s")
                .expect("the server task did not panic"),
            None => Ok(()),
        }
    }
}

/// The value of the series `name` whose labels are exactly `labels`, from a Prometheus text exposition.
pub fn metric_value(exposition: &str, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    let mut wanted: Vec<(String, String)> = labels.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect();
    wanted.sort();
    exposition.lines().filter(|line| !line.starts_with('#')).find_map(|line| {
        let (series, value) = line.rsplit_once(' ')?;
        let (found_name, found_labels) = match series.split_once('{') {
            Some((found_name, rest)) => (found_name, rest.strip_suffix('}')?),
            None => (series, ""),
        };
        let mut found: Vec<(String, String)> = found_labels
            .split(',')
            .filter(|pair| !pair.is_empty())
            .filter_map(|pair| {
                let (key, value) = pair.split_once('=')?;
                Some((key.to_owned(), value.trim_matches('"').to_owned()))
            })
            .collect();
        found.sort();
        (found_name == name && found == wanted).then(|| value.parse().ok()).flatten()
    })
}

impl Drop for TestApp {
    fn drop(&mut self) {
        if let Some(handle) = self.handle.take() {
            handle.abort();
        }
    }
}
