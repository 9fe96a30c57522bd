//! With the broker down, orders are still accepted; when it returns, every one is processed,
//! none lost, none announced twice. Uses a private broker so other tests are not disturbed.
use crate::support;

use std::{collections::HashMap, time::Duration};

use order_service::domain::OrderStatus;

#[tokio::test]
async fn orders_accepted_while_the_broker_is_down_all_reach_processed_once_it_returns() {
    let mut broker = support::PrivateBroker::start().await;
    let app = support::settings().with_broker(&broker).spawn().await;

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

/// A broker that stalls (here frozen) for longer than a send may wait (`message.timeout.ms`, 5 s) leaves the
/// idempotent producer that was sending to it refused once it answers again (Tansu fences its producer id); the
/// relay and the consumer then replace their producers. Every order placed during the stall is processed and
/// announced.
#[tokio::test]
async fn orders_placed_while_the_broker_stalls_are_processed_and_announced_once_it_answers_again() {
    let broker = support::PrivateBroker::start_in_memory().await;
    let app = support::settings().with_broker(&broker).spawn().await;
    let first = app.insert_pending_order("user-1").await;
    app.wait_for_status(std::slice::from_ref(&first.id), OrderStatus::Processed, Duration::from_secs(60)).await;

    broker.freeze();
    let mut ids = Vec::new();
    for _ in 0..20 {
        ids.push(app.insert_pending_order("user-1").await.id);
    }
    tokio::time::sleep(Duration::from_secs(8)).await;
    broker.thaw();

    app.wait_for_status(&ids, OrderStatus::Processed, Duration::from_secs(60)).await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        let processed =
            support::read_topic(&broker.address(), &app.topic("order-processed"), Duration::from_secs(2)).await;
        let announced: std::collections::HashSet<String> =
            processed.into_iter().filter_map(|message| message.key).collect();
        let missing: Vec<&String> = ids.iter().filter(|id| !announced.contains(*id)).collect();
        if missing.is_empty() {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "never announced: {missing:?}");
    }
    app.stop().await;
}

/// With its group's coordinator gone, the consumer's close cannot complete as usual (librdkafka waits for the
/// coordinator; forever in some of its versions); the service stops all the same, within its drain deadlines. It
/// runs on a runtime of its own thread, so that a stop that blocked its thread fails this test instead of hanging
/// it.
#[test]
fn a_graceful_stop_completes_while_the_broker_is_gone() {
    let (stopped, outcome) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("a runtime");
        runtime.block_on(async {
            let mut broker = support::PrivateBroker::start().await;
            let app = support::settings().with_broker(&broker).spawn().await;
            // Processed: the consumer is in its group, its coordinator the broker.
            let order = app.insert_pending_order("user-1").await;
            app.wait_for_status(std::slice::from_ref(&order.id), OrderStatus::Processed, Duration::from_secs(60)).await;

            broker.stop();
            let started = std::time::Instant::now();
            app.stop().await;
            let _ = stopped.send(started.elapsed());
        });
    });
    let took = outcome.recv_timeout(Duration::from_secs(120)).expect("the service stopped, its thread not blocked");
    println!("stopped in {took:?} with the broker gone");
}
