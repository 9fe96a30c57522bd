//! Who is calling: the bearer token of the request, verified on demand.
//!
//! Queries are public, so the token is checked only when a mutation asks for an admin, and at most once per
//! request however many mutations the document holds. A request without a `Caller` in its data (one executed
//! without going through the HTTP handler) is anonymous.
use std::sync::Arc;

use async_graphql::Context;
use tokio::sync::OnceCell;

use crate::{
    auth::{AuthError, Claims, JwksVerifier},
    error::ServiceError,
};

pub struct Caller {
    token: Option<String>,
    verifier: Arc<JwksVerifier>,
    verified: OnceCell<Result<Claims, AuthError>>,
}

impl Caller {
    pub fn new(token: Option<String>, verifier: Arc<JwksVerifier>) -> Self {
        Self { token, verifier, verified: OnceCell::new() }
    }

    /// The caller's claims when the token is valid and carries the `admin` role:
    /// UNAUTHENTICATED without a valid token, FORBIDDEN for other roles, SERVICE_UNAVAILABLE when the
    /// signing keys cannot be fetched.
    pub async fn require_admin(&self) -> Result<&Claims, ServiceError> {
        let verified = self
            .verified
            .get_or_init(|| async {
                match &self.token {
                    Some(token) => self.verifier.verify(token).await,
                    None => Err(AuthError::Missing),
                }
            })
            .await;
        let claims = verified.as_ref().map_err(ServiceError::from)?;
        if claims.is_admin() { Ok(claims) } else { Err(ServiceError::Forbidden) }
    }
}

/// [`Caller::require_admin`] for the caller of the request `ctx` belongs to.
pub async fn require_admin<'a>(ctx: &Context<'a>) -> Result<&'a Claims, ServiceError> {
    match ctx.data_opt::<Caller>() {
        Some(caller) => caller.require_admin().await,
        None => Err(ServiceError::Unauthenticated("Authentication required")),
    }
}
