//! POST /orders, GET /orders, GET /orders/{id}.
use axum::{
    Json,
    extract::{Path, Query, State},
    http::{HeaderMap, HeaderValue, StatusCode},
    response::{IntoResponse, Response},
};
use serde::Deserialize;
use serde_json::{Value, json};

use platform::http::extract::JsonBody;

use crate::{
    domain::Quantity,
    error::{ApiError, FieldError},
    routes::Authenticated,
    state::AppState,
    store::OrderDocument,
    use_cases::place_order::{NewOrder, PlaceOrderError},
};

const CREATED_MESSAGE: &str = "Commande créée et envoyée pour traitement";
const MAX_ID_LEN: usize = 64;

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct CreateOrderRequest {
    product_id: Option<Value>,
    quantity: Option<Value>,
    user_id: Option<Value>,
}

/// Product ids are strings; a JSON integer (as the original clients sent) is accepted too.
fn parse_product_id(value: Option<&Value>) -> Result<String, String> {
    let id = match value {
        Some(Value::String(id)) => id.trim().to_owned(),
        Some(Value::Number(n)) if n.is_u64() => n.to_string(),
        None | Some(Value::Null) => return Err("productId is required".into()),
        Some(_) => return Err("productId must be a string".into()),
    };
    if id.is_empty() || id.len() > MAX_ID_LEN {
        return Err(format!("productId must be 1 to {MAX_ID_LEN} characters"));
    }
    Ok(id)
}

fn idempotency_key(headers: &HeaderMap) -> Result<Option<String>, ApiError> {
    let Some(value) = headers.get("idempotency-key") else {
        return Ok(None);
    };
    let key = value.to_str().ok().filter(|key| platform::idempotency::is_valid(key));
    key.map(|key| Some(key.to_owned())).ok_or_else(|| {
        ApiError::new(StatusCode::BAD_REQUEST, format!("Idempotency-Key {}", platform::idempotency::RULE))
    })
}

fn request_id(headers: &HeaderMap) -> Option<String> {
    headers.get("x-request-id").and_then(|value| value.to_str().ok()).map(str::to_owned)
}

fn created(order_id: &str, replayed: bool) -> Response {
    let body = json!({ "success": true, "message": CREATED_MESSAGE, "orderId": order_id });
    let mut response = (StatusCode::CREATED, Json(body)).into_response();
    if replayed {
        response.headers_mut().insert("idempotent-replayed", HeaderValue::from_static("true"));
    }
    response
}

pub async fn create(
    State(state): State<AppState>,
    Authenticated(claims): Authenticated,
    headers: HeaderMap,
    JsonBody(request): JsonBody<CreateOrderRequest>,
) -> Result<Response, ApiError> {
    let mut errors = Vec::new();
    let product_id = parse_product_id(request.product_id.as_ref())
        .map_err(|message| errors.push(FieldError { field: "productId", message }))
        .ok();
    let quantity = match request.quantity.as_ref() {
        None | Some(Value::Null) => {
            errors.push(FieldError { field: "quantity", message: "quantity is required".into() });
            None
        }
        Some(value) => {
            Quantity::parse(value).map_err(|message| errors.push(FieldError { field: "quantity", message })).ok()
        }
    };
    match request.user_id {
        None | Some(Value::Null) => {}
        Some(Value::String(user_id)) if user_id == claims.sub => {}
        Some(Value::String(_)) => {
            return Err(ApiError::new(StatusCode::FORBIDDEN, "userId must be the authenticated user"));
        }
        Some(_) => errors.push(FieldError { field: "userId", message: "userId must be a string".into() }),
    }
    let (Some(product_id), Some(quantity), true) = (product_id, quantity, errors.is_empty()) else {
        return Err(ApiError::validation(errors));
    };
    let idempotency_key = idempotency_key(&headers)?;
    state.require_bootstrapped()?;
    let order = NewOrder {
        user_id: claims.sub,
        product_id,
        quantity,
        idempotency_key,
        request_id: request_id(&headers),
        trace: crate::telemetry::TraceContext::current(),
    };
    let placed = state.place_order.place(order).await?;
    Ok(created(&placed.order_id, placed.replayed))
}

impl From<PlaceOrderError> for ApiError {
    fn from(error: PlaceOrderError) -> Self {
        let status = match &error {
            PlaceOrderError::UnknownProduct(_) | PlaceOrderError::TotalTooLarge | PlaceOrderError::KeyReused => {
                StatusCode::UNPROCESSABLE_ENTITY
            }
            PlaceOrderError::ConcurrentKey => StatusCode::CONFLICT,
            PlaceOrderError::CatalogueUnavailable | PlaceOrderError::Overloaded | PlaceOrderError::Stopped => {
                return ApiError::unavailable(error.to_string());
            }
            PlaceOrderError::Encoding(_) => return ApiError::internal(error),
            PlaceOrderError::Store(store) => return store.clone().into(),
        };
        ApiError::new(status, error.to_string())
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListQuery {
    limit: Option<String>,
    before: Option<String>,
}

/// The caller's own orders (an admin sees all), newest first; `before` continues a page.
pub async fn list(
    State(state): State<AppState>,
    Authenticated(claims): Authenticated,
    query: Result<Query<ListQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<impl IntoResponse, ApiError> {
    let Query(query) = query.map_err(|_| ApiError::new(StatusCode::BAD_REQUEST, "Unknown query parameter"))?;
    let limit = match query.limit.as_deref() {
        None => 20,
        Some(raw) => raw.parse::<i64>().ok().filter(|n| (1..=100).contains(n)).ok_or_else(|| {
            ApiError::validation(vec![FieldError {
                field: "limit",
                message: "limit must be an integer from 1 to 100".into(),
            }])
        })?,
    };
    if query.before.as_ref().is_some_and(|before| before.len() > MAX_ID_LEN) {
        return Err(ApiError::validation(vec![FieldError {
            field: "before",
            message: "before must be an order id".into(),
        }]));
    }
    let owner = (!claims.is_admin()).then_some(claims.sub.as_str());
    let orders = state.store.list(owner, query.before.as_deref(), limit).await?;
    let next_cursor = (orders.len() as i64 == limit).then(|| orders.last().map(|order| order.id.clone())).flatten();
    let views: Vec<_> = orders.iter().map(OrderDocument::view).collect();
    Ok(Json(json!({ "orders": views, "nextCursor": next_cursor })))
}

/// One order; 404 when it does not exist or belongs to someone else (no existence leak).
pub async fn get(
    State(state): State<AppState>,
    Authenticated(claims): Authenticated,
    Path(id): Path<String>,
) -> Result<impl IntoResponse, ApiError> {
    let not_found = || ApiError::new(StatusCode::NOT_FOUND, "Order not found");
    if id.len() > MAX_ID_LEN {
        return Err(not_found());
    }
    match state.store.find(&id).await? {
        Some(order) if order.user_id == claims.sub || claims.is_admin() => Ok(Json(json!({ "order": order.view() }))),
        _ => Err(not_found()),
    }
}
