//! Several order-service replicas on one database and one set of topics, and a replica that crashes
//! and comes back.
use crate::support;

use std::{
    collections::HashSet,
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use futures::future::join_all;
use order_service::{domain::OrderStatus, store::OrderWithEvent};
use platform::mongo::Lease;

#[tokio::test]
async fn two_replicas_on_one_database_publish_each_event_once() {
    let shared = support::settings();
    let a = shared.clone().with("REPLICA_ID", "replica-a").spawn().await;
    let b = shared.with("REPLICA_ID", "replica-b").spawn().await;
    let n = 100;
    // Orders arrive at both replicas at once, and both relays are woken for each.
    let orders = join_all((0..n).map(|i| {
        let (mine, other) = if i % 2 == 0 { (&a, &b) } else { (&b, &a) };
        async move {
            let order = mine.insert_pending_order("user-1").await;
            other.state.relay_inbox.read_outbox();
            order.id
        }
    }))
    .await;
    a.wait_for_status(&orders, OrderStatus::Processed, Duration::from_secs(60)).await;
    a.wait_outbox_drained(Duration::from_secs(20)).await;

    for topic in ["new-order", "order-processed"] {
        let messages = support::read_topic(&a.brokers, &a.topic(topic), Duration::from_secs(3)).await;
        let keys: HashSet<_> = messages.iter().filter_map(|message| message.key.clone()).collect();
        assert_eq!(keys.len(), n, "every order's {topic} was published");
        assert_eq!(messages.len(), n, "each {topic} event was published once");
    }
    let produced = |text: &str| support::sample(text, "kafka_messages_produced_total", &[]);
    let (by_a, by_b) = (produced(&a.metrics().await), produced(&b.metrics().await));
    println!("{n} orders on two replicas: replica a published {by_a} events, replica b {by_b}");
    assert_eq!(by_a + by_b, 2.0 * n as f64);
    a.stop().await;
    b.stop().await;
}

/// The order-service binary as a process, so that it can be killed without any shutdown; killed
/// (by its pid) when dropped.
struct Process(Child);

impl Process {
    fn start(settings: &support::Settings, port: u16) -> Self {
        let child = Command::new(env!("CARGO_BIN_EXE_order-service"))
            .envs(settings.values.iter().map(|(name, value)| (*name, value.as_str())))
            .env("PORT", port.to_string())
            .env("RUST_LOG", "warn")
            .stdout(if std::env::var_os("TEST_LOG").is_some() { Stdio::inherit() } else { Stdio::null() })
            .stderr(if std::env::var_os("TEST_LOG").is_some() { Stdio::inherit() } else { Stdio::null() })
            .spawn()
            .expect("the order-service binary starts");
        Self(child)
    }

    /// SIGKILL: no offset commit, no leave from the group, no lease released.
    fn kill(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        self.kill();
    }
}

async fn wait_ready(port: u16) {
    let client = platform::tls::http_client(&Default::default())
        .expect("rustls with the web roots")
        .build()
        .expect("an HTTP client");
    for _ in 0..600 {
        if let Ok(response) = client.get(format!("http://127.0.0.1:{port}/ready")).send().await
            && response.status() == 200
        {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("the order-service process never became ready");
}

/// Prints how long processing takes to resume (the figure DOCUMENTATION.md quotes); passes on the
/// resumption itself, never on the time.
#[tokio::test]
async fn a_replica_killed_and_restarted_under_its_name_publishes_what_it_left_unpublished() {
    let settings = support::settings().with("REPLICA_ID", "replica-crash");
    let database = settings.values["MONGODB_DATABASE"].clone();
    let topic = format!("{}new-order", settings.values["KAFKA_TOPIC_PREFIX"]);
    let port = support::closed_port();
    let mut process = Process::start(&settings, port);
    wait_ready(port).await;
    // Long enough for its relay to note a checkpoint (once a second), as a running replica does.
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    process.kill();
    // What it had stored (and answered 201 for) when it was killed, before its relay published the event.
    let lease = Lease::new("replica-crash", Duration::from_secs(30));
    let killed = support::raw_store(&database).await.holding_new_events(lease);
    let left = support::new_pending_order("user-1", &topic);
    assert!(killed.insert(&left).await.is_ok());

    let restarted = Instant::now();
    let _process = Process::start(&settings, port);
    wait_ready(port).await;
    let ready = restarted.elapsed();
    let store = support::raw_store(&database).await;
    support::wait_for_status(&store, &left.order.id, OrderStatus::Processed, Duration::from_secs(60)).await;
    println!(
        "after a SIGKILL and restart: ready in {ready:?}, the order it left unpublished processed {:?} after the restart",
        restarted.elapsed()
    );
}

#[tokio::test]
async fn the_orders_a_stopped_replica_left_unpublished_are_published_once_by_a_live_one() {
    let settings = support::settings();
    let database = settings.values["MONGODB_DATABASE"].clone();
    let topic = format!("{}new-order", settings.values["KAFKA_TOPIC_PREFIX"]);
    // A replica that stored orders and died before publishing their events: its heartbeat is over.
    let dead = support::raw_store(&database).await.holding_new_events(Lease::new("replica-dead", Duration::ZERO));
    let left: Vec<OrderWithEvent> = (0..3).map(|_| support::new_pending_order("user-1", &topic)).collect();
    assert!(dead.insert_batch(&left).await.outcomes.iter().all(Result::is_ok));

    let live = settings.with("REPLICA_ID", "replica-live").spawn().await;
    let ids: Vec<String> = left.iter().map(|new| new.order.id.clone()).collect();
    live.wait_for_status(&ids, OrderStatus::Processed, Duration::from_secs(30)).await;
    let published = support::read_topic(&live.brokers, &live.topic("new-order"), Duration::from_secs(3)).await;
    assert_eq!(published.len(), 3, "each published once");
    assert_eq!(live.state.store.checkpoint("replica-dead").await.unwrap(), None, "read, then let go");
    live.stop().await;
}
