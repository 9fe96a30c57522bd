//! A validated payment request and the outcome a payment can have.
use serde::{Deserialize, Serialize};

use super::{FieldError, IdempotencyKey, Money, OrderId, UserId};

/// What a stored payment ended as, stored as `SUCCESS` / `DECLINED`. Both outcomes are final for their idempotency
/// key, but a declined payment does not stop the order from being paid later under another key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum PaymentStatus {
    Success,
    Declined,
}

impl PaymentStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Success => "SUCCESS",
            Self::Declined => "DECLINED",
        }
    }
}

/// A `Pay` call whose every field is acceptable.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PaymentRequest {
    pub order_id: OrderId,
    pub user_id: UserId,
    pub amount: Money,
    pub idempotency_key: IdempotencyKey,
}

impl PaymentRequest {
    /// Checks the fields in the order the contract lists them and reports the first problem.
    pub fn parse(
        order_id: &str,
        user_id: &str,
        amount_cents: i64,
        currency: &str,
        idempotency_key: &str,
    ) -> Result<Self, FieldError> {
        Ok(Self {
            order_id: OrderId::parse(order_id)?,
            user_id: UserId::parse(user_id)?,
            amount: Money::parse(amount_cents, currency)?,
            idempotency_key: IdempotencyKey::parse(idempotency_key)?,
        })
    }

    /// Idempotency keys are scoped to the paying user, so two users can never collide on a key.
    pub fn idempotency_scope(&self) -> String {
        format!("{}:{}", self.user_id.as_str(), self.idempotency_key.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_first_invalid_field_is_reported() {
        let error = PaymentRequest::parse("", "", 0, "usd", "").unwrap_err();
        assert_eq!(error.field, "order_id");
        let error = PaymentRequest::parse("o1", "u1", 100, "usd", "").unwrap_err();
        assert_eq!(error.field, "currency");
    }

    #[test]
    fn the_idempotency_scope_joins_user_and_key() {
        let request = PaymentRequest::parse("o1", "u1", 100, "EUR", "k1").unwrap();
        assert_eq!(request.idempotency_scope(), "u1:k1");
    }
}
