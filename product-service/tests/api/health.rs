use crate::support;

use serde_json::{Value, json};
use support::{error_code, error_message, proxy::TcpProxy};

#[tokio::test]
async fn health_and_ready_answer_200_when_mongodb_is_up() {
    let app = support::spawn(&[]).await;
    let health = app.client.get(app.url("/health")).send().await.unwrap();
    assert_eq!(health.status(), 200);
    let body: Value = health.json().await.unwrap();
    assert_eq!(body["service"], "product-service");
    let (status, body) = app.ready().await;
    assert_eq!((status, &body["checks"]["mongodb"]), (200, &json!("up")));
}

#[tokio::test]
async fn ready_is_503_and_queries_are_service_unavailable_while_mongodb_is_unreachable() {
    let uri = test_support::unreachable_mongodb_uri();
    let app = support::spawn_unready(&[("MONGODB_URI", &uri), ("MONGODB_TIMEOUT_MS", "300")]).await;
    assert_eq!(app.assert_alive_but_not_ready("mongodb").await["success"], false);

    let body = app.graphql("{ products { id } }", json!({})).await;
    assert_eq!(error_code(&body), "SERVICE_UNAVAILABLE");
    assert_eq!(body["data"], Value::Null);
    let body = app.graphql(r#"{ product(id: "1") { id } }"#, json!({})).await;
    assert_eq!(error_code(&body), "SERVICE_UNAVAILABLE");
}

#[tokio::test]
async fn queries_are_service_unavailable_without_internals_when_mongodb_goes_away_after_startup() {
    let proxy = TcpProxy::start(support::proxy::engine_address()).await;
    let uri = proxy.mongodb_uri();
    let app =
        support::spawn(&[("MONGODB_URI", &uri), ("MONGODB_TIMEOUT_MS", "300"), ("PRODUCT_CACHE_TTL_MS", "0")]).await;
    assert_eq!(app.product_ids().await, ["1", "2", "3", "4"]);

    proxy.cut();
    let body = app.graphql("{ products { id } }", json!({})).await;
    assert_eq!(error_code(&body), "SERVICE_UNAVAILABLE");
    assert_eq!(error_message(&body), "Service temporarily unavailable");
    let text = body.to_string();
    assert!(!text.contains("127.0.0.1") && !text.to_lowercase().contains("server selection"), "{text}");
    let body = app.graphql_as_admin(r#"mutation { deleteProduct(id: "1") { id } }"#, json!({})).await;
    assert_eq!(error_code(&body), "SERVICE_UNAVAILABLE");
    let ready = app.client.get(app.url("/ready")).send().await.unwrap();
    assert_eq!(ready.status(), 503);
}

#[tokio::test]
async fn unknown_routes_and_methods_get_json_404_and_405() {
    let app = support::spawn(&[]).await;
    let response = app.client.get(app.url("/nope")).send().await.unwrap();
    assert_eq!(response.status(), 404);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["success"], false);
    assert_eq!(body["errors"][0]["extensions"]["code"], "NOT_FOUND");
    let response = app.client.delete(app.url("/graphql")).send().await.unwrap();
    assert_eq!(response.status(), 405);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["success"], false);
}

#[tokio::test]
async fn graphiql_is_served_on_get_graphql_with_a_relative_endpoint() {
    let app = support::spawn(&[]).await;
    let response = app.client.get(app.url("/graphql")).send().await.unwrap();
    assert_eq!(response.status(), 200);
    assert!(response.headers()["content-type"].to_str().unwrap().starts_with("text/html"));
    let page = response.text().await.unwrap();
    assert!(page.contains("graphiql"), "not a GraphiQL page");
    assert!(page.contains(r#""/graphql""#) || page.contains("'/graphql'"), "endpoint is not the relative /graphql");
}

#[tokio::test]
async fn every_response_carries_a_request_id_and_keeps_the_callers() {
    let app = support::spawn(&[]).await;
    let response = app.client.get(app.url("/health")).header("x-request-id", "abc-123").send().await.unwrap();
    assert_eq!(response.headers()["x-request-id"], "abc-123");
    let response =
        app.client.post(app.url("/graphql")).json(&json!({ "query": "{ __typename }" })).send().await.unwrap();
    assert!(!response.headers()["x-request-id"].is_empty());
}

#[tokio::test]
async fn graceful_shutdown_completes() {
    let app = support::spawn(&[]).await;
    app.stop().await;
}
