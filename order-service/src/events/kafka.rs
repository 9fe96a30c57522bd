//! Kafka clients with the settings the lifecycle relies on.
use std::{collections::HashMap, time::Duration};

use platform::{
    config::KafkaConnection,
    kafka::{Detached, ReplaceableProducer},
};
use rdkafka::{
    ClientContext, Statistics,
    consumer::{BaseConsumer, ConsumerContext, Rebalance, StreamConsumer},
    error::KafkaError,
    message::{Header, OwnedHeaders},
    producer::{FutureProducer, FutureRecord, Producer as _},
};
use tracing::Instrument as _;

use crate::{
    metrics::Metrics,
    store::OutboxEvent,
    telemetry::{self, TraceContext},
};

const SEND_TIMEOUT: Duration = Duration::from_secs(10);

/// The topics this service uses, and how to create them: at start, and again after a failure (a broker that
/// restarted without storage has lost them).
#[derive(Clone)]
pub struct TopicSetup {
    pub kafka: KafkaConnection,
    pub names: Vec<String>,
    pub partitions: i32,
    pub replication: i32,
}

impl TopicSetup {
    pub async fn ensure(&self) -> Result<(), rdkafka::error::KafkaError> {
        let names: Vec<&str> = self.names.iter().map(String::as_str).collect();
        self.kafka.ensure_topics(&names, self.partitions, self.replication).await
    }
}

/// The platform's durable producer, replaced when it can no longer deliver. It never lets a send auto-create a topic:
/// topics are created explicitly with the configured partition count, and a missing topic is an error the relay
/// repairs (see `OutboxRelay::recover`). The relay, the lifecycle consumer and `/ready` share it.
pub fn producer(kafka: &KafkaConnection) -> Result<ReplaceableProducer, KafkaError> {
    let mut config = kafka.durable_producer();
    config
        .set("allow.auto.create.topics", "false")
        .set("linger.ms", "2")
        .set("message.timeout.ms", "5000")
        .set("socket.connection.setup.timeout.ms", "3000");
    ReplaceableProducer::new(config)
}

/// Sends one event, in a producer span of the trace that queued it, and waits for the broker's acknowledgement.
/// The span's context goes with the message, so the consumer's work joins the same trace. A producer that failed in a
/// way no retry mends is replaced, so that the caller's retry goes through a new one.
pub async fn publish(
    producers: &ReplaceableProducer,
    metrics: &Metrics,
    event: &OutboxEvent,
) -> Result<(), KafkaError> {
    let span = tracing::info_span!(
        "publish",
        otel.name = %format!("publish {}", event.topic),
        otel.kind = "producer",
        messaging.system = "kafka",
        messaging.destination.name = %event.topic,
        order_id = %event.key,
        trace_id = tracing::field::Empty,
    );
    let origin = TraceContext { traceparent: event.traceparent.clone(), tracestate: event.tracestate.clone() };
    telemetry::continue_stored_trace(&span, &origin);
    async {
        let trace_context = TraceContext::current();
        let mut headers = OwnedHeaders::new().insert(Header { key: "event-id", value: Some(event.event_id.as_str()) });
        if let Some(request_id) = &event.request_id {
            headers = headers.insert(Header { key: "x-request-id", value: Some(request_id.as_str()) });
        }
        for (name, value) in trace_context.headers() {
            headers = headers.insert(Header { key: name, value: Some(value) });
        }
        let record = FutureRecord::to(&event.topic).key(&event.key).payload(&event.payload).headers(headers);
        let sent = producers.send(record, SEND_TIMEOUT).await;
        match &sent {
            Ok(()) => metrics.kafka_produced.with_label_values(&[event.topic.as_str()]).inc(),
            Err(_) => metrics.kafka_failed.with_label_values(&[event.topic.as_str(), "produce"]).inc(),
        }
        sent
    }
    .instrument(span)
    .await
}

/// The consumer's client context: librdkafka's statistics (every few seconds) feed the
/// `kafka_consumer_lag` gauge, per assigned partition, and every rebalance the
/// `kafka_consumer_assigned_partitions` gauge, per topic.
pub struct LagContext {
    pub lag: prometheus::IntGaugeVec,
    pub assigned: prometheus::IntGaugeVec,
}

impl ClientContext for LagContext {
    fn stats(&self, statistics: Statistics) {
        for (topic, stats) in &statistics.topics {
            for (partition, stats) in &stats.partitions {
                // Partition -1 is librdkafka's internal bookkeeping; a lag of -1 means "not known yet".
                if *partition >= 0 && stats.consumer_lag >= 0 {
                    self.lag.with_label_values(&[topic.as_str(), &partition.to_string()]).set(stats.consumer_lag);
                }
            }
        }
    }
}

impl ConsumerContext for LagContext {
    fn post_rebalance(&self, _consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        match rebalance {
            Rebalance::Assign(partitions) => {
                let mut per_topic: HashMap<String, i64> = HashMap::new();
                for element in partitions.elements() {
                    *per_topic.entry(element.topic().to_owned()).or_default() += 1;
                }
                for (topic, count) in per_topic {
                    self.assigned.with_label_values(&[topic.as_str()]).set(count);
                }
            }
            Rebalance::Revoke(partitions) => {
                for element in partitions.elements() {
                    self.assigned.with_label_values(&[element.topic()]).set(0);
                }
            }
            Rebalance::Error(error) => tracing::warn!(%error, "consumer group rebalance failed"),
        }
    }
}

/// Torn down off the async threads: see [`Detached`].
pub type LifecycleStream = Detached<StreamConsumer<LagContext>>;

/// A group consumer that commits only offsets stored after their message's work is durable. It joins as
/// `KafkaConnection::group_consumer` says: by default a static member named `instance` (KIP-345), so that a replica
/// that restarts under the same name takes its partitions back at once instead of the group waiting for the dead
/// member's session to time out and rebalancing (see DOCUMENTATION.md, "Consumer-group membership").
pub fn consumer(
    kafka: &KafkaConnection,
    group: &str,
    instance: &str,
    lag: prometheus::IntGaugeVec,
    assigned: prometheus::IntGaugeVec,
) -> Result<LifecycleStream, KafkaError> {
    kafka
        .group_consumer(group, instance)
        .set("enable.auto.commit", "true")
        .set("auto.commit.interval.ms", "1000")
        .set("enable.auto.offset.store", "false")
        .set("auto.offset.reset", "earliest")
        .set("max.poll.interval.ms", "10000")
        .set("topic.metadata.refresh.interval.ms", "5000")
        .set("statistics.interval.ms", "5000")
        // An event waits at most this long for a fetch to fill (librdkafka's default is 500 ms): it is most of
        // the time an order takes from `pending` to `processed` when the system is idle.
        .set("fetch.wait.max.ms", "100")
        .create_with_context(LagContext { lag, assigned })
        .map(Detached::new)
}

/// True when a broker answers a metadata request within the timeout (runs off the executor).
pub async fn broker_answers(producer: &FutureProducer, timeout: Duration) -> bool {
    let client = producer.clone();
    tokio::task::spawn_blocking(move || client.client().fetch_metadata(None, timeout).is_ok()).await.unwrap_or(false)
}
