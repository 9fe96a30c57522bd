//! POST /payments: the gateway parses the body and charges the order over gRPC with the payment-service, which
//! checks the order itself (the caller's, `processed`, amount = total to the cent) against its own record of it.
//! No status pre-check here: a retry with the same Idempotency-Key must replay the first answer, also once the
//! order is paid.
use axum::{
    Json,
    extract::State,
    http::{HeaderMap, HeaderName, StatusCode},
    response::{IntoResponse, Response},
};
use serde::Deserialize;
use serde_json::{Value, json};

use platform::http::extract::JsonBody;

use crate::{
    error::{ApiError, FieldError},
    payment_client::proto::{PayRequest, PaymentStatus},
    routes::{Authenticated, orders::is_order_id},
    state::AppState,
};

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
#[schema(example = json!({"orderId": "0193a5c8-7d3e-7c41-9a52-2f1e0b6c4d11", "amount": 1999.98}))]
pub struct PaymentRequest {
    /// A `processed` order of the caller's.
    #[schema(value_type = String)]
    order_id: Option<Value>,
    /// The order's `total` in euros, to the cent.
    #[schema(value_type = f64)]
    amount: Option<Value>,
}

/// An amount in euros with at most two decimals → cents.
fn parse_amount(value: Option<&Value>) -> Result<i64, String> {
    let amount = value.and_then(Value::as_f64).ok_or("amount must be a number")?;
    let cents = (amount * 100.0).round();
    if !amount.is_finite() || amount <= 0.0 || (amount * 100.0 - cents).abs() > 1e-6 || cents >= 1e15 {
        return Err("amount must be a positive number with at most two decimals".into());
    }
    Ok(cents as i64)
}

fn parse_order_id(value: Option<&Value>) -> Result<String, String> {
    match value {
        Some(Value::String(id)) if is_order_id(id) => Ok(id.clone()),
        _ => Err("orderId must be an order id".into()),
    }
}

fn idempotency_key(headers: &HeaderMap) -> Result<String, ApiError> {
    match headers.get("idempotency-key") {
        // Without a key every call is a new attempt; with one, retries replay the first result.
        None => Ok(uuid::Uuid::new_v4().to_string()),
        Some(value) => {
            value.to_str().ok().filter(|key| platform::idempotency::is_valid(key)).map(str::to_owned).ok_or_else(|| {
                ApiError::new(StatusCode::BAD_REQUEST, format!("Idempotency-Key {}", platform::idempotency::RULE))
            })
        }
    }
}

/// Pays a `processed` order; the order becomes `paid` shortly after.
#[utoipa::path(post, path = "/payments", operation_id = "payOrder", tag = "payments", security(("bearer" = [])), request_body = PaymentRequest,
    params(("Idempotency-Key" = Option<String>, Header, description = "Retries with the same key replay the first result")),
    responses(
        (status = 200, description = "Paid (`Idempotent-Replayed: true` when this replays an earlier call with the same key)", body = crate::openapi::PaymentSucceeded),
        (status = 400, description = "Invalid `orderId` or `amount`, or a bad Idempotency-Key", body = crate::openapi::ErrorBody),
        (status = 401, description = "Missing, invalid or expired token", body = crate::openapi::ErrorBody),
        (status = 402, description = "Declined (the amount is above the payment limit)", body = crate::openapi::PaymentDeclined),
        (status = 404, description = "No such order, or not the caller's", body = crate::openapi::ErrorBody),
        (status = 409, description = "The order is not processed yet (with `Retry-After`), or already paid by another payment", body = crate::openapi::ErrorBody),
        (status = 422, description = "`amount` is not the order's total, or the Idempotency-Key was used for another payment", body = crate::openapi::ErrorBody),
        (status = 503, description = "payment-service unavailable", body = crate::openapi::ErrorBody),
))]
pub async fn pay(
    State(state): State<AppState>,
    Authenticated(claims): Authenticated,
    headers: HeaderMap,
    JsonBody(request): JsonBody<PaymentRequest>,
) -> Result<Response, ApiError> {
    let order_id = parse_order_id(request.order_id.as_ref());
    let amount_cents = parse_amount(request.amount.as_ref());
    let (order_id, amount_cents) = match (order_id, amount_cents) {
        (Ok(order_id), Ok(amount)) => (order_id, amount),
        (order_id, amount) => {
            let mut errors = Vec::new();
            if let Err(message) = order_id {
                errors.push(FieldError { field: "orderId", message });
            }
            if let Err(message) = amount {
                errors.push(FieldError { field: "amount", message });
            }
            return Err(ApiError::validation(errors));
        }
    };
    let key = idempotency_key(&headers)?;

    let pay = PayRequest {
        order_id: order_id.clone(),
        user_id: claims.sub.clone(),
        amount_cents,
        currency: "EUR".into(),
        idempotency_key: key,
    };
    let paid = state.payments.pay(pay, &headers).await?;
    let replayed = [(HeaderName::from_static("idempotent-replayed"), if paid.replayed { "true" } else { "false" })];
    if paid.status == PaymentStatus::Success as i32 {
        tracing::info!(order_id = %order_id, payment_id = %paid.payment_id, replayed = paid.replayed, "payment succeeded");
        Ok((
            replayed,
            Json(json!({
                "success": true,
                "message": "Paiement traité avec succès",
                "status": "SUCCESS",
                "paymentId": paid.payment_id,
            })),
        )
            .into_response())
    } else {
        let body = json!({
            "success": false,
            "message": format!("Paiement refusé : {}", paid.reason),
            "status": "DECLINED",
            "reason": paid.reason,
            "paymentId": paid.payment_id,
        });
        Ok((StatusCode::PAYMENT_REQUIRED, replayed, Json(body)).into_response())
    }
}
