//! Logs and traces.
//!
//! Logs: `tracing` with timestamps, verbosity from RUST_LOG, JSON lines with LOG_FORMAT=json.
//! Traces: OpenTelemetry spans exported over OTLP/HTTP when OTEL_EXPORTER_OTLP_ENDPOINT is set;
//! without it no OpenTelemetry layer is installed at all, so tracing costs nothing. W3C trace
//! context (`traceparent`) comes in with HTTP requests and Kafka messages and goes out with
//! every call and event, so one order is one trace: request → outbox → `new-order` → consumer →
//! `order-processed`. Request and message spans carry `trace_id` into the log lines.
use std::collections::HashMap;
use std::io::IsTerminal;

use axum::http::HeaderMap;
use opentelemetry::{Context, global, trace::TraceContextExt as _, trace::TracerProvider as _};
use opentelemetry_http::{HeaderExtractor, HeaderInjector};
use opentelemetry_otlp::WithExportConfig as _;
use opentelemetry_sdk::{Resource, propagation::TraceContextPropagator, trace::SdkTracerProvider};
use tracing_opentelemetry::OpenTelemetrySpanExt as _;
use tracing_subscriber::{EnvFilter, Layer as _, fmt, prelude::*};

use crate::config::{LogFormat, TracingConfig};

/// Spans worth exporting: this system's own and the HTTP layer's, not every library's internals.
const TRACE_FILTER: &str = "info,h2=off,hyper=off,hyper_util=off,tower=off,reqwest=off,mongodb=off,rdkafka=off";

/// The trace context headers, on HTTP requests and Kafka messages alike.
pub const TRACE_HEADERS: [&str; 2] = ["traceparent", "tracestate"];

/// Keeps the trace exporter alive; `shutdown` sends the spans still buffered.
#[must_use = "dropping the guard without shutdown loses the last spans"]
pub struct Telemetry {
    provider: Option<SdkTracerProvider>,
}

impl Telemetry {
    /// Flushes and stops the exporter. Blocks (up to the exporter's timeout): call it off the executor.
    pub fn shutdown(self) {
        if let Some(provider) = self.provider
            && let Err(error) = provider.shutdown()
        {
            eprintln!("cannot flush the last spans: {error}");
        }
    }
}

/// Installs the global subscriber (a second call, as in tests, leaves the first in place) and,
/// when configured, the OTLP trace exporter.
pub fn init(format: LogFormat, tracing: &TracingConfig) -> Telemetry {
    global::set_text_map_propagator(TraceContextPropagator::new());
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let logs = match format {
        LogFormat::Json => fmt::layer().json().flatten_event(true).with_current_span(true).boxed(),
        // Colours only for a terminal: escape codes in a log file or collector are noise, and cost time.
        LogFormat::Text => fmt::layer().with_ansi(std::io::stdout().is_terminal()).boxed(),
    };
    let provider = tracing.otlp_endpoint.as_ref().and_then(|endpoint| {
        let exporter = opentelemetry_otlp::SpanExporter::builder()
            .with_http()
            .with_endpoint(format!("{endpoint}/v1/traces"))
            .build()
            .inspect_err(|error| eprintln!("traces disabled: cannot build the OTLP exporter: {error}"))
            .ok()?;
        Some(
            SdkTracerProvider::builder()
                .with_batch_exporter(exporter)
                .with_resource(Resource::builder().with_service_name(tracing.service_name.clone()).build())
                .build(),
        )
    });
    let traces = provider.as_ref().map(|provider| {
        tracing_opentelemetry::layer()
            .with_tracer(provider.tracer(tracing.service_name.clone()))
            .with_filter(EnvFilter::new(TRACE_FILTER))
    });
    let _ = tracing_subscriber::registry().with(logs.with_filter(filter)).with(traces).try_init();
    Telemetry { provider }
}

/// Makes `span` a child of the trace context in `headers` (when there is one) and records its
/// `trace_id` field for the logs. Call it before the span is first entered.
pub fn continue_trace(span: &tracing::Span, headers: &HeaderMap) {
    let parent = global::get_text_map_propagator(|propagator| propagator.extract(&HeaderExtractor(headers)));
    adopt(span, parent);
}

/// Like `continue_trace`, for context carried as text: Kafka headers or a stored `traceparent`.
pub fn continue_trace_from(span: &tracing::Span, carrier: &HashMap<String, String>) {
    let parent = global::get_text_map_propagator(|propagator| propagator.extract(carrier));
    adopt(span, parent);
}

fn adopt(span: &tracing::Span, parent: Context) {
    if parent.span().span_context().is_valid() {
        let _ = span.set_parent(parent);
    }
    record_trace_id(span);
}

/// Fills the span's `trace_id` field, when tracing is on.
pub fn record_trace_id(span: &tracing::Span) {
    let context = span.context();
    let span_context = context.span().span_context().clone();
    if span_context.is_valid() {
        span.record("trace_id", tracing::field::display(span_context.trace_id()));
    }
}

/// True when `span` belongs to a trace (tracing is on): work done only for traces can be skipped otherwise.
pub fn is_traced(span: &tracing::Span) -> bool {
    span.context().span().span_context().is_valid()
}

/// Links `span` to the trace whose context `carrier` holds (a related trace, not its parent).
pub fn link_to(span: &tracing::Span, carrier: &HashMap<String, String>) {
    let linked = global::get_text_map_propagator(|propagator| propagator.extract(carrier));
    let linked = linked.span().span_context().clone();
    if linked.is_valid() {
        span.add_link(linked);
    }
}

/// The current span's trace context as headers, for an outgoing HTTP call.
pub fn trace_headers() -> HeaderMap {
    let mut headers = HeaderMap::new();
    let context = tracing::Span::current().context();
    global::get_text_map_propagator(|propagator| {
        propagator.inject_context(&context, &mut HeaderInjector(&mut headers))
    });
    headers
}

/// The current span's trace context as text (`traceparent` → value), to store with an outbox
/// event or send as Kafka headers; empty when tracing is off.
pub fn trace_context() -> HashMap<String, String> {
    let mut carrier = HashMap::new();
    let context = tracing::Span::current().context();
    global::get_text_map_propagator(|propagator| propagator.inject_context(&context, &mut carrier));
    carrier
}
