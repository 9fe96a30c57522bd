//! The store's batch commands, counted from the driver's own command events (the
//! `mongodb_commands_total` metric): a batch costs one command whatever its size, an update by
//! `_id` one per `UPDATE_CHUNK` documents.
use crate::support;

use std::time::Duration;

use futures::TryStreamExt as _;

use platform::mongo::{Lease, OutboxLeases, OutboxPage, UPDATE_CHUNK};

use order_service::{
    domain::{Money, OrderStatus, Quantity},
    events::envelope,
    product_client::ProductSnapshot,
    store::{OrderDocument, OrderStore, PendingOutbox, Published, StoreError, TransitionWrite},
};

struct Probe {
    store: OrderStore,
    /// The same collection, read as stored.
    orders: mongodb::Collection<mongodb::bson::Document>,
    database: mongodb::Database,
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
        Self { store, orders: database.collection("orders"), database, commands }
    }

    /// The store as replica-a's writes use it: what they insert is held by replica-a for 30 s.
    fn held_by_replica_a(&self) -> OrderStore {
        self.store.clone().holding_new_events(Lease { owner: "replica-a".into(), duration: Duration::from_secs(30) })
    }

    /// `count` new orders written through replica-a's store, which holds their events: that store, and the orders.
    async fn orders_held_by_replica_a(&self, count: usize) -> (OrderStore, Vec<OrderDocument>) {
        let store = self.held_by_replica_a();
        let orders: Vec<OrderDocument> = (0..count).map(|_| order("u", None)).collect();
        assert!(store.insert_batch(&orders).await.iter().all(Result::is_ok));
        (store, orders)
    }

    /// Commands sent by `operation` so far.
    fn sent(&self, operation: &str) -> u64 {
        self.commands.with_label_values(&[operation]).get()
    }
}

/// The pending → processed transition of `order`.
fn processed(order: &OrderDocument) -> TransitionWrite {
    TransitionWrite::Processed { order_id: order.id.clone(), published_event: None }
}

