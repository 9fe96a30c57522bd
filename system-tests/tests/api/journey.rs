//! The whole journey through the gateway: register → login → products → order → processed → pay → paid.
use std::time::Duration;

use serde_json::{Value, json};
use system_tests::Stack;

#[tokio::test]
async fn register_login_browse_order_pay_and_the_order_reads_paid() {
    let stack = Stack::start().await;
    let email = format!("journey-{}@example.com", uuid::Uuid::new_v4().simple());
    let registered = stack
        .post("/users/register", None, &json!({"username": "journey", "email": email, "password": "password-123"}))
        .await;
    assert_eq!(registered.status(), 201);
    let (_, token) = stack.login(&email, "password-123").await;

    let products: Value = stack.get("/products", None).await.json().await.unwrap();
    let smartphone = products["products"].as_array().unwrap().iter().find(|p| p["id"] == "1").unwrap().clone();
    assert_eq!(smartphone["name"], "Smartphone");
    assert_eq!(smartphone["price"], 899.99);

    let order_id = stack.order(&token, "1", 2).await;
    let order: Value = stack.get(&format!("/orders/{order_id}"), Some(&token)).await.json().await.unwrap();
    assert_eq!(order["order"]["total"], 1799.98);
    assert_eq!(order["order"]["productName"], "Smartphone");
    stack.wait_for_status(&token, &order_id, "processed", Duration::from_secs(20)).await;

    let paid = stack.pay(&token, &order_id, &json!(1799.98), None).await;
    assert_eq!(paid.status(), 200);
    let paid: Value = paid.json().await.unwrap();
    assert_eq!(paid["success"], true);
    assert_eq!(paid["message"], "Paiement traité avec succès");
    assert_eq!(paid["status"], "SUCCESS");
    assert!(paid["paymentId"].as_str().is_some_and(|id| !id.is_empty()));
    stack.wait_for_status(&token, &order_id, "paid", Duration::from_secs(20)).await;

    let again = stack.pay(&token, &order_id, &json!(1799.98), None).await;
    assert_eq!(again.status(), 409, "a paid order cannot be paid again");
    stack.stop().await;
}

#[tokio::test]
async fn the_gateway_is_ready_only_when_every_service_is() {
    let stack = Stack::start().await;
    let ready: Value = stack.get("/ready", None).await.json().await.unwrap();
    for service in ["user-service", "product-service", "order-service", "payment-service"] {
        assert_eq!(ready["checks"][service], "up", "{ready}");
    }
    stack.stop().await;

    let mut overrides = system_tests::Overrides::default();
    overrides.gateway.push(("PAYMENT_SERVICE_URL", format!("http://127.0.0.1:{}", system_tests::closed_port())));
    let stack = Stack::start_unready(overrides).await;
    let response = stack.get("/ready", None).await;
    assert_eq!(response.status(), 503);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["checks"]["payment-service"], "down");
    assert!(body["message"].as_str().unwrap().contains("payment-service"));
    assert_eq!(stack.get("/health", None).await.status(), 200);
}
