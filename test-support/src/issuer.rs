//! Plays the user-service for tests: an Ed25519 key, a JWKS endpoint on 127.0.0.1:0 and signed tokens with the
//! user-service's claims.
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::{Json, Router, routing::get};
use jsonwebtoken::{
    Algorithm, EncodingKey, Header,
    jwk::{Jwk, JwkSet, PublicKeyUse, ThumbprintHash},
};
use serde_json::{Value, json};
use tokio::sync::oneshot;

pub struct Issuer {
    key: EncodingKey,
    kid: String,
    jwks: JwkSet,
    jwks_url: String,
    stop: Option<oneshot::Sender<()>>,
}

fn now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).expect("clock after 1970").as_secs()
}

impl Issuer {
    /// A fresh key whose JWKS is served on a free port until the issuer is dropped.
    pub async fn start() -> Self {
        Self::start_answering_after(Duration::ZERO).await
    }

    /// Like [`Issuer::start`], each JWKS answer `delay` late (to keep calls in flight while keys are fetched).
    pub async fn start_answering_after(delay: Duration) -> Self {
        let mut issuer = Self::unserved();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("a free port");
        issuer.jwks_url = format!("http://{}/.well-known/jwks.json", listener.local_addr().expect("bound"));
        let jwks = issuer.jwks.clone();
        let answer = move || {
            let jwks = jwks.clone();
            async move {
                tokio::time::sleep(delay).await;
                Json(jwks)
            }
        };
        let router = Router::new().route("/.well-known/jwks.json", get(answer));
        let (stop, stopped) = oneshot::channel::<()>();
        tokio::spawn(async move {
            let _ = axum::serve(listener, router)
                .with_graceful_shutdown(async {
                    let _ = stopped.await;
                })
                .await;
        });
        issuer.stop = Some(stop);
        issuer
    }

    /// A fresh key that no JWKS publishes: its tokens must be rejected.
    pub fn unserved() -> Self {
        let key = platform::auth::testing::ed25519_key(rand::random());
        let mut jwk = Jwk::from_encoding_key(&key, Algorithm::EdDSA).expect("a JWK");
        let kid = jwk.thumbprint(ThumbprintHash::SHA256).expect("a thumbprint");
        jwk.common.key_id = Some(kid.clone());
        jwk.common.public_key_use = Some(PublicKeyUse::Signature);
        Self { key, kid, jwks: JwkSet { keys: vec![jwk] }, jwks_url: String::new(), stop: None }
    }

    pub fn jwks_url(&self) -> String {
        self.jwks_url.clone()
    }

    /// The claims the user-service would put in a token for a new user with `role`, valid for an hour.
    pub fn claims(role: &str) -> Value {
        Self::claims_for(&format!("user-{}", uuid::Uuid::new_v4().simple()), role)
    }

    /// The claims the user-service would put in a token for user `sub` with `role`, valid for an hour.
    pub fn claims_for(sub: &str, role: &str) -> Value {
        let now = now();
        json!({
            "sub": sub,
            "username": format!("tester-{sub}"),
            "email": format!("{sub}@example.com"),
            "role": role,
            "iss": "user-service",
            "aud": "ecommerce-api",
            "iat": now,
            "exp": now + 3_600,
            "jti": uuid::Uuid::new_v4().to_string(),
        })
    }

    /// A token for a new user with `role`.
    pub fn token(&self, role: &str) -> String {
        self.sign(&Self::claims(role))
    }

    /// A token for user `sub` with `role`.
    pub fn token_for(&self, sub: &str, role: &str) -> String {
        self.sign(&Self::claims_for(sub, role))
    }

    /// Signs arbitrary claims with this issuer's key and kid.
    pub fn sign(&self, claims: &Value) -> String {
        signed(&self.key, &self.kid, claims)
    }

    /// `claims` under this issuer's kid, but signed by another key: a forged signature.
    pub fn forged(&self, claims: &Value) -> String {
        signed(&Self::unserved().key, &self.kid, claims)
    }

    /// Claims for `role` that expired `seconds_ago`.
    pub fn expired_claims(role: &str, seconds_ago: u64) -> Value {
        let mut claims = Self::claims(role);
        claims["iat"] = json!(now() - seconds_ago - 3_600);
        claims["exp"] = json!(now() - seconds_ago);
        claims
    }
}

fn signed(key: &EncodingKey, kid: &str, claims: &Value) -> String {
    let mut header = Header::new(Algorithm::EdDSA);
    header.kid = Some(kid.to_owned());
    jsonwebtoken::encode(&header, claims, key).expect("signing works")
}

impl Drop for Issuer {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}
