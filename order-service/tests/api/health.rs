use crate::support;

use serde_json::Value;

#[tokio::test]
async fn health_and_ready_answer_200_when_mongodb_and_kafka_are_up() {
    let app = support::settings().spawn().await;
    assert_eq!(app.client.get(app.url("/health")).send().await.unwrap().status(), 200);
    let body: Value = app.client.get(app.url("/ready")).send().await.unwrap().json().await.unwrap();
    assert_eq!(body["checks"]["mongodb"], "up");
    assert_eq!(body["checks"]["kafka"], "up");
}

#[tokio::test]
async fn ready_is_503_naming_kafka_while_no_broker_answers() {
    let brokers = format!("127.0.0.1:{}", support::closed_port());
    let app = support::settings().with("KAFKA_BROKERS", brokers).spawn_unready().await;
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    let body = app.assert_alive_but_not_ready("kafka").await;
    assert!(body["message"].as_str().unwrap().contains("kafka"));
}

#[tokio::test]
async fn ready_is_503_naming_mongodb_while_it_is_unreachable() {
    let uri = test_support::unreachable_mongodb_uri();
    let app = support::settings().with("MONGODB_URI", uri).with("MONGODB_TIMEOUT_MS", "300").spawn_unready().await;
    app.assert_alive_but_not_ready("mongodb").await;
}

#[tokio::test]
async fn order_routes_require_a_bearer_token() {
    let app = support::settings().spawn().await;
    for request in
        [app.client.get(app.url("/orders")), app.client.get(app.url("/orders/x")), app.client.post(app.url("/orders"))]
    {
        let response = request.send().await.unwrap();
        assert_eq!(response.status(), 401);
        let body: Value = response.json().await.unwrap();
        assert_eq!(body["success"], false);
    }
}

#[tokio::test]
async fn graceful_shutdown_stops_the_server_and_the_workers() {
    let app = support::settings().spawn().await;
    tokio::time::timeout(std::time::Duration::from_secs(20), app.stop()).await.expect("stops within 20 s");
}
