//! A hostile-input campaign over every gateway route: thousands of generated malformed and
//! edge-case requests (wrong types, huge numbers, unicode, empty and oversized bodies, operator
//! objects, forged tokens, odd paths). The system must never answer 5xx, never crash, and always
//! answer errors as JSON. The generator is seeded, so a failure can be replayed.
use std::collections::BTreeMap;

use futures::StreamExt as _;
use rand::{Rng, SeedableRng, rngs::StdRng};
use serde_json::{Value, json};
use system_tests::Stack;

const REQUESTS: usize = 3_000;
const SEED: u64 = 0x5eed_cafe;

const ROUTES: &[(&str, &str)] = &[
    ("POST", "/users/register"),
    ("POST", "/users/login"),
    ("GET", "/users/me"),
    ("GET", "/products"),
    ("GET", "/products/{id}"),
    ("POST", "/products"),
    ("PATCH", "/products/{id}"),
    ("DELETE", "/products/{id}"),
    ("POST", "/graphql"),
    ("GET", "/orders"),
    ("POST", "/orders"),
    ("GET", "/orders/{id}"),
    ("POST", "/payments"),
    ("PUT", "/orders"),
    ("GET", "/nowhere/{id}"),
];

const FIELDS: &[&str] = &[
    "username",
    "email",
    "password",
    "name",
    "price",
    "description",
    "productId",
    "quantity",
    "userId",
    "orderId",
    "amount",
    "query",
    "variables",
    "$ne",
    "$gt",
    "__proto__",
    "constructor",
    "",
];

fn text(rng: &mut StdRng) -> String {
    let samples = [
        "".to_owned(),
        " ".to_owned(),
        "admin".to_owned(),
        "a@b.c".to_owned(),
        "1".to_owned(),
        "-1".to_owned(),
        "999999999999999999999999".to_owned(),
        "Écouteurs 🎧 sans fil".to_owned(),
        "\u{0000}\u{202e}\u{feff}".to_owned(),
        "'; DROP TABLE users; --".to_owned(),
        "{\"$ne\": null}".to_owned(),
        "<script>alert(1)</script>".to_owned(),
        "../../etc/passwd".to_owned(),
        "x".repeat(rng.random_range(100..5_000)),
        "é".repeat(rng.random_range(1..300)),
        "query { __schema { types { name } } }".to_owned(),
        "mutation { deleteProduct(id: \"1\") { id } }".to_owned(),
    ];
    samples[rng.random_range(0..samples.len())].clone()
}

fn value(rng: &mut StdRng, depth: u32) -> Value {
    match rng.random_range(0..if depth > 2 { 7 } else { 10 }) {
        0 => Value::Null,
        1 => json!(rng.random_bool(0.5)),
        2 => json!(rng.random_range(-1_000_000_i64..1_000_000)),
        3 => [
            json!(0),
            json!(-0.0),
            json!(1e308),
            json!(-1e308),
            json!(u64::MAX),
            json!(i64::MIN),
            json!(0.1),
            json!(2.5),
            json!(1.005),
        ][rng.random_range(0..9)]
        .clone(),
        4..=6 => json!(text(rng)),
        7 => Value::Array((0..rng.random_range(0..4)).map(|_| value(rng, depth + 1)).collect()),
        _ => {
            let mut object = serde_json::Map::new();
            for _ in 0..rng.random_range(0..5) {
                let key = FIELDS[rng.random_range(0..FIELDS.len())];
                object.insert(key.to_owned(), value(rng, depth + 1));
            }
            Value::Object(object)
        }
    }
}

fn path_id(rng: &mut StdRng, order_id: &str) -> String {
    let samples = [
        "1".to_owned(),
        "999".to_owned(),
        order_id.to_owned(),
        "%7B%22%24ne%22%3Anull%7D".to_owned(),
        "%FF%FE".to_owned(),
        "%00".to_owned(),
        "..%2F..%2Fadmin".to_owned(),
        "%C3%A9%F0%9F%8E%A7".to_owned(),
        "1%22)%7Bid%7D%7D".to_owned(),
        "x".repeat(rng.random_range(65..3_000)),
        "-1".to_owned(),
        "1.5".to_owned(),
    ];
    samples[rng.random_range(0..samples.len())].clone()
}

