//! The store's batch commands, counted from the driver's own command events (the
//! `mongodb_commands_total` metric): a batch of orders costs one command whatever its size (each order carries its
//! event), a delete by `_id` one per `UPDATE_CHUNK` documents; what they leave in the collections (orders are never
//! updated); and the outbox that earlier versions wrote (one entry per batch), which is still read.
use crate::support;

use std::{
    sync::{Arc, Mutex},
    time::Duration,
};

use futures::TryStreamExt as _;

use platform::mongo::{Lease, OutboxLeases, OutboxPage, UPDATE_CHUNK};

use order_service::{
    domain::{Money, OrderStatus, Quantity},
    events::envelope,
    product_client::ProductSnapshot,
    store::{
        OrderDocument, OrderStore, OrderWithEvent, OutboxEvent, PendingOutbox, StoreError, StoredBatch, TransitionWrite,
    },
};

struct Probe {
    store: OrderStore,
    /// The store's collections, read as stored.
    orders: mongodb::Collection<mongodb::bson::Document>,
    outbox: mongodb::Collection<mongodb::bson::Document>,
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
        let (orders, outbox) = (database.collection("orders"), database.collection("order_outbox"));
        Self { store, orders, outbox, database, commands }
    }

    /// The store as replica-a's writes use it: what they insert is held by replica-a for 30 s.
    fn held_by_replica_a(&self) -> OrderStore {
        self.store.clone().holding_new_events(Lease::new("replica-a", Duration::from_secs(30)))
    }

    /// `count` new orders stored in one batch as an earlier version wrote them, their events in one outbox entry held
    /// by replica-a: replica-a's store, the orders, and the id of their outbox entry.
    async fn orders_held_by_replica_a(&self, count: usize) -> (OrderStore, Vec<OrderWithEvent>, String) {
        let orders: Vec<OrderWithEvent> = (0..count).map(|_| order("u", None)).collect();
        let entry = self.earlier_batch(Some("replica-a"), &orders).await;
        (self.held_by_replica_a(), orders, entry)
    }

    /// `orders`, stored, and their events in one outbox entry as earlier versions wrote it (held by `owner`, if
    /// given): the entry's id.
    async fn earlier_batch(&self, owner: Option<&str>, orders: &[OrderWithEvent]) -> String {
        stored(self.store.insert_batch(orders).await);
        let id = uuid::Uuid::now_v7().to_string();
        let events: Vec<mongodb::bson::Document> =
            orders.iter().map(|new| mongodb::bson::to_document(&new.event).unwrap()).collect();
        let mut entry = mongodb::bson::doc! { "_id": &id, "outbox": events, "outboxPending": true };
        if let Some(owner) = owner {
            entry.insert("leaseOwner", owner);
        }
        self.outbox.insert_one(entry).await.unwrap();
        id
    }

    /// `count` batches of one new order as earlier versions wrote them (held by `owner`, if given): their outbox
    /// entries' ids, oldest first.
    async fn batches(&self, owner: Option<&str>, count: usize) -> Vec<String> {
        let mut entries = Vec::new();
        for _ in 0..count {
            entries.push(self.earlier_batch(owner, &[order("u", None)]).await);
        }
        entries
    }

    /// Every document of `collection`, as stored.
    async fn all(collection: &mongodb::Collection<mongodb::bson::Document>) -> Vec<mongodb::bson::Document> {
        collection
            .find(mongodb::bson::doc! {})
            .sort(mongodb::bson::doc! { "_id": 1 })
            .await
            .unwrap()
            .try_collect()
            .await
            .unwrap()
    }

    /// Commands sent by `operation` so far.
    fn sent(&self, operation: &str) -> u64 {
        self.commands.with_label_values(&[operation]).get()
    }
}

/// The pending → processed transition of `order`, on receiving its `new-order`.
fn processed(order: &OrderWithEvent) -> TransitionWrite {
    TransitionWrite::Processed { order_id: order.order.id.clone() }
}

/// The processed → paid transition of `order` by the payment `payment_id`.
fn paid(order: &OrderWithEvent, payment_id: &str) -> TransitionWrite {
    TransitionWrite::Paid { order_id: order.order.id.clone(), payment_id: payment_id.to_owned(), event_id: "e".into() }
}

fn ids(orders: &[OrderWithEvent]) -> Vec<String> {
    orders.iter().map(|order| order.order.id.clone()).collect()
}

/// The events to hand over of a batch whose every order was stored.
fn stored(batch: StoredBatch) -> Vec<OutboxEvent> {
    assert!(batch.outcomes.iter().all(Result::is_ok), "{:?}", batch.outcomes);
    batch.events.expect("events to hand over")
}

fn entry_ids(entries: &[PendingOutbox]) -> Vec<String> {
    entries.iter().map(|entry| entry.id.clone()).collect()
}

