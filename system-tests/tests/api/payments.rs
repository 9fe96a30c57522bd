//! POST /payments through the gateway: every status it promises.
use std::time::Duration;

use serde_json::{Value, json};
use system_tests::{Overrides, Stack};

async fn pay(stack: &Stack, token: &str, order_id: &str, amount: f64, key: Option<&str>) -> reqwest::Response {
    stack.pay(token, order_id, &json!(amount), key).await
}

async fn processed_order(stack: &Stack, token: &str, product: &str, quantity: u32) -> String {
    let order_id = stack.order(token, product, quantity).await;
    stack.wait_for_status(token, &order_id, "processed", Duration::from_secs(20)).await;
    order_id
}

/// A processed order the payment-service has heard of as processed: it learns of orders from their events,
/// moments after `GET /orders/{id}` says processed. Until then a payment reads 404 (no event yet) or 409
/// (only `new-order` yet); once it knows, a wrong amount is refused with 422 and nothing is stored.
async fn payable_order(stack: &Stack, token: &str, product: &str, quantity: u32) -> String {
    let order_id = processed_order(stack, token, product, quantity).await;
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    loop {
        let status = pay(stack, token, &order_id, 0.01, None).await.status();
        if status == 422 {
            return order_id;
        }
        assert!(std::time::Instant::now() < deadline, "the payment-service never learnt of {order_id}: {status}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn the_amount_must_equal_the_order_total_to_the_cent() {
    let stack = Stack::start().await;
    let (_, token) = stack.customer().await;
    let order_id = payable_order(&stack, &token, "4", 1).await;
    assert_eq!(pay(&stack, &token, &order_id, 149.98, None).await.status(), 422);
    assert_eq!(pay(&stack, &token, &order_id, 150.0, None).await.status(), 422);
    assert_eq!(pay(&stack, &token, &order_id, 149.99, None).await.status(), 200);
}

#[tokio::test]
async fn someone_elses_or_an_unknown_order_is_404() {
    let stack = Stack::start().await;
    let (_, alice) = stack.customer().await;
    let (_, bob) = stack.customer().await;
    let order_id = payable_order(&stack, &alice, "4", 1).await;
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
    let order_id = payable_order(&stack, &token, "1", 2).await;
    let first = pay(&stack, &token, &order_id, 1799.98, Some("pay-key-1")).await;
    assert_eq!(first.status(), 402);
    let first: Value = first.json().await.unwrap();
    assert_eq!(first["status"], "DECLINED");
    assert!(first["reason"].as_str().is_some_and(|reason| !reason.is_empty()));
    let replay: Value = pay(&stack, &token, &order_id, 1799.98, Some("pay-key-1")).await.json().await.unwrap();
    assert_eq!(replay["paymentId"], first["paymentId"], "the same key replays the first result");
    assert_eq!(stack.order_status(&token, &order_id).await, "processed", "a declined order stays payable");
}

/// A stack whose payment-service hears of processed orders only when the test forwards their `order-processed`
/// events to it (from `order-processed`, where the order-service publishes them, to `held-order-processed`, where
/// this payment-service listens): its projection lags the order-service for as long as the test wants.
async fn stack_with_held_order_processed_events() -> Stack {
    let mut overrides = Overrides::default();
    overrides.payments.push(("KAFKA_TOPIC_ORDER_PROCESSED", "held-order-processed".to_owned()));
    Stack::start_with(overrides).await
}

/// Forwards the order's `order-processed` event(s) to the held topic, as the broker would have delivered them.
async fn release_order_processed(stack: &Stack, order_id: &str) {
    let brokers = system_tests::env("KAFKA_BROKERS");
    let records = system_tests::read_topic(&brokers, &stack.topic("order-processed"), Duration::from_secs(2)).await;
    let mut released = 0;
    for record in records.iter().filter(|record| record.key.as_deref() == Some(order_id)) {
        let held = stack.topic("held-order-processed");
        system_tests::produce(&brokers, &held, order_id, &record.raw, &record.headers).await;
        released += 1;
    }
    assert!(released > 0, "the order-service published order-processed for {order_id}");
}

/// POST /payments until the payment-service knows the order at all (its `new-order` event arrives moments after
/// the order is created): the first answer that is not 404.
async fn pay_once_known(stack: &Stack, token: &str, order_id: &str, amount: f64) -> reqwest::Response {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let response = stack.post("/payments", Some(token), &json!({"orderId": order_id, "amount": amount})).await;
        if response.status() != 404 || tokio::time::Instant::now() > deadline {
            return response;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn an_order_the_payment_service_does_not_know_as_processed_is_409_with_retry_after_until_it_does() {
    let stack = stack_with_held_order_processed_events().await;
    let (_, token) = stack.customer().await;
    let order_id = processed_order(&stack, &token, "4", 1).await;

    let early = pay_once_known(&stack, &token, &order_id, 149.99).await;
    assert_eq!(early.status(), 409);
    assert_eq!(early.headers()["retry-after"], "1");
    let body: Value = early.json().await.unwrap();
    assert!(body["message"].as_str().unwrap().contains("not processed yet"), "{body}");
    assert_eq!(stack.order_status(&token, &order_id).await, "processed", "a refused payment changes nothing");

    release_order_processed(&stack, &order_id).await;
    let paid = pay(&stack, &token, &order_id, 149.99, None).await;
    assert_eq!(paid.status(), 200, "payable once the payment-service knows it processed");
    stack.wait_for_status(&token, &order_id, "paid", Duration::from_secs(20)).await;
}

#[tokio::test]
async fn direct_grpc_payments_that_break_the_rules_are_refused_and_the_order_stays_unpaid() {
    use payment_service::proto::{PayRequest, payment_service_client::PaymentServiceClient};
    use tonic::Code;

    let stack = stack_with_held_order_processed_events().await;
    let (alice_id, alice) = stack.customer().await;
    let (_, bob) = stack.customer().await;
    let order_id = processed_order(&stack, &alice, "4", 1).await; // 149.99 EUR
    let mut grpc = PaymentServiceClient::connect(stack.payments.clone()).await.expect("the payment-service answers");
    let pay = |user_id: &str, order_id: &str, amount_cents: i64, key: &str, token: &str| {
        let mut request = tonic::Request::new(PayRequest {
            order_id: order_id.to_owned(),
            user_id: user_id.to_owned(),
            amount_cents,
            currency: "EUR".to_owned(),
            idempotency_key: key.to_owned(),
        });
        request.metadata_mut().insert("authorization", format!("Bearer {token}").parse().unwrap());
        request
    };

    // Known to the payment-service as pending only (its order-processed event is held back).
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    let pending = loop {
        let refused = grpc.pay(pay(&alice_id, &order_id, 14_999, "pending", &alice)).await.unwrap_err();
        if refused.code() != Code::NotFound || tokio::time::Instant::now() > deadline {
            break refused;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(pending.code(), Code::FailedPrecondition, "{pending:?}");

    release_order_processed(&stack, &order_id).await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    let one_cent = loop {
        let refused = grpc.pay(pay(&alice_id, &order_id, 1, "one-cent", &alice)).await.unwrap_err();
        if refused.code() != Code::FailedPrecondition || tokio::time::Instant::now() > deadline {
            break refused;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(one_cent.code(), Code::InvalidArgument, "one cent for 149.99: {one_cent:?}");
    let bob_id =
        stack.get("/users/me", Some(&bob)).await.json::<Value>().await.unwrap()["id"].as_str().unwrap().to_owned();
    let not_bobs = grpc.pay(pay(&bob_id, &order_id, 14_999, "bob", &bob)).await.unwrap_err();
    assert_eq!(not_bobs.code(), Code::NotFound, "someone else's order: {not_bobs:?}");
    let unknown = grpc.pay(pay(&alice_id, "no-such-order", 14_999, "unknown", &alice)).await.unwrap_err();
    assert_eq!(unknown.code(), Code::NotFound, "{unknown:?}");

    // Nothing was charged: no payment event for the order, and it stays processed.
    let brokers = system_tests::env("KAFKA_BROKERS");
    let events = system_tests::count_by_key(&brokers, &stack.topic("payment-processed"), Duration::from_secs(2)).await;
    assert_eq!(events.get(&order_id), None, "no payment event for a refused payment");
    assert_eq!(stack.order_status(&alice, &order_id).await, "processed");

    let paid =
        grpc.pay(pay(&alice_id, &order_id, 14_999, "right", &alice)).await.expect("the right payment").into_inner();
    assert!(!paid.payment_id.is_empty());
    stack.wait_for_status(&alice, &order_id, "paid", Duration::from_secs(20)).await;
}

#[tokio::test]
async fn a_retry_with_the_same_key_after_the_order_is_paid_replays_the_first_answer() {
    let stack = Stack::start().await;
    let (_, token) = stack.customer().await;
    let order_id = payable_order(&stack, &token, "4", 1).await;
    let first = pay(&stack, &token, &order_id, 149.99, Some("lost-answer")).await;
    assert_eq!(first.status(), 200);
    assert_eq!(first.headers()["idempotent-replayed"], "false");
    let first: Value = first.json().await.unwrap();
    stack.wait_for_status(&token, &order_id, "paid", Duration::from_secs(20)).await;

    let replay = pay(&stack, &token, &order_id, 149.99, Some("lost-answer")).await;
    assert_eq!(replay.status(), 200, "the client whose first answer was lost learns its payment");
    assert_eq!(replay.headers()["idempotent-replayed"], "true");
    let replay: Value = replay.json().await.unwrap();
    assert_eq!(replay["paymentId"], first["paymentId"]);

    let another = pay(&stack, &token, &order_id, 149.99, Some("another-key")).await;
    assert_eq!(another.status(), 409, "a new key for a paid order");
    assert!(another.headers().get("retry-after").is_none(), "paid is final: nothing to wait for");
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
