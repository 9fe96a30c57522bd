//! `Authorization: Bearer <jwt>` → verified claims, or a 401 with the shared error body.
use axum::{extract::FromRequestParts, http::request::Parts};

use crate::{error::ApiError, state::AppState, tokens::Claims};

pub struct Authenticated(pub Claims);

impl FromRequestParts<AppState> for Authenticated {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Self::Rejection> {
        let token = platform::auth::bearer_token_of(&parts.headers)
            .ok_or_else(|| ApiError::unauthorized("Missing bearer token"))?;
        state.tokens.verify(token).map(Self).map_err(|error| {
            tracing::debug!(%error, "rejected token");
            ApiError::unauthorized("Invalid or expired token")
        })
    }
}