/// The ids, sorted, of the orders `owner` wrote from `from` until `until` that are still pending, as a relay reads them.
async fn unpublished(store: &OrderStore, owner: &str, from: i64, until: i64) -> Vec<String> {
    let written: Vec<OrderDocument> = store.written_by(owner, from, until).await.unwrap().try_collect().await.unwrap();
    let mut ids: Vec<String> = store.still_pending(written).await.unwrap().into_iter().map(|order| order.id).collect();
    ids.sort();
    ids
}

/// The orders these events announce.
fn orders_of(events: &[OutboxEvent]) -> Vec<String> {
    events.iter().map(|event| event.key.clone()).collect()
}

fn order(user: &str, key: Option<&str>) -> OrderWithEvent {
    let product = ProductSnapshot { id: "1".into(), name: "Smartphone".into(), unit_price: Money::from_cents(89_999) };
    let quantity = Quantity::parse(&serde_json::json!(2)).unwrap();
    let total = product.unit_price.times(quantity.get()).unwrap();
    let keyed = key.map(|key| (format!("{user}:{key}"), "1|2".to_owned()));
    let order = OrderDocument::new_pending(user, &product, quantity, total, keyed, None);
    let event = envelope::new_order_event(&order, "new-order", None, Default::default()).unwrap();
    OrderWithEvent { order, event }
}

#[tokio::test]
async fn a_batch_of_orders_is_one_insert_each_order_carrying_its_event_and_a_duplicate_key_fails_only_its_own_order() {
    let probe = Probe::new().await;
    let store = probe.held_by_replica_a();
    // The replica's first write starts its heartbeat and checkpoint (one write, once).
    let first = order("u", None);
    stored(store.insert_batch(std::slice::from_ref(&first)).await);
    let mut orders: Vec<OrderWithEvent> = (0..50).map(|n| order("u", Some(&format!("k{n}")))).collect();
    orders[10] = order("u", Some("k3"));
    orders[40] = order("u", Some("k3"));
    let before = (probe.sent("insert"), probe.sent("delete"), probe.sent("update"));
    let batch = store.insert_batch(&orders).await;
    let after = (probe.sent("insert"), probe.sent("delete"), probe.sent("update"));
    assert_eq!(after.0 - before.0, 1, "one command for the orders and their events");
    assert_eq!((after.1 - before.1, after.2 - before.2), (0, 0));
    for (index, outcome) in batch.outcomes.iter().enumerate() {
        match index {
            10 | 40 => assert!(matches!(outcome, Err(StoreError::DuplicateIdempotencyKey)), "{index}: {outcome:?}"),
            _ => assert!(outcome.is_ok(), "{index}: {outcome:?}"),
        }
    }
    assert_eq!(probe.store.find_many(&ids(&orders)).await.unwrap().len(), 48);
    let stored: Vec<String> = orders
        .iter()
        .enumerate()
        .filter(|(index, _)| ![10, 40].contains(index))
        .map(|(_, new)| new.order.id.clone())
        .collect();
    let events = batch.events.expect("every order's fate is known");
    assert_eq!(orders_of(&events), stored, "the relay is handed the events of the orders stored, in order");
    assert!(Probe::all(&probe.outbox).await.is_empty(), "no outbox entry");
    let raw = probe.orders.find_one(mongodb::bson::doc! { "_id": &stored[0] }).await.unwrap().unwrap();
    assert_eq!(raw.get_str("writtenBy").unwrap(), "replica-a");
    let kept = OrderStore::new(probe.database.clone()).find(&stored[0]).await.unwrap().unwrap();
    let event = envelope::stored_new_order_event(&kept, "new-order").expect("a stamp").unwrap();
    assert_eq!(event, orders[0].event, "the order carries its event, made again byte for byte");
    // Read instead of handed over: every stored order still pending, oldest first.
    let from = order_service::store::made_millis(&first.order.id).unwrap();
    let now = mongodb::bson::DateTime::now().timestamp_millis() + 1;
    let mut expected = stored.clone();
    expected.push(first.order.id.clone());
    expected.sort();
    assert_eq!(unpublished(&probe.store, "replica-a", from, now).await, expected);
}

#[tokio::test]
async fn the_orders_a_replica_may_not_have_published_are_read_in_one_pass_and_processed_ones_are_left_out() {
    let probe = Probe::new().await;
    let store = probe.held_by_replica_a();
    // More than one of the driver's batches of the read.
    let count = order_service::store::UNPUBLISHED_READ as usize + 7;
    let orders: Vec<OrderWithEvent> = (0..count).map(|_| order("u", None)).collect();
    stored(store.insert_batch(&orders).await);
    // Processed: its event was published and consumed.
    assert_eq!(store.apply_transitions(&[processed(&orders[2])], "batch-1").await.unwrap(), vec![true]);
    let from = order_service::store::made_millis(&orders[0].order.id).unwrap();
    let until = order_service::store::made_millis(&orders[count - 1].order.id).unwrap() + 1;
    let finds = probe.sent("find");
    let read = unpublished(&store, "replica-a", from, until).await;
    let mut expected: Vec<String> = ids(&orders).into_iter().filter(|id| *id != orders[2].order.id).collect();
    expected.sort();
    assert_eq!(read, expected, "every pending one, once; the processed one left out");
    assert!(probe.sent("find") - finds <= 3, "one read of the orders (and one of each batch's transitions)");
    assert!(unpublished(&store, "replica-a", from, from).await.is_empty(), "nothing made before the end of the range");
    assert!(unpublished(&store, "replica-b", from, until).await.is_empty(), "a's only");
}

