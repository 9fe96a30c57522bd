//! The HTTP surface: health probes and the GraphQL endpoint, with JSON 404/405 for everything else.
mod graphql;
mod health;

use axum::{
    Router,
    http::{Method, StatusCode, Uri},
    routing::get,
};

pub use graphql::GraphqlEndpoint;
use platform::http::observe;

use std::sync::Arc;

use crate::{error::HttpError, metrics::Metrics, state::AppState};

pub fn router(state: AppState, endpoint: GraphqlEndpoint, metrics: Arc<Metrics>) -> Router {
    let probes =
        Router::new().route("/health", get(health::health)).route("/ready", get(health::ready)).with_state(state);
    let api = Router::new().route("/graphql", get(graphql::graphiql).post(graphql::execute)).with_state(endpoint);
    let routes = probes
        .merge(api)
        .route("/metrics", get(observe::metrics).with_state(metrics.registry.clone()))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed);
    observe::counted(routes, metrics.http.clone())
}

async fn not_found(uri: Uri) -> HttpError {
    HttpError::new(StatusCode::NOT_FOUND, "NOT_FOUND", format!("No route for {}", uri.path()))
}

async fn method_not_allowed(method: Method, uri: Uri) -> HttpError {
    HttpError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "METHOD_NOT_ALLOWED",
        format!("Method {method} not allowed on {}", uri.path()),
    )
}
