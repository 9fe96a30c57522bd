//! The Kafka producer events leave through: idempotent, `acks=all`, one awaited delivery report per event, and
//! replaced when it can no longer deliver (`platform::kafka::ReplaceableProducer`).
use std::{sync::Arc, time::Duration};

use platform::{config::KafkaConnection, kafka::ReplaceableProducer};
use rdkafka::{
    error::KafkaError,
    message::{Header, OwnedHeaders},
    producer::{FutureRecord, Producer as _},
    util::Timeout,
};

/// How long librdkafka keeps retrying one message before reporting it failed; the relay then retries it anew.
const MESSAGE_TIMEOUT: Duration = Duration::from_secs(10);
/// How long `send` may wait for room in librdkafka's local queue.
const QUEUE_TIMEOUT: Duration = Duration::from_secs(5);

/// One Kafka record to publish.
pub struct OutgoingEvent<'a> {
    pub topic: &'a str,
    pub key: &'a str,
    pub payload: &'a str,
    pub headers: &'a [(&'a str, &'a str)],
}

/// Clones share one producer.
#[derive(Clone)]
pub struct EventProducer {
    producers: Arc<ReplaceableProducer>,
}

impl EventProducer {
    /// Creates the client; this does no I/O, so it succeeds while the brokers are down.
    pub fn new(kafka: &KafkaConnection) -> Result<Self, KafkaError> {
        let mut config = kafka.durable_producer();
        config.set("client.id", "payment-service").set("message.timeout.ms", MESSAGE_TIMEOUT.as_millis().to_string());
        Ok(Self { producers: Arc::new(ReplaceableProducer::new(config)?) })
    }

    /// Resolves once the brokers acknowledged the record (all in-sync replicas), or with the error. A producer that
    /// failed in a way no retry mends (fatal, or fenced by the broker) is replaced, so the retry goes through a new one.
    pub async fn publish(&self, event: OutgoingEvent<'_>) -> Result<(), KafkaError> {
        let headers = event
            .headers
            .iter()
            .fold(OwnedHeaders::new(), |headers, (key, value)| headers.insert(Header { key, value: Some(*value) }));
        let record = FutureRecord::to(event.topic).key(event.key).payload(event.payload).headers(headers);
        self.producers.send(record, QUEUE_TIMEOUT).await
    }

    /// After the `consecutive`-th round in a row that Kafka failed: see `ReplaceableProducer::after_failed_rounds`.
    pub fn after_failed_rounds(&self, consecutive: u32) -> bool {
        self.producers.after_failed_rounds(consecutive)
    }

    /// Waits for everything queued to be delivered. Blocks the thread: call it from `spawn_blocking`.
    pub fn flush_blocking(&self, timeout: Duration) -> Result<(), KafkaError> {
        self.producers.current().flush(Timeout::After(timeout))
    }
}
