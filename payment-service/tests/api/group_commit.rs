//! Concurrent `Pay` calls are written by one group-commit writer: per batch one outbox entry holding the batch's
//! events, then one `insert_many` of payments, each call with its own outcome; the relay claims and deletes entries
//! in one command each. An event whose payment is not stored is never published.
use crate::support;

use std::{collections::HashSet, time::Duration};

use futures::future::join_all;
use mongodb::bson;
use payment_service::{
    domain::PaymentStatus,
    projection::OrderStage,
    proto::PaymentStatus as WireStatus,
    store::{self, NewPayment, PaymentStore, StoredBatch},
};
use tonic::Code;

#[tokio::test]
async fn a_burst_of_concurrent_payments_gets_its_own_success_each_in_two_inserts_per_batch() {
    let app = support::spawn(&[]).await;
    let user = support::unique("user-");
    let mut orders = Vec::new();
    for _ in 0..100 {
        orders.push(app.known_order(&user, 1_000).await);
    }
    let results = join_all(orders.iter().map(|order| app.pay(order, &user, 1_000, order))).await;
    let mut ids = HashSet::new();
    for result in results {
        let response = result.expect("paid");
        assert_eq!(response.status(), payment_service::proto::PaymentStatus::Success);
        assert!(!response.replayed);
        ids.insert(response.payment_id);
    }
    assert_eq!(ids.len(), 100, "every call got its own payment");
    assert_eq!(app.stored_payments(bson::doc! { "userId": &user }).await.len(), 100);
    let inserts = app.metric("mongodb_commands_total", &[("operation", "insert")]).await;
    let batches = app.metric("write_batch_size_count", &[("queue", "payments")]).await;
    println!("100 concurrent payments: {batches} batches, {inserts} insert commands");
    assert_eq!(inserts, 2.0 * batches, "one insert of the batch's outbox entry and one of payments per batch");
}

#[tokio::test]
async fn duplicates_of_a_key_in_one_burst_store_one_payment_and_the_others_replay_it() {
    let app = support::spawn(&[]).await;
    let user = support::unique("user-");
    let order = app.known_order(&user, 2_000).await;
    let others: Vec<String> = {
        let mut others = Vec::new();
        for _ in 0..30 {
            others.push(app.known_order(&user, 2_000).await);
        }
        others
    };
    let shared = join_all((0..30).map(|_| app.pay(&order, &user, 2_000, "shared-key")));
    let own = join_all(others.iter().map(|other| app.pay(other, &user, 2_000, other)));
    let (shared, own) = tokio::join!(shared, own);
    let responses: Vec<_> = shared.into_iter().map(|result| result.expect("answered")).collect();
    let ids: HashSet<_> = responses.iter().map(|response| response.payment_id.clone()).collect();
    assert_eq!(ids.len(), 1, "one payment for the shared key");
    assert_eq!(responses.iter().filter(|response| !response.replayed).count(), 1, "the others replay it");
    assert!(own.into_iter().all(|result| result.is_ok_and(|response| !response.replayed)));
    assert_eq!(app.stored_payments_for_order(&order).await.len(), 1, "charged once");
}

/// A payment store on a fresh database (its writes held by `lease`, when given), with a counter of the engine
/// commands it sends, by operation.
async fn counted_store(
    prefix: &str,
    lease: Option<platform::mongo::Lease>,
) -> (PaymentStore, prometheus::IntCounterVec) {
    let metrics = platform::mongo::MongoMetrics::register(&prometheus::Registry::new());
    let client =
        platform::mongo::connect(&support::mongodb_uri(), "test", Duration::from_secs(5), &metrics).await.unwrap();
    let mut store = PaymentStore::new(client.database(&support::unique(prefix)));
    if let Some(lease) = lease {
        store = store.holding_new_events(lease);
    }
    store.ensure_indexes().await.unwrap();
    (store, metrics.commands)
}

