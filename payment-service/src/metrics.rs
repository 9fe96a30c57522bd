//! Prometheus metrics, served at `GET /metrics` on a small HTTP side server (METRICS_PORT): the main port
//! speaks gRPC only, which Prometheus does not scrape. gRPC calls by method and code, Kafka messages
//! produced and failed, the outbox backlog and MongoDB command latency.
//! One registry per application (not a global one), so several apps in one test process keep their own counts.
use std::{sync::Arc, time::Duration};

use axum::{
    Json, Router,
    extract::State,
    http::{StatusCode, Uri},
    response::IntoResponse,
    routing::get,
};
use platform::mongo::MongoMetrics;
use prometheus::{HistogramOpts, HistogramVec, IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry};
use tonic::Code;

/// Latency buckets in seconds, from an indexed lookup (~1 ms) to a call that timed out (10 s).
const BUCKETS: &[f64] = &[0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0];

/// The `stage` labels of a Kafka failure: publishing payment events, or applying order events.
pub const STAGE_PRODUCE: &str = "produce";
pub const STAGE_CONSUME: &str = "consume";

pub struct Metrics {
    registry: Registry,
    grpc_requests: IntCounterVec,
    grpc_duration: HistogramVec,
    kafka_produced: IntCounterVec,
    kafka_consumed: IntCounterVec,
    kafka_failed: IntCounterVec,
    kafka_assigned: IntGaugeVec,
    outbox_backlog: IntGauge,
    /// What the MongoDB client's command monitoring feeds; `mongodb_commands_total` divided by the payments is
    /// the engine's cost of one.
    pub mongodb: MongoMetrics,
    write_rejected: IntCounterVec,
    write_skipped: IntCounterVec,
    write_batch_size: HistogramVec,
}

impl Metrics {
    pub fn new() -> Self {
        let registry = platform::metrics::registry();
        let grpc_requests = IntCounterVec::new(
            Opts::new("grpc_server_requests_total", "gRPC calls answered, by method and status code"),
            &["method", "code"],
        )
        .expect("valid metric");
        let grpc_duration = HistogramVec::new(
            HistogramOpts::new("grpc_server_request_duration_seconds", "Time to answer a gRPC call")
                .buckets(BUCKETS.to_vec()),
            &["method"],
        )
        .expect("valid metric");
        let kafka_produced = IntCounterVec::new(
            Opts::new("kafka_messages_produced_total", "Kafka messages acknowledged by the brokers, by topic"),
            &["topic"],
        )
        .expect("valid metric");
        let kafka_consumed = IntCounterVec::new(
            Opts::new(
                "kafka_messages_consumed_total",
                "Kafka messages consumed and applied (or dead-lettered), by topic",
            ),
            &["topic"],
        )
        .expect("valid metric");
        let kafka_failed = IntCounterVec::new(
            Opts::new("kafka_messages_failed_total", "Kafka messages that failed, by topic and stage"),
            &["topic", "stage"],
        )
        .expect("valid metric");
        let kafka_assigned = IntGaugeVec::new(
            Opts::new("kafka_consumer_assigned_partitions", "Partitions the consumer group assigned to this consumer"),
            &["topic"],
        )
        .expect("valid metric");
        let outbox_backlog =
            IntGauge::new("outbox_backlog", "Events stored in the outbox and not yet acknowledged by Kafka")
                .expect("valid metric");
        let mongodb = MongoMetrics::register(&registry);
        let write_rejected = IntCounterVec::new(
            Opts::new(
                "write_queue_rejected_total",
                "Calls refused with UNAVAILABLE because the group-commit queue was full, by queue",
            ),
            &["queue"],
        )
        .expect("valid metric");
        let write_skipped = IntCounterVec::new(
            Opts::new("write_queue_skipped_total", "Queued writes dropped because their caller had gone, by queue"),
            &["queue"],
        )
        .expect("valid metric");
        let write_batch_size = HistogramVec::new(
            HistogramOpts::new("write_batch_size", "Writes gathered into one group-commit batch, by queue")
                .buckets(vec![1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0, 512.0]),
            &["queue"],
        )
        .expect("valid metric");
        for collector in [
            Box::new(grpc_requests.clone()) as Box<dyn prometheus::core::Collector>,
            Box::new(grpc_duration.clone()),
            Box::new(kafka_produced.clone()),
            Box::new(kafka_consumed.clone()),
            Box::new(kafka_failed.clone()),
            Box::new(kafka_assigned.clone()),
            Box::new(outbox_backlog.clone()),
            Box::new(write_rejected.clone()),
            Box::new(write_skipped.clone()),
            Box::new(write_batch_size.clone()),
        ] {
            registry.register(collector).expect("metric names are unique");
        }
        Self {
            registry,
            grpc_requests,
            grpc_duration,
            kafka_produced,
            kafka_consumed,
            kafka_failed,
            kafka_assigned,
            outbox_backlog,
            mongodb,
            write_rejected,
            write_skipped,
            write_batch_size,
        }
    }

    /// A call refused because the `queue` was full.
    pub fn write_rejected(&self, queue: &str) {
        self.write_rejected.with_label_values(&[queue]).inc();
    }

