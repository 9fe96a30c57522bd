use crate::support;

use std::time::{Duration, Instant};

use serde_json::{Value, json};
use support::error_message;

/// What GraphiQL and graphql-js (`getIntrospectionQuery` with every option on) send to learn the schema.
const INTROSPECTION_QUERY: &str = r#"
query IntrospectionQuery {
  __schema {
    description
    queryType { name }
    mutationType { name }
    subscriptionType { name }
    types { ...FullType }
    directives { name description isRepeatable locations args(includeDeprecated: true) { ...InputValue } }
  }
}
fragment FullType on __Type {
  kind name description specifiedByURL
  fields(includeDeprecated: true) {
    name description
    args(includeDeprecated: true) { ...InputValue }
    type { ...TypeRef }
    isDeprecated deprecationReason
  }
  inputFields(includeDeprecated: true) { ...InputValue }
  interfaces { ...TypeRef }
  enumValues(includeDeprecated: true) { name description isDeprecated deprecationReason }
  possibleTypes { ...TypeRef }
}
fragment InputValue on __InputValue {
  name description type { ...TypeRef } defaultValue isDeprecated deprecationReason
}
fragment TypeRef on __Type {
  kind name
  ofType { kind name ofType { kind name ofType { kind name ofType { kind name
    ofType { kind name ofType { kind name ofType { kind name ofType { kind name } } } }
  } } } }
}
"#;

#[tokio::test]
async fn the_standard_introspection_query_passes_the_default_limits() {
    let app = support::spawn(&[]).await;
    let body = app.graphql(INTROSPECTION_QUERY, json!({})).await;
    assert!(body["errors"].is_null(), "{body}");
    let types = body["data"]["__schema"]["types"].as_array().expect("types");
    assert!(types.iter().any(|t| t["name"] == "Product"));
    assert_eq!(body["data"]["__schema"]["mutationType"]["name"], "Mutation");
}

