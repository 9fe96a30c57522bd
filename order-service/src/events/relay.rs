//! The outbox relay: publishes every order's `new-order` event. An order carries its event in its own document
//! (see `store`), so the order is its own outbox entry and the relay writes nothing per event: the writer hands it
//! the events of each batch it stored ([`RelayInbox`]), and it publishes them (at-least-once: consumers are
//! idempotent). Events the broker did not take are kept for the next round.
//!
//! What a crash can leave unpublished is bounded by the replica's checkpoint (`events::unpublished`): every order
//! it made before it has had its event published. The relay notes it in its record in `outbox_relays` once a
//! second (with its claims) and at shutdown. It reads its own orders from its checkpoint at start (what a previous
//! run under its name left), after a write whose outcome was unknown and when the inbox could not keep a batch;
//! and it takes over each replica whose heartbeat stopped (a replica lives while its relay's heartbeat does, see
//! `platform::mongo::OutboxLeases`): it reads that replica's orders from its checkpoint, then removes it. A read
//! publishes the orders of that replica still pending (no `processed` record), so after a crash an event may go
//! out twice. (`order-processed` is not in the outbox: the consumer publishes it, see `events::consumer`.)
//!
//! Entries that earlier versions wrote into the outbox (`order_outbox`, one per group-commit batch of orders,
//! written before the orders) are read and published as those versions did: claimed through leases (`leaseOwner`)
//! so that each goes out once while every replica lives, read at start, with each claim (at most one a second),
//! after a failure and when idle for `OUTBOX_POLL_INTERVAL_MS`, an event published only once its order is stored
//! (those whose order is still missing `ABANDONED_AFTER` later are set aside, and put back should their order
//! appear), and the entry deleted once the broker has its events.
use std::{collections::HashSet, sync::Arc, time::Duration};

use futures::{TryStreamExt as _, future::join_all};
use platform::{
    kafka::ReplaceableProducer,
    mongo::{Handed, OutboxHandover, OutboxPage, PublishedByReads, RoundSchedule},
    shutdown::StopSignal,
};
use rdkafka::{error::KafkaError, producer::Producer as _};

use crate::{
    backoff::Backoff,
    events::{
        envelope,
        kafka::{self, TopicSetup},
        unpublished::Unpublished,
    },
    metrics::Metrics,
    store::{OrderDocument, OrderStore, OutboxEvent, PendingOutbox, Readable, StoreError, UNPUBLISHED_READ},
};

/// Entries read per round. A read costs the engine every entry its index range gives whatever its limit (SecantusDB
/// decodes and matches them all before it sorts and cuts), so a long backlog drains faster in fewer, larger rounds;
/// but a round's entries are all held in memory, and an entry holds a whole batch's events (a backlog's batches are
/// as large as the requests that were waiting together).
const BATCH: usize = 100;
/// Events handed to the producer at once, whatever a round read: what waits in librdkafka's queues stays bounded.
const PUBLISH_WINDOW: usize = 200;
/// The most events the inbox keeps for the relay (~0.7 KB each); past this, the relay reads their orders instead. A
/// broker that stalls for a few seconds under load leaves thousands waiting, and a read of orders costs the engine a
/// scan of the collection on SecantusDB (see `OrderStore::written_by`).
const INBOX_LIMIT: usize = 10_000;
/// How many of the orders (and outbox entries of earlier versions) it published lately the relay remembers: a read
/// of orders leaves out those on their way to being processed, and the inbox's copy of a batch that a read got to
/// first is not published again.
pub const PUBLISHED_REMEMBERED: usize = 4_096;

/// The most events that failed to go out the relay keeps to send again; past this, they are read again from the
/// orders once the broker answers.
const RETRY_LIMIT: usize = 10_000;

/// How often the relay looks for set-aside entries whose order was stored after all (a write held up longer than
/// `ABANDONED_AFTER`): they are published late rather than lost.
pub const REVIVE_INTERVAL: Duration = Duration::from_secs(300);

/// What the writer tells its relay: the batches it has just stored, with the events of the orders stored (so the
/// relay publishes them without reading anything), and which orders are not yet published ([`Unpublished`]). What
/// it cannot keep costs a read of the orders, never an event: the orders stay the source of truth.
pub struct RelayInbox {
    handover: OutboxHandover<Vec<OutboxEvent>>,
    /// How many events the handover holds.
    held: std::sync::atomic::AtomicUsize,
    /// The orders this replica made whose events are not yet published: the relay's checkpoint.
    pub unpublished: Unpublished,
}

impl Default for RelayInbox {
    fn default() -> Self {
        Self {
            handover: OutboxHandover::new(INBOX_LIMIT),
            held: Default::default(),
            unpublished: Unpublished::default(),
        }
    }
}

impl RelayInbox {
    /// A new order: its event is counted unpublished from now (before it is queued for the writer).
    pub fn made(&self, order_id: &str) {
        self.unpublished.made(order_id);
    }

