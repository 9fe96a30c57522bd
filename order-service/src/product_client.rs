//! Asks the product-service (GraphQL) for the product an order is for, to take a price snapshot.
//!
//! Concurrent lookups of one product share one request: a lookup that finds another of the same product in flight
//! waits for its answer instead of sending its own (request coalescing). Under load most orders are for a few
//! products, and each lookup cost the product-service and this service ~0.1 ms of CPU, a tenth of an order's
//! work on the local stack. The shared answer is no older than the request it joins, which started after the
//! product-service's own cache had already made prices up to `PRODUCT_CACHE_TTL_MS` old across its replicas; a
//! lookup that finds none in flight sends its own. The request runs in a task of its own, so a caller that gives
//! up (its client went away) never takes the answer from the others; it joins the trace of the lookup that sent it.
use std::{
    collections::HashMap,
    sync::{Arc, Mutex, PoisonError},
    time::Duration,
};

use futures::{
    FutureExt as _,
    future::{BoxFuture, Shared},
};
use prometheus::IntCounter;
use serde::Deserialize;
use serde_json::json;
use tracing::Instrument as _;

use crate::domain::Money;

/// Variables carry the client's input: it is never pasted into the query text.
const PRODUCT_QUERY: &str = "query OrderProduct($id: ID!) { product(id: $id) { id name price } }";

#[derive(Debug, Clone, PartialEq)]
pub struct ProductSnapshot {
    pub id: String,
    pub name: String,
    pub unit_price: Money,
}

#[derive(Debug, Clone, thiserror::Error)]
pub enum CatalogError {
    /// Unreachable, timed out, or answered with a server error: the order cannot be priced now.
    #[error("product-service unavailable: {0}")]
    Unavailable(String),
}

type Answer = Result<Option<ProductSnapshot>, CatalogError>;

/// A lookup in flight, which every caller asking for the same product awaits.
type Lookup = Shared<BoxFuture<'static, Answer>>;

#[derive(Clone)]
pub struct ProductClient {
    http: reqwest::Client,
    graphql_url: String,
    timeout: Duration,
    /// By product id; a lookup takes itself out when its answer is in.
    in_flight: Arc<Mutex<HashMap<String, Lookup>>>,
    /// Lookups answered by another's request.
    shared: IntCounter,
}

#[derive(Deserialize)]
struct GraphQlResponse {
    data: Option<ProductData>,
    #[serde(default)]
    errors: Vec<serde_json::Value>,
}

#[derive(Deserialize)]
struct ProductData {
    product: Option<ProductFields>,
}

#[derive(Deserialize)]
struct ProductFields {
    id: String,
    name: String,
    price: f64,
}

impl ProductClient {
    /// `shared` counts the lookups answered by a request another lookup sent.
    pub fn new(http: reqwest::Client, base_url: &str, timeout: Duration, shared: IntCounter) -> Self {
        Self { http, graphql_url: format!("{base_url}/graphql"), timeout, in_flight: Arc::default(), shared }
    }

    /// `Ok(None)` when the product does not exist. Shares the request of a lookup of the same product in flight.
    pub async fn product(&self, id: &str, request_id: Option<&str>) -> Answer {
        let lookup = {
            let mut in_flight = self.in_flight.lock().unwrap_or_else(PoisonError::into_inner);
            if let Some(lookup) = in_flight.get(id) {
                self.shared.inc();
                tracing::debug!(product_id = id, "the price comes from a lookup in flight");
                lookup.clone()
            } else {
                let lookup = self.send(id.to_owned(), request_id.map(str::to_owned));
                in_flight.insert(id.to_owned(), lookup.clone());
                lookup
            }
        };
        lookup.await
    }

    /// Starts the request for `id` in a task of its own (in the caller's span), which takes itself out of the
    /// lookups in flight once answered.
    fn send(&self, id: String, request_id: Option<String>) -> Lookup {
        let client = self.clone();
        let task = tokio::spawn(
            async move {
                let answer = client.request(&id, request_id.as_deref()).await;
                client.in_flight.lock().unwrap_or_else(PoisonError::into_inner).remove(&id);
                answer
            }
            .in_current_span(),
        );
        async move { task.await.unwrap_or_else(|error| Err(CatalogError::Unavailable(error.to_string()))) }
            .boxed()
            .shared()
    }

