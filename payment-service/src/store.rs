//! The `payments` collection and its outbox, `payment_outbox`: indexes created at startup, payment documents, and
//! the events waiting to be published.
//!
//! Two unique indexes carry the service's guarantees, also under concurrent calls and across replicas:
//! - `idempotencyScope` (`<userId>:<idempotencyKey>`): one payment per key, so a retried call replays instead
//!   of charging again;
//! - `successOrderId`, sparse (only SUCCESS payments carry the field): at most one successful payment per order,
//!   while declined attempts do not block a later payment.
//!
//! A successful payment's event is written into the outbox before the payment, and the relay publishes an event
//! only once its payment exists: so an event is published exactly when its payment is stored, without a transaction.
//! The events of a group-commit batch share one outbox entry, deleted once they are all published. The outbox is a
//! collection of its own because the engine's cost of a write grows with the indexes of the document written:
//! acknowledging an event in the payment's own document rewrote all four of its index entries, two of them unique,
//! where deleting an entry touches one (measured on the Python SecantusDB: 1.3 ms of engine time per payment for the
//! insert and its acknowledgement, 0.65-0.7 ms for the two inserts and the delete of an entry per payment). And it
//! holds a batch per entry because that engine's cost is per document written or deleted, whatever its size.
use std::{
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::Duration,
};

use futures::TryStreamExt as _;
use mongodb::{
    Collection, Database, IndexModel,
    bson::{self, doc},
    options::IndexOptions,
};
use platform::mongo::{Lease, OutboxLeases, OutboxPage};
use serde::{Deserialize, Serialize};

use crate::{domain::PaymentStatus, telemetry::TraceContext};

#[serde_with::skip_serializing_none]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PaymentDocument {
    /// The payment id, a UUID v7 (time-ordered, so the outbox relays events in creation order).
    #[serde(rename = "_id")]
    pub id: String,
    pub order_id: String,
    pub user_id: String,
    pub amount_cents: i64,
    pub currency: String,
    pub status: PaymentStatus,
    /// Why the payment was declined; empty on success.
    #[serde(default)]
    pub reason: String,
    pub idempotency_scope: String,
    /// Set to the order id on SUCCESS payments only: the sparse unique index on it allows one per order.
    pub success_order_id: Option<String>,
    pub created_at: bson::DateTime,
    /// The `x-request-id` of the call that created the payment, passed on as a Kafka header.
    pub request_id: Option<String>,
    /// The W3C trace context of the call that created the payment (SUCCESS only), so that publishing its event
    /// joins that trace. Absent when tracing was off, and in documents older than the field.
    pub traceparent: Option<String>,
    pub tracestate: Option<String>,
}

/// A successful payment's `payment-processed` event, waiting in the outbox (`payment_outbox`) until it is published.
#[serde_with::skip_serializing_none]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PendingEvent {
    pub payment_id: String,
    pub order_id: String,
    /// The event envelope (JSON) to publish.
    pub outbox_event: String,
    /// The `x-request-id` of the call that created the payment, passed on as a Kafka header.
    #[serde(default)]
    pub request_id: Option<String>,
    /// The W3C trace context of that call, so that publishing the event joins its trace.
    #[serde(default)]
    pub traceparent: Option<String>,
    #[serde(default)]
    pub tracestate: Option<String>,
}

/// An outbox entry: the events of the successful payments of one group-commit batch, under an id of its own (a
/// UUID v7, so entries sort by age). It is deleted once the broker has all its events. One entry per batch instead
/// of one per payment: on the default engine every document inserted or deleted costs its own work, whatever its
/// size (measured: see DOCUMENTATION, Group commit).
#[derive(Debug, Clone, PartialEq)]
pub struct OutboxEntry {
    pub id: String,
    pub events: Vec<PendingEvent>,
}

impl OutboxEntry {
    /// The payments its events announce.
    pub fn payment_ids(&self) -> impl Iterator<Item = &str> {
        self.events.iter().map(|event| event.payment_id.as_str())
    }
}

