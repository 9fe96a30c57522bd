//! The admin account of ADMIN_EMAIL / ADMIN_USERNAME against a database that contradicts it.
use crate::support;

use std::time::Duration;

use serde_json::Value;

/// Update commands the service has sent (the admin seed is an upsert), whatever their outcome.
async fn updates_sent(app: &support::TestApp) -> f64 {
    let metrics = app.client.get(app.url("/metrics")).send().await.unwrap().text().await.unwrap();
    metrics
        .lines()
        .filter(|line| line.starts_with("mongodb_command_duration_seconds_count{command=\"update\""))
        .filter_map(|line| line.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

#[tokio::test]
async fn an_admin_username_held_by_another_email_makes_ready_name_the_conflict_without_retrying() {
    let database = support::unique_database();
    let first = support::spawn(&[("MONGODB_DATABASE", &database)]).await;
    assert_eq!(first.register("boss", "owner@example.com", "owner-password").await.status(), 201);
    first.stop().await;

    // ADMIN_EMAIL changed on an existing database: its username belongs to owner@example.com.
    let app = support::spawn_unready(&[
        ("MONGODB_DATABASE", &database),
        ("ADMIN_EMAIL", "new-admin@example.com"),
        ("ADMIN_PASSWORD", "admin-password"),
        ("ADMIN_USERNAME", "Boss"),
    ])
    .await;
    let mut ready = Value::Null;
    for _ in 0..300 {
        let response = app.client.get(app.url("/ready")).send().await.unwrap();
        let status = response.status();
        ready = response.json().await.unwrap();
        if ready["checks"]["adminSeed"] == "conflict" {
            assert_eq!(status, 503);
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(ready["checks"]["adminSeed"], "conflict", "{ready}");
    assert_eq!(ready["success"], false);
    let message = ready["message"].as_str().unwrap();
    assert!(message.contains("admin seed conflict") && message.contains("ADMIN_USERNAME \"Boss\""), "{message}");
    assert_eq!(ready["checks"]["mongodb"], "up", "the database is fine: only the configuration is wrong");

    // Not retried: no further upsert over several of the retry loop's backoff periods (100 ms, doubling).
    let sent = updates_sent(&app).await;
    assert!(sent >= 1.0, "the seed was attempted");
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    assert_eq!(updates_sent(&app).await, sent, "the conflicting seed is not attempted again");
    assert_eq!(app.client.get(app.url("/ready")).send().await.unwrap().status(), 503, "still named, still not ready");

    // Nobody was turned into the admin: the owner is still a customer, and the new email has no account.
    let login: Value = app.login("owner@example.com", "owner-password").await.json().await.unwrap();
    let token = login["token"].as_str().expect("the owner still logs in");
    let me: Value = app.client.get(app.url("/users/me")).bearer_auth(token).send().await.unwrap().json().await.unwrap();
    assert_eq!(me["role"], "customer");
    assert_eq!(app.login("new-admin@example.com", "admin-password").await.status(), 401);
    app.stop().await;
}

#[tokio::test]
async fn a_seeded_admin_shows_as_done_in_ready() {
    let app = support::spawn(&[("ADMIN_EMAIL", "root@example.com"), ("ADMIN_PASSWORD", "admin password")]).await;
    let ready: Value = app.client.get(app.url("/ready")).send().await.unwrap().json().await.unwrap();
    assert_eq!(ready["checks"]["adminSeed"], "done", "{ready}");
    app.stop().await;
}
