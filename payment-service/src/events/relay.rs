//! The outbox relay: publishes the events waiting in `payment_outbox` whose payment is stored, then deletes their
//! entry (one per group-commit batch of payments, one per payment in entries of earlier versions).
//!
//! An event is written before its payment, so a stored payment always has its event; the relay publishes an event
//! only once it finds its payment, so an event goes out exactly when its payment exists. An entry with a payment still
//! missing waits for it until `ABANDONED_AFTER` after the entry was written (a crash between the two writes); then the
//! events of the stored payments are published and the others set aside in the entry, and put back should their
//! payment appear after all (checked at start and every `REVIVE_INTERVAL`). The relay deletes an entry only after
//! Kafka acknowledged all its events, so nothing is lost when Kafka or this process fails in between. The price is
//! at-least-once delivery (a crash after the acknowledgement republishes the events), which consumers absorb by
//! deduplicating on `eventId`.
//!
//! The relay first makes sure the topic exists, so that it gets the configured partitions rather than broker
//! defaults (checked again after each Kafka error, in case the broker lost its data). The writer hands the relay the
//! entry of each batch once its payments are stored ([`RelayInbox`]), which the relay publishes at once without
//! reading the outbox. It reads the outbox (the source of truth) at start, with each claim (at most one a second), after a
//! failure, when the inbox overflowed, and when idle for 500 ms, to pick up events left by a previous run or
//! another replica. Kafka errors are retried with backoff; a producer that cannot deliver again
//! (fatal, or fenced by the broker) is replaced at once, and one whose rounds keep failing after three. On stop it
//! publishes what is pending, within a bounded time (when Kafka is reachable), and flushes.
//!
//! Replicas share the outbox through leases: the relay claims, in one update, the pending entries no live replica
//! holds (`leaseOwner` = REPLICA_ID; a replica lives while its relay's heartbeat, written at every claim, does: see
//! `platform::mongo::OutboxLeases`), publishes only its own, and deletes every entry whose events the broker
//! acknowledged (one delete per `UPDATE_CHUNK` entries). The entries this replica writes are held by it already, so the
//! relay claims at most once a second and otherwise reads only what it holds. While every replica lives an event
//! goes out once; a crashed replica's heartbeat runs out after OUTBOX_LEASE_MS and another takes its events (then an
//! event may go out twice).
//!
//! Each publication is a producer span, a child of the trace context stored with the event (the `Pay` call's),
//! and its own context goes with the message as the `traceparent` header: the consumer joins the same trace.
//! The relay counts messages produced and failed, and keeps the `outbox_backlog` gauge current.
use std::{
    collections::HashSet,
    sync::{Arc, Mutex, PoisonError},
    time::Duration,
};

use platform::mongo::{CLAIM_INTERVAL, Handed, OutboxHandover, PublishedByReads, RoundSchedule};

use rdkafka::error::KafkaError;
use tracing::Instrument as _;

use super::{
    PAYMENT_PROCESSED,
    producer::{EventProducer, OutgoingEvent},
    topic,
};
use crate::{
    backoff::Backoff,
    config::KafkaConfig,
    metrics::{Metrics, STAGE_PRODUCE},
    shutdown::StopSignal,
    store::{OutboxEntry, PaymentStore, PendingEvent, Readable, StoreError},
    telemetry::{self, TraceContext},
};

const POLL_INTERVAL: Duration = Duration::from_millis(500);
/// Outbox entries read per round. An entry holds a group-commit batch's events (up to `PAYMENT_WRITE_BATCH`), so a
/// round's events stay within a few megabytes.
const ENTRIES_PER_READ: usize = 50;
/// The most stored entries the inbox keeps for the relay; past this, the relay reads the outbox instead.
pub const INBOX_LIMIT: usize = 2 * ENTRIES_PER_READ;
/// How many of the entries it published from a read the relay remembers: the writer hands over a batch's entry just
/// after its payments are stored, so a read may get to the entry first; its handed copy is then not published again.
const READ_REMEMBERED: usize = 4 * ENTRIES_PER_READ;

