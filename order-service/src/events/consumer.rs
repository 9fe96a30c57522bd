//! The lifecycle consumer (group `order-service`): `new-order` moves an order pending → processed
//! and announces it with `order-processed`; `payment-processed` moves it processed → paid.
//! Transitions are conditional, so a redelivered event changes no order. An offset is stored only
//! after its work is durable and its announcement acknowledged by the broker (or the message is
//! safely in the dead-letter topic), and committed from there.
//!
//! `order-processed` needs no outbox, nor a write per order to mark it published: the `new-order`
//! message whose offset is not stored yet is what makes it happen again after a crash. The transition's
//! record names the consumer batch that made it (`processedBy`), and once all of a batch's announcements are
//! acknowledged the batch is recorded as announced (one insert per batch). A `new-order` that finds its
//! order already processed, by a batch not recorded, is a redelivery after a crash between the two, and
//! announces the order again; one processed by a recorded batch (a redelivery after the broker lost the
//! group's offsets, a relay's duplicate) announces nothing. `order-processed` is at-least-once; its
//! consumers are idempotent.
use std::{
    collections::{HashMap, HashSet},
    sync::Arc,
    time::Duration,
};

use futures::future::join_all;
use platform::{
    kafka::{BatchWork, ReplaceableProducer},
    shutdown::{StopSignal, retry},
};
use rdkafka::{
    Message as _,
    consumer::Consumer as _,
    error::{KafkaError, RDKafkaErrorCode},
    message::{BorrowedMessage, Header, Headers as _, OwnedHeaders},
    producer::FutureRecord,
};
use serde::Deserialize;
use tracing::Instrument as _;

use crate::{
    config::Topics,
    domain::{OrderStatus, OrderView},
    events::{
        envelope::{self, Envelope, Poison},
        kafka::{self, LifecycleStream, TopicSetup},
    },
    metrics::Metrics,
    store::{OrderDocument, OrderStore, OutboxEvent, StoreError, TransitionWrite},
    telemetry::{self, TraceContext},
};

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
pub fn check_payment(order: &OrderDocument, payment: &PaymentData) -> Result<(), (Mismatch, String)> {
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
    /// Announces processed orders and writes dead letters; shared with the relay, and replaced once it can no
    /// longer deliver (`platform::kafka::cannot_deliver_again`).
    pub producer: Arc<ReplaceableProducer>,
    pub topics: Topics,
    /// Topics to re-create when the broker says a subscribed one is missing.
    pub topic_setup: TopicSetup,
    /// When the topics were last re-created.
    pub last_repair: std::sync::Mutex<Option<tokio::time::Instant>>,
    pub metrics: Metrics,
}

/// Most messages worked on at once.
const BATCH: usize = 64;

/// At most one topic repair per interval, however many errors arrive.
const REPAIR_INTERVAL: Duration = Duration::from_secs(5);

enum Outcome {
    Done,
    DeadLetter(Poison),
}

/// What a batch decided: each message's outcome, the `order-processed` events to publish, each with the
/// index of the `new-order` message it answers, and the batch to record as announced once they are out (when it
/// made orders processed).
struct Decided {
    outcomes: Vec<Outcome>,
    announcements: Vec<(usize, OutboxEvent)>,
    announced_batch: Option<String>,
}

/// A message of a batch, parsed.
enum Parsed {
    NewOrder(Envelope<OrderView>),
    Payment(Envelope<PaymentData>),
    Poison(Poison),
}

impl LifecycleConsumer {
    pub async fn run(self, mut shutdown: StopSignal) {
        if let Err(error) = self.subscribe() {
            tracing::error!(%error, "cannot subscribe to the lifecycle topics");
            return;
        }
        platform::kafka::consume_batches(&self.consumer, BATCH, &mut shutdown, &self).await;
        if !self.consumer.close(platform::kafka::CONSUMER_CLOSE).await {
            tracing::warn!("the lifecycle consumer was still closing at the deadline; left to close on its own");
        }
        tracing::info!("lifecycle consumer stopped");
    }

    fn subscribe(&self) -> Result<(), KafkaError> {
        self.consumer.subscribe(&[&self.topics.new_order, &self.topics.payment_processed])
    }

