//! The store's batch commands, counted from the driver's own command events (the
//! `mongodb_commands_total` metric): a batch costs one command whatever its size, an update by
//! `_id` one per `UPDATE_CHUNK` documents.
use crate::support;

use std::time::Duration;

use platform::mongo::{Lease, UPDATE_CHUNK};

use order_service::{
    domain::{Money, OrderStatus, Quantity},
    events::envelope,
    product_client::ProductSnapshot,
    store::{OrderDocument, OrderStore, OutboxEvent, StoreError, TransitionWrite},
};

struct Probe {
    store: OrderStore,
    /// The same collection, read as stored.
    orders: mongodb::Collection<mongodb::bson::Document>,
    commands: prometheus::IntCounterVec,
}

impl Probe {
    async fn new() -> Self {
        let metrics = platform::mongo::MongoMetrics::register(&prometheus::Registry::new());
        let client = platform::mongo::connect(&support::env("MONGODB_URI"), "test", Duration::from_secs(5), &metrics)
            .await
            .unwrap();
        let commands = metrics.commands;
        let database = client.database(&format!("orders_batch_{}", uuid::Uuid::new_v4().simple()));
        let store = OrderStore::new(database.clone());
        store.ensure_indexes().await.unwrap();
        Self { store, orders: database.collection("orders"), commands }
    }

    /// Commands sent by `operation` so far.
    fn sent(&self, operation: &str) -> u64 {
        self.commands.with_label_values(&[operation]).get()
    }
}

/// The pending → processed transition of `order`, queuing an `order-processed` event with this id and payload.
fn processed(order: &OrderDocument, event_id: &str, payload: &str) -> TransitionWrite {
    TransitionWrite::Processed {
        order_id: order.id.clone(),
        event: OutboxEvent {
            event_id: event_id.to_owned(),
            topic: "order-processed".into(),
            key: order.id.clone(),
            payload: payload.to_owned(),
            request_id: None,
            traceparent: None,
            tracestate: None,
        },
    }
}

fn order(user: &str, key: Option<&str>) -> OrderDocument {
    let product = ProductSnapshot { id: "1".into(), name: "Smartphone".into(), unit_price: Money::from_cents(89_999) };
    let quantity = Quantity::parse(&serde_json::json!(2)).unwrap();
    let total = product.unit_price.times(quantity.get()).unwrap();
    let keyed = key.map(|key| (format!("{user}:{key}"), "1|2".to_owned()));
    let mut order = OrderDocument::new_pending(user, &product, quantity, total, keyed, None);
    order.outbox.push(envelope::new_order_event(&order, "new-order", None, Default::default()).unwrap());
    order
}

#[tokio::test]
async fn a_batch_of_orders_is_one_insert_and_a_duplicate_key_fails_only_its_own_order() {
    let probe = Probe::new().await;
    let mut orders: Vec<OrderDocument> = (0..50).map(|n| order("u", Some(&format!("k{n}")))).collect();
    orders[10] = order("u", Some("k3"));
    orders[40] = order("u", Some("k3"));
    let before = probe.sent("insert");
    let outcomes = probe.store.insert_batch(&orders).await;
    assert_eq!(probe.sent("insert") - before, 1, "one command for the batch");
    for (index, outcome) in outcomes.iter().enumerate() {
        match index {
            10 | 40 => assert!(matches!(outcome, Err(StoreError::DuplicateIdempotencyKey)), "{index}: {outcome:?}"),
            _ => assert!(outcome.is_ok(), "{index}: {outcome:?}"),
        }
    }
    let ids: Vec<String> = orders.iter().map(|order| order.id.clone()).collect();
    assert_eq!(probe.store.find_many(&ids).await.unwrap().len(), 48);
}

#[tokio::test]
async fn what_a_replica_writes_is_held_by_it_so_its_relay_reads_it_without_a_claim() {
    let probe = Probe::new().await;
    let lease = Lease { owner: "replica-a".into(), duration: Duration::from_secs(30) };
    let store = probe.store.clone().holding_new_events(lease);
    let orders: Vec<OrderDocument> = (0..10).map(|_| order("u", None)).collect();
    assert!(store.insert_batch(&orders).await.iter().all(Result::is_ok));
    let updates = probe.sent("update");
    let held = store.held_outbox("replica-a", 200).await.unwrap();
    assert_eq!((held.len(), probe.sent("update") - updates), (10, 0), "all of them, without a claim");
    assert!(store.claim_outbox("replica-b", Duration::from_secs(30), 200).await.unwrap().is_empty(), "held by a");

    // Published; then the order-processed events are held by the replica that applied the transitions.
    let published: Vec<(String, String)> =
        held.iter().map(|order| (order.id.clone(), order.outbox[0].event_id.clone())).collect();
    store.acknowledge_published(&published).await.unwrap();
    assert!(store.held_outbox("replica-a", 200).await.unwrap().is_empty());
    let writes: Vec<TransitionWrite> =
        orders.iter().map(|order| processed(order, &uuid::Uuid::new_v4().to_string(), "{}")).collect();
    assert_eq!(store.apply_transitions(&writes).await.unwrap(), vec![true; 10]);
    assert_eq!(store.held_outbox("replica-a", 200).await.unwrap().len(), 10);
    assert!(store.claim_outbox("replica-b", Duration::from_secs(30), 200).await.unwrap().is_empty(), "held by a");
}

