//! GET /users/me, the JWKS, and every forged-token case.
use crate::support;

use base64::{Engine as _, engine::general_purpose::URL_SAFE_NO_PAD};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{Value, json};
use user_service::tokens::generate_private_key_pem;

fn now() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs()
}

async fn spawn_with_key() -> (support::TestApp, String) {
    let pem = generate_private_key_pem();
    (support::spawn(&[("JWT_PRIVATE_KEY", &pem)]).await, pem)
}

async fn kid(app: &support::TestApp) -> String {
    let jwks: Value = app.client.get(app.url("/.well-known/jwks.json")).send().await.unwrap().json().await.unwrap();
    jwks["keys"][0]["kid"].as_str().unwrap().to_owned()
}

async fn me_status(app: &support::TestApp, token: &str) -> u16 {
    app.client.get(app.url("/users/me")).bearer_auth(token).send().await.unwrap().status().as_u16()
}

fn claims(sub: &str, exp: u64, aud: &str, iss: &str) -> Value {
    json!({ "sub": sub, "username": "x", "email": "x@example.com", "role": "admin", "iss": iss, "aud": aud,
            "iat": now(), "exp": exp, "jti": "j" })
}

fn sign(pem: &str, kid: &str, claims: &Value) -> String {
    let mut header = Header::new(Algorithm::EdDSA);
    header.kid = Some(kid.to_owned());
    jsonwebtoken::encode(&header, claims, &EncodingKey::from_ed_pem(pem.as_bytes()).unwrap()).unwrap()
}

#[tokio::test]
async fn me_returns_the_callers_profile_with_role() {
    let app = support::spawn(&[]).await;
    let (email, _, token) = app.registered_token().await;
    let response = app.client.get(app.url("/users/me")).bearer_auth(&token).send().await.unwrap();
    assert_eq!(response.status(), 200);
    let me: Value = response.json().await.unwrap();
    assert_eq!(me["email"], email.as_str());
    assert_eq!(me["role"], "customer");
    assert!(me["id"].is_string() && me["username"].is_string());
    assert!(me.get("passwordHash").is_none());
}

#[tokio::test]
async fn me_without_a_token_is_401() {
    let app = support::spawn(&[]).await;
    assert_eq!(app.client.get(app.url("/users/me")).send().await.unwrap().status(), 401);
    assert_eq!(me_status(&app, "not.a.jwt").await, 401);
}

#[tokio::test]
async fn the_jwks_publishes_an_ed25519_key_with_a_kid() {
    let app = support::spawn(&[]).await;
    let jwks: Value = app.client.get(app.url("/.well-known/jwks.json")).send().await.unwrap().json().await.unwrap();
    let key = &jwks["keys"][0];
    assert_eq!(key["kty"], "OKP");
    assert_eq!(key["crv"], "Ed25519");
    assert_eq!(key["alg"], "EdDSA");
    assert!(key["kid"].as_str().is_some_and(|kid| !kid.is_empty()));
    assert!(key.get("d").is_none(), "the private half is never published");
}

#[tokio::test]
async fn a_token_signed_with_the_configured_key_is_accepted() {
    let (app, pem) = spawn_with_key().await;
    let (email, password, _) = app.registered_token().await;
    let login: Value = app.login(&email, &password).await.json().await.unwrap();
    let sub = login["user"]["id"].as_str().unwrap();
    let token = sign(&pem, &kid(&app).await, &claims(sub, now() + 60, "ecommerce-api", "user-service"));
    assert_eq!(me_status(&app, &token).await, 200, "the control case: a well-formed token passes");
}

#[tokio::test]
async fn alg_none_tokens_are_rejected() {
    let (app, _) = spawn_with_key().await;
    let (_, _, token) = app.registered_token().await;
    let payload = token.split('.').nth(1).unwrap();
    let header = URL_SAFE_NO_PAD.encode(json!({ "alg": "none", "typ": "JWT", "kid": kid(&app).await }).to_string());
    assert_eq!(me_status(&app, &format!("{header}.{payload}.")).await, 401);
}

#[tokio::test]
async fn hs256_tokens_signed_with_the_public_key_are_rejected() {
    let (app, _) = spawn_with_key().await;
    let (_, _, token) = app.registered_token().await;
    let jwks: Value = app.client.get(app.url("/.well-known/jwks.json")).send().await.unwrap().json().await.unwrap();
    let public_key = URL_SAFE_NO_PAD.decode(jwks["keys"][0]["x"].as_str().unwrap()).unwrap();
    let claims: Value =
        serde_json::from_slice(&URL_SAFE_NO_PAD.decode(token.split('.').nth(1).unwrap()).unwrap()).unwrap();
    let mut header = Header::new(Algorithm::HS256);
    header.kid = Some(kid(&app).await);
    let forged = jsonwebtoken::encode(&header, &claims, &EncodingKey::from_secret(&public_key)).unwrap();
    assert_eq!(me_status(&app, &forged).await, 401);
}

#[tokio::test]
async fn tampered_tokens_are_rejected() {
    let (app, _) = spawn_with_key().await;
    let (_, _, token) = app.registered_token().await;
    let parts: Vec<&str> = token.split('.').collect();
    let mut claims: Value = serde_json::from_slice(&URL_SAFE_NO_PAD.decode(parts[1]).unwrap()).unwrap();
    claims["role"] = json!("admin");
    let tampered = format!("{}.{}.{}", parts[0], URL_SAFE_NO_PAD.encode(claims.to_string()), parts[2]);
    assert_eq!(me_status(&app, &tampered).await, 401);
}

#[tokio::test]
async fn expired_wrong_audience_and_wrong_issuer_tokens_are_rejected() {
    let (app, pem) = spawn_with_key().await;
    let (email, password, _) = app.registered_token().await;
    let login: Value = app.login(&email, &password).await.json().await.unwrap();
    let sub = login["user"]["id"].as_str().unwrap();
    let kid = kid(&app).await;
    let expired = sign(&pem, &kid, &claims(sub, now() - 120, "ecommerce-api", "user-service"));
    let wrong_audience = sign(&pem, &kid, &claims(sub, now() + 60, "another-api", "user-service"));
    let wrong_issuer = sign(&pem, &kid, &claims(sub, now() + 60, "ecommerce-api", "evil-issuer"));
    assert_eq!(me_status(&app, &expired).await, 401);
    assert_eq!(me_status(&app, &wrong_audience).await, 401);
    assert_eq!(me_status(&app, &wrong_issuer).await, 401);
}

#[tokio::test]
async fn tokens_signed_by_another_key_are_rejected() {
    let (app, _) = spawn_with_key().await;
    let (email, password, _) = app.registered_token().await;
    let login: Value = app.login(&email, &password).await.json().await.unwrap();
    let sub = login["user"]["id"].as_str().unwrap();
    let forged =
        sign(&generate_private_key_pem(), &kid(&app).await, &claims(sub, now() + 60, "ecommerce-api", "user-service"));
    assert_eq!(me_status(&app, &forged).await, 401);
}
