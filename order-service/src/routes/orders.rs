//! POST /orders, GET /orders, GET /orders/{id}.
use axum::{
    Json,
    extract::{Path, Query, State},
    http::{HeaderMap, HeaderValue, StatusCode},
    response::{IntoResponse, Response},
};
use platform::group_commit::SubmitError;
use serde::Deserialize;
use serde_json::{Value, json};

use crate::{
    domain::Quantity,
    error::{ApiError, FieldError},
    extract::JsonBody,
    routes::Authenticated,
    state::AppState,
    store::{EventOrigin, OrderDocument, StoreError},
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
    let key = idempotency_key(&headers)?;
    state.require_bootstrapped()?;
    let request_id = request_id(&headers);

    let fingerprint = format!("{product_id}|{}", quantity.get());
    let scope = key.map(|key| format!("{}:{key}", claims.sub));
    if let Some(scope) = &scope
        && let Some(replay) = replay_or_release(&state, scope, &fingerprint).await?
    {
        return Ok(replay);
    }

    let product = state.catalog.product(&product_id, request_id.as_deref()).await.map_err(|error| {
        tracing::warn!(%error, "cannot price the order");
        ApiError::unavailable("Product catalogue temporarily unavailable")
    })?;
    let Some(product) = product else {
        return Err(ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, format!("Product {product_id} does not exist")));
    };
    let total = product
        .unit_price
        .times(quantity.get())
        .ok_or_else(|| ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "Order total is too large"))?;
    let keyed = scope.clone().map(|scope| (scope, fingerprint.clone()));
    // The request's trace travels with the order's events, through the outbox to Kafka.
    let origin = EventOrigin { request_id, traceparent: crate::telemetry::TraceContext::current().traceparent };
    let order =
        OrderDocument::new_pending(&claims.sub, &product, quantity, total, keyed, &state.topics.new_order, origin)
            .map_err(ApiError::internal)?;
    let order_id = order.id.clone();
    // Gathered with concurrent requests' orders into one durable insert; the answer is this order's own.
    match state.order_writes.submit(order).await.map_err(|error| queue_error(&state, "orders", error))? {
        Ok(()) => {}
        // Another request with the same key won the race: answer as it did.
        Err(StoreError::DuplicateIdempotencyKey) => {
            let scope = scope.unwrap_or_default();
            return replay_or_release(&state, &scope, &fingerprint).await?.ok_or_else(|| {
                ApiError::new(StatusCode::CONFLICT, "Concurrent request with the same Idempotency-Key")
            });
        }
        Err(error) => return Err(error.into()),
    }
    state.relay_wake.notify_one();
    tracing::info!(order_id = %order_id, user_id = %claims.sub, "order created");
    Ok(created(&order_id, false))
}

/// A group-commit queue refused or lost the job: 503 with `Retry-After`, counted when the queue was full.
fn queue_error(state: &AppState, queue: &str, error: SubmitError) -> ApiError {
    match error {
        SubmitError::QueueFull => {
            state.metrics.write_queue_rejected.with_label_values(&[queue]).inc();
            ApiError::unavailable("Too many orders in progress; retry shortly")
        }
        SubmitError::Stopped => ApiError::unavailable("Order storage temporarily unavailable"),
    }
}

/// The first response for this key if it is still fresh; frees the key when it has expired.
async fn replay_or_release(state: &AppState, scope: &str, fingerprint: &str) -> Result<Option<Response>, ApiError> {
    let lookup = state.scope_lookups.submit(scope.to_owned()).await;
    let Some(existing) = lookup.map_err(|error| queue_error(state, "idempotency_lookups", error))?? else {
        return Ok(None);
    };
    let age_ms = mongodb::bson::DateTime::now().timestamp_millis() - existing.created_at.timestamp_millis();
    if age_ms > i64::try_from(state.idempotency_ttl.as_millis()).unwrap_or(i64::MAX) {
        state.store.release_idempotency_scope(&existing.id).await?;
        return Ok(None);
    }
    if existing.request_fingerprint.as_deref() != Some(fingerprint) {
        return Err(ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "Idempotency-Key was already used with a different request",
        ));
    }
    Ok(Some(created(&existing.id, true)))
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
