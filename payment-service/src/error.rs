//! Where failures become gRPC statuses. Internals are logged here and never sent: callers get a code and a
//! message written for them.
use tonic::Status;

use crate::{auth::AuthError, domain::FieldError, store::StoreError, use_cases::payments::PayError};

impl From<FieldError> for Status {
    fn from(error: FieldError) -> Self {
        Status::invalid_argument(error.to_string())
    }
}

/// The status for a token that cannot be verified (the orphan rule keeps this a function, not a `From`).
pub fn unauthenticated(error: AuthError) -> Status {
    match error {
        AuthError::Missing => Status::unauthenticated("missing bearer token"),
        AuthError::Invalid(detail) => {
            tracing::debug!(%detail, "token rejected");
            Status::unauthenticated("invalid or expired token")
        }
        AuthError::KeysUnavailable(detail) => {
            tracing::warn!(%detail, "cannot verify tokens");
            Status::unavailable("cannot verify tokens right now; retry later")
        }
    }
}

impl From<StoreError> for Status {
    fn from(error: StoreError) -> Self {
        if error.is_transient() {
            tracing::warn!(%error, "payment storage unavailable");
            Status::unavailable("payment storage is unavailable; retry later")
        } else {
            tracing::error!(%error, "payment storage failed");
            Status::internal("internal error")
        }
    }
}

/// The metadata key naming why a call was refused, so that callers (the gateway) can tell refusals that share a
/// gRPC code apart without parsing messages. Values are the `REASON_*` constants.
pub const REASON_KEY: &str = "x-error-reason";
/// With `AMOUNT_MISMATCH`: the order's total in cents.
pub const ORDER_TOTAL_KEY: &str = "x-order-total-cents";
pub const REASON_ORDER_NOT_FOUND: &str = "ORDER_NOT_FOUND";
pub const REASON_ORDER_NOT_READY: &str = "ORDER_NOT_READY";
pub const REASON_AMOUNT_MISMATCH: &str = "AMOUNT_MISMATCH";
pub const REASON_CURRENCY_MISMATCH: &str = "CURRENCY_MISMATCH";
pub const REASON_KEY_REUSED: &str = "IDEMPOTENCY_KEY_REUSED";
pub const REASON_ALREADY_PAID: &str = "ORDER_ALREADY_PAID";
/// With UNAVAILABLE: the service is shedding load (its write queue is full), not broken.
pub const REASON_OVERLOADED: &str = "OVERLOADED";
/// With `OVERLOADED`: seconds after which a retry is welcome.
pub const RETRY_AFTER_KEY: &str = "retry-after";

fn with_reason(mut status: Status, reason: &'static str) -> Status {
    status.metadata_mut().insert(REASON_KEY, tonic::metadata::MetadataValue::from_static(reason));
    status
}

impl From<PayError> for Status {
    fn from(error: PayError) -> Self {
        match error {
            PayError::KeyReused => with_reason(
                Status::invalid_argument("idempotency key reused with a different request"),
                REASON_KEY_REUSED,
            ),
            PayError::OrderAlreadyPaid => {
                with_reason(Status::already_exists("the order already has a successful payment"), REASON_ALREADY_PAID)
            }
            PayError::OrderNotFound => with_reason(Status::not_found("order not found"), REASON_ORDER_NOT_FOUND),
            PayError::OrderNotReady => with_reason(
                Status::failed_precondition("the order is not processed yet; retry shortly"),
                REASON_ORDER_NOT_READY,
            ),
            PayError::AmountMismatch { total_cents } => {
                let mut status = with_reason(
                    Status::invalid_argument(format!("amount_cents must equal the order total ({total_cents} cents)")),
                    REASON_AMOUNT_MISMATCH,
                );
                // The caller's own order, so its total is no secret: the gateway words its 422 with it.
                if let Ok(total) = total_cents.to_string().parse() {
                    status.metadata_mut().insert(ORDER_TOTAL_KEY, total);
                }
                status
            }
            PayError::CurrencyMismatch { currency } => with_reason(
                Status::invalid_argument(format!("currency must be the order's ({currency})")),
                REASON_CURRENCY_MISMATCH,
            ),
            PayError::Store(error) => error.into(),
            PayError::Encoding(detail) => {
                tracing::error!(%detail, "cannot encode a payment event");
                Status::internal("internal error")
            }
            PayError::Overloaded => {
                let mut status =
                    with_reason(Status::unavailable("too many payments in progress; retry shortly"), REASON_OVERLOADED);
                // The retry hint, in seconds, as HTTP's Retry-After.
                status.metadata_mut().insert(RETRY_AFTER_KEY, tonic::metadata::MetadataValue::from_static("1"));
                status
            }
        }
    }
}

pub fn permission_denied_for_other_user() -> Status {
    Status::permission_denied("a customer may only pay as themselves")
}

pub fn payment_not_found() -> Status {
    Status::not_found("payment not found")
}

#[cfg(test)]
mod tests {
    use super::*;
    use tonic::Code;

    #[test]
    fn each_failure_maps_to_its_code_without_leaking_details() {
        let invalid = unauthenticated(AuthError::Invalid("ExpiredSignature at 12:00".into()));
        assert_eq!(invalid.code(), Code::Unauthenticated);
        assert!(!invalid.message().contains("Expired"));
        let keys = unauthenticated(AuthError::KeysUnavailable("connection refused 10.0.0.7".into()));
        assert_eq!(keys.code(), Code::Unavailable);
        assert!(!keys.message().contains("10.0.0.7"));
        assert_eq!(Status::from(StoreError::NotReady).code(), Code::Unavailable);
        assert_eq!(Status::from(PayError::OrderAlreadyPaid).code(), Code::AlreadyExists);
        assert_eq!(Status::from(PayError::KeyReused).code(), Code::InvalidArgument);
        assert_eq!(Status::from(PayError::OrderNotFound).code(), Code::NotFound);
        assert_eq!(Status::from(PayError::OrderNotReady).code(), Code::FailedPrecondition);
        let mismatch = Status::from(PayError::AmountMismatch { total_cents: 1999 });
        assert_eq!(mismatch.code(), Code::InvalidArgument);
        assert_eq!(mismatch.metadata().get(REASON_KEY).unwrap(), REASON_AMOUNT_MISMATCH);
        let overloaded = Status::from(PayError::Overloaded);
        assert_eq!(overloaded.code(), Code::Unavailable);
        assert_eq!(overloaded.metadata().get(REASON_KEY).unwrap(), REASON_OVERLOADED);
        assert_eq!(overloaded.metadata().get(RETRY_AFTER_KEY).unwrap(), "1");
        let encoding = Status::from(PayError::Encoding("secret detail".into()));
        assert_eq!((encoding.code(), encoding.message()), (Code::Internal, "internal error"));
    }
}
