//! Public reads: `products` and `product`.
use async_graphql::{ID, Object};

use super::{DATABASE_FIELD_COST, product::Product};
use crate::{
    domain::{PageRequest, ProductId},
    error::ServiceError,
    state::AppState,
};

const DEFAULT_PAGE_SIZE: i32 = 50;

pub struct QueryRoot {
    state: AppState,
}

impl QueryRoot {
    pub fn new(state: AppState) -> Self {
        Self { state }
    }
}

// Named `Query` in the schema, as published (a doc comment here would become the type's description).
#[Object(name = "Query")]
impl QueryRoot {
    /// Products in id order. `first`: 1–100 (default 50). `after`: the id of the last product already seen.
    /// `search`: case-insensitive text looked for in names and descriptions, at most 100 characters.
    #[graphql(complexity = "DATABASE_FIELD_COST + child_complexity")]
    async fn products(
        &self,
        #[graphql(default = 50)] first: Option<i32>,
        after: Option<String>,
        search: Option<String>,
    ) -> Result<Vec<Product>, ServiceError> {
        let page = PageRequest::parse(first.unwrap_or(DEFAULT_PAGE_SIZE), after.as_deref(), search.as_deref())?;
        self.state.require_bootstrapped()?;
        let products = self.state.catalogue.list(&page).await?;
        Ok(products.iter().cloned().map(Product).collect())
    }

    /// The product with this id, or null when there is none.
    #[graphql(complexity = "DATABASE_FIELD_COST + child_complexity")]
    async fn product(&self, id: ID) -> Result<Option<Product>, ServiceError> {
        // A malformed id names no product: same answer as an unknown one, without asking the database.
        let Some(id) = ProductId::parse(&id) else {
            return Ok(None);
        };
        self.state.require_bootstrapped()?;
        let product = self.state.catalogue.get(id).await?;
        Ok(product.map(|product| Product((*product).clone())))
    }
}
