//! How the gateway's circuit breaker reads a downstream 503: load shed on purpose (with Retry-After)
//! is an answer, relayed as it is; a plain 503 is the service failing.
use crate::support;

use support::Mode;

#[tokio::test]
async fn shed_load_503s_with_retry_after_are_relayed_and_never_open_the_breaker() {
    let gateway = support::start(&[("CIRCUIT_BREAKER_FAILURES", "2"), ("CIRCUIT_BREAKER_OPEN_MS", "60000")]).await;
    gateway.users.set_mode(Mode::Shedding);
    // A burst of shed logins, three times the breaker's threshold, all at once.
    let burst = futures::future::join_all((0..6).map(|_| gateway.login())).await;
    for response in burst {
        assert_eq!(response.status(), 503);
        assert_eq!(response.headers()["retry-after"], "7", "the service's own Retry-After, relayed");
        let body: serde_json::Value = response.json().await.unwrap();
        assert_eq!(body["message"], "Too many logins at once; retry shortly", "the service's own answer");
    }
    assert_eq!(gateway.users.hits(), 6, "every call reached the service");

    gateway.users.set_mode(Mode::Ok);
    assert_eq!(gateway.login().await.status(), 200, "the breaker stayed closed");
    let metrics = gateway.client.get(gateway.url("/metrics")).send().await.unwrap().text().await.unwrap();
    assert!(metrics.contains("circuit_breaker_open{service=\"user-service\"} 0"), "{metrics}");
    gateway.stop().await;
}

#[tokio::test]
async fn plain_503s_open_the_breaker_which_then_refuses_without_calling() {
    let gateway = support::start(&[("CIRCUIT_BREAKER_FAILURES", "2"), ("CIRCUIT_BREAKER_OPEN_MS", "60000")]).await;
    gateway.users.set_mode(Mode::Failing);
    for _ in 0..2 {
        assert_eq!(gateway.login().await.status(), 503);
    }
    let refused = gateway.login().await;
    assert_eq!(refused.status(), 503);
    assert_eq!(refused.headers()["retry-after"], "60", "the time until the next probe");
    let body: serde_json::Value = refused.json().await.unwrap();
    assert_eq!(body, serde_json::json!({ "success": false, "message": "user-service is temporarily unavailable" }));
    assert_eq!(gateway.users.hits(), 2, "the open breaker did not call the service");
    gateway.stop().await;
}
