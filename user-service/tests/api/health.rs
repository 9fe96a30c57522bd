use crate::support;

#[tokio::test]
async fn health_and_ready_answer_200_when_mongodb_is_up() {
    let app = support::spawn(&[]).await;
    assert_eq!(app.client.get(app.url("/health")).send().await.unwrap().status(), 200);
    let (status, body) = app.ready().await;
    assert_eq!((status, body["checks"]["mongodb"].as_str()), (200, Some("up")));
}

#[tokio::test]
async fn ready_is_503_naming_mongodb_while_it_is_unreachable_and_the_process_stays_up() {
    let uri = test_support::unreachable_mongodb_uri();
    let app = support::spawn_unready(&[("MONGODB_URI", &uri), ("MONGODB_TIMEOUT_MS", "300")]).await;
    app.assert_alive_but_not_ready("mongodb").await;
    let register = app.register("alice", "alice@example.com", "long enough").await;
    assert_eq!(register.status(), 503);
    assert!(register.headers().contains_key("retry-after"));
}

#[tokio::test]
async fn unknown_routes_and_methods_get_json_404_and_405() {
    let app = support::spawn(&[]).await;
    let response = app.client.get(app.url("/nope")).send().await.unwrap();
    assert_eq!(response.status(), 404);
    let body: serde_json::Value = response.json().await.unwrap();
    assert_eq!(body["success"], false);
    let response = app.client.delete(app.url("/users/register")).send().await.unwrap();
    assert_eq!(response.status(), 405);
    let body: serde_json::Value = response.json().await.unwrap();
    assert_eq!(body["success"], false);
}

#[tokio::test]
async fn every_response_carries_a_request_id_and_keeps_the_callers() {
    let app = support::spawn(&[]).await;
    let response = app.client.get(app.url("/health")).header("x-request-id", "abc-123").send().await.unwrap();
    assert_eq!(response.headers()["x-request-id"], "abc-123");
    let response = app.client.get(app.url("/health")).send().await.unwrap();
    assert!(!response.headers()["x-request-id"].is_empty());
}

#[tokio::test]
async fn graceful_shutdown_completes() {
    let app = support::spawn(&[]).await;
    app.stop().await;
}
