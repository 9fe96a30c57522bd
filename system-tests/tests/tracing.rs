//! One order is one trace: the gateway's request, the order-service's request (a separate process
//! exporting with its own OTLP exporter), the outbox relay's `new-order` publication, the
//! consumer's work and the `order-processed` publication all share the trace id, parent by parent;
//! the payment is its own trace (its own request), joined by the payment-service over gRPC and by
//! the order-service's `payment-processed` consumer, which links back to the order's trace.
//!
//! Spans are captured by a test OTLP/HTTP receiver. The in-process services export through this
//! test's pipeline; the order-service process through its own exporter (OTEL_EXPORTER_OTLP_ENDPOINT).
//! Its own file: the tracing subscriber is global to the test process.
use std::{
    net::SocketAddr,
    sync::{Arc, Mutex},
    time::Duration,
};

use axum::{Router, body::Bytes, extract::State, routing::post};
use opentelemetry::trace::TracerProvider as _;
use opentelemetry_proto::tonic::{
    collector::trace::v1::ExportTraceServiceRequest, common::v1::any_value, trace::v1::span::SpanKind,
};
use opentelemetry_sdk::trace::SdkTracerProvider;
use prost::Message as _;
use serde_json::json;
use system_tests::{Overrides, Stack};
use tracing_subscriber::{EnvFilter, Layer as _, prelude::*};

#[derive(Debug, Clone)]
struct Captured {
    service: String,
    name: String,
    kind: i32,
    trace_id: String,
    span_id: String,
    parent_span_id: String,
    linked_trace_ids: Vec<String>,
    trace_state: String,
}

type Spans = Arc<Mutex<Vec<Captured>>>;

async fn receive(State(spans): State<Spans>, body: Bytes) -> &'static [u8] {
    let Ok(request) = ExportTraceServiceRequest::decode(body) else { return b"" };
    let mut captured = spans.lock().expect("not poisoned");
    for resource_spans in request.resource_spans {
        let service = resource_spans
            .resource
            .iter()
            .flat_map(|resource| &resource.attributes)
            .find(|attribute| attribute.key == "service.name")
            .and_then(|attribute| match attribute.value.as_ref()?.value.as_ref()? {
                any_value::Value::StringValue(name) => Some(name.clone()),
                _ => None,
            })
            .unwrap_or_default();
        for span in resource_spans.scope_spans.into_iter().flat_map(|scope| scope.spans) {
            captured.push(Captured {
                service: service.clone(),
                name: span.name,
                kind: span.kind,
                trace_id: hex(&span.trace_id),
                span_id: hex(&span.span_id),
                parent_span_id: hex(&span.parent_span_id),
                linked_trace_ids: span.links.iter().map(|link| hex(&link.trace_id)).collect(),
                trace_state: span.trace_state,
            });
        }
    }
    // An empty ExportTraceServiceResponse.
    b""
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|byte| format!("{byte:02x}")).collect()
}

async fn start_receiver() -> (String, Spans) {
    let spans: Spans = Arc::default();
    let listener = tokio::net::TcpListener::bind(SocketAddr::from(([127, 0, 0, 1], 0))).await.expect("bind");
    let address = listener.local_addr().expect("address");
    let app = Router::new().route("/v1/traces", post(receive)).with_state(spans.clone());
    tokio::spawn(async move { axum::serve(listener, app).await });
    (format!("http://{address}"), spans)
}

/// The in-process services' pipeline: their spans go to the receiver as service "in-process".
fn install_pipeline(endpoint: &str) -> SdkTracerProvider {
    // The services' own exporter (rustls, the configured URL and headers), as `telemetry::init` builds it.
    let tracing = platform::config::TracingConfig::exporting_to(&format!("{endpoint}/v1/traces"), "in-process");
    let provider = platform::telemetry::tracer_provider(&tracing).expect("an exporter");
    opentelemetry::global::set_text_map_propagator(opentelemetry_sdk::propagation::TraceContextPropagator::new());
    let layer = tracing_opentelemetry::layer()
        .with_tracer(provider.tracer("in-process"))
        .with_filter(EnvFilter::new("info,h2=off,hyper=off,tower=off,reqwest=off,mongodb=off,rdkafka=off"));
    tracing_subscriber::registry().with(layer).try_init().expect("the only subscriber of this test process");
    provider
}

/// A vendor's W3C `tracestate` the client sends with its `traceparent`: every hop must pass it on unchanged.
const TRACESTATE: &str = "vendor=opaque-42";

/// A W3C traceparent for a new trace the test chose, so its spans are easy to find.
fn traceparent() -> (String, String) {
    let trace_id = uuid::Uuid::new_v4().simple().to_string();
    let parent = &uuid::Uuid::new_v4().simple().to_string()[..16];
    (trace_id.clone(), format!("00-{trace_id}-{parent}-01"))
}

