//! Bearer-token verification against the user-service's public keys (JWKS), the same in every service that
//! checks tokens (each checks them itself rather than trusting whoever forwards the request).
//!
//! Keys are fetched once and cached; a token signed with an unknown `kid` triggers one refresh (at most one
//! per second, single-flight), so key rotation works without restarts while a flood of forged `kid`s cannot
//! turn into a flood of JWKS requests. Only EdDSA is accepted, which rules out `alg: none` and
//! HS256-with-the-public-key confusion; `exp`, `iss`, `aud` and `sub` are required and checked.
//!
//! A token verified once is remembered by its exact text until it expires ([`VerifiedTokens`]): a client sends
//! the same token with every request, and checking its Ed25519 signature again each time was a tenth of the
//! order-service's CPU and a fifth of the gateway's under `POST /orders`. Fetching a new key set forgets them
//! all, so a key taken out of the JWKS stops its tokens at once.
use std::{
    collections::HashMap,
    sync::{PoisonError, RwLock},
    time::{Duration, Instant},
};

use jsonwebtoken::{Algorithm, DecodingKey, Validation, jwk::JwkSet};
use serde::{Deserialize, Serialize};

const MIN_REFRESH_INTERVAL: Duration = Duration::from_secs(1);
const JWKS_FETCH_TIMEOUT: Duration = Duration::from_secs(2);
/// The most verified tokens remembered (~0.5 KB each): the active clients of one replica within a token's life.
const VERIFIED_TOKENS_KEPT: usize = 4_096;
/// Seconds a token is still accepted after its `exp` (clock skew between the user-service and this one).
const LEEWAY_SECONDS: u64 = 5;

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

/// Tokens whose signature and claims were checked, by their exact text, with their claims: only `exp` can change
/// the answer for the same text, and it is checked at every use. Bounded: when full, the expired ones go, and if
/// that is not enough, all of them (they are verified again as they come).
#[derive(Default)]
struct VerifiedTokens {
    claims: HashMap<String, Claims>,
    /// Which key set they were verified with: a token checked against the keys before a refresh is not remembered.
    keys_generation: u64,
}

impl VerifiedTokens {
    /// The claims of `token` if it was verified and has not expired at `now` (seconds since the epoch), else the
    /// key set's generation to verify it under.
    fn get(&self, token: &str, now: u64) -> Result<Claims, u64> {
        self.claims.get(token).filter(|claims| !expired(claims, now)).cloned().ok_or(self.keys_generation)
    }

    /// Remembers `token`, verified under the key set `generation`, unless the keys changed meanwhile.
    fn remember(&mut self, token: &str, claims: &Claims, now: u64, generation: u64) {
        if generation != self.keys_generation {
            return;
        }
        if self.claims.len() >= VERIFIED_TOKENS_KEPT {
            self.claims.retain(|_, claims| !expired(claims, now));
            if self.claims.len() >= VERIFIED_TOKENS_KEPT {
                self.claims.clear();
            }
        }
        self.claims.insert(token.to_owned(), claims.clone());
    }
}

/// As `jsonwebtoken` decides it: past `exp` by more than the leeway.
fn expired(claims: &Claims, now: u64) -> bool {
    claims.exp.saturating_add(LEEWAY_SECONDS) < now
}

pub struct JwksVerifier {
    jwks_url: String,
    http: reqwest::Client,
    validation: Validation,
    keys: RwLock<HashMap<String, DecodingKey>>,
    verified: RwLock<VerifiedTokens>,
    /// Held while fetching (single flight).
    refresh: tokio::sync::Mutex<Option<LastRefresh>>,
}

impl JwksVerifier {
    pub fn new(jwks_url: impl Into<String>, issuer: &str, audience: &str, http: reqwest::Client) -> Self {
        let mut validation = Validation::new(Algorithm::EdDSA);
        validation.set_issuer(&[issuer]);
        validation.set_audience(&[audience]);
        validation.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
        validation.leeway = LEEWAY_SECONDS;
        Self {
            jwks_url: jwks_url.into(),
            http,
            validation,
            keys: RwLock::new(HashMap::new()),
            verified: RwLock::new(VerifiedTokens::default()),
            refresh: tokio::sync::Mutex::new(None),
        }
    }

