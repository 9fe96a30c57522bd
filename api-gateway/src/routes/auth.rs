//! Bearer-token checks at the edge: `Authenticated` for any valid token, `Admin` for role admin.
use axum::{
    extract::FromRequestParts,
    http::{StatusCode, request::Parts},
};

use crate::{
    auth::{AuthError, Claims},
    error::ApiError,
    state::AppState,
};

pub struct Authenticated(pub Claims);

pub struct Admin(pub Claims);

impl FromRequestParts<AppState> for Authenticated {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Self::Rejection> {
        match state.verifier.verify_headers(&parts.headers).await {
            Ok(claims) => Ok(Self(claims)),
            Err(AuthError::Missing) => Err(ApiError::unauthorized("Missing bearer token")),
            Err(AuthError::Invalid(reason)) => {
                tracing::debug!(%reason, "rejected token");
                Err(ApiError::unauthorized("Invalid or expired token"))
            }
            Err(AuthError::KeysUnavailable(_)) => Err(ApiError::unavailable("Cannot verify tokens right now")),
        }
    }
}

impl FromRequestParts<AppState> for Admin {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Self::Rejection> {
        let Authenticated(claims) = Authenticated::from_request_parts(parts, state).await?;
        if claims.is_admin() {
            Ok(Self(claims))
        } else {
            Err(ApiError::new(StatusCode::FORBIDDEN, "Admin role required"))
        }
    }
}