/// An outbox entry as written: waiting until published, when it is deleted.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct WrittenEntry<'a> {
    #[serde(rename = "_id")]
    id: &'a str,
    events: &'a [PendingEvent],
    outbox_pending: bool,
}

/// An outbox entry as read: a batch's (`events`), or one event under its payment's id, its fields at the top, as
/// earlier versions wrote them (and as events moved out of payment documents still are: moving one twice then
/// makes one entry).
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
struct StoredEntry {
    #[serde(rename = "_id")]
    id: String,
    #[serde(default)]
    events: Vec<PendingEvent>,
    #[serde(flatten)]
    single: Option<SingleEvent>,
}

/// The fields of an entry that holds one event under its payment's id.
#[serde_with::skip_serializing_none]
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct SingleEvent {
    order_id: String,
    outbox_event: String,
    #[serde(default)]
    request_id: Option<String>,
    #[serde(default)]
    traceparent: Option<String>,
    #[serde(default)]
    tracestate: Option<String>,
}

impl SingleEvent {
    const FIELDS: &[&str] = &["orderId", "outboxEvent", "requestId", "traceparent", "tracestate"];
}

impl StoredEntry {
    /// The projection that reads only its fields.
    fn fields() -> bson::Document {
        let mut fields = doc! { "events": 1 };
        for field in SingleEvent::FIELDS {
            fields.insert(*field, 1);
        }
        fields
    }

    fn id(&self) -> &str {
        &self.id
    }

    fn payment_ids(&self) -> Vec<&str> {
        match &self.single {
            Some(_) => vec![self.id.as_str()],
            None => self.events.iter().map(|event| event.payment_id.as_str()).collect(),
        }
    }

    fn into_entry(self) -> OutboxEntry {
        let Self { id, mut events, single } = self;
        if let Some(SingleEvent { order_id, outbox_event, request_id, traceparent, tracestate }) = single {
            events.push(PendingEvent {
                payment_id: id.clone(),
                order_id,
                outbox_event,
                request_id,
                traceparent,
                tracestate,
            });
        }
        OutboxEntry { id, events }
    }
}

/// What the relay may do with an outbox entry it read ([`PaymentStore::with_stored_payments`]): publish the events
/// of `ready` (those whose payment is stored), then take the entry out, or set `abandoned` aside.
pub type Readable = platform::mongo::Readable<OutboxEntry>;

impl platform::mongo::BatchEntry for OutboxEntry {
    type Event = PendingEvent;

    fn id(&self) -> &str {
        &self.id
    }

    fn events(&self) -> &[PendingEvent] {
        &self.events
    }

    fn events_mut(&mut self) -> &mut Vec<PendingEvent> {
        &mut self.events
    }

    fn record_id(event: &PendingEvent) -> &str {
        &event.payment_id
    }
}

/// A payment to store, and its event (a successful payment's) to publish.
#[derive(Debug, Clone)]
pub struct NewPayment {
    pub payment: PaymentDocument,
    pub event: Option<PendingEvent>,
}

/// A batch as [`PaymentStore::insert_batch`] stored it: one outcome per payment, in order, and the outbox entry of
/// the payments stored, when every payment's fate is known (stored, or refused by a unique index) and one of them
/// has an event. After a failure that leaves it unknown whether some payments were stored there is none: the
/// relay reads the entry, and publishes the events whose payment it finds.
#[derive(Debug)]
pub struct StoredBatch {
    pub outcomes: Vec<Result<(), StoreError>>,
    pub entry: Option<OutboxEntry>,
}

impl PendingEvent {
    /// The envelope's `eventId`, which consumers deduplicate on and the `event-id` header repeats.
    pub fn event_id(&self) -> String {
        #[derive(Deserialize)]
        #[serde(rename_all = "camelCase")]
        struct Id {
            event_id: String,
        }
        serde_json::from_str::<Id>(&self.outbox_event).map(|id| id.event_id).unwrap_or_default()
    }

