//! Spawns the real order-service on port 0 against the engines started by `scripts/engines.py`
//! (MONGODB_URI, KAFKA_BROKERS). Every app gets its own database, topic prefix and consumer group.
#![allow(dead_code)]

use std::{collections::HashMap, time::Duration};

use order_service::{
    config::Config,
    domain::{Money, OrderStatus, Quantity},
    product_client::ProductSnapshot,
    startup::Application,
    state::AppState,
    store::{OrderDocument, OrderWithEvent},
};
use rdkafka::{
    ClientConfig,
    producer::{FutureProducer, FutureRecord},
};
use tokio::task::JoinHandle;

pub use test_support::{
    Running, closed_port,
    engines::{PrivateBroker, PrivateMongo},
    env,
    kafka::read_topic,
    prometheus::sample,
};

pub struct TestApp {
    pub running: Running,
    pub state: AppState,
    pub prefix: String,
    pub database: String,
    pub brokers: String,
}

impl std::ops::Deref for TestApp {
    type Target = Running;
    fn deref(&self) -> &Running {
        &self.running
    }
}

#[derive(Clone)]
pub struct Settings {
    pub values: HashMap<&'static str, String>,
}

/// Test defaults: unique names, nothing listening where the product-service and JWKS would be.
pub fn settings() -> Settings {
    let id = uuid::Uuid::new_v4().simple().to_string();
    let nowhere = format!("http://127.0.0.1:{}", closed_port());
    let mut values = HashMap::from([
        ("HOST", "127.0.0.1".to_owned()),
        ("PORT", "0".to_owned()),
        ("MONGODB_URI", env("MONGODB_URI")),
        ("MONGODB_DATABASE", format!("orders_test_{id}")),
        ("KAFKA_TOPIC_PREFIX", format!("t{id}.")),
        ("KAFKA_CONSUMER_GROUP", format!("order-service-{id}")),
        ("KAFKA_PARTITIONS", "2".to_owned()),
        ("PRODUCT_SERVICE_URL", nowhere.clone()),
        ("JWKS_URL", format!("{nowhere}/.well-known/jwks.json")),
        ("OUTBOX_POLL_INTERVAL_MS", "200".to_owned()),
    ]);
    values.extend(test_support::engines::shared_broker_settings());
    Settings { values }
}

impl Settings {
    pub fn with(mut self, name: &'static str, value: impl Into<String>) -> Self {
        self.values.insert(name, value.into());
        self
    }

    /// On `broker` instead of the shared one.
    pub fn with_broker(mut self, broker: &PrivateBroker) -> Self {
        self.values.extend(broker.service_settings());
        self
    }

    pub async fn spawn(self) -> TestApp {
        let app = self.spawn_unready().await;
        app.wait_ready().await;
        app
    }

    pub async fn spawn_unready(self) -> TestApp {
        // Service logs only on request (TEST_LOG=1): they would bury the test output.
        let source: HashMap<&str, &str> = self.values.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let config = Config::from_source(&source).expect("test configuration is valid");
        if std::env::var_os("TEST_LOG").is_some() {
            let _ = order_service::telemetry::init(config.common.log_format, &config.common.tracing);
        }
        let app = Application::build(config).await.expect("the app builds");
        let state = app.state();
        let running = Running::spawn(app.port(), |stop| app.run_until(stop));
        TestApp {
            running,
            state,
            prefix: self.values["KAFKA_TOPIC_PREFIX"].clone(),
            database: self.values["MONGODB_DATABASE"].clone(),
            brokers: self.values["KAFKA_BROKERS"].clone(),
        }
    }
}

impl TestApp {
    pub fn topic(&self, name: &str) -> String {
        format!("{}{name}", self.prefix)
    }

    pub async fn stop(mut self) {
        self.running.stop().await;
    }

    /// Inserts a pending order the way POST /orders does, and hands its event to the relay.
    pub async fn insert_pending_order(&self, user_id: &str) -> OrderDocument {
        let order = new_pending_order(user_id, &self.state.topics.new_order);
        self.state.relay_inbox.made(&order.order.id);
        let stored = self.state.store.insert_batch(std::slice::from_ref(&order)).await;
        self.state.relay_inbox.stored(stored.events.expect("stored"));
        order.order
    }

    pub async fn status(&self, order_id: &str) -> Option<OrderStatus> {
        self.state.store.find(order_id).await.unwrap().map(|order| order.status)
    }