/// The entries of the batches of payments this replica's writer has just stored, for its relay to publish without
/// reading the outbox.
pub type RelayInbox = OutboxHandover<OutboxEntry>;
/// How long the last publishing pass may take when the service stops; what is left stays for the next start.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(5);
const FLUSH_TIMEOUT: Duration = Duration::from_secs(5);
/// How long after an event was written its payment may still be on its way: the payment is inserted right after
/// the event, so one still missing then was never stored (its call failed, or its process crashed in between).
const ABANDONED_AFTER: Duration = Duration::from_secs(30);
/// How often the relay looks for set-aside events whose payment was stored after all (a write held up longer than
/// `ABANDONED_AFTER`): they are published late rather than lost.
const REVIVE_INTERVAL: Duration = Duration::from_secs(300);

#[derive(Debug, thiserror::Error)]
enum RelayError {
    #[error("reading or updating the outbox: {0}")]
    Store(#[from] StoreError),
    #[error("publishing to Kafka: {0}")]
    Kafka(#[from] KafkaError),
}

pub struct OutboxRelay {
    store: PaymentStore,
    kafka: KafkaConfig,
    producer: EventProducer,
    inbox: Arc<RelayInbox>,
    metrics: Arc<Metrics>,
    lease: Lease,
    claims: Mutex<RoundSchedule>,
    /// When the relay looks for set-aside events to put back.
    revivals: Mutex<RoundSchedule>,
    /// The last [`READ_REMEMBERED`] events published from reads.
    read_published: Mutex<PublishedByReads>,
}

/// Who this relay's outbox claims belong to, and for how long they hold: relays of several replicas
/// each publish only what they hold, so an event goes out once while every replica lives.
pub use platform::mongo::Lease;

impl OutboxRelay {
    /// `inbox` is handed the events of the payments stored by this replica.
    pub fn new(
        store: PaymentStore,
        kafka: KafkaConfig,
        inbox: Arc<RelayInbox>,
        metrics: Arc<Metrics>,
        lease: Lease,
    ) -> Result<Self, KafkaError> {
        let producer = EventProducer::new(&kafka.connection)?;
        metrics.expect_topic(&kafka.payment_processed_topic);
        Ok(Self {
            store,
            kafka,
            producer,
            inbox,
            metrics,
            lease,
            claims: Mutex::new(RoundSchedule::every(CLAIM_INTERVAL)),
            revivals: Mutex::new(RoundSchedule::every(REVIVE_INTERVAL)),
            read_published: Mutex::new(PublishedByReads::new(READ_REMEMBERED)),
        })
    }

    pub async fn run(mut self, mut stop: StopSignal) {
        // What a previous run under this name held is this run's to publish at once.
        if let Err(error) = self.store.hold_leases(&self.lease.owner, self.lease.duration).await {
            tracing::debug!(%error, "outbox leases not started; the first claim beats");
        }
        if self.publish_until_stopped(&mut stop).await {
            self.drain().await;
        }
        self.flush_and_close().await;
    }

    /// The main loop; returns whether Kafka was reachable when the stop came (then a last pass is worthwhile).
    async fn publish_until_stopped(&mut self, stop: &mut StopSignal) -> bool {
        let mut backoff = Backoff::new(Duration::from_millis(100), Duration::from_secs(5));
        let mut topic_ready = false;
        let mut failures = 0;
        // The first round reads what earlier runs left; so does the one after a failure, after an idle wait, and
        // after a full read (a backlog).
        let mut read = true;
        loop {
            // (Re)checked after every Kafka error: a broker that lost its data would otherwise auto-create the
            // topic with its own defaults on the next publish.
            if !topic_ready {
                if !self.ensure_topic(stop).await {
                    return false;
                }
                topic_ready = true;
            }
            let outcome = tokio::select! {
                outcome = self.publish_pending(read) => outcome,
                () = stop.stopped() => return true,
            };
            match outcome {
                Ok(backlog) => {
                    backoff.reset();
                    failures = 0;
                    read = backlog;
                    if !backlog {
                        tokio::select! {
                            () = self.inbox.handed() => {}
                            () = tokio::time::sleep(POLL_INTERVAL) => read = true,
                            () = stop.stopped() => return true,
                        }
                    }
                }
                Err(error) => {
                    read = true;
                    let delay = backoff.next_delay();
                    tracing::warn!(%error, retry_in_ms = delay.as_millis() as u64, "outbox relay cannot publish");
                    if matches!(error, RelayError::Kafka(_)) {
                        topic_ready = false;
                        failures += 1;
                        self.producer.after_failed_rounds(failures);
                    }
                    tokio::select! {
                        () = tokio::time::sleep(delay) => {}
                        () = stop.stopped() => return topic_ready,
                    }
                }
            }
        }
    }

    /// Retries with backoff until the topic exists; false when asked to stop first.
    async fn ensure_topic(&self, stop: &mut StopSignal) -> bool {
        let mut backoff = Backoff::new(Duration::from_millis(100), Duration::from_secs(5));
        let topic = &self.kafka.payment_processed_topic;
        loop {
            let attempt = tokio::select! {
                attempt = topic::ensure_topic(&self.kafka) => attempt,
                () = stop.stopped() => return false,
            };
            match attempt {
                Ok(()) => {
                    tracing::info!(%topic, "Kafka topic ready");
                    return true;
                }
                Err(error) => {
                    let delay = backoff.next_delay();
                    tracing::warn!(%error, %topic, retry_in_ms = delay.as_millis() as u64, "Kafka not ready");
                    // Payments keep arriving while Kafka is away: the backlog shows it.
                    let wait = async {
                        self.count_backlog().await;
                        tokio::time::sleep(delay).await;
                    };
                    tokio::select! {
                        () = wait => {}
                        () = stop.stopped() => return false,
                    }
                }
            }
        }
    }

    /// Publishes the entries handed over since the last round and, when `read` asks for it, a claim is due or the
    /// inbox overflowed, a page of entries read from the outbox, with only the events whose payment is stored;
    /// returns whether the read was a full page (more may wait). Handed entries need no check: their payments are
    /// stored. An entry is deleted once the broker acknowledged all the events it publishes, and set aside with
    /// those whose payment was never stored.
    async fn publish_pending(&self, read: bool) -> Result<bool, RelayError> {
        let Handed { stored, read_outbox } = self.inbox.take();
        let mut batch: Vec<Readable> = {
            let recent = self.read_published.lock().unwrap_or_else(PoisonError::into_inner);
            stored
                .into_iter()
                .filter(|entry| !recent.contains(&entry.id))
                .map(|entry| Readable { ready: entry, abandoned: Vec::new() })
                .collect()
        };
        let handed_count = batch.len();
        let claim = self.claims.lock().unwrap_or_else(PoisonError::into_inner).due();
        let read = read || read_outbox || claim;
        // Entries read, and the events of those not handed over too.
        let (mut read_count, mut read_left) = (0, 0);
        if read {
            if claim {
                self.revive_when_due().await?;
            }
            let found = if claim {
                self.store.claim_pending_events(&self.lease.owner, self.lease.duration, ENTRIES_PER_READ).await?
            } else {
                self.store.held_pending_events(&self.lease.owner, ENTRIES_PER_READ).await?
            };
            read_count = found.len();
            let handed: HashSet<&str> = batch.iter().map(|entry| entry.ready.id.as_str()).collect();
            let found: Vec<OutboxEntry> =
                found.into_iter().filter(|entry| !handed.contains(entry.id.as_str())).collect();
            read_left = found.iter().map(|entry| entry.events.len()).sum::<usize>();
            // Events are written before their payments: published once the payment is stored, set aside if it never is.
            let found = self.store.with_stored_payments(found, ABANDONED_AFTER).await?;
            let mut recent = self.read_published.lock().unwrap_or_else(PoisonError::into_inner);
            for entry in &found {
                recent.add(&entry.ready.id);
            }
            drop(recent);
            batch.extend(found);
        }
        // Sent together so librdkafka can batch them; the idempotent producer keeps their order per partition.
        let events = batch.iter().flat_map(|entry| entry.ready.events.iter());
        let deliveries = futures::future::join_all(events.map(|event| self.publish(event))).await;
        let mut deliveries = deliveries.into_iter();
        let mut first_error = None;
        let (mut delivered, mut set_aside) = (Vec::with_capacity(batch.len()), Vec::new());
        let mut delivered_from_read = 0;
        for (position, entry) in batch.iter().enumerate() {
            let mut all_out = true;
            for delivery in deliveries.by_ref().take(entry.ready.events.len()) {
                if let Err(error) = delivery {
                    all_out = false;
                    first_error.get_or_insert(error);
                }
            }
            if !all_out {
                continue;
            }
            if position >= handed_count {
                delivered_from_read += entry.ready.events.len();
            }
            if entry.abandoned.is_empty() {
                delivered.push(entry.ready.id.as_str());
            } else {
                set_aside.push(entry);
            }
        }
        // One command for every entry whose events the broker acknowledged.
        self.store.mark_published(&delivered).await?;
        for Readable { ready, abandoned } in set_aside {
            let payments: Vec<&str> = abandoned.iter().map(|event| event.payment_id.as_str()).collect();
            tracing::warn!(entry = %ready.id, ?payments, "outbox events whose payment was never stored set aside");
            self.store.set_aside(&ready.id, abandoned).await?;
        }
        if read && read_count < ENTRIES_PER_READ {
            // A short read was the whole outbox: what it left behind is the backlog, no count needed.
            // (Payments stored since then are handed over for another round.)
            self.metrics.set_outbox_backlog(read_left.saturating_sub(delivered_from_read) as u64);
        } else if read {
            self.count_backlog().await;
        }
        if let Some(error) = first_error {
            return Err(error.into());
        }
        if !batch.is_empty() {
            tracing::debug!(entries = batch.len(), "outbox events published");
        }
        Ok(read_count >= ENTRIES_PER_READ)
    }

    /// Puts back the set-aside events whose payment is stored by now, at the first claim and then every
    /// `REVIVE_INTERVAL` (a failed look waits for the next interval).
    async fn revive_when_due(&self) -> Result<(), StoreError> {
        if !self.revivals.lock().unwrap_or_else(PoisonError::into_inner).due() {
            return Ok(());
        }
        let revived = self.store.revive_set_aside().await?;
        if revived > 0 {
            tracing::warn!(count = revived, "set-aside events whose payment was stored after all put back");
        }
        Ok(())
    }

    /// One event, in a producer span continuing the trace stored with it; the span's context goes along as
    /// the message's `traceparent`.
    async fn publish(&self, event: &PendingEvent) -> Result<(), KafkaError> {
        let topic = &self.kafka.payment_processed_topic;
        let span = tracing::info_span!(
            "publish",
            // "publish payment-processed" unless a prefix is configured (the order-service names its own alike).
            otel.name = %format!("publish {topic}"),
            otel.kind = "producer",
            otel.status_code = tracing::field::Empty,
            messaging.system = "kafka",
            messaging.operation.type = "send",
            messaging.destination.name = %topic,
            payment_id = %event.payment_id,
            request_id = event.request_id.as_deref().unwrap_or("-"),
            trace_id = tracing::field::Empty,
        );
        telemetry::continue_stored_trace(&span, &event.trace_context());
        let trace = TraceContext::of(&span);
        let event_id = event.event_id();
        let mut headers = vec![("event-id", event_id.as_str()), ("event-type", PAYMENT_PROCESSED)];
        if let Some(request_id) = &event.request_id {
            headers.push(("x-request-id", request_id));
        }
        headers.extend(trace.headers());
        let delivery = self
            .producer
            .publish(OutgoingEvent { topic, key: &event.order_id, payload: &event.outbox_event, headers: &headers })
            .instrument(span.clone())
            .await;
        match &delivery {
            Ok(()) => self.metrics.message_produced(topic),
            Err(_) => {
                self.metrics.message_failed(topic, STAGE_PRODUCE);
                span.record("otel.status_code", "error");
            }
        }
        delivery
    }

    /// Sets the backlog gauge from a count of the outbox (left as it was when MongoDB does not answer).
    async fn count_backlog(&self) {
        match self.store.count_pending().await {
            Ok(count) => self.metrics.set_outbox_backlog(count),
            Err(error) => tracing::debug!(%error, "cannot count the outbox backlog"),
        }
    }

    async fn drain(&self) {
        match tokio::time::timeout(DRAIN_TIMEOUT, self.publish_pending(true)).await {
            Ok(Ok(_)) => {}
            Ok(Err(error)) => tracing::warn!(%error, "events left in the outbox for the next start"),
            Err(_elapsed) => tracing::warn!("Kafka too slow at shutdown; events left in the outbox for the next start"),
        }
    }

    async fn flush_and_close(self) {
        // What this replica held but did not publish is free for the others at once.
        if let Err(error) = self.store.release_leases(&self.lease.owner).await {
            tracing::debug!(%error, "outbox leases left to run out");
        }
        let producer = self.producer;
        // Flushing and dropping the producer block the thread: keep them off the async workers.
        let flushed = tokio::task::spawn_blocking(move || producer.flush_blocking(FLUSH_TIMEOUT)).await;
        match flushed {
            Ok(Ok(())) => tracing::info!("Kafka producer flushed"),
            Ok(Err(error)) => tracing::warn!(%error, "Kafka producer flush incomplete"),
            Err(error) => tracing::warn!(%error, "Kafka producer flush task failed"),
        }
    }
}
