//! The lifecycle consumer (group `order-service`): `new-order` moves an order pending → processed
//! and queues `order-processed`; `payment-processed` moves it processed → paid. Transitions are
//! conditional, so a redelivered event changes nothing. An offset is stored only after its work
//! is durable (or the message is safely in the dead-letter topic), and committed from there.
use std::time::Duration;

use futures::future::join_all;
use rdkafka::{
    Message as _,
    consumer::{CommitMode, Consumer as _},
    error::RDKafkaErrorCode,
    message::{BorrowedMessage, Header, Headers as _, OwnedHeaders},
    producer::{FutureProducer, FutureRecord},
};
use serde::Deserialize;
use tokio::sync::{Notify, watch};
use tracing::Instrument as _;

use crate::{
    backoff::Backoff,
    config::Topics,
    domain::{OrderStatus, OrderView},
    events::{
        envelope::{self, Envelope, Poison},
        kafka::{self, LifecycleStream},
    },
    metrics::Metrics,
    store::{OrderStore, OutboxEvent, StoreError, Transition},
    telemetry::{self, TraceContext},
};
use std::sync::Arc;

/// The `data` of a `payment-processed` event, as the payment-service publishes it. Every field is required: a
/// payment that does not say who paid how much for what cannot be checked against its order.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PaymentData {
    pub payment_id: String,
    pub order_id: String,
    pub user_id: String,
    pub amount_cents: i64,
    pub currency: String,
    pub status: String,
}

/// Why a `payment-processed` event does not match its order (the `reason` label of
/// `payment_events_rejected_total`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mismatch {
    Payer,
    Amount,
    Currency,
    OtherPayment,
}

impl Mismatch {
    pub fn label(self) -> &'static str {
        match self {
            Self::Payer => "payer",
            Self::Amount => "amount",
            Self::Currency => "currency",
            Self::OtherPayment => "already_paid",
        }
    }
}

/// Checks a successful payment against the order it names: the payer is the owner, the amount is the total to
/// the cent, in the order's currency, and the order is not already paid by another payment.
pub fn check_payment(order: &crate::store::OrderDocument, payment: &PaymentData) -> Result<(), (Mismatch, String)> {
    if payment.user_id != order.user_id {
        return Err((Mismatch::Payer, format!("payment {} is by another user than the order's", payment.payment_id)));
    }
    if payment.currency != crate::domain::CURRENCY {
        return Err((
            Mismatch::Currency,
            format!(
                "payment {} is in {} but the order is in {}",
                payment.payment_id,
                payment.currency,
                crate::domain::CURRENCY
            ),
        ));
    }
    if payment.amount_cents != order.total_cents {
        return Err((
            Mismatch::Amount,
            format!(
                "payment {} is {} cents but the order total is {} cents",
                payment.payment_id, payment.amount_cents, order.total_cents
            ),
        ));
    }
    if let Some(paid_by) = &order.payment_id
        && paid_by != &payment.payment_id
    {
        return Err((Mismatch::OtherPayment, format!("order is already paid by payment {paid_by}")));
    }
    Ok(())
}

pub struct LifecycleConsumer {
    pub consumer: LifecycleStream,
    pub store: OrderStore,
    pub producer: FutureProducer,
    pub topics: Topics,
    /// Wakes the relay when a transition queued an event.
    pub relay_wake: Arc<Notify>,
    /// Topics to re-create when the broker says a subscribed one is missing.
    pub topic_setup: TopicSetup,
    pub metrics: Metrics,
}

#[derive(Clone)]
pub struct TopicSetup {
    pub brokers: String,
    pub names: Vec<String>,
    pub partitions: i32,
    pub replication: i32,
}

impl TopicSetup {
    pub async fn ensure(&self) -> Result<(), rdkafka::error::KafkaError> {
        let names: Vec<&str> = self.names.iter().map(String::as_str).collect();
        kafka::ensure_topics(&self.brokers, &names, self.partitions, self.replication).await
    }
}

/// Most messages worked on at once.
const BATCH: usize = 64;

/// At most one topic repair per interval, however many errors arrive.
const REPAIR_INTERVAL: Duration = Duration::from_secs(5);

enum Outcome {
    Done,
    DeadLetter(Poison),
}

