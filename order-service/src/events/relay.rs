//! The outbox relay: publishes every event waiting in the outbox (`order_outbox`, one entry per order, see
//! `store`), then deletes the entry. A crash between the two publishes the event again (at-least-once); consumers
//! are idempotent, so that is harmless. While Kafka is down, events wait in MongoDB. An entry is written before its
//! order, so the relay publishes an entry it read only once its order is stored; one whose order is still missing
//! `ABANDONED_AFTER` later is set aside, and put back should its order appear.
//!
//! Replicas share the outbox through leases: a relay first claims the entries that no live replica holds
//! (`leaseOwner`; a replica lives while its relay's heartbeat does, see `platform::mongo::OutboxLeases`), then
//! publishes only its own, so each event goes out once while every replica lives; a dead replica's heartbeat runs
//! out after `OUTBOX_LEASE_MS` and another takes its entries over (then an event may go out twice). The entries
//! this replica writes are written already held by it. (`order-processed` is not in the outbox: the consumer
//! publishes it, see `events::consumer`.)
//!
//! In the normal case the relay neither reads the outbox nor writes to it: a request hands it the order it has just
//! stored ([`RelayInbox`]), and the lifecycle consumer, which receives the published `new-order`, deletes the entry
//! when it records the order processed. The relay deletes an entry itself when that has not happened
//! `OUTBOX_ACKNOWLEDGE_AFTER_MS` after publishing it (the consumer lags or is stopped), and it reads the outbox
//! (the source of truth) at start, with each claim (at most one a second), after a failure, when idle for
//! `OUTBOX_POLL_INTERVAL_MS`, and when more orders were stored than the inbox holds. A backlog (after an outage, a
//! restart, a dead replica's claims) is read a page at a time and paced by the consumer, so that its entries too
//! leave the outbox with their `processed` transition.
use std::{
    collections::{HashMap, HashSet, VecDeque},
    sync::{Arc, Mutex, PoisonError},
    time::Duration,
};

use futures::future::join_all;
use platform::{
    kafka::ReplaceableProducer,
    mongo::{Handed, OutboxHandover, OutboxPage, RoundSchedule},
    shutdown::StopSignal,
};
use rdkafka::{error::KafkaError, producer::Producer as _};

use crate::{
    backoff::Backoff,
    events::kafka::{self, TopicSetup},
    metrics::Metrics,
    store::{OrderStore, OutboxEvent, PendingOutbox, Published, StoreError},
};

/// Entries read per round. A read costs the engine every entry its index range gives whatever its limit (SecantusDB
/// decodes and matches them all before it sorts and cuts), so a long backlog drains faster in fewer, larger rounds;
/// but a round's entries are all held in memory. Measured with 5,000 orders waiting: 200 per round drained 184
/// orders/s with the order-service's peak at 27 MB, 500 drained 226/s at 29 MB, 1,000 drained 242-254/s at 32-35 MB.
/// The acknowledgements go in chunks (`OrderStore::acknowledge_published`).
const BATCH: usize = 500;
/// Events handed to the producer at once, whatever a round read: what waits in librdkafka's queues stays bounded.
const PUBLISH_WINDOW: usize = 200;
/// The most stored orders the inbox keeps for the relay; past this, the relay reads the outbox instead.
const INBOX_LIMIT: usize = 4 * BATCH;
/// The most published events whose acknowledgement waits; past this, the oldest are acknowledged at once.
const AWAITING_LIMIT: usize = 10_000;
/// How many published events a backlog's drain lets wait for their `processed` transition before it reads the next
/// page: two pages keep the consumer busy, and the relay stays close enough ahead of it that the transitions, not
/// the relay, take the events out of the outbox (one write per order instead of two).
const PACING_WINDOW: usize = 2 * BATCH;
/// How long a paced drain waits without the consumer taking any of its events out before it reads on regardless:
/// what remains is what this replica's consumer does not process (another replica's partitions) or cannot now.
const PACING_QUIET: Duration = Duration::from_secs(1);

/// How long an outbox entry may wait for its order before the relay sets it aside: the order is written right after
/// its entry, so one still missing this long after was never stored (a crash, or a write that failed).
const ABANDONED_AFTER: Duration = Duration::from_secs(30);
/// How often the relay looks for set-aside entries whose order was stored after all (a write held up longer than
/// [`ABANDONED_AFTER`]): they are published late rather than lost.
pub const REVIVE_INTERVAL: Duration = Duration::from_secs(300);

