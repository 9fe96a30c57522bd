//! The gateway's router, driven with `Router::oneshot` (no listener of its own) in front of fake downstream
//! services on real sockets that record what reached them: what the gateway checks itself, what it forwards,
//! and how it relays the answers.
use std::sync::{Arc, Mutex};

use api_gateway::{config::Config, startup};
use axum::{
    Json, Router,
    body::{Body, to_bytes},
    http::{HeaderMap, Request, StatusCode},
    routing::post,
};
use serde_json::{Value, json};
use test_support::{Issuer, closed_port};
use tower::ServiceExt as _;

/// The requests a fake service received: their headers and bodies.
#[derive(Clone, Default)]
struct Received(Arc<Mutex<Vec<(HeaderMap, Value)>>>);

impl Received {
    fn all(&self) -> Vec<(HeaderMap, Value)> {
        self.0.lock().unwrap().clone()
    }
}

/// Fake order-service (`POST /orders` → 201) and product-service (`product(id)`: product "1" exists).
struct Downstreams {
    orders: Received,
    products: Received,
    orders_url: String,
    products_url: String,
}

async fn serve(router: Router) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, router).await });
    url
}

impl Downstreams {
    async fn start() -> Self {
        let (orders, products) = (Received::default(), Received::default());
        let seen = orders.clone();
        let orders_url = serve(Router::new().route(
            "/orders",
            post(move |headers: HeaderMap, Json(body): Json<Value>| async move {
                seen.0.lock().unwrap().push((headers, body));
                (StatusCode::CREATED, Json(json!({ "success": true, "orderId": "o-1" })))
            }),
        ))
        .await;
        let seen = products.clone();
        let products_url = serve(Router::new().route(
            "/graphql",
            post(move |headers: HeaderMap, Json(body): Json<Value>| async move {
                let product = (body["variables"]["id"] == "1")
                    .then(|| json!({ "id": "1", "name": "Smartphone", "price": 899.99 }));
                seen.0.lock().unwrap().push((headers, body));
                Json(json!({ "data": { "product": product } }))
            }),
        ))
        .await;
        Self { orders, products, orders_url, products_url }
    }

    fn router(&self, issuer: &Issuer) -> Router {
        let nowhere = format!("http://127.0.0.1:{}", closed_port());
        let jwks_url = issuer.jwks_url();
        let source = std::collections::HashMap::from([
            ("USER_SERVICE_URL", nowhere.as_str()),
            ("PAYMENT_SERVICE_URL", nowhere.as_str()),
            ("ORDER_SERVICE_URL", self.orders_url.as_str()),
            ("PRODUCT_SERVICE_URL", self.products_url.as_str()),
            ("JWKS_URL", jwks_url.as_str()),
        ]);
        startup::router(&Config::from_source(&source).expect("a valid test configuration")).expect("the router builds")
    }
}

async fn call(router: Router, request: Request<Body>) -> (StatusCode, HeaderMap, Value) {
    let response = router.oneshot(request).await.expect("the router answers");
    let (status, headers) = (response.status(), response.headers().clone());
    let body = to_bytes(response.into_body(), 1 << 20).await.expect("a body");
    (status, headers, serde_json::from_slice(&body).unwrap_or(Value::Null))
}

fn post_order(token: Option<&str>) -> Request<Body> {
    let mut request = Request::post("/orders").header("content-type", "application/json");
    if let Some(token) = token {
        request = request.header("authorization", format!("Bearer {token}"));
    }
    request.body(Body::from(json!({ "productId": "1", "quantity": 2 }).to_string())).unwrap()
}

#[tokio::test]
async fn post_orders_without_a_token_is_401_and_never_reaches_the_order_service() {
    let (issuer, downstreams) = (Issuer::start().await, Downstreams::start().await);
    let (status, _, body) = call(downstreams.router(&issuer), post_order(None)).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(body["success"], false, "{body}");
    assert!(downstreams.orders.all().is_empty());
}