fn find<'a>(spans: &'a [Captured], trace_id: &str, service: &str, kind: SpanKind, name: &str) -> Option<&'a Captured> {
    spans.iter().find(|span| {
        span.trace_id == trace_id && span.service == service && span.kind == kind as i32 && span.name == name
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn one_order_is_one_trace_across_http_kafka_and_grpc() {
    let (endpoint, spans) = start_receiver().await;
    let provider = install_pipeline(&endpoint);
    let stack = Stack::start_with(Overrides {
        order_service_as_process: true,
        orders: vec![
            ("OTEL_EXPORTER_OTLP_ENDPOINT", endpoint.clone()),
            ("OTEL_SERVICE_NAME", "order-service".to_owned()),
        ],
        ..Overrides::default()
    })
    .await;
    let (_, token) = stack.customer().await;
    let new_order = stack.topic("new-order");
    let order_processed = stack.topic("order-processed");
    let payment_processed = stack.topic("payment-processed");

    // The order, in a trace the client started.
    let (order_trace, order_parent) = traceparent();
    let response = stack
        .client
        .post(stack.url("/orders"))
        .bearer_auth(&token)
        .header("traceparent", &order_parent)
        .header("tracestate", TRACESTATE)
        .json(&json!({ "productId": "2", "quantity": 1 }))
        .send()
        .await
        .expect("request sent");
    assert_eq!(response.status(), 201);
    let order_id = response.json::<serde_json::Value>().await.expect("json")["orderId"].as_str().unwrap().to_owned();
    stack.wait_for_status(&token, &order_id, "processed", Duration::from_secs(30)).await;

    // Its payment, in another trace (another request).
    let (payment_trace, payment_parent) = traceparent();
    let order =
        stack.get(&format!("/orders/{order_id}"), Some(&token)).await.json::<serde_json::Value>().await.unwrap();
    let response = stack
        .send_honouring_retry_after(|| {
            stack
                .client
                .post(stack.url("/payments"))
                .bearer_auth(&token)
                .header("traceparent", &payment_parent)
                .json(&json!({ "orderId": order_id, "amount": order["order"]["total"] }))
        })
        .await;
    assert_eq!(response.status(), 200, "{}", response.text().await.unwrap_or_default());
    stack.wait_for_status(&token, &order_id, "paid", Duration::from_secs(30)).await;

    // The order-service exports every few seconds; the in-process pipeline is flushed now.
    let flush = provider.clone();
    tokio::task::spawn_blocking(move || flush.force_flush()).await.expect("flush task").expect("flushed");
    let expected_order_service_spans = [
        (SpanKind::Server, "POST /orders".to_owned()),
        (SpanKind::Producer, format!("publish {new_order}")),
        (SpanKind::Consumer, format!("consume {new_order}")),
        (SpanKind::Producer, format!("publish {order_processed}")),
    ];
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let captured = spans.lock().unwrap().clone();
        let order_side = expected_order_service_spans
            .iter()
            .all(|(kind, name)| find(&captured, &order_trace, "order-service", *kind, name).is_some());
        let payment_side = find(
            &captured,
            &payment_trace,
            "order-service",
            SpanKind::Consumer,
            &format!("consume {payment_processed}"),
        )
        .is_some();
        if order_side && payment_side {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the order-service's spans did not all arrive: {:#?}",
            captured.iter().filter(|span| span.service == "order-service").collect::<Vec<_>>()
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let captured = spans.lock().unwrap().clone();
    let order_spans: Vec<&Captured> = captured.iter().filter(|span| span.trace_id == order_trace).collect();

    // gateway → order-service over HTTP: the order-service's request is a child of the gateway's call.
    let gateway_request = find(&captured, &order_trace, "in-process", SpanKind::Server, "POST /orders")
        .unwrap_or_else(|| panic!("the gateway's request span continues the client's trace: {order_spans:#?}"));
    let gateway_call = find(&captured, &order_trace, "in-process", SpanKind::Client, "POST order-service")
        .expect("the gateway's call to the order-service");
    assert_eq!(gateway_call.parent_span_id, gateway_request.span_id);
    let order_request = find(&captured, &order_trace, "order-service", SpanKind::Server, "POST /orders").unwrap();
    assert_eq!(order_request.parent_span_id, gateway_call.span_id, "traceparent crossed HTTP");

    // order-service → product-service for the price, in the same trace.
    assert!(
        order_spans.iter().any(|span| span.service == "in-process" && span.name == "POST /graphql"),
        "the product lookup joins the trace: {order_spans:#?}"
    );

    // request → outbox → relay → Kafka → consumer → outbox → relay.
    let publish_new_order =
        find(&captured, &order_trace, "order-service", SpanKind::Producer, &format!("publish {new_order}")).unwrap();
    assert_eq!(publish_new_order.parent_span_id, order_request.span_id, "the outbox kept the request's context");
    assert_eq!(order_request.trace_state, TRACESTATE, "tracestate crossed HTTP");
    assert_eq!(publish_new_order.trace_state, TRACESTATE, "the outbox kept the request's tracestate too");
    let consume_new_order =
        find(&captured, &order_trace, "order-service", SpanKind::Consumer, &format!("consume {new_order}")).unwrap();
    assert_eq!(consume_new_order.parent_span_id, publish_new_order.span_id, "traceparent crossed Kafka");
    let publish_processed =
        find(&captured, &order_trace, "order-service", SpanKind::Producer, &format!("publish {order_processed}"))
            .unwrap();
    assert_eq!(publish_processed.parent_span_id, consume_new_order.span_id);
    assert_eq!(publish_processed.trace_state, TRACESTATE, "tracestate crossed Kafka and the second outbox");

    // The payment: gateway → payment-service over gRPC, and its event back to the order-service,
    // which links the payment to the order's trace.
    let pay_call = find(&captured, &payment_trace, "in-process", SpanKind::Client, "payment.v1.PaymentService/Pay")
        .expect("the gateway's gRPC call");
    let pay_server = find(&captured, &payment_trace, "in-process", SpanKind::Server, "payment.v1.PaymentService/Pay")
        .unwrap_or_else(|| panic!("the payment-service joins over gRPC metadata: {captured:#?}"));
    assert_eq!(pay_server.parent_span_id, pay_call.span_id, "traceparent crossed gRPC");
    let consume_payment =
        find(&captured, &payment_trace, "order-service", SpanKind::Consumer, &format!("consume {payment_processed}"))
            .unwrap();
    assert!(consume_payment.linked_trace_ids.contains(&order_trace), "the payment links to its order's trace");

    stack.stop().await;
    let _ = tokio::task::spawn_blocking(move || provider.shutdown()).await;
}