/// What the rest of this replica tells its relay: the orders a request has just stored, with their events (so
/// the relay publishes them without reading the outbox), and the orders whose `processed` transition took their
/// `new-order` event out of the outbox (so the relay writes no acknowledgement for it). Losing any of it costs
/// time, never an event: the outbox stays the source of truth.
pub struct RelayInbox {
    handover: OutboxHandover<PendingOutbox>,
    cleared: Mutex<Vec<String>>,
    /// Wakes a drain that waits for the consumer ([`OutboxRelay::pace`]).
    cleared_wake: tokio::sync::Notify,
}

impl Default for RelayInbox {
    fn default() -> Self {
        Self { handover: OutboxHandover::new(INBOX_LIMIT), cleared: Mutex::default(), cleared_wake: Default::default() }
    }
}

impl RelayInbox {
    /// `order` and its events are durable, held by this replica's lease: publish them.
    pub fn stored(&self, order: PendingOutbox) {
        self.handover.stored(order);
    }

    /// These orders' `processed` transitions took their published `new-order` events out of the outbox.
    pub fn cleared(&self, order_ids: impl IntoIterator<Item = String>) {
        self.cleared.lock().unwrap_or_else(PoisonError::into_inner).extend(order_ids);
        self.cleared_wake.notify_one();
    }

    /// Events were written outside the inbox: the relay reads the outbox at its next round.
    pub fn read_outbox(&self) {
        self.handover.read_outbox();
    }

    fn take_cleared(&self) -> Vec<String> {
        std::mem::take(&mut *self.cleared.lock().unwrap_or_else(PoisonError::into_inner))
    }
}

/// The events this relay published whose orders it has not seen leave the outbox yet, oldest first: each until the
/// consumer reports its order cleared or `after` passes (`OUTBOX_ACKNOWLEDGE_AFTER_MS`: the consumer normally gets
/// there within tens of milliseconds, and within seconds through a backlog; it is kept under half the lease, so no
/// other replica takes the event over meanwhile). Remembering them also keeps the inbox's copy of a just-stored
/// order that a read got to first from being published again.
pub struct AwaitingAcknowledgement {
    after: Duration,
    /// By order id.
    events: HashMap<String, Published>,
    /// Order ids in the order they were published (ids removed since are skipped when they come up).
    by_age: VecDeque<(tokio::time::Instant, String)>,
}

impl AwaitingAcknowledgement {
    pub fn new(after: Duration) -> Self {
        Self { after, events: HashMap::new(), by_age: VecDeque::new() }
    }

    fn published(&mut self, published: Published) {
        let order_id = published.order_id.clone();
        self.by_age.push_back((tokio::time::Instant::now(), order_id.clone()));
        self.events.insert(order_id, published);
    }

    fn contains(&self, order_id: &str) -> bool {
        self.events.contains_key(order_id)
    }

    fn len(&self) -> usize {
        self.events.len()
    }

    fn cleared(&mut self, order_id: &str) {
        self.events.remove(order_id);
    }

    /// When the oldest one is due, if any is remembered.
    fn next_due(&self) -> Option<tokio::time::Instant> {
        self.by_age.front().map(|(at, _)| *at + self.after)
    }

    /// Forgets the ones published `after` ago or more, and the oldest beyond [`AWAITING_LIMIT`], and returns them:
    /// the relay acknowledges them itself.
    fn take_due(&mut self) -> Vec<Published> {
        let now = tokio::time::Instant::now();
        let mut due = Vec::new();
        while let Some((at, order_id)) = self.by_age.front() {
            let overdue = now.duration_since(*at) >= self.after;
            if !overdue && self.events.len() <= AWAITING_LIMIT && self.events.contains_key(order_id) {
                break;
            }
            if let Some(published) = self.events.remove(order_id) {
                due.push(published);
            }
            self.by_age.pop_front();
        }
        due
    }

    /// Forgets every one, and returns them.
    fn take_all(&mut self) -> Vec<Published> {
        self.by_age.clear();
        self.events.drain().map(|(_, published)| published).collect()
    }
}

