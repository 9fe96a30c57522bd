//! Every environment variable the payment-service reads: name, default, validation.
//! A malformed value stops startup with a message naming the variable.
use std::time::Duration;

pub use platform::config::{
    AppEnv, BaseUrl, Common, ConfigError, KafkaConnection, LogFormat, MongoSettings, MongoUri, ProcessEnv,
    ServerIdentity, ServiceDefaults, Source, TlsRoots, TracingConfig, at_least_one, bounded, default_replica_id,
    millis, non_empty, parsed, text, topic_name,
};
pub use platform::http::server::ServerLimits;

#[derive(Debug, Clone)]
pub struct KafkaConfig {
    /// KAFKA_BROKERS and how to reach them (KAFKA_SECURITY_PROTOCOL, SASL, CA).
    pub connection: KafkaConnection,
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
    /// APP_ENV, HOST, PORT, LOG_FORMAT and tracing, read the same way in every service.
    pub common: Common,
    /// The HTTP side port serving `GET /metrics` (the main port speaks gRPC only); 0 picks a free one.
    pub metrics_port: u16,
    /// HEADER_READ_TIMEOUT_MS, REQUEST_TIMEOUT_MS, SHUTDOWN_DRAIN_MS of the metrics side server.
    pub metrics_server: ServerLimits,
    /// MONGODB_URI, MONGODB_DATABASE, MONGODB_TIMEOUT_MS.
    pub mongodb: MongoSettings,
    pub kafka: KafkaConfig,
    /// GRPC_TLS_CERT_FILE and GRPC_TLS_KEY_FILE: the gRPC port serves TLS with this identity; None: plaintext.
    pub grpc_tls: Option<ServerIdentity>,
    /// The simulated card network declines amounts strictly above this many cents.
    pub decline_above_cents: i64,
    pub jwt: JwtConfig,
    /// Payments that may wait for the group-commit writer; more are refused at once with UNAVAILABLE.
    pub write_queue: usize,
    /// Most payments written in one `insert_many`.
    pub write_batch: usize,
    /// The longest a `Pay` waits for its order to become known as processed (the projection's lag); 0: not at all.
    pub pay_order_wait: Duration,
    /// This replica's name: the owner of its outbox leases.
    pub replica_id: String,
    /// How long a relay's claim on outbox events lasts before another replica may take them.
    pub outbox_lease: Duration,
}

const DEFAULT_KAFKA_BROKERS: &str = "127.0.0.1:9092";
const DEFAULT_JWKS_URL: &str = "http://127.0.0.1:3005/.well-known/jwks.json";

/// What production requires of this service; see `platform::config`.
const SERVICE: ServiceDefaults = ServiceDefaults {
    name: "payment-service",
    port: 50051,
    required_in_production: &["MONGODB_URI", "KAFKA_BROKERS", "JWKS_URL"],
};

impl Config {
    pub fn from_source(source: &dyn Source) -> Result<Self, ConfigError> {
        let common = Common::from_source(source, &SERVICE)?;
        let metrics_port = parsed(source, "METRICS_PORT", 9464)?;
        if metrics_port != 0 && metrics_port == common.port {
            return Err(ConfigError::new("METRICS_PORT", "must differ from PORT (the gRPC port)"));
        }
        let kafka = kafka_config(source, &common.tls)?;
        Ok(Self {
            common,
            metrics_port,
            metrics_server: ServerLimits::from_source(source)?,
            mongodb: MongoSettings::from_source(source, "payments")?,
            kafka,
            grpc_tls: ServerIdentity::from_source(source, "GRPC_TLS_CERT_FILE", "GRPC_TLS_KEY_FILE")?,
            decline_above_cents: decline_limit(source)?,
            jwt: JwtConfig {
                jwks_url: jwks_url(source)?,
                issuer: non_empty(source, "JWT_ISSUER", "user-service")?,
                audience: non_empty(source, "JWT_AUDIENCE", "ecommerce-api")?,
            },
            write_queue: bounded(source, "PAYMENT_WRITE_QUEUE", 1024, 1..=1_000_000)?,
            write_batch: bounded(source, "PAYMENT_WRITE_BATCH", 256, 1..=10_000)?,
            pay_order_wait: Duration::from_millis(bounded(source, "PAY_ORDER_WAIT_MS", 1_000, 0..=10_000)? as u64),
            replica_id: source.get("REPLICA_ID").unwrap_or_else(default_replica_id),
            outbox_lease: millis(source, "OUTBOX_LEASE_MS", 30_000)?,
        })
    }
}

fn kafka_config(source: &dyn Source, tls: &TlsRoots) -> Result<KafkaConfig, ConfigError> {
    let connection = KafkaConnection::from_source(source, DEFAULT_KAFKA_BROKERS, tls)?;
    let payment_processed_topic = topic_name(source, "KAFKA_TOPIC_PAYMENT_PROCESSED", "payment-processed")?;
    let new_order_topic = topic_name(source, "KAFKA_TOPIC_NEW_ORDER", "new-order")?;
    let order_processed_topic = topic_name(source, "KAFKA_TOPIC_ORDER_PROCESSED", "order-processed")?;
    let consumer_group = non_empty(source, "KAFKA_CONSUMER_GROUP", "payment-service")?;
    let partitions = at_least_one(source, "KAFKA_PARTITIONS", 3)?;
    let replication_factor = at_least_one(source, "KAFKA_REPLICATION_FACTOR", 1)?;
    Ok(KafkaConfig {
        connection,
        payment_processed_topic,
        new_order_topic,
        order_processed_topic,
        consumer_group,
        partitions,
        replication_factor,
    })
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
        assert_eq!(config.common.port, 50051);
        assert_eq!(config.metrics_port, 9464);
        assert_eq!(config.mongodb.database, "payments");
        assert_eq!(config.mongodb.timeout, Duration::from_secs(2));
        assert_eq!(config.kafka.payment_processed_topic, "payment-processed");
        assert_eq!((config.kafka.partitions, config.kafka.replication_factor), (3, 1));
        assert_eq!(config.decline_above_cents, 500_000);
        assert_eq!(config.pay_order_wait, Duration::from_secs(1));
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
            ("PAY_ORDER_WAIT_MS", "10001"),
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
        assert_eq!(config.common.tracing.traces_url, None);
        assert_eq!(config.common.tracing.service_name, "payment-service");
        let source =
            HashMap::from([("OTEL_EXPORTER_OTLP_ENDPOINT", "http://jaeger:4318/"), ("OTEL_SERVICE_NAME", "pay")]);
        let config = Config::from_source(&source).unwrap();
        assert_eq!(config.common.tracing.traces_url.as_deref(), Some("http://jaeger:4318/v1/traces"));
        assert_eq!(config.common.tracing.service_name, "pay");
    }

    #[test]
    fn the_metrics_port_may_be_picked_by_the_system() {
        let config = Config::from_source(&HashMap::from([("PORT", "0"), ("METRICS_PORT", "0")])).unwrap();
        assert_eq!((config.common.port, config.metrics_port), (0, 0));
        let config = Config::from_source(&HashMap::from([("METRICS_PORT", "9100")])).unwrap();
        assert_eq!(config.metrics_port, 9100);
    }

    #[test]
    fn production_requires_the_addresses_of_other_systems() {
        let required = [
            ("MONGODB_URI", "mongodb://db:27017"),
            ("KAFKA_BROKERS", "kafka:9092"),
            ("JWKS_URL", "http://user-service:3005/.well-known/jwks.json"),
        ];
        test_support::config::assert_production_requires(Config::from_source, &required);
    }
}
