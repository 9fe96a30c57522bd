//! /orders through the gateway: validation, ownership, idempotency, pagination, outages.
use std::time::Duration;

use serde_json::{Value, json};
use system_tests::{Overrides, Stack};

async fn post_order(stack: &Stack, token: &str, body: &Value, key: Option<&str>) -> reqwest::Response {
    let mut request = stack.client.post(stack.url("/orders")).bearer_auth(token).json(body);
    if let Some(key) = key {
        request = request.header("Idempotency-Key", key);
    }
    request.send().await.unwrap()
}

#[tokio::test]
async fn a_created_order_is_readable_at_once_with_its_price_snapshot() {
    let stack = Stack::start().await;
    let (user_id, token) = stack.customer().await;
    let response = post_order(&stack, &token, &json!({"productId": "3", "quantity": 3}), None).await;
    assert_eq!(response.status(), 201);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["success"], true);
    assert_eq!(body["message"], "Commande créée et envoyée pour traitement");
    let order_id = body["orderId"].as_str().unwrap();

    let order: Value = stack.get(&format!("/orders/{order_id}"), Some(&token)).await.json().await.unwrap();
    let order = &order["order"];
    assert!(matches!(order["status"].as_str(), Some("pending" | "processed")), "read-your-writes: {order}");
    assert_eq!(order["userId"], user_id.as_str());
    assert_eq!(order["productId"], "3");
    assert_eq!(order["productName"], "Tablette");
    assert_eq!(order["quantity"], 3);
    assert_eq!(order["unitPrice"], 499.99);
    assert_eq!(order["total"], 1499.97);
    for field in ["createdAt", "updatedAt"] {
        assert!(order[field].is_string());
    }
    stack.wait_for_status(&token, order_id, "processed", Duration::from_secs(20)).await;
}

#[tokio::test]
async fn invalid_orders_get_400_401_403_and_422() {
    let stack = Stack::start().await;
    let (_, token) = stack.customer().await;
    for quantity in [json!(0), json!(101), json!(2.5), json!("2"), json!(-1), json!(null)] {
        let response = post_order(&stack, &token, &json!({"productId": "1", "quantity": quantity}), None).await;
        assert_eq!(response.status(), 400, "quantity {quantity}");
    }
    for body in [
        json!({"quantity": 1}),
        json!({"productId": {"$ne": null}, "quantity": 1}),
        json!({"productId": "1", "quantity": 1, "extra": 1}),
    ] {
        assert_eq!(post_order(&stack, &token, &body, None).await.status(), 400, "{body}");
    }
    let unknown = post_order(&stack, &token, &json!({"productId": "999", "quantity": 1}), None).await;
    assert_eq!(unknown.status(), 422);
    let other_user =
        post_order(&stack, &token, &json!({"productId": "1", "quantity": 1, "userId": "someone-else"}), None).await;
    assert_eq!(other_user.status(), 403);
    let anonymous = stack.post("/orders", None, &json!({"productId": "1", "quantity": 1})).await;
    assert_eq!(anonymous.status(), 401);
    assert_eq!(stack.get("/orders", None).await.status(), 401);
}

#[tokio::test]
async fn an_idempotency_key_replays_the_first_response_and_creates_nothing_new() {
    let stack = Stack::start().await;
    let (_, token) = stack.customer().await;
    let body = json!({"productId": "2", "quantity": 1});
    let first: Value = post_order(&stack, &token, &body, Some("key-1")).await.json().await.unwrap();
    let second = post_order(&stack, &token, &body, Some("key-1")).await;
    assert_eq!(second.status(), 201);
    let second: Value = second.json().await.unwrap();
    assert_eq!(first["orderId"], second["orderId"]);
    let list: Value = stack.get("/orders", Some(&token)).await.json().await.unwrap();
    assert_eq!(list["orders"].as_array().unwrap().len(), 1);

    let reused = post_order(&stack, &token, &json!({"productId": "2", "quantity": 2}), Some("key-1")).await;
    assert_eq!(reused.status(), 422, "same key, different request");
    let (_, other) = stack.customer().await;
    let other_user: Value = post_order(&stack, &other, &body, Some("key-1")).await.json().await.unwrap();
    assert_ne!(other_user["orderId"], first["orderId"], "keys are scoped per user");
}

