//! Admin-only writes: `addProduct`, `updateProduct`, `deleteProduct`.
//!
//! Each one checks the caller first (UNAUTHENTICATED / FORBIDDEN), then the input (BAD_USER_INPUT), then
//! touches the catalogue (NOT_FOUND for unknown ids).
use async_graphql::{Context, ID, Object};

use super::{DATABASE_FIELD_COST, caller::require_admin, product::Product};
use crate::{
    domain::{NewProduct, ProductChanges, ProductId},
    error::ServiceError,
    state::AppState,
};

pub struct MutationRoot {
    state: AppState,
}

impl MutationRoot {
    pub fn new(state: AppState) -> Self {
        Self { state }
    }
}

/// A malformed id names no product, so it is NOT_FOUND like any unknown id.
fn product_id(id: &ID) -> Result<ProductId, ServiceError> {
    ProductId::parse(id).ok_or(ServiceError::NotFound)
}

// Named `Mutation` in the schema, as published.
#[Object(name = "Mutation")]
impl MutationRoot {
    /// Creates a product with a fresh id. `name`: 1–200 characters; `price`: more than 0, at most 1000000,
    /// at most two decimals; `description`: at most 2000 characters.
    #[graphql(complexity = "DATABASE_FIELD_COST + child_complexity")]
    async fn add_product(
        &self,
        ctx: &Context<'_>,
        name: String,
        price: f64,
        description: Option<String>,
    ) -> Result<Product, ServiceError> {
        let admin = require_admin(ctx).await?;
        let product = NewProduct::parse(&name, price, description.as_deref())?;
        self.state.require_bootstrapped()?;
        let product = self.state.catalogue.add(&product).await?;
        tracing::info!(product_id = %product.id, admin = %admin.sub, "product added");
        Ok(Product(product))
    }

    /// Changes only the fields given; at least one is required. A field left out or `null` is unchanged;
    /// `description: ""` removes the description. (Null cannot mean "remove": async-graphql passes a declared
    /// but unsent variable as null, so a client reusing one update document for a price change would wipe
    /// descriptions.)
    #[graphql(complexity = "DATABASE_FIELD_COST + child_complexity")]
    async fn update_product(
        &self,
        ctx: &Context<'_>,
        id: ID,
        name: Option<String>,
        price: Option<f64>,
        description: Option<String>,
    ) -> Result<Product, ServiceError> {
        let admin = require_admin(ctx).await?;
        let id = product_id(&id)?;
        let changes = ProductChanges::parse(name.as_deref(), price, description.as_deref())?;
        self.state.require_bootstrapped()?;
        let product = self.state.catalogue.update(id, &changes).await?.ok_or(ServiceError::NotFound)?;
        tracing::info!(product_id = %product.id, admin = %admin.sub, "product updated");
        Ok(Product(product))
    }

    /// Removes the product and returns it as it was. Its id is never given to another product.
    #[graphql(complexity = "DATABASE_FIELD_COST + child_complexity")]
    async fn delete_product(&self, ctx: &Context<'_>, id: ID) -> Result<Product, ServiceError> {
        let admin = require_admin(ctx).await?;
        let id = product_id(&id)?;
        self.state.require_bootstrapped()?;
        let product = self.state.catalogue.delete(id).await?.ok_or(ServiceError::NotFound)?;
        tracing::info!(product_id = %product.id, admin = %admin.sub, "product deleted");
        Ok(Product(product))
    }
}
