//! The Kafka half of the order lifecycle, against the real broker and database.
use crate::support;

use std::time::Duration;

use order_service::{
    domain::OrderStatus,
    store::{OrderWithEvent, TransitionWrite},
};
use serde_json::json;

/// A pending order written by `app`'s replica (so remembered as written) and recorded processed by the consumer batch
/// `batch`, whose `new-order` event has not reached `app`'s consumer yet.
async fn processed_by(app: &support::TestApp, batch: &str) -> OrderWithEvent {
    let new = support::new_pending_order("user-1", &app.topic("new-order"));
    app.state.store.insert(&new).await.unwrap();
    let write = TransitionWrite::Processed { order_id: new.order.id.clone() };
    assert_eq!(app.state.store.apply_transitions(&[write], batch).await.unwrap(), vec![true]);
    new
}

#[tokio::test]
async fn a_pending_order_is_published_processed_and_announced_once() {
    let app = support::settings().spawn().await;
    let order = app.insert_pending_order("user-1").await;
    app.wait_for_status(std::slice::from_ref(&order.id), OrderStatus::Processed, Duration::from_secs(20)).await;

    let new_orders = support::read_topic(&app.brokers, &app.topic("new-order"), Duration::from_secs(3)).await;
    assert_eq!(new_orders.len(), 1);
    assert_eq!(new_orders[0].key.as_deref(), Some(order.id.as_str()), "keyed by order id");
    let envelope = &new_orders[0].payload;
    assert_eq!(envelope["type"], "new-order");
    assert_eq!(envelope["version"], 1);
    assert!(envelope["eventId"].is_string() && envelope["occurredAt"].is_string());
    assert_eq!(envelope["data"]["id"], order.id.as_str());
    assert_eq!(envelope["data"]["total"], 1799.98);

    let processed = support::read_topic(&app.brokers, &app.topic("order-processed"), Duration::from_secs(3)).await;
    assert_eq!(processed.len(), 1, "one order-processed per order");
    assert_eq!(processed[0].payload["data"]["status"], "processed");
    app.wait_outbox_drained(Duration::from_secs(5)).await;
}

#[tokio::test]
async fn a_redelivered_new_order_event_changes_nothing() {
    let app = support::settings().spawn().await;
    let order = app.insert_pending_order("user-1").await;
    app.wait_for_status(std::slice::from_ref(&order.id), OrderStatus::Processed, Duration::from_secs(20)).await;
    let before = app.state.store.find(&order.id).await.unwrap().unwrap();

    let original = support::read_topic(&app.brokers, &app.topic("new-order"), Duration::from_secs(3)).await;
    support::produce(&app.brokers, &app.topic("new-order"), &order.id, &original[0].raw).await;
    support::produce(&app.brokers, &app.topic("new-order"), &order.id, &original[0].raw).await;
    // A later order proves the consumer has moved past the duplicates.
    let marker = app.insert_pending_order("user-1").await;
    app.wait_for_status(std::slice::from_ref(&marker.id), OrderStatus::Processed, Duration::from_secs(20)).await;

    let after = app.state.store.find(&order.id).await.unwrap().unwrap();
    assert_eq!(after.updated_at, before.updated_at, "no second transition");
    let processed = support::read_topic(&app.brokers, &app.topic("order-processed"), Duration::from_secs(3)).await;
    let for_order = processed.iter().filter(|m| m.key.as_deref() == Some(order.id.as_str())).count();
    assert_eq!(for_order, 1, "the duplicate did not announce the order twice");
}