#[tokio::test]
async fn concurrent_retries_with_one_key_create_one_order() {
    let stack = Stack::start().await;
    let (_, token) = stack.customer().await;
    let body = json!({"productId": "1", "quantity": 1});
    let attempts = (0..5).map(|_| post_order(&stack, &token, &body, Some("same-key")));
    let responses = futures::future::join_all(attempts).await;
    let mut ids = Vec::new();
    for response in responses {
        assert_eq!(response.status(), 201);
        let body: Value = response.json().await.unwrap();
        ids.push(body["orderId"].as_str().unwrap().to_owned());
    }
    ids.dedup();
    assert_eq!(ids.len(), 1, "{ids:?}");
}

#[tokio::test]
async fn customers_see_only_their_orders_and_admins_see_all() {
    let stack = Stack::start().await;
    let (_, alice) = stack.customer().await;
    let (_, bob) = stack.customer().await;
    let alices = stack.order(&alice, "1", 1).await;
    let bobs = stack.order(&bob, "2", 1).await;
    assert_eq!(stack.get(&format!("/orders/{bobs}"), Some(&alice)).await.status(), 404);
    assert_eq!(stack.get("/orders/does-not-exist", Some(&alice)).await.status(), 404);
    let list: Value = stack.get("/orders", Some(&alice)).await.json().await.unwrap();
    let ids: Vec<&str> = list["orders"].as_array().unwrap().iter().map(|o| o["id"].as_str().unwrap()).collect();
    assert_eq!(ids, [alices.as_str()]);
    let (_, admin) = stack.admin().await;
    assert_eq!(stack.get(&format!("/orders/{bobs}"), Some(&admin)).await.status(), 200);
    let all: Value = stack.get("/orders?limit=100", Some(&admin)).await.json().await.unwrap();
    assert!(all["orders"].as_array().unwrap().len() >= 2);
}

#[tokio::test]
async fn orders_are_listed_newest_first_in_pages() {
    let stack = Stack::start().await;
    let (_, token) = stack.customer().await;
    let mut ids = Vec::new();
    for _ in 0..3 {
        ids.push(stack.order(&token, "4", 1).await);
    }
    let page: Value = stack.get("/orders?limit=2", Some(&token)).await.json().await.unwrap();
    let first: Vec<&str> = page["orders"].as_array().unwrap().iter().map(|o| o["id"].as_str().unwrap()).collect();
    assert_eq!(first, [ids[2].as_str(), ids[1].as_str()]);
    let cursor = page["nextCursor"].as_str().unwrap();
    let rest: Value = stack.get(&format!("/orders?limit=2&before={cursor}"), Some(&token)).await.json().await.unwrap();
    let rest: Vec<&str> = rest["orders"].as_array().unwrap().iter().map(|o| o["id"].as_str().unwrap()).collect();
    assert_eq!(rest, [ids[0].as_str()]);
    assert_eq!(stack.get("/orders?limit=0", Some(&token)).await.status(), 400);
    assert_eq!(stack.get("/orders?limit=abc", Some(&token)).await.status(), 400);
}

#[tokio::test]
async fn orders_answer_503_while_the_product_service_is_unreachable() {
    let mut overrides = Overrides::default();
    overrides.orders.push(("PRODUCT_SERVICE_URL", format!("http://127.0.0.1:{}", system_tests::closed_port())));
    let stack = Stack::start_with(overrides).await;
    let (_, token) = stack.customer().await;
    let response = post_order(&stack, &token, &json!({"productId": "1", "quantity": 1}), None).await;
    assert_eq!(response.status(), 503);
    assert!(response.headers().contains_key("retry-after"));
}
