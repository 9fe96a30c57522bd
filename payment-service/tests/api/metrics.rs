//! Prometheus metrics on the HTTP side port: gRPC calls, Kafka messages, the outbox backlog and MongoDB latency.
use crate::support;

use std::time::Duration;

const SETTLE: Duration = Duration::from_secs(5);
const ARRIVAL: Duration = Duration::from_secs(30);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_count_rpcs_by_method_and_code() {
    let app = support::spawn(&[]).await;
    let ok = [("method", "Pay"), ("code", "Ok")];
    let invalid = [("method", "Pay"), ("code", "InvalidArgument")];
    let (ok_before, invalid_before) =
        (app.metric("grpc_server_requests_total", &ok).await, app.metric("grpc_server_requests_total", &invalid).await);
    let timed_before = app.metric("grpc_server_request_duration_seconds_count", &[("method", "Pay")]).await;

    app.pay(&app.known_order("alice", 1_000).await, "alice", 1_000, "key-1").await.expect("paid");
    let error = app.pay(&app.known_order("alice", 0).await, "alice", 0, "key-2").await.unwrap_err();
    assert_eq!(error.code(), tonic::Code::InvalidArgument);

    let ok_after = app.wait_for_metric("grpc_server_requests_total", &ok, SETTLE, |value| value > ok_before).await;
    let invalid_after =
        app.wait_for_metric("grpc_server_requests_total", &invalid, SETTLE, |value| value > invalid_before).await;
    assert_eq!((ok_after - ok_before, invalid_after - invalid_before), (1.0, 1.0));
    let timed_after = app.metric("grpc_server_request_duration_seconds_count", &[("method", "Pay")]).await;
    assert_eq!(timed_after - timed_before, 2.0, "both calls are timed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_count_published_payment_events() {
    let app = support::spawn(&[]).await;
    let topic = [("topic", app.topic.as_str())];
    assert_eq!(app.metric("kafka_messages_produced_total", &topic).await, 0.0, "the series starts at 0");

    app.pay(&app.known_order("alice", 1_000).await, "alice", 1_000, "key-1").await.expect("paid");

    app.wait_for_metric("kafka_messages_produced_total", &topic, ARRIVAL, |value| value >= 1.0).await;
    app.wait_for_metric("outbox_backlog", &[], ARRIVAL, |value| value == 0.0).await;
    let failed = [("topic", app.topic.as_str()), ("stage", "produce")];
    assert_eq!(app.metric("kafka_messages_failed_total", &failed).await, 0.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_show_mongodb_command_latency() {
    let app = support::spawn(&[]).await;
    app.pay(&app.known_order("alice", 1_000).await, "alice", 1_000, "key-1").await.expect("paid");

    for command in ["insert", "find"] {
        let labels = [("command", command), ("outcome", "success")];
        app.wait_for_metric("mongodb_command_duration_seconds_count", &labels, SETTLE, |value| value >= 1.0).await;
    }
    let (_, text) = app.get_metrics_path("/metrics").await;
    assert!(text.contains("# TYPE mongodb_command_duration_seconds histogram"), "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_metrics_port_answers_404_in_json_for_anything_but_metrics() {
    let app = support::spawn(&[]).await;
    let (status, body) = app.get_metrics_path("/payments").await;
    assert_eq!(status, 404);
    let body: serde_json::Value = serde_json::from_str(&body).expect("a JSON body");
    assert_eq!(body["success"], false);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_outbox_backlog_counts_events_waiting_for_kafka() {
    let brokers = format!("127.0.0.1:{}", support::closed_port());
    let app = support::spawn(&[("KAFKA_BROKERS", &brokers)]).await;
    app.pay(&app.known_order("alice", 1_000).await, "alice", 1_000, "key-1").await.expect("paid without Kafka");
    app.pay(&app.known_order("alice", 1_000).await, "alice", 1_000, "key-2").await.expect("paid without Kafka");

    app.wait_for_metric("outbox_backlog", &[], ARRIVAL, |value| value == 2.0).await;
    assert_eq!(app.metric("kafka_messages_produced_total", &[("topic", app.topic.as_str())]).await, 0.0);
}
