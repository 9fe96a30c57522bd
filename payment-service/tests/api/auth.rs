//! Who may call: a valid token from the user-service (via its JWKS), paying as themselves unless admin.
use crate::support;

use std::time::Duration;

use payment_service::proto::PaymentStatus;
use serde_json::json;
use support::Issuer;
use tonic::{Code, Request};

/// A payment of a processed order of user-1's, which the app knows.
async fn request(app: &support::TestApp) -> payment_service::proto::PayRequest {
    support::pay_request(&app.known_order("user-1", 1_000).await, "user-1", 1_000, &support::unique("key-"))
}

async fn pay_with_token(app: &support::TestApp, token: &str) -> Result<PaymentStatus, tonic::Status> {
    let response = app.client().await.pay(support::with_token(request(app).await, token)).await?;
    Ok(response.into_inner().status())
}

#[tokio::test]
async fn a_call_without_a_token_is_unauthenticated() {
    let app = support::spawn(&[]).await;
    let status = app.client().await.pay(Request::new(request(&app).await)).await.unwrap_err();
    assert_eq!(status.code(), Code::Unauthenticated);
    let mut basic = Request::new(request(&app).await);
    basic.metadata_mut().insert("authorization", "Basic dXNlcjpwYXNz".parse().unwrap());
    assert_eq!(app.client().await.pay(basic).await.unwrap_err().code(), Code::Unauthenticated);
}

#[tokio::test]
async fn a_malformed_token_is_unauthenticated() {
    let app = support::spawn(&[]).await;
    assert_eq!(pay_with_token(&app, "not-a-jwt").await.unwrap_err().code(), Code::Unauthenticated);
}

#[tokio::test]
async fn a_token_with_the_right_kid_but_a_forged_signature_is_unauthenticated() {
    let app = support::spawn(&[]).await;
    let status = pay_with_token(&app, &app.issuer.forged(&Issuer::claims_for("user-1", "customer"))).await.unwrap_err();
    assert_eq!(status.code(), Code::Unauthenticated);
}

#[tokio::test]
async fn a_token_signed_by_a_key_the_jwks_does_not_publish_is_unauthenticated() {
    let app = support::spawn(&[]).await;
    let stranger = Issuer::unserved();
    let status = pay_with_token(&app, &stranger.token_for("user-1", "customer")).await.unwrap_err();
    assert_eq!(status.code(), Code::Unauthenticated);
}

#[tokio::test]
async fn an_expired_token_is_unauthenticated() {
    let app = support::spawn(&[]).await;
    let mut claims = Issuer::claims_for("user-1", "customer");
    claims["exp"] = json!(claims["iat"].as_u64().unwrap() - 3_000);
    let status = pay_with_token(&app, &app.issuer.sign(&claims)).await.unwrap_err();
    assert_eq!(status.code(), Code::Unauthenticated);
    assert!(!status.message().contains("Expired"), "no library internals: {}", status.message());
}

#[tokio::test]
async fn a_token_for_another_issuer_or_audience_is_unauthenticated() {
    let app = support::spawn(&[]).await;
    let mut wrong_issuer = Issuer::claims_for("user-1", "customer");
    wrong_issuer["iss"] = json!("someone-else");
    assert_eq!(pay_with_token(&app, &app.issuer.sign(&wrong_issuer)).await.unwrap_err().code(), Code::Unauthenticated);
    let mut wrong_audience = Issuer::claims_for("user-1", "customer");
    wrong_audience["aud"] = json!("another-api");
    let status = pay_with_token(&app, &app.issuer.sign(&wrong_audience)).await.unwrap_err();
    assert_eq!(status.code(), Code::Unauthenticated);
}

#[tokio::test]
async fn a_customer_paying_for_another_user_is_permission_denied() {
    let app = support::spawn(&[]).await;
    let status = pay_with_token(&app, &app.issuer.token_for("user-2", "customer")).await.unwrap_err();
    assert_eq!(status.code(), Code::PermissionDenied);
    assert_eq!(
        pay_with_token(&app, &app.issuer.token_for("user-1", "customer")).await.expect("own payment"),
        PaymentStatus::Success
    );
}

#[tokio::test]
async fn an_admin_may_pay_for_any_user() {
    let app = support::spawn(&[]).await;
    assert_eq!(
        pay_with_token(&app, &app.issuer.token_for("admin-1", "admin")).await.expect("paid"),
        PaymentStatus::Success
    );
}

#[tokio::test]
async fn an_unreachable_jwks_is_unavailable_not_unauthenticated() {
    let closed = format!("http://127.0.0.1:{}/.well-known/jwks.json", support::closed_port());
    let app = support::spawn(&[("JWKS_URL", &closed)]).await;
    let token = app.issuer.token_for("user-1", "customer");
    for _ in 0..2 {
        // The second call falls inside the refresh interval and must still not blame the token.
        assert_eq!(pay_with_token(&app, &token).await.unwrap_err().code(), Code::Unavailable);
    }
}

#[tokio::test]
async fn signing_keys_are_cached_after_the_first_fetch() {
    // Each JWKS answer takes a second; only the first call should pay for it.
    let app = support::spawn_with_jwks_delay(&[], Duration::from_secs(1)).await;
    app.wait_for_health(support::ServingStatus::Serving).await;
    let token = app.issuer.token_for("user-1", "customer");
    pay_with_token(&app, &token).await.expect("first call");
    let started = std::time::Instant::now();
    pay_with_token(&app, &token).await.expect("second call");
    assert!(started.elapsed() < Duration::from_millis(900), "took {:?}", started.elapsed());
}
