//! Edge behaviour of the gateway: request ids that travel everywhere, CORS.
use std::time::Duration;

use serde_json::{Value, json};
use system_tests::{Overrides, Stack};

#[tokio::test]
async fn the_request_id_travels_to_the_order_service_and_into_the_kafka_event() {
    let stack = Stack::start().await;
    let (_, token) = stack.customer().await;
    let request_id = format!("trace-{}", uuid::Uuid::new_v4().simple());
    let response = stack
        .client
        .post(stack.url("/orders"))
        .bearer_auth(&token)
        .header("x-request-id", &request_id)
        .json(&json!({"productId": "1", "quantity": 1}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 201);
    assert_eq!(response.headers()["x-request-id"], request_id.as_str(), "echoed to the client");
    let order_id = response.json::<Value>().await.unwrap()["orderId"].as_str().unwrap().to_owned();
    stack.wait_for_status(&token, &order_id, "processed", Duration::from_secs(20)).await;

    let brokers = system_tests::env("KAFKA_BROKERS");
    let events = system_tests::read_headers(&brokers, &stack.topic("new-order"), Duration::from_secs(3)).await;
    let (_, headers) = events.iter().find(|(key, _)| *key == order_id).expect("the new-order event");
    assert_eq!(headers.get("x-request-id"), Some(&request_id), "the Kafka header carries the request id");
    let processed = system_tests::read_headers(&brokers, &stack.topic("order-processed"), Duration::from_secs(3)).await;
    let (_, headers) = processed.iter().find(|(key, _)| *key == order_id).expect("the order-processed event");
    assert_eq!(headers.get("x-request-id"), Some(&request_id), "and so does the event the consumer wrote");
}

#[tokio::test]
async fn the_gateway_generates_a_request_id_when_the_client_sends_none() {
    let stack = Stack::start().await;
    let response = stack.get("/products/1", None).await;
    let id = response.headers()["x-request-id"].to_str().unwrap();
    assert_eq!(id.len(), 36, "a UUID: {id}");
}

#[tokio::test]
async fn cors_allows_configured_origins_only() {
    let mut overrides = Overrides::default();
    overrides.gateway.push(("CORS_ALLOWED_ORIGINS", "https://shop.example".to_owned()));
    let stack = Stack::start_with(overrides).await;
    let preflight = |origin: &'static str| {
        stack
            .client
            .request(reqwest::Method::OPTIONS, stack.url("/orders"))
            .header("origin", origin)
            .header("access-control-request-method", "POST")
            .header("access-control-request-headers", "authorization,content-type")
            .send()
    };
    let allowed = preflight("https://shop.example").await.unwrap();
    assert_eq!(allowed.headers()["access-control-allow-origin"], "https://shop.example");
    let refused = preflight("https://evil.example").await.unwrap();
    assert!(refused.headers().get("access-control-allow-origin").is_none());
}
