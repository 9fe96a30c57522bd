//! Calls to the HTTP services behind the gateway: forwarding the headers that matter, bounding
//! every call with a timeout, and turning transport failures into 503/504 instead of hangs.
use std::{
    sync::Arc,
    time::{Duration, Instant},
};

use axum::{
    body::Body,
    http::{HeaderMap, HeaderName, Method, StatusCode, header},
    response::Response,
};
use bytes::Bytes;
use tracing::Instrument as _;

use crate::{
    error::ApiError,
    metrics::{CallOutcome, Metrics},
    resilience::{Guard, Outcome, Refusal, Settings, retry_after_secs},
};

/// Request headers passed on unchanged to the services. `X-Forwarded-For` is by then the one client
/// address the gateway derived (`crate::client_address`), never what the client wrote.
const FORWARDED: [HeaderName; 5] = [
    header::AUTHORIZATION,
    header::CONTENT_TYPE,
    HeaderName::from_static("idempotency-key"),
    HeaderName::from_static("x-request-id"),
    HeaderName::from_static("x-forwarded-for"),
];

/// Response headers relayed back to the client.
const RELAYED: [HeaderName; 3] =
    [header::CONTENT_TYPE, header::RETRY_AFTER, HeaderName::from_static("idempotent-replayed")];

