//! Bearer-token verification against the user-service's public keys (JWKS), from gRPC metadata
//! `authorization: Bearer <jwt>`.
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

use jsonwebtoken::{Algorithm, DecodingKey, Validation, jwk::JwkSet};
use serde::{Deserialize, Serialize};
use tonic::metadata::MetadataMap;

use crate::config::JwtConfig;

const MIN_REFRESH_INTERVAL: Duration = Duration::from_secs(1);
const JWKS_FETCH_TIMEOUT: Duration = Duration::from_secs(2);

/// The claims the user-service puts in every token that this service relies on.
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
    /// The key is unknown and the JWKS cannot be fetched: not the caller's fault (→ UNAVAILABLE).
    #[error("signing keys unavailable: {0}")]
    KeysUnavailable(String),
}

/// When the keys were last fetched and whether that worked, so that a failing JWKS endpoint keeps
/// answering "unavailable" (not "unknown key") during the refresh interval.
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

/// The token of an `authorization: Bearer <token>` metadata entry, if there is one.
pub fn bearer_token(metadata: &MetadataMap) -> Option<&str> {
    let value = metadata.get("authorization")?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    let token = token.trim();
    (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty()).then_some(token)
}

impl JwksVerifier {
    pub fn new(config: &JwtConfig, http: reqwest::Client) -> Self {
        let mut validation = Validation::new(Algorithm::EdDSA);
        validation.set_issuer(&[&config.issuer]);
        validation.set_audience(&[&config.audience]);
        validation.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
        validation.leeway = 5;
        Self {
            jwks_url: config.jwks_url.clone(),
            http,
            validation,
            keys: RwLock::new(HashMap::new()),
            refresh: tokio::sync::Mutex::new(None),
        }
    }

    pub async fn verify_metadata(&self, metadata: &MetadataMap) -> Result<Claims, AuthError> {
        self.verify(bearer_token(metadata).ok_or(AuthError::Missing)?).await
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
        self.http.get(&self.jwks_url).timeout(JWKS_FETCH_TIMEOUT).send().await?.error_for_status()?.json().await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn metadata_with(value: &str) -> MetadataMap {
        let mut metadata = MetadataMap::new();
        metadata.insert("authorization", value.parse().unwrap());
        metadata
    }

    #[test]
    fn the_bearer_token_is_read_case_insensitively_from_the_scheme() {
        assert_eq!(bearer_token(&metadata_with("Bearer abc")), Some("abc"));
        assert_eq!(bearer_token(&metadata_with("bearer  abc ")), Some("abc"));
        assert_eq!(bearer_token(&metadata_with("Basic abc")), None);
        assert_eq!(bearer_token(&metadata_with("Bearer ")), None);
        assert_eq!(bearer_token(&MetadataMap::new()), None);
    }

    #[test]
    fn only_the_subject_or_an_admin_may_act_for_a_user() {
        let claims = |role: &str| Claims {
            sub: "u1".into(),
            username: "alice".into(),
            email: "alice@example.com".into(),
            role: role.into(),
            exp: 0,
        };
        assert!(claims("customer").may_act_for("u1"));
        assert!(!claims("customer").may_act_for("u2"));
        assert!(claims("admin").may_act_for("u2"));
    }
}
