//! Logs and traces, the same in every service.
//!
//! Logs: `tracing` with timestamps, verbosity from RUST_LOG, JSON lines with LOG_FORMAT=json.
//! Traces: OpenTelemetry spans exported over OTLP/HTTP (http or https, rustls) when
//! OTEL_EXPORTER_OTLP_TRACES_ENDPOINT or OTEL_EXPORTER_OTLP_ENDPOINT is set (see `config::TracingConfig`);
//! without one no OpenTelemetry layer is installed at all, so tracing costs nothing. W3C trace
//! context (`traceparent`, `tracestate`) is read from incoming HTTP requests, gRPC metadata and Kafka
//! headers, kept with outbox events as a [`TraceContext`], and written on every outgoing call and
//! message, so one request is one trace across the services; spans carry `trace_id` into the log lines.
use http::HeaderMap;
use opentelemetry::{
    global,
    propagation::{Extractor, Injector},
    trace::{TraceContextExt as _, TracerProvider as _},
};
use opentelemetry_http::{HeaderExtractor, HeaderInjector};
use opentelemetry_otlp::{WithExportConfig as _, WithHttpConfig as _};
use opentelemetry_sdk::{Resource, propagation::TraceContextPropagator, trace::SdkTracerProvider};
use std::io::IsTerminal;
use tracing_opentelemetry::OpenTelemetrySpanExt as _;
use tracing_subscriber::{EnvFilter, Layer as _, fmt, prelude::*};

use crate::config::{LogFormat, TracingConfig};

/// Spans worth exporting: this system's own and the HTTP/gRPC layers', not every library's internals.
const TRACE_FILTER: &str = "info,h2=off,hyper=off,hyper_util=off,tower=off,reqwest=off,mongodb=off,rdkafka=off";

const TRACEPARENT: &str = "traceparent";
const TRACESTATE: &str = "tracestate";
/// The trace context headers, on HTTP requests and Kafka messages alike.
pub const TRACE_HEADERS: [&str; 2] = [TRACEPARENT, TRACESTATE];

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
    let provider = tracer_provider(tracing);
    let traces = provider.as_ref().map(|provider| {
        tracing_opentelemetry::layer()
            .with_tracer(provider.tracer(tracing.service_name.clone()))
            .with_filter(EnvFilter::new(TRACE_FILTER))
    });
    let _ = tracing_subscriber::registry().with(logs.with_filter(filter)).with(traces).try_init();
    Telemetry { provider }
}

/// The tracer provider exporting to `tracing.traces_url`, None when there is none or the exporter cannot be
/// built (then traces are off and the reason is printed: logs are not set up yet).
pub fn tracer_provider(tracing: &TracingConfig) -> Option<SdkTracerProvider> {
    tracing.traces_url.as_ref().and_then(|url| {
        let exporter = exporter(url, tracing)
            .inspect_err(|error| eprintln!("traces disabled: cannot build the OTLP exporter: {error:#}"))
            .ok()?;
        let attributes = tracing
            .resource_attributes
            .iter()
            .map(|(key, value)| opentelemetry::KeyValue::new(key.clone(), value.clone()));
        // builder_empty: the attributes come from platform::config (OTEL_RESOURCE_ATTRIBUTES, OTEL_SERVICE_NAME),
        // which checked them; the SDK's own detectors would read the same variables again, unchecked.
        let resource = Resource::builder_empty()
            .with_service_name(tracing.service_name.clone())
            .with_attributes(attributes)
            .build();
        Some(SdkTracerProvider::builder().with_batch_exporter(exporter).with_resource(resource).build())
    })
}

/// The OTLP/HTTP exporter to `url` (the full URL), with the configured headers and TLS roots.
fn exporter(url: &str, tracing: &TracingConfig) -> anyhow::Result<opentelemetry_otlp::SpanExporter> {
    // A blocking client runs its own runtime, which may be neither built nor dropped inside an async context
    // (services call `init` from theirs): built on a thread of its own.
    let roots = tracing.roots.clone();
    let client =
        std::thread::spawn(move || crate::tls::blocking_http_client(&roots)?.build().map_err(anyhow::Error::from))
            .join()
            .map_err(|_| anyhow::anyhow!("building the HTTP client panicked"))??;
    let headers = tracing.headers.iter().map(|(name, value)| (name.clone(), value.clone())).collect();
    Ok(opentelemetry_otlp::SpanExporter::builder()
        .with_http()
        .with_http_client(client)
        .with_endpoint(url)
        .with_headers(headers)
        .build()?)
}

/// Makes `span` a child of the trace context in `headers` (HTTP headers, or gRPC metadata, which are HTTP/2
/// headers), when there is one, and records its `trace_id` field for the logs. Call it before the span is
/// first entered.
pub fn continue_trace(span: &tracing::Span, headers: &HeaderMap) {
    let parent = global::get_text_map_propagator(|propagator| propagator.extract(&HeaderExtractor(headers)));
    set_parent(span, parent);
}

/// Like [`continue_trace`], from a trace context carried as text: stored with an outbox event, or read from
/// a Kafka message's headers.
pub fn continue_stored_trace(span: &tracing::Span, stored: &TraceContext) {
    let parent = global::get_text_map_propagator(|propagator| propagator.extract(stored));
    set_parent(span, parent);
}