#[tokio::test]
async fn the_relay_claims_in_one_command_and_marks_published_in_one_command_per_chunk() {
    let probe = Probe::new().await;
    // More than two chunks' worth, the last one short.
    let count = 2 * UPDATE_CHUNK + 7;
    let orders: Vec<OrderDocument> = (0..count).map(|_| order("u", None)).collect();
    assert!(probe.store.insert_batch(&orders).await.iter().all(Result::is_ok));

    let updates = probe.sent("update");
    let claimed = probe.store.claim_outbox("replica-a", Duration::from_secs(30), 1000).await.unwrap();
    assert_eq!(claimed.len(), count);
    assert_eq!(probe.sent("update") - updates, 1, "one claim for the whole outbox");
    assert!(probe.store.claim_outbox("replica-b", Duration::from_secs(30), 1000).await.unwrap().is_empty(), "leased");

    let published: Vec<(String, String)> =
        claimed.iter().map(|order| (order.id.clone(), order.outbox[0].event_id.clone())).collect();
    let updates = probe.sent("update");
    probe.store.acknowledge_published(&published).await.unwrap();
    assert_eq!(probe.sent("update") - updates, 3, "one command per chunk of orders");
    let ids: Vec<String> = orders.iter().map(|order| order.id.clone()).collect();
    for order in probe.store.find_many(&ids).await.unwrap().values() {
        assert!(order.outbox.is_empty() && !order.outbox_pending, "{order:?}");
    }
    assert_eq!(probe.store.outbox_backlog().await.unwrap(), 0);
}

#[tokio::test]
async fn an_acknowledgement_keeps_an_event_queued_after_the_published_one_whatever_chunk_its_order_is_in() {
    let probe = Probe::new().await;
    let orders: Vec<OrderDocument> = (0..UPDATE_CHUNK + 10).map(|_| order("u", None)).collect();
    assert!(probe.store.insert_batch(&orders).await.iter().all(Result::is_ok));
    let published: Vec<(String, String)> =
        orders.iter().map(|order| (order.id.clone(), order.outbox[0].event_id.clone())).collect();
    // Two orders, one in each chunk, are processed while their new-order events are being published.
    let late = [&orders[3], &orders[UPDATE_CHUNK + 3]];
    let writes: Vec<TransitionWrite> =
        late.iter().map(|order| processed(order, &format!("p-{}", order.id), "{}")).collect();
    assert_eq!(probe.store.apply_transitions(&writes).await.unwrap(), vec![true; 2]);

    probe.store.acknowledge_published(&published).await.unwrap();
    let ids: Vec<String> = orders.iter().map(|order| order.id.clone()).collect();
    let stored = probe.store.find_many(&ids).await.unwrap();
    for order in &orders {
        let stored = &stored[&order.id];
        if late.iter().any(|late| late.id == order.id) {
            let left: Vec<&str> = stored.outbox.iter().map(|event| event.event_id.as_str()).collect();
            assert_eq!(left, [format!("p-{}", order.id)], "the order-processed event stays");
            assert!(stored.outbox_pending);
        } else {
            assert!(stored.outbox.is_empty() && !stored.outbox_pending, "{stored:?}");
        }
    }
    assert_eq!(probe.store.outbox_backlog().await.unwrap(), 2);
}

#[tokio::test]
async fn an_expired_lease_is_taken_over_and_a_live_one_is_not() {
    let probe = Probe::new().await;
    assert!(probe.store.insert_batch(&[order("u", None)]).await[0].is_ok());
    assert_eq!(probe.store.claim_outbox("dead", Duration::ZERO, 10).await.unwrap().len(), 1);
    assert_eq!(probe.store.claim_outbox("live", Duration::from_secs(60), 10).await.unwrap().len(), 1, "expired");
    assert!(probe.store.claim_outbox("other", Duration::from_secs(60), 10).await.unwrap().is_empty());
    assert_eq!(probe.store.claim_outbox("live", Duration::from_secs(60), 10).await.unwrap().len(), 1, "its own");
    probe.store.release_leases("live").await.unwrap();
    assert_eq!(probe.store.claim_outbox("other", Duration::from_secs(60), 10).await.unwrap().len(), 1, "released");
}