    async fn request(&self, id: &str, request_id: Option<&str>) -> Answer {
        let mut request = self
            .http
            .post(&self.graphql_url)
            .timeout(self.timeout)
            .headers(crate::telemetry::trace_headers())
            .json(&json!({ "query": PRODUCT_QUERY, "variables": { "id": id } }));
        if let Some(request_id) = request_id {
            request = request.header("x-request-id", request_id);
        }
        let response = request.send().await.map_err(|error| CatalogError::Unavailable(error.to_string()))?;
        if !response.status().is_success() {
            return Err(CatalogError::Unavailable(format!("status {}", response.status())));
        }
        let body: GraphQlResponse =
            response.json().await.map_err(|error| CatalogError::Unavailable(error.to_string()))?;
        if !body.errors.is_empty() {
            return Err(CatalogError::Unavailable(format!("GraphQL errors: {:?}", body.errors)));
        }
        let Some(product) = body.data.and_then(|data| data.product) else {
            return Ok(None);
        };
        let unit_price = Money::from_decimal(product.price)
            .ok_or_else(|| CatalogError::Unavailable(format!("product {} has an invalid price", product.id)))?;
        Ok(Some(ProductSnapshot { id: product.id, name: product.name, unit_price }))
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use axum::{Json, Router, routing::post};
    use tokio::sync::watch;

    use super::*;

    /// A product-service that counts its lookups and holds every answer until opened.
    async fn catalogue(lookups: Arc<AtomicUsize>, gate: watch::Receiver<bool>) -> String {
        let router = Router::new().route(
            "/graphql",
            post(move |Json(_): Json<serde_json::Value>| async move {
                lookups.fetch_add(1, Ordering::SeqCst);
                let _ = gate.clone().wait_for(|open| *open).await;
                Json(json!({"data": {"product": {"id": "1", "name": "Phone", "price": 10.0}}}))
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("a free port");
        let url = format!("http://127.0.0.1:{}", listener.local_addr().expect("bound").port());
        tokio::spawn(async move { axum::serve(listener, router).await });
        url
    }

    fn http() -> reqwest::Client {
        platform::tls::http_client(&platform::config::TlsRoots::default()).expect("a client").build().expect("a client")
    }

    async fn until(what: &str, condition: impl Fn() -> bool) {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        while !condition() {
            assert!(tokio::time::Instant::now() < deadline, "{what}");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    #[tokio::test]
    async fn a_lookup_answers_those_that_joined_it_after_its_caller_went_away_and_never_outlives_its_answer() {
        let lookups = Arc::new(AtomicUsize::new(0));
        let (open, gate) = watch::channel(false);
        let url = catalogue(lookups.clone(), gate).await;
        let shared = IntCounter::new("shared", "lookups shared").expect("a counter");
        let client = ProductClient::new(http(), &url, Duration::from_secs(30), shared.clone());

        let first = tokio::spawn({
            let client = client.clone();
            async move { client.product("1", None).await }
        });
        until("the first lookup reached the catalogue", || lookups.load(Ordering::SeqCst) == 1).await;
        let second = tokio::spawn({
            let client = client.clone();
            async move { client.product("1", None).await }
        });
        until("the second lookup joined the first", || shared.get() == 1).await;
        first.abort();
        assert!(first.await.expect_err("aborted").is_cancelled());
        open.send_replace(true);
        let price = second.await.expect("the second lookup").expect("an answer").expect("the product");
        assert_eq!(price.unit_price, Money::from_cents(1_000));
        assert_eq!(lookups.load(Ordering::SeqCst), 1, "one request answered both");

        // Answered, the lookup is no longer in flight: the next one asks again.
        until("the answered lookup left", || client.in_flight.lock().unwrap().is_empty()).await;
        client.product("1", None).await.expect("an answer").expect("the product");
        assert_eq!(lookups.load(Ordering::SeqCst), 2);
        assert_eq!(shared.get(), 1);
    }

    #[tokio::test]
    async fn a_lookup_whose_only_caller_went_away_still_finishes_and_leaves() {
        let lookups = Arc::new(AtomicUsize::new(0));
        let (open, gate) = watch::channel(false);
        let url = catalogue(lookups.clone(), gate).await;
        let client = ProductClient::new(
            http(),
            &url,
            Duration::from_secs(30),
            IntCounter::new("shared", "lookups shared").expect("a counter"),
        );
        let only = tokio::spawn({
            let client = client.clone();
            async move { client.product("1", None).await }
        });
        until("the lookup reached the catalogue", || lookups.load(Ordering::SeqCst) == 1).await;
        only.abort();
        open.send_replace(true);
        // Nobody awaits it any more; it runs to its answer all the same, so no later order joins a dead lookup.
        until("the abandoned lookup left", || client.in_flight.lock().unwrap().is_empty()).await;
        client.product("1", None).await.expect("an answer").expect("the product");
        assert_eq!(lookups.load(Ordering::SeqCst), 2);
    }
}
