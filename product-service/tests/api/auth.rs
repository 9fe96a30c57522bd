use crate::support;

use serde_json::{Value, json};
use support::{Issuer, error_code, error_message};

const ADD: &str = r#"mutation { addProduct(name: "Intrus", price: 1) { id } }"#;
const UPDATE: &str = r#"mutation { updateProduct(id: "1", price: 1) { id } }"#;
const DELETE: &str = r#"mutation { deleteProduct(id: "1") { id } }"#;

/// Sends every mutation with `token` and expects `code` for each, with nothing written.
async fn assert_mutations_refused(app: &support::TestApp, token: Option<&str>, code: &str) {
    for mutation in [ADD, UPDATE, DELETE] {
        let body = app.graphql_with(token, mutation, json!({})).await;
        assert_eq!(error_code(&body), code, "{mutation}: {body}");
        assert_eq!(body["data"], Value::Null);
    }
    let body = app.graphql(r#"{ product(id: "1") { price } }"#, json!({})).await;
    assert_eq!(body["data"]["product"]["price"], json!(899.99), "the update was not applied");
    assert_eq!(app.product_ids().await, ["1", "2", "3", "4"], "nothing was added or deleted");
}

#[tokio::test]
async fn mutations_without_a_token_are_unauthenticated() {
    let app = support::spawn(&[("PRODUCT_CACHE_TTL_MS", "0")]).await;
    assert_mutations_refused(&app, None, "UNAUTHENTICATED").await;
    let body = app.graphql(ADD, json!({})).await;
    assert_eq!(error_message(&body), "Authentication required");
}

#[tokio::test]
async fn mutations_with_a_customer_token_are_forbidden() {
    let app = support::spawn(&[("PRODUCT_CACHE_TTL_MS", "0")]).await;
    let token = app.issuer.token("customer");
    assert_mutations_refused(&app, Some(&token), "FORBIDDEN").await;
}

#[tokio::test]
async fn mutations_with_an_admin_token_succeed() {
    let app = support::spawn(&[]).await;
    let token = app.issuer.token("admin");
    let body = app.graphql_with(Some(&token), ADD, json!({})).await;
    assert_eq!(body["data"]["addProduct"]["id"], "5", "{body}");
}

#[tokio::test]
async fn garbage_and_unsigned_tokens_are_unauthenticated() {
    let app = support::spawn(&[("PRODUCT_CACHE_TTL_MS", "0")]).await;
    assert_mutations_refused(&app, Some("not-a-jwt"), "UNAUTHENTICATED").await;
    // alg "none" with admin claims and no signature.
    use base64::Engine as _;
    let encode = |value: &Value| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(value.to_string());
    let unsigned = format!("{}.{}.", encode(&json!({ "alg": "none", "typ": "JWT" })), encode(&Issuer::claims("admin")));
    assert_mutations_refused(&app, Some(&unsigned), "UNAUTHENTICATED").await;
}

#[tokio::test]
async fn expired_tokens_are_unauthenticated() {
    let app = support::spawn(&[("PRODUCT_CACHE_TTL_MS", "0")]).await;
    let token = app.issuer.sign(&Issuer::expired_claims("admin", 60));
    assert_mutations_refused(&app, Some(&token), "UNAUTHENTICATED").await;
    let body = app.graphql_with(Some(&token), ADD, json!({})).await;
    assert_eq!(error_message(&body), "Invalid or expired token", "no library detail is sent");
}

#[tokio::test]
async fn tokens_signed_by_another_key_are_unauthenticated() {
    let app = support::spawn(&[("PRODUCT_CACHE_TTL_MS", "0")]).await;
    let token = Issuer::unserved().token("admin");
    assert_mutations_refused(&app, Some(&token), "UNAUTHENTICATED").await;
}

#[tokio::test]
async fn tokens_for_another_audience_or_issuer_are_unauthenticated() {
    let app = support::spawn(&[("PRODUCT_CACHE_TTL_MS", "0")]).await;
    let mut claims = Issuer::claims("admin");
    claims["aud"] = json!("another-api");
    assert_mutations_refused(&app, Some(&app.issuer.sign(&claims)), "UNAUTHENTICATED").await;
    let mut claims = Issuer::claims("admin");
    claims["iss"] = json!("someone-else");
    assert_mutations_refused(&app, Some(&app.issuer.sign(&claims)), "UNAUTHENTICATED").await;
}

#[tokio::test]
async fn queries_are_public_even_with_a_bad_token() {
    let app = support::spawn(&[]).await;
    let body = app.graphql_with(Some("not-a-jwt"), r#"{ product(id: "1") { name } }"#, json!({})).await;
    assert_eq!(body, json!({ "data": { "product": { "name": "Smartphone" } } }));
}

#[tokio::test]
async fn mutations_are_service_unavailable_when_the_signing_keys_cannot_be_fetched() {
    let closed = test_support::closed_port();
    let jwks_url = format!("http://127.0.0.1:{closed}/.well-known/jwks.json");
    let app = support::spawn(&[("JWKS_URL", &jwks_url), ("PRODUCT_CACHE_TTL_MS", "0")]).await;
    let token = app.issuer.token("admin");
    assert_mutations_refused(&app, Some(&token), "SERVICE_UNAVAILABLE").await;
}