    /// The trace context stored with the event (empty for events stored while tracing was off).
    pub fn trace_context(&self) -> TraceContext {
        TraceContext { traceparent: self.traceparent.clone(), tracestate: self.tracestate.clone() }
    }
}

#[derive(Debug, Clone, thiserror::Error)]
pub enum StoreError {
    /// The indexes do not exist yet, so uniqueness is not guaranteed: writes must wait.
    #[error("indexes not created yet")]
    NotReady,
    #[error("database unavailable: {0}")]
    Unavailable(mongodb::error::Error),
    /// A unique index rejected the write.
    #[error("duplicate key")]
    Duplicate,
    #[error("database error: {0}")]
    Other(mongodb::error::Error),
}

impl StoreError {
    /// Whether retrying later may help (→ UNAVAILABLE) rather than the call being broken (→ INTERNAL).
    pub fn is_transient(&self) -> bool {
        matches!(self, Self::NotReady | Self::Unavailable(_))
    }
}

impl From<mongodb::error::Error> for StoreError {
    fn from(error: mongodb::error::Error) -> Self {
        if platform::mongo::is_unavailable(&error) { Self::Unavailable(error) } else { Self::Other(error) }
    }
}

/// The index versions before the outbox collection had on `payments.outboxPending`; while it exists, some payments
/// may still hold their event in their own document.
const EMBEDDED_OUTBOX_INDEX: &str = "outbox_pending";
/// How many events one pass moves out of payment documents of an earlier version.
const MOVE_BATCH: i64 = 500;

/// An event moved out of a payment document of an earlier version: an entry of one event under its payment's id.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct MovedEntry {
    #[serde(rename = "_id")]
    id: String,
    #[serde(flatten)]
    event: SingleEvent,
    outbox_pending: bool,
}

#[derive(Clone)]
pub struct PaymentStore {
    database: Database,
    payments: Collection<PaymentDocument>,
    outbox: Collection<StoredEntry>,
    indexes_ready: Arc<AtomicBool>,
    /// The hold this replica's writes put on the events they create, if any.
    lease: Option<Lease>,
}

impl PaymentStore {
    pub fn new(database: Database) -> Self {
        let payments = database.collection("payments");
        let outbox = database.collection("payment_outbox");
        Self { database, payments, outbox, indexes_ready: Arc::new(AtomicBool::new(false)), lease: None }
    }

    /// A store whose new payments' events are written held by `lease`: that replica's relay publishes them
    /// without claiming them first.
    pub fn holding_new_events(mut self, lease: Lease) -> Self {
        self.lease = Some(lease);
        self
    }

    /// True once [`Self::ensure_indexes`] has succeeded.
    pub fn indexes_ready(&self) -> bool {
        self.indexes_ready.load(Ordering::Acquire)
    }

    /// Creates the indexes and moves the events that payments stored by an earlier version kept in their own
    /// document into the outbox; writes wait until both are done.
    pub async fn ensure_indexes(&self) -> Result<(), StoreError> {
        let index =
            |keys: bson::Document, options: IndexOptions| IndexModel::builder().keys(keys).options(options).build();
        let named = |name: &str| IndexOptions::builder().name(name.to_owned());
        self.payments
            .create_indexes([
                index(doc! { "idempotencyScope": 1 }, named("idempotency_scope_unique").unique(true).build()),
                index(doc! { "successOrderId": 1 }, named("one_success_per_order").unique(true).sparse(true).build()),
            ])
            .await?;
        self.move_embedded_events().await?;
        self.indexes_ready.store(true, Ordering::Release);
        Ok(())
    }

