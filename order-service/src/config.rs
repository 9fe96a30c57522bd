//! Every environment variable the order-service reads: name, default, validation.
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
        Some(raw) => raw
            .trim()
            .parse()
            .map_err(|error| ConfigError { variable: name, reason: format!("cannot parse {raw:?}: {error}") }),
    }
}

/// A duration given in milliseconds.
pub fn millis(source: &dyn Source, name: &'static str, default_ms: u64) -> Result<Duration, ConfigError> {
    parsed(source, name, default_ms).map(Duration::from_millis)
}

pub fn text(source: &dyn Source, name: &str, default: &str) -> String {
    source.get(name).unwrap_or_else(|| default.to_owned())
}

/// `development` runs with generated secrets for convenience; `production` refuses to.
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

/// Kafka topic names; all share an optional prefix so that tests can run side by side.
#[derive(Debug, Clone)]
pub struct Topics {
    pub new_order: String,
    pub order_processed: String,
    pub payment_processed: String,
}

impl Topics {
    /// Where messages that cannot be processed go, with the reason in a header.
    pub fn dead_letter(topic: &str) -> String {
        format!("{topic}.dlq")
    }
}

/// Where traces go: OTLP over HTTP when an endpoint is set, nowhere otherwise.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TracingConfig {
    /// OTEL_EXPORTER_OTLP_ENDPOINT without a trailing slash, e.g. `http://jaeger:4318` (spans go to
    /// `<endpoint>/v1/traces`).
    pub otlp_endpoint: Option<String>,
    /// OTEL_SERVICE_NAME: the service's name in traces.
    pub service_name: String,
}

impl TracingConfig {
    pub fn from_source(source: &dyn Source, default_name: &str) -> Result<Self, ConfigError> {
        let otlp_endpoint = match source.get("OTEL_EXPORTER_OTLP_ENDPOINT").map(|value| value.trim().to_owned()) {
            None => None,
            Some(value) if value.is_empty() => None,
            Some(value) if value.starts_with("http://") || value.starts_with("https://") => {
                Some(value.trim_end_matches('/').to_owned())
            }
            Some(_) => {
                return Err(ConfigError {
                    variable: "OTEL_EXPORTER_OTLP_ENDPOINT",
                    reason: "expected an http(s):// URL".into(),
                });
            }
        };
        Ok(Self { otlp_endpoint, service_name: text(source, "OTEL_SERVICE_NAME", default_name) })
    }
}

#[derive(Debug, Clone)]
pub struct Config {
    pub app_env: AppEnv,
    pub host: IpAddr,
    pub port: u16,
    pub mongodb_uri: MongoUri,
    pub mongodb_database: String,
    pub mongodb_timeout: Duration,
    pub log_format: LogFormat,
    pub tracing: TracingConfig,
    pub kafka_brokers: String,
    pub topics: Topics,
    pub kafka_partitions: i32,
    pub kafka_replication_factor: i32,
    pub kafka_consumer_group: String,
    pub product_service_url: String,
    pub product_service_timeout: Duration,
    pub jwks_url: String,
    pub jwt_issuer: String,
    pub jwt_audience: String,
    /// How often the outbox relay looks for unpublished events when nothing woke it.
    pub outbox_poll_interval: Duration,
    /// How long an `Idempotency-Key` replays the first response.
    pub idempotency_ttl: Duration,
    /// Orders that may wait for the group-commit writer; more are answered 503 at once.
    pub write_queue: usize,
    /// Most orders written in one `insert_many`.
    pub write_batch: usize,
    /// This replica's name: owner of its outbox leases, and its static consumer-group membership.
    pub replica_id: String,
    /// How long a relay's claim on outbox entries lasts before another replica may take them.
    pub outbox_lease: Duration,
}

/// The default replica name: the host's name (a pod's or container's own), else the process id.
pub fn default_replica_id() -> String {
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
        Err(ConfigError { variable: name, reason: format!("must be from {} to {}", range.start(), range.end()) })
    }
}

