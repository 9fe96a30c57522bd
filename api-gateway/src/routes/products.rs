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

use crate::{
    catalogue::{self, PRODUCT_FIELDS},
    error::{ApiError, FieldError},
    extract::JsonBody,
    routes::Admin,
    startup::AppState,
};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListQuery {
    first: Option<String>,
    after: Option<String>,
    search: Option<String>,
}

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
    let data = catalogue::execute(&state.products, &operation, variables, &headers).await?;
    Ok(Json(json!({ "products": data["products"] })))
}

pub async fn get(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<impl IntoResponse, ApiError> {
    let operation = format!("query Product($id: ID!) {{ product(id: $id) {{ {PRODUCT_FIELDS} }} }}");
    let data = catalogue::execute(&state.products, &operation, json!({ "id": id }), &headers).await?;
    match &data["product"] {
        Value::Null => Err(ApiError::new(StatusCode::NOT_FOUND, "Product not found")),
        product => Ok(Json(json!({ "product": product }))),
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateProduct {
    name: String,
    price: f64,
    description: Option<String>,
}

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
    let data = catalogue::execute(&state.products, &operation, variables, &headers).await?;
    Ok((StatusCode::CREATED, Json(json!({ "success": true, "product": data["addProduct"] }))))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UpdateProduct {
    name: Option<String>,
    price: Option<f64>,
    description: Option<String>,
}

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
    let data = catalogue::execute(&state.products, &operation, variables, &headers).await?;
    Ok(Json(json!({ "success": true, "product": data["updateProduct"] })))
}

pub async fn delete(
    State(state): State<AppState>,
    _admin: Admin,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<impl IntoResponse, ApiError> {
    let operation = format!("mutation DeleteProduct($id: ID!) {{ deleteProduct(id: $id) {{ {PRODUCT_FIELDS} }} }}");
    let data = catalogue::execute(&state.products, &operation, json!({ "id": id }), &headers).await?;
    Ok(Json(json!({ "success": true, "product": data["deleteProduct"] })))
}

/// POST /graphql: the product-service's GraphQL endpoint, with the caller's Authorization.
pub async fn graphql(State(state): State<AppState>, headers: HeaderMap, body: Bytes) -> Result<Response, ApiError> {
    state.products.forward(Method::POST, "/graphql", &headers, None, Some(body)).await
}

/// GET /graphql: the product-service's GraphiQL page (it posts back to /graphql, i.e. here).
pub async fn graphiql(State(state): State<AppState>, headers: HeaderMap) -> Result<Response, ApiError> {
    let mut headers = headers;
    headers.remove(header::AUTHORIZATION);
    state.products.forward(Method::GET, "/graphql", &headers, None, None).await
}
