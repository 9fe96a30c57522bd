//! Money: a positive amount of whole cents, never a float inside the service.
use super::InvalidInput;

/// A price in cents: more than zero, at most [`Price::MAX_CENTS`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Price(i64);

impl Price {
    /// 1,000,000.00 in cents.
    pub const MAX_CENTS: i64 = 100_000_000;

    /// Accepts what a client sends as a GraphQL `Float`: finite, > 0, ≤ 1,000,000 and with at most
    /// two decimals.
    ///
    /// "Two decimals" is judged on the shortest decimal text that reads back as the same `f64`, which is
    /// exactly what the client wrote in its JSON (`19.99`, not `19.989999999999998`); so `899.999` is
    /// refused instead of being silently rounded to a different price.
    pub fn from_decimal(value: f64) -> Result<Self, InvalidInput> {
        let invalid = |message: &str| InvalidInput::new("price", message);
        if !value.is_finite() || value <= 0.0 {
            return Err(invalid("price must be greater than 0"));
        }
        if value > 1_000_000.0 {
            return Err(invalid("price must be at most 1000000"));
        }
        // `Display` for f64 never uses exponent notation and prints the shortest round-tripping digits.
        let text = value.to_string();
        let (whole, fraction) = text.split_once('.').unwrap_or((&text, ""));
        if fraction.len() > 2 {
            return Err(invalid("price must have at most two decimals"));
        }
        let whole: i64 = whole.parse().map_err(|_| invalid("price must be a decimal number"))?;
        let fraction: i64 = format!("{fraction:0<2}").parse().map_err(|_| invalid("price must be a decimal number"))?;
        Ok(Self(whole * 100 + fraction))
    }

    /// A price read back from the database, where only valid prices are ever written.
    pub fn from_cents(cents: i64) -> Self {
        Self(cents)
    }

    pub fn cents(self) -> i64 {
        self.0
    }

    /// The amount as a JSON-friendly number: `cents / 100` is the double nearest to the two-decimal
    /// value, so it prints as `899.99`.
    pub fn as_decimal(self) -> f64 {
        self.0 as f64 / 100.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn two_decimal_prices_convert_to_exact_cents() {
        assert_eq!(Price::from_decimal(899.99).map(Price::cents), Ok(89_999));
        assert_eq!(Price::from_decimal(19.99).map(Price::cents), Ok(1_999));
        assert_eq!(Price::from_decimal(0.1).map(Price::cents), Ok(10));
        assert_eq!(Price::from_decimal(0.01).map(Price::cents), Ok(1));
        assert_eq!(Price::from_decimal(5.0).map(Price::cents), Ok(500));
        assert_eq!(Price::from_decimal(1_000_000.0).map(Price::cents), Ok(Price::MAX_CENTS));
    }

    #[test]
    fn more_than_two_decimals_are_refused() {
        for value in [899.999, 0.001, 1.005, 0.000_000_1] {
            let error = Price::from_decimal(value).unwrap_err();
            assert_eq!(error.field, "price");
            assert!(error.message.contains("two decimals"), "{value}: {}", error.message);
        }
    }

    #[test]
    fn out_of_range_and_non_finite_prices_are_refused() {
        for value in [0.0, -0.0, -1.0, 1_000_000.01, 1e300, f64::NAN, f64::INFINITY, f64::NEG_INFINITY] {
            assert!(Price::from_decimal(value).is_err(), "{value} should be refused");
        }
    }

    #[test]
    fn cents_print_back_as_two_decimals() {
        for (cents, text) in [(89_999, "899.99"), (129_999, "1299.99"), (1, "0.01"), (500, "5"), (1_999, "19.99")] {
            assert_eq!(Price::from_cents(cents).as_decimal().to_string(), text);
        }
    }
}