impl Config {
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::from_source(&ProcessEnv)
    }

    pub fn from_source(source: &dyn Source) -> Result<Self, ConfigError> {
        let prefix = text(source, "KAFKA_TOPIC_PREFIX", "");
        let topic = |name: &str, default: &str| format!("{prefix}{}", text(source, name, default));
        let kafka_partitions: i32 = parsed(source, "KAFKA_PARTITIONS", 3)?;
        if kafka_partitions < 1 {
            return Err(ConfigError { variable: "KAFKA_PARTITIONS", reason: "must be at least 1".into() });
        }
        let product_service_url = text(source, "PRODUCT_SERVICE_URL", "http://127.0.0.1:3002");
        if !product_service_url.starts_with("http://") && !product_service_url.starts_with("https://") {
            return Err(ConfigError { variable: "PRODUCT_SERVICE_URL", reason: "expected an http(s):// URL".into() });
        }
        let jwks_url = text(source, "JWKS_URL", "http://127.0.0.1:3005/.well-known/jwks.json");
        if !jwks_url.starts_with("http://") && !jwks_url.starts_with("https://") {
            return Err(ConfigError { variable: "JWKS_URL", reason: "expected an http(s):// URL".into() });
        }
        Ok(Self {
            app_env: parsed(source, "APP_ENV", AppEnv::Development)?,
            host: parsed(source, "HOST", IpAddr::from([0, 0, 0, 0]))?,
            port: parsed(source, "PORT", 3003)?,
            mongodb_uri: parsed(source, "MONGODB_URI", MongoUri("mongodb://127.0.0.1:27017".into()))?,
            mongodb_database: text(source, "MONGODB_DATABASE", "orders"),
            mongodb_timeout: millis(source, "MONGODB_TIMEOUT_MS", 2_000)?,
            log_format: parsed(source, "LOG_FORMAT", LogFormat::Text)?,
            tracing: TracingConfig::from_source(source, "order-service")?,
            kafka_brokers: text(source, "KAFKA_BROKERS", "127.0.0.1:9092"),
            topics: Topics {
                new_order: topic("KAFKA_TOPIC_NEW_ORDER", "new-order"),
                order_processed: topic("KAFKA_TOPIC_ORDER_PROCESSED", "order-processed"),
                payment_processed: topic("KAFKA_TOPIC_PAYMENT_PROCESSED", "payment-processed"),
            },
            kafka_partitions,
            kafka_replication_factor: parsed(source, "KAFKA_REPLICATION_FACTOR", 1)?,
            kafka_consumer_group: text(source, "KAFKA_CONSUMER_GROUP", "order-service"),
            product_service_url: product_service_url.trim_end_matches('/').to_owned(),
            product_service_timeout: millis(source, "PRODUCT_SERVICE_TIMEOUT_MS", 2_000)?,
            jwks_url,
            jwt_issuer: text(source, "JWT_ISSUER", "user-service"),
            jwt_audience: text(source, "JWT_AUDIENCE", "ecommerce-api"),
            outbox_poll_interval: millis(source, "OUTBOX_POLL_INTERVAL_MS", 500)?,
            idempotency_ttl: Duration::from_secs(parsed(source, "IDEMPOTENCY_TTL_SECONDS", 86_400)?),
            write_queue: bounded(source, "ORDER_WRITE_QUEUE", 1024, 1..=1_000_000)?,
            write_batch: bounded(source, "ORDER_WRITE_BATCH", 256, 1..=10_000)?,
            replica_id: source.get("REPLICA_ID").unwrap_or_else(default_replica_id),
            outbox_lease: millis(source, "OUTBOX_LEASE_MS", 30_000)?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    #[test]
    fn defaults_apply_when_nothing_is_set() {
        let config = Config::from_source(&HashMap::new()).expect("defaults are valid");
        assert_eq!(config.port, 3003);
        assert_eq!(config.topics.new_order, "new-order");
        assert_eq!(config.kafka_consumer_group, "order-service");
    }

    #[test]
    fn tracing_is_off_unless_an_endpoint_is_set() {
        let config = Config::from_source(&HashMap::from([("OTEL_EXPORTER_OTLP_ENDPOINT", "")])).unwrap();
        assert_eq!(config.tracing.otlp_endpoint, None);
        assert_eq!(config.tracing.service_name, "order-service");
        let config =
            Config::from_source(&HashMap::from([("OTEL_EXPORTER_OTLP_ENDPOINT", "http://jaeger:4318/")])).unwrap();
        assert_eq!(config.tracing.otlp_endpoint.as_deref(), Some("http://jaeger:4318"));
    }

    #[test]
    fn the_topic_prefix_applies_to_every_topic() {
        let config = Config::from_source(&HashMap::from([("KAFKA_TOPIC_PREFIX", "t1.")])).unwrap();
        assert_eq!(config.topics.order_processed, "t1.order-processed");
        assert_eq!(Topics::dead_letter(&config.topics.new_order), "t1.new-order.dlq");
    }

    #[test]
    fn malformed_values_name_their_variable() {
        for (name, value) in [
            ("PORT", "x"),
            ("KAFKA_PARTITIONS", "0"),
            ("PRODUCT_SERVICE_URL", "localhost:3002"),
            ("MONGODB_TIMEOUT_MS", "-1"),
            ("LOG_FORMAT", "xml"),
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "jaeger:4318"),
            ("ORDER_WRITE_QUEUE", "0"),
            ("ORDER_WRITE_BATCH", "x"),
            ("OUTBOX_LEASE_MS", "soon"),
        ] {
            let error = Config::from_source(&HashMap::from([(name, value)])).unwrap_err();
            assert_eq!(error.variable, name);
        }
    }
}
