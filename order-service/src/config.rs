//! Every environment variable the order-service reads: name, default, validation.
//! A malformed value stops startup with a message naming the variable.
use std::time::Duration;

pub use platform::config::{
    AppEnv, BaseUrl, Common, ConfigError, KafkaConnection, LogFormat, MongoSettings, MongoUri, ProcessEnv,
    ServiceDefaults, Source, TracingConfig, at_least_one, bounded, default_replica_id, millis, non_empty, parsed, text,
    topic_name,
};
pub use platform::http::server::ServerLimits;

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

#[derive(Debug, Clone)]
pub struct Config {
    /// APP_ENV, HOST, PORT, LOG_FORMAT and tracing, read the same way in every service.
    pub common: Common,
    /// MONGODB_URI, MONGODB_DATABASE, MONGODB_TIMEOUT_MS.
    pub mongodb: MongoSettings,
    /// HEADER_READ_TIMEOUT_MS, REQUEST_TIMEOUT_MS, SHUTDOWN_DRAIN_MS (platform::http::server).
    pub server: ServerLimits,
    /// KAFKA_BROKERS and how to reach them (KAFKA_SECURITY_PROTOCOL, SASL, CA).
    pub kafka: KafkaConnection,
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

/// What production requires of this service; see `platform::config`.
const SERVICE: ServiceDefaults = ServiceDefaults {
    name: "order-service",
    port: 3003,
    required_in_production: &["MONGODB_URI", "KAFKA_BROKERS", "PRODUCT_SERVICE_URL", "JWKS_URL"],
};

impl Config {
    pub fn from_source(source: &dyn Source) -> Result<Self, ConfigError> {
        let common = Common::from_source(source, &SERVICE)?;
        let kafka_partitions: i32 = at_least_one(source, "KAFKA_PARTITIONS", 3)?;
        let product_service_url = text(source, "PRODUCT_SERVICE_URL", "http://127.0.0.1:3002");
        if !product_service_url.starts_with("http://") && !product_service_url.starts_with("https://") {
            return Err(ConfigError { variable: "PRODUCT_SERVICE_URL", reason: "expected an http(s):// URL".into() });
        }
        let jwks_url = text(source, "JWKS_URL", "http://127.0.0.1:3005/.well-known/jwks.json");
        if !jwks_url.starts_with("http://") && !jwks_url.starts_with("https://") {
            return Err(ConfigError { variable: "JWKS_URL", reason: "expected an http(s):// URL".into() });
        }
        let kafka = KafkaConnection::from_source(source, "127.0.0.1:9092", &common.tls)?;
        Ok(Self {
            common,
            mongodb: MongoSettings::from_source(source, "orders")?,
            server: ServerLimits::from_source(source)?,
            kafka,
            topics: Topics {
                new_order: topic_name(source, "KAFKA_TOPIC_NEW_ORDER", "new-order")?,
                order_processed: topic_name(source, "KAFKA_TOPIC_ORDER_PROCESSED", "order-processed")?,
                payment_processed: topic_name(source, "KAFKA_TOPIC_PAYMENT_PROCESSED", "payment-processed")?,
            },
            kafka_partitions,
            kafka_replication_factor: at_least_one(source, "KAFKA_REPLICATION_FACTOR", 1)?,
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
        assert_eq!(config.common.port, 3003);
        assert_eq!(config.topics.new_order, "new-order");
        assert_eq!(config.kafka_consumer_group, "order-service");
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

    #[test]
    fn production_requires_the_addresses_of_other_systems() {
        let required = [
            ("MONGODB_URI", "mongodb://db:27017"),
            ("KAFKA_BROKERS", "kafka:9092"),
            ("PRODUCT_SERVICE_URL", "http://products:3002"),
            ("JWKS_URL", "http://users:3005/.well-known/jwks.json"),
        ];
        test_support::config::assert_production_requires(Config::from_source, &required);
    }
}
