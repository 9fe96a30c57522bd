//! With the broker down, orders are still accepted; when it returns, every one is processed,
//! none lost, none announced twice. Uses a private broker so other tests are not disturbed.
use crate::support;

use std::{collections::HashMap, time::Duration};

use order_service::domain::OrderStatus;

#[tokio::test]
async fn orders_accepted_while_the_broker_is_down_all_reach_processed_once_it_returns() {
    let mut broker = support::PrivateBroker::start().await;
    let app = support::settings().with("KAFKA_BROKERS", broker.address()).spawn().await;

    broker.stop();
    let mut ids = Vec::new();
    for _ in 0..20 {
        ids.push(app.insert_pending_order("user-1").await.id);
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    for id in &ids {
        assert_eq!(app.status(id).await, Some(OrderStatus::Pending), "nothing can be processed without a broker");
    }

    broker.restart().await;
    app.wait_for_status(&ids, OrderStatus::Processed, Duration::from_secs(60)).await;
    app.wait_outbox_drained(Duration::from_secs(30)).await;

    let processed = support::read_topic(&broker.address(), &app.topic("order-processed"), Duration::from_secs(3)).await;
    let mut per_order: HashMap<String, usize> = HashMap::new();
    for message in &processed {
        *per_order.entry(message.key.clone().unwrap_or_default()).or_default() += 1;
    }
    for id in &ids {
        assert_eq!(per_order.get(id), Some(&1), "order {id} announced exactly once: {per_order:?}");
    }
    app.stop().await;
}
