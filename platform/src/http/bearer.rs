//! Bearer-token checks for axum routes, the same in every HTTP service that checks tokens: `Authenticated`
//! for any valid token, `Admin` for role admin. The router's state says where its verifier is (`AsRef`).
use axum::{
    extract::FromRequestParts,
    http::{StatusCode, request::Parts},
};

use super::error::ApiError;
use crate::auth::{Claims, JwksVerifier};

pub struct Authenticated(pub Claims);

pub struct Admin(pub Claims);

impl<S> FromRequestParts<S> for Authenticated
where
    S: AsRef<JwksVerifier> + Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let claims = state
            .as_ref()
            .verify_headers(&parts.headers)
            .await
            .inspect_err(|error| tracing::debug!(%error, "rejected token"))?;
        Ok(Self(claims))
    }
}

impl<S> FromRequestParts<S> for Admin
where
    S: AsRef<JwksVerifier> + Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let Authenticated(claims) = Authenticated::from_request_parts(parts, state).await?;
        if claims.is_admin() {
            Ok(Self(claims))
        } else {
            Err(ApiError::new(StatusCode::FORBIDDEN, "Admin role required"))
        }
    }
}
