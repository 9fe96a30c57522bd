//! The versioned event envelope shared by every topic (documented in DOCUMENTATION.md):
//!
//! ```json
//! {"eventId": "uuid", "type": "new-order", "version": 1, "occurredAt": "RFC 3339", "data": {...}}
//! ```
//! Messages are keyed by order id, so one order's events stay in one partition, in order.
use serde::{Deserialize, Serialize, de::DeserializeOwned};

use crate::{
    store::{OrderDocument, OutboxEvent},
    telemetry::TraceContext,
};

pub const VERSION: u32 = 1;
pub const NEW_ORDER: &str = "new-order";
pub const ORDER_PROCESSED: &str = "order-processed";
pub const PAYMENT_PROCESSED: &str = "payment-processed";

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Envelope<T> {
    pub event_id: String,
    #[serde(rename = "type")]
    pub event_type: String,
    pub version: u32,
    pub occurred_at: String,
    pub data: T,
}

impl<T: Serialize> Envelope<T> {
    pub fn new(event_type: &str, data: T) -> Self {
        Self {
            event_id: uuid::Uuid::now_v7().to_string(),
            event_type: event_type.to_owned(),
            version: VERSION,
            occurred_at: now_rfc3339(),
            data,
        }
    }
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

/// Why a message cannot be processed, ever: it goes to the dead-letter topic with this reason.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Poison(pub String);

/// Parses a message payload into an envelope of the expected type and version.
pub fn parse<T: DeserializeOwned>(payload: Option<&[u8]>, expected_type: &str) -> Result<Envelope<T>, Poison> {
    let payload = payload.ok_or_else(|| Poison("empty message".into()))?;
    let envelope: Envelope<T> =
        serde_json::from_slice(payload).map_err(|error| Poison(format!("not a {expected_type} envelope: {error}")))?;
    if envelope.event_type != expected_type {
        return Err(Poison(format!("unexpected event type {:?}", envelope.event_type)));
    }
    if envelope.version != VERSION {
        return Err(Poison(format!("unsupported version {}", envelope.version)));
    }
    Ok(envelope)
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
    let envelope = Envelope::new(NEW_ORDER, OrderEventData::of(order));
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

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn parses_a_well_formed_envelope() {
        let payload =
            json!({"eventId": "e", "type": "new-order", "version": 1, "occurredAt": "t", "data": {"id": "o1"}});
        let envelope: Envelope<serde_json::Value> = parse(Some(payload.to_string().as_bytes()), NEW_ORDER).unwrap();
        assert_eq!(envelope.data["id"], "o1");
    }

    #[test]
    fn rejects_garbage_other_types_and_versions() {
        assert!(parse::<serde_json::Value>(Some(b"{not json"), NEW_ORDER).is_err());
        assert!(parse::<serde_json::Value>(None, NEW_ORDER).is_err());
        let other = json!({"eventId": "e", "type": "other", "version": 1, "occurredAt": "t", "data": {}});
        assert!(parse::<serde_json::Value>(Some(other.to_string().as_bytes()), NEW_ORDER).is_err());
        let v2 = json!({"eventId": "e", "type": "new-order", "version": 2, "occurredAt": "t", "data": {}});
        assert!(parse::<serde_json::Value>(Some(v2.to_string().as_bytes()), NEW_ORDER).is_err());
    }
}