#[tokio::test]
async fn a_batch_of_transitions_is_one_update_per_kind_and_each_applies_only_from_its_state() {
    let probe = Probe::new().await;
    let orders: Vec<OrderDocument> = (0..20).map(|_| order("u", None)).collect();
    assert!(probe.store.insert_batch(&orders).await.iter().all(Result::is_ok));
    let processed = |order: &OrderDocument| processed(order, &uuid::Uuid::new_v4().to_string(), "{}");
    let paid = |order: &OrderDocument, user_id: &str, total_cents| TransitionWrite::Paid {
        order_id: order.id.clone(),
        user_id: user_id.to_owned(),
        total_cents,
        payment_id: format!("pay-{}", order.id),
        event_id: "e".into(),
    };
    // 19 pending → processed, then in the same batch: a second processed of one of them (nothing left
    // to do), a payment of the right owner and total (applies), one of a wrong total and one of another
    // owner (both refused by the update's check), and one of a pending order (too early).
    let mut writes: Vec<TransitionWrite> = orders[..19].iter().map(processed).collect();
    writes.push(processed(&orders[0]));
    writes.push(paid(&orders[1], "u", 179_998));
    writes.push(paid(&orders[2], "u", 1));
    writes.push(paid(&orders[3], "someone-else", 179_998));
    writes.push(paid(&orders[19], "u", 179_998));
    let before = (probe.sent("update"), probe.sent("bulkWrite"));
    let applied = probe.store.apply_transitions(&writes).await.unwrap();
    assert_eq!(probe.sent("update") - before.0, 2, "one update for the processed, one for the paid");
    assert_eq!(probe.sent("bulkWrite") - before.1, 0, "no statement per order");
    assert_eq!(&applied[..19], &[true; 19]);
    assert_eq!(&applied[19..], &[false, true, false, false, false]);

    let ids: Vec<String> = orders.iter().map(|order| order.id.clone()).collect();
    let stored = probe.store.find_many(&ids).await.unwrap();
    assert_eq!(stored[&orders[0].id].outbox.len(), 2, "new-order and one order-processed");
    assert_eq!(stored[&orders[1].id].status, OrderStatus::Paid);
    assert_eq!(stored[&orders[1].id].payment_id.as_deref(), Some(format!("pay-{}", orders[1].id).as_str()));
    assert_eq!(stored[&orders[2].id].status, OrderStatus::Processed);
    assert_eq!(stored[&orders[3].id].status, OrderStatus::Processed);
    assert_eq!(stored[&orders[3].id].payment_id, None);
    assert_eq!(stored[&orders[19].id].status, OrderStatus::Pending);
    // The fields the paid update computes its check in are not left behind, applied or refused.
    for order in &orders[1..4] {
        let raw = probe.orders.find_one(mongodb::bson::doc! { "_id": &order.id }).await.unwrap().unwrap();
        assert!(!raw.contains_key("_position") && !raw.contains_key("_checked"), "{raw:?}");
    }
    for (order, write) in orders[..19].iter().zip(&writes) {
        let TransitionWrite::Processed { event, .. } = write else { unreachable!() };
        assert_eq!(stored[&order.id].outbox.last(), Some(event), "each order queues its own event");
    }
}

#[tokio::test]
async fn a_batch_whose_transitions_all_apply_is_one_update_and_no_read() {
    let probe = Probe::new().await;
    let orders: Vec<OrderDocument> = (0..30).map(|_| order("u", None)).collect();
    assert!(probe.store.insert_batch(&orders).await.iter().all(Result::is_ok));
    let writes: Vec<TransitionWrite> =
        orders.iter().map(|order| processed(order, &format!("$processed-{}", order.id), "$not-a-field-path")).collect();
    let before = (probe.sent("update"), probe.sent("find"));
    assert_eq!(probe.store.apply_transitions(&writes).await.unwrap(), vec![true; 30]);
    assert_eq!((probe.sent("update") - before.0, probe.sent("find") - before.1), (1, 0));
    let ids: Vec<String> = orders.iter().map(|order| order.id.clone()).collect();
    let stored = probe.store.find_many(&ids).await.unwrap();
    for order in &orders {
        let queued = stored[&order.id].outbox.last().expect("an event");
        assert_eq!(
            queued.event_id,
            format!("$processed-{}", order.id),
            "values starting with $ are stored as they are"
        );
        assert_eq!(queued.payload, "$not-a-field-path");
    }
}
