//! Every environment variable the payment-service reads: name, default, validation.
//! A malformed value stops startup with a message naming the variable.
use std::{fmt, net::IpAddr, str::FromStr, time::Duration};

/// Where configuration values come from: the process environment, or a map in tests.
pub trait Source {
    fn get(&self, name: &str) -> Option<String>;
}

/// The process environment.
pub struct ProcessEnv;

impl Source for ProcessEnv {
    fn get(&self, name: &str) -> Option<String> {
        std::env::var(name).ok().filter(|value| !value.is_empty())
    }
}

impl Source for std::collections::HashMap<&str, &str> {
    fn get(&self, name: &str) -> Option<String> {
        self.get(name).map(|value| (*value).to_owned())
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    pub variable: &'static str,
    pub reason: String,
}

impl ConfigError {
    fn new(variable: &'static str, reason: impl Into<String>) -> Self {
        Self { variable, reason: reason.into() }
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "environment variable {}: {}", self.variable, self.reason)
    }
}

impl std::error::Error for ConfigError {}

/// Reads `name`, parsing it with `FromStr`, or returns `default` when unset.
pub fn parsed<T: FromStr>(source: &dyn Source, name: &'static str, default: T) -> Result<T, ConfigError>
where
    T::Err: fmt::Display,
{
    match source.get(name) {
        None => Ok(default),
        Some(raw) => {
            raw.trim().parse().map_err(|error| ConfigError::new(name, format!("cannot parse {raw:?}: {error}")))
        }
    }
}

/// A duration given in milliseconds; zero is rejected because it would make every operation fail.
pub fn millis(source: &dyn Source, name: &'static str, default_ms: u64) -> Result<Duration, ConfigError> {
    match parsed(source, name, default_ms)? {
        0 => Err(ConfigError::new(name, "must be at least 1 millisecond")),
        ms => Ok(Duration::from_millis(ms)),
    }
}

pub fn text(source: &dyn Source, name: &str, default: &str) -> String {
    source.get(name).unwrap_or_else(|| default.to_owned())
}

/// `production` refuses to fall back on the development defaults for the addresses of other systems.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AppEnv {
    Development,
    Production,
}

