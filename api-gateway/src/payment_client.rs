//! The payment-service's gRPC client, with the call deadline and the caller's identity headers.
use std::{
    sync::Arc,
    time::{Duration, Instant},
};

use axum::http::{HeaderMap, StatusCode};
use tonic::{
    Code, Request, Status,
    metadata::{MetadataKey, MetadataValue},
    transport::Channel,
};
use tracing::Instrument as _;

use crate::{
    error::ApiError,
    metrics::{CallOutcome, Metrics},
    resilience::{Guard, Outcome, Refusal, Settings, retry_after_secs},
};

const SERVICE: &str = "payment-service";

pub mod proto {
    tonic::include_proto!("payment.v1");
}

use proto::{PayRequest, PayResponse, payment_service_client::PaymentServiceClient};

#[derive(Clone)]
pub struct PaymentClient {
    client: PaymentServiceClient<Channel>,
    health: tonic_health::pb::health_client::HealthClient<Channel>,
    deadline: Duration,
    guard: Arc<Guard>,
    metrics: Arc<Metrics>,
}

impl PaymentClient {
    /// Connects lazily: the gateway starts (and reports not-ready) while payments are down.
    /// An https:// URL is reached over TLS, trusting the web roots and TLS_CA_FILE (`roots`).
    pub fn new(
        url: &str,
        roots: &platform::config::TlsRoots,
        deadline: Duration,
        settings: Settings,
        metrics: Arc<Metrics>,
    ) -> anyhow::Result<Self> {
        let mut endpoint = Channel::from_shared(url.to_owned())?;
        if url.starts_with("https://") {
            endpoint = endpoint.tls_config(platform::tls::grpc_client(roots))?;
        }
        let channel = endpoint.connect_timeout(Duration::from_secs(1)).timeout(deadline).connect_lazy();
        Ok(Self {
            client: PaymentServiceClient::new(channel.clone()),
            health: tonic_health::pb::health_client::HealthClient::new(channel),
            deadline,
            guard: Arc::new(Guard::new(SERVICE, settings, metrics.breaker_gauge(SERVICE))),
            metrics,
        })
    }

    /// Charges through the guard. Every Pay carries an idempotency key (the client's or one the
    /// gateway made for this request), so a retry replays instead of charging twice.
    pub async fn pay(&self, pay: PayRequest, incoming: &HeaderMap) -> Result<PayResponse, ApiError> {
        let span = tracing::info_span!(
            "downstream",
            otel.name = "payment.v1.PaymentService/Pay",
            otel.kind = "client",
            otel.status_code = tracing::field::Empty,
            rpc.system = "grpc",
            rpc.service = "payment.v1.PaymentService",
            rpc.method = "Pay",
            peer.service = SERVICE,
            rpc.grpc.status_code = tracing::field::Empty,
        );
        let started = Instant::now();
        let result = self.pay_guarded(pay, incoming).instrument(span.clone()).await;
        let outcome = match &result {
            Ok(Ok(_)) => CallOutcome::Success,
            Ok(Err(_)) => CallOutcome::ClientError,
            Err(Refusal::Failed(status)) if matches!(status.code(), Code::DeadlineExceeded | Code::Cancelled) => {
                CallOutcome::Timeout
            }
            Err(Refusal::Failed(_)) => CallOutcome::Unavailable,
            Err(Refusal::Open { .. }) => CallOutcome::CircuitOpen,
            Err(Refusal::Overloaded) => CallOutcome::Overloaded,
        };
        if let Ok(Err(status)) | Err(Refusal::Failed(status)) = &result {
            span.record("rpc.grpc.status_code", status.code() as i32);
        }
        if !matches!(outcome, CallOutcome::Success | CallOutcome::ClientError) {
            span.record("otel.status_code", "error");
        }
        self.metrics.observe_call(SERVICE, outcome, started.elapsed());
        match result {
            Ok(Ok(response)) => Ok(response),
            Ok(Err(status)) | Err(Refusal::Failed(status)) => Err(status_to_error(&status)),
            Err(Refusal::Open { retry_after }) => {
                Err(ApiError::unavailable("payment-service is temporarily unavailable")
                    .retry_after(retry_after_secs(retry_after)))
            }
            Err(Refusal::Overloaded) => Err(ApiError::unavailable("payment-service is overloaded; retry shortly")),
        }
    }

    async fn pay_guarded(
        &self,
        pay: PayRequest,
        incoming: &HeaderMap,
    ) -> Result<Result<PayResponse, Status>, Refusal<Status>> {
        let attempt = || async {
            match self.pay_once(pay.clone(), incoming).await {
                Ok(response) => Outcome::Answered(Ok(response)),
                Err(status) => match status.code() {
                    // Shedding load on purpose (its write queue is full): an answer, relayed with its retry
                    // hint, neither retried nor counted against the breaker (as a 503 with Retry-After).
                    Code::Unavailable if reason(&status) == Some("OVERLOADED") => Outcome::Answered(Err(status)),
                    Code::Unavailable | Code::Unknown | Code::Internal => Outcome::Error(status),
                    Code::DeadlineExceeded | Code::Cancelled => Outcome::TimedOut(status),
                    // The service answered: a refusal of this request, not a failure of the service.
                    _ => Outcome::Answered(Err(status)),
                },
            }
        };
        self.guard.call(true, attempt).await
    }

