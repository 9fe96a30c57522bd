//! Money is an integer number of minor units (cents) plus an ISO-4217 currency: never a float.
use std::fmt;

use super::FieldError;

/// The largest single charge accepted: 100,000,000.00 in major units.
pub const MAX_AMOUNT_CENTS: i64 = 10_000_000_000;

/// The currencies this service can charge in. Only EUR today; a code that is well-formed but not listed
/// here is rejected as unsupported rather than silently charged.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Currency {
    Eur,
}

impl Currency {
    pub fn parse(code: &str) -> Result<Self, FieldError> {
        if code.len() != 3 || !code.bytes().all(|byte| byte.is_ascii_uppercase()) {
            return Err(FieldError::new("currency", "must be a 3-letter uppercase ISO-4217 code such as EUR"));
        }
        match code {
            "EUR" => Ok(Self::Eur),
            _ => Err(FieldError::new("currency", format!("unsupported currency {code}; supported: EUR"))),
        }
    }

    pub fn code(self) -> &'static str {
        match self {
            Self::Eur => "EUR",
        }
    }
}

/// A positive amount no larger than [`MAX_AMOUNT_CENTS`], in a supported currency.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Money {
    cents: i64,
    currency: Currency,
}

impl Money {
    pub fn parse(cents: i64, currency: &str) -> Result<Self, FieldError> {
        if cents <= 0 {
            return Err(FieldError::new("amount_cents", "must be greater than 0"));
        }
        if cents > MAX_AMOUNT_CENTS {
            return Err(FieldError::new("amount_cents", format!("must be at most {MAX_AMOUNT_CENTS}")));
        }
        Ok(Self { cents, currency: Currency::parse(currency)? })
    }

    pub fn cents(self) -> i64 {
        self.cents
    }

    pub fn currency(self) -> Currency {
        self.currency
    }
}

/// Formats cents as major units with two decimals, e.g. `5000.01 EUR`, for human-readable reasons.
pub struct DisplayCents(pub i64, pub Currency);

impl fmt::Display for DisplayCents {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let sign = if self.0 < 0 { "-" } else { "" };
        let magnitude = self.0.unsigned_abs();
        write!(f, "{sign}{}.{:02} {}", magnitude / 100, magnitude % 100, self.1.code())
    }
}

impl fmt::Display for Money {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        DisplayCents(self.cents, self.currency).fmt(f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn amounts_must_be_positive_and_bounded() {
        assert_eq!(Money::parse(1, "EUR").unwrap().cents(), 1);
        assert_eq!(Money::parse(MAX_AMOUNT_CENTS, "EUR").unwrap().cents(), MAX_AMOUNT_CENTS);
        for bad in [0, -1, MAX_AMOUNT_CENTS + 1, i64::MIN] {
            assert_eq!(Money::parse(bad, "EUR").unwrap_err().field, "amount_cents", "{bad}");
        }
    }

    #[test]
    fn currency_must_be_a_well_formed_supported_code() {
        assert_eq!(Currency::parse("EUR"), Ok(Currency::Eur));
        for malformed in ["eur", "EU", "EURO", "E1R", ""] {
            let error = Currency::parse(malformed).unwrap_err();
            assert!(error.message.contains("3-letter"), "{malformed:?}: {error}");
        }
        assert!(Currency::parse("USD").unwrap_err().message.contains("unsupported currency"));
    }

    #[test]
    fn money_displays_as_major_units_with_two_decimals() {
        assert_eq!(Money::parse(500_001, "EUR").unwrap().to_string(), "5000.01 EUR");
        assert_eq!(Money::parse(7, "EUR").unwrap().to_string(), "0.07 EUR");
        assert_eq!(DisplayCents(0, Currency::Eur).to_string(), "0.00 EUR");
    }
}
