//! Asks the product-service (GraphQL) for the product an order is for, to take a price snapshot.
use std::time::Duration;

use serde::Deserialize;
use serde_json::json;

use crate::domain::Money;

/// Variables carry the client's input: it is never pasted into the query text.
const PRODUCT_QUERY: &str = "query OrderProduct($id: ID!) { product(id: $id) { id name price } }";

#[derive(Debug, Clone, PartialEq)]
pub struct ProductSnapshot {
    pub id: String,
    pub name: String,
    pub unit_price: Money,
}

#[derive(Debug, thiserror::Error)]
pub enum CatalogError {
    /// Unreachable, timed out, or answered with a server error: the order cannot be priced now.
    #[error("product-service unavailable: {0}")]
    Unavailable(String),
}

#[derive(Clone)]
pub struct ProductClient {
    http: reqwest::Client,
    graphql_url: String,
    timeout: Duration,
}

#[derive(Deserialize)]
struct GraphQlResponse {
    data: Option<ProductData>,
    #[serde(default)]
    errors: Vec<serde_json::Value>,
}

#[derive(Deserialize)]
struct ProductData {
    product: Option<ProductFields>,
}

#[derive(Deserialize)]
struct ProductFields {
    id: String,
    name: String,
    price: f64,
}

impl ProductClient {
    pub fn new(http: reqwest::Client, base_url: &str, timeout: Duration) -> Self {
        Self { http, graphql_url: format!("{base_url}/graphql"), timeout }
    }

    /// `Ok(None)` when the product does not exist.
    pub async fn product(&self, id: &str, request_id: Option<&str>) -> Result<Option<ProductSnapshot>, CatalogError> {
        let mut request = self
            .http
            .post(&self.graphql_url)
            .timeout(self.timeout)
            .headers(crate::telemetry::trace_headers())
            .json(&json!({ "query": PRODUCT_QUERY, "variables": { "id": id } }));
        if let Some(request_id) = request_id {
            request = request.header("x-request-id", request_id);
        }
        let response = request.send().await.map_err(|error| CatalogError::Unavailable(error.to_string()))?;
        if !response.status().is_success() {
            return Err(CatalogError::Unavailable(format!("status {}", response.status())));
        }
        let body: GraphQlResponse =
            response.json().await.map_err(|error| CatalogError::Unavailable(error.to_string()))?;
        if !body.errors.is_empty() {
            return Err(CatalogError::Unavailable(format!("GraphQL errors: {:?}", body.errors)));
        }
        let Some(product) = body.data.and_then(|data| data.product) else {
            return Ok(None);
        };
        let unit_price = Money::from_decimal(product.price)
            .ok_or_else(|| CatalogError::Unavailable(format!("product {} has an invalid price", product.id)))?;
        Ok(Some(ProductSnapshot { id: product.id, name: product.name, unit_price }))
    }
}
