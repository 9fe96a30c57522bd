//! The outbox relay: publishes every event waiting in the outbox (`order_outbox`, one entry per group-commit batch
//! of orders, see `store`), then deletes the entry. A crash between the two publishes the events again
//! (at-least-once); consumers are idempotent, so that is harmless. While Kafka is down, events wait in MongoDB. An
//! entry is written before its orders, so the relay publishes an event it read only once its order is stored; those
//! whose order is still missing `ABANDONED_AFTER` later are set aside, and put back should their order appear.
//!
//! Replicas share the outbox through leases: a relay first claims the entries that no live replica holds
//! (`leaseOwner`; a replica lives while its relay's heartbeat does, see `platform::mongo::OutboxLeases`), then
//! publishes only its own, so each event goes out once while every replica lives; a dead replica's heartbeat runs
//! out after `OUTBOX_LEASE_MS` and another takes its entries over (then an event may go out twice). The entries
//! this replica writes are written already held by it. (`order-processed` is not in the outbox: the consumer
//! publishes it, see `events::consumer`.)
//!
//! In the normal case the relay does not read the outbox: the writer hands it each batch it has just stored
//! ([`RelayInbox`]), with the events of the orders stored, and the relay deletes the batch's entry once the broker
//! has them all (one delete per batch). It reads the outbox (the source of truth) at start, with each claim (at
//! most one a second), after a failure, when idle for `OUTBOX_POLL_INTERVAL_MS`, and when more batches were
//! stored than the inbox holds; a backlog (after an outage, a restart, a dead replica's claims) is read a page at a
//! time.
use std::{collections::HashSet, sync::Arc, time::Duration};

use futures::future::join_all;
use platform::{
    kafka::ReplaceableProducer,
    mongo::{Handed, OutboxHandover, OutboxPage, PublishedByReads, RoundSchedule},
    shutdown::StopSignal,
};
use rdkafka::{error::KafkaError, producer::Producer as _};

use crate::{
    backoff::Backoff,
    events::kafka::{self, TopicSetup},
    metrics::Metrics,
    store::{OrderStore, OutboxEvent, PendingOutbox, Readable, StoreError},
};

/// Entries read per round. A read costs the engine every entry its index range gives whatever its limit (SecantusDB
/// decodes and matches them all before it sorts and cuts), so a long backlog drains faster in fewer, larger rounds;
/// but a round's entries are all held in memory, and an entry holds a whole batch's events (a backlog's batches are
/// as large as the requests that were waiting together).
const BATCH: usize = 100;
/// Events handed to the producer at once, whatever a round read: what waits in librdkafka's queues stays bounded.
const PUBLISH_WINDOW: usize = 200;
/// The most stored batches the inbox keeps for the relay; past this, the relay reads the outbox instead.
const INBOX_LIMIT: usize = 64;
/// How many of the entries it published from reads the relay remembers, so that the inbox's copy of a batch just
/// stored, which a read got to first, is not published again.
pub const READ_REMEMBERED: usize = 4 * BATCH;

/// How often the relay looks for set-aside entries whose order was stored after all (a write held up longer than
/// `ABANDONED_AFTER`): they are published late rather than lost.
pub const REVIVE_INTERVAL: Duration = Duration::from_secs(300);

/// What the writer tells its relay: the batches it has just stored, with the events of the orders stored (so the
/// relay publishes them without reading the outbox). Losing any of it costs time, never an event: the outbox stays
/// the source of truth.
pub struct RelayInbox {
    handover: OutboxHandover<PendingOutbox>,
}

impl Default for RelayInbox {
    fn default() -> Self {
        Self { handover: OutboxHandover::new(INBOX_LIMIT) }
    }
}

impl RelayInbox {
    /// This batch's orders and entry are durable, held by this replica's lease: publish its events.
    pub fn stored(&self, entry: PendingOutbox) {
        self.handover.stored(entry);
    }

    /// Events were written outside the inbox: the relay reads the outbox at its next round.
    pub fn read_outbox(&self) {
        self.handover.read_outbox();
    }
}