/// Every event of `orders`, as their relay read them, published.
fn all_published(orders: &[PendingOutbox]) -> Vec<Published> {
    orders.iter().flat_map(|order| order.outbox.iter().map(|event| Published::of(order, event))).collect()
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
async fn the_relay_reads_what_it_holds_a_page_at_a_time_each_from_where_the_last_ended() {
    let probe = Probe::new().await;
    let (store, orders) = probe.orders_held_by_replica_a(7).await;
    let mut ids: Vec<String> = orders.iter().map(|order| order.id.clone()).collect();
    ids.sort();

    let mut read = Vec::new();
    let mut after: Option<String> = None;
    loop {
        let page = store.held_outbox("replica-a", OutboxPage { limit: 3, after: after.as_deref() }).await.unwrap();
        read.push(page.iter().map(|order| order.id.clone()).collect::<Vec<_>>());
        if page.len() < 3 {
            break;
        }
        after = page.last().map(|order| order.id.clone());
    }
    assert_eq!(read, vec![ids[..3].to_vec(), ids[3..6].to_vec(), ids[6..].to_vec()], "oldest first, none twice");
    let claimed =
        store.claim_outbox("replica-a", Duration::from_secs(30), OutboxPage { limit: 10, after: Some(&ids[4]) });
    let claimed: Vec<String> = claimed.await.unwrap().into_iter().map(|order| order.id).collect();
    assert_eq!(claimed, ids[5..].to_vec(), "a claim reads on from the same place");
}

#[tokio::test]
async fn what_a_replica_writes_is_held_by_it_so_its_relay_reads_it_without_a_claim() {
    let probe = Probe::new().await;
    let (store, orders) = probe.orders_held_by_replica_a(10).await;
    let updates = probe.sent("update");
    let held = store.held_outbox("replica-a", OutboxPage::first(200)).await.unwrap();
    assert_eq!((held.len(), probe.sent("update") - updates), (10, 0), "all of them, without a claim");
    assert!(
        store.claim_outbox("replica-b", Duration::from_secs(30), OutboxPage::first(200)).await.unwrap().is_empty(),
        "held by a"
    );

    // Published; then processed: the transition queues nothing (the consumer announces it).
    store.acknowledge_published("replica-a", &all_published(&held)).await.unwrap();
    assert!(store.held_outbox("replica-a", OutboxPage::first(200)).await.unwrap().is_empty());
    let writes: Vec<TransitionWrite> = orders.iter().map(processed).collect();
    assert_eq!(store.apply_transitions(&writes, "batch-1").await.unwrap(), vec![true; 10]);
    assert!(store.held_outbox("replica-a", OutboxPage::first(200)).await.unwrap().is_empty());
    assert!(store.claim_outbox("replica-b", Duration::from_secs(30), OutboxPage::first(200)).await.unwrap().is_empty());
    assert_eq!(store.outbox_backlog().await.unwrap(), 0);
}

#[tokio::test]
async fn the_relay_claims_in_one_command_and_marks_published_in_one_command_per_chunk() {
    let probe = Probe::new().await;
    // More than two chunks' worth, the last one short.
    let count = 2 * UPDATE_CHUNK + 7;
    let orders: Vec<OrderDocument> = (0..count).map(|_| order("u", None)).collect();
    assert!(probe.store.insert_batch(&orders).await.iter().all(Result::is_ok));

    let updates = probe.sent("update");
    let claimed =
        probe.store.claim_outbox("replica-a", Duration::from_secs(30), OutboxPage::first(1000)).await.unwrap();
    assert_eq!(claimed.len(), count);
    assert_eq!(probe.sent("update") - updates, 2, "the relay's heartbeat, and one claim for the whole outbox");
    assert!(
        probe
            .store
            .claim_outbox("replica-b", Duration::from_secs(30), OutboxPage::first(1000))
            .await
            .unwrap()
            .is_empty(),
        "leased"
    );

    let updates = probe.sent("update");
    probe.store.acknowledge_published("replica-a", &all_published(&claimed)).await.unwrap();
    assert_eq!(probe.sent("update") - updates, 3, "one command per chunk of orders");
    let ids: Vec<String> = orders.iter().map(|order| order.id.clone()).collect();
    for order in probe.store.find_many(&ids).await.unwrap().values() {
        assert!(order.outbox.is_empty() && !order.outbox_pending, "{order:?}");
    }
    assert_eq!(probe.store.outbox_backlog().await.unwrap(), 0);
}

#[tokio::test]
async fn an_acknowledgement_keeps_an_order_s_unpublished_event_whatever_chunk_its_order_is_in() {
    let probe = Probe::new().await;
    let mut orders: Vec<OrderDocument> = (0..UPDATE_CHUNK + 10).map(|_| order("u", None)).collect();
    // Two orders, one in each chunk, have a second event queued (as an earlier version queued order-processed),
    // which the relay has not published yet.
    let late = [3, UPDATE_CHUNK + 3];
    for &index in &late {
        let second = envelope::new_order_event(&orders[index], "order-processed", None, Default::default()).unwrap();
        orders[index].outbox.push(second);
    }
    assert!(probe.store.insert_batch(&orders).await.iter().all(Result::is_ok));
    let claimed =
        probe.store.claim_outbox("replica-a", Duration::from_secs(30), OutboxPage::first(1000)).await.unwrap();
    assert_eq!(claimed.len(), orders.len());
    // Only the first event of each order went out.
    let published: Vec<Published> = claimed.iter().map(|order| Published::of(order, &order.outbox[0])).collect();

    probe.store.acknowledge_published("replica-a", &published).await.unwrap();
    let ids: Vec<String> = orders.iter().map(|order| order.id.clone()).collect();
    let stored = probe.store.find_many(&ids).await.unwrap();
    for (index, order) in orders.iter().enumerate() {
        let stored = &stored[&order.id];
        if late.contains(&index) {
            assert_eq!(stored.outbox, order.outbox[1..], "the unpublished event stays");
            assert!(stored.outbox_pending);
        } else {
            assert!(stored.outbox.is_empty() && !stored.outbox_pending, "{stored:?}");
        }
    }
    assert_eq!(probe.store.outbox_backlog().await.unwrap(), 2);
}

#[tokio::test]
async fn an_acknowledgement_takes_out_only_the_published_event_of_an_outbox_that_changed_since_the_relay_read_it() {
    let probe = Probe::new().await;
    let (store, orders) = probe.orders_held_by_replica_a(3).await;
    let held = store.held_outbox("replica-a", OutboxPage::first(10)).await.unwrap();
    assert!(held.iter().all(|order| order.outbox.len() == 1));
    let later = |order: &OrderDocument| {
        let event = envelope::new_order_event(order, "order-processed", None, Default::default()).unwrap();
        (mongodb::bson::to_document(&event).unwrap(), event)
    };
    // After the read, the first order got a second event (as an earlier version queued order-processed); the second
    // was taken over by another replica, which published its event, after which a new one was queued.
    let (second_raw, second) = later(&orders[0]);
    let (replaced_raw, replaced) = later(&orders[1]);
    let changed = [
        (&orders[0].id, mongodb::bson::doc! { "$push": { "outbox": second_raw } }),
        (&orders[1].id, mongodb::bson::doc! { "$set": { "outbox": [replaced_raw], "leaseOwner": "replica-b" } }),
    ];
    for (id, update) in changed {
        probe.orders.update_one(mongodb::bson::doc! { "_id": id }, update).await.unwrap();
    }

    store.acknowledge_published("replica-a", &all_published(&held)).await.unwrap();
    let ids: Vec<String> = orders.iter().map(|order| order.id.clone()).collect();
    let stored = store.find_many(&ids).await.unwrap();
    assert_eq!((&stored[&orders[0].id].outbox, stored[&orders[0].id].outbox_pending), (&vec![second], true));
    assert_eq!((&stored[&orders[1].id].outbox, stored[&orders[1].id].outbox_pending), (&vec![replaced], true));
    assert!(stored[&orders[2].id].outbox.is_empty() && !stored[&orders[2].id].outbox_pending);
    assert_eq!(store.outbox_backlog().await.unwrap(), 2);
}

#[tokio::test]
async fn an_expired_lease_is_taken_over_and_a_live_one_is_not() {
    let probe = Probe::new().await;
    assert!(probe.store.insert_batch(&[order("u", None)]).await[0].is_ok());
    assert_eq!(probe.store.claim_outbox("dead", Duration::ZERO, OutboxPage::first(10)).await.unwrap().len(), 1);
    assert_eq!(
        probe.store.claim_outbox("live", Duration::from_secs(60), OutboxPage::first(10)).await.unwrap().len(),
        1,
        "expired"
    );
    assert!(
        probe.store.claim_outbox("other", Duration::from_secs(60), OutboxPage::first(10)).await.unwrap().is_empty()
    );
    assert_eq!(
        probe.store.claim_outbox("live", Duration::from_secs(60), OutboxPage::first(10)).await.unwrap().len(),
        1,
        "its own"
    );
    probe.store.release_leases("live").await.unwrap();
    assert_eq!(
        probe.store.claim_outbox("other", Duration::from_secs(60), OutboxPage::first(10)).await.unwrap().len(),
        1,
        "released"
    );
}

#[tokio::test]
async fn claims_and_pages_walk_the_outbox_index_by_owner_not_every_pending_entry() {
    let probe = Probe::new().await;
    let (_, held) = probe.orders_held_by_replica_a(5).await;
    let stopped = [mongodb::bson::Bson::Null, "replica-b".into()];
    let mut page = OutboxLeases::claimed_by("replica-a");
    page.insert("_id", mongodb::bson::doc! { "$gt": &held[0].id });
    for filter in [OutboxLeases::held_by_any_of(&stopped), page] {
        let explain =
            mongodb::bson::doc! { "explain": { "find": "orders", "filter": filter }, "verbosity": "queryPlanner" };
        let plan = serde_json::to_string(&probe.database.run_command(explain).await.unwrap()).unwrap();
        assert!(plan.contains(&format!("\"indexName\":\"{}\"", OutboxLeases::INDEX)), "{plan}");
        assert!(!plan.contains("COLLSCAN"), "{plan}");
    }
}

#[tokio::test]
async fn a_hold_lasts_as_long_as_its_heartbeat_which_writes_no_entry() {
    let probe = Probe::new().await;
    let (store, _) = probe.orders_held_by_replica_a(60).await;
    let lease = Duration::from_secs(30);
    store.hold_leases("replica-a", lease).await.unwrap();
    let stored_before: Vec<_> = probe.orders.find(mongodb::bson::doc! {}).await.unwrap().try_collect().await.unwrap();
    let updates = probe.sent("update");
    store.renew_leases("replica-a", lease).await.unwrap();
    let stored_after: Vec<_> = probe.orders.find(mongodb::bson::doc! {}).await.unwrap().try_collect().await.unwrap();
    assert_eq!((probe.sent("update") - updates, stored_after), (1, stored_before), "one heartbeat, no order written");
    assert!(store.claim_outbox("replica-b", lease, OutboxPage::first(100)).await.unwrap().is_empty(), "a lives");

    // Its heartbeat runs out: the others take all it held, in one claim.
    store.renew_leases("replica-a", Duration::ZERO).await.unwrap();
    let taken = store.claim_outbox("replica-b", lease, OutboxPage::first(100)).await.unwrap();
    assert_eq!(taken.len(), 60);
    assert!(store.held_outbox("replica-a", OutboxPage::first(100)).await.unwrap().is_empty());
}

#[tokio::test]
async fn a_starting_relay_gives_holders_without_a_heartbeat_one_lease_then_they_are_taken_over() {
    let probe = Probe::new().await;
    // Held by a replica that never beat (an earlier version's, or one that died before its relay's first heartbeat).
    let gone = probe.store.clone().holding_new_events(Lease { owner: "gone".into(), duration: Duration::ZERO });
    assert!(gone.insert_batch(&[order("u", None), order("u", None)]).await.iter().all(Result::is_ok));
    let lease = Duration::from_secs(30);
    assert!(probe.store.claim_outbox("replica-b", lease, OutboxPage::first(10)).await.unwrap().is_empty());

    probe.store.hold_leases("replica-b", Duration::ZERO).await.unwrap();
    assert_eq!(probe.store.claim_outbox("replica-b", lease, OutboxPage::first(10)).await.unwrap().len(), 2);
}

#[tokio::test]
async fn ensure_indexes_replaces_the_outbox_index_of_earlier_versions() {
    let probe = Probe::new().await;
    probe.orders.drop_index(OutboxLeases::INDEX).await.unwrap();
    let earlier = mongodb::IndexModel::builder()
        .keys(mongodb::bson::doc! { "outboxPending": 1 })
        .options(mongodb::options::IndexOptions::builder().name("outbox_pending".to_owned()).build())
        .build();
    probe.orders.create_index(earlier).await.unwrap();
    probe.store.ensure_indexes().await.unwrap();
    probe.store.ensure_indexes().await.unwrap();
    let mut names = probe.orders.list_index_names().await.unwrap();
    names.sort();
    assert_eq!(names, ["_id_", "idempotency_scope", OutboxLeases::INDEX, "user_newest_first"]);
}

#[tokio::test]
async fn a_batch_of_transitions_is_one_update_per_kind_and_each_applies_only_from_its_state() {
    let probe = Probe::new().await;
    let orders: Vec<OrderDocument> = (0..20).map(|_| order("u", None)).collect();
    assert!(probe.store.insert_batch(&orders).await.iter().all(Result::is_ok));
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
    let applied = probe.store.apply_transitions(&writes, "batch-1").await.unwrap();
    assert_eq!(probe.sent("update") - before.0, 2, "one update for the processed, one for the paid");
    assert_eq!(probe.sent("bulkWrite") - before.1, 0, "no statement per order");
    assert_eq!(&applied[..19], &[true; 19]);
    assert_eq!(&applied[19..], &[false, true, false, false, false]);

    let ids: Vec<String> = orders.iter().map(|order| order.id.clone()).collect();
    let stored = probe.store.find_many(&ids).await.unwrap();
    for order in &orders[..19] {
        assert_eq!(stored[&order.id].outbox, order.outbox, "the transition queues no event");
    }
    assert!(orders[4..19].iter().chain([&orders[0]]).all(|order| stored[&order.id].status == OrderStatus::Processed));
    assert_eq!(stored[&orders[1].id].status, OrderStatus::Paid);
    assert_eq!(stored[&orders[1].id].payment_id.as_deref(), Some(format!("pay-{}", orders[1].id).as_str()));
    assert_eq!(stored[&orders[2].id].status, OrderStatus::Processed);
    assert_eq!(stored[&orders[3].id].status, OrderStatus::Processed);
    assert_eq!(stored[&orders[3].id].payment_id, None);
    assert_eq!(stored[&orders[19].id].status, OrderStatus::Pending);
    // Nothing of how the paid update computes its check is left behind, applied or refused.
    for order in &orders[1..4] {
        let raw = probe.orders.find_one(mongodb::bson::doc! { "_id": &order.id }).await.unwrap().unwrap();
        assert!(["position", "_position", "_checked"].iter().all(|field| !raw.contains_key(field)), "{raw:?}");
    }
}

#[tokio::test]
async fn a_batch_whose_transitions_all_apply_is_one_update_and_no_read() {
    let probe = Probe::new().await;
    let orders: Vec<OrderDocument> = (0..30).map(|_| order("u", None)).collect();
    assert!(probe.store.insert_batch(&orders).await.iter().all(Result::is_ok));
    let writes: Vec<TransitionWrite> = orders.iter().map(processed).collect();
    let before = (probe.sent("update"), probe.sent("find"));
    assert_eq!(probe.store.apply_transitions(&writes, "batch-1").await.unwrap(), vec![true; 30]);
    assert_eq!((probe.sent("update") - before.0, probe.sent("find") - before.1), (1, 0));
    let ids: Vec<String> = orders.iter().map(|order| order.id.clone()).collect();
    let stored = probe.store.find_many(&ids).await.unwrap();
    assert!(stored.values().all(|order| order.status == OrderStatus::Processed));
}

#[tokio::test]
async fn processed_orders_name_their_batch_and_a_batch_recorded_as_announced_is_found_in_one_query() {
    let probe = Probe::new().await;
    let orders: Vec<OrderDocument> = (0..3).map(|_| order("u", None)).collect();
    assert!(probe.store.insert_batch(&orders).await.iter().all(Result::is_ok));
    let writes: Vec<TransitionWrite> = orders.iter().map(processed).collect();
    assert_eq!(probe.store.apply_transitions(&writes, "batch-7").await.unwrap(), vec![true; 3]);
    let ids: Vec<String> = orders.iter().map(|order| order.id.clone()).collect();
    let stored = probe.store.find_many(&ids).await.unwrap();
    assert!(stored.values().all(|order| order.processed_by.as_deref() == Some("batch-7")));

    let batches = vec!["batch-7".to_owned(), "batch-8".to_owned()];
    assert!(probe.store.announced(&batches).await.unwrap().is_empty(), "not recorded yet");
    probe.store.record_announced("batch-7").await.unwrap();
    probe.store.record_announced("batch-7").await.unwrap();
    let (finds, inserts) = (probe.sent("find"), probe.sent("insert"));
    probe.store.record_announced("batch-8").await.unwrap();
    let announced = probe.store.announced(&batches).await.unwrap();
    assert_eq!(announced, batches.iter().cloned().collect(), "recording twice is no error");
    assert_eq!((probe.sent("insert") - inserts, probe.sent("find") - finds), (1, 1));
}

/// The pending → processed transition of `order`, by a consumer that received its `new-order` event `event_id`.
fn processed_after_receiving(order: &OrderDocument, event_id: &str) -> TransitionWrite {
    TransitionWrite::Processed { order_id: order.id.clone(), published_event: Some(event_id.to_owned()) }
}

#[tokio::test]
async fn the_processed_transition_takes_the_received_event_out_of_the_outbox_in_the_same_write() {
    let probe = Probe::new().await;
    let (store, orders) = probe.orders_held_by_replica_a(30).await;
    let held = store.held_outbox("replica-a", OutboxPage::first(200)).await.unwrap();
    assert_eq!(held.len(), 30);

    let writes: Vec<TransitionWrite> =
        orders.iter().map(|order| processed_after_receiving(order, &order.outbox[0].event_id)).collect();
    let updates = probe.sent("update");
    assert_eq!(store.apply_transitions(&writes, "batch-1").await.unwrap(), vec![true; 30]);
    assert_eq!(probe.sent("update") - updates, 1, "one write makes them processed and empties their outboxes");
    for order in &orders {
        let stored = probe.orders.find_one(mongodb::bson::doc! { "_id": &order.id }).await.unwrap().unwrap();
        assert_eq!(stored.get_str("status").unwrap(), "processed");
        assert!(stored.get_array("outbox").unwrap().is_empty());
        assert!(!stored.get_bool("outboxPending").unwrap());
        assert!(!stored.contains_key("leaseOwner"), "no relay holds it any more");
    }
    assert!(
        store.held_outbox("replica-a", OutboxPage::first(200)).await.unwrap().is_empty(),
        "nothing left to publish"
    );

    // The relay's late acknowledgement of the same events finds nothing to change.
    let before: Vec<_> = probe.orders.find(mongodb::bson::doc! {}).await.unwrap().try_collect().await.unwrap();
    store.acknowledge_published("replica-a", &all_published(&held)).await.unwrap();
    let after: Vec<_> = probe.orders.find(mongodb::bson::doc! {}).await.unwrap().try_collect().await.unwrap();
    assert_eq!(before, after);
}

#[tokio::test]
async fn the_processed_transition_leaves_an_outbox_it_cannot_vouch_for_as_it_is() {
    let probe = Probe::new().await;
    let store = probe.held_by_replica_a();
    // a: the relay acknowledged the event first; b: the event received is not the one in the outbox; c: the outbox
    // holds a second event, not published yet.
    let [a, b, mut c] = [order("u", None), order("u", None), order("u", None)];
    c.outbox.push(envelope::new_order_event(&c, "new-order", None, Default::default()).unwrap());
    assert!(store.insert_batch(&[a.clone(), b.clone(), c.clone()]).await.iter().all(Result::is_ok));
    let held = store.held_outbox("replica-a", OutboxPage::first(200)).await.unwrap();
    let a_read: Vec<PendingOutbox> = held.iter().filter(|order| order.id == a.id).cloned().collect();
    store.acknowledge_published("replica-a", &all_published(&a_read)).await.unwrap();

    let writes = vec![
        processed_after_receiving(&a, &a.outbox[0].event_id),
        processed_after_receiving(&b, "an-event-of-another-order"),
        processed_after_receiving(&c, &c.outbox[0].event_id),
    ];
    assert_eq!(store.apply_transitions(&writes, "batch-1").await.unwrap(), vec![true; 3], "all processed");
    let pending: Vec<String> = store
        .held_outbox("replica-a", OutboxPage::first(200))
        .await
        .unwrap()
        .into_iter()
        .map(|order| order.id)
        .collect();
    assert_eq!(pending.len(), 2);
    assert!(pending.contains(&b.id) && pending.contains(&c.id), "b and c keep their events: {pending:?}");
    let c_stored = probe.orders.find_one(mongodb::bson::doc! { "_id": &c.id }).await.unwrap().unwrap();
    assert_eq!(c_stored.get_array("outbox").unwrap().len(), 2);
}