#[derive(Debug, thiserror::Error)]
pub enum DownstreamError {
    #[error("{0} is unavailable: {1}")]
    Unavailable(&'static str, String),
    #[error("{0} did not answer in time")]
    Timeout(&'static str),
    #[error("{0}: circuit open after repeated failures")]
    CircuitOpen(&'static str, u64),
    #[error("{0}: too many calls in flight")]
    Overloaded(&'static str),
}

impl DownstreamError {
    /// Maps a refusal of the resilience guard onto this error.
    pub fn from_refusal(guard: &Guard, refusal: Refusal<DownstreamError>) -> Self {
        match refusal {
            Refusal::Open { retry_after } => Self::CircuitOpen(guard.name(), retry_after_secs(retry_after)),
            Refusal::Overloaded => Self::Overloaded(guard.name()),
            Refusal::Failed(error) => error,
        }
    }
}

impl From<DownstreamError> for ApiError {
    fn from(error: DownstreamError) -> Self {
        tracing::warn!(%error, "downstream call failed");
        match error {
            DownstreamError::Unavailable(name, _) => {
                ApiError::unavailable(format!("{name} is temporarily unavailable"))
            }
            DownstreamError::Timeout(name) => {
                ApiError::new(StatusCode::GATEWAY_TIMEOUT, format!("{name} did not answer in time"))
            }
            DownstreamError::CircuitOpen(name, retry_after) => {
                ApiError::unavailable(format!("{name} is temporarily unavailable")).retry_after(retry_after)
            }
            DownstreamError::Overloaded(name) => ApiError::unavailable(format!("{name} is overloaded; retry shortly")),
        }
    }
}

/// One HTTP service behind the gateway, with its own resilience guard.
#[derive(Clone)]
pub struct Downstream {
    pub name: &'static str,
    base_url: String,
    http: reqwest::Client,
    timeout: Duration,
    guard: Arc<Guard>,
    metrics: Arc<Metrics>,
}

impl Downstream {
    pub fn new(
        name: &'static str,
        base_url: &str,
        http: reqwest::Client,
        timeout: Duration,
        settings: Settings,
        metrics: Arc<Metrics>,
    ) -> Self {
        let guard = Arc::new(Guard::new(name, settings, metrics.breaker_gauge(name)));
        Self { name, base_url: base_url.to_owned(), http, timeout, guard, metrics }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base_url)
    }

    /// Sends a request carrying the client's relevant headers (its address among them), through the
    /// guard: reads and keyed writes are retried after failures, other writes never.
    /// The call is a client span of the current trace, and its outcome is counted.
    pub async fn send(
        &self,
        method: Method,
        path_and_query: &str,
        incoming: &HeaderMap,
        body: Option<Bytes>,
    ) -> Result<reqwest::Response, DownstreamError> {
        let path = path_and_query.split('?').next().unwrap_or(path_and_query);
        let span = tracing::info_span!(
            "downstream",
            otel.name = %format!("{method} {}", self.name),
            otel.kind = "client",
            otel.status_code = tracing::field::Empty,
            http.request.method = platform::http::observe::method_label(&method),
            peer.service = self.name,
            url.path = %path,
            http.response.status_code = tracing::field::Empty,
        );
        let started = Instant::now();
        let result = self.send_guarded(method, path_and_query, incoming, body).instrument(span.clone()).await;
        let outcome = match &result {
            Ok(response) => {
                span.record("http.response.status_code", response.status().as_u16());
                CallOutcome::of_status(response.status())
            }
            Err(DownstreamError::Timeout(_)) => CallOutcome::Timeout,
            Err(DownstreamError::Unavailable(..)) => CallOutcome::Unavailable,
            Err(DownstreamError::CircuitOpen(..)) => CallOutcome::CircuitOpen,
            Err(DownstreamError::Overloaded(_)) => CallOutcome::Overloaded,
        };
        // A 4xx is the client's own mistake relayed, not a failed call: only server errors and calls that
        // got no answer mark the span failed.
        if outcome != CallOutcome::Success && outcome != CallOutcome::ClientError {
            span.record("otel.status_code", "error");
        }
        self.metrics.observe_call(self.name, outcome, started.elapsed());
        result
    }

    async fn send_guarded(
        &self,
        method: Method,
        path_and_query: &str,
        incoming: &HeaderMap,
        body: Option<Bytes>,
    ) -> Result<reqwest::Response, DownstreamError> {
        let repeatable = method == Method::GET || incoming.contains_key("idempotency-key");
        let attempt = || async {
            match self.send_once(method.clone(), path_and_query, incoming, body.clone()).await {
                Ok(response) if is_failure(response.status(), response.headers()) => Outcome::FailedWith(response),
                Ok(response) => Outcome::Answered(response),
                Err(error @ DownstreamError::Timeout(_)) => Outcome::TimedOut(error),
                Err(error) => Outcome::Error(error),
            }
        };
        self.guard
            .call(repeatable, attempt)
            .await
            .map_err(|refusal| DownstreamError::from_refusal(&self.guard, refusal))
    }

    async fn send_once(
        &self,
        method: Method,
        path_and_query: &str,
        incoming: &HeaderMap,
        body: Option<Bytes>,
    ) -> Result<reqwest::Response, DownstreamError> {
        // The trace context of this call, never the client's own `traceparent` (that one is the
        // parent of the gateway's request span, which is the parent of this call).
        let mut request = self
            .http
            .request(method, self.url(path_and_query))
            .timeout(self.timeout)
            .headers(crate::telemetry::trace_headers());
        for name in &FORWARDED {
            if let Some(value) = incoming.get(name) {
                request = request.header(name, value);
            }
        }
        if let Some(body) = body {
            request = request.body(body);
        }
        request.send().await.map_err(|error| self.classify(&error))
    }

    pub fn classify(&self, error: &reqwest::Error) -> DownstreamError {
        if error.is_timeout() {
            DownstreamError::Timeout(self.name)
        } else {
            DownstreamError::Unavailable(self.name, error.to_string())
        }
    }

    /// Sends the request and relays the service's status, JSON body and relevant headers as they are.
    pub async fn forward(
        &self,
        method: Method,
        path_and_query: &str,
        incoming: &HeaderMap,
        body: Option<Bytes>,
    ) -> Result<Response, ApiError> {
        let response = self.send(method, path_and_query, incoming, body).await?;
        relay(self, response).await
    }

    /// True when the service's own `/ready` says 200 within a second.
    pub async fn is_ready(&self) -> bool {
        let response = self.http.get(self.url("/ready")).timeout(Duration::from_secs(1)).send().await;
        response.is_ok_and(|response| response.status() == StatusCode::OK)
    }
}

/// Whether an answer counts against the service in the breaker (and is worth a retry): a 5xx,
/// except a 503 with Retry-After, which is the service shedding load on purpose (its password
/// hashing queue is full, say). That one is relayed as it is, and opening the breaker for the
/// whole service because one of its pools is busy would refuse everything else it could answer.
pub fn is_failure(status: StatusCode, headers: &HeaderMap) -> bool {
    status.is_server_error()
        && !(status == StatusCode::SERVICE_UNAVAILABLE && headers.contains_key(header::RETRY_AFTER))
}

pub async fn relay(downstream: &Downstream, response: reqwest::Response) -> Result<Response, ApiError> {
    let status = response.status();
    let headers = response.headers().clone();
    let body = response.bytes().await.map_err(|error| ApiError::from(downstream.classify(&error)))?;
    let mut relayed = Response::builder().status(status);
    for name in &RELAYED {
        if let Some(value) = headers.get(name) {
            relayed = relayed.header(name, value);
        }
    }
    relayed.body(Body::from(body)).map_err(ApiError::internal)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn load_shedding_with_retry_after_is_an_answer_and_other_5xx_are_failures() {
        let mut retry_after = HeaderMap::new();
        retry_after.insert(header::RETRY_AFTER, "1".parse().unwrap());
        assert!(!is_failure(StatusCode::SERVICE_UNAVAILABLE, &retry_after), "shed load: relayed, breaker untouched");
        assert!(is_failure(StatusCode::SERVICE_UNAVAILABLE, &HeaderMap::new()));
        assert!(is_failure(StatusCode::INTERNAL_SERVER_ERROR, &retry_after));
        assert!(is_failure(StatusCode::BAD_GATEWAY, &HeaderMap::new()));
        assert!(!is_failure(StatusCode::TOO_MANY_REQUESTS, &retry_after));
    }
}