    /// Verifies the bearer token of an HTTP request.
    pub async fn verify_headers(&self, headers: &http::HeaderMap) -> Result<Claims, AuthError> {
        self.verify(bearer_token_of(headers).ok_or(AuthError::Missing)?).await
    }

    pub async fn verify(&self, token: &str) -> Result<Claims, AuthError> {
        let now = jsonwebtoken::get_current_timestamp();
        let generation = match self.verified.read().unwrap_or_else(PoisonError::into_inner).get(token, now) {
            Ok(claims) => return Ok(claims),
            Err(generation) => generation,
        };
        let claims = self.verify_signature(token).await?;
        self.verified.write().unwrap_or_else(PoisonError::into_inner).remember(token, &claims, now, generation);
        Ok(claims)
    }

    /// The whole check of a token not verified before: its header, its key, its signature and its claims.
    async fn verify_signature(&self, token: &str) -> Result<Claims, AuthError> {
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
        self.keys.read().unwrap_or_else(PoisonError::into_inner).get(kid).cloned()
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
        self.install_keys(keys);
        Ok(())
    }

    /// Replaces the signing keys, and forgets every token verified with the ones before: a key no longer published
    /// must stop its tokens at once.
    fn install_keys(&self, keys: HashMap<String, DecodingKey>) {
        let mut installed = self.keys.write().unwrap_or_else(PoisonError::into_inner);
        let mut verified = self.verified.write().unwrap_or_else(PoisonError::into_inner);
        verified.claims.clear();
        verified.keys_generation += 1;
        *installed = keys;
    }

    async fn fetch(&self) -> Result<JwkSet, reqwest::Error> {
        // Made inside a request: its trace context puts the user-service's JWKS span in the same trace.
        let request = self.http.get(&self.jwks_url).headers(crate::telemetry::trace_headers());
        request.timeout(JWKS_FETCH_TIMEOUT).send().await?.error_for_status()?.json().await
    }
}

/// Ed25519 keys for tests that sign tokens as the user-service does.
#[cfg(any(test, feature = "testing"))]
pub mod testing {
    use jsonwebtoken::EncodingKey;

    /// DER prefix of a PKCS#8 v1 Ed25519 private key; the 32-byte seed follows it.
    const PKCS8_ED25519_PREFIX: [u8; 16] =
        [0x30, 0x2e, 0x02, 0x01, 0x00, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x04, 0x22, 0x04, 0x20];

