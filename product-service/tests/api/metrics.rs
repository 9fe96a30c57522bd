//! GET /metrics: Prometheus text with request counts by route template and status, and MongoDB command latency.
use crate::support;
use test_support::prometheus::{assert_mongodb_commands_timed, requests_between};

use serde_json::json;

#[tokio::test]
async fn metrics_count_requests_by_route_and_status() {
    let app = support::spawn(&[]).await;
    let before = app.metrics().await;

    app.graphql("{ products(first: 2) { id } }", json!({})).await;
    app.graphql(r#"query Named { product(id: "1") { id } }"#, json!({})).await;
    let malformed = app.client.post(app.url("/graphql")).header("content-type", "application/json").body("not json");
    assert_eq!(malformed.send().await.unwrap().status(), 400);
    assert_eq!(app.client.delete(app.url("/graphql")).send().await.unwrap().status(), 405);

    let after = app.metrics().await;
    let counted = |method, route, status| requests_between(&before, &after, method, route, status);
    assert_eq!(counted("POST", "/graphql", "200"), 2.0);
    assert_eq!(counted("POST", "/graphql", "400"), 1.0);
    assert_eq!(counted("DELETE", "/graphql", "405"), 1.0);
    app.assert_unmatched_requests_counted_without_their_path().await;
    app.stop().await;
}

#[tokio::test]
async fn metrics_show_mongodb_command_latency() {
    // No cache: the read below must reach the database.
    let app = support::spawn(&[("PRODUCT_CACHE_TTL_MS", "0")]).await;
    let added = app.add_product("Souris", 19.99, None).await;
    let body = app.graphql("query($id: ID!) { product(id: $id) { id } }", json!({ "id": added["id"] })).await;
    assert_eq!(body["data"]["product"]["id"], added["id"]);

    assert_mongodb_commands_timed(&app.metrics().await, &["insert", "find"]);
    app.stop().await;
}
