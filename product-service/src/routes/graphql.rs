//! `POST /graphql` runs a GraphQL request; `GET /graphql` serves GraphiQL.
use std::sync::Arc;

use tracing::Instrument as _;

use async_graphql::http::GraphiQLSource;
use async_graphql_axum::GraphQLResponse;
use axum::{
    body::Bytes,
    extract::{State, rejection::BytesRejection},
    http::{HeaderMap, StatusCode},
    response::{Html, IntoResponse, Response},
};

use crate::{
    auth::{JwksVerifier, bearer_token_of},
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
    // A child of the request span (`POST /graphql`), named by the operation so traces tell operations apart.
    let name = operation_name(&request).map(str::to_owned);
    let span = tracing::info_span!(
        "graphql",
        otel.name = name.as_deref().unwrap_or("GraphQL Operation"),
        graphql.operation.name = name.as_deref(),
    );
    let caller = Caller::new(bearer_token_of(&headers).map(str::to_owned), endpoint.verifier.clone());
    GraphQLResponse::from(endpoint.schema.execute(request.data(caller)).instrument(span).await).into_response()
}

/// The operation's name: the request's `operationName`, else the name in the query text
/// (`query OrderProduct($id: ID!) {…}`). It is client input headed for traces, so only a valid
/// GraphQL name of modest length counts; anonymous operations have none.
fn operation_name(request: &async_graphql::Request) -> Option<&str> {
    let name = match request.operation_name.as_deref() {
        Some(name) => name,
        None => {
            let text = request.query.trim_start();
            let rest = ["query", "mutation", "subscription"].iter().find_map(|keyword| text.strip_prefix(keyword))?;
            // `queryX {…}` is not the keyword `query` followed by a name.
            if !rest.starts_with(char::is_whitespace) {
                return None;
            }
            rest.trim_start().split(|c: char| !(c.is_ascii_alphanumeric() || c == '_')).next()?
        }
    };
    let valid = (1..=64).contains(&name.len())
        && name.starts_with(|c: char| c.is_ascii_alphabetic() || c == '_')
        && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
    valid.then_some(name)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn name_of(query: &str, named: Option<&str>) -> Option<String> {
        let mut request = async_graphql::Request::new(query);
        if let Some(name) = named {
            request = request.operation_name(name);
        }
        operation_name(&request).map(str::to_owned)
    }

    #[test]
    fn the_operation_name_comes_from_the_request_or_the_query_text() {
        assert_eq!(
            name_of("query OrderProduct($id: ID!) { product(id: $id) { id } }", None).as_deref(),
            Some("OrderProduct")
        );
        assert_eq!(name_of("  mutation AddProduct { addProduct { id } }", None).as_deref(), Some("AddProduct"));
        assert_eq!(name_of("query A { a } query B { b }", Some("B")).as_deref(), Some("B"));
    }

    #[test]
    fn anonymous_and_odd_operations_have_no_name() {
        assert_eq!(name_of("{ products { id } }", None), None);
        assert_eq!(name_of("query { products { id } }", None), None);
        assert_eq!(name_of("queryX { products { id } }", None), None);
        assert_eq!(name_of("{ a }", Some("has space")), None);
        assert_eq!(name_of("{ a }", Some(&"n".repeat(65))), None);
    }
}