#[tokio::test]
async fn a_query_deeper_than_graphql_max_depth_is_rejected() {
    let app = support::spawn(&[("GRAPHQL_MAX_DEPTH", "1")]).await;
    let body = app.graphql(r#"{ product(id: "1") { name } }"#, json!({})).await;
    assert_eq!(error_message(&body), "Query is nested too deep.");
    assert_eq!(body["data"], Value::Null);
    let body = app.graphql(r#"query { ...F } fragment F on Query { product(id: "1") { name } }"#, json!({})).await;
    assert_eq!(error_message(&body), "Query is nested too deep.", "fragments do not hide depth");
    let body = app.graphql("{ __typename }", json!({})).await;
    assert_eq!(body["data"]["__typename"], "Query", "a flat query still runs");
}

#[tokio::test]
async fn introspection_nested_beyond_its_allowance_is_rejected() {
    let app = support::spawn(&[]).await;
    let depth = 20;
    let query = format!(
        "{{ __schema {{ types {{ fields {{ type {{ {} name {} }} }} }} }} }}",
        "ofType {".repeat(depth),
        "}".repeat(depth)
    );
    let body = app.graphql(&query, json!({})).await;
    assert_eq!(error_message(&body), "Query is nested too deep.");
}

#[tokio::test]
async fn too_many_aliased_database_fields_exceed_the_complexity_limit() {
    let app = support::spawn(&[]).await;
    let aliases = |count: usize| {
        let fields: Vec<String> = (0..count).map(|n| format!("p{n}: products(first: 1) {{ id }}")).collect();
        format!("{{ {} }}", fields.join(" "))
    };
    // Each alias costs 10 + 1: 45 fit in the default 500, 46 do not.
    let body = app.graphql(&aliases(45), json!({})).await;
    assert!(body["errors"].is_null(), "{body}");
    let body = app.graphql(&aliases(46), json!({})).await;
    assert_eq!(error_message(&body), "Query is too complex.");
    assert_eq!(body["data"], Value::Null);
}

#[tokio::test]
async fn graphql_max_complexity_is_configurable() {
    let app = support::spawn(&[("GRAPHQL_MAX_COMPLEXITY", "20")]).await;
    let body = app.graphql(r#"{ product(id: "1") { id name } }"#, json!({})).await;
    assert!(body["errors"].is_null(), "{body}");
    let body = app.graphql(r#"{ a: product(id: "1") { id } b: product(id: "2") { id } }"#, json!({})).await;
    assert_eq!(error_message(&body), "Query is too complex.");
}

#[tokio::test]
async fn a_fragment_bomb_is_rejected_quickly() {
    let app = support::spawn(&[]).await;
    // 4^20 (about 10^12) fields once expanded, in about 1 KB of text, nested less deeply than the parser's
    // own recursion limit (32) so that it reaches the expansion checks.
    let mut query = String::from("query { ...F0 }");
    for level in 0..20 {
        let next = level + 1;
        query.push_str(&format!(" fragment F{level} on Query {{ ...F{next} ...F{next} ...F{next} ...F{next} }}"));
    }
    query.push_str(" fragment F20 on Query { __typename }");
    let started = Instant::now();
    let body = app.graphql(&query, json!({})).await;
    assert_eq!(error_message(&body), "Query is too large.");
    assert!(started.elapsed() < Duration::from_secs(2), "took {:?}", started.elapsed());
}

#[tokio::test]
async fn a_self_spreading_fragment_is_rejected_quickly() {
    let app = support::spawn(&[]).await;
    let query = "query { ...A } fragment A on Query { __typename ...A ...A ...A }";
    let started = Instant::now();
    let body = app.graphql(query, json!({})).await;
    assert_eq!(error_message(&body), "Query contains a fragment cycle.");
    assert!(started.elapsed() < Duration::from_secs(2), "took {:?}", started.elapsed());
}

#[tokio::test]
async fn a_body_over_max_body_bytes_gets_a_json_413() {
    let app = support::spawn(&[("MAX_BODY_BYTES", "2048")]).await;
    let padding = " ".repeat(3_000);
    let response = app
        .client
        .post(app.url("/graphql"))
        .json(&json!({ "query": format!("{{ __typename {padding} }}") }))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 413);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["success"], false);
    assert_eq!(body["errors"][0]["extensions"]["code"], "PAYLOAD_TOO_LARGE");
    assert_eq!(body["message"], "Request body exceeds 2048 bytes");

    // The same limit holds for a chunked body, which announces no length up front.
    let status_line = post_chunked(&app, &[r#"{"query":"{ __typename "#, &padding, r#"}"}"#]).await;
    assert!(status_line.starts_with("HTTP/1.1 413"), "{status_line}");
}

/// POSTs the chunks to /graphql with `Transfer-Encoding: chunked` over a raw socket; returns the status line.
async fn post_chunked(app: &support::TestApp, chunks: &[&str]) -> String {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let address = app.address.trim_start_matches("http://");
    let mut stream = tokio::net::TcpStream::connect(address).await.unwrap();
    let mut request = format!(
        "POST /graphql HTTP/1.1\r\nHost: {address}\r\nContent-Type: application/json\r\n\
         Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
    );
    for chunk in chunks {
        request.push_str(&format!("{:x}\r\n{chunk}\r\n", chunk.len()));
    }
    request.push_str("0\r\n\r\n");
    // The server may answer and close before reading everything: a failed write is fine, the answer counts.
    let _ = stream.write_all(request.as_bytes()).await;
    let mut response = Vec::new();
    let _ = stream.read_to_end(&mut response).await;
    String::from_utf8_lossy(&response).lines().next().unwrap_or_default().to_owned()
}

#[tokio::test]
async fn a_body_that_is_not_one_graphql_request_gets_a_json_400() {
    let app = support::spawn(&[]).await;
    for body in ["not json", "{}", r#"{"query": "  "}"#, r#"[{"query":"{ __typename }"}]"#, r#"{"query": 42}"#] {
        let response = app
            .client
            .post(app.url("/graphql"))
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 400, "{body}");
        let json: Value = response.json().await.unwrap();
        assert_eq!(json["success"], false);
        assert_eq!(json["errors"][0]["extensions"]["code"], "BAD_REQUEST");
    }
}

#[tokio::test]
async fn syntax_and_schema_errors_are_graphql_errors_not_server_errors() {
    let app = support::spawn(&[]).await;
    for query in ["{ products { id ", "{ nope }", r#"{ products(first: "many") { id } }"#, "mutation { addProduct }"] {
        let body = app.graphql(query, json!({})).await;
        assert!(body["errors"][0]["message"].is_string(), "{query}: {body}");
    }
}
