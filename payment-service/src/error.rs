//! Where failures become gRPC statuses. Internals are logged here and never sent: callers get a code and a
//! message written for them.
use tonic::Status;

use crate::{auth::AuthError, domain::FieldError, payments::PayError, store::StoreError};

impl From<FieldError> for Status {
    fn from(error: FieldError) -> Self {
        Status::invalid_argument(error.to_string())
    }
}

impl From<AuthError> for Status {
    fn from(error: AuthError) -> Self {
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

impl From<PayError> for Status {
    fn from(error: PayError) -> Self {
        match error {
            PayError::KeyReused => Status::invalid_argument("idempotency key reused with a different request"),
            PayError::OrderAlreadyPaid => Status::already_exists("the order already has a successful payment"),
            PayError::Store(error) => error.into(),
            PayError::Encoding(detail) => {
                tracing::error!(%detail, "cannot encode a payment event");
                Status::internal("internal error")
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
        let invalid = Status::from(AuthError::Invalid("ExpiredSignature at 12:00".into()));
        assert_eq!(invalid.code(), Code::Unauthenticated);
        assert!(!invalid.message().contains("Expired"));
        let keys = Status::from(AuthError::KeysUnavailable("connection refused 10.0.0.7".into()));
        assert_eq!(keys.code(), Code::Unavailable);
        assert!(!keys.message().contains("10.0.0.7"));
        assert_eq!(Status::from(StoreError::NotReady).code(), Code::Unavailable);
        assert_eq!(Status::from(PayError::OrderAlreadyPaid).code(), Code::AlreadyExists);
        assert_eq!(Status::from(PayError::KeyReused).code(), Code::InvalidArgument);
        let encoding = Status::from(PayError::Encoding("secret detail".into()));
        assert_eq!((encoding.code(), encoding.message()), (Code::Internal, "internal error"));
    }
}
