//! What the `products` query asks for: a page size, a cursor and an optional search term.
use super::{InvalidInput, ProductId};

pub const MAX_PAGE_SIZE: i32 = 100;

/// Text to look for in names and descriptions: trimmed, at most 100 characters, matched literally.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct SearchTerm(String);

impl SearchTerm {
    pub const MAX_CHARS: usize = 100;

    /// `Ok(None)` for text that is empty once trimmed: no filter.
    pub fn parse(raw: &str) -> Result<Option<Self>, InvalidInput> {
        let text = raw.trim();
        if text.chars().count() > Self::MAX_CHARS {
            return Err(InvalidInput::new("search", format!("search must be at most {} characters", Self::MAX_CHARS)));
        }
        Ok((!text.is_empty()).then(|| Self(text.to_owned())))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// A regular expression matching the term literally: every character with a meaning outside a character
    /// class is escaped, so `.*` or `(` search for those characters instead of being interpreted.
    pub fn literal_pattern(&self) -> String {
        let mut pattern = String::with_capacity(self.0.len() * 2);
        for c in self.0.chars() {
            if r"\^$.|?*+()[]{}".contains(c) {
                pattern.push('\\');
            }
            pattern.push(c);
        }
        pattern
    }
}

/// One page of the catalogue in id order: at most `first` products with ids after `after`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct PageRequest {
    pub first: i64,
    pub after: Option<ProductId>,
    pub search: Option<SearchTerm>,
}

impl PageRequest {
    pub fn parse(first: i32, after: Option<&str>, search: Option<&str>) -> Result<Self, InvalidInput> {
        if !(1..=MAX_PAGE_SIZE).contains(&first) {
            return Err(InvalidInput::new("first", format!("first must be between 1 and {MAX_PAGE_SIZE}")));
        }
        let after = after
            .map(|cursor| {
                ProductId::parse(cursor).ok_or_else(|| InvalidInput::new("after", "after must be a product id"))
            })
            .transpose()?;
        Ok(Self { first: i64::from(first), after, search: search.map(SearchTerm::parse).transpose()?.flatten() })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn page_size_must_be_between_one_and_one_hundred() {
        assert!(PageRequest::parse(1, None, None).is_ok());
        assert!(PageRequest::parse(100, None, None).is_ok());
        for first in [0, -1, 101, i32::MAX] {
            assert_eq!(PageRequest::parse(first, None, None).unwrap_err().field, "first");
        }
    }

    #[test]
    fn cursor_must_be_a_product_id() {
        assert_eq!(PageRequest::parse(5, Some("4"), None).unwrap().after, ProductId::parse("4"));
        for cursor in ["", "0", "x", "-3", "{\"$gt\":0}"] {
            assert_eq!(PageRequest::parse(5, Some(cursor), None).unwrap_err().field, "after");
        }
    }

    #[test]
    fn search_is_trimmed_bounded_and_blank_means_no_filter() {
        assert_eq!(PageRequest::parse(5, None, Some("   ")).unwrap().search, None);
        assert_eq!(PageRequest::parse(5, None, Some(" Tab ")).unwrap().search.unwrap().as_str(), "Tab");
        assert!(PageRequest::parse(5, None, Some(&"é".repeat(100))).is_ok());
        assert_eq!(PageRequest::parse(5, None, Some(&"a".repeat(101))).unwrap_err().field, "search");
    }

    #[test]
    fn regex_metacharacters_are_escaped() {
        let term = SearchTerm::parse(r"a.*(b)[c]{2}$^|+?\ d").unwrap().unwrap();
        assert_eq!(term.literal_pattern(), r"a\.\*\(b\)\[c\]\{2\}\$\^\|\+\?\\ d");
        let plain = SearchTerm::parse("Écouteurs").unwrap().unwrap();
        assert_eq!(plain.literal_pattern(), "Écouteurs");
    }
}
