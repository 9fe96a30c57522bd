//! The `Idempotency-Key` rule, one for every service that takes a key (the gateway, the order-service's
//! `POST /orders`, the payment-service's `Pay`): 1 to 128 visible ASCII characters, no spaces or control
//! characters, so a key is safe in headers, logs and storage keys, and a key one service accepts no other
//! service refuses.
pub const MAX_LEN: usize = 128;

/// What a refused key is told.
pub const RULE: &str = "must be 1 to 128 visible ASCII characters (no spaces)";

pub fn is_valid(key: &str) -> bool {
    (1..=MAX_LEN).contains(&key.len()) && key.bytes().all(|byte| byte.is_ascii_graphic())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_1_to_128_visible_ascii_characters() {
        assert!(is_valid("order-1_attempt#2"));
        assert!(is_valid(&"k".repeat(128)));
        for bad in ["", "with space", "tab\there", "naïve", "line\nbreak", &"k".repeat(129)] {
            assert!(!is_valid(bad), "{bad:?}");
        }
    }
}
