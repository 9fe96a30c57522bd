use crate::support;

use serde_json::{Value, json};

async fn field_errors(response: reqwest::Response) -> Vec<String> {
    assert_eq!(response.status(), 400);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["success"], false);
    body["errors"].as_array().expect("field errors").iter().map(|e| e["field"].as_str().unwrap().to_owned()).collect()
}

#[tokio::test]
async fn register_returns_201_with_the_new_user_id() {
    let app = support::spawn(&[]).await;
    let response = app.register("alice", "alice@example.com", "long enough password").await;
    assert_eq!(response.status(), 201);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["success"], true);
    assert_eq!(body["message"], "Utilisateur enregistré avec succès");
    assert!(!body["userId"].as_str().unwrap().is_empty());
    assert!(body.get("passwordHash").is_none());
}

#[tokio::test]
async fn register_rejects_each_invalid_field_with_400_and_field_errors() {
    let app = support::spawn(&[]).await;
    assert_eq!(field_errors(app.register("ab", "a@example.com", "password1").await).await, ["username"]);
    assert_eq!(field_errors(app.register(&"x".repeat(33), "a@example.com", "password1").await).await, ["username"]);
    assert_eq!(field_errors(app.register("bad name", "a@example.com", "password1").await).await, ["username"]);
    assert_eq!(field_errors(app.register("alice", "not-an-email", "password1").await).await, ["email"]);
    assert_eq!(field_errors(app.register("alice", "a@example.com", "short").await).await, ["password"]);
    assert_eq!(field_errors(app.register("alice", "a@example.com", &"p".repeat(129)).await).await, ["password"]);
    let all = field_errors(app.post_json("/users/register", &json!({})).await).await;
    assert_eq!(all, ["username", "email", "password"]);
}

#[tokio::test]
async fn register_stores_the_email_trimmed_and_lowercased() {
    let app = support::spawn(&[]).await;
    assert_eq!(app.register("bob", "  Bob@Example.COM ", "long enough password").await.status(), 201);
    assert_eq!(app.register("bob2", "bob@example.com", "long enough password").await.status(), 409);
    assert_eq!(app.login("bob@example.com", "long enough password").await.status(), 200);
}

#[tokio::test]
async fn register_rejects_unknown_fields_wrong_types_and_operator_objects_with_400() {
    let app = support::spawn(&[]).await;
    let bodies = [
        json!({ "username": "eve", "email": "eve@example.com", "password": "long enough", "role": "admin" }),
        json!({ "username": 42, "email": "eve@example.com", "password": "long enough" }),
        json!({ "username": "eve", "email": { "$ne": null }, "password": "long enough" }),
        json!({ "username": ["eve"], "email": "eve@example.com", "password": "long enough" }),
        json!([1, 2, 3]),
        json!("just a string"),
    ];
    for body in bodies {
        let response = app.post_json("/users/register", &body).await;
        assert_eq!(response.status(), 400, "{body}");
        let error: Value = response.json().await.unwrap();
        assert_eq!(error["success"], false);
    }
}

#[tokio::test]
async fn register_rejects_malformed_json_with_400_and_a_missing_json_content_type_with_415() {
    let app = support::spawn(&[]).await;
    let malformed = app
        .client
        .post(app.url("/users/register"))
        .header("content-type", "application/json")
        .body("{\"username\": ")
        .send()
        .await
        .unwrap();
    assert_eq!(malformed.status(), 400);
    let no_type = app.client.post(app.url("/users/register")).body("{}").send().await.unwrap();
    assert_eq!(no_type.status(), 415);
    let text = app.client.post(app.url("/users/register")).header("content-type", "text/plain").body("{}").send().await;
    assert_eq!(text.unwrap().status(), 415);
    let body: Value = no_type.json().await.unwrap();
    assert_eq!(body["success"], false);
}

#[tokio::test]
async fn register_rejects_an_oversized_body_with_413() {
    let app = support::spawn(&[]).await;
    let body = json!({ "username": "eve", "email": "eve@example.com", "password": "x".repeat(100_000) });
    assert_eq!(app.post_json("/users/register", &body).await.status(), 413);
}

#[tokio::test]
async fn register_rejects_duplicate_email_with_409() {
    let app = support::spawn(&[]).await;
    assert_eq!(app.register("carol", "carol@example.com", "long enough password").await.status(), 201);
    let response = app.register("carol2", "carol@example.com", "long enough password").await;
    assert_eq!(response.status(), 409);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["success"], false);
}

#[tokio::test]
async fn register_rejects_duplicate_username_in_any_case_with_409() {
    let app = support::spawn(&[]).await;
    assert_eq!(app.register("Dave", "dave@example.com", "long enough password").await.status(), 201);
    assert_eq!(app.register("dave", "dave2@example.com", "long enough password").await.status(), 409);
}

