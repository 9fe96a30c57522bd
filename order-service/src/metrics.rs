//! Prometheus metrics, served at `GET /metrics`: requests by route and status, the Kafka traffic
//! of the order lifecycle (produced, consumed, failed, consumer lag), the outbox backlog,
//! MongoDB command latency and the price lookups shared with a concurrent one. One registry per
//! application (not a global one), so several order-services in one test process keep their own counts.
use std::sync::Arc;

use platform::{http::observe::HttpMetrics, mongo::MongoMetrics};
use prometheus::{HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry};

#[derive(Clone)]
pub struct Metrics {
    /// Every metric below, with the process's own; `GET /metrics` renders it.
    pub registry: Registry,
    /// Requests by route and status (`platform::http::observe::track_requests`).
    pub http: Arc<HttpMetrics>,
    pub kafka_produced: IntCounterVec,
    pub kafka_consumed: IntCounterVec,
    pub kafka_failed: IntCounterVec,
    pub kafka_consumer_lag: IntGaugeVec,
    /// Partitions assigned to this consumer, per topic (0 until the group assigns some).
    pub kafka_consumer_assigned: IntGaugeVec,
    /// `payment-processed` events refused because they do not match their order, by reason.
    pub payments_rejected: IntCounterVec,
    pub outbox_backlog: IntGauge,
    /// What the MongoDB client's command monitoring feeds; `mongodb_commands_total` divided by the orders
    /// created is the engine's cost of an order.
    pub mongodb: MongoMetrics,
    /// Requests refused because a group-commit queue was full (answered 503), by queue.
    pub write_queue_rejected: IntCounterVec,
    /// Jobs dropped because their caller had gone before the writer took them, by queue.
    pub write_queue_skipped: IntCounterVec,
    /// Jobs per group-commit batch, by queue.
    pub write_batch_size: HistogramVec,
    /// Price lookups answered by a request another lookup of the same product had in flight.
    pub product_lookups_shared: IntCounter,
}

fn counter(name: &str, help: &str, labels: &[&str]) -> IntCounterVec {
    IntCounterVec::new(Opts::new(name, help), labels).expect("valid metric")
}

impl Metrics {
    pub fn new() -> Self {
        let registry = platform::metrics::registry();
        let mongodb = MongoMetrics::register(&registry);
        let metrics = Self {
            http: HttpMetrics::register(&registry),
            registry,
            kafka_produced: counter("kafka_messages_produced_total", "Events the broker acknowledged", &["topic"]),
            kafka_consumed: counter("kafka_messages_consumed_total", "Events consumed and handled", &["topic"]),
            kafka_failed: counter(
                "kafka_messages_failed_total",
                "Events that failed to publish, or whose handling failed (retried or dead-lettered)",
                &["topic", "stage"],
            ),
            kafka_consumer_lag: IntGaugeVec::new(
                Opts::new("kafka_consumer_lag", "Messages not yet consumed, per assigned partition"),
                &["topic", "partition"],
            )
            .expect("valid metric"),
            kafka_consumer_assigned: IntGaugeVec::new(
                Opts::new(
                    "kafka_consumer_assigned_partitions",
                    "Partitions the consumer group assigned to this consumer",
                ),
                &["topic"],
            )
            .expect("valid metric"),
            payments_rejected: counter(
                "payment_events_rejected_total",
                "payment-processed events dead-lettered because they do not match their order, by reason",
                &["reason"],
            ),
            outbox_backlog: IntGauge::new(
                "outbox_backlog",
                "Events waiting to be published: one per order this replica made and has not yet published, and those left in the outbox by earlier versions",
            )
            .expect("valid metric"),
            mongodb,
            write_queue_rejected: counter(
                "write_queue_rejected_total",
                "Requests refused with 503 because the group-commit queue was full, by queue",
                &["queue"],
            ),
            write_queue_skipped: counter(
                "write_queue_skipped_total",
                "Queued writes dropped because their caller had gone, by queue",
                &["queue"],
            ),
            write_batch_size: HistogramVec::new(
                HistogramOpts::new("write_batch_size", "Writes gathered into one group-commit batch, by queue")
                    .buckets(vec![1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0, 512.0]),
                &["queue"],
            )
            .expect("valid metric"),
            product_lookups_shared: IntCounter::new(
                "product_lookups_shared_total",
                "Price lookups answered by the request of a concurrent lookup of the same product",
            )
            .expect("valid metric"),
        };
        for collector in [
            Box::new(metrics.kafka_produced.clone()) as Box<dyn prometheus::core::Collector>,
            Box::new(metrics.kafka_consumed.clone()),
            Box::new(metrics.kafka_failed.clone()),
            Box::new(metrics.payments_rejected.clone()),
            Box::new(metrics.kafka_consumer_lag.clone()),
            Box::new(metrics.kafka_consumer_assigned.clone()),
            Box::new(metrics.outbox_backlog.clone()),
            Box::new(metrics.write_queue_rejected.clone()),
            Box::new(metrics.write_queue_skipped.clone()),
            Box::new(metrics.write_batch_size.clone()),
            Box::new(metrics.product_lookups_shared.clone()),
        ] {
            metrics.registry.register(collector).expect("metric names are unique");
        }
        metrics
    }
}

impl Metrics {
    /// What a group-commit writer reports after every batch.
    pub fn batch_observer(&self, queue: &'static str) -> impl Fn(platform::group_commit::BatchReport) + Send + 'static {
        let (sizes, skipped) = (self.write_batch_size.clone(), self.write_queue_skipped.clone());
        move |report| {
            if report.written > 0 {
                sizes.with_label_values(&[queue]).observe(report.written as f64);
            }
            if report.skipped > 0 {
                skipped.with_label_values(&[queue]).inc_by(report.skipped as u64);
            }
        }
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}
