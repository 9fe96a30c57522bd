//! Defence in depth: the order-service verifies bearer tokens itself, whatever the gateway did.
use axum::{extract::FromRequestParts, http::request::Parts};

use crate::{
    auth::{AuthError, Claims},
    error::ApiError,
    state::AppState,
};

pub struct Authenticated(pub Claims);

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
