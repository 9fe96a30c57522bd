//! The Kafka producer events leave through: idempotent, `acks=all`, one awaited delivery report per event.
use std::time::Duration;

use platform::config::KafkaConnection;
use rdkafka::{
    error::KafkaError,
    message::{Header, OwnedHeaders},
    producer::{FutureProducer, FutureRecord, Producer as _},
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

/// Clones share one librdkafka client.
#[derive(Clone)]
pub struct EventProducer {
    producer: FutureProducer,
}

impl EventProducer {
    /// Creates the client; this does no I/O, so it succeeds while the brokers are down.
    pub fn new(kafka: &KafkaConnection) -> Result<Self, KafkaError> {
        let producer = kafka
            .durable_producer()
            .set("client.id", "payment-service")
            .set("message.timeout.ms", MESSAGE_TIMEOUT.as_millis().to_string())
            .create()?;
        Ok(Self { producer })
    }

    /// Resolves once the brokers acknowledged the record (all in-sync replicas), or with the error.
    pub async fn publish(&self, event: OutgoingEvent<'_>) -> Result<(), KafkaError> {
        let headers = event
            .headers
            .iter()
            .fold(OwnedHeaders::new(), |headers, (key, value)| headers.insert(Header { key, value: Some(*value) }));
        let record = FutureRecord::to(event.topic).key(event.key).payload(event.payload).headers(headers);
        self.producer.send(record, Timeout::After(QUEUE_TIMEOUT)).await.map(|_delivery| ()).map_err(|(error, _)| error)
    }

    /// A fatal error (e.g. the idempotence state was lost when a broker restarted) leaves this client unusable:
    /// the caller must replace it.
    pub fn fatal_error(&self) -> Option<String> {
        self.producer.client().fatal_error().map(|(code, reason)| format!("{code:?}: {reason}"))
    }

    /// Waits for everything queued to be delivered. Blocks the thread: call it from `spawn_blocking`.
    pub fn flush_blocking(&self, timeout: Duration) -> Result<(), KafkaError> {
        self.producer.flush(Timeout::After(timeout))
    }
}