#[tokio::test]
async fn thousands_of_hostile_requests_get_no_5xx_and_only_json_errors() {
    let stack = Stack::start().await;
    let (_, customer) = stack.customer().await;
    let (_, admin) = stack.admin().await;
    let order_id = stack.order(&customer, "1", 1).await;
    let payload = customer.split('.').nth(1).unwrap_or_default().to_owned();
    let forged = [
        String::new(),
        "null".to_owned(),
        "a.b.c".to_owned(),
        format!("eyJhbGciOiJub25lIiwidHlwIjoiSldUIn0.{payload}."),
        format!("{customer}x"),
        "x".repeat(8_000),
    ];

    let mut rng = StdRng::seed_from_u64(SEED);
    let mut requests = Vec::with_capacity(REQUESTS);
    for _ in 0..REQUESTS {
        let (method, template) = ROUTES[rng.random_range(0..ROUTES.len())];
        let path = template.replace("{id}", &path_id(&mut rng, &order_id));
        let authorization = match rng.random_range(0..6) {
            0 => None,
            1 => Some(format!("Bearer {customer}")),
            2 => Some(format!("Bearer {admin}")),
            3 => Some(format!("Basic {}", text(&mut rng).replace(['\u{0000}', '\r', '\n'], ""))),
            _ => Some(format!("Bearer {}", forged[rng.random_range(0..forged.len())])),
        };
        let (content_type, body): (Option<&str>, Vec<u8>) = match rng.random_range(0..8) {
            0 => (None, Vec::new()),
            1 => (Some("text/plain"), text(&mut rng).into_bytes()),
            2 => (Some("application/json"), b"{\"unterminated\": ".to_vec()),
            3 => (Some("application/json"), vec![0xff, 0xfe, 0x00, 0x7b]),
            4 => (Some("application/json"), vec![b'['; 100_000]),
            _ => (Some("application/json"), serde_json::to_vec(&value(&mut rng, 0)).unwrap_or_default()),
        };
        let idempotency = rng.random_bool(0.2).then(|| text(&mut rng).replace(['\u{0000}', '\r', '\n'], ""));
        requests.push((method, path, authorization, content_type, body, idempotency));
    }

    let client = &stack.client;
    let base = &stack.gateway;
    let outcomes: Vec<(String, u16, bool)> = futures::stream::iter(requests)
        .map(|(method, path, authorization, content_type, body, idempotency)| async move {
            let url = format!("{base}{path}");
            let mut request = client.request(method.parse().unwrap(), &url).body(body);
            if let Some(value) = authorization.filter(|v| reqwest::header::HeaderValue::from_str(v).is_ok()) {
                request = request.header("authorization", value);
            }
            if let Some(content_type) = content_type {
                request = request.header("content-type", content_type);
            }
            if let Some(key) = idempotency.filter(|v| reqwest::header::HeaderValue::from_str(v).is_ok()) {
                request = request.header("idempotency-key", key);
            }
            let label = format!("{method} {}", path.chars().take(60).collect::<String>());
            match request.send().await {
                Ok(response) => {
                    let status = response.status().as_u16();
                    let json = response
                        .headers()
                        .get("content-type")
                        .and_then(|v| v.to_str().ok())
                        .is_some_and(|v| v.contains("json"));
                    (label, status, json)
                }
                Err(error) => (format!("{label}: {error}"), 0, false),
            }
        })
        .buffer_unordered(8)
        .collect()
        .await;

    let mut counts: BTreeMap<u16, usize> = BTreeMap::new();
    for (_, status, _) in &outcomes {
        *counts.entry(*status).or_default() += 1;
    }
    println!("hostile input campaign: {} requests, statuses {counts:?}", outcomes.len());
    let server_errors: Vec<_> = outcomes.iter().filter(|(_, status, _)| *status == 0 || *status >= 500).collect();
    assert!(server_errors.is_empty(), "5xx or no answer: {server_errors:?}");
    let non_json: Vec<_> = outcomes.iter().filter(|(_, status, json)| *status >= 400 && !json).take(20).collect();
    assert!(non_json.is_empty(), "errors without a JSON body: {non_json:?}");
    assert_eq!(stack.get("/health", None).await.status(), 200, "still alive");
    stack.stop().await;
}