#[tokio::test]
async fn a_batch_writes_its_events_as_one_entry_without_the_refused_payments_and_the_relay_claims_and_deletes_it() {
    let (store, commands) = counted_store("payments_batch_", None).await;
    let sent = |operation: &str| commands.with_label_values(&[operation]).get();

    let mut payments: Vec<NewPayment> = (0..50).map(|n| support::new_payment(&format!("order-{n}"))).collect();
    payments[7] = support::new_payment("order-3");
    let (inserts, updates) = (sent("insert"), sent("update"));
    let StoredBatch { outcomes, entry } = store.insert_batch(&payments).await;
    assert_eq!(sent("insert") - inserts, 2, "one command for the events' entry, one for the payments");
    assert_eq!(sent("update") - updates, 1, "the refused payment's event taken out of the entry");
    assert!(matches!(outcomes[7], Err(store::StoreError::Duplicate)), "only the duplicate fails: {:?}", outcomes[7]);
    assert_eq!(outcomes.iter().filter(|outcome| outcome.is_ok()).count(), 49);
    let entry = entry.expect("every payment's fate is known: the entry goes to the relay");
    let stored: Vec<&str> =
        payments.iter().zip(&outcomes).filter(|(_, o)| o.is_ok()).map(|(new, _)| new.payment.id.as_str()).collect();
    assert_eq!(entry.payment_ids().collect::<Vec<_>>(), stored, "the stored payments' events, in order");
    assert_eq!(store.count_pending().await.unwrap(), 49, "the refused payment's event is gone with it");

    let updates = sent("update");
    let claimed = store.claim_pending_events("replica-a", Duration::from_secs(30), 100).await.unwrap();
    assert_eq!(claimed, std::slice::from_ref(&entry), "the entry as written, without the refused payment's event");
    assert_eq!(sent("update") - updates, 2, "the relay's heartbeat, and one claim for the whole outbox");
    assert!(store.claim_pending_events("replica-b", Duration::from_secs(30), 100).await.unwrap().is_empty());

    let deletes = sent("delete");
    store.mark_published(&[entry.id.as_str()]).await.unwrap();
    assert_eq!(sent("delete") - deletes, 1, "one command takes the batch out of the outbox");
    assert_eq!(store.count_pending().await.unwrap(), 0);
}

#[tokio::test]
async fn a_batch_whose_every_payment_is_refused_leaves_no_entry() {
    let (store, _) = counted_store("payments_refused_", None).await;
    let first = support::new_payment("order-1");
    assert!(store.insert_batch(std::slice::from_ref(&first)).await.outcomes[0].is_ok());
    let StoredBatch { outcomes, entry } = store.insert_batch(&[support::new_payment("order-1")]).await;
    assert!(matches!(outcomes[0], Err(store::StoreError::Duplicate)), "{:?}", outcomes[0]);
    assert!(entry.is_none());
    let waiting = store.claim_pending_events("replica-a", Duration::from_secs(30), 10).await.unwrap();
    assert_eq!(waiting.iter().flat_map(|entry| entry.payment_ids()).collect::<Vec<_>>(), [first.payment.id.as_str()]);
}

#[tokio::test]
async fn more_entries_than_a_chunk_are_marked_published_in_one_command_per_chunk() {
    let (store, commands) = counted_store("payments_chunks_", None).await;
    let count = platform::mongo::UPDATE_CHUNK + 1;
    for n in 0..count {
        let payment = support::new_payment(&format!("order-{n}"));
        assert!(store.insert_batch(&[payment]).await.outcomes[0].is_ok());
    }
    let claimed = store.claim_pending_events("replica-a", Duration::from_secs(30), 100).await.unwrap();
    assert_eq!(claimed.len(), count);

    let ids: Vec<&str> = claimed.iter().map(|entry| entry.id.as_str()).collect();
    let deletes = commands.with_label_values(&["delete"]).get();
    store.mark_published(&ids).await.unwrap();
    assert_eq!(commands.with_label_values(&["delete"]).get() - deletes, 2, "a full chunk, then the one left");
    assert_eq!(store.count_pending().await.unwrap(), 0);
}

#[tokio::test]
async fn the_events_of_the_payments_a_replica_stores_are_held_by_it_and_read_without_a_claim() {
    let lease = platform::mongo::Lease::new("replica-a", Duration::from_secs(30));
    let (store, commands) = counted_store("payments_held_", Some(lease)).await;
    let mut payments: Vec<NewPayment> = (0..20).map(|n| support::new_payment(&format!("order-{n}"))).collect();
    // A declined payment has no event: nothing to hold.
    payments[0].payment.status = PaymentStatus::Declined;
    payments[0].payment.success_order_id = None;
    payments[0].event = None;
    assert!(store.insert_batch(&payments).await.outcomes.iter().all(Result::is_ok));

    let updates = commands.with_label_values(&["update"]).get();
    let held = store.held_pending_events("replica-a", 100).await.unwrap();
    assert_eq!(held.len(), 1, "the batch's entry, without a claim");
    assert_eq!(held[0].events.len(), 19, "every successful payment's event");
    assert_eq!(commands.with_label_values(&["update"]).get(), updates);
    assert!(store.claim_pending_events("replica-b", Duration::from_secs(30), 100).await.unwrap().is_empty());
    assert!(store.held_pending_events("replica-b", 100).await.unwrap().is_empty());
}