#[tokio::test]
async fn a_replicas_checkpoint_is_moved_by_its_relay_and_a_stopped_replica_is_taken_over_once() {
    let probe = Probe::new().await;
    let lease = Duration::from_secs(30);
    let dying = probe.store.clone().holding_new_events(Lease::new("dying", Duration::ZERO));
    let orders = [order("u", None), order("u", None)];
    let updates = probe.sent("update");
    stored(dying.insert_batch(&orders[..1]).await);
    stored(dying.insert_batch(&orders[1..]).await);
    assert_eq!(probe.sent("update") - updates, 1, "one heartbeat and checkpoint, before its first write");
    let made = order_service::store::made_millis(&orders[0].order.id).unwrap();
    let checkpoint = probe.store.checkpoint("dying").await.unwrap().expect("a checkpoint");
    assert!(checkpoint <= made, "{checkpoint} > {made}");

    // Its heartbeat ran out at once: another replica takes it over, once.
    assert_eq!(probe.store.stopped_with_checkpoint("replica-b").await.unwrap(), ["dying"]);
    let (from, until) = probe.store.take_over("dying", lease).await.unwrap().expect("taken");
    assert_eq!(from, checkpoint);
    assert!(probe.store.take_over("dying", lease).await.unwrap().is_none(), "held by replica-b now");
    let now = mongodb::bson::DateTime::now().timestamp_millis() + 1;
    let mut expected = ids(&orders);
    expected.sort();
    assert_eq!(unpublished(&probe.store, "dying", from, now).await, expected);
    probe.store.taken_over("dying", until).await.unwrap();
    assert_eq!(probe.store.checkpoint("dying").await.unwrap(), None, "read: nothing left to read");
    assert!(probe.store.stopped_with_checkpoint("replica-b").await.unwrap().is_empty());

    // A living replica's checkpoint moves as its relay notes it, and it is not taken over.
    let living = probe.store.clone().holding_new_events(Lease::new("living", lease));
    stored(living.insert_batch(&[order("u", None)]).await);
    living.note_checkpoint("living", now).await.unwrap();
    assert_eq!(probe.store.checkpoint("living").await.unwrap(), Some(now));
    assert!(probe.store.take_over("living", lease).await.unwrap().is_none());
}

