//! Logs and traces.
//!
//! Logs: `tracing` with timestamps, verbosity from RUST_LOG, JSON lines with LOG_FORMAT=json.
//! Traces: OpenTelemetry spans exported over OTLP/HTTP when OTEL_EXPORTER_OTLP_ENDPOINT is set;
//! without it no OpenTelemetry layer is installed at all, so tracing costs nothing. W3C trace
//! context (`traceparent`) is read from incoming requests (the gateway's and the order-service's) and
//! written on the one outgoing call, the JWKS fetch a token check may make, so one request is one trace
//! across the services; request spans carry `trace_id` into the log lines.
use axum::http::HeaderMap;
use opentelemetry::{global, trace::TraceContextExt as _, trace::TracerProvider as _};
use opentelemetry_http::{HeaderExtractor, HeaderInjector};
use opentelemetry_otlp::WithExportConfig as _;
use opentelemetry_sdk::{Resource, propagation::TraceContextPropagator, trace::SdkTracerProvider};
use std::io::IsTerminal;
use tracing_opentelemetry::OpenTelemetrySpanExt as _;
use tracing_subscriber::{EnvFilter, Layer as _, fmt, prelude::*};

use crate::config::{LogFormat, TracingConfig};

/// Spans worth exporting: this system's own and the HTTP/gRPC layers', not every library's internals.
const TRACE_FILTER: &str = "info,h2=off,hyper=off,hyper_util=off,tower=off,reqwest=off,mongodb=off,rdkafka=off";

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
            .with_endpoint(format!("{}/v1/traces", endpoint.0))
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

/// The current span's trace context as headers (`traceparent`, `tracestate`), for an outgoing call.
pub fn trace_headers() -> HeaderMap {
    let mut headers = HeaderMap::new();
    let context = tracing::Span::current().context();
    global::get_text_map_propagator(|propagator| {
        propagator.inject_context(&context, &mut HeaderInjector(&mut headers))
    });
    headers
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use super::*;

    /// A log destination the test can read.
    #[derive(Clone, Default)]
    struct Buffer(Arc<Mutex<Vec<u8>>>);

    impl std::io::Write for Buffer {
        fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
            self.0.lock().expect("not poisoned").extend_from_slice(bytes);
            Ok(bytes.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn a_request_span_continues_the_callers_trace_and_its_log_lines_carry_the_trace_id() {
        global::set_text_map_propagator(TraceContextPropagator::new());
        let provider = SdkTracerProvider::builder().build();
        let logs = Buffer::default();
        let writer = logs.clone();
        let subscriber = tracing_subscriber::registry()
            .with(tracing_opentelemetry::layer().with_tracer(provider.tracer("test")))
            .with(fmt::layer().json().with_current_span(true).with_writer(move || writer.clone()));
        let trace_id = "4bf92f3577b34da6a3ce929d0e0e4736";
        let mut headers = HeaderMap::new();
        headers.insert("traceparent", format!("00-{trace_id}-00f067aa0ba902b7-01").parse().expect("a header value"));

        let outgoing = tracing::subscriber::with_default(subscriber, || {
            let span = tracing::info_span!("request", trace_id = tracing::field::Empty);
            continue_trace(&span, &headers);
            let _entered = span.enter();
            tracing::info!("handled");
            trace_headers()
        });

        let line = String::from_utf8(logs.0.lock().expect("not poisoned").clone()).expect("UTF-8 logs");
        assert!(line.contains(&format!("\"trace_id\":\"{trace_id}\"")), "{line}");
        let traceparent = outgoing["traceparent"].to_str().expect("ASCII");
        assert!(
            traceparent.starts_with(&format!("00-{trace_id}-")),
            "outgoing calls continue the trace: {traceparent}"
        );
        assert!(!traceparent.contains("00f067aa0ba902b7"), "with this span as their parent: {traceparent}");
    }
}
