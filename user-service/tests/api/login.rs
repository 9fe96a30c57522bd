use crate::support;

use serde_json::Value;

/// The gateway's address in these tests: the user-service believes its X-Forwarded-For.
const GATEWAY: (&str, &str) = ("TRUSTED_PROXIES", "127.0.0.1/32");

/// Statuses of a concurrent burst, each 429 checked for its Retry-After.
async fn statuses(responses: Vec<reqwest::Response>) -> (usize, usize, Vec<u16>) {
    let mut unauthorized = 0;
    let mut throttled = 0;
    let mut others = Vec::new();
    for response in responses {
        match response.status().as_u16() {
            401 => unauthorized += 1,
            429 => {
                let retry_after: u64 = response.headers()["retry-after"].to_str().unwrap().parse().unwrap();
                assert!(retry_after > 0);
                throttled += 1;
            }
            other => others.push(other),
        }
    }
    (unauthorized, throttled, others)
}

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
    let app = support::spawn(&[("LOGIN_MAX_FAILURES_PER_ACCOUNT_ADDRESS", "3")]).await;
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
    let app = support::spawn(&[("LOGIN_MAX_FAILURES_PER_ADDRESS", "5"), GATEWAY]).await;
    for i in 0..5 {
        assert_eq!(app.login(&format!("ghost{i}@example.com"), "guess guess").await.status(), 401);
    }
    assert_eq!(app.login("ghost9@example.com", "guess guess").await.status(), 429);
    let other_address = app.login_from("203.0.113.9", "ghost9@example.com", "guess guess").await;
    assert_eq!(other_address.status(), 401, "another client address is not affected");
}

#[tokio::test]
async fn login_burst_of_100_wrong_passwords_verifies_at_most_10_and_answers_the_rest_429() {
    let app = support::spawn(&[]).await;
    assert_eq!(app.register("mallory", "mallory@example.com", "long enough password").await.status(), 201);
    let burst = (0..100).map(|i| app.login_from("198.51.100.7", "mallory@example.com", format!("guess number {i}")));
    let (unauthorized, throttled, others) = statuses(futures::future::join_all(burst).await).await;
    assert_eq!(others, Vec::<u16>::new());
    assert_eq!(unauthorized, 10, "only the per-account limit of guesses was verified");
    assert_eq!(throttled, 90);
}

#[tokio::test]
async fn a_guessing_address_does_not_lock_the_owner_out_from_another_address() {
    let app = support::spawn(&[GATEWAY]).await;
    assert_eq!(app.register("oscar", "oscar@example.com", "long enough password").await.status(), 201);
    let burst = (0..100).map(|i| app.login_from("198.51.100.7", "oscar@example.com", format!("guess number {i}")));
    let (unauthorized, throttled, others) = statuses(futures::future::join_all(burst).await).await;
    assert_eq!((unauthorized, throttled, others), (10, 90, vec![]));
    let attacker = app.login_from("198.51.100.7", "oscar@example.com", "long enough password").await;
    assert_eq!(attacker.status(), 429, "the guessing address waits, even with the right password");
    let owner = app.login_from("203.0.113.9", "OSCAR@example.com ", "long enough password").await;
    assert_eq!(owner.status(), 200, "the owner elsewhere logs in");
}

#[tokio::test]
async fn the_account_ceiling_stops_guesses_spread_over_many_addresses() {
    let app = support::spawn(&[GATEWAY, ("LOGIN_MAX_FAILURES_PER_ACCOUNT", "20")]).await;
    assert_eq!(app.register("peggy", "peggy@example.com", "long enough password").await.status(), 201);
    let burst = (0..100).map(|i| app.login_from(format!("192.0.2.{i}"), "peggy@example.com", "guess guess"));
    let (unauthorized, throttled, others) = statuses(futures::future::join_all(burst).await).await;
    assert_eq!((unauthorized, throttled, others), (20, 80, vec![]));
}

#[tokio::test]
async fn x_forwarded_for_from_an_untrusted_peer_is_ignored() {
    // No TRUSTED_PROXIES: every request counts against its TCP peer, whatever it claims.
    let app = support::spawn(&[("LOGIN_MAX_FAILURES_PER_ADDRESS", "5")]).await;
    let burst = (0..20).map(|i| app.login_from(format!("192.0.2.{i}"), format!("ghost{i}@example.com"), "guess"));
    let (unauthorized, throttled, others) = statuses(futures::future::join_all(burst).await).await;
    assert_eq!((unauthorized, throttled, others), (5, 15, vec![]));
}

#[tokio::test]
async fn the_admin_account_is_created_from_the_environment() {
    let app = support::spawn(&[("ADMIN_EMAIL", "root@example.com"), ("ADMIN_PASSWORD", "admin password")]).await;
    let login: Value = app.login("root@example.com", "admin password").await.json().await.unwrap();
    let token = login["token"].as_str().unwrap();
    let me: Value = app.client.get(app.url("/users/me")).bearer_auth(token).send().await.unwrap().json().await.unwrap();
    assert_eq!(me["role"], "admin");
}
