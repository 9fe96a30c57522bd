//! A catalogue entry and the checked inputs that create or change one.
use std::fmt;

use super::{InvalidInput, Price};

/// A product id: a positive sequence number, written as its decimal text (`"1"`, `"42"`).
///
/// Only the canonical spelling parses (`"01"`, `"+1"`, `" 1"` do not), so one product has exactly one id.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ProductId(i64);

impl ProductId {
    pub fn parse(text: &str) -> Option<Self> {
        let seq: i64 = text.parse().ok()?;
        (seq > 0 && seq.to_string() == text).then_some(Self(seq))
    }

    /// A sequence number handed out by the store's counter (always positive).
    pub fn from_seq(seq: i64) -> Self {
        Self(seq)
    }

    pub fn seq(self) -> i64 {
        self.0
    }
}

impl fmt::Display for ProductId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// A product name: trimmed, 1–200 characters, no control characters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProductName(String);

impl ProductName {
    pub const MAX_CHARS: usize = 200;

    pub fn parse(raw: &str) -> Result<Self, InvalidInput> {
        let name = raw.trim();
        if name.is_empty() {
            return Err(InvalidInput::new("name", "name must not be empty"));
        }
        if name.chars().count() > Self::MAX_CHARS {
            return Err(InvalidInput::new("name", format!("name must be at most {} characters", Self::MAX_CHARS)));
        }
        if name.chars().any(char::is_control) {
            return Err(InvalidInput::new("name", "name must not contain control characters"));
        }
        Ok(Self(name.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A non-empty, trimmed description of at most 2,000 characters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Description(String);

impl Description {
    pub const MAX_CHARS: usize = 2_000;

    /// `Ok(None)` for text that is empty once trimmed: "no description".
    pub fn parse(raw: &str) -> Result<Option<Self>, InvalidInput> {
        let text = raw.trim();
        if text.chars().count() > Self::MAX_CHARS {
            return Err(InvalidInput::new(
                "description",
                format!("description must be at most {} characters", Self::MAX_CHARS),
            ));
        }
        Ok((!text.is_empty()).then(|| Self(text.to_owned())))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A product as read from the catalogue. Timestamps are RFC 3339 text (UTC, milliseconds), formatted once
/// when the document is read so that cached products are ready to serve.
#[derive(Debug, Clone, PartialEq)]
pub struct Product {
    pub id: ProductId,
    pub name: String,
    pub price: Price,
    pub description: Option<String>,
    pub created_at: String,
    pub updated_at: String,
}

/// A checked `addProduct` input.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewProduct {
    pub name: ProductName,
    pub price: Price,
    pub description: Option<Description>,
}

impl NewProduct {
    pub fn parse(name: &str, price: f64, description: Option<&str>) -> Result<Self, InvalidInput> {
        Ok(Self {
            name: ProductName::parse(name)?,
            price: Price::from_decimal(price)?,
            description: description.map(Description::parse).transpose()?.flatten(),
        })
    }
}

/// What `updateProduct` does to the description.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DescriptionChange {
    Keep,
    Clear,
    Set(Description),
}

/// A checked `updateProduct` input: only the fields given change, and at least one is given.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProductChanges {
    pub name: Option<ProductName>,
    pub price: Option<Price>,
    pub description: DescriptionChange,
}

impl ProductChanges {
    /// `None` leaves a field unchanged; a description that is empty once trimmed clears it.
    pub fn parse(name: Option<&str>, price: Option<f64>, description: Option<&str>) -> Result<Self, InvalidInput> {
        let description = match description {
            None => DescriptionChange::Keep,
            Some(text) => Description::parse(text)?.map_or(DescriptionChange::Clear, DescriptionChange::Set),
        };
        let changes = Self {
            name: name.map(ProductName::parse).transpose()?,
            price: price.map(Price::from_decimal).transpose()?,
            description,
        };
        if changes.name.is_none() && changes.price.is_none() && changes.description == DescriptionChange::Keep {
            return Err(InvalidInput::new("input", "give at least one of name, price, description"));
        }
        Ok(changes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_canonical_positive_integers_are_product_ids() {
        assert_eq!(ProductId::parse("1").map(ProductId::seq), Some(1));
        assert_eq!(ProductId::parse("9007199254740993").map(ProductId::seq), Some(9_007_199_254_740_993));
        for text in ["", "0", "-1", "01", "+1", " 1", "1.0", "1e3", "abc", "{\"$ne\":null}", "99999999999999999999"] {
            assert_eq!(ProductId::parse(text), None, "{text:?}");
        }
    }

    #[test]
    fn names_are_trimmed_and_bounded() {
        assert_eq!(ProductName::parse("  Lampe  ").unwrap().as_str(), "Lampe");
        assert_eq!(ProductName::parse(" \t ").unwrap_err().field, "name");
        assert!(ProductName::parse(&"é".repeat(200)).is_ok(), "limit counts characters, not bytes");
        assert!(ProductName::parse(&"a".repeat(201)).is_err());
        assert!(ProductName::parse("two\nlines").is_err());
    }

    #[test]
    fn descriptions_are_bounded_and_blank_means_none() {
        assert_eq!(Description::parse("  ").unwrap(), None);
        assert!(Description::parse(&"d".repeat(2_000)).unwrap().is_some());
        assert_eq!(Description::parse(&"d".repeat(2_001)).unwrap_err().field, "description");
    }

    #[test]
    fn an_update_needs_at_least_one_field() {
        assert_eq!(ProductChanges::parse(None, None, None).unwrap_err().field, "input");
        let blank = ProductChanges::parse(None, None, Some(" ")).unwrap();
        assert_eq!(blank.description, DescriptionChange::Clear);
        let price_only = ProductChanges::parse(None, Some(10.5), None).unwrap();
        assert_eq!((price_only.name, price_only.description), (None, DescriptionChange::Keep));
    }
}
