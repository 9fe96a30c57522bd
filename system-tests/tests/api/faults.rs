//! Fault tests: what clients see when a part of the system fails, and that it recovers by itself.
//! Every test is bounded in time and uses its own private engines or services.
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use system_tests::{Overrides, PrivateMongo, Stack};

async fn pay(stack: &Stack, token: &str, order_id: &str, amount: f64) -> (u16, Duration, Option<String>) {
    let started = Instant::now();
    let response = stack
        .client
        .post(stack.url("/payments"))
        .bearer_auth(token)
        .json(&json!({"orderId": order_id, "amount": amount}))
        .send()
        .await
        .unwrap();
    let retry_after = response.headers().get("retry-after").map(|v| v.to_str().unwrap().to_owned());
    (response.status().as_u16(), started.elapsed(), retry_after)
}

#[tokio::test]
async fn a_stopped_payment_service_gives_503_then_the_open_breaker_answers_at_once_and_recovery_needs_no_restart() {
    let mut overrides = Overrides::default();
    overrides.gateway.push(("CIRCUIT_BREAKER_FAILURES", "3".to_owned()));
    overrides.gateway.push(("CIRCUIT_BREAKER_OPEN_MS", "1000".to_owned()));
    let mut stack = Stack::start_with(overrides).await;
    let (_, token) = stack.customer().await;
    let order_id = stack.order(&token, "4", 1).await;
    stack.wait_for_status(&token, &order_id, "processed", Duration::from_secs(20)).await;

    stack.stop_service("payment-service").await;
    let (status, took, _) = pay(&stack, &token, &order_id, 149.99).await;
    assert_eq!(status, 503, "payment-service down");
    assert!(took < Duration::from_secs(4), "within the downstream timeout: {took:?}");

    let mut fastest = Duration::MAX;
    for _ in 0..5 {
        let (status, took, retry_after) = pay(&stack, &token, &order_id, 149.99).await;
        assert_eq!(status, 503);
        assert!(retry_after.is_some(), "503 carries Retry-After");
        fastest = fastest.min(took);
    }
    println!("open breaker: fastest 503 in {fastest:?}");
    assert!(fastest < Duration::from_millis(50), "the open breaker answers at once: {fastest:?}");

    stack.restart_payment_service().await;
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let (status, _, _) = pay(&stack, &token, &order_id, 149.99).await;
        if status == 200 {
            break;
        }
        assert!(Instant::now() < deadline, "payments never recovered (last status {status})");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    stack.wait_for_status(&token, &order_id, "paid", Duration::from_secs(20)).await;
}

#[tokio::test]
async fn with_mongodb_stopped_routes_answer_503_promptly_and_everything_recovers_without_restarts() {
    let mut mongo = PrivateMongo::start().await;
    let uri = mongo.uri();
    let mut overrides = Overrides::default();
    for service in [&mut overrides.users, &mut overrides.products, &mut overrides.orders, &mut overrides.payments] {
        service.push(("MONGODB_URI", uri.clone()));
        service.push(("MONGODB_TIMEOUT_MS", "500".to_owned()));
    }
    overrides.products.push(("PRODUCT_CACHE_TTL_MS", "0".to_owned()));
    let stack = Stack::start_with(overrides).await;
    let (_, token) = stack.customer().await;

    mongo.stop();
    let checks: [(&str, reqwest::RequestBuilder); 4] = [
        (
            "register",
            stack
                .client
                .post(stack.url("/users/register"))
                .json(&json!({"username": "late", "email": "late@example.com", "password": "password-123"})),
        ),
        ("products", stack.client.get(stack.url("/products/1"))),
        ("orders", stack.client.get(stack.url("/orders")).bearer_auth(&token)),
        (
            "order",
            stack.client.post(stack.url("/orders")).bearer_auth(&token).json(&json!({"productId": "1", "quantity": 1})),
        ),
    ];
    for (name, request) in checks {
        let started = Instant::now();
        let response = request.send().await.unwrap();
        println!("{name}: {} in {:?}", response.status(), started.elapsed());
        assert_eq!(response.status(), 503, "{name}");
        assert!(started.elapsed() < Duration::from_secs(4), "{name} answered promptly");
    }
    assert_eq!(stack.get("/health", None).await.status(), 200, "the gateway stays alive");
    assert_eq!(stack.get("/ready", None).await.status(), 503, "and says what is down");

    mongo.restart().await;
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let response = stack.post("/orders", Some(&token), &json!({"productId": "1", "quantity": 1})).await;
        if response.status() == 201 {
            break;
        }
        assert!(Instant::now() < deadline, "orders never recovered");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    stack.wait_ready().await;
    assert_eq!(stack.get("/products/1", None).await.status(), 200);
}