    /// The Ed25519 signing key of `seed`.
    pub fn ed25519_key(seed: [u8; 32]) -> EncodingKey {
        let mut der = PKCS8_ED25519_PREFIX.to_vec();
        der.extend_from_slice(&seed);
        EncodingKey::from_ed_der(&der)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use jsonwebtoken::{EncodingKey, Header, jwk::Jwk};

    const ISSUER: &str = "user-service";
    const AUDIENCE: &str = "ecommerce-api";

    /// A verifier whose JWKS endpoint cannot be reached, holding the public key of `seed` under `kid`.
    fn verifier_with_key(seed: [u8; 32], kid: &str) -> (JwksVerifier, EncodingKey) {
        // Port 9 (discard) on loopback: nothing listens, so a fetch fails at once.
        let http = crate::tls::http_client(&crate::config::TlsRoots::default()).expect("a client").build();
        let verifier =
            JwksVerifier::new("http://127.0.0.1:9/.well-known/jwks.json", ISSUER, AUDIENCE, http.expect("a client"));
        let key = testing::ed25519_key(seed);
        verifier.install_keys(HashMap::from([(kid.to_owned(), public_key(&key))]));
        (verifier, key)
    }

    fn public_key(key: &EncodingKey) -> DecodingKey {
        DecodingKey::from_jwk(&Jwk::from_encoding_key(key, Algorithm::EdDSA).expect("a JWK")).expect("a key")
    }

    fn token(key: &EncodingKey, kid: &str, exp: u64) -> String {
        let mut header = Header::new(Algorithm::EdDSA);
        header.kid = Some(kid.to_owned());
        let claims = serde_json::json!({
            "sub": "u1", "username": "alice", "email": "alice@example.com", "role": "customer",
            "iss": ISSUER, "aud": AUDIENCE, "exp": exp,
        });
        jsonwebtoken::encode(&header, &claims, key).expect("signing works")
    }

    fn claims(exp: u64) -> Claims {
        Claims {
            sub: "u1".into(),
            username: "alice".into(),
            email: "alice@example.com".into(),
            role: Role::Customer,
            exp,
        }
    }

    #[tokio::test]
    async fn a_verified_token_is_answered_from_memory_without_its_key() {
        let (verifier, key) = verifier_with_key([1; 32], "k1");
        let token = token(&key, "k1", jsonwebtoken::get_current_timestamp() + 3_600);
        assert_eq!(verifier.verify(&token).await.expect("a valid token").sub, "u1");
        // Without its key, only the memory of the first check can accept it (the JWKS cannot be fetched).
        verifier.keys.write().expect("not poisoned").clear();
        assert_eq!(verifier.verify(&token).await.expect("remembered").sub, "u1");
        // Another text is checked in full: a changed signature is refused, not matched to the remembered token.
        let (head, signature) = token.rsplit_once('.').expect("three parts");
        let tampered = format!("{head}.{}", signature.chars().rev().collect::<String>());
        assert!(verifier.verify(&tampered).await.is_err());
    }

    #[tokio::test]
    async fn new_signing_keys_forget_the_tokens_verified_with_the_old_ones() {
        let (verifier, key) = verifier_with_key([2; 32], "k1");
        let token = token(&key, "k1", jsonwebtoken::get_current_timestamp() + 3_600);
        verifier.verify(&token).await.expect("a valid token");
        // The JWKS now publishes another key only (a rotation that retired k1).
        verifier.install_keys(HashMap::from([("k2".to_owned(), public_key(&testing::ed25519_key([3; 32])))]));
        assert!(verifier.verify(&token).await.is_err(), "a token of a retired key must be refused at once");
    }

    #[test]
    fn a_remembered_token_expires_as_a_verified_one_would() {
        let mut verified = VerifiedTokens::default();
        verified.remember("t", &claims(1_000), 990, 0);
        assert!(verified.get("t", 1_000 + LEEWAY_SECONDS).is_ok(), "within the leeway");
        assert_eq!(verified.get("t", 1_001 + LEEWAY_SECONDS).err(), Some(0), "past the leeway");
        assert!(verified.get("other", 990).is_err());
    }

    #[test]
    fn a_token_checked_against_keys_replaced_meanwhile_is_not_remembered() {
        let mut verified = VerifiedTokens { keys_generation: 1, ..VerifiedTokens::default() };
        verified.remember("t", &claims(1_000), 990, 0);
        assert!(verified.get("t", 990).is_err());
        verified.remember("t", &claims(1_000), 990, 1);
        assert!(verified.get("t", 990).is_ok());
    }

    #[test]
    fn the_memory_is_bounded_and_makes_room_from_the_expired_tokens_first() {
        let mut verified = VerifiedTokens::default();
        let now = 10_000;
        for n in 0..VERIFIED_TOKENS_KEPT {
            // Half of them expired by `now`.
            let exp = if n % 2 == 0 { now - LEEWAY_SECONDS - 1 } else { now + 3_600 };
            verified.remember(&format!("t{n}"), &claims(exp), now - 3_600, 0);
        }
        verified.remember("new", &claims(now + 3_600), now, 0);
        assert_eq!(verified.claims.len(), VERIFIED_TOKENS_KEPT / 2 + 1);
        assert!(verified.get("t1", now).is_ok() && verified.get("new", now).is_ok());
        // All live and full: it starts over rather than grow.
        let mut full = VerifiedTokens::default();
        for n in 0..=VERIFIED_TOKENS_KEPT {
            full.remember(&format!("t{n}"), &claims(now + 3_600), now, 0);
        }
        assert_eq!(full.claims.len(), 1);
    }

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
