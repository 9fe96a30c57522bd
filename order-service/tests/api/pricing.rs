//! The price an order takes from the catalogue: concurrent lookups of one product share one request to the
//! product-service, and a lookup that finds none in flight asks again.
use crate::support;

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
    time::Duration,
};

use tokio::{sync::watch, task::JoinSet};

/// The product-service's `product(id)` query, played by the test: it counts the lookups of each product, answers
/// with the prices set, and holds every answer while closed.
struct Catalogue {
    url: String,
    lookups: Arc<Mutex<HashMap<String, usize>>>,
    prices: Arc<Mutex<HashMap<String, f64>>>,
    open: watch::Sender<bool>,
    task: tokio::task::JoinHandle<()>,
}

impl Catalogue {
    async fn start(prices: &[(&str, f64)]) -> Self {
        use axum::{Json, Router, routing::post};
        let lookups = Arc::new(Mutex::new(HashMap::<String, usize>::new()));
        let prices = Arc::new(Mutex::new(
            prices.iter().map(|(id, price)| ((*id).to_owned(), *price)).collect::<HashMap<_, _>>(),
        ));
        let (open, gate) = watch::channel(true);
        let router = Router::new().route(
            "/graphql",
            post({
                let (lookups, prices) = (lookups.clone(), prices.clone());
                move |Json(body): Json<serde_json::Value>| async move {
                    let id = body["variables"]["id"].as_str().unwrap_or_default().to_owned();
                    *lookups.lock().unwrap().entry(id.clone()).or_default() += 1;
                    let mut gate = gate.clone();
                    let _ = gate.wait_for(|open| *open).await;
                    let price = prices.lock().unwrap().get(&id).copied();
                    let product = price.map(|price| serde_json::json!({"id": id, "name": "Phone", "price": price}));
                    Json(serde_json::json!({"data": {"product": product}}))
                }
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("a free port");
        let url = format!("http://127.0.0.1:{}", listener.local_addr().unwrap().port());
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, router).await;
        });
        Self { url, lookups, prices, open, task }
    }

    fn lookups(&self, id: &str) -> usize {
        self.lookups.lock().unwrap().get(id).copied().unwrap_or(0)
    }

    fn hold_answers(&self, hold: bool) {
        self.open.send_replace(!hold);
    }

    fn set_price(&self, id: &str, price: f64) {
        self.prices.lock().unwrap().insert(id.to_owned(), price);
    }
}

impl Drop for Catalogue {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn post_order(app: &support::TestApp, token: &str, product: &str) -> reqwest::Response {
    app.client
        .post(app.url("/orders"))
        .bearer_auth(token)
        .json(&serde_json::json!({"productId": product, "quantity": 2}))
        .send()
        .await
        .expect("request sent")
}

/// The `total` of a 201's order, read back.
async fn total_of(app: &support::TestApp, response: reqwest::Response) -> i64 {
    let status = response.status();
    let body: serde_json::Value = response.json().await.expect("a JSON body");
    assert_eq!(status, 201, "{body}");
    let id = body["orderId"].as_str().expect("an orderId");
    app.state.store.find(id).await.unwrap().expect("stored").total_cents
}

#[tokio::test]
async fn concurrent_orders_of_one_product_share_one_price_lookup_and_each_product_has_its_own() {
    let fakes = support::Fakes::start().await;
    let catalogue = Catalogue::start(&[("1", 10.0), ("2", 25.5)]).await;
    let app = fakes
        .settings()
        .with("PRODUCT_SERVICE_URL", catalogue.url.clone())
        .with("PRODUCT_SERVICE_TIMEOUT_MS", "30000")
        .spawn()
        .await;
    let token = fakes.token("user-1");
    catalogue.hold_answers(true);
    let per_product = 10;
    let mut orders = JoinSet::new();
    for product in ["1", "2"] {
        for _ in 0..per_product {
            let (url, client, token) = (app.url("/orders"), app.client.clone(), token.clone());
            orders.spawn(async move {
                let response = client
                    .post(url)
                    .bearer_auth(token)
                    .json(&serde_json::json!({"productId": product, "quantity": 2}))
                    .send()
                    .await
                    .expect("request sent");
                (product, response)
            });
        }
    }
    // Every order but the first of each product joins the lookup in flight (the answers are held meanwhile).
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while support::sample(&app.metrics().await, "product_lookups_shared_total", &[]) < f64::from(2 * (per_product - 1))
    {
        assert!(tokio::time::Instant::now() < deadline, "the orders never all waited for their product's lookup");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!((catalogue.lookups("1"), catalogue.lookups("2")), (1, 1), "one request per product");
    catalogue.hold_answers(false);
    while let Some(joined) = orders.join_next().await {
        let (product, response) = joined.expect("the request task");
        let expected = if product == "1" { 2_000 } else { 5_100 };
        assert_eq!(total_of(&app, response).await, expected, "an order of product {product} has its price");
    }
    assert_eq!((catalogue.lookups("1"), catalogue.lookups("2")), (1, 1));
    app.stop().await;
}

#[tokio::test]
async fn a_lookup_after_the_last_one_answered_asks_again_and_takes_the_new_price() {
    let fakes = support::Fakes::start().await;
    let catalogue = Catalogue::start(&[("1", 10.0)]).await;
    let app = fakes.settings().with("PRODUCT_SERVICE_URL", catalogue.url.clone()).spawn().await;
    let token = fakes.token("user-1");
    assert_eq!(total_of(&app, post_order(&app, &token, "1").await).await, 2_000);
    catalogue.set_price("1", 12.5);
    assert_eq!(total_of(&app, post_order(&app, &token, "1").await).await, 2_500, "the new price, not a kept one");
    assert_eq!(catalogue.lookups("1"), 2);
    assert_eq!(support::sample(&app.metrics().await, "product_lookups_shared_total", &[]), 0.0);
    let response = post_order(&app, &token, "missing").await;
    assert_eq!(response.status(), 422, "an unknown product is still refused");
    app.stop().await;
}
