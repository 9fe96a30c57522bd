//! `payment-processed` on Kafka: one envelope per successful payment, through the outbox, also across outages.
use crate::support;

use std::time::Duration;

use payment_service::{domain::PaymentStatus, proto::PaymentStatus as WireStatus};
use support::kafka::{EventReader, partition_count};
use test_support::engines::PrivateBroker;

const ARRIVAL: Duration = Duration::from_secs(30);
const QUIET: Duration = Duration::from_secs(2);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_successful_payment_publishes_exactly_one_envelope_and_declined_ones_none() {
    let app = support::spawn(&[]).await;
    let order = app.known_order("alice", 89_999).await;
    let paid = app.pay(&order, "alice", 89_999, "key-1").await.expect("paid");
    app.pay(&order, "alice", 89_999, "key-1").await.expect("replayed");
    let declined =
        app.pay(&app.known_order("alice", 600_000).await, "alice", 600_000, "key-2").await.expect("answered");
    assert_eq!(declined.status(), WireStatus::Declined);
    let second_order = app.known_order("bob", 100).await;
    let second = app.pay(&second_order, "bob", 100, "key-1").await.expect("paid");

    let reader = EventReader::subscribe(&app.brokers, &app.topic);
    let mut events = reader.exactly(2, ARRIVAL, QUIET).await;
    events.sort_by_key(|event| event.envelope.data.payment_id != paid.payment_id);
    let (first_event, second_event) = (&events[0], &events[1]);

    assert_eq!(first_event.key, order, "keyed by order id");
    assert_eq!(first_event.header("event-type"), Some("payment-processed"));
    let envelope = &first_event.envelope;
    assert_eq!((envelope.event_type.as_str(), envelope.version), ("payment-processed", 1));
    assert!(uuid::Uuid::parse_str(&envelope.event_id).is_ok());
    assert!(envelope.occurred_at.ends_with('Z') && envelope.occurred_at.contains('T'), "{}", envelope.occurred_at);
    let data = &envelope.data;
    assert_eq!(
        (data.payment_id.as_str(), data.order_id.as_str(), data.user_id.as_str()),
        (paid.payment_id.as_str(), order.as_str(), "alice")
    );
    assert_eq!((data.amount_cents, data.currency.as_str(), data.status), (89_999, "EUR", PaymentStatus::Success));

    assert_eq!(second_event.key, second_order);
    assert_eq!(second_event.envelope.data.payment_id, second.payment_id);
    assert_ne!(second_event.envelope.event_id, envelope.event_id);
    let pending = app.waiting_events().await;
    assert!(pending.is_empty(), "every published event is marked: {pending:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_callers_request_id_travels_as_a_kafka_header() {
    let app = support::spawn(&[]).await;
    let order = app.known_order("alice", 500).await;
    let mut request = support::with_token(
        support::pay_request(&order, "alice", 500, "key-1"),
        &app.issuer.token_for("alice", "customer"),
    );
    request.metadata_mut().insert("x-request-id", "req-0042".parse().unwrap());
    app.client().await.pay(request).await.expect("paid");
    let reader = EventReader::subscribe(&app.brokers, &app.topic);
    let events = reader.exactly(1, ARRIVAL, Duration::ZERO).await;
    assert_eq!(events[0].header("x-request-id"), Some("req-0042"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_topic_is_created_with_the_configured_partitions() {
    let app = support::spawn(&[("KAFKA_PARTITIONS", "5")]).await;
    assert_eq!(partition_count(&app.brokers, &app.topic, ARRIVAL).await, Some(5));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_payment_made_while_kafka_is_down_is_published_once_kafka_is_up() {
    let mut kafka = PrivateBroker::not_started();
    let brokers = kafka.address();
    let app = support::spawn_on(&kafka).await;
    let order = app.known_order("alice", 1_000).await;
    let paid = app.pay(&order, "alice", 1_000, "key-1").await.expect("paid without Kafka");
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(app.waiting_events().await.len(), 1, "kept in the outbox");

    kafka.restart().await;
    let reader = EventReader::subscribe(&brokers, &app.topic);
    let events = reader.exactly(1, Duration::from_secs(45), QUIET).await;
    assert_eq!(events[0].envelope.data.payment_id, paid.payment_id);
    assert_eq!(partition_count(&brokers, &app.topic, ARRIVAL).await, Some(3), "created by the service, not by chance");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn publishing_resumes_after_the_broker_restarts() {
    let mut kafka = PrivateBroker::start().await;
    let brokers = kafka.address();
    let app = support::spawn_on(&kafka).await;
    let before = app.pay(&app.known_order("alice", 1_000).await, "alice", 1_000, "key-1").await.expect("paid");
    let reader = EventReader::subscribe(&brokers, &app.topic);
    assert_eq!(reader.exactly(1, ARRIVAL, Duration::ZERO).await[0].envelope.data.payment_id, before.payment_id);
    drop(reader);

    kafka.stop();
    let after = app.pay(&app.known_order("alice", 1_000).await, "alice", 1_000, "key-2").await.expect("paid");
    kafka.restart().await;
    let reader = EventReader::subscribe(&brokers, &app.topic);
    let mut events = reader.exactly(2, Duration::from_secs(60), QUIET).await;
    events.sort_by_key(|event| event.envelope.data.payment_id != before.payment_id);
    assert_eq!(events[1].envelope.data.payment_id, after.payment_id, "the payment made while it was down");
    assert_eq!(partition_count(&brokers, &app.topic, ARRIVAL).await, Some(3));
}

/// A broker that stalls longer than the producer's message timeout (10 s) has the idempotent producer's sends time
/// out, and Tansu refuses that producer once it answers again (it fences its id): the relay replaces it and
/// publishes every payment made during the stall. (A send that timed out here may still have reached the broker, so
/// an event may arrive twice: delivery is at-least-once.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn payments_made_while_the_broker_stalls_are_published_once_it_answers_again() {
    let kafka = PrivateBroker::start_in_memory().await;
    let brokers = kafka.address();
    let app = support::spawn_on(&kafka).await;
    let before = app.pay(&app.known_order("alice", 1_000).await, "alice", 1_000, "key-0").await.expect("paid");
    let reader = EventReader::subscribe(&brokers, &app.topic);
    assert_eq!(reader.exactly(1, ARRIVAL, Duration::ZERO).await[0].envelope.data.payment_id, before.payment_id);
    drop(reader);

    kafka.freeze();
    let mut missing = std::collections::HashSet::new();
    for n in 1..=10 {
        let order = app.known_order("alice", 1_000).await;
        let paid = app.pay(&order, "alice", 1_000, &format!("key-{n}")).await.expect("paid while it stalls");
        missing.insert(paid.payment_id);
    }
    tokio::time::sleep(Duration::from_secs(12)).await;
    kafka.thaw();

    let reader = EventReader::subscribe(&brokers, &app.topic);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while !missing.is_empty() {
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        let Some(event) = reader.next(left).await else {
            panic!("never published: {missing:?}");
        };
        missing.remove(&event.envelope.data.payment_id);
    }
    // Marked published once the broker's acknowledgement reached the relay, a moment after the reader saw them.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let pending = app.waiting_events().await;
        if pending.is_empty() {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "published but not marked: {pending:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
