//! The consumer (group `payment-service`) that keeps the order projection current from the order-service's
//! `new-order` and `order-processed` events.
//!
//! Whatever the consumer has received (up to [`BATCH`] messages) is applied together, in one or two commands
//! (see `projection`). Offsets are stored only once the whole batch is durably applied (or its poison messages
//! are safely in the dead-letter topic), and committed from there, so a crash redelivers rather than skips.
//! Applying is idempotent, so redeliveries change nothing. A message that can never be applied (not an order
//! event, an unknown version, a missing field) goes to `<topic>.dlq` with the reason, and is counted.
use platform::kafka::{BatchWork, Detached, Poison};
use rdkafka::{
    ClientContext, Message as _,
    consumer::{BaseConsumer, Consumer as _, ConsumerContext, Rebalance, StreamConsumer},
    error::{KafkaError, RDKafkaErrorCode},
    message::BorrowedMessage,
};
use serde::Deserialize;
use std::sync::Arc;

use super::{
    producer::{EventProducer, OutgoingEvent},
    topic,
};
use crate::{
    config::KafkaConfig,
    metrics::{Metrics, STAGE_CONSUME},
    projection::{KnownOrder, OrderProjection, OrderStage, ProcessedOrders},
    shutdown::{StopSignal, retry, retry_until_ok},
    store::StoreError,
};

/// The `type` of the order-service's events, as their envelopes name them.
pub const NEW_ORDER: &str = "new-order";
pub const ORDER_PROCESSED: &str = "order-processed";
/// The version of the order events this consumer understands.
const ORDER_EVENT_VERSION: u32 = 1;
/// Most messages applied in one batch.
pub const BATCH: usize = 256;

/// The part of an order event's `data` this service keeps.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct OrderData {
    id: String,
    user_id: String,
    /// Added to the events later than `total`; events without it carry `total` in euros.
    #[serde(default)]
    total_cents: Option<i64>,
    #[serde(default)]
    total: Option<f64>,
    /// Orders are priced in EUR; events from before the field was added are EUR.
    #[serde(default)]
    currency: Option<String>,
}

/// Every rebalance sets the `kafka_consumer_assigned_partitions` gauge, per topic.
struct AssignmentContext {
    metrics: Arc<Metrics>,
}

impl ClientContext for AssignmentContext {}

impl ConsumerContext for AssignmentContext {
    fn post_rebalance(&self, _consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        match rebalance {
            Rebalance::Assign(partitions) => {
                let mut per_topic: std::collections::HashMap<String, i64> = std::collections::HashMap::new();
                for element in partitions.elements() {
                    *per_topic.entry(element.topic().to_owned()).or_default() += 1;
                }
                for (topic, count) in per_topic {
                    self.metrics.set_assigned_partitions(&topic, count);
                }
            }
            Rebalance::Revoke(partitions) => {
                for element in partitions.elements() {
                    self.metrics.set_assigned_partitions(element.topic(), 0);
                }
            }
            Rebalance::Error(error) => tracing::warn!(%error, "consumer group rebalance failed"),
        }
    }
}

pub struct OrderEventsConsumer {
    /// Torn down off the async threads: see [`Detached`].
    consumer: Detached<StreamConsumer<AssignmentContext>>,
    projection: OrderProjection,
    /// Told of every order recorded as processed, for the `Pay` calls waiting for it.
    processed: ProcessedOrders,
    producer: EventProducer,
    kafka: KafkaConfig,
    metrics: Arc<Metrics>,
}

impl OrderEventsConsumer {
    /// Creates the client; no I/O, so it succeeds while Kafka is down. `instance` names this replica in its group
    /// when membership is static (`KafkaConnection::group_consumer`).
    pub fn new(
        kafka: KafkaConfig,
        instance: &str,
        projection: OrderProjection,
        processed: ProcessedOrders,
        producer: EventProducer,
        metrics: Arc<Metrics>,
    ) -> Result<Self, KafkaError> {
        let consumer = kafka
            .connection
            .group_consumer(&kafka.consumer_group, instance)
            .set("client.id", "payment-service")
            .set("enable.auto.commit", "true")
            .set("auto.commit.interval.ms", "1000")
            // Offsets are stored by hand, after the event is durably applied.
            .set("enable.auto.offset.store", "false")
            .set("auto.offset.reset", "earliest")
            .set("topic.metadata.refresh.interval.ms", "5000")
            // How long the projection may lag behind an order event is mostly this wait for a fetch to fill
            // (librdkafka's default is 500 ms): a payment right after `processed` should find the order ready.
            .set("fetch.wait.max.ms", "100")
            .create_with_context(AssignmentContext { metrics: metrics.clone() })
            .map(Detached::new)?;
        for topic in [&kafka.new_order_topic, &kafka.order_processed_topic] {
            metrics.expect_consumed_topic(topic);
        }
        Ok(Self { consumer, projection, processed, producer, kafka, metrics })
    }

