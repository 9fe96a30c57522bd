//! Spawns the real order-service on port 0 against the engines started by `scripts/engines.py`
//! (MONGODB_URI, KAFKA_BROKERS). Every app gets its own database, topic prefix and consumer group.
#![allow(dead_code)]

use std::{collections::HashMap, time::Duration};

use order_service::{
    catalog::ProductSnapshot,
    config::Config,
    domain::{Money, OrderStatus, Quantity},
    startup::{AppState, Application},
    store::OrderDocument,
};
use rdkafka::{
    ClientConfig, Message as _, Offset, TopicPartitionList,
    consumer::{Consumer as _, StreamConsumer},
    message::Headers as _,
    producer::{FutureProducer, FutureRecord},
};
use tokio::{sync::oneshot, task::JoinHandle};

pub fn env(name: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| panic!("{name} is not set: run the tests through scripts/test"))
}

/// A port nothing listens on.
pub fn closed_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

pub struct TestApp {
    pub address: String,
    pub state: AppState,
    pub prefix: String,
    pub database: String,
    pub brokers: String,
    pub client: reqwest::Client,
    shutdown: Option<oneshot::Sender<()>>,
    handle: Option<JoinHandle<anyhow::Result<()>>>,
}

#[derive(Clone)]
pub struct Settings {
    pub values: HashMap<&'static str, String>,
}

/// Test defaults: unique names, nothing listening where the product-service and JWKS would be.
pub fn settings() -> Settings {
    let id = uuid::Uuid::new_v4().simple().to_string();
    let nowhere = format!("http://127.0.0.1:{}", closed_port());
    Settings {
        values: HashMap::from([
            ("HOST", "127.0.0.1".to_owned()),
            ("PORT", "0".to_owned()),
            ("MONGODB_URI", env("MONGODB_URI")),
            ("MONGODB_DATABASE", format!("orders_test_{id}")),
            ("KAFKA_BROKERS", env("KAFKA_BROKERS")),
            ("KAFKA_TOPIC_PREFIX", format!("t{id}.")),
            ("KAFKA_CONSUMER_GROUP", format!("order-service-{id}")),
            ("KAFKA_PARTITIONS", "2".to_owned()),
            ("PRODUCT_SERVICE_URL", nowhere.clone()),
            ("JWKS_URL", format!("{nowhere}/.well-known/jwks.json")),
            ("OUTBOX_POLL_INTERVAL_MS", "200".to_owned()),
        ]),
    }
}

impl Settings {
    pub fn with(mut self, name: &'static str, value: impl Into<String>) -> Self {
        self.values.insert(name, value.into());
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
        let address = format!("http://127.0.0.1:{}", app.port());
        let (shutdown, stopped) = oneshot::channel::<()>();
        let handle = tokio::spawn(app.run_until(async {
            let _ = stopped.await;
        }));
        TestApp {
            address,
            state,
            prefix: self.values["KAFKA_TOPIC_PREFIX"].clone(),
            database: self.values["MONGODB_DATABASE"].clone(),
            brokers: self.values["KAFKA_BROKERS"].clone(),
            client: platform::tls::http_client(&Default::default())
                .expect("rustls with the web roots")
                .timeout(Duration::from_secs(30))
                .build()
                .unwrap(),
            shutdown: Some(shutdown),
            handle: Some(handle),
        }
    }
}

