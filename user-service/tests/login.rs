mod support;

use serde_json::Value;

#[tokio::test]
async fn login_returns_a_token_and_the_user_without_any_password_hash() {
    let app = support::spawn(&[]).await;
    assert_eq!(app.register("grace", "grace@example.com", "long enough password").await.status(), 201);
    let response = app.login("  GRACE@example.com", "long enough password").await;
    assert_eq!(response.status(), 200);
    let text = response.text().await.unwrap();
    assert!(!text.contains("argon2"), "no hash in {text}");
    let body: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(body["success"], true);
    assert_eq!(body["message"], "Connexion réussie");
    assert_eq!(body["user"]["username"], "grace");
    assert_eq!(body["user"]["email"], "grace@example.com");
    assert_eq!(body["token"].as_str().unwrap().split('.').count(), 3);
}

#[tokio::test]
async fn unknown_email_and_wrong_password_give_the_same_401() {
    let app = support::spawn(&[]).await;
    assert_eq!(app.register("heidi", "heidi@example.com", "long enough password").await.status(), 201);
    let wrong_password = app.login("heidi@example.com", "wrong password!").await;
    let unknown_email = app.login("nobody@example.com", "long enough password").await;
    assert_eq!(wrong_password.status(), 401);
    assert_eq!(unknown_email.status(), 401);
    let a: Value = wrong_password.json().await.unwrap();
    let b: Value = unknown_email.json().await.unwrap();
    assert_eq!(a, b);
}

#[tokio::test]
async fn login_requires_both_fields_with_400() {
    let app = support::spawn(&[]).await;
    let response = app.post_json("/users/login", &serde_json::json!({ "email": "a@example.com" })).await;
    assert_eq!(response.status(), 400);
    let response = app.post_json("/users/login", &serde_json::json!({ "email": {"$gt": ""}, "password": "x" })).await;
    assert_eq!(response.status(), 400);
}

#[tokio::test]
async fn repeated_failures_lock_the_account_with_429_and_retry_after_but_not_other_accounts() {
    let app = support::spawn(&[("LOGIN_MAX_FAILURES_PER_ACCOUNT", "3")]).await;
    assert_eq!(app.register("ivan", "ivan@example.com", "long enough password").await.status(), 201);
    assert_eq!(app.register("judy", "judy@example.com", "long enough password").await.status(), 201);
    for _ in 0..3 {
        assert_eq!(app.login("ivan@example.com", "guess guess").await.status(), 401);
    }
    let locked = app.login("ivan@example.com", "long enough password").await;
    assert_eq!(locked.status(), 429, "even the right password waits out the lock");
    let retry_after: u64 = locked.headers()["retry-after"].to_str().unwrap().parse().unwrap();
    assert!(retry_after > 0);
    assert_eq!(
        app.login("judy@example.com", "long enough password").await.status(),
        200,
        "same address, other account"
    );
}

#[tokio::test]
async fn an_address_with_too_many_failures_is_throttled_loosely() {
    let app = support::spawn(&[("LOGIN_MAX_FAILURES_PER_ADDRESS", "5")]).await;
    for i in 0..5 {
        assert_eq!(app.login(&format!("ghost{i}@example.com"), "guess guess").await.status(), 401);
    }
    assert_eq!(app.login("ghost9@example.com", "guess guess").await.status(), 429);
    let other_address = app
        .client
        .post(app.url("/users/login"))
        .header("x-forwarded-for", "203.0.113.9")
        .json(&serde_json::json!({ "email": "ghost9@example.com", "password": "guess guess" }))
        .send()
        .await
        .unwrap();
    assert_eq!(other_address.status(), 401, "another client address is not affected");
}

#[tokio::test]
async fn the_admin_account_is_created_from_the_environment() {
    let app = support::spawn(&[("ADMIN_EMAIL", "root@example.com"), ("ADMIN_PASSWORD", "admin password")]).await;
    let login: Value = app.login("root@example.com", "admin password").await.json().await.unwrap();
    let token = login["token"].as_str().unwrap();
    let me: Value = app.client.get(app.url("/users/me")).bearer_auth(token).send().await.unwrap().json().await.unwrap();
    assert_eq!(me["role"], "admin");
}