    /// Earlier versions kept a payment's event in the payment's document (`outboxPending: true`, indexed): those
    /// still pending become outbox entries of one event under the payment's id (moving one twice makes one entry),
    /// then the index goes, and with it the cost it put on every payment written.
    async fn move_embedded_events(&self) -> Result<(), StoreError> {
        if !self.payments.list_index_names().await?.iter().any(|name| name == EMBEDDED_OUTBOX_INDEX) {
            return Ok(());
        }
        let payments = self.payments.clone_with_type::<StoredEntry>();
        loop {
            let cursor = payments
                .find(doc! { "outboxPending": true })
                .projection(StoredEntry::fields())
                .limit(MOVE_BATCH)
                .await?;
            let events: Vec<StoredEntry> = cursor.try_collect().await?;
            if events.is_empty() {
                break;
            }
            let ids: Vec<String> = events.iter().map(|event| event.id.clone()).collect();
            // No `leaseOwner`: any replica's relay claims them.
            let moved: Vec<MovedEntry> = events
                .into_iter()
                .filter_map(|StoredEntry { id, single, .. }| {
                    single.map(|event| MovedEntry { id, event, outbox_pending: true })
                })
                .collect();
            // An event moved already (by another replica, or by a pass cut short) is moved all the same.
            platform::mongo::insert_many_unless_present(&self.outbox.clone_with_type(), &moved).await?;
            self.payments
                .update_many(
                    doc! { "_id": { "$in": &ids } },
                    doc! { "$set": { "outboxPending": false }, "$unset": { "leaseOwner": "", "leaseUntil": "" } },
                )
                .await?;
            tracing::info!(count = ids.len(), "payment events of an earlier version moved into the outbox");
        }
        Ok(platform::mongo::drop_index_if_present(&self.payments, EMBEDDED_OUTBOX_INDEX).await?)
    }

    /// Stores a batch of payments, each with its event, if any; one outcome per payment, in order. The events go
    /// first, together in one outbox entry: a payment is stored only once its event is in the outbox, so no crash
    /// loses an event, and the relay publishes an event only once its payment exists. Then the payments, in one
    /// unordered insert (a duplicate stops no other payment), with the client's durable write concern. A unique
    /// index makes a concurrent duplicate fail with [`StoreError::Duplicate`], for that payment only, and its event
    /// is taken out of the entry at once (one more write, only then).
    pub async fn insert_batch(&self, batch: &[NewPayment]) -> StoredBatch {
        if !self.indexes_ready() {
            return StoredBatch { outcomes: vec![Err(StoreError::NotReady); batch.len()], entry: None };
        }
        let mut outcomes: Vec<Option<Result<(), StoreError>>> = vec![None; batch.len()];
        let events: Vec<PendingEvent> = batch.iter().filter_map(|new| new.event.clone()).collect();
        let entry = OutboxEntry { id: uuid::Uuid::now_v7().to_string(), events };
        if !entry.events.is_empty() {
            let written = WrittenEntry { id: &entry.id, events: &entry.events, outbox_pending: true };
            if let Err(error) = self.leases().insert_held(&[written], self.lease.as_ref()).await {
                let error = StoreError::from(error);
                for (outcome, new) in outcomes.iter_mut().zip(batch) {
                    if new.event.is_some() {
                        *outcome = Some(Err(error.clone()));
                    }
                }
            }
        }
        let stored: Vec<(usize, &PaymentDocument)> = batch
            .iter()
            .enumerate()
            .filter(|(position, _)| outcomes[*position].is_none())
            .map(|(position, new)| (position, &new.payment))
            .collect();
        if !stored.is_empty() {
            let inserted = self.payments.insert_many(stored.iter().map(|(_, payment)| *payment)).ordered(false).await;
            let inserted = platform::mongo::insert_many_outcomes(stored.len(), inserted, StoreError::Duplicate);
            for ((position, _), outcome) in stored.iter().zip(inserted) {
                outcomes[*position] = Some(outcome);
            }
        }
        let outcomes: Vec<Result<(), StoreError>> =
            outcomes.into_iter().map(|outcome| outcome.unwrap_or(Err(StoreError::NotReady))).collect();
        let entry = self.keep_stored_events(entry, batch, &outcomes).await;
        StoredBatch { outcomes, entry }
    }

