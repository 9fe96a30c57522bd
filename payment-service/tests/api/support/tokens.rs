//! The tests act as the token issuer: an Ed25519 key, its JWKS served over real HTTP, and signed tokens.
use std::{
    sync::Arc,
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use axum::{Json, Router, routing::get};
use jsonwebtoken::{
    Algorithm, EncodingKey, Header,
    jwk::{Jwk, JwkSet, ThumbprintHash},
};

pub const ISSUER: &str = "user-service";
pub const AUDIENCE: &str = "ecommerce-api";

/// DER prefix of a PKCS#8 v1 Ed25519 private key; the 32-byte seed follows it.
const PKCS8_ED25519_PREFIX: [u8; 16] =
    [0x30, 0x2e, 0x02, 0x01, 0x00, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x04, 0x22, 0x04, 0x20];

struct SigningKey {
    encoding: EncodingKey,
    jwk: Jwk,
    kid: String,
}

impl SigningKey {
    fn generate() -> Self {
        use base64::Engine as _;
        let mut der = PKCS8_ED25519_PREFIX.to_vec();
        der.extend_from_slice(&rand::random::<[u8; 32]>());
        let body = base64::engine::general_purpose::STANDARD.encode(der);
        let pem = format!("-----BEGIN PRIVATE KEY-----\n{body}\n-----END PRIVATE KEY-----\n");
        let encoding = EncodingKey::from_ed_pem(pem.as_bytes()).expect("a valid Ed25519 key");
        let mut jwk = Jwk::from_encoding_key(&encoding, Algorithm::EdDSA).expect("a JWK");
        let kid = jwk.thumbprint(ThumbprintHash::SHA256).expect("a thumbprint");
        jwk.common.key_id = Some(kid.clone());
        Self { encoding, jwk, kid }
    }

    fn sign(&self, kid: &str, claims: &serde_json::Value) -> String {
        let mut header = Header::new(Algorithm::EdDSA);
        header.kid = Some(kid.to_owned());
        jsonwebtoken::encode(&header, claims, &self.encoding).expect("a signed token")
    }
}

fn now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).expect("after 1970").as_secs()
}

/// What a token says; build one with [`Issuer::claims`] and adjust fields to make it wrong on purpose.
pub struct TokenSpec {
    pub sub: String,
    pub role: &'static str,
    pub issuer: String,
    pub audience: String,
    pub expires_at: u64,
}

pub struct Issuer {
    key: SigningKey,
}

impl Issuer {
    pub fn new() -> Self {
        Self { key: SigningKey::generate() }
    }

    pub fn jwks(&self) -> JwkSet {
        JwkSet { keys: vec![self.key.jwk.clone()] }
    }

    pub fn claims(&self, sub: &str, role: &'static str) -> TokenSpec {
        TokenSpec {
            sub: sub.to_owned(),
            role,
            issuer: ISSUER.to_owned(),
            audience: AUDIENCE.to_owned(),
            expires_at: now() + 600,
        }
    }

    pub fn sign(&self, spec: &TokenSpec) -> String {
        self.key.sign(&self.key.kid, &to_json(spec))
    }

    pub fn customer(&self, user_id: &str) -> String {
        self.sign(&self.claims(user_id, "customer"))
    }

    pub fn admin(&self, user_id: &str) -> String {
        self.sign(&self.claims(user_id, "admin"))
    }

    /// Claims this issuer would sign, with its `kid`, but signed by a different key.
    pub fn forged(&self, user_id: &str) -> String {
        SigningKey::generate().sign(&self.key.kid, &to_json(&self.claims(user_id, "customer")))
    }
}

fn to_json(spec: &TokenSpec) -> serde_json::Value {
    let iat = spec.expires_at.saturating_sub(600);
    serde_json::json!({
        "sub": spec.sub,
        "username": format!("user-{}", spec.sub),
        "email": format!("{}@example.com", spec.sub),
        "role": spec.role,
        "iss": spec.issuer,
        "aud": spec.audience,
        "iat": iat,
        "exp": spec.expires_at,
        "jti": uuid::Uuid::new_v4().to_string(),
    })
}

/// Serves the issuer's JWKS at `url` on 127.0.0.1:0, each answer delayed by `delay` (to keep calls in flight).
pub struct JwksServer {
    pub url: String,
    task: tokio::task::JoinHandle<()>,
}

impl JwksServer {
    pub async fn start(issuer: &Issuer, delay: Duration) -> Self {
        let jwks = Arc::new(issuer.jwks());
        let router = Router::new().route(
            "/.well-known/jwks.json",
            get(move || {
                let jwks = jwks.clone();
                async move {
                    tokio::time::sleep(delay).await;
                    Json((*jwks).clone())
                }
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("a free port");
        let port = listener.local_addr().expect("bound").port();
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, router).await;
        });
        Self { url: format!("http://127.0.0.1:{port}/.well-known/jwks.json"), task }
    }
}

impl Drop for JwksServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}