/// The sum of every series of `name` in a Prometheus exposition.
fn total(exposition: &str, name: &str) -> f64 {
    exposition
        .lines()
        .filter(|line| line.starts_with(&format!("{name}{{")))
        .filter_map(|line| line.rsplit_once(' ')?.1.parse::<f64>().ok())
        .sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_burst_of_50_concurrent_pays_reads_in_batches_and_each_call_gets_its_own_answer() {
    let app = support::spawn(&[("PAY_ORDER_WAIT_MS", "200")]).await;
    let (user, other) = (support::unique("user-"), support::unique("other-"));
    let mut cases = Vec::new();
    for _ in 0..30 {
        cases.push((app.known_order(&user, 1_000).await, 1_000, Ok(())));
    }
    for _ in 0..5 {
        cases.push((app.known_order(&user, 1_000).await, 999, Err(Code::InvalidArgument)));
    }
    for _ in 0..5 {
        cases.push((app.known_order(&other, 1_000).await, 1_000, Err(Code::NotFound)));
    }
    for _ in 0..5 {
        let order = app.known_order(&user, 1_000).await;
        app.pay(&order, &user, 1_000, &format!("first-{order}")).await.expect("paid");
        cases.push((order, 1_000, Err(Code::AlreadyExists)));
    }
    for _ in 0..5 {
        cases.push((app.known_order_at(&user, 1_000, OrderStage::Pending).await, 1_000, Err(Code::FailedPrecondition)));
    }
    let token = app.issuer.token_for(&user, "customer");
    let clients = join_all(cases.iter().map(|_| app.client())).await;
    let lookups = [("queue", "pay_lookups")];
    let (lookups_before, batches_before) =
        (app.metric("write_batch_size_sum", &lookups).await, app.metric("write_batch_size_count", &lookups).await);
    let commands_before = total(&app.get_metrics_path("/metrics").await.1, "mongodb_commands_total");

    let calls = clients.into_iter().zip(&cases).map(|(mut client, (order, amount, _))| {
        let request = support::with_token(support::pay_request(order, &user, *amount, order), &token);
        async move { client.pay(request).await }
    });
    let results = join_all(calls).await;
    let mut paid = HashSet::new();
    for ((order, _, expected), result) in cases.iter().zip(results) {
        match (expected, result) {
            (Ok(()), Ok(response)) => {
                let response = response.into_inner();
                assert_eq!((response.status(), response.replayed), (WireStatus::Success, false), "{order}");
                paid.insert(response.payment_id);
            }
            (Err(code), Err(status)) => assert_eq!(status.code(), *code, "{order}: {status:?}"),
            (expected, result) => panic!("{order}: expected {expected:?}, got {result:?}"),
        }
    }
    assert_eq!(paid.len(), 30, "every payable order got its own payment");

    app.wait_for_metric("outbox_backlog", &[], Duration::from_secs(30), |value| value == 0.0).await;
    let lookups_made = app.metric("write_batch_size_sum", &lookups).await - lookups_before;
    let batches = app.metric("write_batch_size_count", &lookups).await - batches_before;
    let commands = total(&app.get_metrics_path("/metrics").await.1, "mongodb_commands_total") - commands_before;
    println!("50 concurrent Pay calls: {lookups_made} lookups in {batches} batches; {commands} engine commands");
    // One read per call, a second for the 5 that lost the race to the index and the 5 that waited.
    assert_eq!(lookups_made, 60.0);
    assert!(batches < lookups_made, "concurrent lookups share batches: {batches} batches");
}

#[tokio::test]
async fn a_payment_and_its_event_wait_for_the_journal_and_the_outbox_bookkeeping_does_not() {
    let (client, written) = test_support::mongo::recording_client(&support::mongodb_uri()).await;
    let store = PaymentStore::new(client.database(&support::unique("payments_journal_")));
    store.ensure_indexes().await.unwrap();
    let payments = [support::new_payment("order-1"), support::new_payment("order-2"), support::new_payment("order-1")];
    let outcomes = store.insert_batch(&payments).await.outcomes;
    assert!(matches!(outcomes[2], Err(store::StoreError::Duplicate)), "{:?}", outcomes[2]);
    let claimed = store.claim_pending_events("replica-a", Duration::from_secs(30), 10).await.unwrap();
    let ids: Vec<&str> = claimed.iter().map(|entry| entry.id.as_str()).collect();
    store.mark_published(&ids).await.unwrap();

    // What a `Pay` answer depends on.
    assert_eq!(written.journal_of("insert", "payment_outbox"), [Some(true)]);
    assert_eq!(written.journal_of("insert", "payments"), [Some(true)]);
    // A lost one of these publishes an event again, or sets aside the refused payment's event later; it loses nothing.
    assert_eq!(written.journal_of("delete", "payment_outbox"), [Some(false)], "the published entry");
    assert_eq!(
        written.journal_of("update", "payment_outbox"),
        [Some(false); 2],
        "the refused payment's event taken out, the claim"
    );
    assert_eq!(written.journal_of("update", platform::mongo::RELAYS), [Some(false)], "the heartbeat");
}