impl FromStr for AppEnv {
    type Err = String;
    fn from_str(value: &str) -> Result<Self, Self::Err> {
        match value.to_ascii_lowercase().as_str() {
            "development" | "dev" => Ok(Self::Development),
            "production" | "prod" => Ok(Self::Production),
            other => Err(format!("expected `development` or `production`, got {other:?}")),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    Text,
    Json,
}

impl FromStr for LogFormat {
    type Err = String;
    fn from_str(value: &str) -> Result<Self, Self::Err> {
        match value.to_ascii_lowercase().as_str() {
            "text" | "pretty" => Ok(Self::Text),
            "json" => Ok(Self::Json),
            other => Err(format!("expected `text` or `json`, got {other:?}")),
        }
    }
}

/// A MongoDB connection string, checked for its scheme so that typos fail at startup.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MongoUri(pub String);

impl FromStr for MongoUri {
    type Err = String;
    fn from_str(value: &str) -> Result<Self, Self::Err> {
        if value.starts_with("mongodb://") || value.starts_with("mongodb+srv://") {
            Ok(Self(value.to_owned()))
        } else {
            Err("expected a mongodb:// or mongodb+srv:// connection string".to_owned())
        }
    }
}

/// An absolute http(s) URL, without a trailing slash.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BaseUrl(pub String);

impl FromStr for BaseUrl {
    type Err = String;
    fn from_str(value: &str) -> Result<Self, Self::Err> {
        let rest = value.strip_prefix("http://").or_else(|| value.strip_prefix("https://"));
        match rest {
            Some(host) if !host.is_empty() && !host.starts_with('/') => {
                Ok(Self(value.trim_end_matches('/').to_owned()))
            }
            _ => Err("expected an absolute http:// or https:// URL".to_owned()),
        }
    }
}

/// Where traces go: OTLP over HTTP when an endpoint is set, nowhere otherwise.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TracingConfig {
    /// OTEL_EXPORTER_OTLP_ENDPOINT, e.g. `http://jaeger:4318` (spans go to `<endpoint>/v1/traces`).
    pub otlp_endpoint: Option<BaseUrl>,
    /// OTEL_SERVICE_NAME: the service's name in traces.
    pub service_name: String,
}

impl TracingConfig {
    pub fn from_source(source: &dyn Source, default_name: &str) -> Result<Self, ConfigError> {
        let otlp_endpoint = match source.get("OTEL_EXPORTER_OTLP_ENDPOINT").filter(|value| !value.trim().is_empty()) {
            None => None,
            Some(raw) => {
                Some(raw.trim().parse().map_err(|reason| ConfigError::new("OTEL_EXPORTER_OTLP_ENDPOINT", reason))?)
            }
        };
        Ok(Self { otlp_endpoint, service_name: non_empty(source, "OTEL_SERVICE_NAME", default_name)? })
    }
}

#[derive(Debug, Clone)]
pub struct KafkaConfig {
    /// Comma-separated `host:port` bootstrap servers.
    pub brokers: String,
    /// The full name of the topic `payment-processed` events go to (prefix included).
    pub payment_processed_topic: String,
    /// The order-service's topics this service reads to keep its own projection of orders (prefix included).
    pub new_order_topic: String,
    pub order_processed_topic: String,
    /// The consumer group of the projection's consumer.
    pub consumer_group: String,
    /// Used only when the service creates the topic.
    pub partitions: i32,
    pub replication_factor: i32,
}

#[derive(Debug, Clone)]
pub struct JwtConfig {
    /// Where the user-service publishes the public keys tokens are signed with.
    pub jwks_url: String,
    pub issuer: String,
    pub audience: String,
}

#[derive(Debug, Clone)]
pub struct Config {
    pub app_env: AppEnv,
    pub host: IpAddr,
    pub port: u16,
    /// The HTTP side port serving `GET /metrics` (the main port speaks gRPC only); 0 picks a free one.
    pub metrics_port: u16,
    pub mongodb_uri: MongoUri,
    pub mongodb_database: String,
    /// How long a MongoDB operation may wait for a server before the call fails with UNAVAILABLE.
    pub mongodb_timeout: Duration,
    pub kafka: KafkaConfig,
    /// The simulated card network declines amounts strictly above this many cents.
    pub decline_above_cents: i64,
    pub jwt: JwtConfig,
    pub log_format: LogFormat,
    pub tracing: TracingConfig,
    /// Payments that may wait for the group-commit writer; more are refused at once with UNAVAILABLE.
    pub write_queue: usize,
    /// Most payments written in one `insert_many`.
    pub write_batch: usize,
    /// This replica's name: the owner of its outbox leases.
    pub replica_id: String,
    /// How long a relay's claim on outbox events lasts before another replica may take them.
    pub outbox_lease: Duration,
}

/// The default replica name: the host's name (a pod's or container's own), else the process id.
fn default_replica_id() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|name| name.trim().to_owned())
        .filter(|name| !name.is_empty())
        .unwrap_or_else(|| format!("pid-{}", std::process::id()))
}

/// A count that must be within `range` (queue and batch sizes).
fn bounded(
    source: &dyn Source,
    name: &'static str,
    default: usize,
    range: std::ops::RangeInclusive<usize>,
) -> Result<usize, ConfigError> {
    let value = parsed(source, name, default)?;
    if range.contains(&value) {
        Ok(value)
    } else {
        Err(ConfigError::new(name, format!("must be from {} to {}", range.start(), range.end())))
    }
}

const DEFAULT_MONGODB_URI: &str = "mongodb://127.0.0.1:27017";
const DEFAULT_KAFKA_BROKERS: &str = "127.0.0.1:9092";
const DEFAULT_JWKS_URL: &str = "http://127.0.0.1:3005/.well-known/jwks.json";

