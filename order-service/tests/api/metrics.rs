//! GET /metrics: the named series exist and move with the traffic.
use crate::support;

use std::time::Duration;

use order_service::domain::OrderStatus;
use support::sample;

async fn scrape(app: &support::TestApp) -> String {
    let response = app.client.get(app.url("/metrics")).send().await.expect("request sent");
    assert_eq!(response.status(), 200);
    let content_type = response.headers()["content-type"].to_str().unwrap_or_default().to_owned();
    assert!(content_type.starts_with("text/plain; version=0.0.4"), "{content_type}");
    response.text().await.expect("a body")
}

#[tokio::test]
async fn metrics_count_requests_by_route_template_and_status() {
    let app = support::settings().spawn().await;
    for _ in 0..2 {
        let response = app.client.get(app.url("/orders/0193a5c8-7d3e")).send().await.expect("request sent");
        assert_eq!(response.status(), 401);
    }
    let response = app.client.get(app.url("/no/such/route")).send().await.expect("request sent");
    assert_eq!(response.status(), 404);

    let text = scrape(&app).await;
    let by_template = [("method", "GET"), ("route", "/orders/{id}"), ("status", "401")];
    assert_eq!(sample(&text, "http_server_requests_total", &by_template), 2.0, "{text}");
    assert_eq!(sample(&text, "http_server_request_duration_seconds_count", &by_template), 2.0);
    let unmatched = [("route", "unmatched"), ("status", "404")];
    assert_eq!(sample(&text, "http_server_requests_total", &unmatched), 1.0);
    assert!(!text.contains("0193a5c8"), "raw paths never become label values");
    app.stop().await;
}

#[tokio::test]
async fn metrics_count_the_lifecycle_events_and_the_outbox_backlog() {
    let app = support::settings().spawn().await;
    let order = app.insert_pending_order("user-1").await;
    app.wait_for_status(std::slice::from_ref(&order.id), OrderStatus::Processed, Duration::from_secs(20)).await;
    app.wait_outbox_drained(Duration::from_secs(10)).await;

    let new_order = app.topic("new-order");
    let processed = app.topic("order-processed");
    // The consumer counts a message once its batch is finished, after the order is processed and announced.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    let text = loop {
        let text = scrape(&app).await;
        if sample(&text, "kafka_messages_consumed_total", &[("topic", &new_order)]) >= 1.0
            || tokio::time::Instant::now() > deadline
        {
            break text;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(sample(&text, "kafka_messages_produced_total", &[("topic", &new_order)]), 1.0, "{text}");
    assert_eq!(sample(&text, "kafka_messages_consumed_total", &[("topic", &new_order)]), 1.0);
    assert_eq!(sample(&text, "kafka_messages_produced_total", &[("topic", &processed)]), 1.0);
    assert_eq!(sample(&text, "kafka_messages_failed_total", &[]), 0.0);
    assert!(text.contains("\noutbox_backlog 0\n"), "{text}");
    let inserts = [("command", "insert"), ("outcome", "success")];
    assert!(sample(&text, "mongodb_command_duration_seconds_count", &inserts) >= 1.0, "{text}");
    assert!(sample(&text, "mongodb_command_duration_seconds_count", &[("command", "update")]) >= 1.0);

    // librdkafka reports the lag in its statistics every 5 s: once known, nothing is left to consume.
    let mut lag_reported = false;
    for _ in 0..40 {
        let text = scrape(&app).await;
        if text.lines().any(|line| line.starts_with("kafka_consumer_lag{") && line.contains(&new_order)) {
            assert_eq!(sample(&text, "kafka_consumer_lag", &[("topic", &new_order)]), 0.0, "{text}");
            lag_reported = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    assert!(lag_reported, "kafka_consumer_lag is reported for the new-order partitions");
    app.stop().await;
}

#[tokio::test]
async fn the_outbox_backlog_counts_orders_waiting_for_the_broker() {
    // A broker that never answers: events wait in the outbox.
    let app = support::settings()
        .with("KAFKA_BROKERS", format!("127.0.0.1:{}", support::closed_port()))
        .spawn_unready()
        .await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while !app.state.is_bootstrapped() {
        assert!(tokio::time::Instant::now() < deadline, "MongoDB bootstrap");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    app.insert_pending_order("user-1").await;
    app.insert_pending_order("user-2").await;
    let text = scrape(&app).await;
    assert!(text.contains("\noutbox_backlog 2\n"), "{text}");
    app.stop().await;
}
