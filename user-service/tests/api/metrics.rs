//! GET /metrics: Prometheus text with request counts by route template and status, and MongoDB command latency.
use crate::support;
use test_support::prometheus::{assert_mongodb_commands_timed, requests_between};

use serde_json::json;

#[tokio::test]
async fn metrics_count_requests_by_route_and_status() {
    let app = support::spawn(&[]).await;
    let before = app.metrics().await;

    let name = format!("m{}", &uuid::Uuid::new_v4().simple().to_string()[..12]);
    assert_eq!(app.register(&name, &format!("{name}@example.com"), "s3cret-password").await.status(), 201);
    assert_eq!(app.post_json("/users/register", &json!({})).await.status(), 400);
    assert_eq!(app.login(&format!("{name}@example.com"), "wrong-password").await.status(), 401);
    assert_eq!(app.client.get(app.url("/users/me")).send().await.unwrap().status(), 401);
    assert_eq!(app.client.delete(app.url("/users/me")).send().await.unwrap().status(), 405);

    let after = app.metrics().await;
    let counted = |method, route, status| requests_between(&before, &after, method, route, status);
    assert_eq!(counted("POST", "/users/register", "201"), 1.0);
    assert_eq!(counted("POST", "/users/register", "400"), 1.0);
    assert_eq!(counted("POST", "/users/login", "401"), 1.0);
    assert_eq!(counted("GET", "/users/me", "401"), 1.0);
    assert_eq!(counted("DELETE", "/users/me", "405"), 1.0);
    app.assert_unmatched_requests_counted_without_their_path().await;
    app.stop().await;
}

#[tokio::test]
async fn metrics_show_mongodb_command_latency() {
    let app = support::spawn(&[]).await;
    // Registering writes the user (insert); logging in reads it back (find).
    let (_email, _password, _token) = app.registered_token().await;

    assert_mongodb_commands_timed(&app.metrics().await, &["insert", "find"]);
    app.stop().await;
}
