//! POST /payments through the gateway: every status it promises.
use std::time::Duration;

use serde_json::{Value, json};
use system_tests::{Overrides, Stack};

async fn pay(stack: &Stack, token: &str, order_id: &str, amount: f64, key: Option<&str>) -> reqwest::Response {
    let mut request = stack
        .client
        .post(stack.url("/payments"))
        .bearer_auth(token)
        .json(&json!({"orderId": order_id, "amount": amount}));
    if let Some(key) = key {
        request = request.header("Idempotency-Key", key);
    }
    request.send().await.unwrap()
}

async fn processed_order(stack: &Stack, token: &str, product: &str, quantity: u32) -> String {
    let order_id = stack.order(token, product, quantity).await;
    stack.wait_for_status(token, &order_id, "processed", Duration::from_secs(20)).await;
    order_id
}

#[tokio::test]
async fn the_amount_must_equal_the_order_total_to_the_cent() {
    let stack = Stack::start().await;
    let (_, token) = stack.customer().await;
    let order_id = processed_order(&stack, &token, "4", 1).await;
    assert_eq!(pay(&stack, &token, &order_id, 149.98, None).await.status(), 422);
    assert_eq!(pay(&stack, &token, &order_id, 150.0, None).await.status(), 422);
    assert_eq!(pay(&stack, &token, &order_id, 149.99, None).await.status(), 200);
}

#[tokio::test]
async fn someone_elses_or_an_unknown_order_is_404() {
    let stack = Stack::start().await;
    let (_, alice) = stack.customer().await;
    let (_, bob) = stack.customer().await;
    let order_id = processed_order(&stack, &alice, "4", 1).await;
    assert_eq!(pay(&stack, &bob, &order_id, 149.99, None).await.status(), 404);
    assert_eq!(pay(&stack, &bob, "no-such-order", 149.99, None).await.status(), 404);
}

#[tokio::test]
async fn invalid_payment_requests_are_400_or_401() {
    let stack = Stack::start().await;
    let (_, token) = stack.customer().await;
    for body in [
        json!({"orderId": "x"}),
        json!({"amount": 1.0}),
        json!({"orderId": "x", "amount": -1.0}),
        json!({"orderId": "x", "amount": 1.001}),
        json!({"orderId": {"$ne": null}, "amount": 1.0}),
        json!({"orderId": "x", "amount": "1"}),
    ] {
        let response = stack.post("/payments", Some(&token), &body).await;
        assert_eq!(response.status(), 400, "{body}");
    }
    assert_eq!(stack.post("/payments", None, &json!({"orderId": "x", "amount": 1.0})).await.status(), 401);
}

#[tokio::test]
async fn a_declined_payment_is_402_with_the_reason_and_its_key_replays_it() {
    let mut overrides = Overrides::default();
    overrides.payments.push(("PAYMENT_DECLINE_ABOVE_CENTS", "100000".to_owned()));
    let stack = Stack::start_with(overrides).await;
    let (_, token) = stack.customer().await;
    let order_id = processed_order(&stack, &token, "1", 2).await;
    let first = pay(&stack, &token, &order_id, 1799.98, Some("pay-key-1")).await;
    assert_eq!(first.status(), 402);
    let first: Value = first.json().await.unwrap();
    assert_eq!(first["status"], "DECLINED");
    assert!(first["reason"].as_str().is_some_and(|reason| !reason.is_empty()));
    let replay: Value = pay(&stack, &token, &order_id, 1799.98, Some("pay-key-1")).await.json().await.unwrap();
    assert_eq!(replay["paymentId"], first["paymentId"], "the same key replays the first result");
    assert_eq!(stack.order_status(&token, &order_id).await, "processed", "a declined order stays payable");
}

#[tokio::test]
async fn a_pending_order_cannot_be_paid_yet() {
    // No broker: orders are accepted (outbox) but never processed.
    let mut overrides = Overrides::default();
    overrides.orders.push(("KAFKA_BROKERS", format!("127.0.0.1:{}", system_tests::closed_port())));
    let stack = Stack::start_unready(overrides).await;
    let (_, token) = stack.customer_when_up().await;
    let mut created = None;
    for _ in 0..100 {
        let response = stack.post("/orders", Some(&token), &json!({"productId": "4", "quantity": 1})).await;
        if response.status() == 201 {
            created = Some(response.json::<Value>().await.unwrap()["orderId"].as_str().unwrap().to_owned());
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let order_id = created.expect("orders are accepted without a broker");
    let response = pay(&stack, &token, &order_id, 149.99, None).await;
    assert_eq!(response.status(), 409);
    let body: Value = response.json().await.unwrap();
    assert!(body["message"].as_str().unwrap().contains("pending"));
}

#[tokio::test]
async fn payment_service_unreachable_is_503() {
    let mut overrides = Overrides::default();
    overrides.gateway.push(("PAYMENT_SERVICE_URL", format!("http://127.0.0.1:{}", system_tests::closed_port())));
    let stack = Stack::start_unready(overrides).await;
    let (_, token) = stack.customer_when_up().await;
    let order_id = processed_order(&stack, &token, "4", 1).await;
    let response = pay(&stack, &token, &order_id, 149.99, None).await;
    assert_eq!(response.status(), 503);
}

#[tokio::test]
async fn a_payment_service_that_does_not_answer_is_504_within_the_deadline() {
    // A frozen payment-service (as under SIGSTOP): the kernel accepts connections, nobody answers.
    let frozen = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let mut overrides = Overrides::default();
    overrides.gateway.push(("PAYMENT_SERVICE_URL", format!("http://{}", frozen.local_addr().unwrap())));
    overrides.gateway.push(("DOWNSTREAM_TIMEOUT_MS", "1000".to_owned()));
    let stack = Stack::start_unready(overrides).await;
    let (_, token) = stack.customer_when_up().await;
    let order_id = processed_order(&stack, &token, "4", 1).await;
    let started = std::time::Instant::now();
    let response = pay(&stack, &token, &order_id, 149.99, None).await;
    assert_eq!(response.status(), 504);
    assert!(started.elapsed() < Duration::from_secs(3), "answered within the deadline");
    drop(frozen);
}
