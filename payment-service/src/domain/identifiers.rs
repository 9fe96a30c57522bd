//! The identifiers a payment request carries. Each is bounded so that one request cannot bloat an index.
use super::FieldError;

/// Longest identifier or idempotency key accepted, in characters.
const MAX_LEN: usize = 128;

/// Text of 1 to 128 characters without control characters (which have no place in an id and garble logs).
fn bounded_text(field: &'static str, value: &str) -> Result<String, FieldError> {
    let length = value.chars().count();
    if length == 0 || length > MAX_LEN {
        return Err(FieldError::new(field, format!("must be 1 to {MAX_LEN} characters")));
    }
    if value.chars().any(char::is_control) {
        return Err(FieldError::new(field, "must not contain control characters"));
    }
    Ok(value.to_owned())
}

macro_rules! text_id {
    ($(#[$doc:meta])* $name:ident, $field:literal) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq)]
        pub struct $name(String);

        impl $name {
            pub fn parse(value: &str) -> Result<Self, FieldError> {
                bounded_text($field, value).map(Self)
            }

            pub fn as_str(&self) -> &str {
                &self.0
            }
        }
    };
}

text_id!(
    /// The order being paid; owned by the order-service, opaque here.
    OrderId,
    "order_id"
);
text_id!(
    /// The account paying: must be the token's subject unless the caller is an admin.
    UserId,
    "user_id"
);
text_id!(
    /// A payment's id (a UUID v7 for payments created here); bounded because callers send it to GetPayment.
    PaymentId,
    "payment_id"
);

/// Chosen by the client per intended charge; the same key replays the first result instead of charging again.
/// The rule every service applies to idempotency keys (`platform::idempotency`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdempotencyKey(String);

impl IdempotencyKey {
    pub fn parse(value: &str) -> Result<Self, FieldError> {
        if !platform::idempotency::is_valid(value) {
            return Err(FieldError::new("idempotency_key", platform::idempotency::RULE));
        }
        Ok(Self(value.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_accept_1_to_128_characters_counted_as_characters_not_bytes() {
        assert!(OrderId::parse("a").is_ok());
        assert!(OrderId::parse(&"é".repeat(128)).is_ok());
        assert_eq!(OrderId::parse("").unwrap_err().field, "order_id");
        assert_eq!(UserId::parse(&"u".repeat(129)).unwrap_err().field, "user_id");
        assert!(PaymentId::parse("line\nbreak").is_err());
    }

    #[test]
    fn idempotency_keys_are_printable_ascii() {
        assert!(IdempotencyKey::parse("order-1_attempt#2").is_ok());
        assert!(IdempotencyKey::parse(&"k".repeat(128)).is_ok());
        for bad in ["", "with space", "tab\there", "naïve", &"k".repeat(129)] {
            assert_eq!(IdempotencyKey::parse(bad).unwrap_err().field, "idempotency_key", "{bad:?}");
        }
    }
}