#[tokio::test]
async fn a_frozen_product_service_gives_504_on_product_routes_while_user_and_order_reads_stay_fast() {
    // A frozen process (as under SIGSTOP): the kernel accepts connections, nothing answers.
    let frozen = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let mut overrides = Overrides::default();
    overrides.gateway.push(("PRODUCT_SERVICE_URL", format!("http://{}", frozen.local_addr().unwrap())));
    overrides.gateway.push(("DOWNSTREAM_TIMEOUT_MS", "2000".to_owned()));
    let stack = Stack::start_unready(overrides).await;
    let (_, token) = stack.customer_when_up().await;
    let order_id = stack.order(&token, "2", 1).await;

    let started = Instant::now();
    let products = stack.get("/products", None).await;
    assert_eq!(products.status(), 504);
    assert!(started.elapsed() < Duration::from_secs(4), "504 within the timeout: {:?}", started.elapsed());

    for path in ["/users/me".to_owned(), format!("/orders/{order_id}"), "/orders".to_owned()] {
        let started = Instant::now();
        let response = stack.get(&path, Some(&token)).await;
        assert_eq!(response.status(), 200, "{path}");
        println!("{path}: {:?} while products are frozen", started.elapsed());
        assert!(started.elapsed() < Duration::from_millis(1_500), "{path} is not held up by the frozen service");
    }
    drop(frozen);
}

#[tokio::test]
async fn the_body_limit_answers_413_with_a_json_body() {
    let stack = Stack::start().await;
    let huge = "x".repeat(200_000);
    let response = stack.post("/users/register", None, &json!({"username": huge})).await;
    assert_eq!(response.status(), 413);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["success"], false);
}