impl LifecycleConsumer {
    pub async fn run(self, mut shutdown: watch::Receiver<bool>) {
        if let Err(error) = self.subscribe() {
            tracing::error!(%error, "cannot subscribe to the lifecycle topics");
            return;
        }
        let mut last_repair: Option<tokio::time::Instant> = None;
        loop {
            let message = tokio::select! {
                message = self.consumer.recv() => message,
                _ = shutdown.changed() => break,
            };
            match message {
                Ok(first) => {
                    // Whatever else is already waiting joins this batch, up to BATCH messages.
                    let mut batch = vec![first];
                    while batch.len() < BATCH {
                        match tokio::time::timeout(Duration::ZERO, self.consumer.recv()).await {
                            Ok(Ok(message)) => batch.push(message),
                            _ => break,
                        }
                    }
                    // Messages of a batch are worked on concurrently: they concern different
                    // orders, or are redeliveries that conditional transitions make harmless.
                    let done = join_all(batch.iter().map(|message| self.handle(message, shutdown.clone()))).await;
                    if done.contains(&false) {
                        break;
                    }
                    // Offsets are stored only once the whole batch is durable, in order: a crash
                    // mid-batch redelivers it rather than skipping an unfinished message.
                    for message in &batch {
                        if let Err(error) = self.consumer.store_offset_from_message(message) {
                            tracing::warn!(%error, "cannot store the offset; the message may be redelivered");
                        }
                    }
                }
                Err(error) => {
                    tracing::warn!(%error, "consumer error");
                    // A subscribed topic that does not exist (a broker that lost its state) is
                    // created again, so that the group can settle on it.
                    if error.rdkafka_error_code() == Some(RDKafkaErrorCode::UnknownTopicOrPartition)
                        && last_repair.is_none_or(|at| at.elapsed() > REPAIR_INTERVAL)
                    {
                        last_repair = Some(tokio::time::Instant::now());
                        if let Err(error) = self.topic_setup.ensure().await {
                            tracing::debug!(%error, "cannot re-create the topics yet");
                        }
                    }
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
            }
        }
        if let Err(error) = self.consumer.commit_consumer_state(CommitMode::Sync) {
            tracing::debug!(%error, "no offsets committed at shutdown");
        }
        tracing::info!("lifecycle consumer stopped");
    }

    fn subscribe(&self) -> Result<(), rdkafka::error::KafkaError> {
        self.consumer.subscribe(&[&self.topics.new_order, &self.topics.payment_processed])
    }

    /// Processes one message until it is done or dead-lettered; false when shutting down first.
    /// The work is a consumer span in the trace the message's `traceparent` names.
    async fn handle(&self, message: &BorrowedMessage<'_>, shutdown: watch::Receiver<bool>) -> bool {
        let span = tracing::info_span!(
            "consume",
            otel.name = %format!("consume {}", message.topic()),
            otel.kind = "consumer",
            messaging.system = "kafka",
            messaging.destination.name = %message.topic(),
            messaging.kafka.offset = message.offset(),
            trace_id = tracing::field::Empty,
        );
        telemetry::continue_stored_trace(&span, &trace_context(message));
        self.handle_in_span(message, shutdown).instrument(span).await
    }

    async fn handle_in_span(&self, message: &BorrowedMessage<'_>, mut shutdown: watch::Receiver<bool>) -> bool {
        let topic = message.topic();
        let mut backoff = Backoff::new(Duration::from_millis(100), Duration::from_secs(5));
        loop {
            let attempt = match self.process(message).await {
                Ok(Outcome::Done) => Ok(()),
                Ok(Outcome::DeadLetter(reason)) => {
                    self.metrics.kafka_failed.with_label_values(&[topic, "consume"]).inc();
                    self.dead_letter(message, &reason).await
                }
                Err(error) => Err(error),
            };
            match attempt {
                Ok(()) => {
                    self.metrics.kafka_consumed.with_label_values(&[topic]).inc();
                    return true;
                }
                Err(error) => {
                    self.metrics.kafka_failed.with_label_values(&[topic, "consume"]).inc();
                    // Not the message's fault (database or broker down): retry it, in order.
                    let delay = backoff.next_delay();
                    tracing::warn!(%error, topic = message.topic(), offset = message.offset(), "retrying message");
                    tokio::select! {
                        () = tokio::time::sleep(delay) => {}
                        _ = shutdown.changed() => return false,
                    }
                }
            }
        }
    }

    async fn process(&self, message: &BorrowedMessage<'_>) -> Result<Outcome, String> {
        let topic = message.topic();
        let request_id = header(message, "x-request-id");
        let outcome = if topic == self.topics.new_order {
            match envelope::parse::<OrderView>(message.payload(), envelope::NEW_ORDER) {
                Ok(event) => self.on_new_order(&event, request_id).await,
                Err(poison) => Ok(Outcome::DeadLetter(poison)),
            }
        } else if topic == self.topics.payment_processed {
            match envelope::parse::<PaymentData>(message.payload(), envelope::PAYMENT_PROCESSED) {
                Ok(event) => self.on_payment_processed(&event).await,
                Err(poison) => Ok(Outcome::DeadLetter(poison)),
            }
        } else {
            Ok(Outcome::DeadLetter(Poison(format!("unexpected topic {topic}"))))
        };
        outcome.map_err(|error: StoreError| error.to_string())
    }

    async fn on_new_order(
        &self,
        event: &Envelope<OrderView>,
        request_id: Option<String>,
    ) -> Result<Outcome, StoreError> {
        let order_id = &event.data.id;
        let topic = self.topics.order_processed.clone();
        // `order-processed` continues this message's trace (the order's).
        let traceparent = TraceContext::current().traceparent;
        let transition = self
            .store
            .mark_processed(order_id, |order| {
                let envelope = Envelope::new(envelope::ORDER_PROCESSED, order.event_data());
                OutboxEvent {
                    event_id: envelope.event_id.clone(),
                    topic,
                    key: order.id.clone(),
                    payload: serde_json::to_string(&envelope).unwrap_or_default(),
                    request_id,
                    traceparent,
                }
            })
            .await?;
        Ok(match transition {
            Transition::Applied => {
                tracing::info!(order_id = %order_id, "order processed");
                self.relay_wake.notify_one();
                Outcome::Done
            }
            Transition::AlreadyDone | Transition::TooEarly(_) => {
                tracing::debug!(order_id = %order_id, "new-order redelivered; nothing to do");
                Outcome::Done
            }
            Transition::NotFound => Outcome::DeadLetter(Poison(format!("unknown order {order_id}"))),
        })
    }

    async fn on_payment_processed(&self, event: &Envelope<PaymentData>) -> Result<Outcome, StoreError> {
        let data = &event.data;
        if data.status != "SUCCESS" {
            return Ok(Outcome::Done);
        }
        let Some(order) = self.store.find(&data.order_id).await? else {
            return Ok(Outcome::DeadLetter(Poison(format!("unknown order {}", data.order_id))));
        };
        // The payment has its own trace (the Pay request's); link it to the order's.
        let span = tracing::Span::current();
        if telemetry::is_traced(&span)
            && let Some(traceparent) = order.traceparent.clone()
        {
            telemetry::link_to(&span, &TraceContext { traceparent: Some(traceparent), tracestate: None });
        }
        // This service checks the payment against its own order; it trusts no producer of the topic for that.
        if let Err((mismatch, reason)) = check_payment(&order, data) {
            self.metrics.payments_rejected.with_label_values(&[mismatch.label()]).inc();
            tracing::warn!(order_id = %data.order_id, payment_id = %data.payment_id, %reason, "payment does not match its order");
            return Ok(Outcome::DeadLetter(Poison(reason)));
        }
        if order.status == OrderStatus::Paid {
            // The same payment again (a redelivery, or its event republished after a crash).
            return Ok(Outcome::Done);
        }
        Ok(match self.store.mark_paid(&order, &data.payment_id, &event.event_id).await? {
            Transition::Applied => {
                tracing::info!(order_id = %data.order_id, payment_id = %data.payment_id, "order paid");
                Outcome::Done
            }
            Transition::AlreadyDone => Outcome::Done,
            Transition::NotFound => Outcome::DeadLetter(Poison(format!("unknown order {}", data.order_id))),
            Transition::TooEarly(status) => Outcome::DeadLetter(Poison(format!(
                "order {} is {} and cannot be paid",
                data.order_id,
                status.as_str()
            ))),
        })
    }

    /// Copies the message to `<topic>.dlq` with the reason and origin in headers.
    async fn dead_letter(&self, message: &BorrowedMessage<'_>, reason: &Poison) -> Result<(), String> {
        let topic = Topics::dead_letter(message.topic());
        tracing::warn!(source = message.topic(), offset = message.offset(), reason = %reason.0, "dead-lettering message");
        let partition = message.partition().to_string();
        let offset = message.offset().to_string();
        let headers = OwnedHeaders::new()
            .insert(Header { key: "dlq-reason", value: Some(reason.0.as_str()) })
            .insert(Header { key: "dlq-source-topic", value: Some(message.topic()) })
            .insert(Header { key: "dlq-source-partition", value: Some(partition.as_str()) })
            .insert(Header { key: "dlq-source-offset", value: Some(offset.as_str()) });
        let mut record: FutureRecord<'_, [u8], [u8]> = FutureRecord::to(&topic).headers(headers);
        if let Some(key) = message.key() {
            record = record.key(key);
        }
        if let Some(payload) = message.payload() {
            record = record.payload(payload);
        }
        self.producer.send(record, Duration::from_secs(10)).await.map(|_| ()).map_err(|(error, _)| error.to_string())
    }
}

/// The W3C trace context headers of a message.
fn trace_context(message: &BorrowedMessage<'_>) -> TraceContext {
    let Some(headers) = message.headers() else { return TraceContext::default() };
    TraceContext::from_headers(
        headers.iter().filter_map(|header| Some((header.key, std::str::from_utf8(header.value?).ok()?))),
    )
}

fn header(message: &BorrowedMessage<'_>, name: &str) -> Option<String> {
    let headers = message.headers()?;
    headers.iter().find(|header| header.key == name)?.value.map(|value| String::from_utf8_lossy(value).into_owned())
}
