//! `POST /graphql` runs a GraphQL request; `GET /graphql` serves GraphiQL.
use std::sync::Arc;

use async_graphql::http::GraphiQLSource;
use async_graphql_axum::GraphQLResponse;
use axum::{
    body::Bytes,
    extract::{State, rejection::BytesRejection},
    http::{HeaderMap, StatusCode},
    response::{Html, IntoResponse, Response},
};

use crate::{
    auth::{JwksVerifier, bearer_token},
    error::HttpError,
    graphql::{Caller, ProductSchema},
};

#[derive(Clone)]
pub struct GraphqlEndpoint {
    pub schema: ProductSchema,
    pub verifier: Arc<JwksVerifier>,
    /// Enforced by `DefaultBodyLimit` on the router; kept here to say it in the 413 message.
    pub max_body_bytes: usize,
}

/// GraphiQL, pointed at a relative `/graphql` so it also works behind the gateway.
pub async fn graphiql() -> Html<String> {
    Html(GraphiQLSource::build().endpoint("/graphql").finish())
}

/// Reads the body itself (rather than with async-graphql-axum's extractor) so that an oversized or malformed
/// body gets this service's JSON error instead of a plain-text rejection.
pub async fn execute(
    State(endpoint): State<GraphqlEndpoint>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let body = match body {
        Ok(body) => body,
        Err(rejection) if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE => {
            let message = format!("Request body exceeds {} bytes", endpoint.max_body_bytes);
            return HttpError::new(StatusCode::PAYLOAD_TOO_LARGE, "PAYLOAD_TOO_LARGE", message).into_response();
        }
        Err(_) => {
            return HttpError::new(StatusCode::BAD_REQUEST, "BAD_REQUEST", "Cannot read the request body")
                .into_response();
        }
    };
    // One operation per request: batches would multiply the per-request limits.
    let request = match serde_json::from_slice::<async_graphql::Request>(&body) {
        Ok(request) if !request.query.trim().is_empty() => request,
        _ => {
            let message = r#"The body must be one JSON GraphQL request: {"query": "...", "variables": {...}}"#;
            return HttpError::new(StatusCode::BAD_REQUEST, "BAD_REQUEST", message).into_response();
        }
    };
    let caller = Caller::new(bearer_token(&headers).map(str::to_owned), endpoint.verifier.clone());
    GraphQLResponse::from(endpoint.schema.execute(request.data(caller)).await).into_response()
}
