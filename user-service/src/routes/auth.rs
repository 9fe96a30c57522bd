//! `Authorization: Bearer <jwt>` → verified claims, or a 401 with the shared error body.
use axum::{
    extract::FromRequestParts,
    http::{header, request::Parts},
};

use crate::{error::ApiError, startup::AppState, tokens::Claims};

pub struct Authenticated(pub Claims);

impl FromRequestParts<AppState> for Authenticated {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Self::Rejection> {
        let token = parts
            .headers
            .get(header::AUTHORIZATION)
            .and_then(|value| value.to_str().ok())
            .and_then(|value| value.strip_prefix("Bearer ").or_else(|| value.strip_prefix("bearer ")))
            .map(str::trim)
            .filter(|token| !token.is_empty())
            .ok_or_else(|| ApiError::unauthorized("Missing bearer token"))?;
        state.tokens.verify(token).map(Self).map_err(|error| {
            tracing::debug!(%error, "rejected token");
            ApiError::unauthorized("Invalid or expired token")
        })
    }
}