#[tokio::test]
async fn an_order_service_killed_mid_stream_loses_no_order_and_leaves_none_pending() {
    let mut overrides = Overrides { order_service_as_process: true, ..Overrides::default() };
    // This test is about the order-service, not the gateway's breaker: keep it closed.
    overrides.gateway.push(("CIRCUIT_BREAKER_FAILURES", "1000".to_owned()));
    let mut stack = Stack::start_with(overrides).await;
    let (_, token) = stack.customer().await;

    let mut accepted = Vec::new();
    for i in 0..30 {
        if i == 12 {
            // SIGKILL while orders stream in: no graceful shutdown, no offset commit, no flush.
            stack.kill_order_service();
        }
        if i == 18 {
            stack.restart_order_service();
            stack.wait_ready().await;
        }
        let response = stack.post("/orders", Some(&token), &json!({"productId": "3", "quantity": 1})).await;
        if response.status() == 201 {
            let body: Value = response.json().await.unwrap();
            accepted.push(body["orderId"].as_str().unwrap().to_owned());
        } else {
            assert!(matches!(response.status().as_u16(), 502..=504), "refused while down: {}", response.status());
        }
    }
    assert!(accepted.len() >= 24, "orders before the kill and after the restart were accepted: {}", accepted.len());
    println!("{} of 30 orders accepted around the kill", accepted.len());
    for order_id in &accepted {
        stack.wait_for_status(&token, order_id, "processed", Duration::from_secs(60)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_database_killed_under_order_load_loses_no_order_answered_201_and_leaves_none_pending() {
    let mut mongo = PrivateMongo::start().await;
    let mut overrides = Overrides::default();
    overrides.orders.push(("MONGODB_URI", mongo.uri()));
    overrides.orders.push(("MONGODB_TIMEOUT_MS", "1000".to_owned()));
    // This test is about the database, not the gateway's breaker: keep it closed.
    overrides.gateway.push(("CIRCUIT_BREAKER_FAILURES", "100000".to_owned()));
    let stack = std::sync::Arc::new(Stack::start_with(overrides).await);
    let (_, token) = stack.customer().await;

    // Eight clients order in a loop; every 201 is a promise that the order exists.
    let running = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(true));
    let clients: Vec<_> = (0..8)
        .map(|_| {
            let (stack, token, running) = (stack.clone(), token.clone(), running.clone());
            tokio::spawn(async move {
                let mut accepted = Vec::new();
                while running.load(std::sync::atomic::Ordering::Relaxed) {
                    let body = json!({"productId": "2", "quantity": 1});
                    let request = stack.client.post(stack.url("/orders")).bearer_auth(&token).json(&body);
                    match request.send().await {
                        Ok(response) if response.status() == 201 => {
                            let body: Value = response.json().await.expect("a 201 has a body");
                            accepted.push(body["orderId"].as_str().expect("orderId").to_owned());
                        }
                        Ok(response) => assert!(
                            response.status().is_server_error(),
                            "refused while the database is away: {}",
                            response.status()
                        ),
                        Err(_) => {}
                    }
                }
                accepted
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    mongo.kill(); // SIGKILL, with writes in flight
    tokio::time::sleep(Duration::from_secs(1)).await;
    mongo.restart().await; // same data directory
    tokio::time::sleep(Duration::from_secs(2)).await;
    running.store(false, std::sync::atomic::Ordering::Relaxed);
    let mut accepted = Vec::new();
    for client in clients {
        accepted.extend(client.await.expect("client task"));
    }
    println!("{} orders answered 201 around the kill", accepted.len());
    assert!(!accepted.is_empty(), "orders were accepted under load");

    for order_id in &accepted {
        let response = stack.get(&format!("/orders/{order_id}"), Some(&token)).await;
        assert_eq!(response.status(), 200, "order {order_id} was answered 201 and must exist after the restart");
    }
    for order_id in &accepted {
        stack.wait_for_status(&token, order_id, "processed", Duration::from_secs(60)).await;
    }
}

#[tokio::test]
async fn orders_posted_while_the_broker_is_down_are_all_accepted_and_all_processed_once_it_returns() {
    let mut broker = system_tests::PrivateBroker::start().await;
    let mut overrides = Overrides::default();
    overrides.orders.extend(broker.service_settings());
    overrides.payments.extend(broker.service_settings());
    let stack = Stack::start_with(overrides).await;
    let (_, token) = stack.customer().await;

    broker.stop();
    let mut accepted = Vec::new();
    for _ in 0..20 {
        let response = stack.post("/orders", Some(&token), &json!({"productId": "2", "quantity": 1})).await;
        assert_eq!(response.status(), 201, "accepted while the broker is down");
        let body: Value = response.json().await.unwrap();
        accepted.push(body["orderId"].as_str().unwrap().to_owned());
    }
    broker.restart().await;
    for order_id in &accepted {
        stack.wait_for_status(&token, order_id, "processed", Duration::from_secs(60)).await;
    }
    // The relay publishes order-processed after the transition: give it a moment, then count.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let topic = stack.topic("order-processed");
    let counts = system_tests::count_by_key(&broker.address(), &topic, Duration::from_secs(3)).await;
    for order_id in &accepted {
        assert_eq!(counts.get(order_id), Some(&1), "order {order_id}: one order-processed, none lost, none twice");
    }
}
