//! The payment-service's own record of orders, built by its consumer from the order-service's real events on
//! Kafka: what `Pay` decides on, whatever order the events arrive in.
use crate::support;

use std::time::Duration;

use payment_service::{
    projection::{KnownOrder, OrderProjection, OrderStage},
    proto::PaymentStatus,
};
use support::{
    kafka::{EventReader, order_event, produce, produce_all},
    pay_request, with_token,
};
use tonic::Code;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pay_follows_the_order_events_from_pending_to_processed() {
    let app = support::spawn(&[]).await;
    let (order, user) = (uuid::Uuid::now_v7().to_string(), support::unique("user-"));
    produce(&app.brokers, &app.new_order_topic, &order, &order_event("new-order", &order, &user, 1_000)).await;
    app.wait_for_known_order(&order, OrderStage::Pending).await;
    let early = app.pay(&order, &user, 1_000, "key").await.unwrap_err();
    assert_eq!(early.code(), Code::FailedPrecondition, "{early:?}");

    produce(&app.brokers, &app.order_processed_topic, &order, &order_event("order-processed", &order, &user, 1_000))
        .await;
    let known = app.wait_for_known_order(&order, OrderStage::Processed).await;
    assert_eq!((known.user_id.as_str(), known.total_cents, known.currency.as_str()), (user.as_str(), 1_000, "EUR"));
    let paid = app.pay(&order, &user, 1_000, "key").await.expect("paid once processed");
    assert_eq!(paid.status(), PaymentStatus::Success);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_late_or_redelivered_new_order_does_not_move_a_processed_order_back() {
    let app = support::spawn(&[]).await;
    let (order, user) = (uuid::Uuid::now_v7().to_string(), support::unique("user-"));
    // The two topics are consumed independently: `order-processed` may well come first.
    produce(&app.brokers, &app.order_processed_topic, &order, &order_event("order-processed", &order, &user, 2_500))
        .await;
    app.wait_for_known_order(&order, OrderStage::Processed).await;
    for _ in 0..2 {
        produce(&app.brokers, &app.new_order_topic, &order, &order_event("new-order", &order, &user, 2_500)).await;
    }
    // A marker order produced after the late events: once it is known, they were applied (or ignored) too.
    let marker = uuid::Uuid::now_v7().to_string();
    produce(&app.brokers, &app.new_order_topic, &marker, &order_event("new-order", &marker, &user, 1)).await;
    app.wait_for_known_order(&marker, OrderStage::Pending).await;
    let known = app.projection().await.find(&order).await.unwrap().expect("still known");
    assert_eq!(known.stage, OrderStage::Processed, "a late new-order does not make a processed order pending");
    app.pay(&order, &user, 2_500, "key").await.expect("still payable");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_order_event_that_cannot_be_applied_is_dead_lettered_and_does_not_block_the_next() {
    let app = support::spawn(&[("KAFKA_PARTITIONS", "1")]).await;
    produce(&app.brokers, &app.new_order_topic, "garbage", "{not json").await;
    let (order, user) = (uuid::Uuid::now_v7().to_string(), support::unique("user-"));
    produce(&app.brokers, &app.new_order_topic, &order, &order_event("new-order", &order, &user, 1_000)).await;
    app.wait_for_known_order(&order, OrderStage::Pending).await;
    // One partition: the order behind the garbage is applied, so the garbage went to the dead-letter topic first.
    let dead_letters = EventReader::subscribe(&app.brokers, &format!("{}.dlq", app.new_order_topic));
    let letter = dead_letters.next_raw(Duration::from_secs(30)).await.expect("the garbage is dead-lettered");
    assert_eq!(letter.key, "garbage");
    assert!(letter.header("dlq-reason").is_some_and(|reason| reason.contains("not a new-order envelope")));
    assert_eq!(
        app.metric("kafka_messages_consumed_total", &[("topic", app.new_order_topic.as_str())]).await,
        2.0,
        "both messages are consumed: one applied, one dead-lettered"
    );
}

/// A projection on a fresh database, with a counter of the engine commands it sends, by operation.
/// A projection on a database of its own, the commands its client sends, and the database.
async fn counted_projection() -> (OrderProjection, prometheus::IntCounterVec, mongodb::Database) {
    let metrics = platform::mongo::MongoMetrics::register(&prometheus::Registry::new());
    let commands = metrics.commands.clone();
    let client =
        platform::mongo::connect(&support::mongodb_uri(), "test", Duration::from_secs(5), &metrics).await.unwrap();
    let database = client.database(&support::unique("projection_batch_"));
    (OrderProjection::new(&database), commands, database)
}

fn known(order_id: &str, stage: OrderStage, event_id: &str) -> KnownOrder {
    KnownOrder::new(order_id.into(), "owner".into(), 1_000, "EUR".into(), stage, event_id.into())
}

fn known_for(order_id: &str, stage: OrderStage) -> KnownOrder {
    known(order_id, stage, &format!("{order_id}-event"))
}

#[tokio::test]
async fn a_batch_records_each_order_at_its_furthest_stage_in_one_insert_whatever_the_order_and_duplicates() {
    let (projection, commands, _) = counted_projection().await;
    let sent = || ["insert", "update", "bulkWrite"].map(|operation| commands.with_label_values(&[operation]).get());
    let since = |before: [u64; 3]| {
        let after = sent();
        [0, 1, 2].map(|index| after[index] - before[index])
    };
    projection.apply(&known("done", OrderStage::Processed, "done-2")).await.unwrap();
    projection.apply(&known("half", OrderStage::Pending, "half-1")).await.unwrap();

    let fresh = [
        known("a", OrderStage::Processed, "a-2"),
        known("a", OrderStage::Pending, "a-1"),
        known("b", OrderStage::Pending, "b-1"),
        known("b", OrderStage::Pending, "b-1"),
        known("c", OrderStage::Pending, "c-1"),
        known("c", OrderStage::Processed, "c-2"),
        known("half", OrderStage::Processed, "half-2"),
    ];
    let before = sent();
    let written = projection.apply_batch(&fresh).await.unwrap();
    assert_eq!(since(before), [1, 0, 0], "one insert, and no order is ever updated");
    let ids: Vec<(&str, OrderStage)> = written.iter().map(|order| (order.order_id.as_str(), order.stage)).collect();
    assert_eq!(
        ids,
        [
            ("a", OrderStage::Processed),
            ("b", OrderStage::Pending),
            ("c", OrderStage::Processed),
            ("half", OrderStage::Processed)
        ]
    );

    // Late and redelivered events: the stored orders are at these stages or further already.
    let late = [
        known("done", OrderStage::Pending, "done-1"),
        known("a", OrderStage::Pending, "a-1"),
        known("c", OrderStage::Processed, "c-2"),
        known("b", OrderStage::Processed, "b-2"),
        known("new", OrderStage::Pending, "new-1"),
    ];
    let before = sent();
    projection.apply_batch(&late).await.unwrap();
    assert_eq!(since(before), [1, 0, 0]);
    for (order_id, stage, event_id) in [
        ("done", OrderStage::Processed, "done-2"),
        ("a", OrderStage::Processed, "a-2"),
        ("b", OrderStage::Processed, "b-2"),
        ("c", OrderStage::Processed, "c-2"),
        ("half", OrderStage::Processed, "half-2"),
        ("new", OrderStage::Pending, "new-1"),
    ] {
        let stored = projection.find(order_id).await.unwrap().expect("known");
        assert_eq!((stored.order_id.as_str(), stored.stage, stored.event_id.as_str()), (order_id, stage, event_id));
    }
    // The same batch again changes nothing.
    projection.apply_batch(&late).await.unwrap();
    assert_eq!(projection.find("done").await.unwrap().unwrap().stage, OrderStage::Processed);
    assert_eq!(projection.find("new").await.unwrap().unwrap().event_id, "new-1");
}

#[tokio::test]
async fn a_processed_order_is_read_in_one_find_and_a_pending_or_unknown_one_in_two() {
    let (projection, commands, _) = counted_projection().await;
    let finds = || commands.with_label_values(&["find"]).get();
    let count = platform::mongo::UPDATE_CHUNK + 1;
    let ids: Vec<String> = (0..count).map(|n| format!("order-{n}")).collect();
    let pending: Vec<KnownOrder> = ids.iter().map(|id| known(id, OrderStage::Pending, &format!("{id}-1"))).collect();
    projection.apply_batch(&pending).await.unwrap();
    let processed: Vec<KnownOrder> =
        ids.iter().map(|id| known(id, OrderStage::Processed, &format!("{id}-2"))).collect();
    projection.apply_batch(&processed).await.unwrap();

    let asked: Vec<&str> = ids.iter().map(String::as_str).collect();
    let before = finds();
    let known = projection.find_many(&asked).await.unwrap();
    assert_eq!(finds() - before, 1, "every order has its processed record");
    assert_eq!(known.len(), count);
    assert!(known.iter().all(|order| order.stage == OrderStage::Processed && order.event_id.ends_with("-2")));

    projection.apply(&known_for("waiting", OrderStage::Pending)).await.unwrap();
    let before = finds();
    let known = projection.find_many(&["waiting", "order-0", "unheard-of"]).await.unwrap();
    assert_eq!(finds() - before, 2, "the processed records, then the others' own");
    let mut stages: Vec<(&str, OrderStage)> =
        known.iter().map(|order| (order.order_id.as_str(), order.stage)).collect();
    stages.sort_unstable();
    assert_eq!(stages, [("order-0", OrderStage::Processed), ("waiting", OrderStage::Pending)]);
}

#[tokio::test]
async fn orders_recorded_by_an_earlier_version_read_as_they_were_and_move_on_by_record() {
    let (projection, _, database) = counted_projection().await;
    // Earlier versions kept one document per order under its id, moved forward in place (with a `rank`).
    let legacy = |order_id: &str, stage: &str, rank: i32| {
        mongodb::bson::doc! {
            "_id": order_id, "userId": "owner", "totalCents": 1_000_i64, "currency": "EUR", "stage": stage,
            "rank": rank, "eventId": format!("{order_id}-old"), "updatedAt": mongodb::bson::DateTime::now(),
        }
    };
    database
        .collection::<mongodb::bson::Document>("orders")
        .insert_many([legacy("paid-before", "processed", 1), legacy("waiting-before", "pending", 0)])
        .await
        .unwrap();
    assert_eq!(projection.find("paid-before").await.unwrap().unwrap().stage, OrderStage::Processed);
    assert_eq!(projection.find("waiting-before").await.unwrap().unwrap().stage, OrderStage::Pending);
    // Their events, redelivered or arriving now.
    projection
        .apply_batch(&[
            known("paid-before", OrderStage::Pending, "late"),
            known("waiting-before", OrderStage::Processed, "now"),
        ])
        .await
        .unwrap();
    let paid = projection.find("paid-before").await.unwrap().unwrap();
    assert_eq!((paid.stage, paid.event_id.as_str()), (OrderStage::Processed, "paid-before-old"));
    let moved = projection.find("waiting-before").await.unwrap().unwrap();
    assert_eq!((moved.stage, moved.event_id.as_str()), (OrderStage::Processed, "now"));
}

#[tokio::test]
async fn a_record_read_for_an_order_is_that_orders_own_whatever_the_ids_asked() {
    let (projection, _, _) = counted_projection().await;
    projection.apply(&known("victim", OrderStage::Pending, "victim-1")).await.unwrap();
    // An order id that is another order's processed record id (the consumer refuses such events; the reads do not
    // rely on it).
    projection.apply(&known("victim/processed", OrderStage::Pending, "forged")).await.unwrap();
    let victim = projection.find("victim").await.unwrap().unwrap();
    assert_eq!((victim.stage, victim.event_id.as_str()), (OrderStage::Pending, "victim-1"));
    let own = projection.find("victim/processed").await.unwrap().unwrap();
    assert_eq!((own.order_id.as_str(), own.stage), ("victim/processed", OrderStage::Pending));
    projection.apply(&known("other", OrderStage::Processed, "other-2")).await.unwrap();
    assert_eq!(projection.find("other/processed").await.unwrap(), None, "not the processed record of `other`");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backlog_of_order_events_is_applied_in_batches() {
    let app = support::spawn(&[]).await;
    let user = support::unique("user-");
    let orders: Vec<String> = (0..100).map(|_| uuid::Uuid::now_v7().to_string()).collect();
    // Produced while the consumer is still joining its group, so that it finds them waiting.
    let mut messages = Vec::new();
    for order in &orders {
        messages.push((app.new_order_topic.clone(), order.clone(), order_event("new-order", order, &user, 1_000)));
    }
    for order in &orders {
        let processed = order_event("order-processed", order, &user, 1_000);
        messages.push((app.order_processed_topic.clone(), order.clone(), processed));
    }
    produce_all(&app.brokers, &messages).await;
    for order in &orders {
        app.wait_for_known_order(order, OrderStage::Processed).await;
    }
    let consumed = app.metric("kafka_messages_consumed_total", &[("topic", app.new_order_topic.as_str())]).await
        + app.metric("kafka_messages_consumed_total", &[("topic", app.order_processed_topic.as_str())]).await;
    assert_eq!(consumed, 200.0);
    // Every batch inserts the orders new to it (the relay's periodic claims are updates, so they are not counted).
    let inserts = app.metric("mongodb_commands_total", &[("operation", "insert")]).await;
    let bulk_writes = app.metric("mongodb_commands_total", &[("operation", "bulkWrite")]).await;
    let batches = app.metric("write_batch_size_count", &[("queue", "order_events")]).await;
    println!("200 order events: {batches} batches, {inserts} inserts");
    assert!(batches >= 1.0 && inserts >= 1.0, "{batches} batches, {inserts} inserts");
    assert!(inserts < 100.0, "200 waiting events took {inserts} inserts");
    assert_eq!(bulk_writes, 0.0, "no statement per order");
    for order in orders.iter().take(3) {
        app.pay(order, &user, 1_000, order).await.expect("payable");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn offsets_are_committed_only_once_the_events_are_written() {
    // A first replica has the events but cannot write them: its database is not there.
    let uri = test_support::unreachable_mongodb_uri();
    let first = support::spawn_unready(&[("MONGODB_URI", &uri), ("KAFKA_PARTITIONS", "1")]).await;
    let prefix = first.new_order_topic.trim_end_matches("new-order").to_owned();
    let group = first.group.clone();
    let user = support::unique("user-");
    let orders: Vec<String> = (0..3).map(|_| uuid::Uuid::now_v7().to_string()).collect();
    for order in &orders {
        produce(&first.brokers, &first.new_order_topic, order, &order_event("new-order", order, &user, 1_000)).await;
    }
    let failed = [("topic", first.new_order_topic.as_str()), ("stage", "consume")];
    first.wait_for_metric("kafka_messages_failed_total", &failed, Duration::from_secs(30), |value| value >= 2.0).await;
    // Longer than the auto-commit interval (1 s): an offset stored too early would be committed by now.
    tokio::time::sleep(Duration::from_millis(2_500)).await;
    first.stop().await.expect("a clean stop");

    // The next member of the group starts where the first committed: at the beginning, so it writes them all.
    let same_group = [("KAFKA_TOPIC_PREFIX", prefix.as_str()), ("KAFKA_CONSUMER_GROUP", group.as_str())];
    let second = support::spawn(&[same_group[0], same_group[1], ("KAFKA_PARTITIONS", "1")]).await;
    for order in &orders {
        second.wait_for_known_order(order, OrderStage::Pending).await;
    }
    second.stop().await.expect("a clean stop");

    // Once written, they are committed: a third member (on a database of its own) starts after them.
    let third = support::spawn(&[same_group[0], same_group[1], ("KAFKA_PARTITIONS", "1")]).await;
    let marker = uuid::Uuid::now_v7().to_string();
    produce(&third.brokers, &third.new_order_topic, &marker, &order_event("new-order", &marker, &user, 1)).await;
    third.wait_for_known_order(&marker, OrderStage::Pending).await;
    let projection = third.projection().await;
    for order in &orders {
        assert_eq!(projection.find(order).await.unwrap(), None, "{order} was consumed again");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pay_that_arrives_before_the_orders_events_waits_for_them_and_succeeds() {
    let app = support::spawn(&[("PAY_ORDER_WAIT_MS", "10000")]).await;
    let (order, user) = (uuid::Uuid::now_v7().to_string(), support::unique("user-"));
    let lookups = [("queue", "pay_lookups")];
    let mut client = app.client().await;
    let request = with_token(pay_request(&order, &user, 1_000, "early"), &app.issuer.token_for(&user, "customer"));
    let pay = tokio::spawn(async move { client.pay(request).await });
    // The call has read the order (unknown here yet) and now waits for it.
    app.wait_for_metric("write_batch_size_sum", &lookups, Duration::from_secs(30), |value| value >= 1.0).await;
    produce(&app.brokers, &app.new_order_topic, &order, &order_event("new-order", &order, &user, 1_000)).await;
    produce(&app.brokers, &app.order_processed_topic, &order, &order_event("order-processed", &order, &user, 1_000))
        .await;
    let paid = pay.await.unwrap().expect("paid once its events arrived").into_inner();
    assert_eq!((paid.status(), paid.replayed), (PaymentStatus::Success, false));
    assert_eq!(app.metric("write_batch_size_sum", &lookups).await, 2.0, "read, woken, read again");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_wait_for_an_unknown_order_ends_within_the_callers_deadline_with_not_found() {
    let app = support::spawn(&[("PAY_ORDER_WAIT_MS", "10000")]).await;
    let user = support::unique("user-");
    let mut request =
        with_token(pay_request("never-heard-of", &user, 1_000, "k"), &app.issuer.token_for(&user, "customer"));
    request.set_timeout(Duration::from_millis(600));
    let refused = app.client().await.pay(request).await.unwrap_err();
    assert_eq!(refused.code(), Code::NotFound, "{refused:?}");
    assert_eq!(refused.metadata().get("x-error-reason").unwrap(), "ORDER_NOT_FOUND");
}
