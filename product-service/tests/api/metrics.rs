//! GET /metrics: Prometheus text with request counts by route template and status, and MongoDB command latency.
use crate::support;
use test_support::prometheus::sample;

use serde_json::json;

async fn scrape(app: &support::TestApp) -> String {
    let response = app.client.get(app.url("/metrics")).send().await.expect("request sent");
    assert_eq!(response.status(), 200);
    response.text().await.expect("a text body")
}

#[tokio::test]
async fn metrics_count_requests_by_route_and_status() {
    let app = support::spawn(&[]).await;
    let before = scrape(&app).await;

    app.graphql("{ products(first: 2) { id } }", json!({})).await;
    app.graphql(r#"query Named { product(id: "1") { id } }"#, json!({})).await;
    let malformed = app.client.post(app.url("/graphql")).header("content-type", "application/json").body("not json");
    assert_eq!(malformed.send().await.unwrap().status(), 400);
    assert_eq!(app.client.delete(app.url("/graphql")).send().await.unwrap().status(), 405);
    assert_eq!(app.client.get(app.url("/no/such/route")).send().await.unwrap().status(), 404);

    let response = app.client.get(app.url("/metrics")).send().await.expect("request sent");
    let content_type = response.headers()["content-type"].to_str().unwrap().to_owned();
    assert!(content_type.starts_with("text/plain") && content_type.contains("version=0.0.4"), "{content_type}");
    let after = response.text().await.unwrap();

    let counted = |method: &str, route: &str, status: &str| {
        let labels = [("method", method), ("route", route), ("status", status)];
        let requests = sample(&after, "http_server_requests_total", &labels)
            - sample(&before, "http_server_requests_total", &labels);
        let timed = sample(&after, "http_server_request_duration_seconds_count", &labels)
            - sample(&before, "http_server_request_duration_seconds_count", &labels);
        assert_eq!(requests, timed, "{method} {route} {status}: every counted request is also timed");
        requests
    };
    assert_eq!(counted("POST", "/graphql", "200"), 2.0);
    assert_eq!(counted("POST", "/graphql", "400"), 1.0);
    assert_eq!(counted("DELETE", "/graphql", "405"), 1.0);
    assert_eq!(counted("GET", "unmatched", "404"), 1.0);
    assert_eq!(counted("GET", "/metrics", "200"), 1.0, "the scrape before the requests");
    assert!(!after.contains("/no/such/route"), "raw paths never become label values");
    app.stop().await;
}

#[tokio::test]
async fn metrics_show_mongodb_command_latency() {
    // No cache: the read below must reach the database.
    let app = support::spawn(&[("PRODUCT_CACHE_TTL_MS", "0")]).await;
    let added = app.add_product("Souris", 19.99, None).await;
    let body = app.graphql("query($id: ID!) { product(id: $id) { id } }", json!({ "id": added["id"] })).await;
    assert_eq!(body["data"]["product"]["id"], added["id"]);

    let metrics = scrape(&app).await;
    for command in ["insert", "find"] {
        let labels = [("command", command), ("outcome", "success")];
        let count = sample(&metrics, "mongodb_command_duration_seconds_count", &labels);
        assert!(count > 0.0, "no successful {command} timed:\n{metrics}");
        assert!(sample(&metrics, "mongodb_command_duration_seconds_sum", &labels) > 0.0);
    }
    app.stop().await;
}
