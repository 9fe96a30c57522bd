//! The outbox (`payment_outbox`, one entry per group-commit batch, one per payment in entries of earlier versions):
//! an event is published only once its payment is stored; one whose payment never is gets set aside, and comes back
//! if the payment appears after all; events that payments of an earlier version kept in their own document move
//! into the outbox at start. The relay publishes the entries the writer hands it without reading the outbox, and
//! what a read published already is not published again when the writer hands it over.
use crate::support;

use std::time::{Duration, SystemTime};

use futures::TryStreamExt as _;
use mongodb::bson::{self, Document, doc};
use payment_service::{
    events::{
        OutboxRelay,
        relay::{self, RelayInbox},
    },
    store::{NewPayment, PaymentStore},
};
use support::kafka::EventReader;

const ARRIVAL: Duration = Duration::from_secs(30);
const QUIET: Duration = Duration::from_secs(3);

/// A UUID v7 from `age` ago, as the id of a payment written then.
fn id_from(age: Duration) -> String {
    let at = (SystemTime::now() - age).duration_since(SystemTime::UNIX_EPOCH).unwrap();
    uuid::Uuid::new_v7(uuid::Timestamp::from_unix(uuid::NoContext, at.as_secs(), at.subsec_nanos())).to_string()
}

fn envelope(payment_id: &str, order_id: &str) -> String {
    serde_json::json!({
        "eventId": uuid::Uuid::new_v4().to_string(),
        "eventType": "payment-processed",
        "version": 1,
        "occurredAt": "2026-01-01T00:00:00.000Z",
        "data": {
            "paymentId": payment_id, "orderId": order_id, "userId": "alice",
            "amountCents": 1_000, "currency": "EUR", "status": "SUCCESS",
        },
    })
    .to_string()
}

async fn database(uri: &str, name: &str) -> mongodb::Database {
    mongodb::Client::with_uri_str(uri).await.expect("a MongoDB client").database(name)
}

