//! The public REST surface. Handlers stay thin: check the caller, shape the downstream call,
//! relay the answer with its real status.
mod auth;
pub(crate) mod health;
pub(crate) mod orders;
pub(crate) mod payments;
pub(crate) mod products;
pub(crate) mod users;

use axum::{
    Router,
    http::{Method, StatusCode, Uri},
    routing::{get, post},
};

pub use auth::{Admin, Authenticated};

use crate::{error::ApiError, state::AppState};

pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/health", get(health::health))
        .route("/ready", get(health::ready))
        .route("/users/register", post(users::register))
        .route("/users/login", post(users::login))
        .route("/users/me", get(users::me))
        .route("/products", get(products::list).post(products::create))
        .route("/products/{id}", get(products::get).patch(products::update).delete(products::delete))
        .route("/graphql", get(products::graphiql).post(products::graphql))
        .route("/orders", get(orders::list).post(orders::create))
        .route("/orders/{id}", get(orders::get))
        .route("/payments", post(payments::pay))
        .route("/metrics", get(crate::metrics::render))
        .merge(crate::openapi::router())
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(axum::middleware::from_fn_with_state(
            state.metrics.http.clone(),
            platform::http::observe::track_requests,
        ))
        .with_state(state)
}

async fn not_found(uri: Uri) -> ApiError {
    ApiError::new(StatusCode::NOT_FOUND, format!("No route for {}", uri.path()))
}

async fn method_not_allowed(method: Method, uri: Uri) -> ApiError {
    ApiError::new(StatusCode::METHOD_NOT_ALLOWED, format!("Method {method} not allowed on {}", uri.path()))
}