#[tokio::test]
async fn post_orders_with_a_token_from_another_issuer_is_401() {
    let (issuer, downstreams) = (Issuer::start().await, Downstreams::start().await);
    let stranger = Issuer::unserved().token("customer");
    let (status, _, _) = call(downstreams.router(&issuer), post_order(Some(&stranger))).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert!(downstreams.orders.all().is_empty());
}

#[tokio::test]
async fn post_orders_forwards_the_body_the_token_and_a_request_id_and_relays_the_201() {
    let (issuer, downstreams) = (Issuer::start().await, Downstreams::start().await);
    let token = issuer.token_for("user-7", "customer");
    let (status, headers, body) = call(downstreams.router(&issuer), post_order(Some(&token))).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    assert_eq!(body["orderId"], "o-1");
    let received = downstreams.orders.all();
    assert_eq!(received.len(), 1);
    let (forwarded, sent) = &received[0];
    assert_eq!(sent, &json!({ "productId": "1", "quantity": 2 }));
    assert_eq!(forwarded["authorization"], format!("Bearer {token}").as_str(), "the order-service checks it again");
    let request_id = headers.get("x-request-id").expect("the gateway made a request id");
    assert_eq!(&forwarded["x-request-id"], request_id, "the same id downstream and in the answer");
}

#[tokio::test]
async fn a_client_request_id_is_kept_end_to_end() {
    let (issuer, downstreams) = (Issuer::start().await, Downstreams::start().await);
    let request = Request::get("/products/1").header("x-request-id", "client-chosen-42").body(Body::empty()).unwrap();
    let (status, headers, body) = call(downstreams.router(&issuer), request).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(headers["x-request-id"], "client-chosen-42");
    assert_eq!(downstreams.products.all()[0].0["x-request-id"], "client-chosen-42");
}

#[tokio::test]
async fn get_product_relays_the_product_and_a_missing_one_is_a_json_404() {
    let (issuer, downstreams) = (Issuer::start().await, Downstreams::start().await);
    let router = downstreams.router(&issuer);
    let (status, _, body) = call(router.clone(), Request::get("/products/1").body(Body::empty()).unwrap()).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["product"]["name"], "Smartphone");
    let sent = &downstreams.products.all()[0].1;
    assert_eq!(sent["variables"], json!({ "id": "1" }), "client input travels in variables, never in the query");
    let (status, _, body) = call(router, Request::get("/products/2").body(Body::empty()).unwrap()).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(body["success"], false);
}

#[tokio::test]
async fn creating_a_product_needs_an_admin_token_and_a_customer_gets_403() {
    let (issuer, downstreams) = (Issuer::start().await, Downstreams::start().await);
    let request = Request::post("/products")
        .header("authorization", format!("Bearer {}", issuer.token("customer")))
        .header("content-type", "application/json")
        .body(Body::from(json!({ "name": "Lamp", "price": 24.9 }).to_string()))
        .unwrap();
    let (status, _, body) = call(downstreams.router(&issuer), request).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    assert!(downstreams.products.all().is_empty(), "refused before the product-service");
}

#[tokio::test]
async fn unknown_routes_and_methods_get_json_errors() {
    let (issuer, downstreams) = (Issuer::start().await, Downstreams::start().await);
    let router = downstreams.router(&issuer);
    let (status, _, body) = call(router.clone(), Request::get("/nowhere").body(Body::empty()).unwrap()).await;
    assert_eq!((status, &body["success"]), (StatusCode::NOT_FOUND, &json!(false)));
    let (status, _, body) = call(router, Request::delete("/orders").body(Body::empty()).unwrap()).await;
    assert_eq!((status, &body["success"]), (StatusCode::METHOD_NOT_ALLOWED, &json!(false)));
}

#[tokio::test]
async fn an_unreachable_order_service_is_a_json_503() {
    let issuer = Issuer::start().await;
    let mut downstreams = Downstreams::start().await;
    downstreams.orders_url = format!("http://127.0.0.1:{}", closed_port());
    let token = issuer.token("customer");
    let (status, _, body) = call(downstreams.router(&issuer), post_order(Some(&token))).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    assert_eq!(body["success"], false);
    assert!(!body["message"].as_str().unwrap_or_default().contains("127.0.0.1"), "no internals leak: {body}");
}
