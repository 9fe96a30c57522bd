//! Bearer-token verification against the user-service's public keys (JWKS), the same in every service that
//! checks tokens (each checks them itself rather than trusting whoever forwards the request).
//!
//! Keys are fetched once and cached; a token signed with an unknown `kid` triggers one refresh (at most one
//! per second, single-flight), so key rotation works without restarts while a flood of forged `kid`s cannot
//! turn into a flood of JWKS requests. Only EdDSA is accepted, which rules out `alg: none` and
//! HS256-with-the-public-key confusion; `exp`, `iss`, `aud` and `sub` are required and checked.
use std::{
    collections::HashMap,
    sync::RwLock,
    time::{Duration, Instant},
};

use jsonwebtoken::{Algorithm, DecodingKey, Validation, jwk::JwkSet};
use serde::{Deserialize, Serialize};

const MIN_REFRESH_INTERVAL: Duration = Duration::from_secs(1);
const JWKS_FETCH_TIMEOUT: Duration = Duration::from_secs(2);

/// What the bearer may do, as the user-service grants it. A token naming another role is invalid.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    Customer,
    Admin,
}

/// The claims the user-service puts in every token that the other services rely on.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Claims {
    pub sub: String,
    pub username: String,
    pub email: String,
    pub role: Role,
    pub exp: u64,
}

impl Claims {
    pub fn is_admin(&self) -> bool {
        self.role == Role::Admin
    }

    /// Whether the bearer may act on behalf of `user_id`: themselves, or anyone when admin.
    pub fn may_act_for(&self, user_id: &str) -> bool {
        self.is_admin() || self.sub == user_id
    }
}

#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    #[error("missing bearer token")]
    Missing,
    #[error("invalid token: {0}")]
    Invalid(String),
    /// The key is unknown and the JWKS cannot be fetched: not the caller's fault (→ 503 / UNAVAILABLE).
    #[error("signing keys unavailable: {0}")]
    KeysUnavailable(String),
}

/// The token of an `Authorization: Bearer <token>` value (HTTP header or gRPC metadata), if there is one.
/// The scheme is case-insensitive (RFC 9110); surrounding spaces are ignored.
pub fn bearer_token(authorization: &str) -> Option<&str> {
    let (scheme, token) = authorization.trim_start().split_once(' ')?;
    let token = token.trim();
    (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty()).then_some(token)
}

/// The bearer token of a request's `Authorization` header, if there is one.
pub fn bearer_token_of(headers: &http::HeaderMap) -> Option<&str> {
    bearer_token(headers.get(http::header::AUTHORIZATION)?.to_str().ok()?)
}

/// When the keys were last fetched and whether that worked, so that a failing JWKS endpoint keeps answering
/// "unavailable" (not "unknown key") during the refresh interval.
#[derive(Clone, Copy)]
struct LastRefresh {
    at: Instant,
    succeeded: bool,
}

pub struct JwksVerifier {
    jwks_url: String,
    http: reqwest::Client,
    validation: Validation,
    keys: RwLock<HashMap<String, DecodingKey>>,
    /// Held while fetching (single flight).
    refresh: tokio::sync::Mutex<Option<LastRefresh>>,
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

    /// Verifies the bearer token of an HTTP request.
    pub async fn verify_headers(&self, headers: &http::HeaderMap) -> Result<Claims, AuthError> {
        self.verify(bearer_token_of(headers).ok_or(AuthError::Missing)?).await
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
        if let Some(previous) = *last
            && previous.at.elapsed() < MIN_REFRESH_INTERVAL
        {
            // Within the cool-down the previous outcome stands: after a failed fetch the keys are still
            // unavailable (not "the token is invalid").
            return if previous.succeeded {
                Ok(())
            } else {
                Err(AuthError::KeysUnavailable("the last JWKS fetch failed moments ago".into()))
            };
        }
        let fetched = self.fetch().await;
        *last = Some(LastRefresh { at: Instant::now(), succeeded: fetched.is_ok() });
        let fetched = fetched.map_err(|error| {
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
        Ok(())
    }

    async fn fetch(&self) -> Result<JwkSet, reqwest::Error> {
        // Made inside a request: its trace context puts the user-service's JWKS span in the same trace.
        let request = self.http.get(&self.jwks_url).headers(crate::telemetry::trace_headers());
        request.timeout(JWKS_FETCH_TIMEOUT).send().await?.error_for_status()?.json().await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_bearer_scheme_is_case_insensitive_and_the_token_trimmed() {
        assert_eq!(bearer_token("Bearer abc"), Some("abc"));
        assert_eq!(bearer_token("bearer  abc "), Some("abc"));
        assert_eq!(bearer_token("BEARER abc"), Some("abc"));
        assert_eq!(bearer_token("Basic abc"), None);
        assert_eq!(bearer_token("Bearer "), None);
        assert_eq!(bearer_token("Bearer"), None);
        assert_eq!(bearer_token(""), None);
        let mut headers = http::HeaderMap::new();
        assert_eq!(bearer_token_of(&headers), None);
        headers.insert(http::header::AUTHORIZATION, "Bearer t0k".parse().expect("a header value"));
        assert_eq!(bearer_token_of(&headers), Some("t0k"));
    }

    #[test]
    fn only_the_subject_or_an_admin_may_act_for_a_user() {
        let claims = |role| Claims {
            sub: "u1".into(),
            username: "alice".into(),
            email: "alice@example.com".into(),
            role,
            exp: 0,
        };
        assert!(claims(Role::Customer).may_act_for("u1"));
        assert!(!claims(Role::Customer).may_act_for("u2"));
        assert!(claims(Role::Admin).may_act_for("u2"));
    }

    #[test]
    fn roles_are_the_user_services_words_and_no_others() {
        assert_eq!(serde_json::from_str::<Role>("\"admin\"").expect("a role"), Role::Admin);
        assert_eq!(serde_json::from_str::<Role>("\"customer\"").expect("a role"), Role::Customer);
        assert!(serde_json::from_str::<Role>("\"root\"").is_err());
    }
}