    /// These orders (each with its event) are durable: publish their events. When the inbox is full, the relay reads
    /// them from the orders instead.
    pub fn stored(&self, events: Vec<OutboxEvent>) {
        use std::sync::atomic::Ordering;
        let count = events.len();
        if self.held.fetch_add(count, Ordering::AcqRel) + count > INBOX_LIMIT {
            self.held.fetch_sub(count, Ordering::AcqRel);
            self.unknown(events.iter().map(|event| event.key.as_str()));
            return;
        }
        // The handover holds at most INBOX_LIMIT batches, and a batch has at least one event: it keeps this one.
        self.handover.stored(events);
    }

    /// Everything handed since the last take.
    fn take(&self) -> Handed<Vec<OutboxEvent>> {
        let handed = self.handover.take();
        let count = handed.stored.iter().map(Vec::len).sum();
        self.held.fetch_sub(count, std::sync::atomic::Ordering::AcqRel);
        handed
    }

    /// These orders were certainly not stored (refused, or never written): nothing to publish.
    pub fn not_stored<'a>(&self, order_ids: impl IntoIterator<Item = &'a str>) {
        self.unpublished.settled(order_ids);
    }

    /// Whether these orders were stored is unknown: the relay reads the orders from the oldest of them on.
    pub fn unknown<'a>(&self, order_ids: impl IntoIterator<Item = &'a str>) {
        self.unpublished.unknown(order_ids);
        self.handover.wake();
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
    #[error("making an order's new-order event again: {0}")]
    Encoding(String),
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
    /// The orders (and entries of earlier versions) this relay published lately ([`PUBLISHED_REMEMBERED`]).
    pub published_lately: PublishedByReads,
    /// When to look for set-aside entries whose order was stored after all ([`REVIVE_INTERVAL`]).
    pub revivals: RoundSchedule,
    /// Events handed over that the broker did not take yet.
    pub retry: Vec<OutboxEvent>,
    /// Where `new-order` events go (those made again from orders read).
    pub new_order_topic: String,
    /// Whether this run has read its name's checkpoint (and so may move it).
    pub started: bool,
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
        // How far it published, so that whoever reads after it starts there.
        if self.started
            && let Err(error) = self.note_checkpoint().await
        {
            tracing::debug!(%error, "checkpoint not moved at shutdown");
        }
        // What this replica held but did not publish is free for the others at once.
        if let Err(error) = self.store.release_leases(&self.owner).await {
            tracing::debug!(%error, "outbox leases left to run out");
        }
        tracing::info!("outbox relay stopped");
    }

    /// Publishes what the inbox holds (and what failed to go out before), then, when a claim is due, notes the
    /// checkpoint and reads what stopped replicas left; reads this replica's orders when a read is owed; reads the
    /// outbox of earlier versions when `read` asks for it or a claim is due.
    async fn round(&mut self, read: bool, shutdown: &mut StopSignal) -> Result<(), RoundError> {
        let Handed { stored, read_outbox } = self.inbox.take();
        let (read_first, handed): (Vec<OutboxEvent>, Vec<OutboxEvent>) =
            stored.into_iter().flatten().partition(|event| self.published_lately.contains(&event.key));
        // A read got to these first: they are out.
        self.inbox.unpublished.settled(read_first.iter().map(|event| event.key.as_str()));
        self.retry.extend(handed);
        let waiting = std::mem::take(&mut self.retry);
        let (sent, error) = self.publish_events(&waiting.iter().collect::<Vec<_>>()).await;
        self.published(&waiting, &sent);
        self.retry = waiting.into_iter().filter(|event| !sent.contains(&event.event_id)).collect();
        if self.retry.len() > RETRY_LIMIT {
            // Kept in memory no longer: read again from the orders once the broker answers.
            let dropped = std::mem::take(&mut self.retry);
            self.inbox.unpublished.unknown(dropped.iter().map(|event| event.key.as_str()));
        }
        if let Some(error) = error {
            return Err(error.into());
        }
        if !self.started {
            // What a previous run under this name may have left unpublished: read from its checkpoint.
            if let Some(checkpoint) = self.store.checkpoint(&self.owner).await? {
                self.inbox.unpublished.read_from_checkpoint(checkpoint);
            }
            self.started = true;
        }
        let claim = self.claims.due();
        if claim {
            self.note_checkpoint().await?;
            self.take_over_stopped().await?;
        }
        if let Some(owed) = self.inbox.unpublished.read_owed() {
            let owner = self.owner.clone();
            self.read_orders(&owner, owed.from).await?;
            self.inbox.unpublished.read_done(owed);
        }
        if read || read_outbox || claim {
            self.drain(claim, shutdown).await?;
        }
        Ok(())
    }

    /// Notes this replica's checkpoint as of now in its record.
    async fn note_checkpoint(&self) -> Result<(), StoreError> {
        let now = mongodb::bson::DateTime::now().timestamp_millis();
        self.store.note_checkpoint(&self.owner, self.inbox.unpublished.checkpoint(now)).await
    }

    /// Reads what each replica whose heartbeat stopped wrote since its checkpoint, and publishes what is unpublished.
    async fn take_over_stopped(&mut self) -> Result<(), RoundError> {
        for stopped in self.store.stopped_with_checkpoint(&self.owner).await? {
            let Some((from, until)) = self.store.take_over(&stopped, self.lease).await? else { continue };
            tracing::warn!(replica = %stopped, "reading the orders of a replica whose heartbeat stopped");
            self.read_orders(&stopped, from).await?;
            self.store.taken_over(&stopped, until).await?;
        }
        Ok(())
    }

    /// Publishes the events of `owner`'s orders made from `from` on (up to this read's start) that are still pending,
    /// in one read of them, a hundred orders at a time.
    async fn read_orders(&mut self, owner: &str, from: i64) -> Result<(), RoundError> {
        let until = mongodb::bson::DateTime::now().timestamp_millis() + 1;
        let orders = self.store.written_by(owner, from, until).await?;
        let mut chunks = std::pin::pin!(orders.try_chunks(UNPUBLISHED_READ as usize));
        while let Some(chunk) = chunks.try_next().await.map_err(|error| RoundError::Store(error.1))? {
            // Those this relay published lately are on their way to being processed.
            let chunk: Vec<OrderDocument> =
                chunk.into_iter().filter(|order| !self.published_lately.contains(&order.id)).collect();
            let events: Vec<OutboxEvent> = self
                .store
                .still_pending(chunk)
                .await?
                .iter()
                .filter_map(|order| envelope::stored_new_order_event(order, &self.new_order_topic))
                .collect::<Result<_, _>>()
                .map_err(|error| RoundError::Encoding(error.to_string()))?;
            let (sent, error) = self.publish_events(&events.iter().collect::<Vec<_>>()).await;
            self.published(&events, &sent);
            if let Some(error) = error {
                return Err(error.into());
            }
        }
        Ok(())
    }

    /// Of `events`, those whose id is in `sent` are out: remembered by order (a read of the orders that finds one
    /// before it is processed, or a handed copy of one a read found first, leaves it out) and no longer unpublished.
    fn published(&mut self, events: &[OutboxEvent], sent: &HashSet<String>) {
        let out: Vec<&OutboxEvent> = events.iter().filter(|event| sent.contains(&event.event_id)).collect();
        for event in &out {
            self.published_lately.add(&event.key);
        }
        self.inbox.unpublished.settled(out.iter().map(|event| event.key.as_str()));
    }

    /// Publishes these events, a window at a time: the ids of those the broker acknowledged, and the first failure.
    async fn publish_events(&self, events: &[&OutboxEvent]) -> (HashSet<String>, Option<KafkaError>) {
        let mut sent = HashSet::with_capacity(events.len());
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
                    .map(|(event, _)| event.event_id.clone()),
            );
            if let Some(Err(failed)) = results.into_iter().find(Result::is_err) {
                return (sent, Some(failed));
            }
        }
        (sent, None)
    }

    /// Publishes these entries' events, a window at a time; the entries whose every event the broker acknowledged,
    /// and the first failure.
    async fn publish(&self, entries: &[&PendingOutbox]) -> PublishOutcome {
        let events: Vec<&OutboxEvent> = entries.iter().flat_map(|entry| entry.outbox.iter()).collect();
        let (sent, error) = self.publish_events(&events).await;
        // An entry is done once all its events are out: acknowledging it deletes it.
        let done = entries
            .iter()
            .filter(|entry| entry.outbox.iter().all(|event| sent.contains(&event.event_id)))
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
                self.published_lately.add(&ready.id);
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
    fn the_inbox_hands_over_stored_batches_and_owes_a_read_of_those_past_its_limit() {
        let inbox = RelayInbox::default();
        let event = |order_id: String| OutboxEvent {
            event_id: format!("e-{order_id}"),
            topic: "new-order".into(),
            key: order_id,
            payload: "{}".into(),
            request_id: None,
            traceparent: None,
            tracestate: None,
        };
        // Batches of 100 events: the inbox keeps the first INBOX_LIMIT events, and refuses the batch past them.
        let batches: Vec<Vec<String>> =
            (0..=INBOX_LIMIT / 100).map(|_| (0..100).map(|_| uuid::Uuid::now_v7().to_string()).collect()).collect();
        for batch in &batches {
            for id in batch {
                inbox.made(id);
            }
            inbox.stored(batch.iter().cloned().map(event).collect());
        }
        let news = inbox.take();
        assert_eq!(news.stored.iter().map(Vec::len).sum::<usize>(), INBOX_LIMIT);
        let owed = inbox.unpublished.read_owed().expect("the batch past the limit is read from the orders");
        assert_eq!(Some(owed.from), crate::store::made_millis(&batches[INBOX_LIMIT / 100][0]));
        assert_eq!(inbox.unpublished.len(), INBOX_LIMIT, "the handed ones count until published");
        // Taken: there is room again.
        inbox.stored(vec![event(uuid::Uuid::now_v7().to_string())]);
        assert_eq!(inbox.take().stored.len(), 1);
        let news = inbox.take();
        assert!(news.stored.is_empty() && !news.read_outbox);
    }
}
