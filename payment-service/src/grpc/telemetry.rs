//! Every gRPC call observed in one place: a tower layer around the tonic server (gRPC metadata are HTTP/2
//! headers, so it sees them before any handler runs). It opens the call's server span, a child of the
//! caller's trace when the metadata carry `traceparent`, and once the status code is known it records it on
//! the span and counts and times the call by method and code. Health checks, reflection and calls that fail
//! before a handler runs (unknown method, undecodable message) are observed too.
//!
//! tonic sends a failed unary call as headers only (`grpc-status` in the headers); a successful one sends
//! its message and then `grpc-status` in the trailers, so the response body is watched for those.
use std::{
    future::Future,
    pin::Pin,
    sync::Arc,
    task::{Context, Poll, ready},
    time::Instant,
};

use bytes::Bytes;
use http_body::{Frame, SizeHint};
use tonic::{
    Code, Status,
    body::Body,
    codegen::http::{HeaderMap, Request, Response},
};
use tower::{Layer, Service};
use tracing::Instrument as _;

use crate::{grpc, metrics::Metrics, telemetry};

/// The calls this server answers (`<package>.<Service>/<Method>`). Anything else is labelled `unknown`, so a
/// client cannot grow the number of series or span names; a new RPC belongs here too.
const KNOWN_METHODS: &[&str] = &[
    "payment.v1.PaymentService/Pay",
    "payment.v1.PaymentService/GetPayment",
    "grpc.health.v1.Health/Check",
    "grpc.health.v1.Health/Watch",
    "grpc.reflection.v1.ServerReflection/ServerReflectionInfo",
    "grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo",
];

const UNKNOWN: &str = "unknown";

/// Wraps the gRPC server's routes; see the module documentation.
#[derive(Clone)]
pub struct RpcTelemetryLayer {
    metrics: Arc<Metrics>,
}

impl RpcTelemetryLayer {
    pub fn new(metrics: Arc<Metrics>) -> Self {
        Self { metrics }
    }
}

impl<S> Layer<S> for RpcTelemetryLayer {
    type Service = RpcTelemetry<S>;

    fn layer(&self, inner: S) -> Self::Service {
        RpcTelemetry { inner, metrics: self.metrics.clone() }
    }
}

#[derive(Clone)]
pub struct RpcTelemetry<S> {
    inner: S,
    metrics: Arc<Metrics>,
}

impl<S> Service<Request<Body>> for RpcTelemetry<S>
where
    S: Service<Request<Body>, Response = Response<Body>>,
    S::Future: Send + 'static,
{
    type Response = Response<ObservedBody>;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, S::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<Body>) -> Self::Future {
        let call = Call::start(request.uri().path(), request.headers(), self.metrics.clone());
        let span = call.span.clone();
        let response = span.in_scope(|| self.inner.call(request)).instrument(span);
        Box::pin(async move {
            let (parts, body) = response.await?.into_parts();
            let call = match header_code(&parts.headers) {
                Some(code) => {
                    call.finish(code);
                    None
                }
                None => Some(call),
            };
            Ok(Response::from_parts(parts, ObservedBody { inner: body, call }))
        })
    }
}

/// One call in progress: its span, and what its metrics need.
struct Call {
    method: &'static str,
    started: Instant,
    span: tracing::Span,
    metrics: Arc<Metrics>,
}

impl Call {
    fn start(path: &str, headers: &HeaderMap, metrics: Arc<Metrics>) -> Self {
        let full_name = known_method(path);
        let (service, method) = full_name.and_then(|name| name.split_once('/')).unwrap_or((UNKNOWN, UNKNOWN));
        let request_id = headers
            .get("x-request-id")
            .and_then(|value| value.to_str().ok())
            .filter(|value| grpc::is_sane_request_id(value))
            .unwrap_or("-");
        let span = tracing::info_span!(
            "rpc",
            otel.name = full_name.unwrap_or(UNKNOWN),
            otel.kind = "server",
            otel.status_code = tracing::field::Empty,
            rpc.system = "grpc",
            rpc.service = service,
            rpc.method = method,
            request_id,
            trace_id = tracing::field::Empty,
            rpc.grpc.status_code = tracing::field::Empty,
        );
        telemetry::continue_trace(&span, headers);
        Self { method, started: Instant::now(), span, metrics }
    }

    fn finish(self, code: Code) {
        self.span.record("rpc.grpc.status_code", code as i32);
        if is_server_error(code) {
            self.span.record("otel.status_code", "error");
        }
        self.metrics.observe_rpc(self.method, code, self.started.elapsed());
    }
}

/// The response body, passed through; it finishes the call when the status goes out in the trailers,
/// or as CANCELLED when the body is dropped before (the client went away).
pub struct ObservedBody {
    inner: Body,
    call: Option<Call>,
}

impl http_body::Body for ObservedBody {
    type Data = Bytes;
    type Error = Status;

    fn poll_frame(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, Status>>> {
        let this = self.get_mut();
        let frame = ready!(Pin::new(&mut this.inner).poll_frame(cx));
        let code = match &frame {
            Some(Ok(frame)) => frame.trailers_ref().map(|trailers| header_code(trailers).unwrap_or(Code::Unknown)),
            Some(Err(status)) => Some(status.code()),
            // Ended without a status: not something tonic does, and not a success either.
            None => Some(Code::Unknown),
        };
        if let Some(code) = code
            && let Some(call) = this.call.take()
        {
            call.finish(code);
        }
        Poll::Ready(frame)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

impl Drop for ObservedBody {
    fn drop(&mut self) {
        if let Some(call) = self.call.take() {
            call.finish(Code::Cancelled);
        }
    }
}

fn known_method(path: &str) -> Option<&'static str> {
    let name = path.strip_prefix('/')?;
    KNOWN_METHODS.iter().copied().find(|known| *known == name)
}

fn header_code(headers: &HeaderMap) -> Option<Code> {
    headers.get("grpc-status").map(|value| Code::from_bytes(value.as_bytes()))
}

/// The codes OpenTelemetry's gRPC conventions count as the server's fault (the others are the caller's).
fn is_server_error(code: Code) -> bool {
    matches!(
        code,
        Code::Unknown
            | Code::DeadlineExceeded
            | Code::Unimplemented
            | Code::Internal
            | Code::Unavailable
            | Code::DataLoss
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_methods_this_server_answers_become_labels() {
        assert_eq!(known_method("/payment.v1.PaymentService/Pay"), Some("payment.v1.PaymentService/Pay"));
        assert_eq!(known_method("/grpc.health.v1.Health/Check"), Some("grpc.health.v1.Health/Check"));
        assert_eq!(known_method("/payment.v1.PaymentService/Refund"), None);
        assert_eq!(known_method("payment.v1.PaymentService/Pay"), None);
    }

    #[test]
    fn the_status_is_read_from_grpc_status() {
        let mut headers = HeaderMap::new();
        assert_eq!(header_code(&headers), None);
        headers.insert("grpc-status", "3".parse().unwrap());
        assert_eq!(header_code(&headers), Some(Code::InvalidArgument));
        headers.insert("grpc-status", "0".parse().unwrap());
        assert_eq!(header_code(&headers), Some(Code::Ok));
    }
}