#[tokio::test]
async fn an_order_processed_by_a_consumer_that_died_before_announcing_it_is_announced_on_redelivery() {
    let app = support::settings().spawn().await;
    // The state a crash leaves: the transition is durable, its announcement never reached the broker, and the
    // new-order offset was not stored (so the broker delivers the message again).
    // Received and processed before the relay published it.
    let new = processed_by(&app, "a-batch-never-recorded").await;
    let (order, new_order) = (new.order, new.event);

    support::produce(&app.brokers, &app.topic("new-order"), &order.id, new_order.payload.as_bytes()).await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    let announced = loop {
        let processed = support::read_topic(&app.brokers, &app.topic("order-processed"), Duration::from_secs(2)).await;
        if let Some(record) = processed.into_iter().find(|m| m.key.as_deref() == Some(order.id.as_str())) {
            break record;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the redelivered new-order was not answered by an announcement"
        );
    };
    assert_eq!(announced.payload["type"], "order-processed");
    assert_eq!(announced.payload["data"]["status"], "processed");
    assert_eq!(announced.payload["data"]["totalCents"], 179_998);
}

#[tokio::test]
async fn an_order_another_consumer_processed_and_announced_is_not_announced_again_by_the_replica_that_wrote_it() {
    let app = support::settings().spawn().await;
    // Written by this replica (so remembered as written, pending), then processed and announced by another consumer
    // working the same message at once (a rebalance) before this one's consumer gets to it.
    let new = processed_by(&app, "the-other-consumers").await;
    app.state.store.record_announced("the-other-consumers").await.unwrap();
    let order = new.order.id.clone();
    support::produce(&app.brokers, &app.topic("new-order"), &order, new.event.payload.as_bytes()).await;
    // A later order proves the consumer has moved past it.
    let marker = app.insert_pending_order("user-1").await;
    app.wait_for_status(std::slice::from_ref(&marker.id), OrderStatus::Processed, Duration::from_secs(20)).await;

    let processed = support::read_topic(&app.brokers, &app.topic("order-processed"), Duration::from_secs(3)).await;
    let again = processed.iter().filter(|m| m.key.as_deref() == Some(order.as_str())).count();
    assert_eq!(again, 0, "the other consumer announced it; this one does not again");
    let stored = app.state.store.find(&order).await.unwrap().unwrap();
    assert_eq!((stored.status, stored.processed_by.as_deref()), (OrderStatus::Processed, Some("the-other-consumers")));
}

#[tokio::test]
async fn a_poison_message_goes_to_the_dead_letter_topic_and_does_not_block_its_partition() {
    let app = support::settings().with("KAFKA_PARTITIONS", "1").spawn().await;
    support::produce(&app.brokers, &app.topic("new-order"), "garbage", b"{this is not json").await;
    let unknown = json!({"eventId": "e1", "type": "new-order", "version": 1, "occurredAt": "2026-01-01T00:00:00Z",
        "data": {"id": "no-such-order", "userId": "u", "productId": "1", "productName": "x", "quantity": 1,
                 "unitPrice": 1.0, "total": 1.0, "status": "pending", "createdAt": "t", "updatedAt": "t"}});
    support::produce(&app.brokers, &app.topic("new-order"), "no-such-order", unknown.to_string().as_bytes()).await;
    let order = app.insert_pending_order("user-1").await;
    app.wait_for_status(std::slice::from_ref(&order.id), OrderStatus::Processed, Duration::from_secs(20)).await;

    let dead = support::read_topic(&app.brokers, &app.topic("new-order.dlq"), Duration::from_secs(3)).await;
    assert_eq!(dead.len(), 2);
    let garbage = dead.iter().find(|m| m.raw == b"{this is not json").expect("the unparseable message");
    assert!(garbage.headers["dlq-reason"].contains("not a new-order envelope"), "{:?}", garbage.headers);
    assert_eq!(garbage.headers["dlq-source-topic"], app.topic("new-order"));
    let unknown = dead.iter().find(|m| m.key.as_deref() == Some("no-such-order")).expect("the unknown order");
    assert!(unknown.headers["dlq-reason"].contains("unknown order"));
}