    async fn pay_once(&self, pay: PayRequest, incoming: &HeaderMap) -> Result<PayResponse, Status> {
        let mut request = Request::new(pay);
        request.set_timeout(self.deadline);
        for name in ["authorization", "x-request-id"] {
            if let Some(value) = incoming.get(name).and_then(|value| value.to_str().ok())
                && let Ok(value) = MetadataValue::try_from(value)
            {
                request.metadata_mut().insert(name, value);
            }
        }
        // W3C trace context as gRPC metadata: the payment joins the caller's trace.
        for (name, value) in &crate::telemetry::trace_headers() {
            if let (Ok(key), Some(value)) = (
                MetadataKey::from_bytes(name.as_str().as_bytes()),
                value.to_str().ok().and_then(|value| MetadataValue::try_from(value).ok()),
            ) {
                request.metadata_mut().insert(key, value);
            }
        }
        self.client.clone().pay(request).await.map(tonic::Response::into_inner)
    }

    /// True when the standard gRPC health service says the payment service is SERVING.
    pub async fn is_ready(&self) -> bool {
        let mut request =
            Request::new(tonic_health::pb::HealthCheckRequest { service: "payment.v1.PaymentService".into() });
        request.set_timeout(Duration::from_secs(1));
        let answer = tokio::time::timeout(Duration::from_secs(2), self.health.clone().check(request)).await;
        matches!(answer, Ok(Ok(response)) if response.get_ref().status == tonic_health::pb::health_check_response::ServingStatus::Serving as i32)
    }
}

/// How long a client should wait before paying an order the payment-service does not know as processed yet: the
/// projection usually catches up within milliseconds.
const NOT_READY_RETRY_AFTER_SECS: u64 = 1;

/// The payment-service's machine-readable reason for a refusal (its `x-error-reason` metadata).
fn reason(status: &Status) -> Option<&str> {
    status.metadata().get("x-error-reason").and_then(|value| value.to_str().ok())
}

/// gRPC status → the HTTP status and message a REST client gets.
pub fn status_to_error(status: &Status) -> ApiError {
    let message = status.message().to_owned();
    match status.code() {
        Code::InvalidArgument if reason(status) == Some("AMOUNT_MISMATCH") => {
            let total = status
                .metadata()
                .get("x-order-total-cents")
                .and_then(|value| value.to_str().ok())
                .and_then(|cents| cents.parse::<i64>().ok());
            let message = match total {
                Some(cents) => format!("amount must equal the order total ({}.{:02})", cents / 100, cents % 100),
                None => "amount must equal the order total".to_owned(),
            };
            ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, message)
        }
        Code::InvalidArgument if matches!(reason(status), Some("CURRENCY_MISMATCH" | "IDEMPOTENCY_KEY_REUSED")) => {
            ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, message)
        }
        Code::InvalidArgument => ApiError::new(StatusCode::BAD_REQUEST, message),
        Code::Unauthenticated => ApiError::unauthorized(message),
        Code::PermissionDenied => ApiError::new(StatusCode::FORBIDDEN, message),
        Code::NotFound => ApiError::new(StatusCode::NOT_FOUND, "Order not found"),
        Code::AlreadyExists => ApiError::new(StatusCode::CONFLICT, "Order is already paid"),
        Code::FailedPrecondition => ApiError::new(StatusCode::CONFLICT, "Order is not processed yet: retry shortly")
            .retry_after(NOT_READY_RETRY_AFTER_SECS),
        Code::Unavailable if reason(status) == Some("OVERLOADED") => {
            ApiError::unavailable("Too many payments in progress; retry shortly")
        }
        Code::Unavailable => {
            tracing::warn!(%status, "payment-service unavailable");
            ApiError::unavailable("payment-service is temporarily unavailable")
        }
        Code::DeadlineExceeded | Code::Cancelled => {
            ApiError::new(StatusCode::GATEWAY_TIMEOUT, "payment-service did not answer in time")
        }
        _ => {
            tracing::warn!(%status, "payment-service failed");
            ApiError::new(StatusCode::BAD_GATEWAY, "payment-service failed to answer")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_overloaded_payment_service_is_a_503_with_retry_after() {
        let mut status = Status::unavailable("too many payments in progress; retry shortly");
        status.metadata_mut().insert("x-error-reason", tonic::metadata::MetadataValue::from_static("OVERLOADED"));
        let response = axum::response::IntoResponse::into_response(status_to_error(&status));
        assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(response.headers()["retry-after"], "1");
    }
}
