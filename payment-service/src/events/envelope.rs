//! The JSON envelope every event travels in, and the `payment-processed` event.
//!
//! `payment-processed`, version 1, published once per SUCCESS payment with the order id as the Kafka key and the
//! headers `event-id` (the envelope's `eventId`), `event-type: payment-processed` and (when the call had one)
//! `x-request-id`:
//!
//! ```json
//! {
//!   "eventId": "0190d5c2-…",            // UUID; consumers deduplicate on it (delivery is at-least-once)
//!   "type": "payment-processed",
//!   "version": 1,
//!   "occurredAt": "2025-01-01T12:00:00.000Z",   // RFC 3339, when the payment was stored
//!   "data": {
//!     "paymentId": "0190d5c2-…",
//!     "orderId": "…",
//!     "userId": "…",
//!     "amountCents": 89999,
//!     "currency": "EUR",
//!     "status": "SUCCESS"
//!   }
//! }
//! ```
//!
//! Adding a field to `data` keeps the version; renaming, removing or changing the meaning of one bumps it.
use serde::{Deserialize, Serialize};

use crate::domain::PaymentStatus;

/// The `type` of the event announcing a successful payment, and the default name of its topic.
pub const PAYMENT_PROCESSED: &str = "payment-processed";

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Envelope<T> {
    pub event_id: String,
    #[serde(rename = "type")]
    pub event_type: String,
    pub version: u32,
    pub occurred_at: String,
    pub data: T,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PaymentProcessed {
    pub payment_id: String,
    pub order_id: String,
    pub user_id: String,
    pub amount_cents: i64,
    pub currency: String,
    pub status: PaymentStatus,
}

impl Envelope<PaymentProcessed> {
    pub const PAYMENT_PROCESSED_VERSION: u32 = 1;

    pub fn payment_processed(occurred_at: String, data: PaymentProcessed) -> Self {
        Self {
            event_id: uuid::Uuid::now_v7().to_string(),
            event_type: PAYMENT_PROCESSED.to_owned(),
            version: Self::PAYMENT_PROCESSED_VERSION,
            occurred_at,
            data,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_payment_processed_envelope_has_the_documented_shape() {
        let data = PaymentProcessed {
            payment_id: "p1".into(),
            order_id: "o1".into(),
            user_id: "u1".into(),
            amount_cents: 89_999,
            currency: "EUR".into(),
            status: PaymentStatus::Success,
        };
        let envelope = Envelope::payment_processed("2025-01-01T12:00:00Z".into(), data);
        let json = serde_json::to_value(&envelope).unwrap();
        assert_eq!(json["type"], "payment-processed");
        assert_eq!(json["version"], 1);
        assert_eq!(json["occurredAt"], "2025-01-01T12:00:00Z");
        assert!(uuid::Uuid::parse_str(json["eventId"].as_str().unwrap()).is_ok());
        assert_eq!(
            json["data"],
            serde_json::json!({
                "paymentId": "p1", "orderId": "o1", "userId": "u1",
                "amountCents": 89_999, "currency": "EUR", "status": "SUCCESS"
            })
        );
    }
}