#[tokio::test]
async fn concurrent_registrations_of_one_email_give_exactly_one_201_and_the_rest_409() {
    let app = support::spawn(&[]).await;
    let attempts = (0..6).map(|i| app.register_owned(format!("racer{i}"), "race@example.com".into()));
    let statuses: Vec<u16> = futures::future::join_all(attempts).await;
    assert_eq!(statuses.iter().filter(|s| **s == 201).count(), 1, "{statuses:?}");
    assert_eq!(statuses.iter().filter(|s| **s == 409).count(), 5, "{statuses:?}");
}

trait RegisterOwned {
    async fn register_owned(&self, username: String, email: String) -> u16;
}

impl RegisterOwned for support::TestApp {
    async fn register_owned(&self, username: String, email: String) -> u16 {
        self.register(&username, &email, "long enough password").await.status().as_u16()
    }
}

trait RegisterResponse {
    async fn register_response(&self, username: String, email: String) -> reqwest::Response;
}

impl RegisterResponse for support::TestApp {
    async fn register_response(&self, username: String, email: String) -> reqwest::Response {
        self.register(&username, &email, "long enough password").await
    }
}

#[tokio::test]
async fn registered_users_survive_a_restart() {
    let first = support::spawn(&[]).await;
    let database = first.database.clone();
    assert_eq!(first.register("frank", "frank@example.com", "long enough password").await.status(), 201);
    first.stop().await;
    let second = support::spawn(&[("MONGODB_DATABASE", &database)]).await;
    assert_eq!(second.login("frank@example.com", "long enough password").await.status(), 200);
    assert_eq!(second.register("frank", "other@example.com", "long enough password").await.status(), 409);
}

#[tokio::test]
async fn a_registration_burst_from_one_address_is_throttled_with_429_and_retry_after() {
    let app = support::spawn(&[("REGISTRATION_MAX_PER_ADDRESS", "5")]).await;
    let burst = (0..20).map(|i| app.register_response(format!("burst{i}"), format!("burst{i}@example.com")));
    let responses = futures::future::join_all(burst).await;
    let created = responses.iter().filter(|r| r.status() == 201).count();
    let throttled: Vec<_> = responses.iter().filter(|r| r.status() == 429).collect();
    assert_eq!((created, throttled.len()), (5, 15));
    assert!(throttled.iter().all(|r| r.headers().contains_key("retry-after")));
}

#[tokio::test]
async fn duplicate_registrations_are_refused_before_hashing() {
    // One hashing thread and a queue of one: a burst that hashed would be shed with 503s.
    let app = support::spawn(&[
        ("PASSWORD_HASH_CONCURRENCY", "1"),
        ("PASSWORD_HASH_QUEUE_LIMIT", "1"),
        ("REGISTRATION_MAX_PER_ADDRESS", "1000"),
    ])
    .await;
    assert_eq!(app.register("trent", "trent@example.com", "long enough password").await.status(), 201);
    let burst = (0..50).map(|i| app.register_owned(format!("trent{i}"), "TRENT@example.com".into()));
    let statuses: Vec<u16> = futures::future::join_all(burst).await;
    assert!(statuses.iter().all(|status| *status == 409), "{statuses:?}");
}

#[tokio::test]
async fn a_full_hash_queue_answers_503_with_retry_after_and_counts_it() {
    let app = support::spawn(&[
        ("PASSWORD_HASH_CONCURRENCY", "1"),
        ("PASSWORD_HASH_QUEUE_LIMIT", "1"),
        ("REGISTRATION_MAX_PER_ADDRESS", "1000"),
    ])
    .await;
    let burst = (0..40).map(|i| app.register_response(format!("flood{i}"), format!("flood{i}@example.com")));
    let responses = futures::future::join_all(burst).await;
    let shed: Vec<_> = responses.iter().filter(|r| r.status() == 503).collect();
    let created = responses.iter().filter(|r| r.status() == 201).count();
    assert_eq!(created + shed.len(), 40, "every registration is created or shed");
    assert!(created >= 1 && !shed.is_empty(), "one thread and one queued hash cannot take 40 at once");
    assert!(shed.iter().all(|r| r.headers()["retry-after"] == "1"));
    let metrics = app.client.get(app.url("/metrics")).send().await.unwrap().text().await.unwrap();
    let counted = metrics
        .lines()
        .find_map(|line| line.strip_prefix("password_hash_jobs_dropped_total{reason=\"queue_full\"} "))
        .expect("the shed hashes are counted");
    assert_eq!(counted.parse::<usize>().unwrap(), shed.len());
}
