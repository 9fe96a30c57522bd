//! /users/* through the gateway: statuses and bodies pass through unchanged.
use serde_json::{Value, json};
use system_tests::Stack;

#[tokio::test]
async fn register_and_login_round_trip_through_the_gateway() {
    let stack = Stack::start().await;
    let response = stack
        .post(
            "/users/register",
            None,
            &json!({"username": "roundtrip", "email": "rt@example.com", "password": "password-123"}),
        )
        .await;
    assert_eq!(response.status(), 201);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["message"], "Utilisateur enregistré avec succès");
    let login = stack.post("/users/login", None, &json!({"email": "rt@example.com", "password": "password-123"})).await;
    assert_eq!(login.status(), 200);
    let login: Value = login.json().await.unwrap();
    assert_eq!(login["message"], "Connexion réussie");
    let token = login["token"].as_str().unwrap();
    let me: Value = stack.get("/users/me", Some(token)).await.json().await.unwrap();
    assert_eq!(me["email"], "rt@example.com");
    assert_eq!(me["role"], "customer");
}

#[tokio::test]
async fn errors_pass_through_with_their_status_and_body() {
    let stack = Stack::start().await;
    let invalid =
        stack.post("/users/register", None, &json!({"username": "x", "email": "nope", "password": "short"})).await;
    assert_eq!(invalid.status(), 400);
    let body: Value = invalid.json().await.unwrap();
    assert_eq!(body["success"], false);
    assert_eq!(body["errors"].as_array().unwrap().len(), 3);

    let injection = stack.post("/users/login", None, &json!({"email": {"$ne": null}, "password": {"$ne": null}})).await;
    assert_eq!(injection.status(), 400);

    let no_json = stack.client.post(stack.url("/users/register")).body("{}").send().await.unwrap();
    assert_eq!(no_json.status(), 415);

    stack.customer().await;
    let body = json!({"username": "dup", "email": "dup@example.com", "password": "password-123"});
    assert_eq!(stack.post("/users/register", None, &body).await.status(), 201);
    assert_eq!(stack.post("/users/register", None, &body).await.status(), 409);

    let wrong =
        stack.post("/users/login", None, &json!({"email": "dup@example.com", "password": "wrong-password"})).await;
    assert_eq!(wrong.status(), 401);
}

#[tokio::test]
async fn the_gateway_rejects_missing_and_forged_tokens_with_401() {
    let stack = Stack::start().await;
    assert_eq!(stack.get("/users/me", None).await.status(), 401);
    assert_eq!(stack.get("/users/me", Some("a.b.c")).await.status(), 401);
    let (_, token) = stack.customer().await;
    let mut parts: Vec<String> = token.split('.').map(str::to_owned).collect();
    parts[2] = parts[2].chars().rev().collect();
    assert_eq!(stack.get("/users/me", Some(&parts.join("."))).await.status(), 401);
    let none = format!("eyJhbGciOiJub25lIiwidHlwIjoiSldUIn0.{}.", token.split('.').nth(1).unwrap());
    assert_eq!(stack.get("/users/me", Some(&none)).await.status(), 401);
    assert_eq!(stack.get("/users/me", Some(&token)).await.status(), 200);
}

#[tokio::test]
async fn login_throttling_passes_through_as_429_with_retry_after() {
    let mut overrides = system_tests::Overrides::default();
    overrides.users.push(("LOGIN_MAX_FAILURES_PER_ACCOUNT_ADDRESS", "2".to_owned()));
    let stack = Stack::start_with(overrides).await;
    let body = json!({"email": "victim@example.com", "password": "guess-guess"});
    for _ in 0..2 {
        assert_eq!(stack.post("/users/login", None, &body).await.status(), 401);
    }
    let throttled = stack.post("/users/login", None, &body).await;
    assert_eq!(throttled.status(), 429);
    assert!(throttled.headers().contains_key("retry-after"));
}
