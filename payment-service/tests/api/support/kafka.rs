//! A real Kafka consumer for the events the service publishes.
use std::time::Duration;

use payment_service::events::{Envelope, PaymentProcessed};
use platform::kafka::Detached;
use rdkafka::{
    ClientConfig, Message as _,
    consumer::{Consumer as _, StreamConsumer},
    error::{KafkaError, RDKafkaErrorCode},
    message::Headers as _,
};

/// One `payment-processed` record as a consumer sees it.
#[derive(Debug, Clone)]
pub struct ReceivedEvent {
    pub key: String,
    pub headers: Vec<(String, String)>,
    pub envelope: Envelope<PaymentProcessed>,
}

impl ReceivedEvent {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(key, _)| key == name).map(|(_, value)| value.as_str())
    }
}

/// One record as it is on the topic.
#[derive(Debug, Clone)]
pub struct RawMessage {
    pub key: String,
    pub headers: Vec<(String, String)>,
    pub payload: Vec<u8>,
}

impl RawMessage {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(key, _)| key == name).map(|(_, value)| value.as_str())
    }
}

/// A consumer in a group of its own, reading `topic` from the beginning.
pub struct EventReader {
    /// Closing it blocks while it leaves its group: done off the async threads.
    consumer: Detached<StreamConsumer>,
}

impl EventReader {
    pub fn subscribe(brokers: &str, topic: &str) -> Self {
        let consumer: StreamConsumer = ClientConfig::new()
            .set("bootstrap.servers", brokers)
            .set("group.id", format!("payment-test-{}", uuid::Uuid::new_v4().simple()))
            .set("auto.offset.reset", "earliest")
            .set("enable.auto.commit", "false")
            // Tansu answers a first JoinGroup only after half the session timeout (librdkafka's default 45 s).
            .set("session.timeout.ms", "6000")
            .create()
            .expect("a Kafka consumer");
        consumer.subscribe(&[topic]).expect("subscribed");
        Self { consumer: Detached::new(consumer) }
    }

    /// The next event, or `None` when none arrives within `wait`.
    pub async fn next(&self, wait: Duration) -> Option<ReceivedEvent> {
        let RawMessage { key, headers, payload } = self.next_raw(wait).await?;
        let envelope = serde_json::from_slice(&payload).expect("an envelope");
        Some(ReceivedEvent { key, headers, envelope })
    }

    /// The next message as it is, or `None` when none arrives within `wait`.
    pub async fn next_raw(&self, wait: Duration) -> Option<RawMessage> {
        let consumer = &self.consumer;
        let message = tokio::time::timeout(wait, async {
            loop {
                match consumer.recv().await {
                    Ok(message) => return message,
                    // The topic may not exist yet when the consumer subscribes: keep listening.
                    Err(KafkaError::MessageConsumption(RDKafkaErrorCode::UnknownTopicOrPartition)) => {}
                    Err(error) => panic!("cannot consume: {error}"),
                }
            }
        })
        .await
        .ok()?;
        let key = String::from_utf8(message.key().expect("a key").to_vec()).expect("a UTF-8 key");
        let headers = message
            .headers()
            .map(|headers| {
                headers
                    .iter()
                    .map(|header| {
                        let value = header.value.map(|value| String::from_utf8_lossy(value).into_owned());
                        (header.key.to_owned(), value.unwrap_or_default())
                    })
                    .collect()
            })
            .unwrap_or_default();
        Some(RawMessage { key, headers, payload: message.payload().unwrap_or_default().to_vec() })
    }

    /// Exactly `count` events (failing after `wait` without them), then proof that no further event follows
    /// within `quiet`.
    pub async fn exactly(&self, count: usize, wait: Duration, quiet: Duration) -> Vec<ReceivedEvent> {
        let deadline = tokio::time::Instant::now() + wait;
        let mut events = Vec::with_capacity(count);
        while events.len() < count {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            match self.next(left).await {
                Some(event) => events.push(event),
                None => panic!("expected {count} events within {wait:?}, got {}: {events:#?}", events.len()),
            }
        }
        if let Some(extra) = self.next(quiet).await {
            panic!("expected exactly {count} events, got another: {extra:#?}");
        }
        events
    }
}

/// The partition count of `topic`, once it exists (`None` if it does not appear within `wait`).
pub async fn partition_count(brokers: &str, topic: &str, wait: Duration) -> Option<usize> {
    let (brokers, topic) = (brokers.to_owned(), topic.to_owned());
    tokio::task::spawn_blocking(move || {
        let consumer: rdkafka::consumer::BaseConsumer =
            ClientConfig::new().set("bootstrap.servers", &brokers).create().expect("a Kafka client");
        let deadline = std::time::Instant::now() + wait;
        while std::time::Instant::now() < deadline {
            if let Ok(metadata) = consumer.fetch_metadata(Some(&topic), Duration::from_secs(2))
                && let Some(found) = metadata.topics().iter().find(|found| found.name() == topic)
                && found.error().is_none()
                && !found.partitions().is_empty()
            {
                return Some(found.partitions().len());
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        None
    })
    .await
    .expect("the metadata task")
}

/// Produces one message to `topic` (acks=all), as another service (or a forger) would.
pub async fn produce(brokers: &str, topic: &str, key: &str, payload: &str) {
    use rdkafka::producer::{FutureProducer, FutureRecord};
    let producer: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("acks", "all")
        .set("message.timeout.ms", "10000")
        .create()
        .expect("a Kafka producer");
    producer
        .send(FutureRecord::to(topic).key(key).payload(payload), Duration::from_secs(10))
        .await
        .map_err(|(error, _)| error)
        .expect("the broker takes the message");
}

/// An order-service event envelope (`new-order` or `order-processed`) for `order_id`.
pub fn order_event(event_type: &str, order_id: &str, user_id: &str, total_cents: i64) -> String {
    let status = if event_type == "new-order" { "pending" } else { "processed" };
    serde_json::json!({
        "eventId": uuid::Uuid::new_v4().to_string(), "type": event_type, "version": 1,
        "occurredAt": "2026-01-01T00:00:00.000Z",
        "data": {"id": order_id, "userId": user_id, "productId": "1", "productName": "Smartphone", "quantity": 1,
                 "unitPrice": total_cents as f64 / 100.0, "total": total_cents as f64 / 100.0,
                 "totalCents": total_cents, "currency": "EUR", "status": status,
                 "createdAt": "2026-01-01T00:00:00.000Z", "updatedAt": "2026-01-01T00:00:00.000Z"}
    })
    .to_string()
}

/// Produces every `(topic, key, payload)` through one producer (acks=all), in order.
pub async fn produce_all(brokers: &str, messages: &[(String, String, String)]) {
    use rdkafka::producer::{FutureProducer, FutureRecord};
    let producer: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("acks", "all")
        .set("message.timeout.ms", "10000")
        .create()
        .expect("a Kafka producer");
    let sends = messages.iter().map(|(topic, key, payload)| {
        producer.send(FutureRecord::to(topic).key(key).payload(payload), Duration::from_secs(10))
    });
    for sent in futures::future::join_all(sends).await {
        sent.map_err(|(error, _)| error).expect("the broker takes the message");
    }
}