async fn all(collection: mongodb::Collection<Document>, filter: Document) -> Vec<Document> {
    collection.find(filter).await.expect("a cursor").try_collect().await.expect("documents")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_event_whose_payment_was_never_stored_is_set_aside_and_not_published() {
    let app = support::spawn(&[]).await;
    let database = database(&app.mongodb_uri, &app.database).await;
    let outbox = database.collection::<Document>("payment_outbox");
    // What a crash between writing an event and its payment leaves: the event, a minute old, and no payment.
    let orphan = id_from(Duration::from_secs(60));
    outbox
        .insert_one(doc! {
            "_id": &orphan, "orderId": "order-never-paid", "outboxEvent": envelope(&orphan, "order-never-paid"),
            "outboxPending": true,
        })
        .await
        .unwrap();

    let order = app.known_order("alice", 1_000).await;
    let paid = app.pay(&order, "alice", 1_000, "key-1").await.expect("paid");
    let reader = EventReader::subscribe(&app.brokers, &app.topic);
    let events = reader.exactly(1, ARRIVAL, QUIET).await;
    assert_eq!(events[0].envelope.data.payment_id, paid.payment_id, "only the stored payment's event");

    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let entry = outbox.find_one(doc! { "_id": &orphan }).await.unwrap().expect("kept, not deleted");
        if entry.get_bool("outboxPending") == Ok(false) {
            assert!(entry.get_datetime("setAsideAt").is_ok(), "{entry:?}");
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "never set aside: {entry:?}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(app.waiting_events().await.is_empty(), "nothing else waits");
}

/// An entry of the current shape: the events of a batch, under an id of its own from `age` ago.
fn batch_entry(age: Duration, payments: &[&NewPayment]) -> Document {
    let events: Vec<_> = payments.iter().map(|new| new.event.clone().expect("a success has an event")).collect();
    doc! { "_id": id_from(age), "events": bson::to_bson(&events).unwrap(), "outboxPending": true }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn of_a_batch_entry_the_events_whose_payment_is_stored_are_published_and_the_others_set_aside_in_it() {
    let relay = Relay::start("replica-a").await;
    let (stored, never) = (new_payment(), new_payment());
    assert!(relay.store.insert_batch(std::slice::from_ref(&stored)).await.outcomes[0].is_ok());
    let published = relay.reader.exactly(1, ARRIVAL, Duration::from_millis(1)).await;
    assert_eq!(published[0].envelope.data.payment_id, stored.payment.id);
    // What a crash between a batch's entry and its payments leaves, a minute ago, with one of them stored after all.
    let outbox = relay.database.collection::<Document>("payment_outbox");
    let entry = batch_entry(Duration::from_secs(60), &[&stored, &never]);
    outbox.insert_one(&entry).await.unwrap();
    // A young entry with a missing payment waits for it.
    let young = batch_entry(Duration::ZERO, &[&never]);
    outbox.insert_one(&young).await.unwrap();

    let events = relay.reader.exactly(1, ARRIVAL, QUIET).await;
    assert_eq!(events[0].envelope.data.payment_id, stored.payment.id, "only the stored payment's event, again");
    let id = entry.get_str("_id").unwrap();
    let kept = outbox.find_one(doc! { "_id": id }).await.unwrap().expect("kept, not deleted");
    assert_eq!(kept.get_bool("outboxPending"), Ok(false), "{kept:?}");
    assert!(kept.get_datetime("setAsideAt").is_ok(), "{kept:?}");
    let aside: Vec<String> = kept
        .get_array("events")
        .unwrap()
        .iter()
        .map(|event| event.as_document().unwrap().get_str("paymentId").unwrap().to_owned())
        .collect();
    assert_eq!(aside, std::slice::from_ref(&never.payment.id), "only the never-stored payment's event stays");
    let waiting: Vec<Document> = all(outbox, doc! { "outboxPending": true }).await;
    let waiting: Vec<&str> = waiting.iter().map(|entry| entry.get_str("_id").unwrap()).collect();
    assert_eq!(waiting, [young.get_str("_id").unwrap()], "the young entry still waits for its payment");
    relay.stop().await;
}

#[tokio::test]
async fn a_set_aside_event_goes_back_into_the_outbox_once_its_payment_is_stored_and_not_before() {
    let uri = support::mongodb_uri();
    let name = support::unique("payments_revive_");
    let store = PaymentStore::new(database(&uri, &name).await);
    store.ensure_indexes().await.unwrap();
    let database = database(&uri, &name).await;
    let outbox = database.collection::<Document>("payment_outbox");
    let (late, never) = (new_payment(), new_payment());
    let entry = batch_entry(Duration::from_secs(60), &[&late, &never]);
    outbox.insert_one(&entry).await.unwrap();
    // An entry of one event, as earlier versions wrote them.
    let single = id_from(Duration::from_secs(60));
    outbox
        .insert_one(
            doc! { "_id": &single, "orderId": "o", "outboxEvent": envelope(&single, "o"), "outboxPending": true },
        )
        .await
        .unwrap();
    for read in store.claim_pending_events("replica-a", Duration::from_secs(30), 10).await.unwrap() {
        store.set_aside(&read.id, &read.events).await.unwrap();
    }
    assert_eq!(store.count_pending().await.unwrap(), 0);
    assert_eq!(store.revive_set_aside().await.unwrap(), 0, "no payment yet");

    // The payment writes that were held up land after all.
    let payments = database.collection::<Document>("payments");
    for id in [&late.payment.id, &single] {
        payments.insert_one(doc! { "_id": id, "orderId": "o", "idempotencyScope": id }).await.unwrap();
    }
    assert_eq!(store.revive_set_aside().await.unwrap(), 2);
    let mut waiting = store.claim_pending_events("replica-a", Duration::from_secs(30), 10).await.unwrap();
    waiting.sort_by_key(|entry| entry.events.len());
    assert_eq!(waiting[0].payment_ids().collect::<Vec<_>>(), [single.as_str()], "set aside in the new shape");
    assert_eq!(waiting[1].id, entry.get_str("_id").unwrap());
    let readable = store.with_stored_payments(waiting, Duration::from_secs(30)).await.unwrap();
    let batch = readable.iter().find(|read| read.ready.id == entry.get_str("_id").unwrap()).unwrap();
    assert_eq!(batch.ready.payment_ids().collect::<Vec<_>>(), [late.payment.id.as_str()]);
    assert_eq!(batch.abandoned, [never.event.clone().unwrap()], "the one still missing, to set aside again");
}

#[tokio::test]
async fn events_kept_in_payment_documents_by_an_earlier_version_move_into_the_outbox_at_start() {
    let uri = support::mongodb_uri();
    let name = support::unique("payments_legacy_");
    let database = database(&uri, &name).await;
    let payments = database.collection::<Document>("payments");
    // The earlier version's shape: the event in the payment's document, flagged and indexed.
    payments
        .create_index(
            mongodb::IndexModel::builder()
                .keys(doc! { "outboxPending": 1 })
                .options(mongodb::options::IndexOptions::builder().name("outbox_pending".to_owned()).build())
                .build(),
        )
        .await
        .unwrap();
    let (waiting, published) = (id_from(Duration::from_secs(5)), id_from(Duration::from_secs(5)));
    for (id, pending) in [(&waiting, true), (&published, false)] {
        payments
            .insert_one(doc! {
                "_id": id, "orderId": format!("order-{id}"), "userId": "alice", "amountCents": 1_000_i64,
                "currency": "EUR", "status": "SUCCESS", "reason": "", "idempotencyScope": format!("alice:{id}"),
                "successOrderId": format!("order-{id}"), "createdAt": bson::DateTime::now(), "requestId": "req-7",
                "outboxEvent": envelope(id, &format!("order-{id}")), "outboxPending": pending,
                "leaseUntil": bson::DateTime::from_millis(0),
            })
            .await
            .unwrap();
    }

    let store = PaymentStore::new(database.clone());
    store.ensure_indexes().await.unwrap();
    // A second replica starting alongside moves nothing twice.
    PaymentStore::new(database.clone()).ensure_indexes().await.unwrap();

    let moved = all(database.collection("payment_outbox"), doc! {}).await;
    assert_eq!(moved.len(), 1, "only the event still waiting: {moved:?}");
    assert_eq!(moved[0].get_str("_id"), Ok(waiting.as_str()));
    assert_eq!(moved[0].get_str("requestId"), Ok("req-7"));
    assert_eq!(moved[0].get_str("outboxEvent"), Ok(envelope_of(&payments, &waiting).await.as_str()));
    assert!(all(payments.clone(), doc! { "outboxPending": true }).await.is_empty(), "no payment keeps it");
    let indexes = payments.list_index_names().await.unwrap();
    assert!(!indexes.contains(&"outbox_pending".to_owned()), "the old index is gone: {indexes:?}");
    let claimed = store.claim_pending_events("replica-a", Duration::from_secs(30), 10).await.unwrap();
    assert_eq!(claimed.len(), 1);
    assert_eq!(claimed[0].events.len(), 1);
    assert_eq!(claimed[0].events[0].payment_id, waiting);
    assert_eq!(claimed[0].events[0].order_id, format!("order-{waiting}"));
}

async fn envelope_of(payments: &mongodb::Collection<Document>, id: &str) -> String {
    let payment = payments.find_one(doc! { "_id": id }).await.unwrap().expect("the payment");
    payment.get_str("outboxEvent").expect("kept in the payment").to_owned()
}

/// A relay of its own (replica `owner`), as the app runs it, on a fresh database and topic, with the inbox through
/// which `Pay` calls hand it their events.
struct Relay {
    store: PaymentStore,
    database: mongodb::Database,
    inbox: std::sync::Arc<RelayInbox>,
    reader: EventReader,
    stop: platform::shutdown::StopHandle,
    task: tokio::task::JoinHandle<()>,
}

impl Relay {
    async fn start(owner: &str) -> Self {
        let uri = support::mongodb_uri();
        let (name, prefix) = (support::unique("payments_relay_"), support::unique("t") + ".");
        let broker = test_support::engines::shared_broker_settings();
        let mut source: std::collections::HashMap<&str, &str> = std::collections::HashMap::from([
            ("MONGODB_URI", uri.as_str()),
            ("MONGODB_DATABASE", name.as_str()),
            ("KAFKA_TOPIC_PREFIX", prefix.as_str()),
            ("JWKS_URL", "http://127.0.0.1:9/.well-known/jwks.json"),
        ]);
        source.extend(broker.iter().map(|(name, value)| (*name, value.as_str())));
        let config = payment_service::config::Config::from_source(&source).expect("test configuration is valid");
        let database = database(&uri, &name).await;
        let lease = platform::mongo::Lease::new(owner, Duration::from_secs(60));
        let store = PaymentStore::new(database.clone()).holding_new_events(lease.clone());
        store.ensure_indexes().await.unwrap();
        let inbox = std::sync::Arc::new(RelayInbox::new(relay::INBOX_LIMIT));
        let metrics = std::sync::Arc::new(payment_service::metrics::Metrics::new());
        let reader = EventReader::subscribe(&config.kafka.connection.brokers, &config.kafka.payment_processed_topic);
        let relay = OutboxRelay::new(store.clone(), config.kafka, inbox.clone(), metrics, lease).unwrap();
        let (stop, signal) = platform::shutdown::stop_channel();
        let task = tokio::spawn(relay.run(signal));
        Self { store, database, inbox, reader, stop, task }
    }

    async fn stop(self) {
        self.stop.stop();
        self.task.await.unwrap();
    }
}

/// A successful payment of an order of its own, and its event.
fn new_payment() -> NewPayment {
    support::new_payment(&format!("order-{}", uuid::Uuid::new_v4()))
}

fn payment_ids<'a>(ids: impl IntoIterator<Item = &'a str>) -> std::collections::BTreeSet<String> {
    ids.into_iter().map(str::to_owned).collect()
}

#[tokio::test]
async fn the_relay_publishes_the_events_handed_to_it_without_reading_them_from_the_outbox() {
    let relay = Relay::start("replica-a").await;
    // Stored by a live replica-b: replica-a's reads and claims never see them, so only the hand-over brings them.
    let lease_b = platform::mongo::Lease::new("replica-b", Duration::from_secs(60));
    let replica_b = PaymentStore::new(relay.database.clone()).holding_new_events(lease_b);
    replica_b.ensure_indexes().await.unwrap();
    replica_b.hold_leases("replica-b", Duration::from_secs(60)).await.unwrap();
    let payments: Vec<NewPayment> = (0..20).map(|_| new_payment()).collect();
    let stored = replica_b.insert_batch(&payments).await;
    assert!(stored.outcomes.iter().all(Result::is_ok));

    relay.inbox.stored(stored.entry.expect("the batch's entry"));
    let events = relay.reader.exactly(payments.len(), ARRIVAL, QUIET).await;
    assert_eq!(
        payment_ids(events.iter().map(|event| event.envelope.data.payment_id.as_str())),
        payment_ids(payments.iter().map(|new| new.payment.id.as_str())),
    );
    assert_eq!(relay.store.count_pending().await.unwrap(), 0, "each taken out of the outbox once published");
    relay.stop().await;
}

#[tokio::test]
async fn an_entry_a_read_published_before_the_writer_handed_it_over_is_not_published_again() {
    let relay = Relay::start("replica-a").await;
    // Stored, not handed over yet: the relay's next read (a claim, or the idle poll) publishes them.
    let read: Vec<NewPayment> = (0..10).map(|_| new_payment()).collect();
    let stored = relay.store.insert_batch(&read).await;
    assert!(stored.outcomes.iter().all(Result::is_ok));
    let events = relay.reader.exactly(read.len(), ARRIVAL, Duration::from_millis(1)).await;
    assert_eq!(events.len(), read.len());

    // Their writer hands them over only now, then the next batch's entry.
    relay.inbox.stored(stored.entry.expect("the batch's entry"));
    let last = new_payment();
    let stored = relay.store.insert_batch(std::slice::from_ref(&last)).await;
    assert!(stored.outcomes.iter().all(Result::is_ok));
    relay.inbox.stored(stored.entry.expect("the batch's entry"));
    let events = relay.reader.exactly(1, ARRIVAL, QUIET).await;
    assert_eq!(events[0].envelope.data.payment_id, last.payment.id, "the others went out once, from the read");
    relay.stop().await;
}