    /// What a group-commit writer reports after every batch.
    pub fn batch_observer(&self, queue: &'static str) -> impl Fn(platform::group_commit::BatchReport) + Send + 'static {
        let (sizes, skipped) = (self.write_batch_size.clone(), self.write_skipped.clone());
        move |report| {
            if report.written > 0 {
                sizes.with_label_values(&[queue]).observe(report.written as f64);
            }
            if report.skipped > 0 {
                skipped.with_label_values(&[queue]).inc_by(report.skipped as u64);
            }
        }
    }

    /// A batch of `size` written outside a group-commit queue (the projection consumer's `order_events`).
    pub fn observe_batch(&self, queue: &str, size: usize) {
        self.write_batch_size.with_label_values(&[queue]).observe(size as f64);
    }

    /// One answered call; `method` is the short RPC name ("Pay") or `unknown`.
    pub fn observe_rpc(&self, method: &str, code: Code, elapsed: Duration) {
        self.grpc_requests.with_label_values(&[method, code_name(code)]).inc();
        self.grpc_duration.with_label_values(&[method]).observe(elapsed.as_secs_f64());
    }

    /// Shows the series of `topic` at 0 before the first message, so rates start from a known value.
    pub fn expect_topic(&self, topic: &str) {
        self.kafka_produced.with_label_values(&[topic]);
        self.kafka_failed.with_label_values(&[topic, STAGE_PRODUCE]);
    }

    /// Shows the consumer's series of `topic` at 0 before the first message.
    pub fn expect_consumed_topic(&self, topic: &str) {
        self.kafka_assigned.with_label_values(&[topic]);
        self.kafka_consumed.with_label_values(&[topic]);
        self.kafka_failed.with_label_values(&[topic, STAGE_CONSUME]);
    }

    pub fn message_consumed(&self, topic: &str) {
        self.kafka_consumed.with_label_values(&[topic]).inc();
    }

    pub fn message_produced(&self, topic: &str) {
        self.kafka_produced.with_label_values(&[topic]).inc();
    }

    pub fn message_failed(&self, topic: &str, stage: &str) {
        self.kafka_failed.with_label_values(&[topic, stage]).inc();
    }

    pub fn set_assigned_partitions(&self, topic: &str, partitions: i64) {
        self.kafka_assigned.with_label_values(&[topic]).set(partitions);
    }

    pub fn set_outbox_backlog(&self, events: u64) {
        self.outbox_backlog.set(i64::try_from(events).unwrap_or(i64::MAX));
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

/// The `code` label: tonic's name of the status code (`Ok`, `InvalidArgument`…).
pub fn code_name(code: Code) -> &'static str {
    match code {
        Code::Ok => "Ok",
        Code::Cancelled => "Cancelled",
        Code::Unknown => "Unknown",
        Code::InvalidArgument => "InvalidArgument",
        Code::DeadlineExceeded => "DeadlineExceeded",
        Code::NotFound => "NotFound",
        Code::AlreadyExists => "AlreadyExists",
        Code::PermissionDenied => "PermissionDenied",
        Code::ResourceExhausted => "ResourceExhausted",
        Code::FailedPrecondition => "FailedPrecondition",
        Code::Aborted => "Aborted",
        Code::OutOfRange => "OutOfRange",
        Code::Unimplemented => "Unimplemented",
        Code::Internal => "Internal",
        Code::Unavailable => "Unavailable",
        Code::DataLoss => "DataLoss",
        Code::Unauthenticated => "Unauthenticated",
    }
}

/// The side server's routes: `GET /metrics`, and a JSON 404 for anything else.
pub fn router(metrics: Arc<Metrics>) -> Router {
    Router::new().route("/metrics", get(render)).fallback(not_found).with_state(metrics)
}

async fn render(State(metrics): State<Arc<Metrics>>) -> impl IntoResponse {
    platform::metrics::exposition(&metrics.registry)
}

async fn not_found(uri: Uri) -> impl IntoResponse {
    let body = serde_json::json!({
        "success": false,
        "message": format!("No route for {}", uri.path()),
        "errors": [],
    });
    (StatusCode::NOT_FOUND, Json(body))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_exposition_names_every_series() {
        let metrics = Metrics::new();
        metrics.observe_rpc("Pay", Code::InvalidArgument, Duration::from_millis(3));
        metrics.expect_topic("payment-processed");
        metrics.set_outbox_backlog(2);
        metrics.mongodb.durations.with_label_values(&["find", "success"]).observe(0.001);
        let text = String::from_utf8(platform::metrics::render(&metrics.registry)).unwrap();
        for line in [
            r#"grpc_server_requests_total{code="InvalidArgument",method="Pay"} 1"#,
            r#"grpc_server_request_duration_seconds_count{method="Pay"} 1"#,
            r#"kafka_messages_produced_total{topic="payment-processed"} 0"#,
            r#"kafka_messages_failed_total{stage="produce",topic="payment-processed"} 0"#,
            "outbox_backlog 2",
            r#"mongodb_command_duration_seconds_count{command="find",outcome="success"} 1"#,
        ] {
            assert!(text.lines().any(|found| found == line), "{line} missing from:\n{text}");
        }
    }

    #[test]
    fn code_labels_are_tonics_names() {
        assert_eq!(code_name(Code::Ok), "Ok");
        assert_eq!(code_name(Code::InvalidArgument), "InvalidArgument");
        assert_eq!(code_name(Code::Unavailable), format!("{:?}", Code::Unavailable));
    }
}
