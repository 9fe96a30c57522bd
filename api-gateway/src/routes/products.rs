//! /products over the product-service's GraphQL API, and /graphql forwarded as is.
use axum::{
    Json,
    extract::{Path, Query, State, rejection::QueryRejection},
    http::{HeaderMap, Method, StatusCode, header},
    response::{IntoResponse, Response},
};
use bytes::Bytes;
use serde::Deserialize;
use serde_json::{Value, json};

use platform::http::extract::JsonBody;

use crate::{
    error::{ApiError, FieldError},
    product_client::{self, PRODUCT_FIELDS},
    routes::Admin,
    state::AppState,
};

#[derive(Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ListQuery {
    /// Page size (default 50).
    #[param(value_type = Option<i32>)]
    first: Option<String>,
    /// The id of the last product of the previous page.
    after: Option<String>,
    /// Words to look for in names and descriptions.
    search: Option<String>,
}

/// The catalogue, in id order.
#[utoipa::path(get, path = "/products", operation_id = "listProducts", tag = "products", params(ListQuery), responses(
    (status = 200, description = "A page of products", body = crate::openapi::ProductList),
    (status = 400, description = "Unknown or malformed query parameter", body = crate::openapi::ErrorBody),
    (status = 503, description = "product-service unavailable", body = crate::openapi::ErrorBody),
))]
pub async fn list(
    State(state): State<AppState>,
    headers: HeaderMap,
    query: Result<Query<ListQuery>, QueryRejection>,
) -> Result<impl IntoResponse, ApiError> {
    let Query(query) =
        query.map_err(|_| ApiError::new(StatusCode::BAD_REQUEST, "Unknown or malformed query parameter"))?;
    let first = match query.first.as_deref() {
        None => None,
        Some(raw) => Some(raw.parse::<i32>().map_err(|_| {
            ApiError::validation(vec![FieldError { field: "first", message: "first must be an integer".into() }])
        })?),
    };
    let operation = format!(
        "query Products($first: Int, $after: String, $search: String) {{ products(first: $first, after: $after, search: $search) {{ {PRODUCT_FIELDS} }} }}"
    );
    // A missing `first` keeps the schema's default (50) rather than sending null.
    let mut variables = json!({ "after": query.after, "search": query.search });
    if let Some(first) = first {
        variables["first"] = json!(first);
    }
    let mut data = product_client::execute(&state.products, &operation, variables, &headers).await?;
    let products = data.get_mut("products").map(Value::take).unwrap_or_default();
    Ok(Json(json!({ "products": products })))
}

/// One product.
#[utoipa::path(get, path = "/products/{id}", operation_id = "getProduct", tag = "products", params(("id" = String, Path, description = "Product id")), responses(
    (status = 200, description = "The product", body = crate::openapi::ProductEnvelope),
    (status = 404, description = "No such product", body = crate::openapi::ErrorBody),
    (status = 503, description = "product-service unavailable", body = crate::openapi::ErrorBody),
))]
pub async fn get(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<impl IntoResponse, ApiError> {
    let operation = format!("query Product($id: ID!) {{ product(id: $id) {{ {PRODUCT_FIELDS} }} }}");
    let mut data = product_client::execute(&state.products, &operation, json!({ "id": id }), &headers).await?;
    match data.get_mut("product").map(Value::take).unwrap_or_default() {
        Value::Null => Err(ApiError::new(StatusCode::NOT_FOUND, "Product not found")),
        product => Ok(Json(json!({ "product": product }))),
    }
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"name": "Desk lamp", "price": 24.9, "description": "Warm light"}))]
pub struct CreateProduct {
    /// 1–200 characters.
    name: String,
    /// Euros: > 0, ≤ 1,000,000, at most two decimals.
    price: f64,
    /// At most 2,000 characters.
    description: Option<String>,
}

/// Adds a product (admin).
#[utoipa::path(post, path = "/products", operation_id = "createProduct", tag = "products", security(("bearer" = [])), request_body = CreateProduct, responses(
    (status = 201, description = "Created", body = crate::openapi::ProductChanged),
    (status = 400, description = "Invalid fields", body = crate::openapi::ErrorBody),
    (status = 401, description = "Missing, invalid or expired token", body = crate::openapi::ErrorBody),
    (status = 403, description = "Not an admin", body = crate::openapi::ErrorBody),
    (status = 503, description = "product-service unavailable", body = crate::openapi::ErrorBody),
))]
pub async fn create(
    State(state): State<AppState>,
    _admin: Admin,
    headers: HeaderMap,
    JsonBody(body): JsonBody<CreateProduct>,
) -> Result<impl IntoResponse, ApiError> {
    let operation = format!(
        "mutation AddProduct($name: String!, $price: Float!, $description: String) {{ addProduct(name: $name, price: $price, description: $description) {{ {PRODUCT_FIELDS} }} }}"
    );
    let variables = json!({ "name": body.name, "price": body.price, "description": body.description });
    let data = product_client::execute(&state.products, &operation, variables, &headers).await?;
    Ok((StatusCode::CREATED, Json(json!({ "success": true, "product": data["addProduct"] }))))
}

