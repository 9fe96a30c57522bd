//! The gateway's GET /metrics: requests by route and status, calls to each service by outcome,
//! and the state of each circuit breaker, moving with the traffic.
use system_tests::{Overrides, Stack, closed_port};
use test_support::prometheus::sample;

async fn scrape(stack: &Stack) -> String {
    let response = stack.get("/metrics", None).await;
    assert_eq!(response.status(), 200);
    assert!(response.headers()["content-type"].to_str().unwrap_or_default().starts_with("text/plain; version=0.0.4"));
    response.text().await.expect("a body")
}

#[tokio::test]
async fn gateway_metrics_count_requests_and_downstream_calls() {
    let stack = Stack::start().await;
    let before = scrape(&stack).await;
    for _ in 0..3 {
        assert_eq!(stack.get("/products/1", None).await.status(), 200);
    }
    assert_eq!(stack.get("/products/999999", None).await.status(), 404);
    assert_eq!(stack.get("/orders", None).await.status(), 401);

    let after = scrape(&stack).await;
    let moved = |name: &str, labels: &[(&str, &str)]| sample(&after, name, labels) - sample(&before, name, labels);
    let ok = [("method", "GET"), ("route", "/products/{id}"), ("status", "200")];
    assert_eq!(moved("http_server_requests_total", &ok), 3.0, "{after}");
    assert_eq!(moved("http_server_request_duration_seconds_count", &ok), 3.0);
    let missing = [("method", "GET"), ("route", "/products/{id}"), ("status", "404")];
    assert_eq!(moved("http_server_requests_total", &missing), 1.0);
    let refused = [("route", "/orders"), ("status", "401")];
    assert_eq!(moved("http_server_requests_total", &refused), 1.0, "refused at the edge");
    // Four product reads reached the product-service (a GraphQL answer for a missing product is a success).
    let products = [("service", "product-service"), ("outcome", "success")];
    assert_eq!(moved("downstream_requests_total", &products), 4.0);
    assert_eq!(moved("downstream_request_duration_seconds_count", &[("service", "product-service")]), 4.0);
    assert_eq!(moved("downstream_requests_total", &[("service", "order-service")]), 0.0, "the 401 never left");
    for service in ["user-service", "product-service", "order-service", "payment-service"] {
        assert_eq!(sample(&after, "circuit_breaker_open", &[("service", service)]), 0.0, "{service}");
        assert!(after.contains(&format!("circuit_breaker_open{{service=\"{service}\"}} 0")), "{after}");
    }
    stack.stop().await;
}

#[tokio::test]
async fn gateway_metrics_show_an_unreachable_service_and_its_open_breaker() {
    let dead = format!("http://127.0.0.1:{}", closed_port());
    let stack = Stack::start_unready(Overrides {
        gateway: vec![
            ("ORDER_SERVICE_URL", dead),
            ("CIRCUIT_BREAKER_FAILURES", "2".to_owned()),
            ("DOWNSTREAM_RETRIES", "0".to_owned()),
        ],
        ..Overrides::default()
    })
    .await;
    let (_, token) = stack.customer_when_up().await;
    for _ in 0..2 {
        assert_eq!(stack.get("/orders", Some(&token)).await.status(), 503);
    }
    assert_eq!(stack.get("/orders", Some(&token)).await.status(), 503, "refused by the open breaker");

    let text = scrape(&stack).await;
    let orders = |outcome| [("service", "order-service"), ("outcome", outcome)];
    assert_eq!(sample(&text, "downstream_requests_total", &orders("unavailable")), 2.0, "{text}");
    assert_eq!(sample(&text, "downstream_requests_total", &orders("circuit_open")), 1.0);
    assert!(text.contains("circuit_breaker_open{service=\"order-service\"} 1"), "{text}");
    assert!(text.contains("circuit_breaker_open{service=\"product-service\"} 0"), "{text}");
    let unavailable = [("route", "/orders"), ("status", "503")];
    assert_eq!(sample(&text, "http_server_requests_total", &unavailable), 3.0);
    stack.stop().await;
}