#[tokio::test]
async fn payment_processed_moves_a_processed_order_to_paid_once() {
    let app = support::settings().spawn().await;
    let order = app.insert_pending_order("user-1").await;
    app.wait_for_status(std::slice::from_ref(&order.id), OrderStatus::Processed, Duration::from_secs(20)).await;
    let event = json!({"eventId": "p1", "type": "payment-processed", "version": 1, "occurredAt": "2026-01-01T00:00:00Z",
        "data": {"paymentId": "pay-1", "orderId": order.id, "userId": "user-1", "amountCents": 179_998,
                 "currency": "EUR", "status": "SUCCESS"}});
    for _ in 0..2 {
        support::produce(&app.brokers, &app.topic("payment-processed"), &order.id, event.to_string().as_bytes()).await;
    }
    app.wait_for_status(std::slice::from_ref(&order.id), OrderStatus::Paid, Duration::from_secs(20)).await;
    let stored = app.state.store.find(&order.id).await.unwrap().unwrap();
    assert_eq!(stored.payment_id.as_deref(), Some("pay-1"));
}

#[tokio::test]
async fn a_payment_for_an_unknown_order_is_dead_lettered() {
    let app = support::settings().spawn().await;
    let event = json!({"eventId": "p1", "type": "payment-processed", "version": 1, "occurredAt": "t",
        "data": {"paymentId": "pay-1", "orderId": "ghost", "userId": "u", "amountCents": 1, "currency": "EUR",
                 "status": "SUCCESS"}});
    support::produce(&app.brokers, &app.topic("payment-processed"), "ghost", event.to_string().as_bytes()).await;
    let mut dead = Vec::new();
    for _ in 0..10 {
        dead = support::read_topic(&app.brokers, &app.topic("payment-processed.dlq"), Duration::from_secs(2)).await;
        if !dead.is_empty() {
            break;
        }
    }
    assert_eq!(dead.len(), 1);
    assert!(dead[0].headers["dlq-reason"].contains("unknown order ghost"));
}

#[tokio::test]
async fn a_forged_payment_that_does_not_match_its_order_is_dead_lettered_and_the_order_stays_processed() {
    let app = support::settings().spawn().await;
    let order = app.insert_pending_order("user-1").await;
    app.wait_for_status(std::slice::from_ref(&order.id), OrderStatus::Processed, Duration::from_secs(20)).await;
    // The order is 1,799.98 EUR by user-1: one cent for it, someone else paying it, and the right amount in
    // another currency, each as a SUCCESS event straight on the topic, as anyone who can write to Kafka could.
    let forged = [
        ("pay-cent", "user-1", 1, "EUR", "amount"),
        ("pay-other", "user-2", 179_998, "EUR", "payer"),
        ("pay-usd", "user-1", 179_998, "USD", "currency"),
    ];
    for (payment_id, user_id, cents, currency, _) in forged {
        let event = json!({"eventId": format!("e-{payment_id}"), "type": "payment-processed", "version": 1,
            "occurredAt": "2026-01-01T00:00:00Z",
            "data": {"paymentId": payment_id, "orderId": order.id, "userId": user_id, "amountCents": cents,
                     "currency": currency, "status": "SUCCESS"}});
        support::produce(&app.brokers, &app.topic("payment-processed"), &order.id, event.to_string().as_bytes()).await;
    }
    let mut dead = Vec::new();
    for _ in 0..10 {
        dead = support::read_topic(&app.brokers, &app.topic("payment-processed.dlq"), Duration::from_secs(2)).await;
        if dead.len() >= forged.len() {
            break;
        }
    }
    assert_eq!(dead.len(), forged.len(), "every forged payment is dead-lettered");
    for (payment_id, _, _, _, reason) in forged {
        let letter = dead
            .iter()
            .find(|letter| String::from_utf8_lossy(&letter.raw).contains(payment_id))
            .unwrap_or_else(|| panic!("{payment_id} is in the dead-letter topic"));
        assert!(letter.headers["dlq-reason"].contains(payment_id), "{:?}", letter.headers);
        let text = app.client.get(app.url("/metrics")).send().await.unwrap().text().await.unwrap();
        let series = format!("payment_events_rejected_total{{reason=\"{reason}\"}} 1");
        assert!(text.lines().any(|line| line == series), "{series} missing from the metrics");
    }
    assert_eq!(app.status(&order.id).await, Some(OrderStatus::Processed), "the order did not change");
    let stored = app.state.store.find(&order.id).await.unwrap().unwrap();
    assert_eq!(stored.payment_id, None);

    // The real payment still goes through.
    let event = json!({"eventId": "e-real", "type": "payment-processed", "version": 1, "occurredAt": "t",
        "data": {"paymentId": "pay-real", "orderId": order.id, "userId": "user-1", "amountCents": 179_998,
                 "currency": "EUR", "status": "SUCCESS"}});
    support::produce(&app.brokers, &app.topic("payment-processed"), &order.id, event.to_string().as_bytes()).await;
    app.wait_for_status(std::slice::from_ref(&order.id), OrderStatus::Paid, Duration::from_secs(20)).await;
}