/// Only the fields sent change.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"price": 19.9}))]
pub struct UpdateProduct {
    name: Option<String>,
    price: Option<f64>,
    description: Option<String>,
}

/// Changes a product (admin).
#[utoipa::path(patch, path = "/products/{id}", operation_id = "updateProduct", tag = "products", security(("bearer" = [])), request_body = UpdateProduct,
    params(("id" = String, Path, description = "Product id")),
    responses(
        (status = 200, description = "Updated", body = crate::openapi::ProductChanged),
        (status = 400, description = "Invalid fields", body = crate::openapi::ErrorBody),
        (status = 401, description = "Missing, invalid or expired token", body = crate::openapi::ErrorBody),
        (status = 403, description = "Not an admin", body = crate::openapi::ErrorBody),
        (status = 404, description = "No such product", body = crate::openapi::ErrorBody),
        (status = 503, description = "product-service unavailable", body = crate::openapi::ErrorBody),
))]
pub async fn update(
    State(state): State<AppState>,
    _admin: Admin,
    headers: HeaderMap,
    Path(id): Path<String>,
    JsonBody(body): JsonBody<UpdateProduct>,
) -> Result<impl IntoResponse, ApiError> {
    let operation = format!(
        "mutation UpdateProduct($id: ID!, $name: String, $price: Float, $description: String) {{ updateProduct(id: $id, name: $name, price: $price, description: $description) {{ {PRODUCT_FIELDS} }} }}"
    );
    // Only the fields the client sent: absent fields stay unchanged.
    let mut variables = json!({ "id": id });
    if let Some(name) = body.name {
        variables["name"] = json!(name);
    }
    if let Some(price) = body.price {
        variables["price"] = json!(price);
    }
    if let Some(description) = body.description {
        variables["description"] = json!(description);
    }
    let data = product_client::execute(&state.products, &operation, variables, &headers).await?;
    Ok(Json(json!({ "success": true, "product": data["updateProduct"] })))
}

/// Removes a product (admin); its id is never reused.
#[utoipa::path(delete, path = "/products/{id}", operation_id = "deleteProduct", tag = "products", security(("bearer" = [])),
    params(("id" = String, Path, description = "Product id")),
    responses(
        (status = 200, description = "Deleted; the body shows what was removed", body = crate::openapi::ProductChanged),
        (status = 401, description = "Missing, invalid or expired token", body = crate::openapi::ErrorBody),
        (status = 403, description = "Not an admin", body = crate::openapi::ErrorBody),
        (status = 404, description = "No such product", body = crate::openapi::ErrorBody),
        (status = 503, description = "product-service unavailable", body = crate::openapi::ErrorBody),
))]
pub async fn delete(
    State(state): State<AppState>,
    _admin: Admin,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<impl IntoResponse, ApiError> {
    let operation = format!("mutation DeleteProduct($id: ID!) {{ deleteProduct(id: $id) {{ {PRODUCT_FIELDS} }} }}");
    let data = product_client::execute(&state.products, &operation, json!({ "id": id }), &headers).await?;
    Ok(Json(json!({ "success": true, "product": data["deleteProduct"] })))
}

/// POST /graphql: the product-service's GraphQL endpoint, with the caller's Authorization.
#[utoipa::path(post, path = "/graphql", operation_id = "graphql", tag = "products", request_body = crate::openapi::GraphQlRequest, responses(
    (status = 200, description = "The GraphQL answer; failures are in `errors` with `extensions.code`", body = crate::openapi::GraphQlResponse),
    (status = 400, description = "Not a GraphQL request, or over the depth/complexity limits", body = crate::openapi::GraphQlResponse),
    (status = 503, description = "product-service unavailable", body = crate::openapi::ErrorBody),
))]
pub async fn graphql(State(state): State<AppState>, headers: HeaderMap, body: Bytes) -> Result<Response, ApiError> {
    state.products.forward(Method::POST, "/graphql", &headers, Some(body)).await
}

/// GET /graphql: the product-service's GraphiQL page (it posts back to /graphql, i.e. here).
#[utoipa::path(get, path = "/graphql", operation_id = "graphiql", tag = "products", responses(
    (status = 200, description = "GraphiQL, the in-browser GraphQL IDE", content_type = "text/html", body = String),
    (status = 503, description = "product-service unavailable", body = crate::openapi::ErrorBody),
))]
pub async fn graphiql(State(state): State<AppState>, headers: HeaderMap) -> Result<Response, ApiError> {
    let mut headers = headers;
    headers.remove(header::AUTHORIZATION);
    state.products.forward(Method::GET, "/graphql", &headers, None).await
}