/// What a publication got the broker to acknowledge (the entries whose every event it has), and the error that
/// stopped it, if one did.
struct PublishOutcome {
    done: HashSet<String>,
    error: Option<KafkaError>,
}

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
    pub inbox: Arc<RelayInbox>,
    pub poll_interval: Duration,
    pub metrics: Metrics,
    /// This replica's name, the owner of its leases.
    pub owner: String,
    pub lease: Duration,
    /// When to claim what no live lease holds; in between, the relay reads what it holds.
    pub claims: RoundSchedule,
    /// The entries reads published lately.
    pub published_by_reads: PublishedByReads,
    /// When to look for set-aside entries whose order was stored after all ([`REVIVE_INTERVAL`]).
    pub revivals: RoundSchedule,
}

impl OutboxRelay {
    pub async fn run(mut self, mut shutdown: StopSignal) {
        let mut backoff = Backoff::new(Duration::from_millis(100), Duration::from_secs(5));
        // Failed rounds in a row that Kafka failed (a database outage says nothing about the producer).
        let mut kafka_failures = 0;
        // What a previous run under this name held is this run's to publish at once.
        if let Err(error) = self.store.hold_leases(&self.owner, self.lease).await {
            tracing::debug!(%error, "outbox leases not started; the first claim beats");
        }
        // The first round reads what earlier runs left; so does the one after a failure or an idle wait.
        let mut read = true;
        loop {
            match self.round(read, &mut shutdown).await {
                Ok(()) => {
                    backoff.reset();
                    kafka_failures = 0;
                    read = false;
                }
                Err(error) => {
                    read = true;
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
                () = self.inbox.handover.handed() => {}
                () = tokio::time::sleep(self.poll_interval) => read = true,
                _ = shutdown.stopped() => break,
            }
        }
        // Whatever was handed to the producer gets its chance to reach the broker before exit
        // (flushing blocks, so it runs off the executor).
        let producer = self.producer.current();
        let _ = tokio::task::spawn_blocking(move || producer.flush(Duration::from_secs(5))).await;
        // What this replica held but did not publish is free for the others at once.
        if let Err(error) = self.store.release_leases(&self.owner).await {
            tracing::debug!(%error, "outbox leases left to run out");
        }
        tracing::info!("outbox relay stopped");
    }

    /// Publishes what the inbox holds and takes those entries out, then reads the outbox when `read` asks for it or
    /// a claim is due.
    async fn round(&mut self, read: bool, shutdown: &mut StopSignal) -> Result<(), RoundError> {
        let Handed { stored, read_outbox } = self.inbox.handover.take();
        let stored: Vec<PendingOutbox> =
            stored.into_iter().filter(|entry| !self.published_by_reads.contains(&entry.id)).collect();
        let claim = self.claims.due();
        let PublishOutcome { done, error } = self.publish(&stored.iter().collect::<Vec<_>>()).await;
        let done: Vec<String> =
            stored.iter().filter(|entry| done.contains(&entry.id)).map(|entry| entry.id.clone()).collect();
        self.acknowledge(&done).await?;
        if let Some(error) = error {
            return Err(error.into());
        }
        if read || read_outbox || claim {
            self.drain(claim, shutdown).await?;
        }
        Ok(())
    }

    /// Publishes these entries' events, a window at a time; the entries whose every event the broker acknowledged,
    /// and the first failure.
    async fn publish(&self, entries: &[&PendingOutbox]) -> PublishOutcome {
        let events: Vec<&OutboxEvent> = entries.iter().flat_map(|entry| entry.outbox.iter()).collect();
        let mut sent = HashSet::with_capacity(events.len());
        let mut error = None;
        for window in events.chunks(PUBLISH_WINDOW) {
            // Sends are enqueued in order, and a window goes only once the one before it is acknowledged, so
            // one order's events keep their order on its partition.
            let results =
                join_all(window.iter().map(|event| kafka::publish(&self.producer, &self.metrics, event))).await;
            sent.extend(
                window
                    .iter()
                    .zip(&results)
                    .filter(|(_, result)| result.is_ok())
                    .map(|(event, _)| event.event_id.as_str()),
            );
            if let Some(Err(failed)) = results.into_iter().find(Result::is_err) {
                error = Some(failed);
                break;
            }
        }
        // An entry is done once all its events are out: acknowledging it deletes it.
        let done = entries
            .iter()
            .filter(|entry| entry.outbox.iter().all(|event| sent.contains(event.event_id.as_str())))
            .map(|entry| entry.id.clone())
            .collect();
        PublishOutcome { done, error }
    }

    /// Puts back the set-aside entries whose order is stored by now, at the first claim and then every
    /// [`REVIVE_INTERVAL`].
    async fn revive_when_due(&mut self) -> Result<(), StoreError> {
        if !self.revivals.due() {
            return Ok(());
        }
        let revived = self.store.revive_set_aside().await?;
        if revived > 0 {
            tracing::warn!(count = revived, "set-aside events whose order was stored after all put back");
        }
        Ok(())
    }

    /// Reads the outbox (claiming first when `claim`) and publishes what it holds, a page at a time, oldest first,
    /// taking each entry out once its events are out (setting aside those of orders never stored). A full page is a
    /// backlog (after an outage, a restart, a dead replica's claims): the next page is read from where that one
    /// ended. A short page is all there is: under load, new batches keep arriving, and the inbox is what hands them
    /// over. (A batch stored while a page was read may sort before that page's end: the next drain, which starts at
    /// the oldest, finds it.)
    async fn drain(&mut self, mut claim: bool, shutdown: &mut StopSignal) -> Result<(), RoundError> {
        let mut renewed = tokio::time::Instant::now();
        let mut after: Option<String> = None;
        loop {
            // A long drain keeps its hold: its heartbeat, at half the lease.
            if renewed.elapsed() > self.lease / 2 {
                self.store.renew_leases(&self.owner, self.lease).await?;
                renewed = tokio::time::Instant::now();
            }
            let page = OutboxPage { limit: BATCH, after: after.as_deref() };
            let entries = if claim {
                self.revive_when_due().await?;
                self.store.claim_outbox(&self.owner, self.lease, page).await
            } else {
                self.store.held_outbox(&self.owner, page).await
            }?;
            claim = self.claims.due();
            let backlog = entries.len() == BATCH;
            after = entries.last().map(|entry| entry.id.clone());
            // An entry is written before its orders: its events are published once their orders are stored, set aside
            // if they never are.
            let readable = self.store.with_stored_orders(entries).await?;
            let ready: Vec<&PendingOutbox> = readable.iter().map(|entry| &entry.ready).collect();
            let PublishOutcome { done, error } = self.publish(&ready).await;
            let mut published = Vec::new();
            for Readable { ready, abandoned } in readable.iter().filter(|entry| done.contains(&entry.ready.id)) {
                self.published_by_reads.add(&ready.id);
                if abandoned.is_empty() {
                    published.push(ready.id.clone());
                } else {
                    tracing::warn!(
                        entry = %ready.id,
                        orders = ?abandoned.iter().map(|event| event.key.as_str()).collect::<Vec<_>>(),
                        "events of orders never stored set aside"
                    );
                    self.store.set_aside(&ready.id, abandoned).await?;
                }
            }
            self.acknowledge(&published).await?;
            if let Some(error) = error {
                return Err(error.into());
            }
            if !backlog || shutdown.is_stopped() {
                return Ok(());
            }
        }
    }

    /// Takes these entries, whose events the broker has, out of the outbox.
    async fn acknowledge(&self, entry_ids: &[String]) -> Result<(), StoreError> {
        if entry_ids.is_empty() {
            return Ok(());
        }
        self.store.acknowledge_published(entry_ids).await
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_inbox_hands_over_stored_batches_and_asks_for_a_read_past_its_limit() {
        let inbox = RelayInbox::default();
        for i in 0..=INBOX_LIMIT {
            inbox.stored(PendingOutbox { id: format!("b{i}"), outbox: Vec::new() });
        }
        let news = inbox.handover.take();
        assert_eq!(news.stored.len(), INBOX_LIMIT);
        assert!(news.read_outbox, "the batch past the limit is found by reading the outbox");
        let news = inbox.handover.take();
        assert!(news.stored.is_empty() && !news.read_outbox);
    }
}
