//! Bearer-token verification against the user-service's public keys (JWKS); the api-gateway's verifier,
//! copied so that this service checks tokens itself instead of trusting whoever forwards them.
//!
//! Keys are fetched once and cached; a token signed with an unknown `kid` triggers one refresh
//! (at most one per second, single-flight), so key rotation works without restarts while a flood of
//! forged `kid`s cannot turn into a flood of JWKS requests. Only EdDSA is accepted, which rules
//! out `alg: none` and HS256-with-the-public-key confusion; `exp`, `iss` and `aud` are checked.
use std::{
    collections::HashMap,
    sync::RwLock,
    time::{Duration, Instant},
};

use axum::http::{HeaderMap, header};
use jsonwebtoken::{Algorithm, DecodingKey, Validation, jwk::JwkSet};
use serde::{Deserialize, Serialize};

const MIN_REFRESH_INTERVAL: Duration = Duration::from_secs(1);

/// The claims the user-service puts in every token.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Claims {
    pub sub: String,
    pub username: String,
    pub email: String,
    pub role: String,
    pub exp: u64,
}

impl Claims {
    pub fn is_admin(&self) -> bool {
        self.role == "admin"
    }
}

#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    #[error("missing bearer token")]
    Missing,
    #[error("invalid token: {0}")]
    Invalid(String),
    /// The key is unknown and the JWKS cannot be fetched: not the client's fault (→ 503).
    #[error("signing keys unavailable: {0}")]
    KeysUnavailable(String),
}

pub struct JwksVerifier {
    jwks_url: String,
    http: reqwest::Client,
    validation: Validation,
    keys: RwLock<HashMap<String, DecodingKey>>,
    /// Held while fetching (single flight); remembers the last fetch.
    refresh: tokio::sync::Mutex<Option<LastRefresh>>,
}

struct LastRefresh {
    started: Instant,
    succeeded: bool,
}

/// The token of an `Authorization: Bearer <token>` header, if there is one.
pub fn bearer_token(headers: &HeaderMap) -> Option<&str> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    let token = token.trim();
    (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty()).then_some(token)
}

impl JwksVerifier {
    pub fn new(jwks_url: impl Into<String>, issuer: &str, audience: &str, http: reqwest::Client) -> Self {
        let mut validation = Validation::new(Algorithm::EdDSA);
        validation.set_issuer(&[issuer]);
        validation.set_audience(&[audience]);
        validation.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
        validation.leeway = 5;
        Self {
            jwks_url: jwks_url.into(),
            http,
            validation,
            keys: RwLock::new(HashMap::new()),
            refresh: tokio::sync::Mutex::new(None),
        }
    }

    pub async fn verify_headers(&self, headers: &HeaderMap) -> Result<Claims, AuthError> {
        self.verify(bearer_token(headers).ok_or(AuthError::Missing)?).await
    }

    pub async fn verify(&self, token: &str) -> Result<Claims, AuthError> {
        let header = jsonwebtoken::decode_header(token).map_err(|error| AuthError::Invalid(error.to_string()))?;
        if header.alg != Algorithm::EdDSA {
            return Err(AuthError::Invalid(format!("algorithm {:?} is not accepted", header.alg)));
        }
        let kid = header.kid.ok_or_else(|| AuthError::Invalid("token has no kid".into()))?;
        let key = match self.cached_key(&kid) {
            Some(key) => key,
            None => {
                self.refresh_keys().await?;
                self.cached_key(&kid).ok_or_else(|| AuthError::Invalid("unknown signing key".into()))?
            }
        };
        jsonwebtoken::decode::<Claims>(token, &key, &self.validation)
            .map(|data| data.claims)
            .map_err(|error| AuthError::Invalid(error.to_string()))
    }

    fn cached_key(&self, kid: &str) -> Option<DecodingKey> {
        self.keys.read().unwrap_or_else(|poisoned| poisoned.into_inner()).get(kid).cloned()
    }

    async fn refresh_keys(&self) -> Result<(), AuthError> {
        let mut last = self.refresh.lock().await;
        if let Some(previous) = last.as_ref()
            && previous.started.elapsed() < MIN_REFRESH_INTERVAL
        {
            // Within the cool-down the previous outcome stands: after a failed fetch the keys are still
            // unavailable (not "the token is invalid").
            return if previous.succeeded {
                Ok(())
            } else {
                Err(AuthError::KeysUnavailable("the last JWKS fetch failed".into()))
            };
        }
        let started = Instant::now();
        *last = Some(LastRefresh { started, succeeded: false });
        let fetched: JwkSet = async {
            // Made inside a request: its trace context puts the user-service's JWKS span in the same trace.
            let request = self.http.get(&self.jwks_url).headers(crate::telemetry::trace_headers());
            request.timeout(Duration::from_secs(2)).send().await?.error_for_status()?.json().await
        }
        .await
        .map_err(|error: reqwest::Error| {
            tracing::warn!(%error, url = %self.jwks_url, "cannot fetch the JWKS");
            AuthError::KeysUnavailable(error.to_string())
        })?;
        let keys: HashMap<String, DecodingKey> = fetched
            .keys
            .iter()
            .filter_map(|jwk| Some((jwk.common.key_id.clone()?, DecodingKey::from_jwk(jwk).ok()?)))
            .collect();
        tracing::debug!(count = keys.len(), "signing keys refreshed");
        *self.keys.write().unwrap_or_else(|poisoned| poisoned.into_inner()) = keys;
        *last = Some(LastRefresh { started, succeeded: true });
        Ok(())
    }
}
