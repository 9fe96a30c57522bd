//! Starts the whole system in-process (the five services are libraries) on port 0, against the
//! engines that `scripts/engines.py` started (MONGODB_URI, KAFKA_BROKERS). Every stack gets its
//! own databases, topic prefix and consumer group, so tests run in parallel.

use std::{collections::HashMap, future::Future, time::Duration};

use serde_json::{Value, json};
use tokio::{sync::oneshot, task::JoinHandle};

pub const ADMIN_EMAIL: &str = "admin@example.com";
pub const ADMIN_PASSWORD: &str = "admin-password";

pub use test_support::{
    closed_port,
    engines::{PrivateBroker, PrivateMongo},
    env,
    kafka::{Record, read_topic},
};

/// Per-service settings that a test overrides (e.g. a payment limit, or a dependency pointed at
/// a closed port to simulate an outage).
#[derive(Default, Clone)]
pub struct Overrides {
    pub users: Vec<(&'static str, String)>,
    pub products: Vec<(&'static str, String)>,
    pub orders: Vec<(&'static str, String)>,
    pub payments: Vec<(&'static str, String)>,
    pub gateway: Vec<(&'static str, String)>,
    /// Run the order-service as its own process (the built binary), so a test can SIGKILL it.
    pub order_service_as_process: bool,
}

struct Running {
    name: &'static str,
    stop: oneshot::Sender<()>,
    handle: JoinHandle<anyhow::Result<()>>,
}

pub struct Stack {
    pub gateway: String,
    pub users: String,
    pub products: String,
    pub orders: String,
    pub payments: String,
    /// The payment-service's metrics side server (its main port speaks gRPC only).
    pub payments_metrics: String,
    /// Prefix of this stack's Kafka topics.
    pub topic_prefix: String,
    pub client: reqwest::Client,
    running: Vec<Running>,
    /// The payment-service's settings, to start it again on the same port after a stop.
    payment_settings: HashMap<&'static str, String>,
    order_process: Option<ServiceProcess>,
}

/// A service running as a separate process from its built binary (target/debug/<name>).
pub struct ServiceProcess {
    binary: std::path::PathBuf,
    settings: HashMap<&'static str, String>,
    child: Option<std::process::Child>,
}

impl ServiceProcess {
    fn start(name: &str, settings: HashMap<&'static str, String>) -> Self {
        // The test executable lives in target/<profile>/deps; the service binaries one level up.
        let exe = std::env::current_exe().expect("test executable path");
        let binary = exe.parent().and_then(|deps| deps.parent()).expect("target dir").join(name);
        assert!(
            binary.exists(),
            "{} is missing: build the binaries first (cargo build --workspace --bins)",
            binary.display()
        );
        let mut process = Self { binary, settings, child: None };
        process.spawn();
        process
    }

    fn spawn(&mut self) {
        let child = std::process::Command::new(&self.binary)
            .envs(self.settings.iter().map(|(k, v)| (*k, v.as_str())))
            .env("RUST_LOG", "warn")
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("service process starts");
        self.child = Some(child);
    }

    /// SIGKILL: no graceful shutdown, no offset commit, no flush.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for ServiceProcess {
    fn drop(&mut self) {
        self.kill();
    }
}

fn settings(base: &[(&'static str, String)], overrides: &[(&'static str, String)]) -> HashMap<&'static str, String> {
    let mut map: HashMap<&'static str, String> = base.iter().cloned().collect();
    map.extend(overrides.iter().cloned());
    map
}

fn as_source<'a>(map: &'a HashMap<&'static str, String>) -> HashMap<&'a str, &'a str> {
    map.iter().map(|(k, v)| (*k, v.as_str())).collect()
}

fn spawn<F>(name: &'static str, run: impl FnOnce(oneshot::Receiver<()>) -> F) -> Running
where
    F: Future<Output = anyhow::Result<()>> + Send + 'static,
{
    let (stop, stopped) = oneshot::channel();
    Running { name, stop, handle: tokio::spawn(run(stopped)) }
}

async fn until(stopped: oneshot::Receiver<()>) {
    let _ = stopped.await;
}

impl Stack {
    pub async fn start() -> Self {
        Self::start_with(Overrides::default()).await
    }

    /// Starts all five services and waits until the gateway reports every one ready
    /// (unless an override makes that impossible: then use `start_unready`).
    pub async fn start_with(overrides: Overrides) -> Self {
        let stack = Self::start_unready(overrides).await;
        stack.wait_ready().await;
        stack
    }

    pub async fn start_unready(overrides: Overrides) -> Self {
        test_support::logs_on_request("system-tests");
        let id = uuid::Uuid::new_v4().simple().to_string();
        let mongodb = env("MONGODB_URI");
        let local = |extra: &[(&'static str, String)]| -> Vec<(&'static str, String)> {
            let mut base =
                vec![("HOST", "127.0.0.1".to_owned()), ("PORT", "0".to_owned()), ("MONGODB_URI", mongodb.clone())];
            base.extend_from_slice(extra);
            base
        };
        let mut running = Vec::new();

        let users = settings(
            &local(&[
                ("MONGODB_DATABASE", format!("st_users_{id}")),
                ("ADMIN_EMAIL", ADMIN_EMAIL.to_owned()),
                ("ADMIN_PASSWORD", ADMIN_PASSWORD.to_owned()),
            ]),
            &overrides.users,
        );
        let app = user_service::startup::Application::build(
            user_service::config::Config::from_source(&as_source(&users)).expect("user-service config"),
        )
        .await
        .expect("user-service builds");
        let users_url = format!("http://127.0.0.1:{}", app.port());
        running.push(spawn("user-service", |stopped| app.run_until(until(stopped))));
        let jwks = format!("{users_url}/.well-known/jwks.json");

        let products = settings(
            &local(&[("MONGODB_DATABASE", format!("st_products_{id}")), ("JWKS_URL", jwks.clone())]),
            &overrides.products,
        );
        let app = product_service::startup::Application::build(
            product_service::config::Config::from_source(&as_source(&products)).expect("product-service config"),
        )
        .await
        .expect("product-service builds");
        let products_url = format!("http://127.0.0.1:{}", app.port());
        running.push(spawn("product-service", |stopped| app.run_until(until(stopped))));

        let mut kafka_common = test_support::engines::shared_broker_settings();
        kafka_common.extend([
            ("KAFKA_TOPIC_PREFIX", format!("st{id}.")),
            ("KAFKA_PARTITIONS", "2".to_owned()),
            ("JWKS_URL", jwks.clone()),
        ]);
        let mut order_base = local(&kafka_common);
        order_base.extend([
            ("MONGODB_DATABASE", format!("st_orders_{id}")),
            ("KAFKA_CONSUMER_GROUP", format!("order-service-{id}")),
            ("PRODUCT_SERVICE_URL", products_url.clone()),
            ("OUTBOX_POLL_INTERVAL_MS", "200".to_owned()),
        ]);
        let mut orders = settings(&order_base, &overrides.orders);
        let (orders_url, order_process) = if overrides.order_service_as_process {
            let port = closed_port();
            orders.insert("PORT", port.to_string());
            (format!("http://127.0.0.1:{port}"), Some(ServiceProcess::start("order-service", orders)))
        } else {
            let app = order_service::startup::Application::build(
                order_service::config::Config::from_source(&as_source(&orders)).expect("order-service config"),
            )
            .await
            .expect("order-service builds");
            let url = format!("http://127.0.0.1:{}", app.port());
            running.push(spawn("order-service", |stopped| app.run_until(until(stopped))));
            (url, None)
        };

        let mut payment_base = local(&kafka_common);
        payment_base.push(("MONGODB_DATABASE", format!("st_payments_{id}")));
        payment_base.push(("KAFKA_CONSUMER_GROUP", format!("payment-service-{id}")));
        // Its metrics side port too: stacks run side by side.
        payment_base.push(("METRICS_PORT", "0".to_owned()));
        let payments = settings(&payment_base, &overrides.payments);
        let app = payment_service::startup::Application::build(
            payment_service::config::Config::from_source(&as_source(&payments)).expect("payment-service config"),
        )
        .await
        .expect("payment-service builds");
        let payments_url = format!("http://127.0.0.1:{}", app.port());
        let payments_metrics = format!("http://127.0.0.1:{}", app.metrics_port());
        running.push(spawn("payment-service", |stopped| app.run_until(until(stopped))));

        let gateway = settings(
            &[
                ("HOST", "127.0.0.1".to_owned()),
                ("PORT", "0".to_owned()),
                ("USER_SERVICE_URL", users_url.clone()),
                ("PRODUCT_SERVICE_URL", products_url.clone()),
                ("ORDER_SERVICE_URL", orders_url.clone()),
                ("PAYMENT_SERVICE_URL", payments_url.clone()),
            ],
            &overrides.gateway,
        );
        let app = api_gateway::startup::Application::build(
            api_gateway::config::Config::from_source(&as_source(&gateway)).expect("gateway config"),
        )
        .await
        .expect("gateway builds");
        let gateway_url = format!("http://127.0.0.1:{}", app.port());
        running.push(spawn("api-gateway", |stopped| app.run_until(until(stopped))));

        Self {
            gateway: gateway_url,
            users: users_url,
            products: products_url,
            orders: orders_url,
            payments: payments_url,
            payments_metrics,
            topic_prefix: format!("st{id}."),
            client: platform::tls::http_client(&Default::default())
                .expect("rustls with the web roots")
                .timeout(Duration::from_secs(30))
                .build()
                .expect("client"),
            running,
            payment_settings: payments,
            order_process,
        }
    }

    /// Stops one service gracefully, leaving the others running.
    pub async fn stop_service(&mut self, name: &str) {
        let index = self.running.iter().position(|service| service.name == name).expect("a running service");
        let service = self.running.remove(index);
        let _ = service.stop.send(());
        let _ = tokio::time::timeout(Duration::from_secs(20), service.handle).await;
    }

    /// SIGKILLs the order-service process (with `order_service_as_process`).
    pub fn kill_order_service(&mut self) {
        self.order_process.as_mut().expect("order-service runs as a process").kill();
    }

    /// Starts the order-service process again, same settings and port.
    pub fn restart_order_service(&mut self) {
        self.order_process.as_mut().expect("order-service runs as a process").spawn();
    }

    /// Starts the payment-service again with its settings, on the port it had.
    pub async fn restart_payment_service(&mut self) {
        let mut settings = self.payment_settings.clone();
        let port = self.payments.rsplit(':').next().expect("port").to_owned();
        settings.insert("PORT", port);
        let app = payment_service::startup::Application::build(
            payment_service::config::Config::from_source(&as_source(&settings)).expect("payment-service config"),
        )
        .await
        .expect("payment-service builds again on its port");
        self.running.insert(0, spawn("payment-service", |stopped| app.run_until(until(stopped))));
    }

    /// Waits until the gateway reports every service ready and both consumer groups have their partitions:
    /// an order placed from then on is processed, and known to the payment-service, within moments (joining a
    /// group takes the broker a few seconds, which tests would otherwise race).
    pub async fn wait_ready(&self) {
        let mut last = String::new();
        let ready = async {
            loop {
                match self.client.get(self.url("/ready")).send().await {
                    Ok(response) if response.status() == 200 => break,
                    Ok(response) => last = response.text().await.unwrap_or_default(),
                    Err(error) => last = error.to_string(),
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            for metrics in [format!("{}/metrics", self.orders), format!("{}/metrics", self.payments_metrics)] {
                loop {
                    let text = match self.client.get(&metrics).send().await {
                        Ok(response) => response.text().await.unwrap_or_default(),
                        Err(error) => error.to_string(),
                    };
                    if every_topic_assigned(&text) {
                        break;
                    }
                    last = format!("the consumer at {metrics} has no partitions assigned yet");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            }
        };
        if tokio::time::timeout(Duration::from_secs(60), ready).await.is_err() {
            panic!("the stack never became ready: {last}");
        }
    }

    /// Stops every service gracefully, gateway first.
    pub async fn stop(mut self) {
        while let Some(service) = self.running.pop() {
            let _ = service.stop.send(());
            match tokio::time::timeout(Duration::from_secs(20), service.handle).await {
                Ok(Ok(Ok(()))) => {}
                other => panic!("{} did not stop cleanly: {other:?}", service.name),
            }
        }
    }

    pub fn topic(&self, name: &str) -> String {
        format!("{}{name}", self.topic_prefix)
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.gateway)
    }

    pub async fn get(&self, path: &str, token: Option<&str>) -> reqwest::Response {
        let mut request = self.client.get(self.url(path));
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        request.send().await.expect("request sent")
    }

    pub async fn post(&self, path: &str, token: Option<&str>, body: &Value) -> reqwest::Response {
        let mut request = self.client.post(self.url(path)).json(body);
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        request.send().await.expect("request sent")
    }

    /// Registers and logs in a fresh customer; returns (user id, token).
    pub async fn customer(&self) -> (String, String) {
        let name = format!("u{}", &uuid::Uuid::new_v4().simple().to_string()[..12]);
        let email = format!("{name}@example.com");
        let registered = self
            .post("/users/register", None, &json!({"username": name, "email": email, "password": "password-123"}))
            .await;
        assert_eq!(registered.status(), 201, "register");
        self.login(&email, "password-123").await
    }

    /// Like `customer`, for stacks started unready: retries until registration works.
    pub async fn customer_when_up(&self) -> (String, String) {
        for _ in 0..200 {
            if self.client.get(format!("{}/ready", self.users)).send().await.is_ok_and(|r| r.status() == 200)
                && self.client.get(format!("{}/ready", self.products)).send().await.is_ok_and(|r| r.status() == 200)
            {
                return self.customer().await;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("user-service and product-service never became ready");
    }

    pub async fn admin(&self) -> (String, String) {
        self.login(ADMIN_EMAIL, ADMIN_PASSWORD).await
    }

    pub async fn login(&self, email: &str, password: &str) -> (String, String) {
        let response = self.post("/users/login", None, &json!({"email": email, "password": password})).await;
        assert_eq!(response.status(), 200, "login");
        let body: Value = response.json().await.expect("login body");
        (body["user"]["id"].as_str().expect("id").to_owned(), body["token"].as_str().expect("token").to_owned())
    }

    /// Sends the request `make` builds as a client that honours `Retry-After` on a 409: the payment-service has
    /// not heard yet that the order is processed (its projection follows the order-service's events, moments
    /// behind), so the same request goes again after the advertised delay, for up to 20 s. Any other answer is
    /// returned as it is.
    pub async fn send_honouring_retry_after(&self, make: impl Fn() -> reqwest::RequestBuilder) -> reqwest::Response {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
        loop {
            let response = make().send().await.expect("request sent");
            let retry_after = response
                .headers()
                .get("retry-after")
                .and_then(|value| value.to_str().ok())
                .and_then(|value| value.parse::<u64>().ok());
            match retry_after {
                Some(seconds) if response.status() == 409 && tokio::time::Instant::now() < deadline => {
                    tokio::time::sleep(Duration::from_secs(seconds.min(1))).await;
                }
                _ => return response,
            }
        }
    }

    /// POST /payments for the order, honouring `Retry-After` (see [`Self::send_honouring_retry_after`]).
    pub async fn pay(&self, token: &str, order_id: &str, amount: &Value, key: Option<&str>) -> reqwest::Response {
        self.send_honouring_retry_after(|| {
            let request = self
                .client
                .post(self.url("/payments"))
                .bearer_auth(token)
                .json(&json!({"orderId": order_id, "amount": amount}));
            match key {
                Some(key) => request.header("idempotency-key", key),
                None => request,
            }
        })
        .await
    }

    /// Places an order and returns its id.
    pub async fn order(&self, token: &str, product_id: &str, quantity: u32) -> String {
        let response = self.post("/orders", Some(token), &json!({"productId": product_id, "quantity": quantity})).await;
        assert_eq!(response.status(), 201, "order created");
        let body: Value = response.json().await.expect("order body");
        body["orderId"].as_str().expect("orderId").to_owned()
    }

    pub async fn order_status(&self, token: &str, order_id: &str) -> String {
        let body: Value = self.get(&format!("/orders/{order_id}"), Some(token)).await.json().await.expect("order");
        body["order"]["status"].as_str().unwrap_or_default().to_owned()
    }

    /// Polls the order until it has `status`; panics after `timeout`.
    pub async fn wait_for_status(&self, token: &str, order_id: &str, status: &str, timeout: Duration) {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let current = self.order_status(token, order_id).await;
            if current == status {
                return;
            }
            assert!(tokio::time::Instant::now() < deadline, "order {order_id} stayed {current:?}, wanted {status:?}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

impl Drop for Stack {
    fn drop(&mut self) {
        for service in &self.running {
            service.handle.abort();
        }
    }
}

/// Whether a Prometheus text exposition shows the consumer with partitions of every topic it reads (the
/// `kafka_consumer_assigned_partitions` series, one per topic, all above 0).
fn every_topic_assigned(exposition: &str) -> bool {
    let assigned: Vec<f64> = exposition
        .lines()
        .filter(|line| line.starts_with("kafka_consumer_assigned_partitions{"))
        .filter_map(|line| line.rsplit(' ').next()?.parse().ok())
        .collect();
    !assigned.is_empty() && assigned.iter().all(|partitions| *partitions > 0.0)
}

/// Every message of `topic` read for `window`, as (key, headers).
pub async fn read_headers(brokers: &str, topic: &str, window: Duration) -> Vec<(String, HashMap<String, String>)> {
    read_topic(brokers, topic, window)
        .await
        .into_iter()
        .map(|record| (record.key.unwrap_or_default(), record.headers))
        .collect()
}

/// Produces one record to `topic` (acks=all), as a service would, or anyone who can write to the broker.
pub async fn produce(brokers: &str, topic: &str, key: &str, payload: &[u8], headers: &HashMap<String, String>) {
    use rdkafka::{
        ClientConfig,
        message::{Header, OwnedHeaders},
        producer::{FutureProducer, FutureRecord},
    };
    let producer: FutureProducer =
        ClientConfig::new().set("bootstrap.servers", brokers).set("acks", "all").create().expect("a Kafka producer");
    let mut owned = OwnedHeaders::new();
    for (name, value) in headers {
        owned = owned.insert(Header { key: name, value: Some(value.as_bytes()) });
    }
    producer
        .send(FutureRecord::to(topic).key(key).payload(payload).headers(owned), Duration::from_secs(10))
        .await
        .map_err(|(error, _)| error)
        .expect("the broker takes the record");
}

/// Counts the messages of every partition of `topic` by key, reading for `window`.
pub async fn count_by_key(brokers: &str, topic: &str, window: Duration) -> HashMap<String, usize> {
    let mut counts = HashMap::new();
    for (key, _) in read_headers(brokers, topic, window).await {
        *counts.entry(key).or_default() += 1;
    }
    counts
}
