//! The `payment-processed` event, in the JSON envelope every event travels in (`platform::kafka::Envelope`).
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
pub use platform::kafka::Envelope;
use serde::{Deserialize, Serialize};

use crate::domain::PaymentStatus;

/// The `type` of the event announcing a successful payment, and the default name of its topic.
pub const PAYMENT_PROCESSED: &str = "payment-processed";

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

/// The version of `payment-processed` this service publishes.
pub const PAYMENT_PROCESSED_VERSION: u32 = 1;

impl PaymentProcessed {
    /// This payment's event, occurred at `occurred_at` (RFC 3339).
    pub fn event(self, occurred_at: String) -> Envelope<Self> {
        Envelope::new(PAYMENT_PROCESSED, PAYMENT_PROCESSED_VERSION, occurred_at, self)
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
        let envelope = data.event("2025-01-01T12:00:00Z".into());
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
