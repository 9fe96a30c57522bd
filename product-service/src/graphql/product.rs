//! The `Product` GraphQL type.
use async_graphql::{ID, Object};

use crate::domain;

/// A catalogue entry as clients see it: the price in currency units with two decimals, timestamps as
/// RFC 3339 text.
pub struct Product(pub domain::Product);

#[Object]
impl Product {
    async fn id(&self) -> ID {
        ID(self.0.id.to_string())
    }

    async fn name(&self) -> &str {
        &self.0.name
    }

    /// Stored as integer cents; exposed as a number with at most two decimals (899.99).
    async fn price(&self) -> f64 {
        self.0.price.as_decimal()
    }

    async fn description(&self) -> Option<&str> {
        self.0.description.as_deref()
    }

    async fn created_at(&self) -> &str {
        &self.0.created_at
    }

    async fn updated_at(&self) -> &str {
        &self.0.updated_at
    }
}