/// What a publication got the broker to acknowledge, and the error that stopped it, if one did.
struct PublishOutcome {
    done: Vec<Published>,
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
    /// Published events, until their order leaves the outbox or `OUTBOX_ACKNOWLEDGE_AFTER_MS` passes.
    pub awaiting: AwaitingAcknowledgement,
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
            let idle = tokio::time::sleep(self.poll_interval);
            let acknowledgements_due = self.awaiting.next_due();
            tokio::select! {
                () = self.inbox.handover.handed() => {}
                () = idle => read = true,
                () = sleep_until(acknowledgements_due) => {}
                _ = shutdown.stopped() => break,
            }
        }
        // Whatever was handed to the producer gets its chance to reach the broker before exit
        // (flushing blocks, so it runs off the executor).
        let producer = self.producer.current();
        let _ = tokio::task::spawn_blocking(move || producer.flush(Duration::from_secs(5))).await;
        // Published events are not published again by the next run.
        let published = self.awaiting.take_all();
        if let Err(error) = self.acknowledge(&published).await {
            tracing::debug!(%error, "published events left in the outbox");
        }
        // What this replica held but did not publish is free for the others at once.
        if let Err(error) = self.store.release_leases(&self.owner).await {
            tracing::debug!(%error, "outbox leases left to run out");
        }
        tracing::info!("outbox relay stopped");
    }

    /// Publishes what the inbox holds, reads the outbox when `read` asks for it or a claim is due, and acknowledges
    /// the events whose `processed` transition has not taken them out of the outbox in time.
    async fn round(&mut self, read: bool, shutdown: &mut StopSignal) -> Result<(), RoundError> {
        let Handed { stored, read_outbox } = self.inbox.handover.take();
        let stored: Vec<PendingOutbox> =
            stored.into_iter().filter(|order| !self.awaiting.contains(&order.id)).collect();
        let claim = self.claims.due();
        let PublishOutcome { done, error } = self.publish(&stored).await;
        for published in done {
            self.awaiting.published(published);
        }
        if let Some(error) = error {
            return Err(error.into());
        }
        if read || read_outbox || claim {
            self.drain(claim, shutdown).await?;
        }
        Ok(self.settle().await?)
    }

    /// Forgets the events the consumer took out of the outbox, and acknowledges those whose transition has not come
    /// in time.
    async fn settle(&mut self) -> Result<(), StoreError> {
        for order_id in self.inbox.take_cleared() {
            self.awaiting.cleared(&order_id);
        }
        let due = self.awaiting.take_due();
        if let Err(error) = self.acknowledge(&due).await {
            // Published all the same: remembered again, so that a read does not publish them a second time.
            for published in due {
                self.awaiting.published(published);
            }
            return Err(error);
        }
        Ok(())
    }

    /// Waits until fewer than [`PACING_WINDOW`] published events wait for their transition, or until the consumer
    /// has taken none of them out for [`PACING_QUIET`]: it is stopped or stalled, or the waiting events are those of
    /// another replica's partitions, whose transitions this relay does not hear of. Those are acknowledged
    /// `OUTBOX_ACKNOWLEDGE_AFTER_MS` after publishing, as ever. A stop ends the wait at once.
    async fn pace(&mut self, shutdown: &mut StopSignal) -> Result<(), StoreError> {
        loop {
            self.settle().await?;
            if self.awaiting.len() < PACING_WINDOW {
                return Ok(());
            }
            tokio::select! {
                () = self.inbox.cleared_wake.notified() => {}
                () = sleep_until(self.awaiting.next_due()) => {}
                () = tokio::time::sleep(PACING_QUIET) => return Ok(()),
                () = shutdown.stopped() => return Ok(()),
            }
        }
    }

    /// Publishes these entries' events, a window at a time; the entries whose every event the broker acknowledged,
    /// and the first failure.
    async fn publish(&self, orders: &[PendingOutbox]) -> PublishOutcome {
        let events: Vec<&OutboxEvent> = orders.iter().flat_map(|order| order.outbox.iter()).collect();
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
        let done = orders
            .iter()
            .filter(|order| order.outbox.iter().all(|event| sent.contains(event.event_id.as_str())))
            .filter_map(|order| order.outbox.first().map(|event| Published::of(order, event)))
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

    /// Reads the outbox (claiming first when `claim`) and publishes what it holds that this relay has not published
    /// yet, a page at a time, oldest first. Its events are left to their `processed` transitions, as the inbox's
    /// are. A full page is a backlog (after an outage, a restart, a dead replica's claims): the next page is read
    /// from where that one ended, once the consumer has caught up ([`Self::pace`]). A short page is all there is:
    /// under load, new orders keep arriving, and the inbox is what hands them over. (An order stored while a page
    /// was read may sort before that page's end: the next drain, which starts at the oldest, finds it.)
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
            let orders = if claim {
                self.revive_when_due().await?;
                self.store.claim_outbox(&self.owner, self.lease, page).await
            } else {
                self.store.held_outbox(&self.owner, page).await
            }?;
            claim = self.claims.due();
            let backlog = orders.len() == BATCH;
            after = orders.last().map(|order| order.id.clone());
            // Published already, and waiting for their `processed` transition to take them out.
            let orders: Vec<PendingOutbox> =
                orders.into_iter().filter(|order| !self.awaiting.contains(&order.id)).collect();
            // An entry is written before its order: published once the order is stored, set aside if it never is.
            let orders = self.store.with_stored_order(orders, ABANDONED_AFTER).await?;
            let PublishOutcome { done, error } = self.publish(&orders).await;
            for published in done {
                self.awaiting.published(published);
            }
            if let Some(error) = error {
                return Err(error.into());
            }
            if !backlog {
                return Ok(());
            }
            self.pace(shutdown).await?;
            if shutdown.is_stopped() {
                return Ok(());
            }
        }
    }

    /// The relay's own acknowledgement of these events, counted.
    async fn acknowledge(&self, published: &[Published]) -> Result<(), StoreError> {
        if published.is_empty() {
            return Ok(());
        }
        self.store.acknowledge_published(published).await?;
        self.metrics.outbox_acknowledged.with_label_values(&["relay"]).inc_by(published.len() as u64);
        Ok(())
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

/// Until `at`, or forever when there is nothing to wait for.
async fn sleep_until(at: Option<tokio::time::Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const AFTER: Duration = Duration::from_secs(2);

    fn published(order_id: &str) -> Published {
        Published { order_id: order_id.to_owned(), event_id: format!("event-of-{order_id}") }
    }

    #[tokio::test(start_paused = true)]
    async fn an_event_whose_order_was_cleared_is_never_acknowledged_by_the_relay() {
        let mut awaiting = AwaitingAcknowledgement::new(AFTER);
        awaiting.published(published("o1"));
        awaiting.published(published("o2"));
        awaiting.cleared("o1");
        tokio::time::advance(AFTER).await;
        assert_eq!(awaiting.take_due(), vec![published("o2")]);
        assert!(!awaiting.contains("o1") && !awaiting.contains("o2"));
        assert_eq!(awaiting.next_due(), None);
    }

    #[tokio::test(start_paused = true)]
    async fn an_event_is_acknowledged_only_once_its_grace_has_passed() {
        let mut awaiting = AwaitingAcknowledgement::new(AFTER);
        awaiting.published(published("o1"));
        tokio::time::advance(AFTER / 2).await;
        awaiting.published(published("o2"));
        assert!(awaiting.take_due().is_empty());
        tokio::time::advance(AFTER / 2).await;
        assert_eq!(awaiting.take_due(), vec![published("o1")]);
        assert!(awaiting.contains("o2"), "o2 still has half its grace");
        assert_eq!(awaiting.take_all(), vec![published("o2")]);
    }

    #[tokio::test(start_paused = true)]
    async fn past_the_limit_the_oldest_events_are_acknowledged_at_once() {
        let mut awaiting = AwaitingAcknowledgement::new(AFTER);
        for i in 0..AWAITING_LIMIT + 2 {
            awaiting.published(published(&format!("o{i}")));
        }
        assert_eq!(awaiting.take_due(), vec![published("o0"), published("o1")]);
        assert!(awaiting.contains("o2"));
    }

    #[test]
    fn the_inbox_hands_over_stored_orders_and_asks_for_a_read_past_its_limit() {
        let inbox = RelayInbox::default();
        for i in 0..=INBOX_LIMIT {
            inbox.stored(PendingOutbox { id: format!("o{i}"), outbox: Vec::new() });
        }
        inbox.cleared(["o0".to_owned()]);
        let news = inbox.handover.take();
        assert_eq!(news.stored.len(), INBOX_LIMIT);
        assert!(news.read_outbox, "the order past the limit is found by reading the outbox");
        assert_eq!(inbox.take_cleared(), vec!["o0".to_owned()]);
        let news = inbox.handover.take();
        assert!(news.stored.is_empty() && !news.read_outbox && inbox.take_cleared().is_empty());
    }
}
