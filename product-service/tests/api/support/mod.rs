//! Spawns the real product-service on port 0 against the MongoDB-protocol engine started by
//! `scripts/engines.py` (MONGODB_URI); every app gets its own database unless a test shares one on purpose,
//! and its own token issuer serving a JWKS.
#![allow(dead_code)]

pub mod proxy;

use std::collections::HashMap;

use product_service::{config::Config, startup::Application};
use serde_json::{Value, json};
use test_support::Running;

pub use test_support::Issuer;

pub fn unique_database() -> String {
    format!("products_test_{}", uuid::Uuid::new_v4().simple())
}

pub struct TestApp {
    pub running: Running,
    pub database: String,
    pub issuer: Issuer,
}

impl std::ops::Deref for TestApp {
    type Target = Running;
    fn deref(&self) -> &Running {
        &self.running
    }
}

/// Starts the app with test defaults overridden by `settings`, and waits until it is ready.
pub async fn spawn(settings: &[(&str, &str)]) -> TestApp {
    let app = spawn_unready(settings).await;
    app.wait_ready().await;
    app
}

/// Starts the app without waiting for MongoDB.
pub async fn spawn_unready(settings: &[(&str, &str)]) -> TestApp {
    test_support::logs_on_request("product-service");
    let issuer = Issuer::start().await;
    let uri = test_support::env("MONGODB_URI");
    let database = unique_database();
    let jwks_url = issuer.jwks_url();
    let mut source: HashMap<&str, &str> = HashMap::from([
        ("HOST", "127.0.0.1"),
        ("PORT", "0"),
        ("MONGODB_URI", uri.as_str()),
        ("MONGODB_DATABASE", database.as_str()),
        ("JWKS_URL", jwks_url.as_str()),
    ]);
    source.extend(settings.iter().copied());
    let database = source["MONGODB_DATABASE"].to_owned();
    let config = Config::from_source(&source).expect("test configuration is valid");
    let app = Application::build(config).await.expect("the app builds");
    let running = Running::spawn(app.port(), |stop| app.run_until(stop));
    TestApp { running, database, issuer }
}

impl TestApp {
    /// Graceful shutdown, waiting for the server task to finish.
    pub async fn stop(mut self) {
        self.running.stop().await;
    }

    /// POSTs `{"query", "variables"}` to /graphql, optionally with a bearer token; returns status and body.
    pub async fn post_graphql(&self, query: &str, variables: Value, token: Option<&str>) -> (u16, Value) {
        let mut request =
            self.client.post(self.url("/graphql")).json(&json!({ "query": query, "variables": variables }));
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        let response = request.send().await.expect("request sent");
        let status = response.status().as_u16();
        (status, response.json().await.expect("a JSON body"))
    }

    /// An anonymous GraphQL request that must get HTTP 200.
    pub async fn graphql(&self, query: &str, variables: Value) -> Value {
        self.graphql_with(None, query, variables).await
    }

    /// A GraphQL request as an admin of this app's issuer.
    pub async fn graphql_as_admin(&self, query: &str, variables: Value) -> Value {
        let token = self.issuer.token("admin");
        self.graphql_with(Some(&token), query, variables).await
    }

    pub async fn graphql_with(&self, token: Option<&str>, query: &str, variables: Value) -> Value {
        let (status, body) = self.post_graphql(query, variables, token).await;
        assert_eq!(status, 200, "GraphQL answered {status}: {body}");
        body
    }

    /// Adds a product as admin and returns it (fields id, name, price, description).
    pub async fn add_product(&self, name: &str, price: f64, description: Option<&str>) -> Value {
        let body = self
            .graphql_as_admin(
                "mutation($name: String!, $price: Float!, $description: String) {
                    addProduct(name: $name, price: $price, description: $description) { id name price description }
                }",
                json!({ "name": name, "price": price, "description": description }),
            )
            .await;
        assert_eq!(body["errors"], Value::Null, "addProduct failed: {body}");
        body["data"]["addProduct"].clone()
    }

    /// Ids of `products(first: 100)`, in order.
    pub async fn product_ids(&self) -> Vec<String> {
        let body = self.graphql("{ products(first: 100) { id } }", json!({})).await;
        ids(&body["data"]["products"])
    }
}

/// The `id`s of a JSON array of products.
pub fn ids(products: &Value) -> Vec<String> {
    products
        .as_array()
        .unwrap_or_else(|| panic!("expected a list of products, got {products}"))
        .iter()
        .map(|product| product["id"].as_str().expect("an id").to_owned())
        .collect()
}

/// `extensions.code` of the first error of a GraphQL response.
pub fn error_code(body: &Value) -> &str {
    body["errors"][0]["extensions"]["code"].as_str().unwrap_or_else(|| panic!("expected an error code in {body}"))
}

/// `message` of the first error of a GraphQL response.
pub fn error_message(body: &Value) -> &str {
    body["errors"][0]["message"].as_str().unwrap_or_else(|| panic!("expected an error message in {body}"))
}
