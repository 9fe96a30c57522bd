//! POST /orders under concurrent bursts: group commit gives every request its own outcome.
use crate::support;

use std::collections::HashSet;

use futures::future::join_all;
use tokio::task::JoinSet;

/// The `orderId` of a 201 body, with whether it was a replay.
async fn created(response: reqwest::Response) -> (String, bool) {
    let status = response.status();
    let replayed = response.headers().get("idempotent-replayed").is_some_and(|value| value == "true");
    let body: serde_json::Value = response.json().await.expect("a JSON body");
    assert_eq!(status, 201, "{body}");
    (body["orderId"].as_str().expect("an orderId").to_owned(), replayed)
}

#[tokio::test]
async fn a_burst_of_concurrent_orders_gets_its_own_201_each_and_every_order_is_stored() {
    let fakes = support::Fakes::start().await;
    // A busy shared machine must not turn a slow price lookup into a 503: this test is about outcomes.
    let app = fakes.settings().with("PRODUCT_SERVICE_TIMEOUT_MS", "30000").spawn().await;
    let token = fakes.token("user-1");
    let burst = 200;
    let responses = join_all((0..burst).map(|_| app.post_order(&token, None))).await;
    let mut ids = HashSet::new();
    for response in responses {
        let (id, replayed) = created(response).await;
        assert!(!replayed);
        ids.insert(id);
    }
    assert_eq!(ids.len(), burst, "every request got its own order");
    let ids: Vec<String> = ids.into_iter().collect();
    let stored = app.state.store.find_many(&ids).await.unwrap();
    assert_eq!(stored.len(), burst, "every 201 is stored");
    assert!(stored.values().all(|order| order.user_id == "user-1" && order.total_cents == 179_998));

    // The lifecycle consumer may be processing these orders already: each of its batches inserts its transitions'
    // records, then the record that it announced them. The figures are read once nothing is in flight (the same
    // twice, half a second apart).
    let announcements =
        support::raw_database(&app.database).await.collection::<mongodb::bson::Document>("announced_batches");
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(60);
    let mut previous = None;
    let (inserts, batches, announced) = loop {
        let metrics = app.metrics().await;
        let figures = (
            support::sample(&metrics, "mongodb_commands_total", &[("operation", "insert")]),
            support::sample(&metrics, "write_batch_size_count", &[("queue", "orders")]),
            announcements.count_documents(mongodb::bson::doc! {}).await.expect("a count") as f64,
        );
        if previous == Some(figures) {
            break figures;
        }
        assert!(tokio::time::Instant::now() < deadline, "the service never went quiet");
        previous = Some(figures);
        tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    };
    println!("{burst} concurrent orders: {batches} batches, {inserts} insert commands, {announced} announced batches");
    assert_eq!(
        inserts,
        batches + 2.0 * announced,
        "one insert command per batch of orders (each carrying its event), two per consumer batch"
    );
    app.stop().await;
}

#[tokio::test]
async fn duplicates_of_an_idempotency_key_in_one_burst_get_one_order_and_replays_of_it() {
    let fakes = support::Fakes::start().await;
    // A busy shared machine must not turn a slow price lookup into a 503: this test is about outcomes.
    let app = fakes.settings().with("PRODUCT_SERVICE_TIMEOUT_MS", "30000").spawn().await;
    let token = fakes.token("user-1");
    // 40 requests with one key among 100 with keys of their own, all at once: the duplicates
    // are their own requests' replays, never the failure of the batch they were written in.
    let shared = join_all((0..40).map(|_| app.post_order(&token, Some("shared-key"))));
    let own = join_all((0..100).map(|n| {
        let key = format!("own-{n}");
        let app = &app;
        let token = &token;
        async move { app.post_order(token, Some(&key)).await }
    }));
    let (shared, own) = tokio::join!(shared, own);

    let mut shared_ids = HashSet::new();
    let mut first_answers = 0;
    for response in shared {
        let (id, replayed) = created(response).await;
        shared_ids.insert(id);
        first_answers += usize::from(!replayed);
    }
    assert_eq!(shared_ids.len(), 1, "one order for the shared key");
    assert_eq!(first_answers, 1, "one 201 creates it; the other 39 are replays");
    let mut own_ids = HashSet::new();
    for response in own {
        let (id, replayed) = created(response).await;
        assert!(!replayed, "a key of its own is never a replay");
        own_ids.insert(id);
    }
    assert_eq!(own_ids.len(), 100);
    assert!(own_ids.is_disjoint(&shared_ids));

    let stored = app.state.store.list(None, None, 1_000).await.unwrap();
    assert_eq!(stored.len(), 101, "exactly the distinct keys' orders are stored");
    app.stop().await;
}