    /// Works a batch until every message is done or dead-lettered; false when shutting down first.
    /// Each message's work is a consumer span in the trace its `traceparent` names.
    async fn handle_batch(&self, batch: &[BorrowedMessage<'_>], mut shutdown: StopSignal) -> bool {
        let spans: Vec<tracing::Span> = batch.iter().map(consume_span).collect();
        let retried = |error: StoreError, _delay| {
            // Not the messages' fault (database down): retry the batch, whose transitions are conditional, so
            // what already applied does not apply twice.
            for message in batch {
                self.metrics.kafka_failed.with_label_values(&[message.topic(), "consume"]).inc();
            }
            tracing::warn!(%error, messages = batch.len(), "retrying a batch of lifecycle events");
        };
        let Some(Decided { outcomes, announcements, announced_batch }) =
            retry(&mut shutdown, || self.process_batch(batch, &spans), retried).await
        else {
            return false;
        };
        // Announced before the offsets are stored: a crash before the broker has them redelivers the messages.
        let announced = join_all(announcements.iter().map(|(index, event)| {
            let mut shutdown = shutdown.clone();
            let span = spans[*index].clone();
            async move {
                let retried = |error: KafkaError, _delay| {
                    tracing::warn!(%error, order_id = %event.key, "retrying an order-processed announcement");
                };
                let announce = || kafka::publish(&self.producer, &self.metrics, event);
                retry(&mut shutdown, announce, retried).instrument(span).await.is_some()
            }
        }))
        .await;
        if announced.contains(&false) {
            return false;
        }
        if let Some(announced_batch) = announced_batch {
            let retried = |error: StoreError, _delay| {
                tracing::warn!(%error, "retrying the record of an announced batch");
            };
            if retry(&mut shutdown, || self.store.record_announced(&announced_batch), retried).await.is_none() {
                return false;
            }
        }
        let finished = join_all(batch.iter().zip(outcomes).zip(&spans).map(|((message, outcome), span)| {
            let shutdown = shutdown.clone();
            async move {
                if let Outcome::DeadLetter(reason) = outcome {
                    self.metrics.kafka_failed.with_label_values(&[message.topic(), "consume"]).inc();
                    if !self.dead_letter_until_sent(message, &reason, shutdown).instrument(span.clone()).await {
                        return false;
                    }
                }
                self.metrics.kafka_consumed.with_label_values(&[message.topic()]).inc();
                true
            }
        }))
        .await;
        !finished.contains(&false)
    }

    /// Decides every message of the batch on one read of the orders it names, applies the
    /// transitions with one command per kind, and reads again only the orders whose payment did not apply.
    async fn process_batch(
        &self,
        batch: &[BorrowedMessage<'_>],
        spans: &[tracing::Span],
    ) -> Result<Decided, StoreError> {
        let parsed: Vec<Parsed> = batch.iter().map(|message| self.parse(message)).collect();
        let (mut arriving, mut paying) = (Vec::new(), Vec::new());
        for parsed in &parsed {
            match parsed {
                Parsed::NewOrder(event) => arriving.push(event.data.id.clone()),
                Parsed::Payment(event) if event.data.status == "SUCCESS" => paying.push(event.data.order_id.clone()),
                _ => {}
            }
        }
        let orders = if arriving.is_empty() && paying.is_empty() {
            HashMap::new()
        } else {
            self.store.find_for_events(&arriving, &paying).await?
        };

        let mut outcomes: Vec<Outcome> = Vec::with_capacity(batch.len());
        let mut announcements = Vec::new();
        let mut writes = Vec::new();
        // The message each write is for, and the announcement of a processed transition once it applies.
        let mut write_of = Vec::new();
        let mut processed_event = HashMap::new();
        let mut processing = HashSet::new();
        // Already processed: (message index, order), announced again unless their batch is recorded.
        let mut redelivered = Vec::new();
        for (index, parsed) in parsed.into_iter().enumerate() {
            let span = &spans[index];
            let outcome = match parsed {
                Parsed::Poison(poison) => Outcome::DeadLetter(poison),
                Parsed::NewOrder(event) => match orders.get(&event.data.id) {
                    None => Outcome::DeadLetter(Poison(format!("unknown order {}", event.data.id))),
                    // Twice in this batch: the first one does the work.
                    Some(order) if !processing.insert(order.id.clone()) => Outcome::Done,
                    Some(order) if order.status == OrderStatus::Pending => {
                        let request_id = header(&batch[index], "x-request-id");
                        let mut processed = order.clone();
                        processed.status = OrderStatus::Processed;
                        processed.updated_at = mongodb::bson::DateTime::now();
                        processed_event.insert(writes.len(), self.announcement(&processed, request_id, span));
                        writes.push(TransitionWrite::Processed { order_id: order.id.clone() });
                        write_of.push(index);
                        Outcome::Done
                    }
                    Some(order) if order.status == OrderStatus::Processed => {
                        redelivered.push((index, order));
                        Outcome::Done
                    }
                    // Paid: its payment needed the announcement, which therefore got out.
                    Some(order) => {
                        span.in_scope(|| tracing::debug!(order_id = %order.id, "new-order redelivered; nothing to do"));
                        Outcome::Done
                    }
                },
                Parsed::Payment(event) => match self.payment_write(&event, orders.get(&event.data.order_id), span) {
                    Ok(Some(write)) => {
                        writes.push(write);
                        write_of.push(index);
                        Outcome::Done
                    }
                    Ok(None) => Outcome::Done,
                    Err(poison) => Outcome::DeadLetter(poison),
                },
            };
            outcomes.push(outcome);
        }

        // Redelivered after their transition: announced again when the batch that made them processed was not
        // recorded as announced (it crashed in between).
        self.announce_unrecorded(batch, spans, redelivered, &mut announcements).await?;

        let batch_id = uuid::Uuid::now_v7().to_string();
        let applied = self.store.apply_transitions(&writes, &batch_id).await?;
        let mut announced_batch = None;
        let mut recheck = Vec::new();
        let mut taken = Vec::new();
        for (position, ((write, index), applied)) in writes.iter().zip(write_of).zip(applied).enumerate() {
            let span = &spans[index];
            match (write, applied) {
                (TransitionWrite::Processed { order_id }, true) => {
                    span.in_scope(|| tracing::info!(order_id = %order_id, "order processed"));
                    if let Some(event) = processed_event.remove(&position) {
                        announcements.push((index, event));
                        announced_batch = Some(batch_id.clone());
                    }
                }
                // Recorded already, by another consumer working the same messages at once (a rebalance): read again
                // below, whether it was read pending or taken as written from the store's memory.
                (TransitionWrite::Processed { order_id }, false) => taken.push((index, order_id.clone())),
                (TransitionWrite::Paid { order_id, payment_id, .. }, true) => {
                    span.in_scope(|| tracing::info!(order_id = %order_id, payment_id = %payment_id, "order paid"));
                }
                (TransitionWrite::Paid { order_id, .. }, false) => recheck.push((index, order_id.clone())),
            }
        }
        if !recheck.is_empty() || !taken.is_empty() {
            let ids: Vec<String> = recheck.iter().chain(&taken).map(|(_, order_id)| order_id.clone()).collect();
            let now = self.store.find_many(&ids).await?;
            for (index, order_id) in recheck {
                let Parsed::Payment(event) = self.parse(&batch[index]) else { continue };
                outcomes[index] = self.after_payment_missed(&event.data, now.get(&order_id), &spans[index]);
            }
            // Announced by whoever recorded them, unless that batch is not recorded as announced (it may have crashed
            // in between, and this batch's offsets are about to pass its messages).
            let processed = taken.iter().filter_map(|(index, order_id)| Some((*index, now.get(order_id)?)));
            let processed = processed.filter(|(_, order)| order.status == OrderStatus::Processed).collect();
            self.announce_unrecorded(batch, spans, processed, &mut announcements).await?;
        }
        Ok(Decided { outcomes, announcements, announced_batch })
    }

    /// Of these processed orders (each with the index of its `new-order` message), announces again those whose batch
    /// is not recorded as announced, in one query. Orders processed before `processedBy` existed were announced
    /// through the outbox.
    async fn announce_unrecorded(
        &self,
        batch: &[BorrowedMessage<'_>],
        spans: &[tracing::Span],
        processed: Vec<(usize, &OrderDocument)>,
        announcements: &mut Vec<(usize, OutboxEvent)>,
    ) -> Result<(), StoreError> {
        let batches: Vec<String> = processed.iter().filter_map(|(_, order)| order.processed_by.clone()).collect();
        let recorded = if batches.is_empty() { HashSet::new() } else { self.store.announced(&batches).await? };
        for (index, order) in processed {
            let span = &spans[index];
            match &order.processed_by {
                Some(by) if !recorded.contains(by) => {
                    span.in_scope(|| tracing::info!(order_id = %order.id, "new-order redelivered; announced again"));
                    let request_id = header(&batch[index], "x-request-id");
                    announcements.push((index, self.announcement(order, request_id, span)));
                }
                _ => span.in_scope(|| tracing::debug!(order_id = %order.id, "new-order redelivered; nothing to do")),
            }
        }
        Ok(())
    }

    fn parse(&self, message: &BorrowedMessage<'_>) -> Parsed {
        let topic = message.topic();
        if topic == self.topics.new_order {
            envelope::parse::<OrderView>(message.payload(), envelope::NEW_ORDER)
                .map_or_else(Parsed::Poison, Parsed::NewOrder)
        } else if topic == self.topics.payment_processed {
            envelope::parse::<PaymentData>(message.payload(), envelope::PAYMENT_PROCESSED)
                .map_or_else(Parsed::Poison, Parsed::Payment)
        } else {
            Parsed::Poison(Poison(format!("unexpected topic {topic}")))
        }
    }

    /// The `order-processed` event of `order`, continuing this message's trace (the order's).
    fn announcement(&self, order: &OrderDocument, request_id: Option<String>, span: &tracing::Span) -> OutboxEvent {
        let envelope = envelope::event(envelope::ORDER_PROCESSED, envelope::OrderEventData::of(order));
        let trace = span.in_scope(TraceContext::current);
        OutboxEvent {
            event_id: envelope.event_id.clone(),
            topic: self.topics.order_processed.clone(),
            key: order.id.clone(),
            payload: serde_json::to_string(&envelope).unwrap_or_default(),
            request_id,
            traceparent: trace.traceparent,
            tracestate: trace.tracestate,
        }
    }

    /// The processed → paid write a successful payment asks for, none when there is nothing to do, or
    /// why it is dead-lettered. This service checks the payment against its own order; it trusts no
    /// producer of the topic for that.
    fn payment_write(
        &self,
        event: &Envelope<PaymentData>,
        order: Option<&OrderDocument>,
        span: &tracing::Span,
    ) -> Result<Option<TransitionWrite>, Poison> {
        let data = &event.data;
        if data.status != "SUCCESS" {
            return Ok(None);
        }
        let Some(order) = order else {
            return Err(Poison(format!("unknown order {}", data.order_id)));
        };
        // The payment has its own trace (the Pay request's); link it to the order's.
        if telemetry::is_traced(span)
            && let Some(traceparent) = order.traceparent.clone()
        {
            telemetry::link_to(span, &TraceContext { traceparent: Some(traceparent), tracestate: None });
        }
        self.check(order, data, span)?;
        match order.status {
            // The same payment again (a redelivery, or its event republished after a crash).
            OrderStatus::Paid => Ok(None),
            OrderStatus::Processed => Ok(Some(TransitionWrite::Paid {
                order_id: order.id.clone(),
                payment_id: data.payment_id.clone(),
                event_id: event.event_id.clone(),
            })),
            OrderStatus::Pending => Err(Poison(format!("order {} is pending and cannot be paid", data.order_id))),
        }
    }

    fn check(&self, order: &OrderDocument, data: &PaymentData, span: &tracing::Span) -> Result<(), Poison> {
        check_payment(order, data).map_err(|(mismatch, reason)| {
            self.metrics.payments_rejected.with_label_values(&[mismatch.label()]).inc();
            span.in_scope(|| {
                tracing::warn!(order_id = %data.order_id, payment_id = %data.payment_id, %reason, "payment does not match its order");
            });
            Poison(reason)
        })
    }

    /// A payment whose transition did not apply, against the order as it is now: paid by this very
    /// payment meanwhile (done), paid by another, or not payable.
    fn after_payment_missed(&self, data: &PaymentData, order: Option<&OrderDocument>, span: &tracing::Span) -> Outcome {
        let Some(order) = order else {
            return Outcome::DeadLetter(Poison(format!("unknown order {}", data.order_id)));
        };
        if let Err(poison) = self.check(order, data, span) {
            return Outcome::DeadLetter(poison);
        }
        if order.status == OrderStatus::Paid {
            return Outcome::Done;
        }
        Outcome::DeadLetter(Poison(format!("order {} is {} and cannot be paid", data.order_id, order.status.as_str())))
    }

    /// Dead-letters a message, retrying while the broker fails; false when shutting down first.
    async fn dead_letter_until_sent(
        &self,
        message: &BorrowedMessage<'_>,
        reason: &Poison,
        mut shutdown: StopSignal,
    ) -> bool {
        let retried = |error: String, _delay| {
            self.metrics.kafka_failed.with_label_values(&[message.topic(), "consume"]).inc();
            tracing::warn!(%error, topic = message.topic(), offset = message.offset(), "retrying a dead letter");
        };
        retry(&mut shutdown, || self.dead_letter(message, reason), retried).await.is_some()
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
        self.producer.send(record, Duration::from_secs(10)).await.map_err(|error| error.to_string())
    }
}

impl BatchWork for LifecycleConsumer {
    async fn work(&self, batch: &[BorrowedMessage<'_>], stop: &mut StopSignal) -> bool {
        self.handle_batch(batch, stop.clone()).await
    }

    async fn failed(&self, error: KafkaError) {
        tracing::warn!(%error, "consumer error");
        // A subscribed topic that does not exist (a broker that lost its state) is created again, so that the
        // group can settle on it; at most once per REPAIR_INTERVAL, however many errors arrive.
        if error.rdkafka_error_code() != Some(RDKafkaErrorCode::UnknownTopicOrPartition) {
            return;
        }
        {
            let mut last_repair = self.last_repair.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
            if last_repair.is_some_and(|at| at.elapsed() <= REPAIR_INTERVAL) {
                return;
            }
            *last_repair = Some(tokio::time::Instant::now());
        }
        if let Err(error) = self.topic_setup.ensure().await {
            tracing::debug!(%error, "cannot re-create the topics yet");
        }
    }
}

/// The consumer span of one message, continuing the trace its `traceparent` names.
fn consume_span(message: &BorrowedMessage<'_>) -> tracing::Span {
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
    span
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
