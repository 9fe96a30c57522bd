/// How many units an order is for: an integer from 1 to 100.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Quantity(u32);

impl Quantity {
    pub const MAX: u32 = 100;

    /// Accepts a JSON value: only integers (not `2.0`, not `"2"`) in range.
    pub fn parse(value: &serde_json::Value) -> Result<Self, String> {
        let message = || format!("quantity must be an integer from 1 to {}", Self::MAX);
        let n = value.as_u64().ok_or_else(message)?;
        if (1..=u64::from(Self::MAX)).contains(&n) { Ok(Self(n as u32)) } else { Err(message()) }
    }

    pub fn get(self) -> u32 {
        self.0
    }
}

#[cfg(test)]
mod tests {
    use super::Quantity;
    use serde_json::json;

    #[test]
    fn accepts_integers_from_1_to_100() {
        assert_eq!(Quantity::parse(&json!(1)).unwrap().get(), 1);
        assert_eq!(Quantity::parse(&json!(100)).unwrap().get(), 100);
    }

    #[test]
    fn rejects_everything_else() {
        for bad in [json!(0), json!(101), json!(-1), json!(2.5), json!(2.0), json!("2"), json!(null), json!(1e20)] {
            assert!(Quantity::parse(&bad).is_err(), "{bad}");
        }
    }
}
