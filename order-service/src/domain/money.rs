use serde::{Deserialize, Serialize};

/// The currency every order is priced and paid in (the catalogue's prices are euros).
pub const CURRENCY: &str = "EUR";

/// An amount in euro cents. Money is integer cents inside the system; clients see a JSON number
/// with two decimals (899.99).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Money(i64);

impl Money {
    pub fn from_cents(cents: i64) -> Self {
        Self(cents)
    }

    pub fn cents(self) -> i64 {
        self.0
    }

    /// Converts a price the product-service gave as a float with at most two decimals.
    pub fn from_decimal(amount: f64) -> Option<Self> {
        let cents = (amount * 100.0).round();
        (amount.is_finite() && amount > 0.0 && (amount * 100.0 - cents).abs() < 1e-6 && cents < 1e15)
            .then_some(Self(cents as i64))
    }

    /// Exact: no float arithmetic touches the total.
    pub fn times(self, quantity: u32) -> Option<Self> {
        self.0.checked_mul(i64::from(quantity)).map(Self)
    }

    pub fn as_decimal(self) -> f64 {
        self.0 as f64 / 100.0
    }
}

#[cfg(test)]
mod tests {
    use super::Money;

    #[test]
    fn totals_are_exact_cents() {
        let unit = Money::from_decimal(0.1).unwrap();
        assert_eq!(unit.times(3).unwrap().cents(), 30);
        assert_eq!(Money::from_decimal(899.99).unwrap().times(3).unwrap().cents(), 269_997);
        assert_eq!(Money::from_cents(269_997).as_decimal(), 2699.97);
    }

    #[test]
    fn rejects_non_money_floats() {
        for bad in [f64::NAN, f64::INFINITY, -1.0, 0.0, 1.005] {
            assert!(Money::from_decimal(bad).is_none(), "{bad}");
        }
    }
}