    /// The batch's entry with the events of the payments stored, once every payment's fate is known: a payment
    /// refused by a unique index is certainly not stored, so its event is taken out of the entry now rather than
    /// wait for the relay to set it aside (the entry goes when none is left). None when the entry was not written,
    /// holds nothing, or some payment's fate is unknown.
    async fn keep_stored_events(
        &self,
        mut entry: OutboxEntry,
        batch: &[NewPayment],
        outcomes: &[Result<(), StoreError>],
    ) -> Option<OutboxEntry> {
        // The outcomes of the payments whose events the entry holds, in the entry's order.
        let fates: Vec<&Result<(), StoreError>> =
            batch.iter().zip(outcomes).filter(|(new, _)| new.event.is_some()).map(|(_, outcome)| outcome).collect();
        let known = |outcome: &&Result<(), StoreError>| matches!(outcome, Ok(()) | Err(StoreError::Duplicate));
        if entry.events.is_empty() || !fates.iter().all(known) {
            return None;
        }
        let count = entry.events.len();
        let mut fates = fates.into_iter();
        entry.events.retain(|_| fates.next().is_some_and(Result::is_ok));
        if entry.events.len() == count {
            return Some(entry);
        }
        let taken_out = if entry.events.is_empty() {
            self.leases().remove(&[entry.id.as_str()]).await
        } else {
            self.keep_only(&entry).await
        };
        if let Err(error) = taken_out {
            tracing::warn!(%error, "events of refused payments left for the relay to set aside");
        }
        Some(entry).filter(|entry| !entry.events.is_empty())
    }

    /// Writes `entry`'s events as its only ones, as bookkeeping: if the write is lost, the relay sets aside the
    /// events it dropped (their payments were refused) once they are old enough.
    async fn keep_only(&self, entry: &OutboxEntry) -> Result<(), mongodb::error::Error> {
        let events = bson::to_bson(&entry.events)?;
        self.outbox
            .update_one(doc! { "_id": &entry.id, "outboxPending": true }, doc! { "$set": { "events": events } })
            .write_concern(platform::mongo::bookkeeping())
            .await
            .map(|_| ())
    }

    pub async fn find_by_id(&self, payment_id: &str) -> Result<Option<PaymentDocument>, StoreError> {
        Ok(self.payments.find_one(doc! { "_id": payment_id }).await?)
    }

    /// The payments stored under any of these idempotency scopes, in one command.
    pub async fn find_by_idempotency_scopes(&self, scopes: &[&str]) -> Result<Vec<PaymentDocument>, StoreError> {
        self.find_many(doc! { "idempotencyScope": { "$in": scopes } }, scopes.len()).await
    }

    /// The successful payments of any of these orders, in one command.
    pub async fn find_successes_for_orders(&self, order_ids: &[&str]) -> Result<Vec<PaymentDocument>, StoreError> {
        self.find_many(doc! { "successOrderId": { "$in": order_ids } }, order_ids.len()).await
    }

    async fn find_many(&self, filter: bson::Document, keys: usize) -> Result<Vec<PaymentDocument>, StoreError> {
        if keys == 0 {
            return Ok(Vec::new());
        }
        let cursor = self.payments.find(filter).await?;
        Ok(cursor.try_collect().await?)
    }

    /// What may be done with the outbox entries of `read`, in their order ([`platform::mongo::with_stored_records`]):
    /// an entry with payments still missing waits for them until `abandoned_after` after it was written, when their
    /// events are abandoned and the others ready.
    pub async fn with_stored_payments(
        &self,
        read: Vec<OutboxEntry>,
        abandoned_after: Duration,
    ) -> Result<Vec<Readable>, StoreError> {
        Ok(platform::mongo::with_stored_records(&self.payments, read, abandoned_after).await?)
    }

