//! The payment-service's own record of orders, built by its consumer from the order-service's real events on
//! Kafka: what `Pay` decides on, whatever order the events arrive in.
mod support;

use std::time::Duration;

use payment_service::{projection::OrderStage, proto::PaymentStatus};
use support::kafka::{EventReader, order_event, produce};
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