#[tokio::test]
async fn an_event_leaves_the_outbox_once_published_whether_or_not_its_order_is_ever_processed() {
    let app = support::settings().spawn().await;
    // Its event names an order that does not exist: the consumer dead-letters it, and no transition is recorded.
    let mut new = support::new_pending_order("user-1", &app.topic("new-order"));
    let mut payload: serde_json::Value = serde_json::from_str(&new.event.payload).unwrap();
    payload["data"]["id"] = json!("no-such-order");
    new.event.payload = payload.to_string();
    app.state.store.insert(&new).await.unwrap();
    let order = new.order;
    // The event in the outbox as earlier versions wrote it (a batch's entry), which the relay reads.
    let entry = mongodb::bson::doc! {
        "_id": uuid::Uuid::now_v7().to_string(),
        "outbox": [mongodb::bson::to_document(&new.event).unwrap()],
        "outboxPending": true,
    };
    let outbox = support::raw_database(&app.database).await.collection::<mongodb::bson::Document>("order_outbox");
    outbox.insert_one(entry).await.unwrap();
    app.state.relay_inbox.read_outbox();

    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    let new_order = app.topic("new-order");
    while support::sample(&app.metrics().await, "kafka_messages_consumed_total", &[("topic", &new_order)]) < 1.0 {
        assert!(tokio::time::Instant::now() < deadline, "the consumer never handled the event");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    app.wait_outbox_drained(Duration::from_secs(20)).await;
    let dead = support::read_topic(&app.brokers, &app.topic("new-order.dlq"), Duration::from_secs(3)).await;
    assert_eq!(dead.len(), 1);
    assert_eq!(app.status(&order.id).await, Some(OrderStatus::Pending));
    let published = support::read_topic(&app.brokers, &app.topic("new-order"), Duration::from_secs(3)).await;
    assert_eq!(published.len(), 1, "published once");
}

#[tokio::test]
async fn a_backlog_written_outside_the_inbox_is_read_page_after_page_and_each_event_published_once() {
    let app = support::settings().spawn().await;
    // More than two pages of the relay's reads (batches of four orders), written outside the inbox, as a broker
    // outage leaves them.
    let mut ids = Vec::new();
    for _ in 0..250 {
        let orders: Vec<OrderWithEvent> =
            (0..4).map(|_| support::new_pending_order("user-1", &app.topic("new-order"))).collect();
        let stored = app.state.store.insert_batch(&orders).await;
        assert!(stored.outcomes.iter().all(Result::is_ok));
        ids.extend(orders.into_iter().map(|new| new.order.id));
    }
    app.state.relay_inbox.unknown(ids.iter().map(String::as_str));

    app.wait_for_status(&ids, OrderStatus::Processed, Duration::from_secs(120)).await;
    app.wait_outbox_drained(Duration::from_secs(20)).await;
    let published = support::read_topic(&app.brokers, &app.topic("new-order"), Duration::from_secs(3)).await;
    assert_eq!(published.len(), 1_000, "each published once");
    let mut keys: Vec<&str> = published.iter().filter_map(|message| message.key.as_deref()).collect();
    keys.sort_unstable();
    keys.dedup();
    assert_eq!(keys.len(), 1_000);
}
