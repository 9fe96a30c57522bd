//! The outbox relay: publishes every event that an order document says is unpublished, then
//! removes it from the outbox. A crash between the two publishes the event again (at-least-once);
//! consumers are idempotent, so that is harmless. While Kafka is down, events wait in MongoDB.
//!
//! Replicas share the outbox through leases: a relay first claims the orders with unpublished
//! events that no live lease holds (`leaseOwner`, `leaseUntil`), then publishes only its own, so
//! each event goes out once while every replica lives; a dead replica's claims expire after
//! `OUTBOX_LEASE_MS` and another takes them over (then an event may go out twice). The orders this
//! replica inserts are written already held by it, so between two claims (at most one a second) the
//! relay only reads what it holds. (`order-processed` is not in the outbox: the consumer publishes it,
//! see `events::consumer`.)
use std::{sync::Arc, time::Duration};

use futures::future::join_all;
use platform::{kafka::ReplaceableProducer, mongo::ClaimSchedule, shutdown::StopSignal};
use rdkafka::{error::KafkaError, producer::Producer as _};
use tokio::sync::Notify;

use crate::{
    backoff::Backoff,
    events::{consumer::TopicSetup, kafka},
    metrics::Metrics,
    store::{OrderStore, OutboxEvent, Published, StoreError},
};

/// Orders read per round. A read costs the engine every pending entry whatever its limit (SecantusDB decodes and
/// matches every entry the `outboxPending` index gives before it sorts and cuts), so a long backlog drains faster in
/// fewer, larger rounds; but a round's orders are all held in memory. Measured with 5,000 orders waiting: 200 per
/// round drained 184 orders/s with the order-service's peak at 27 MB, 500 drained 226/s at 29 MB, 1,000 drained
/// 242-254/s at 32-35 MB. The acknowledgements go in chunks (`OrderStore::acknowledge_published`).
const BATCH: usize = 500;
/// Events handed to the producer at once, whatever a round read: what waits in librdkafka's queues stays bounded.
const PUBLISH_WINDOW: usize = 200;

/// Why a round stopped: the outbox could not be read or updated, or the broker did not take an event.
#[derive(Debug, thiserror::Error)]
enum RoundError {
    #[error("reading or updating the outbox: {0}")]
    Store(#[from] StoreError),
    #[error("publishing to Kafka: {0}")]
    Kafka(#[from] KafkaError),
}

pub struct OutboxRelay {
    pub store: OrderStore,
    /// Shared with the lifecycle consumer: a producer that cannot deliver again is replaced for both.
    pub producer: Arc<ReplaceableProducer>,
    /// Re-created after failures: an in-memory broker that restarted has forgotten them.
    pub topic_setup: TopicSetup,
    pub wake: Arc<Notify>,
    pub poll_interval: Duration,
    pub metrics: Metrics,
    /// This replica's name, the owner of its leases.
    pub owner: String,
    pub lease: Duration,
    /// When to claim what no live lease holds; in between, the relay reads what it holds.
    pub claims: ClaimSchedule,
}

impl OutboxRelay {
    pub async fn run(mut self, mut shutdown: StopSignal) {
        let mut backoff = Backoff::new(Duration::from_millis(100), Duration::from_secs(5));
        // Failed rounds in a row that Kafka failed (a database outage says nothing about the producer).
        let mut kafka_failures = 0;
        // What a previous run under this name claimed is this run's to publish at once.
        if let Err(error) = self.store.release_leases(&self.owner).await {
            tracing::debug!(%error, "earlier outbox leases left to expire");
        }
        loop {
            match self.drain().await {
                Ok(()) => {
                    backoff.reset();
                    kafka_failures = 0;
                }
                Err(error) => {
                    let delay = backoff.next_delay();
                    tracing::warn!(%error, retry_in_ms = delay.as_millis() as u64, "outbox relay could not publish");
                    if matches!(error, RoundError::Kafka(_)) {
                        kafka_failures += 1;
                        self.recover(kafka_failures).await;
                    }
                    tokio::select! {
                        () = tokio::time::sleep(delay) => continue,
                        _ = shutdown.stopped() => break,
                    }
                }
            }
            tokio::select! {
                () = self.wake.notified() => {}
                () = tokio::time::sleep(self.poll_interval) => {}
                _ = shutdown.stopped() => break,
            }
        }
        // Whatever was handed to the producer gets its chance to reach the broker before exit
        // (flushing blocks, so it runs off the executor).
        let producer = self.producer.current();
        let _ = tokio::task::spawn_blocking(move || producer.flush(Duration::from_secs(5))).await;
        // What this replica claimed but did not publish is free for the others at once.
        if let Err(error) = self.store.release_leases(&self.owner).await {
            tracing::debug!(%error, "outbox leases left to expire");
        }
        tracing::info!("outbox relay stopped");
    }

    /// Publishes batches until the outbox is empty.
    async fn drain(&mut self) -> Result<(), RoundError> {
        let mut renewed = tokio::time::Instant::now();
        loop {
            // A long drain keeps its claims: renewed at half the lease.
            if renewed.elapsed() > self.lease / 2 {
                self.store.renew_leases(&self.owner, self.lease).await?;
                renewed = tokio::time::Instant::now();
            }
            let orders = if self.claims.due() {
                self.store.claim_outbox(&self.owner, self.lease, BATCH).await
            } else {
                self.store.held_outbox(&self.owner, BATCH).await
            };
            let orders = orders?;
            if orders.is_empty() {
                return Ok(());
            }
            let events: Vec<(&OutboxEvent, Published)> = orders
                .iter()
                .flat_map(|order| order.outbox.iter().map(move |event| (event, Published::of(order, event))))
                .collect();
            for window in events.chunks(PUBLISH_WINDOW) {
                // Sends are enqueued in order, and a window goes only once the one before it is acknowledged, so
                // one order's events keep their order on its partition.
                let results =
                    join_all(window.iter().map(|(event, _)| kafka::publish(&self.producer, &self.metrics, event)))
                        .await;
                let published: Vec<Published> = window
                    .iter()
                    .zip(&results)
                    .filter(|(_, result)| result.is_ok())
                    .map(|((_, published), _)| published.clone())
                    .collect();
                self.store.acknowledge_published(&self.owner, &published).await?;
                if let Some(Err(error)) = results.into_iter().find(Result::is_err) {
                    return Err(error.into());
                }
            }
        }
    }

    /// Makes the next attempt possible after Kafka failed a round: the topics exist again (a broker
    /// that restarted without storage lost them), and a producer that keeps failing is replaced. (One
    /// that failed in a way no retry mends, fatal or fenced, was replaced by the failed send already.)
    async fn recover(&mut self, consecutive_failures: u32) {
        if let Err(error) = self.topic_setup.ensure().await {
            tracing::debug!(%error, "cannot ensure topics yet");
            return;
        }
        self.producer.after_failed_rounds(consecutive_failures);
    }
}
