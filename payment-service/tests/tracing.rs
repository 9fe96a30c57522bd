//! W3C trace context from the caller's gRPC metadata to the `payment-processed` message.
//!
//! A file of its own: tracing needs the OpenTelemetry layer in the global subscriber, which is installed once
//! per process (each test file is a process).
#[path = "api/support/mod.rs"]
mod support;

use std::time::Duration;

use payment_service::{
    config::{LogFormat, TracingConfig},
    telemetry,
};
use support::{closed_port, kafka::EventReader};

const ARRIVAL: Duration = Duration::from_secs(30);

/// `(trace id, parent span id)` of a `traceparent` value (`00-<32 hex>-<16 hex>-<2 hex>`).
fn parse_traceparent(value: &str) -> (String, String) {
    let parts: Vec<&str> = value.split('-').collect();
    assert_eq!(parts.len(), 4, "not a traceparent: {value}");
    assert_eq!((parts[0], parts[1].len(), parts[2].len()), ("00", 32, 16), "not a traceparent: {value}");
    (parts[1].to_owned(), parts[2].to_owned())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pay_joins_the_callers_trace_and_the_event_carries_it() {
    // Tracing on, exporting to a port nobody listens on: export failures are only logged.
    let traces_url = format!("http://127.0.0.1:{}/v1/traces", closed_port());
    let config = TracingConfig::exporting_to(&traces_url, "payment-service-test");
    let telemetry = telemetry::init(LogFormat::Text, &config);

    let app = support::spawn(&[]).await;
    let (trace_id, caller_span) = ("4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7");
    let order = app.known_order("alice", 1_000).await;
    let mut request = support::with_token(
        support::pay_request(&order, "alice", 1_000, "key-1"),
        &app.issuer.token_for("alice", "customer"),
    );
    let traceparent = format!("00-{trace_id}-{caller_span}-01");
    request.metadata_mut().insert("traceparent", traceparent.parse().expect("ASCII metadata"));
    app.client().await.pay(request).await.expect("paid");

    let stored = app.stored_payments_for_order(&order).await;
    let stored = stored[0].get_str("traceparent").expect("the outbox keeps the call's trace context");
    let (stored_trace, pay_span) = parse_traceparent(stored);
    assert_eq!(stored_trace, trace_id, "the Pay call joined the caller's trace");
    assert_ne!(pay_span, caller_span, "the Pay call is a span of its own");

    let reader = EventReader::subscribe(&app.brokers, &app.topic);
    let events = reader.exactly(1, ARRIVAL, Duration::ZERO).await;
    let header = events[0].header("traceparent").expect("the message carries a traceparent header");
    let (event_trace, publish_span) = parse_traceparent(header);
    assert_eq!(event_trace, trace_id, "the event is in the caller's trace");
    assert_ne!(publish_span, caller_span, "the publication is a span of its own");
    assert_ne!(publish_span, pay_span, "the publication is a span of its own");
    assert_eq!(events[0].header("event-type"), Some("payment-processed"), "next to the existing headers");

    app.stop().await.expect("a clean stop");
    let _ = tokio::task::spawn_blocking(move || telemetry.shutdown()).await;
}