    /// Waits until no order has events left to publish: none counted unpublished by this replica, no read of its
    /// orders owed, and nothing in the outbox of earlier versions.
    pub async fn wait_outbox_drained(&self, timeout: Duration) {
        let deadline = tokio::time::Instant::now() + timeout;
        let unpublished = &self.state.relay_inbox.unpublished;
        while !unpublished.is_empty()
            || unpublished.read_owed().is_some()
            || !self.state.store.pending_outbox(1).await.unwrap().is_empty()
        {
            assert!(tokio::time::Instant::now() < deadline, "the outbox did not drain in {timeout:?}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Waits until every order has `status`, or panics after `timeout`.
    pub async fn wait_for_status(&self, order_ids: &[String], status: OrderStatus, timeout: Duration) {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let mut all = true;
            for id in order_ids {
                if self.status(id).await != Some(status) {
                    all = false;
                    break;
                }
            }
            if all {
                return;
            }
            if tokio::time::Instant::now() >= deadline {
                let unpublished = self.state.relay_inbox.unpublished.len();
                panic!("orders did not all reach {status:?} in {timeout:?} ({unpublished} with unpublished events)");
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

/// A pending order of two smartphones, as POST /orders makes it, with its event for `new_order_topic`.
pub fn new_pending_order(user_id: &str, new_order_topic: &str) -> OrderWithEvent {
    let product = ProductSnapshot { id: "1".into(), name: "Smartphone".into(), unit_price: Money::from_cents(89_999) };
    let quantity = Quantity::parse(&serde_json::json!(2)).unwrap();
    let total = product.unit_price.times(quantity.get()).unwrap();
    let order = OrderDocument::new_pending(user_id, &product, quantity, total, None, None);
    let event =
        order_service::events::envelope::new_order_event(&order, new_order_topic, None, Default::default()).unwrap();
    OrderWithEvent { order, event }
}

/// The test's own client of a test app's database (no workers, no app).
pub async fn raw_store(database: &str) -> order_service::store::OrderStore {
    order_service::store::OrderStore::new(raw_database(database).await)
}

/// The test's own connection to a test app's database, to read what no store function returns.
pub async fn raw_database(database: &str) -> mongodb::Database {
    let metrics = platform::mongo::MongoMetrics::register(&prometheus::Registry::new());
    let client = platform::mongo::connect(&env("MONGODB_URI"), "test", Duration::from_secs(5), &metrics).await.unwrap();
    client.database(database)
}

/// Waits until the order has `status`, or panics after `timeout`.
pub async fn wait_for_status(
    store: &order_service::store::OrderStore,
    order_id: &str,
    status: OrderStatus,
    timeout: Duration,
) {
    let deadline = tokio::time::Instant::now() + timeout;
    while store.find(order_id).await.unwrap().map(|order| order.status) != Some(status) {
        assert!(tokio::time::Instant::now() < deadline, "order {order_id} did not reach {status:?} in {timeout:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

pub fn producer(brokers: &str) -> FutureProducer {
    ClientConfig::new().set("bootstrap.servers", brokers).create().unwrap()
}

pub async fn produce(brokers: &str, topic: &str, key: &str, payload: &[u8]) {
    producer(brokers)
        .send(FutureRecord::to(topic).key(key).payload(payload), Duration::from_secs(10))
        .await
        .map_err(|(error, _)| error)
        .expect("test message delivered");
}

/// What the order-service talks to over HTTP, played by the test: the user-service (a JWKS issuer whose tokens
/// the test signs) and the product-service's `product(id)` query (product "1" exists).
pub struct Fakes {
    pub url: String,
    issuer: test_support::Issuer,
    task: JoinHandle<()>,
}

impl Fakes {
    pub async fn start() -> Self {
        use axum::{Json, Router, routing::post};
        let router = Router::new().route(
            "/graphql",
            post(|Json(body): Json<serde_json::Value>| async move {
                let product = (body["variables"]["id"] == "1")
                    .then(|| serde_json::json!({"id": "1", "name": "Smartphone", "price": 899.99}));
                Json(serde_json::json!({"data": {"product": product}}))
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("a free port");
        let url = format!("http://127.0.0.1:{}", listener.local_addr().unwrap().port());
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, router).await;
        });
        Self { url, issuer: test_support::Issuer::start().await, task }
    }

    /// Settings that point the app at these fakes.
    pub fn settings(&self) -> Settings {
        settings().with("PRODUCT_SERVICE_URL", self.url.clone()).with("JWKS_URL", self.issuer.jwks_url())
    }

    /// A customer token for `user_id`.
    pub fn token(&self, user_id: &str) -> String {
        self.issuer.token_for(user_id, "customer")
    }
}

impl Drop for Fakes {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl TestApp {
    /// POST /orders of product "1" with `token`, and an `Idempotency-Key` when given.
    pub async fn post_order(&self, token: &str, key: Option<&str>) -> reqwest::Response {
        let mut request = self
            .client
            .post(self.url("/orders"))
            .bearer_auth(token)
            .json(&serde_json::json!({"productId": "1", "quantity": 2}));
        if let Some(key) = key {
            request = request.header("idempotency-key", key);
        }
        request.send().await.expect("request sent")
    }

    pub async fn metrics(&self) -> String {
        self.client.get(self.url("/metrics")).send().await.expect("request sent").text().await.expect("a body")
    }
}