impl TestApp {
    pub async fn wait_ready(&self) {
        for _ in 0..600 {
            if let Ok(response) = self.client.get(self.url("/ready")).send().await
                && response.status() == 200
            {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("order-service at {} never became ready", self.address);
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.address)
    }

    /// The listening socket, for raw-socket probes.
    pub fn socket_address(&self) -> std::net::SocketAddr {
        self.address.trim_start_matches("http://").parse().expect("an ip:port address")
    }

    pub fn topic(&self, name: &str) -> String {
        format!("{}{name}", self.prefix)
    }

    pub async fn stop(mut self) {
        if let Some(shutdown) = self.shutdown.take() {
            let _ = shutdown.send(());
        }
        if let Some(handle) = self.handle.take() {
            handle.await.expect("server task").expect("server ran cleanly");
        }
    }

    /// Inserts a pending order the way POST /orders does, and wakes the relay.
    pub async fn insert_pending_order(&self, user_id: &str) -> OrderDocument {
        let order = new_pending_order(user_id, &self.state.topics.new_order);
        self.state.store.insert(&order).await.unwrap();
        self.state.relay_wake.notify_one();
        order
    }

    pub async fn status(&self, order_id: &str) -> Option<OrderStatus> {
        self.state.store.find(order_id).await.unwrap().map(|order| order.status)
    }

    /// Waits until no order has events left to publish.
    pub async fn wait_outbox_drained(&self, timeout: Duration) {
        let deadline = tokio::time::Instant::now() + timeout;
        while !self.state.store.pending_outbox(1).await.unwrap().is_empty() {
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
                let unpublished = self.state.store.pending_outbox(1_000).await.map(|orders| orders.len()).unwrap_or(0);
                panic!("orders did not all reach {status:?} in {timeout:?} ({unpublished} with unpublished events)");
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

impl Drop for TestApp {
    fn drop(&mut self) {
        if let Some(handle) = self.handle.take() {
            handle.abort();
        }
    }
}

/// A pending order of two smartphones, as POST /orders makes it, its event for `new_order_topic`.
pub fn new_pending_order(user_id: &str, new_order_topic: &str) -> OrderDocument {
    let product = ProductSnapshot { id: "1".into(), name: "Smartphone".into(), unit_price: Money::from_cents(89_999) };
    let quantity = Quantity::parse(&serde_json::json!(2)).unwrap();
    let total = product.unit_price.times(quantity.get()).unwrap();
    OrderDocument::new_pending(
        user_id,
        &product,
        quantity,
        total,
        None,
        new_order_topic,
        order_service::store::EventOrigin::default(),
    )
    .unwrap()
}

/// The test's own client of a test app's database (no workers, no app).
pub async fn raw_store(database: &str) -> order_service::store::OrderStore {
    let durations =
        prometheus::HistogramVec::new(prometheus::HistogramOpts::new("d", "d"), &["command", "outcome"]).unwrap();
    let commands = prometheus::IntCounterVec::new(prometheus::Opts::new("c", "c"), &["operation"]).unwrap();
    let client =
        order_service::store::connect(&env("MONGODB_URI"), "test", Duration::from_secs(5), durations, commands)
            .await
            .unwrap();
    order_service::store::OrderStore::new(client.database(database))
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

pub struct Received {
    pub key: Option<String>,
    pub payload: serde_json::Value,
    pub raw: Vec<u8>,
    pub headers: HashMap<String, String>,
}

/// Reads every partition of `topic` from the beginning for `window` (no consumer group: the
/// partitions are assigned directly), returning every message.
pub async fn read_topic(brokers: &str, topic: &str, window: Duration) -> Vec<Received> {
    let consumer: StreamConsumer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("group.id", format!("test-reader-{}", uuid::Uuid::new_v4()))
        .set("enable.auto.commit", "false")
        .create()
        .unwrap();
    let metadata = consumer.fetch_metadata(Some(topic), Duration::from_secs(5)).expect("topic metadata");
    let mut assignment = TopicPartitionList::new();
    for partition in metadata.topics().iter().flat_map(|t| t.partitions()) {
        assignment.add_partition_offset(topic, partition.id(), Offset::Beginning).unwrap();
    }
    consumer.assign(&assignment).unwrap();
    let mut received = Vec::new();
    let deadline = tokio::time::Instant::now() + window;
    while let Ok(Ok(message)) = tokio::time::timeout_at(deadline, consumer.recv()).await {
        let raw = message.payload().unwrap_or_default().to_vec();
        let headers = message
            .headers()
            .map(|headers| {
                headers
                    .iter()
                    .map(|h| (h.key.to_owned(), String::from_utf8_lossy(h.value.unwrap_or_default()).into_owned()))
                    .collect()
            })
            .unwrap_or_default();
        received.push(Received {
            key: message.key().map(|key| String::from_utf8_lossy(key).into_owned()),
            payload: serde_json::from_slice(&raw).unwrap_or(serde_json::Value::Null),
            raw,
            headers,
        });
    }
    received
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

/// A private, durable Kafka-protocol broker (noida-db: topics, groups and offsets survive a
/// restart, as with real Kafka) that a test may stop and restart on the same port.
pub struct PrivateBroker {
    pub port: u16,
    data_dir: std::path::PathBuf,
    child: Option<std::process::Child>,
}

impl PrivateBroker {
    pub async fn start() -> Self {
        let data_dir = std::env::temp_dir().join(format!("noida-{}", uuid::Uuid::new_v4().simple()));
        let mut broker = Self { port: closed_port(), data_dir, child: None };
        broker.restart().await;
        broker
    }

    pub fn address(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    pub async fn restart(&mut self) {
        let child = std::process::Command::new(env("NOIDA_BIN"))
            .args(["start", "--only", "kafka", "--kafka-port", &self.port.to_string(), "--data-dir"])
            .arg(&self.data_dir)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("noida-db starts");
        self.child = Some(child);
        for _ in 0..400 {
            if tokio::net::TcpStream::connect(("127.0.0.1", self.port)).await.is_ok() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("private broker did not start");
    }

    /// Stops the broker like an operator would (SIGINT), keeping its data.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = std::process::Command::new("kill").args(["-INT", &child.id().to_string()]).status();
            if child.wait().is_err() {
                let _ = child.kill();
            }
        }
    }
}

impl Drop for PrivateBroker {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        let _ = std::fs::remove_dir_all(&self.data_dir);
    }
}

/// DER prefix of a PKCS#8 v1 Ed25519 private key; the 32-byte seed follows it.
const PKCS8_ED25519_PREFIX: [u8; 16] =
    [0x30, 0x2e, 0x02, 0x01, 0x00, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x04, 0x22, 0x04, 0x20];

/// What the order-service talks to over HTTP, played by the test: the user-service's JWKS (with a key
/// the test signs tokens with) and the product-service's `product(id)` query (product "1" exists).
pub struct Fakes {
    pub url: String,
    key: jsonwebtoken::EncodingKey,
    kid: String,
    task: JoinHandle<()>,
}

impl Fakes {
    pub async fn start() -> Self {
        use axum::{
            Json, Router,
            routing::{get, post},
        };
        use jsonwebtoken::jwk::{Jwk, JwkSet, ThumbprintHash};
        let mut der = PKCS8_ED25519_PREFIX.to_vec();
        der.extend_from_slice(&rand::random::<[u8; 32]>());
        let key = jsonwebtoken::EncodingKey::from_ed_der(&der);
        let mut jwk = Jwk::from_encoding_key(&key, jsonwebtoken::Algorithm::EdDSA).expect("a JWK");
        let kid = jwk.thumbprint(ThumbprintHash::SHA256).expect("a thumbprint");
        jwk.common.key_id = Some(kid.clone());
        let jwks = JwkSet { keys: vec![jwk] };
        let router =
            Router::new().route("/.well-known/jwks.json", get(move || std::future::ready(Json(jwks.clone())))).route(
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
        Self { url, key, kid, task }
    }

    /// Settings that point the app at these fakes.
    pub fn settings(&self) -> Settings {
        settings()
            .with("PRODUCT_SERVICE_URL", self.url.clone())
            .with("JWKS_URL", format!("{}/.well-known/jwks.json", self.url))
    }

    /// A customer token for `user_id`, valid for 10 minutes.
    pub fn token(&self, user_id: &str) -> String {
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs();
        let claims = serde_json::json!({
            "sub": user_id, "username": format!("user-{user_id}"), "email": format!("{user_id}@example.com"),
            "role": "customer", "iss": "user-service", "aud": "ecommerce-api", "iat": now, "exp": now + 600,
            "jti": uuid::Uuid::new_v4().to_string(),
        });
        let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::EdDSA);
        header.kid = Some(self.kid.clone());
        jsonwebtoken::encode(&header, &claims, &self.key).expect("a signed token")
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

/// The value of the sample `name{labels…}` in a Prometheus text exposition (0 when absent).
pub fn sample(text: &str, name: &str, labels: &[(&str, &str)]) -> f64 {
    text.lines()
        .filter(|line| !line.starts_with('#'))
        .filter(|line| line.starts_with(&format!("{name}{{")) || line.starts_with(&format!("{name} ")))
        .filter(|line| labels.iter().all(|(key, value)| line.contains(&format!("{key}=\"{value}\""))))
        .filter_map(|line| line.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// A private SecantusDB that a test may freeze (SIGSTOP) and thaw, stopped by its pid when dropped.
pub struct PrivateMongo {
    pub uri: String,
    data_dir: std::path::PathBuf,
    child: std::process::Child,
}

impl PrivateMongo {
    pub async fn start() -> Self {
        let port = closed_port();
        let data_dir = std::env::temp_dir().join(format!("secantus-{}", uuid::Uuid::new_v4().simple()));
        let child = std::process::Command::new(env("SECANTUSD_BIN"))
            .args(["--sync-on-commit", "--host", "127.0.0.1", "--port", &port.to_string(), "--storage-path"])
            .arg(&data_dir)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("SecantusDB starts");
        // The same URI options as scripts/engines.py gives the shared engine. Built first, so that a
        // failed start still stops the process (Drop).
        let uri = format!("mongodb://127.0.0.1:{port}/?directConnection=true&retryWrites=false");
        let mongo = Self { uri, data_dir, child };
        for _ in 0..600 {
            if tokio::net::TcpStream::connect(("127.0.0.1", port)).await.is_ok() {
                return mongo;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("private SecantusDB did not start");
    }

    fn signal(&self, name: &str) {
        let status = std::process::Command::new("kill").args([name, &self.child.id().to_string()]).status();
        assert!(status.is_ok_and(|status| status.success()), "kill {name}");
    }

    /// Freezes the server: connections stay open, nothing is answered.
    pub fn freeze(&self) {
        self.signal("-STOP");
    }

    pub fn thaw(&self) {
        self.signal("-CONT");
    }
}

impl Drop for PrivateMongo {
    fn drop(&mut self) {
        // A frozen process ignores SIGTERM until it is thawed.
        for signal in ["-CONT", "-TERM"] {
            let _ = std::process::Command::new("kill").args([signal, &self.child.id().to_string()]).status();
        }
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.data_dir);
    }
}