#[tokio::test]
async fn a_first_keyed_order_reads_nothing_before_its_write_and_only_a_retry_looks_its_key_up() {
    let fakes = support::Fakes::start().await;
    let app = fakes.settings().spawn().await;
    let token = fakes.token("user-1");
    let lookups = |metrics: &str| support::sample(metrics, "write_batch_size_sum", &[("queue", "idempotency_lookups")]);

    let (first, replayed) = created(app.post_order(&token, Some("key-1")).await).await;
    assert!(!replayed);
    assert_eq!(lookups(&app.metrics().await), 0.0, "the unique index, not a read, tells a first request");
    let (retry, replayed) = created(app.post_order(&token, Some("key-1")).await).await;
    assert!(replayed);
    assert_eq!(retry, first);
    assert_eq!(lookups(&app.metrics().await), 1.0, "the refused retry reads its first order once");

    let stored = app.state.store.list(None, None, 10).await.unwrap();
    assert_eq!(stored.iter().map(|order| order.id.as_str()).collect::<Vec<_>>(), [first.as_str()]);
    // The retry's event was written before its order was refused, and deleted with the refusal.
    let outbox = support::raw_database(&app.database).await.collection::<mongodb::bson::Document>("order_outbox");
    let entries: Vec<mongodb::bson::Document> =
        futures::TryStreamExt::try_collect(outbox.find(mongodb::bson::doc! {}).await.unwrap()).await.unwrap();
    assert!(entries.iter().all(|entry| entry.get_str("_id") == Ok(first.as_str())), "{entries:?}");
    app.stop().await;
}

#[tokio::test]
async fn an_expired_key_is_released_by_its_next_use_which_creates_a_new_order_holding_it() {
    let fakes = support::Fakes::start().await;
    let app = fakes.settings().with("IDEMPOTENCY_TTL_SECONDS", "1").spawn().await;
    let token = fakes.token("user-1");
    let (first, _) = created(app.post_order(&token, Some("key-1")).await).await;
    tokio::time::sleep(std::time::Duration::from_millis(1_500)).await;

    let (second, replayed) = created(app.post_order(&token, Some("key-1")).await).await;
    assert!(!replayed, "an expired key answers as a new request");
    assert_ne!(second, first);
    let holders = app.state.store.find_by_idempotency_scopes(&["user-1:key-1".to_owned()]).await.unwrap();
    assert_eq!(holders.get("user-1:key-1").map(|holder| holder.id.as_str()), Some(second.as_str()));
    let stored = app.state.store.find_many(&[first.clone(), second.clone()]).await.unwrap();
    assert_eq!(stored.len(), 2, "the first order stays; only its key was released");
    app.stop().await;
}

#[tokio::test]
async fn a_retry_gets_its_first_answer_while_the_catalogue_is_unreachable_and_a_new_key_gets_503() {
    let fakes = support::Fakes::start().await;
    let app = fakes.settings().spawn().await;
    let token = fakes.token("user-1");
    let (first, _) = created(app.post_order(&token, Some("key-1")).await).await;
    // A second replica on the same database, whose product-service is nowhere.
    let nowhere = support::settings().values["PRODUCT_SERVICE_URL"].clone();
    let database = app.database.clone();
    let cut_off =
        fakes.settings().with("MONGODB_DATABASE", database).with("PRODUCT_SERVICE_URL", nowhere).spawn().await;

    let (retry, replayed) = created(cut_off.post_order(&token, Some("key-1")).await).await;
    assert!(replayed);
    assert_eq!(retry, first);
    let new_key = cut_off.post_order(&token, Some("key-2")).await;
    assert_eq!(new_key.status(), 503);
    let body: serde_json::Value = new_key.json().await.expect("a JSON body");
    assert_eq!(body["message"], "Product catalogue temporarily unavailable");
    cut_off.stop().await;
    app.stop().await;
}