fn set_parent(span: &tracing::Span, parent: opentelemetry::Context) {
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

/// Links `span` to the trace `linked` belongs to (a related trace, not its parent).
pub fn link_to(span: &tracing::Span, linked: &TraceContext) {
    let linked = global::get_text_map_propagator(|propagator| propagator.extract(linked));
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

/// A W3C trace context in its text form (`traceparent`, `tracestate`): what a Kafka message carries in
/// its headers, and what the outbox keeps with an event until the relay publishes it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TraceContext {
    pub traceparent: Option<String>,
    pub tracestate: Option<String>,
}

impl TraceContext {
    /// The context of `span`; empty when tracing is off (there is no trace to join then).
    pub fn of(span: &tracing::Span) -> Self {
        let context = span.context();
        let mut fields = Self::default();
        global::get_text_map_propagator(|propagator| propagator.inject_context(&context, &mut fields));
        fields
    }

    /// The context of the span the caller runs in.
    pub fn current() -> Self {
        Self::of(&tracing::Span::current())
    }

    /// The context in a message's `(name, value)` headers; other headers are ignored.
    pub fn from_headers<'a>(headers: impl IntoIterator<Item = (&'a str, &'a str)>) -> Self {
        let mut context = Self::default();
        for (name, value) in headers {
            context.set(name, value.to_owned());
        }
        context
    }

    /// The `(name, value)` headers to send, `tracestate` only when there is one.
    pub fn headers(&self) -> Vec<(&'static str, &str)> {
        let traceparent = self.traceparent.as_deref().map(|value| (TRACEPARENT, value));
        let tracestate = self.tracestate.as_deref().map(|value| (TRACESTATE, value));
        traceparent.into_iter().chain(tracestate).collect()
    }
}

impl Injector for TraceContext {
    fn set(&mut self, key: &str, value: String) {
        // The propagator writes an empty `tracestate` when there is none: not worth a header.
        let value = Some(value).filter(|value| !value.is_empty());
        match key {
            TRACEPARENT => self.traceparent = value,
            TRACESTATE => self.tracestate = value,
            _ => {}
        }
    }
}

impl Extractor for TraceContext {
    fn get(&self, key: &str) -> Option<&str> {
        match key {
            TRACEPARENT => self.traceparent.as_deref(),
            TRACESTATE => self.tracestate.as_deref(),
            _ => None,
        }
    }

    fn keys(&self) -> Vec<&str> {
        vec![TRACEPARENT, TRACESTATE]
    }
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

        let span_context = tracing::subscriber::with_default(subscriber, || {
            let span = tracing::info_span!("request", trace_id = tracing::field::Empty);
            continue_trace(&span, &headers);
            let _entered = span.enter();
            tracing::info!("handled");
            span.context().span().span_context().clone()
        });

        let line = String::from_utf8(logs.0.lock().expect("not poisoned").clone()).expect("UTF-8 logs");
        assert!(line.contains(&format!("\"trace_id\":\"{trace_id}\"")), "{line}");
        assert_eq!(span_context.trace_id().to_string(), trace_id, "the span joins the caller's trace");
        assert_ne!(span_context.span_id().to_string(), "00f067aa0ba902b7", "as a child of the caller's span");
    }

    #[test]
    fn without_tracing_there_is_no_context_to_pass_on() {
        let context = TraceContext::of(&tracing::info_span!("call"));
        assert_eq!(context, TraceContext::default());
        assert!(context.headers().is_empty());
    }

    #[test]
    fn a_stored_context_becomes_headers() {
        let context = TraceContext {
            traceparent: Some("00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01".into()),
            tracestate: None,
        };
        assert_eq!(context.headers(), [("traceparent", "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01")]);
        assert_eq!(context.get("traceparent"), context.traceparent.as_deref());
    }

    #[test]
    fn a_message_context_keeps_tracestate_and_ignores_other_headers() {
        let traceparent = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";
        let context = TraceContext::from_headers([
            ("event-id", "e-1"),
            ("traceparent", traceparent),
            ("tracestate", "congo=t61rcWkgMzE"),
        ]);
        assert_eq!(context.headers(), [("traceparent", traceparent), ("tracestate", "congo=t61rcWkgMzE")]);
    }

    #[test]
    fn outgoing_calls_continue_the_current_trace() {
        global::set_text_map_propagator(TraceContextPropagator::new());
        let provider = SdkTracerProvider::builder().build();
        let subscriber =
            tracing_subscriber::registry().with(tracing_opentelemetry::layer().with_tracer(provider.tracer("test")));
        let trace_id = "4bf92f3577b34da6a3ce929d0e0e4736";
        let mut headers = HeaderMap::new();
        headers.insert("traceparent", format!("00-{trace_id}-00f067aa0ba902b7-01").parse().expect("a header value"));
        let (outgoing, stored) = tracing::subscriber::with_default(subscriber, || {
            let span = tracing::info_span!("request", trace_id = tracing::field::Empty);
            continue_trace(&span, &headers);
            let _entered = span.enter();
            (trace_headers(), TraceContext::current())
        });
        let traceparent = outgoing["traceparent"].to_str().expect("ASCII");
        assert!(traceparent.starts_with(&format!("00-{trace_id}-")), "{traceparent}");
        assert!(!traceparent.contains("00f067aa0ba902b7"), "with this span as their parent: {traceparent}");
        assert_eq!(stored.traceparent.as_deref(), Some(traceparent));
    }
}