impl Config {
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::from_source(&ProcessEnv)
    }

    pub fn from_source(source: &dyn Source) -> Result<Self, ConfigError> {
        let app_env = parsed(source, "APP_ENV", AppEnv::Development)?;
        if app_env == AppEnv::Production {
            for variable in ["MONGODB_URI", "KAFKA_BROKERS", "JWKS_URL"] {
                if source.get(variable).is_none() {
                    return Err(ConfigError::new(variable, "must be set explicitly when APP_ENV=production"));
                }
            }
        }
        let port = parsed(source, "PORT", 50051)?;
        let metrics_port = parsed(source, "METRICS_PORT", 9464)?;
        if metrics_port != 0 && metrics_port == port {
            return Err(ConfigError::new("METRICS_PORT", "must differ from PORT (the gRPC port)"));
        }
        Ok(Self {
            app_env,
            host: parsed(source, "HOST", IpAddr::from([0, 0, 0, 0]))?,
            port,
            metrics_port,
            mongodb_uri: parsed(source, "MONGODB_URI", MongoUri(DEFAULT_MONGODB_URI.into()))?,
            mongodb_database: non_empty(source, "MONGODB_DATABASE", "payments")?,
            mongodb_timeout: millis(source, "MONGODB_TIMEOUT_MS", 2_000)?,
            kafka: kafka_config(source)?,
            decline_above_cents: decline_limit(source)?,
            jwt: JwtConfig {
                jwks_url: jwks_url(source)?,
                issuer: non_empty(source, "JWT_ISSUER", "user-service")?,
                audience: non_empty(source, "JWT_AUDIENCE", "ecommerce-api")?,
            },
            log_format: parsed(source, "LOG_FORMAT", LogFormat::Text)?,
            tracing: TracingConfig::from_source(source, "payment-service")?,
            write_queue: bounded(source, "PAYMENT_WRITE_QUEUE", 1024, 1..=1_000_000)?,
            write_batch: bounded(source, "PAYMENT_WRITE_BATCH", 256, 1..=10_000)?,
            replica_id: source.get("REPLICA_ID").unwrap_or_else(default_replica_id),
            outbox_lease: millis(source, "OUTBOX_LEASE_MS", 30_000)?,
        })
    }
}

fn non_empty(source: &dyn Source, name: &'static str, default: &str) -> Result<String, ConfigError> {
    let value = text(source, name, default);
    if value.trim().is_empty() { Err(ConfigError::new(name, "must not be blank")) } else { Ok(value) }
}

fn kafka_config(source: &dyn Source) -> Result<KafkaConfig, ConfigError> {
    let brokers = non_empty(source, "KAFKA_BROKERS", DEFAULT_KAFKA_BROKERS)?;
    let prefix = text(source, "KAFKA_TOPIC_PREFIX", "");
    let topic = |name: &'static str, default: &str| -> Result<String, ConfigError> {
        let full = format!("{prefix}{}", non_empty(source, name, default)?);
        check_topic_name(&full).map_err(|reason| ConfigError::new(name, reason))?;
        Ok(full)
    };
    let payment_processed_topic = topic("KAFKA_TOPIC_PAYMENT_PROCESSED", "payment-processed")?;
    let new_order_topic = topic("KAFKA_TOPIC_NEW_ORDER", "new-order")?;
    let order_processed_topic = topic("KAFKA_TOPIC_ORDER_PROCESSED", "order-processed")?;
    let consumer_group = non_empty(source, "KAFKA_CONSUMER_GROUP", "payment-service")?;
    let partitions = parsed(source, "KAFKA_PARTITIONS", 3)?;
    if partitions < 1 {
        return Err(ConfigError::new("KAFKA_PARTITIONS", "must be at least 1"));
    }
    let replication_factor = parsed(source, "KAFKA_REPLICATION_FACTOR", 1)?;
    if replication_factor < 1 {
        return Err(ConfigError::new("KAFKA_REPLICATION_FACTOR", "must be at least 1"));
    }
    Ok(KafkaConfig {
        brokers,
        payment_processed_topic,
        new_order_topic,
        order_processed_topic,
        consumer_group,
        partitions,
        replication_factor,
    })
}

/// Kafka's own rule for topic names, checked here so a typo fails at startup rather than at the first publish.
fn check_topic_name(name: &str) -> Result<(), String> {
    let legal = |c: char| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-');
    if name.len() > 249 {
        Err(format!("topic name {name:?} (prefix included) is longer than 249 characters"))
    } else if name == "." || name == ".." || !name.chars().all(legal) {
        Err(format!("topic name {name:?} (prefix included) may only use ASCII letters, digits, '.', '_' and '-'"))
    } else {
        Ok(())
    }
}

fn decline_limit(source: &dyn Source) -> Result<i64, ConfigError> {
    let limit = parsed(source, "PAYMENT_DECLINE_ABOVE_CENTS", 500_000_i64)?;
    if limit < 0 {
        return Err(ConfigError::new("PAYMENT_DECLINE_ABOVE_CENTS", "must not be negative"));
    }
    Ok(limit)
}