    /// Claims for `owner` (its heartbeat lasting `lease` from now) every waiting entry that no live replica holds,
    /// then returns the oldest `limit` of the entries it holds.
    pub async fn claim_pending_events(
        &self,
        owner: &str,
        lease: Duration,
        limit: usize,
    ) -> Result<Vec<OutboxEntry>, StoreError> {
        let page = OutboxPage::first(limit);
        let read: Vec<StoredEntry> =
            self.leases().claim_oldest(owner, lease, page, Some(StoredEntry::fields())).await?;
        Ok(read.into_iter().map(StoredEntry::into_entry).collect())
    }

    /// The oldest `limit` waiting entries `owner` holds, without claiming anything (what this replica wrote is held
    /// by it already).
    pub async fn held_pending_events(&self, owner: &str, limit: usize) -> Result<Vec<OutboxEntry>, StoreError> {
        let page = OutboxPage::first(limit);
        let read: Vec<StoredEntry> = self.leases().oldest_claimed(owner, page, Some(StoredEntry::fields())).await?;
        Ok(read.into_iter().map(StoredEntry::into_entry).collect())
    }

    /// Starts `owner`'s hold at its relay's start ([`OutboxLeases::start`]): what a previous run under this name left
    /// is its own again.
    pub async fn hold_leases(&self, owner: &str, lease: Duration) -> Result<(), StoreError> {
        Ok(self.leases().start(owner, lease).await?)
    }

    /// Ends `owner`'s hold at shutdown, so that the other replicas take what it did not publish at once.
    pub async fn release_leases(&self, owner: &str) -> Result<(), StoreError> {
        Ok(self.leases().release(owner).await?)
    }

    fn leases(&self) -> OutboxLeases {
        OutboxLeases::new(&self.database, &self.outbox)
    }

    /// How many events wait in the outbox: those of its waiting entries (an entry of an earlier version holds one).
    pub async fn count_pending(&self) -> Result<u64, StoreError> {
        let pipeline = [
            doc! { "$match": { "outboxPending": true } },
            doc! { "$group": { "_id": null, "events": { "$sum": { "$size": { "$ifNull": ["$events", [1]] } } } } },
        ];
        let counted: Vec<bson::Document> = self.outbox.aggregate(pipeline).await?.try_collect().await?;
        let events = match counted.first().and_then(|total| total.get("events")) {
            Some(bson::Bson::Int32(events)) => i64::from(*events),
            Some(bson::Bson::Int64(events)) => *events,
            _ => 0,
        };
        Ok(u64::try_from(events).unwrap_or(0))
    }

    /// Deletes the entries whose events Kafka acknowledged from the outbox ([`OutboxLeases::remove`]).
    pub async fn mark_published(&self, entry_ids: &[&str]) -> Result<(), StoreError> {
        Ok(self.leases().remove(entry_ids).await?)
    }

    /// Sets an entry aside with only `abandoned`, the events whose payments were never stored (a crash between the
    /// two writes; its other events are published): no relay reads it again unless one of those payments appears
    /// ([`Self::revive_set_aside`]). One update, in this rare case only.
    pub async fn set_aside(&self, entry_id: &str, abandoned: &[PendingEvent]) -> Result<(), StoreError> {
        // An entry of one event, of an earlier version, then holds it in `events` like any other.
        Ok(self.leases().set_aside(entry_id, "events", abandoned, SingleEvent::FIELDS).await?)
    }

    /// Puts back into the outbox every entry set aside with a payment that is stored by now; how many. (Read again,
    /// its events whose payments are still missing are set aside again.)
    pub async fn revive_set_aside(&self) -> Result<usize, StoreError> {
        let (fields, entry_id, payment_ids) = (StoredEntry::fields(), StoredEntry::id, StoredEntry::payment_ids);
        Ok(self.leases().revive_any_stored(&self.payments, fields, entry_id, payment_ids).await?)
    }
}