    pub async fn run(self, mut stop: StopSignal) {
        if !self.topics_ready(&mut stop).await {
            return;
        }
        if let Err(error) = self.consumer.subscribe(&[&self.kafka.new_order_topic, &self.kafka.order_processed_topic]) {
            tracing::error!(%error, "cannot subscribe to the order topics");
            return;
        }
        platform::kafka::consume_batches(&self.consumer, BATCH, &mut stop, &self).await;
        if !self.consumer.close(platform::kafka::CONSUMER_CLOSE).await {
            tracing::warn!("the order events consumer was still closing at the deadline; left to close on its own");
        }
        tracing::info!("order events consumer stopped");
    }

    /// The topics exist before the group subscribes (created with the configured partitions when missing), so
    /// the first assignment covers them; false when asked to stop first.
    async fn topics_ready(&self, stop: &mut StopSignal) -> bool {
        let names = [self.kafka.new_order_topic.as_str(), self.kafka.order_processed_topic.as_str()];
        retry_until_ok("order topics", stop, || topic::ensure_topics(&self.kafka, &names)).await
    }

    /// Applies a batch: its order events in one write, its poison messages to the dead-letter topic, retrying
    /// while MongoDB or Kafka is away; false when asked to stop first (then no offset of the batch is stored, and
    /// it is redelivered).
    async fn handle_batch(&self, batch: &[BorrowedMessage<'_>], stop: &mut StopSignal) -> bool {
        let parsed: Vec<Result<KnownOrder, Poison>> = batch.iter().map(|message| self.parse(message)).collect();
        let orders: Vec<KnownOrder> = parsed.iter().filter_map(|parsed| parsed.as_ref().ok()).cloned().collect();
        if !orders.is_empty() {
            let retried = |error: StoreError, _delay| {
                for (message, _) in batch.iter().zip(&parsed).filter(|(_, parsed)| parsed.is_ok()) {
                    self.metrics.message_failed(message.topic(), STAGE_CONSUME);
                }
                tracing::warn!(%error, events = orders.len(), "retrying a batch of order events");
            };
            let Some(written) = retry(stop, || self.projection.apply_batch(&orders), retried).await else {
                return false;
            };
            self.metrics.observe_batch("order_events", written.len());
            for order in &written {
                tracing::debug!(order_id = %order.order_id, stage = ?order.stage, "order known");
            }
            self.processed.announce(written);
        }
        for (message, parsed) in batch.iter().zip(&parsed) {
            if let Err(poison) = parsed
                && !self.dead_letter_until_sent(message, poison, stop).await
            {
                return false;
            }
            self.metrics.message_consumed(message.topic());
        }
        true
    }

    /// Dead-letters one message, retrying while Kafka is away; false when asked to stop first.
    async fn dead_letter_until_sent(
        &self,
        message: &BorrowedMessage<'_>,
        poison: &Poison,
        stop: &mut StopSignal,
    ) -> bool {
        let retried = |error: KafkaError, _delay| {
            self.metrics.message_failed(message.topic(), STAGE_CONSUME);
            tracing::warn!(%error, topic = message.topic(), offset = message.offset(), "retrying a dead letter");
        };
        retry(stop, || self.dead_letter(message, poison), retried).await.is_some()
    }

    fn parse(&self, message: &BorrowedMessage<'_>) -> Result<KnownOrder, Poison> {
        let topic = message.topic();
        let (expected_type, stage) = if topic == self.kafka.new_order_topic {
            (NEW_ORDER, OrderStage::Pending)
        } else if topic == self.kafka.order_processed_topic {
            (ORDER_PROCESSED, OrderStage::Processed)
        } else {
            return Err(Poison(format!("unexpected topic {topic}")));
        };
        parse_order_event(message.payload(), expected_type, stage)
    }

    /// Copies the message to `<topic>.dlq` with the reason and origin in headers.
    async fn dead_letter(&self, message: &BorrowedMessage<'_>, reason: &Poison) -> Result<(), KafkaError> {
        let source = message.topic();
        tracing::warn!(source, offset = message.offset(), reason = %reason.0, "dead-lettering order event");
        let (partition, offset) = (message.partition().to_string(), message.offset().to_string());
        let headers = [
            ("dlq-reason", reason.0.as_str()),
            ("dlq-consumer", self.kafka.consumer_group.as_str()),
            ("dlq-source-topic", source),
            ("dlq-source-partition", partition.as_str()),
            ("dlq-source-offset", offset.as_str()),
        ];
        let key = message.key().map(String::from_utf8_lossy).unwrap_or_default();
        let payload = message.payload().map(String::from_utf8_lossy).unwrap_or_default();
        let topic = format!("{source}.dlq");
        self.producer.publish(OutgoingEvent { topic: &topic, key: &key, payload: &payload, headers: &headers }).await
    }
}

impl BatchWork for OrderEventsConsumer {
    async fn work(&self, batch: &[BorrowedMessage<'_>], stop: &mut StopSignal) -> bool {
        self.handle_batch(batch, stop).await
    }

    async fn failed(&self, error: KafkaError) {
        // A topic not created yet is waited for quietly: `topics_ready` creates them.
        if !matches!(error, KafkaError::MessageConsumption(RDKafkaErrorCode::UnknownTopicOrPartition)) {
            tracing::warn!(%error, "order events consumer error");
        }
    }
}

/// An order event's envelope → the order as this service keeps it.
fn parse_order_event(payload: Option<&[u8]>, expected_type: &str, stage: OrderStage) -> Result<KnownOrder, Poison> {
    let envelope = platform::kafka::parse_envelope::<OrderData>(payload, expected_type, ORDER_EVENT_VERSION)?;
    let data = envelope.data;
    let total_cents = match (data.total_cents, data.total) {
        (Some(cents), _) => cents,
        (None, Some(total)) if total.is_finite() => (total * 100.0).round() as i64,
        _ => return Err(Poison("the order has no total".into())),
    };
    if data.id.is_empty() || data.user_id.is_empty() || total_cents <= 0 {
        return Err(Poison("the order has no id, no owner or no positive total".into()));
    }
    // The order-service's ids are UUIDs; a `/` would name another order's record in the projection.
    if data.id.contains('/') {
        return Err(Poison("the order id is not one the order-service makes".into()));
    }
    let currency = data.currency.unwrap_or_else(|| "EUR".to_owned());
    Ok(KnownOrder::new(data.id, data.user_id, total_cents, currency, stage, envelope.event_id))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn envelope(event_type: &str, version: u32, data: serde_json::Value) -> Vec<u8> {
        json!({"eventId": "e1", "type": event_type, "version": version, "occurredAt": "t", "data": data})
            .to_string()
            .into_bytes()
    }

    #[test]
    fn an_order_event_becomes_the_order_as_this_service_keeps_it() {
        let data = json!({"id": "o1", "userId": "u1", "total": 1799.98, "totalCents": 179_998, "currency": "EUR",
            "status": "processed", "productId": "1"});
        let order =
            parse_order_event(Some(&envelope(ORDER_PROCESSED, 1, data)), ORDER_PROCESSED, OrderStage::Processed)
                .unwrap();
        assert_eq!(
            (order.order_id.as_str(), order.user_id.as_str(), order.total_cents, order.currency.as_str()),
            ("o1", "u1", 179_998, "EUR")
        );
        assert_eq!((order.stage, order.event_id.as_str()), (OrderStage::Processed, "e1"));
    }

    #[test]
    fn events_without_cents_use_the_decimal_total_in_euros() {
        let data = json!({"id": "o1", "userId": "u1", "total": 1799.98});
        let order = parse_order_event(Some(&envelope(NEW_ORDER, 1, data)), NEW_ORDER, OrderStage::Pending).unwrap();
        assert_eq!((order.total_cents, order.currency.as_str()), (179_998, "EUR"));
    }

    #[test]
    fn garbage_other_types_versions_and_incomplete_orders_are_poison() {
        let ok = json!({"id": "o1", "userId": "u1", "totalCents": 100});
        assert!(parse_order_event(Some(b"{nope"), NEW_ORDER, OrderStage::Pending).is_err());
        assert!(parse_order_event(None, NEW_ORDER, OrderStage::Pending).is_err());
        assert!(parse_order_event(Some(&envelope("other", 1, ok.clone())), NEW_ORDER, OrderStage::Pending).is_err());
        assert!(parse_order_event(Some(&envelope(NEW_ORDER, 2, ok)), NEW_ORDER, OrderStage::Pending).is_err());
        let no_total = json!({"id": "o1", "userId": "u1"});
        assert!(parse_order_event(Some(&envelope(NEW_ORDER, 1, no_total)), NEW_ORDER, OrderStage::Pending).is_err());
        let no_owner = json!({"id": "o1", "userId": "", "totalCents": 100});
        assert!(parse_order_event(Some(&envelope(NEW_ORDER, 1, no_owner)), NEW_ORDER, OrderStage::Pending).is_err());
        let record_id = json!({"id": "o1/processed", "userId": "u1", "totalCents": 100});
        assert!(parse_order_event(Some(&envelope(NEW_ORDER, 1, record_id)), NEW_ORDER, OrderStage::Pending).is_err());
    }
}
