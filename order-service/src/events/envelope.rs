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
    store::{OrderDocument, OutboxEvent},
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

/// The `new-order` event of `order`, serialised once for its outbox, carrying the id and trace context of
/// the request that placed it (its publication and consumption join that trace).
pub fn new_order_event(
    order: &OrderDocument,
    topic: &str,
    request_id: Option<String>,
    trace: TraceContext,
) -> Result<OutboxEvent, serde_json::Error> {
    let envelope = event(NEW_ORDER, OrderEventData::of(order));
    Ok(OutboxEvent {
        event_id: envelope.event_id.clone(),
        topic: topic.to_owned(),
        key: order.id.clone(),
        payload: serde_json::to_string(&envelope)?,
        request_id,
        traceparent: trace.traceparent,
        tracestate: trace.tracestate,
    })
}