fn jwks_url(source: &dyn Source) -> Result<String, ConfigError> {
    let url = text(source, "JWKS_URL", DEFAULT_JWKS_URL);
    if url.starts_with("http://") || url.starts_with("https://") {
        Ok(url)
    } else {
        Err(ConfigError::new("JWKS_URL", "expected an http:// or https:// URL"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    #[test]
    fn defaults_apply_when_nothing_is_set() {
        let config = Config::from_source(&HashMap::new()).expect("defaults are valid");
        assert_eq!(config.port, 50051);
        assert_eq!(config.metrics_port, 9464);
        assert_eq!(config.mongodb_database, "payments");
        assert_eq!(config.mongodb_timeout, Duration::from_secs(2));
        assert_eq!(config.kafka.payment_processed_topic, "payment-processed");
        assert_eq!((config.kafka.partitions, config.kafka.replication_factor), (3, 1));
        assert_eq!(config.decline_above_cents, 500_000);
        assert_eq!(config.jwt.jwks_url, DEFAULT_JWKS_URL);
        assert_eq!((config.jwt.issuer.as_str(), config.jwt.audience.as_str()), ("user-service", "ecommerce-api"));
    }

    #[test]
    fn the_topic_prefix_is_prepended_to_the_topic_name() {
        let source = HashMap::from([("KAFKA_TOPIC_PREFIX", "t42."), ("KAFKA_TOPIC_PAYMENT_PROCESSED", "paid")]);
        let config = Config::from_source(&source).expect("valid");
        assert_eq!(config.kafka.payment_processed_topic, "t42.paid");
    }

    #[test]
    fn malformed_values_name_their_variable() {
        for (variable, value) in [
            ("PORT", "eighty"),
            ("MONGODB_URI", "localhost:27017"),
            ("MONGODB_TIMEOUT_MS", "0"),
            ("KAFKA_PARTITIONS", "0"),
            ("KAFKA_REPLICATION_FACTOR", "-1"),
            ("KAFKA_TOPIC_PAYMENT_PROCESSED", "payments processed"),
            ("PAYMENT_DECLINE_ABOVE_CENTS", "-5"),
            ("PAYMENT_DECLINE_ABOVE_CENTS", "12.50"),
            ("JWKS_URL", "user-service/jwks"),
            ("LOG_FORMAT", "xml"),
            ("APP_ENV", "staging"),
            ("METRICS_PORT", "metrics"),
            ("METRICS_PORT", "50051"),
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "jaeger:4318"),
            ("OTEL_SERVICE_NAME", " "),
        ] {
            let error = Config::from_source(&HashMap::from([(variable, value)])).unwrap_err();
            assert_eq!(error.variable, variable, "{variable}={value}");
            assert!(error.to_string().contains(variable));
        }
    }

    #[test]
    fn tracing_is_off_unless_an_endpoint_is_set() {
        let config = Config::from_source(&HashMap::from([("OTEL_EXPORTER_OTLP_ENDPOINT", "")])).unwrap();
        assert_eq!(config.tracing.otlp_endpoint, None);
        assert_eq!(config.tracing.service_name, "payment-service");
        let source =
            HashMap::from([("OTEL_EXPORTER_OTLP_ENDPOINT", "http://jaeger:4318/"), ("OTEL_SERVICE_NAME", "pay")]);
        let config = Config::from_source(&source).unwrap();
        assert_eq!(config.tracing.otlp_endpoint, Some(BaseUrl("http://jaeger:4318".into())));
        assert_eq!(config.tracing.service_name, "pay");
    }

    #[test]
    fn the_metrics_port_may_be_picked_by_the_system() {
        let config = Config::from_source(&HashMap::from([("PORT", "0"), ("METRICS_PORT", "0")])).unwrap();
        assert_eq!((config.port, config.metrics_port), (0, 0));
        let config = Config::from_source(&HashMap::from([("METRICS_PORT", "9100")])).unwrap();
        assert_eq!(config.metrics_port, 9100);
    }

    #[test]
    fn production_requires_the_addresses_of_other_systems() {
        let error = Config::from_source(&HashMap::from([("APP_ENV", "production")])).unwrap_err();
        assert_eq!(error.variable, "MONGODB_URI");
        let complete = HashMap::from([
            ("APP_ENV", "production"),
            ("MONGODB_URI", "mongodb://db:27017"),
            ("KAFKA_BROKERS", "kafka:9092"),
            ("JWKS_URL", "http://user-service:3005/.well-known/jwks.json"),
        ]);
        assert_eq!(Config::from_source(&complete).expect("complete").app_env, AppEnv::Production);
    }
}
