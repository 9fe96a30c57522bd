//! Parse-don't-validate types: once a `PaymentRequest` exists, every field in it is known to be acceptable.
mod decision;
mod identifiers;
mod money;
mod payment;

pub use decision::{Decision, DecisionRule};
pub use identifiers::{IdempotencyKey, OrderId, PaymentId, UserId};
pub use money::{Currency, MAX_AMOUNT_CENTS, Money};
pub use payment::{PaymentRequest, PaymentStatus};

/// Why one field of a request was rejected; `field` is the protobuf field name the caller sent.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {message}")]
pub struct FieldError {
    pub field: &'static str,
    pub message: String,
}

impl FieldError {
    pub fn new(field: &'static str, message: impl Into<String>) -> Self {
        Self { field, message: message.into() }
    }
}