#[tokio::test]
async fn a_full_write_queue_answers_503_json_with_retry_after_and_counts_it() {
    let mongo = support::PrivateMongo::start().await;
    let fakes = support::Fakes::start().await;
    let app = fakes
        .settings()
        .with("MONGODB_URI", mongo.uri())
        // No operation gives up while the database is frozen: the writer stays busy with its batch.
        .with("MONGODB_TIMEOUT_MS", "120000")
        .with("ORDER_WRITE_QUEUE", "2")
        .with("ORDER_WRITE_BATCH", "1")
        .spawn()
        .await;
    let token = fakes.token("user-1");
    // Warm the JWKS cache while the database answers.
    created(app.post_order(&token, None).await).await;

    mongo.freeze();
    // A frozen database holds the writer's batch (1 order) and the queue (2): of 20 requests at once,
    // at least 17 cannot be queued, whatever the order they arrive in.
    let burst = 20;
    let mut requests = JoinSet::new();
    for _ in 0..burst {
        let (client, url, token) = (app.client.clone(), app.url("/orders"), token.clone());
        requests.spawn(async move {
            let body = serde_json::json!({"productId": "1", "quantity": 1});
            client.post(url).bearer_auth(token).json(&body).send().await.expect("request sent")
        });
    }
    let mut refused = 0;
    while refused < burst - 3 {
        let response = requests.join_next().await.expect("a response").expect("the request task");
        assert_eq!(response.status(), 503, "nothing can be written while the database is frozen");
        assert_eq!(response.headers()["retry-after"], "1");
        let body: serde_json::Value = response.json().await.expect("a JSON body");
        assert_eq!(body["success"], false);
        assert_eq!(body["message"], "Too many orders in progress; retry shortly");
        refused += 1;
    }
    mongo.thaw();
    let mut written = 0;
    while let Some(response) = requests.join_next().await {
        match response.expect("the request task").status().as_u16() {
            201 => written += 1,
            503 => refused += 1,
            other => panic!("unexpected status {other}"),
        }
    }
    assert!(written <= 3, "{written} written");
    let metrics = app.metrics().await;
    let counted = support::sample(&metrics, "write_queue_rejected_total", &[("queue", "orders")]);
    assert_eq!(counted, refused as f64, "every refusal is counted");
    // The queue is free again once the database answers.
    created(app.post_order(&token, None).await).await;
    app.stop().await;
    drop(mongo);
}

#[tokio::test]
async fn a_burst_of_orders_is_published_once_each_and_its_batches_leave_the_outbox() {
    let fakes = support::Fakes::start().await;
    let app = fakes.settings().with("PRODUCT_SERVICE_TIMEOUT_MS", "30000").spawn().await;
    let token = fakes.token("user-1");
    let burst = 40;
    let responses = join_all((0..burst).map(|_| app.post_order(&token, None))).await;
    let mut ids = Vec::new();
    for response in responses {
        ids.push(created(response).await.0);
    }
    app.wait_for_status(&ids, order_service::domain::OrderStatus::Processed, std::time::Duration::from_secs(60)).await;
    app.wait_outbox_drained(std::time::Duration::from_secs(20)).await;

    let published = support::read_topic(&app.brokers, &app.topic("new-order"), std::time::Duration::from_secs(3)).await;
    let keys: HashSet<_> = published.iter().filter_map(|message| message.key.clone()).collect();
    assert_eq!((published.len(), keys.len()), (burst, burst), "each order's event published once");
    app.stop().await;
}
