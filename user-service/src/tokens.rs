//! JWT issuance with an Ed25519 key only this service holds, and the JWKS that publishes its public half.
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use jsonwebtoken::{
    Algorithm, DecodingKey, EncodingKey, Header, Validation,
    jwk::{Jwk, JwkSet, PublicKeyUse, ThumbprintHash},
};
use serde::{Deserialize, Serialize};

use crate::{config::SigningKeySource, domain::Role};

/// What every token says: what the services that check it read (`platform::auth::Claims`: who the bearer is, in
/// which role, until when), and what this issuer adds for their checks (`iss`, `aud`) and for audit (`iat`, `jti`).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Claims {
    #[serde(flatten)]
    pub bearer: platform::auth::Claims,
    pub iss: String,
    pub aud: String,
    pub iat: u64,
    pub jti: String,
}

#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("the signing key is not a PKCS#8 Ed25519 private key in PEM form: {0}")]
    Invalid(jsonwebtoken::errors::Error),
}

pub struct TokenIssuer {
    encoding: EncodingKey,
    decoding: DecodingKey,
    kid: String,
    jwks: JwkSet,
    validation: Validation,
    issuer: String,
    audience: String,
    ttl: Duration,
}

/// DER prefix of a PKCS#8 v1 Ed25519 private key; the 32-byte seed follows it.
const PKCS8_ED25519_PREFIX: [u8; 16] =
    [0x30, 0x2e, 0x02, 0x01, 0x00, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x04, 0x22, 0x04, 0x20];

/// A fresh Ed25519 private key as PKCS#8 PEM (used in development mode and by `generate-jwt-key`).
pub fn generate_private_key_pem() -> String {
    use base64::Engine as _;
    let mut der = PKCS8_ED25519_PREFIX.to_vec();
    der.extend_from_slice(&rand::random::<[u8; 32]>());
    let body = base64::engine::general_purpose::STANDARD.encode(der);
    format!("-----BEGIN PRIVATE KEY-----\n{body}\n-----END PRIVATE KEY-----\n")
}

impl TokenIssuer {
    pub fn new(source: &SigningKeySource, issuer: &str, audience: &str, ttl: Duration) -> Result<Self, KeyError> {
        let pem = match source {
            SigningKeySource::Pem(pem) => pem.clone(),
            SigningKeySource::Generate => {
                tracing::warn!(
                    "no JWT_PRIVATE_KEY_FILE: generated a development signing key; tokens die with this process"
                );
                generate_private_key_pem()
            }
        };
        let encoding = EncodingKey::from_ed_pem(pem.as_bytes()).map_err(KeyError::Invalid)?;
        let mut jwk = Jwk::from_encoding_key(&encoding, Algorithm::EdDSA).map_err(KeyError::Invalid)?;
        let kid = jwk.thumbprint(ThumbprintHash::SHA256).map_err(KeyError::Invalid)?;
        jwk.common.key_id = Some(kid.clone());
        jwk.common.public_key_use = Some(PublicKeyUse::Signature);
        let decoding = DecodingKey::from_jwk(&jwk).map_err(KeyError::Invalid)?;
        let mut validation = Validation::new(Algorithm::EdDSA);
        validation.set_issuer(&[issuer]);
        validation.set_audience(&[audience]);
        validation.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
        validation.leeway = 5;
        Ok(Self {
            encoding,
            decoding,
            kid,
            jwks: JwkSet { keys: vec![jwk] },
            validation,
            issuer: issuer.to_owned(),
            audience: audience.to_owned(),
            ttl,
        })
    }

    pub fn jwks(&self) -> &JwkSet {
        &self.jwks
    }

    pub fn issue(
        &self,
        user_id: &str,
        username: &str,
        email: &str,
        role: Role,
    ) -> Result<String, jsonwebtoken::errors::Error> {
        let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default().as_secs();
        let claims = Claims {
            bearer: platform::auth::Claims {
                sub: user_id.to_owned(),
                username: username.to_owned(),
                email: email.to_owned(),
                role: role.into(),
                exp: now + self.ttl.as_secs(),
            },
            iss: self.issuer.clone(),
            aud: self.audience.clone(),
            iat: now,
            jti: uuid::Uuid::new_v4().to_string(),
        };
        let mut header = Header::new(Algorithm::EdDSA);
        header.kid = Some(self.kid.clone());
        jsonwebtoken::encode(&header, &claims, &self.encoding)
    }

    /// Checks signature (EdDSA only, so `none` and HS256 confusion fail), `exp`, `iss` and `aud`.
    pub fn verify(&self, token: &str) -> Result<Claims, jsonwebtoken::errors::Error> {
        let header = jsonwebtoken::decode_header(token)?;
        if header.kid.as_deref() != Some(self.kid.as_str()) {
            return Err(jsonwebtoken::errors::ErrorKind::InvalidKeyFormat.into());
        }
        jsonwebtoken::decode::<Claims>(token, &self.decoding, &self.validation).map(|data| data.claims)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn issuer() -> TokenIssuer {
        TokenIssuer::new(&SigningKeySource::Generate, "user-service", "ecommerce-api", Duration::from_secs(60)).unwrap()
    }

    #[test]
    fn issued_tokens_verify_and_carry_the_claims() {
        let issuer = issuer();
        let token = issuer.issue("u1", "alice", "alice@example.com", Role::Admin).unwrap();
        let claims = issuer.verify(&token).unwrap();
        assert_eq!((claims.bearer.sub.as_str(), claims.bearer.role), ("u1", platform::auth::Role::Admin));
        let jwk = &issuer.jwks().keys[0];
        assert!(jwk.common.key_id.is_some());
    }

    #[test]
    fn tokens_of_another_key_are_rejected() {
        let token = issuer().issue("u1", "alice", "alice@example.com", Role::Admin).unwrap();
        assert!(issuer().verify(&token).is_err());
    }
}