#[tokio::test]
async fn the_relay_reads_what_it_holds_a_page_at_a_time_each_from_where_the_last_ended() {
    let probe = Probe::new().await;
    let store = probe.held_by_replica_a();
    let ids = probe.batches(Some("replica-a"), 7).await;

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
async fn what_a_replica_of_an_earlier_version_wrote_is_held_by_it_so_its_relay_reads_it_without_a_claim() {
    let probe = Probe::new().await;
    let (store, orders, entry) = probe.orders_held_by_replica_a(10).await;
    let updates = probe.sent("update");
    let held = store.held_outbox("replica-a", OutboxPage::first(200)).await.unwrap();
    assert_eq!((entry_ids(&held), probe.sent("update") - updates), (vec![entry.clone()], 0), "without a claim");
    assert_eq!(orders_of(&held[0].outbox), ids(&orders), "the batch's new-order events, in order");
    assert!(
        store.claim_outbox("replica-b", Duration::from_secs(30), OutboxPage::first(200)).await.unwrap().is_empty(),
        "held by a"
    );

    // Published; then processed: the transition queues nothing (the consumer announces it).
    store.acknowledge_published(&[entry]).await.unwrap();
    assert!(store.held_outbox("replica-a", OutboxPage::first(200)).await.unwrap().is_empty());
    let writes: Vec<TransitionWrite> = orders.iter().map(processed).collect();
    assert_eq!(store.apply_transitions(&writes, "batch-1").await.unwrap(), vec![true; 10]);
    assert!(store.held_outbox("replica-a", OutboxPage::first(200)).await.unwrap().is_empty());
    assert!(store.claim_outbox("replica-b", Duration::from_secs(30), OutboxPage::first(200)).await.unwrap().is_empty());
    assert_eq!(store.outbox_backlog().await.unwrap(), 0);
}

#[tokio::test]
async fn the_relay_claims_in_one_command_and_deletes_what_was_published_in_one_command_per_chunk() {
    let probe = Probe::new().await;
    // More than two chunks' worth of batches, the last one short.
    let count = 2 * UPDATE_CHUNK + 7;
    probe.batches(None, count).await;
    let orders_before = Probe::all(&probe.orders).await;

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

    let (updates, deletes) = (probe.sent("update"), probe.sent("delete"));
    probe.store.acknowledge_published(&entry_ids(&claimed)).await.unwrap();
    assert_eq!((probe.sent("update") - updates, probe.sent("delete") - deletes), (0, 3), "one delete per chunk");
    assert_eq!(probe.store.outbox_backlog().await.unwrap(), 0);
    assert!(Probe::all(&probe.outbox).await.is_empty());
    assert_eq!(Probe::all(&probe.orders).await, orders_before, "no order written");
}

#[tokio::test]
async fn the_events_of_orders_never_stored_are_set_aside_and_put_back_once_their_order_is_stored() {
    let probe = Probe::new().await;
    let [kept, late, never] = [order("u", None), order("u", None), order("u", None)];
    probe.earlier_batch(None, std::slice::from_ref(&kept)).await;
    // Entries of batches whose writer stopped before their orders' insert (or whose insert is still under way): one
    // just written, one written longer than the grace ago.
    let made_ago = |seconds: u64| {
        let at =
            std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap() - Duration::from_secs(seconds);
        uuid::Uuid::new_v7(uuid::Timestamp::from_unix(uuid::NoContext, at.as_secs(), at.subsec_nanos())).to_string()
    };
    let (young, old) = (made_ago(0), made_ago(order_service::store::ABANDONED_AFTER.as_secs() + 10));
    for id in [&young, &old] {
        let events: Vec<mongodb::bson::Document> =
            [&kept, &late, &never].iter().map(|new| mongodb::bson::to_document(&new.event).unwrap()).collect();
        probe
            .outbox
            .insert_one(mongodb::bson::doc! { "_id": id, "outbox": events, "outboxPending": true })
            .await
            .unwrap();
    }
    let read = probe.store.claim_outbox("replica-a", Duration::from_secs(30), OutboxPage::first(10)).await.unwrap();
    assert_eq!(read.len(), 3, "kept's own batch and the two");
    let readable = probe.store.with_stored_orders(read).await.unwrap();
    // The young one waits for its orders; the old one's stored order is ready, the others abandoned.
    let entries: Vec<(String, Vec<String>, Vec<String>)> = readable
        .iter()
        .map(|entry| (entry.ready.id.clone(), orders_of(&entry.ready.outbox), orders_of(&entry.abandoned)))
        .collect();
    let kept_alone = ids(std::slice::from_ref(&kept));
    assert_eq!(entries.len(), 2, "{entries:?}");
    assert_eq!(entries[0], (old.clone(), kept_alone.clone(), ids(&[late.clone(), never.clone()])));
    assert_eq!((&entries[1].1, entries[1].2.len()), (&kept_alone, 0), "kept's own batch is ready");
    assert_eq!(probe.store.outbox_backlog().await.unwrap(), 7);

    let updates = probe.sent("update");
    probe.store.set_aside(&old, &readable[0].abandoned).await.unwrap();
    assert_eq!(probe.sent("update") - updates, 1);
    let pending = probe.store.claim_outbox("replica-a", Duration::from_secs(30), OutboxPage::first(10)).await.unwrap();
    assert!(!entry_ids(&pending).contains(&old), "set aside");
    assert_eq!(probe.store.outbox_backlog().await.unwrap(), 4);

    // late's order lands after all: the set-aside events go back into the outbox, and only late's is ready.
    probe.orders.insert_one(mongodb::bson::to_document(&late.order).unwrap()).await.unwrap();
    assert_eq!(probe.store.revive_set_aside().await.unwrap(), 1);
    let pending = probe.store.claim_outbox("replica-a", Duration::from_secs(30), OutboxPage::first(10)).await.unwrap();
    let revived: Vec<PendingOutbox> = pending.into_iter().filter(|entry| entry.id == old).collect();
    let readable = probe.store.with_stored_orders(revived).await.unwrap();
    assert_eq!(orders_of(&readable[0].ready.outbox), ids(std::slice::from_ref(&late)));
    assert_eq!(orders_of(&readable[0].abandoned), ids(std::slice::from_ref(&never)), "never's stays aside");
}

#[tokio::test]
async fn an_expired_lease_is_taken_over_and_a_live_one_is_not() {
    let probe = Probe::new().await;
    probe.batches(None, 1).await;
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
    let (_, held, _) = probe.orders_held_by_replica_a(5).await;
    let stopped = [mongodb::bson::Bson::Null, "replica-b".into()];
    let mut page = OutboxLeases::claimed_by("replica-a");
    page.insert("_id", mongodb::bson::doc! { "$gt": &held[0].order.id });
    for filter in [OutboxLeases::held_by_any_of(&stopped), page] {
        let explain = mongodb::bson::doc! { "explain": { "find": "order_outbox", "filter": filter }, "verbosity": "queryPlanner" };
        let plan = serde_json::to_string(&probe.database.run_command(explain).await.unwrap()).unwrap();
        assert!(plan.contains(&format!("\"indexName\":\"{}\"", OutboxLeases::INDEX)), "{plan}");
        assert!(!plan.contains("COLLSCAN"), "{plan}");
    }
}

#[tokio::test]
async fn a_hold_lasts_as_long_as_its_heartbeat_which_writes_no_entry() {
    let probe = Probe::new().await;
    let store = probe.held_by_replica_a();
    probe.batches(Some("replica-a"), 60).await;
    let lease = Duration::from_secs(30);
    store.hold_leases("replica-a", lease).await.unwrap();
    let stored_before = Probe::all(&probe.outbox).await;
    let updates = probe.sent("update");
    store.renew_leases("replica-a", lease).await.unwrap();
    let stored_after = Probe::all(&probe.outbox).await;
    assert_eq!((probe.sent("update") - updates, stored_after), (1, stored_before), "one heartbeat, no entry written");
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
    // Held by a replica that has no heartbeat (an earlier version's, which wrote none before its relay's first).
    probe.batches(Some("gone"), 2).await;
    let lease = Duration::from_secs(30);
    assert!(probe.store.claim_outbox("replica-b", lease, OutboxPage::first(10)).await.unwrap().is_empty());

    probe.store.hold_leases("replica-b", Duration::ZERO).await.unwrap();
    assert_eq!(probe.store.claim_outbox("replica-b", lease, OutboxPage::first(10)).await.unwrap().len(), 2);
}

#[tokio::test]
async fn ensure_indexes_moves_the_outboxes_that_orders_of_earlier_versions_kept_into_the_outbox() {
    let probe = Probe::new().await;
    // Orders as an earlier version left them: their events in the order, behind the outbox index on the orders; one
    // processed in place (its event published), one held by a replica, one with two events.
    let [waiting, held, processed_in_place, two_events] =
        [order("u", None), order("u", None), order("u", None), order("u", None)];
    let second = envelope::new_order_event(&two_events.order, "order-processed", None, Default::default()).unwrap();
    let earlier = |new: &OrderWithEvent, events: Vec<&order_service::store::OutboxEvent>, status: &str| {
        let mut raw = mongodb::bson::to_document(&new.order).unwrap();
        let events: Vec<mongodb::bson::Document> =
            events.into_iter().map(|event| mongodb::bson::to_document(event).unwrap()).collect();
        raw.extend(mongodb::bson::doc! { "outboxPending": !events.is_empty(), "outbox": events, "status": status });
        raw
    };
    let mut raws = vec![
        earlier(&waiting, vec![&waiting.event], "pending"),
        earlier(&held, vec![&held.event], "pending"),
        earlier(&processed_in_place, vec![], "processed"),
        earlier(&two_events, vec![&two_events.event, &second], "pending"),
    ];
    raws[1].insert("leaseOwner", "replica-z");
    probe.orders.insert_many(raws).await.unwrap();
    let index = |keys, name: &str| {
        let options = mongodb::options::IndexOptions::builder().name(name.to_owned()).build();
        mongodb::IndexModel::builder().keys(keys).options(options).build()
    };
    probe.orders.create_index(index(mongodb::bson::doc! { "outboxPending": 1 }, "outbox_pending")).await.unwrap();
    let by_owner = mongodb::bson::doc! { "outboxPending": 1, "leaseOwner": 1, "_id": 1 };
    probe.orders.create_index(index(by_owner, OutboxLeases::INDEX)).await.unwrap();
    // A pass cut short had moved one of them already.
    let moved_before = mongodb::bson::doc! {
        "_id": &waiting.order.id,
        "outbox": [mongodb::bson::to_document(&waiting.event).unwrap()],
        "outboxPending": true,
    };
    probe.outbox.insert_one(moved_before).await.unwrap();

    probe.store.ensure_indexes().await.unwrap();
    probe.store.ensure_indexes().await.unwrap();
    let mut names = probe.orders.list_index_names().await.unwrap();
    names.sort();
    assert_eq!(names, ["_id_", "idempotency_scope", "user_newest_first"], "no outbox index left on the orders");
    let claimed = probe.store.claim_outbox("replica-a", Duration::from_secs(30), OutboxPage::first(10)).await.unwrap();
    let mut moved: Vec<(String, usize)> = claimed.iter().map(|entry| (entry.id.clone(), entry.outbox.len())).collect();
    moved.sort();
    let mut expected =
        vec![(waiting.order.id.clone(), 1), (held.order.id.clone(), 1), (two_events.order.id.clone(), 2)];
    expected.sort();
    assert_eq!(moved, expected, "every pending event, moved once, claimable by any replica");
    let stored = probe.store.find_many(&ids(&[waiting.clone(), processed_in_place.clone()])).await.unwrap();
    assert_eq!(stored[&waiting.order.id].status, OrderStatus::Pending);
    assert_eq!(stored[&processed_in_place.order.id].status, OrderStatus::Processed, "read as it was left");

    // A transition recorded now adds to what an earlier version wrote in place.
    let applied = probe.store.apply_transitions(&[paid(&processed_in_place, "pay-1")], "batch-1").await.unwrap();
    assert_eq!(applied, vec![true]);
    let stored = probe.store.find(&processed_in_place.order.id).await.unwrap().unwrap();
    assert_eq!((stored.status, stored.payment_id.as_deref()), (OrderStatus::Paid, Some("pay-1")));
}

#[tokio::test]
async fn transitions_are_inserted_records_each_recorded_once_and_no_order_is_ever_updated() {
    let probe = Probe::new().await;
    let orders: Vec<OrderWithEvent> = (0..20).map(|_| order("u", None)).collect();
    stored(probe.store.insert_batch(&orders).await);
    let orders_before = Probe::all(&probe.orders).await;

    // 19 pending → processed, and a second processed of one of them in the same batch (nothing left to do).
    let mut writes: Vec<TransitionWrite> = orders[..19].iter().map(processed).collect();
    writes.push(processed(&orders[0]));
    let before = (probe.sent("insert"), probe.sent("update"), probe.sent("bulkWrite"), probe.sent("find"));
    let applied = probe.store.apply_transitions(&writes, "batch-1").await.unwrap();
    assert_eq!(&applied[..19], &[true; 19]);
    assert!(!applied[19]);
    // Then the payments: one of them paid, and the same order again by another payment (recorded once).
    let payments = [paid(&orders[1], "pay-1"), paid(&orders[1], "pay-2")];
    assert_eq!(probe.store.apply_transitions(&payments, "batch-2").await.unwrap(), vec![true, false]);
    let again = [paid(&orders[1], "pay-3"), processed(&orders[2])];
    let applied = probe.store.apply_transitions(&again, "batch-3").await.unwrap();
    assert_eq!(applied, vec![false, false], "already recorded, by earlier batches");
    assert_eq!(probe.sent("insert") - before.0, 3, "one insert per batch, whatever its kinds");
    assert_eq!((probe.sent("update") - before.1, probe.sent("bulkWrite") - before.2), (0, 0));
    assert_eq!(probe.sent("find") - before.3, 0, "no read to tell what applied");

    let stored = probe.store.find_many(&ids(&orders)).await.unwrap();
    assert!(
        orders[2..19].iter().chain([&orders[0]]).all(|order| stored[&order.order.id].status == OrderStatus::Processed)
    );
    assert_eq!(stored[&orders[1].order.id].status, OrderStatus::Paid);
    assert_eq!(stored[&orders[1].order.id].payment_id.as_deref(), Some("pay-1"));
    assert_eq!(stored[&orders[19].order.id].status, OrderStatus::Pending);
    assert!(stored[&orders[1].order.id].updated_at > stored[&orders[1].order.id].created_at);
    assert_eq!(Probe::all(&probe.orders).await, orders_before, "the orders are as they were inserted");
}

#[tokio::test]
async fn processed_orders_name_their_batch_and_a_batch_recorded_as_announced_is_found_in_one_query() {
    let probe = Probe::new().await;
    let orders: Vec<OrderWithEvent> = (0..3).map(|_| order("u", None)).collect();
    stored(probe.store.insert_batch(&orders).await);
    let writes: Vec<TransitionWrite> = orders.iter().map(processed).collect();
    assert_eq!(probe.store.apply_transitions(&writes, "batch-7").await.unwrap(), vec![true; 3]);
    let stored = probe.store.find_many(&ids(&orders)).await.unwrap();
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

#[tokio::test]
async fn a_processed_transition_writes_only_its_record_and_a_published_batch_leaves_the_outbox_in_one_delete() {
    let probe = Probe::new().await;
    let (store, orders, entry) = probe.orders_held_by_replica_a(30).await;
    let outbox_before = Probe::all(&probe.outbox).await;

    let writes: Vec<TransitionWrite> = orders.iter().map(processed).collect();
    let (inserts, deletes) = (probe.sent("insert"), probe.sent("delete"));
    assert_eq!(store.apply_transitions(&writes, "batch-1").await.unwrap(), vec![true; 30]);
    assert_eq!((probe.sent("insert") - inserts, probe.sent("delete") - deletes), (1, 0), "one record insert");
    assert_eq!(Probe::all(&probe.outbox).await, outbox_before, "the outbox is the relay's");

    store.acknowledge_published(&[entry]).await.unwrap();
    assert_eq!(probe.sent("delete") - deletes, 1, "thirty orders' events, one delete");
    assert!(Probe::all(&probe.outbox).await.is_empty(), "nothing left to publish");
}

#[tokio::test]
async fn the_orders_a_store_just_wrote_are_read_once_from_memory_as_a_read_of_them_would_return_them() {
    let probe = Probe::new().await;
    let orders: Vec<OrderWithEvent> = (0..5).map(|_| order("u", None)).collect();
    stored(probe.store.insert_batch(&orders).await);
    assert_eq!(probe.store.apply_transitions(&[processed(&orders[0])], "batch-1").await.unwrap(), vec![true]);
    // Another replica's order: this store never wrote it.
    let elsewhere = order("u", None);
    stored(OrderStore::new(probe.database.clone()).insert_batch(std::slice::from_ref(&elsewhere)).await);
    let mut wanted = ids(&orders);
    wanted.push(elsewhere.order.id.clone());

    let finds = probe.sent("find");
    let remembered = probe.store.find_many(&wanted).await.unwrap();
    assert_eq!(probe.sent("find") - finds, 2, "the other replica's order, and the transitions");
    let read = OrderStore::new(probe.database.clone()).find_many(&wanted).await.unwrap();
    let as_stored = |found: &std::collections::HashMap<String, OrderDocument>| {
        let mut documents: Vec<(String, mongodb::bson::Document)> =
            found.iter().map(|(id, order)| (id.clone(), mongodb::bson::to_document(order).unwrap())).collect();
        documents.sort_by(|a, b| a.0.cmp(&b.0));
        documents
    };
    assert_eq!(as_stored(&remembered), as_stored(&read), "what a read returns, transitions applied");
    assert_eq!(remembered.len(), 6);
    assert_eq!(remembered[&orders[0].order.id].status, OrderStatus::Processed);

    // Taken once: read from the database the next time.
    let finds = probe.sent("find");
    assert_eq!(probe.store.find_many(&ids(&orders)).await.unwrap().len(), 5);
    assert_eq!(probe.sent("find") - finds, 2);
    // A batch all remembered costs the read of its transitions only.
    let more: Vec<OrderWithEvent> = (0..3).map(|_| order("u", None)).collect();
    stored(probe.store.insert_batch(&more).await);
    let finds = probe.sent("find");
    assert_eq!(probe.store.find_many(&ids(&more)).await.unwrap().len(), 3);
    assert_eq!(probe.sent("find") - finds, 1);
}

#[tokio::test]
async fn the_orders_a_store_just_wrote_are_taken_for_their_new_order_events_without_a_read_and_paid_ones_are_read() {
    let probe = Probe::new().await;
    let orders: Vec<OrderWithEvent> = (0..4).map(|_| order("u", None)).collect();
    stored(probe.store.insert_batch(&orders).await);
    // The first processed by another consumer (this store's memory does not know), the second paid.
    let writes = [processed(&orders[0]), processed(&orders[1])];
    assert_eq!(probe.store.apply_transitions(&writes, "batch-1").await.unwrap(), vec![true; 2]);
    assert_eq!(probe.store.apply_transitions(&[paid(&orders[1], "pay-1")], "batch-2").await.unwrap(), vec![true]);

    let finds = probe.sent("find");
    let arriving = ids(&orders[..3]);
    let found = probe.store.find_for_events(&arriving, &[]).await.unwrap();
    assert_eq!(probe.sent("find") - finds, 0, "taken from memory as written");
    assert!(found.values().all(|order| order.status == OrderStatus::Pending), "their transitions unread");
    // Taken once: the same events again (a redelivery) read them, transitions applied.
    let again = probe.store.find_for_events(&arriving, &[]).await.unwrap();
    assert_eq!(probe.sent("find") - finds, 2, "the orders and their transitions");
    let statuses: Vec<OrderStatus> = orders[..3].iter().map(|order| again[&order.order.id].status).collect();
    assert_eq!(statuses, [OrderStatus::Processed, OrderStatus::Paid, OrderStatus::Pending]);
    // A payment's order is read with its transitions, even when remembered and named by a new-order event too.
    let finds = probe.sent("find");
    let paying = [orders[3].order.id.clone()];
    let found = probe.store.find_for_events(&paying, &paying).await.unwrap();
    assert_eq!((found.len(), probe.sent("find") - finds), (1, 1), "its transitions, the order from memory");
}

#[tokio::test]
async fn writes_a_2xx_depends_on_wait_for_the_journal_and_bookkeeping_writes_do_not() {
    let (client, written) = test_support::mongo::recording_client(&support::env("MONGODB_URI")).await;
    let store = OrderStore::new(client.database(&format!("orders_journal_{}", uuid::Uuid::new_v4().simple())));
    store.ensure_indexes().await.unwrap();
    let store = store.holding_new_events(Lease::new("replica-a", Duration::from_secs(30)));
    let orders = vec![order("u", Some("k1")), order("u", Some("k2"))];
    stored(store.insert_batch(&orders).await);
    let refused = store.insert(&order("u", Some("k1"))).await;
    assert!(matches!(refused, Err(StoreError::DuplicateIdempotencyKey)), "{refused:?}");
    assert_eq!(store.apply_transitions(&[processed(&orders[0])], "batch-1").await.unwrap(), vec![true]);
    store.record_announced("batch-1").await.unwrap();
    let held = store.claim_outbox("replica-a", Duration::from_secs(30), OutboxPage::first(10)).await.unwrap();
    assert!(held.is_empty(), "no outbox entry: each order carries its event");
    store.renew_leases("replica-a", Duration::from_secs(30)).await.unwrap();
    store.note_checkpoint("replica-a", 0).await.unwrap();

    let journal_of = |command: &str, collection: &str| written.journal_of(command, collection);
    // The order with its event, the replica's first checkpoint (before its first order) and a transition back a 201
    // or a committed offset.
    assert_eq!(journal_of("insert", "orders"), [Some(true), Some(true)]);
    assert_eq!(journal_of("insert", "order_transitions"), [Some(true)]);
    let relays = journal_of("update", platform::mongo::RELAYS);
    assert_eq!(relays.first(), Some(&Some(true)), "the first checkpoint: {:?}", written.all());
    // A lost one of these repeats work (an event published again), it loses nothing.
    assert!(relays.len() >= 3 && relays[1..].iter().all(|j| *j == Some(false)), "{:?}", written.all());
    assert_eq!(journal_of("insert", "announced_batches"), [Some(false)]);
    assert!(journal_of("insert", "order_outbox").is_empty());
    assert_eq!(journal_of("update", "order_outbox"), [Some(false)], "the claim");
}

#[tokio::test]
async fn a_list_is_read_a_range_of_time_at_a_time_and_pages_as_one_sorted_read_would() {
    let probe = Probe::new().await;
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap();
    let made_ago = |seconds: u64| {
        let at = now - Duration::from_secs(seconds);
        uuid::Uuid::new_v7(uuid::Timestamp::from_unix(uuid::NoContext, at.as_secs(), at.subsec_nanos())).to_string()
    };
    // Across every range a list reads, and beyond the last; one id is no UUID v7 (it sorts above them all).
    let mut ids: Vec<String> = [0, 10, 120, 7_200, 3 * 86_400, 400 * 86_400]
        .into_iter()
        .map(made_ago)
        .chain(["legacy-order".into()])
        .collect();
    let mut batch: Vec<OrderWithEvent> = Vec::new();
    for id in &ids {
        let mut new = order("lister", None);
        new.order.id = id.clone();
        batch.push(new);
    }
    let mut other = order("someone-else", None);
    other.order.id = made_ago(30);
    batch.push(other.clone());
    stored(probe.store.insert_batch(&batch).await);
    ids.sort_unstable_by(|a, b| b.cmp(a));

    for limit in [1, 2, 3, 100] {
        let (mut seen, mut before) = (Vec::new(), None::<String>);
        loop {
            let page = probe.store.list(Some("lister"), before.as_deref(), limit).await.unwrap();
            seen.extend(page.iter().map(|order| order.id.clone()));
            if (page.len() as i64) < limit {
                break;
            }
            before = page.last().map(|order| order.id.clone());
        }
        assert_eq!(seen, ids, "pages of {limit}");
    }
    let everyone: Vec<String> = probe.store.list(None, None, 100).await.unwrap().into_iter().map(|o| o.id).collect();
    let mut expected = ids.clone();
    expected.push(other.order.id.clone());
    expected.sort_unstable_by(|a, b| b.cmp(a));
    assert_eq!(everyone, expected, "an admin's list");

    // A page that the last minute fills is one read of orders, bounded below (and one of their transitions).
    let filters = Arc::new(Mutex::new(Vec::new()));
    let mut options = mongodb::options::ClientOptions::parse(support::env("MONGODB_URI")).await.unwrap();
    let seen = filters.clone();
    options.command_event_handler = Some(mongodb::event::EventHandler::callback(move |event| {
        if let mongodb::event::command::CommandEvent::Started(started) = event
            && started.command_name == "find"
            && started.command.get_str("find") == Ok("orders")
        {
            seen.lock().unwrap().push(started.command.get_document("filter").cloned().unwrap_or_default());
        }
    }));
    let client = mongodb::Client::with_options(options).unwrap();
    let store = OrderStore::new(client.database(probe.database.name()));
    let newest = store.list(Some("lister"), None, 2).await.unwrap();
    assert_eq!(newest.iter().map(|order| order.id.as_str()).collect::<Vec<_>>(), [&ids[0], &ids[1]]);
    let filters = filters.lock().unwrap().clone();
    assert_eq!(filters.len(), 1, "{filters:?}");
    assert!(filters[0].get_document("_id").is_ok_and(|range| range.contains_key("$gte")), "{filters:?}");
}
