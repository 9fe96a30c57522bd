use axum::{Json, extract::State, http::header, response::IntoResponse};

use crate::state::AppState;

/// The public half of the signing key, for every service that verifies tokens.
pub async fn jwks(State(state): State<AppState>) -> impl IntoResponse {
    ([(header::CACHE_CONTROL, "public, max-age=300")], Json(state.tokens.jwks().clone()))
}
