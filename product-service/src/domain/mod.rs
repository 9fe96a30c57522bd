//! Parse-don't-validate types: once a value has one of these types it is known to be acceptable.
mod page;
mod price;
mod product;

pub use page::{MAX_PAGE_SIZE, PageRequest, SearchTerm};
pub use price::Price;
pub use product::{Description, DescriptionChange, NewProduct, Product, ProductChanges, ProductId, ProductName};

/// Why a client-supplied value was refused: which argument, and a message safe to show the client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InvalidInput {
    pub field: &'static str,
    pub message: String,
}

impl InvalidInput {
    pub fn new(field: &'static str, message: impl Into<String>) -> Self {
        Self { field, message: message.into() }
    }
}
