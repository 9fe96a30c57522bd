//! The order lifecycle's events, in the versioned envelope every topic shares (`platform::kafka::Envelope`,
//! documented in DOCUMENTATION.md):
//!
//! ```json
//! {"eventId": "uuid", "type": "new-order", "version": 1, "occurredAt": "RFC 3339", "data": {...}}
//! ```
//! Messages are keyed by order id, so one order's events stay in one partition, in order.
pub use platform::kafka::{Envelope, Poison};
use serde::{Deserialize, Serialize, de::DeserializeOwned};

use crate::{
    store::{NewOrderStamp, OrderDocument, OutboxEvent},
    telemetry::TraceContext,
};

pub const VERSION: u32 = 1;
pub const NEW_ORDER: &str = "new-order";
pub const ORDER_PROCESSED: &str = "order-processed";
pub const PAYMENT_PROCESSED: &str = "payment-processed";

/// A new event of this service, at the current version, occurring now.
pub fn event<T>(event_type: &str, data: T) -> Envelope<T> {
    Envelope::new(event_type, VERSION, now_rfc3339(), data)
}

/// The `data` of `new-order` and `order-processed`: the order as `GET /orders/{id}` shows it, plus the total in
/// integer cents and its currency, which the payment-service charges against (never a float).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct OrderEventData {
    #[serde(flatten)]
    pub order: crate::domain::OrderView,
    pub total_cents: i64,
    pub currency: String,
}

impl OrderEventData {
    pub fn of(order: &OrderDocument) -> Self {
        Self { order: order.view(), total_cents: order.total_cents, currency: crate::domain::CURRENCY.to_owned() }
    }
}

/// Parses a message payload into an envelope of the expected type, at the version this service reads.
pub fn parse<T: DeserializeOwned>(payload: Option<&[u8]>, expected_type: &str) -> Result<Envelope<T>, Poison> {
    platform::kafka::parse_envelope(payload, expected_type, VERSION)
}

pub fn now_rfc3339() -> String {
    crate::domain::rfc3339(mongodb::bson::DateTime::now())
}

/// The `new-order` event of `order`, serialised once, carrying the id and trace context of the request that placed
/// it (its publication and consumption join that trace). It occurs when the order is created.
pub fn new_order_event(
    order: &OrderDocument,
    topic: &str,
    request_id: Option<String>,
    trace: TraceContext,
) -> Result<OutboxEvent, serde_json::Error> {
    let stamp = NewOrderStamp { event_id: uuid::Uuid::now_v7().to_string(), request_id, tracestate: trace.tracestate };
    new_order_event_as(order, topic, &stamp, trace.traceparent)
}

/// The `new-order` event of a stored order, from what the order keeps of it ([`NewOrderStamp`]): the same event, byte
/// for byte, as the one made when the order was placed, while the order is pending (its `data` is the order as it was
/// then). None for orders of earlier versions, whose events went to the outbox.
pub fn stored_new_order_event(order: &OrderDocument, topic: &str) -> Option<Result<OutboxEvent, serde_json::Error>> {
    let stamp = order.new_order_event.as_ref()?;
    Some(new_order_event_as(order, topic, stamp, order.traceparent.clone()))
}

fn new_order_event_as(
    order: &OrderDocument,
    topic: &str,
    stamp: &NewOrderStamp,
    traceparent: Option<String>,
) -> Result<OutboxEvent, serde_json::Error> {
    let envelope = Envelope {
        event_id: stamp.event_id.clone(),
        event_type: NEW_ORDER.to_owned(),
        version: VERSION,
        occurred_at: crate::domain::rfc3339(order.created_at),
        data: OrderEventData::of(order),
    };
    Ok(OutboxEvent {
        event_id: stamp.event_id.clone(),
        topic: topic.to_owned(),
        key: order.id.clone(),
        payload: serde_json::to_string(&envelope)?,
        request_id: stamp.request_id.clone(),
        traceparent,
        tracestate: stamp.tracestate.clone(),
    })
}
