//! The order-service's collections. An order is written once and never updated:
//! - `orders`: the order as placed (owner, product, price, total, idempotency key), with its `new-order` event and
//!   the replica that wrote it: the order is its own outbox entry, and a crash that leaves the event unpublished is
//!   repaired from that replica's checkpoint (`events::relay`);
//! - `order_outbox`: what earlier versions wrote instead, the `new-order` events of a group-commit batch of orders in
//!   one entry (`_id` a UUID v7 made for the batch) before the orders, until published; still read and published
//!   (the events of orders never stored are set aside). Older entries hold one order's event under the order's id;
//! - `order_transitions`: one record per transition (`<orderId>/processed`, `<orderId>/paid`), inserted, never
//!   changed; an order's status is the last transition recorded. The `_id` makes each transition happen once.
//!
//! Why: on the default engine (the Python SecantusDB) an update costs 4-6 times an insert, every write of a
//! document pays for each of its indexes (~0.15-0.2 ms each), and every document inserted or deleted pays its own
//! way whatever its size. An order updated at each transition, with its event and three secondary indexes in the
//! same document, cost the engine 1.9-2.8 ms of CPU over its life; an outbox entry per order cost 0.13 ms to insert
//! and 0.16-0.21 ms to delete, one per batch of 20 orders 0.03 ms per order for both measured alone, but under the
//! services a fifth of the order engine's work (see the benchmark's notes): hence no entry at all. Orders that earlier
//! versions updated in place (`status`, `paymentId`, `processedBy`, an
//! embedded outbox) are read as they are: transitions recorded since add to them.
use std::{
    collections::{HashMap, HashSet},
    sync::{Arc, Mutex, PoisonError},
    time::Duration,
};

use futures::TryStreamExt as _;
use mongodb::{
    Collection, Database, IndexModel,
    bson::{self, Bson, Document, doc},
    options::IndexOptions,
};
use platform::{
    mongo::{Lease, OutboxLeases, OutboxPage},
    recent::Recent,
};
use serde::{Deserialize, Serialize};

use crate::{
    domain::{Money, OrderStatus, OrderView, Quantity, rfc3339},
    product_client::ProductSnapshot,
};

/// An event to publish: waiting in the outbox (`new-order`), or announcing a processed order.
#[serde_with::skip_serializing_none]
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct OutboxEvent {
    pub event_id: String,
    pub topic: String,
    /// The order id: one order's events share a partition and keep their order.
    pub key: String,
    /// The envelope, serialised once when the event is written.
    pub payload: String,
    pub request_id: Option<String>,
    /// The W3C trace context of the work that queued the event: its publication and consumption
    /// join that trace.
    pub traceparent: Option<String>,
    /// The vendor part of that trace context (W3C `tracestate`), carried along unchanged.
    pub tracestate: Option<String>,
}

/// What an order keeps of its `new-order` event beyond the order itself (`events::envelope::stored_new_order_event`
/// makes the event again from the two): a few dozen bytes instead of the whole envelope, whose size every write and
/// read of the order would pay.
#[serde_with::skip_serializing_none]
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct NewOrderStamp {
    pub event_id: String,
    pub request_id: Option<String>,
    /// The vendor part of the trace context (the order's `traceparent` is the rest).
    pub tracestate: Option<String>,
}

/// An outbox entry as the relay reads it: the `new-order` events of a batch of orders (of one order, in entries of
/// earlier versions), each keyed by its order's id.
#[derive(Debug, Clone, Deserialize)]
pub struct PendingOutbox {
    #[serde(rename = "_id")]
    pub id: String,
    #[serde(default)]
    pub outbox: Vec<OutboxEvent>,
}

/// What the relay may do with an outbox entry it read ([`OrderStore::with_stored_orders`]): publish the events of
/// `ready` (only those whose order is stored), then take the entry out, or set `abandoned` aside when some orders
/// were never stored.
pub type Readable = platform::mongo::Readable<PendingOutbox>;

impl platform::mongo::BatchEntry for PendingOutbox {
    type Event = OutboxEvent;

    fn id(&self) -> &str {
        &self.id
    }

    fn events(&self) -> &[OutboxEvent] {
        &self.outbox
    }

    fn events_mut(&mut self) -> &mut Vec<OutboxEvent> {
        &mut self.outbox
    }

    fn record_id(event: &OutboxEvent) -> &str {
        &event.key
    }
}

impl PendingOutbox {
    /// The projection that reads only these fields.
    fn fields() -> Document {
        doc! { "outbox": 1 }
    }

    fn id(&self) -> &str {
        &self.id
    }

    /// The orders its events announce.
    fn order_ids(&self) -> Vec<&str> {
        self.outbox.iter().map(|event| event.key.as_str()).collect()
    }
}

/// An outbox entry as written: pending until published, when it is deleted.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct OutboxEntry {
    #[serde(rename = "_id")]
    id: String,
    outbox: Vec<OutboxEvent>,
    outbox_pending: bool,
}

/// How long an outbox entry's events may wait for their orders before the relay sets them aside: the orders are
/// written right after their entry, so one still missing this long after was never stored (a crash, or a write
/// that failed).
pub const ABANDONED_AFTER: Duration = Duration::from_secs(30);

/// A batch of new orders as [`OrderStore::insert_batch`] stored it: one outcome per order, in order, and the events
/// of the orders stored, when every order's fate is known (stored, or refused as a duplicate): the relay publishes
/// them. After a failure that leaves it unknown whether some orders were stored, there are none: the relay reads
/// the orders.
#[derive(Debug)]
pub struct StoredBatch {
    pub outcomes: Vec<Result<(), StoreError>>,
    pub events: Option<Vec<OutboxEvent>>,
}

#[serde_with::skip_serializing_none]
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct OrderDocument {
    #[serde(rename = "_id")]
    pub id: String,
    pub user_id: String,
    pub product_id: String,
    pub product_name: String,
    pub quantity: i32,
    pub unit_price_cents: i64,
    pub total_cents: i64,
    /// As written: `pending` (earlier versions updated it in place). The store's reads give the order's status,
    /// its transitions applied ([`OrderStore::find`]).
    pub status: OrderStatus,
    /// `<userId>:<Idempotency-Key>`; unique (sparse) so a retried POST cannot create a second order.
    pub idempotency_scope: Option<String>,
    /// What the keyed request asked for, so a reused key with another body is refused.
    pub request_fingerprint: Option<String>,
    /// The payment that paid it, from its `paid` transition.
    pub payment_id: Option<String>,
    /// The consumer batch that made the order processed (see [`OrderStore::apply_transitions`]), from its
    /// `processed` transition; none before then.
    pub processed_by: Option<String>,
    /// The trace context of the request that created the order: its payment links to it.
    pub traceparent: Option<String>,
    /// What the order keeps of its `new-order` event, the rest of which is the order itself: the order is its own
    /// outbox entry (see `events::relay`). None in orders of earlier versions, whose events went to `order_outbox`.
    pub new_order_event: Option<NewOrderStamp>,
    /// The replica whose relay publishes that event (its `REPLICA_ID`).
    pub written_by: Option<String>,
    pub created_at: bson::DateTime,
    /// When it was created or last changed status.
    pub updated_at: bson::DateTime,
}

impl OrderDocument {
    /// A new `pending` order. `keyed` is the idempotency scope and request fingerprint, when keyed.
    pub fn new_pending(
        user_id: &str,
        product: &ProductSnapshot,
        quantity: Quantity,
        total: Money,
        keyed: Option<(String, String)>,
        traceparent: Option<String>,
    ) -> Self {
        let now = bson::DateTime::now();
        let (idempotency_scope, request_fingerprint) = keyed.unzip();
        Self {
            id: uuid::Uuid::now_v7().to_string(),
            user_id: user_id.to_owned(),
            product_id: product.id.clone(),
            product_name: product.name.clone(),
            quantity: i32::try_from(quantity.get()).unwrap_or(i32::MAX),
            unit_price_cents: product.unit_price.cents(),
            total_cents: total.cents(),
            status: OrderStatus::Pending,
            idempotency_scope,
            request_fingerprint,
            payment_id: None,
            processed_by: None,
            traceparent,
            new_order_event: None,
            written_by: None,
            created_at: now,
            updated_at: now,
        }
    }

    pub fn view(&self) -> OrderView {
        OrderView {
            id: self.id.clone(),
            user_id: self.user_id.clone(),
            product_id: self.product_id.clone(),
            product_name: self.product_name.clone(),
            quantity: u32::try_from(self.quantity).unwrap_or(0),
            unit_price: Money::from_cents(self.unit_price_cents).as_decimal(),
            total: Money::from_cents(self.total_cents).as_decimal(),
            status: self.status,
            created_at: rfc3339(self.created_at),
            updated_at: rfc3339(self.updated_at),
        }
    }

    /// This order with `record` applied (a record never takes an order back: one paid in place by an earlier
    /// version stays paid).
    fn apply(&mut self, record: &TransitionRecord) {
        match record.kind() {
            Some(Transition::Processed) => {
                self.processed_by = record.batch.clone().or_else(|| self.processed_by.take());
                if self.status == OrderStatus::Pending {
                    self.status = OrderStatus::Processed;
                    self.updated_at = record.at;
                }
            }
            Some(Transition::Paid) => {
                self.status = OrderStatus::Paid;
                self.payment_id = record.payment_id.clone();
                self.updated_at = record.at;
            }
            None => {}
        }
    }
}

/// A new order and its `new-order` event, stored together ([`OrderStore::insert_batch`]).
#[derive(Debug, Clone)]
pub struct OrderWithEvent {
    pub order: OrderDocument,
    pub event: OutboxEvent,
}

/// What an idempotency key's lookup needs of the order holding it.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct KeyHolder {
    #[serde(rename = "_id")]
    pub id: String,
    pub idempotency_scope: Option<String>,
    pub request_fingerprint: Option<String>,
    pub created_at: bson::DateTime,
}

impl KeyHolder {
    fn fields() -> Document {
        doc! { "idempotencyScope": 1, "requestFingerprint": 1, "createdAt": 1 }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Transition {
    Processed,
    Paid,
}

impl Transition {
    fn suffix(self) -> &'static str {
        match self {
            Self::Processed => "/processed",
            Self::Paid => "/paid",
        }
    }

    /// The `_id` of `order_id`'s record of this transition.
    fn record_id(self, order_id: &str) -> String {
        format!("{order_id}{}", self.suffix())
    }
}

/// One transition of one order, in `order_transitions`.
#[serde_with::skip_serializing_none]
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct TransitionRecord {
    /// `<orderId>/processed` or `<orderId>/paid`: unique, so each happens once.
    #[serde(rename = "_id")]
    id: String,
    at: bson::DateTime,
    /// `processed`: the consumer batch that made it.
    batch: Option<String>,
    /// `paid`: the payment, and the event that reported it.
    payment_id: Option<String>,
    paid_by_event_id: Option<String>,
}

impl TransitionRecord {
    fn kind(&self) -> Option<Transition> {
        [Transition::Processed, Transition::Paid].into_iter().find(|kind| self.id.ends_with(kind.suffix()))
    }

    fn order_id(&self) -> Option<&str> {
        self.kind().and_then(|kind| self.id.strip_suffix(kind.suffix()))
    }
}

#[derive(Debug, Clone, thiserror::Error)]
pub enum StoreError {
    #[error("database unavailable: {0}")]
    Unavailable(mongodb::error::Error),
    #[error("duplicate idempotency key")]
    DuplicateIdempotencyKey,
    /// A record with this `_id` exists: the transition happened already, or an outbox entry is there.
    #[error("already recorded")]
    AlreadyRecorded,
    #[error("database error: {0}")]
    Other(mongodb::error::Error),
}

impl From<mongodb::error::Error> for StoreError {
    fn from(error: mongodb::error::Error) -> Self {
        if platform::mongo::is_unavailable(&error) { Self::Unavailable(error) } else { Self::Other(error) }
    }
}

/// One transition of a batch the consumer applies together. Each is recorded at most once per order; the consumer
/// asks for one only from the state it read (pending for `processed`, processed for `paid`): an order's status only
/// moves forward, so that state still holds, or the record is there already.
#[derive(Debug, Clone)]
pub enum TransitionWrite {
    /// pending → processed, on receiving its `new-order` event. Received means published: the order's outbox entry
    /// goes in the same call. Its `order-processed` event is not queued here: the consumer publishes it once the
    /// record is durable, before it stores the `new-order` offset, and then records the batch as announced
    /// (see `events::consumer`).
    Processed { order_id: String },
    /// processed → paid, by a payment the consumer checked against the order (owner, total, currency).
    Paid { order_id: String, payment_id: String, event_id: String },
}

/// How long a consumer batch's announcement is remembered: Kafka's default retention, after which a
/// `new-order` message can no longer be delivered again.
pub const ANNOUNCED_BATCHES_KEPT: Duration = Duration::from_secs(7 * 24 * 3600);

/// The indexes of the outbox that earlier versions kept in the orders themselves: on `outboxPending` alone, with
/// `leaseUntil` (leases kept in the orders), and by owner.
const EMBEDDED_OUTBOX_INDEXES: [&str; 3] = ["outbox_pending", "outbox_pending_by_lease", OutboxLeases::INDEX];

/// How many orders a read of a replica's orders ([`OrderStore::written_by`]) takes from the engine at a time.
pub const UNPUBLISHED_READ: u32 = 100;

/// The field of a relay's record (in `outbox_relays`) that holds its checkpoint ([`OrderStore::checkpoint`]).
const CHECKPOINT: &str = "publishedBefore";

/// How many orders one pass moves out of orders of an earlier version.
const MOVE_BATCH: i64 = 500;

/// How far back from the newest end of a page each read of it reaches ([`OrderStore::list`]); the read after the
/// last has no lower bound. SecantusDB reads every order of a range before it sorts and cuts it, so a page read in
/// one command cost as much as all the user's orders (an admin's, all orders): 30 ms for the newest 100 of 1,000,
/// 570 ms of 20,000 (measured alone). Ids are UUID v7, so a range of ids is a range of time, and a page of a busy
/// list comes from its first range, of a quiet one from a few cheap ones.
const LIST_WINDOWS: [Duration; 3] = [Duration::from_secs(60), Duration::from_secs(3_600), Duration::from_secs(86_400)];

/// When the UUID `id` was made ([`platform::mongo::made_at`]), in milliseconds since the epoch.
pub fn made_millis(id: &str) -> Option<i64> {
    let since_epoch = platform::mongo::made_at(id)?.duration_since(std::time::UNIX_EPOCH).ok()?;
    i64::try_from(since_epoch.as_millis()).ok()
}

/// The smallest id (as text) of every UUID v7 made at `millis` or later.
fn id_floor(millis: i64) -> String {
    let millis = u128::try_from(millis.max(0)).unwrap_or(0) & ((1 << 48) - 1);
    uuid::Uuid::from_u128(millis << 80).to_string()
}

/// How many of the orders it stored last a store remembers ([`RecentOrders`]): at 1,300 orders/s, a second and a
/// half's worth, while the lifecycle consumer follows the writer by tens of milliseconds; ~2.5 MB (4,096 added 5 MB
/// to the order-service's peak RSS).
const RECENT_ORDERS: usize = 2_048;

/// The orders a store wrote lately, as written, until the lifecycle consumer reads them for their `new-order` events.
/// An order is never updated (its transitions are records beside it), so the document written is the document a read
/// would return: the consumer takes it from here instead of reading it again, a read that cost the Python engine
/// 0.07-0.085 ms per order returned, a fifth of an order's work (measured alone). Taken for its `new-order` event, its
/// transitions are not read either ([`OrderStore::find_for_events`]); taken otherwise, they are.
/// Orders written by other replicas, or forgotten (the oldest past [`RECENT_ORDERS`], or taken once), are read.
struct RecentOrders {
    stored: Mutex<Recent<OrderDocument>>,
}

impl Default for RecentOrders {
    fn default() -> Self {
        Self { stored: Mutex::new(Recent::new(RECENT_ORDERS)) }
    }
}

impl RecentOrders {
    fn remember<'a>(&self, orders: impl IntoIterator<Item = &'a OrderDocument>) {
        let mut recent = self.stored.lock().unwrap_or_else(PoisonError::into_inner);
        for order in orders {
            recent.add(&order.id, order.clone());
        }
    }

    /// The remembered orders among `ids` (forgotten now), and the ids of the others.
    fn take(&self, ids: &[String]) -> (Vec<OrderDocument>, Vec<String>) {
        let mut recent = self.stored.lock().unwrap_or_else(PoisonError::into_inner);
        let mut found = Vec::new();
        let mut missing = Vec::new();
        for id in ids {
            match recent.take(id) {
                Some(order) => found.push(order),
                None => missing.push(id.clone()),
            }
        }
        (found, missing)
    }
}

#[derive(Clone)]
pub struct OrderStore {
    database: Database,
    orders: Collection<OrderDocument>,
    outbox: Collection<PendingOutbox>,
    transitions: Collection<TransitionRecord>,
    /// The consumer batches whose `order-processed` events were all published: `{_id: batch, at}`.
    announced: Collection<Document>,
    /// The hold this replica's writes put on the outbox entries they create, if any.
    lease: Option<Lease>,
    /// What this store's writes stored lately, shared by its clones (the writer's and the consumer's).
    recent: Arc<RecentOrders>,
}

impl OrderStore {
    pub fn new(database: Database) -> Self {
        let orders = database.collection("orders");
        let outbox = database.collection("order_outbox");
        let transitions = database.collection("order_transitions");
        let announced = database.collection("announced_batches");
        Self { database, orders, outbox, transitions, announced, lease: None, recent: Arc::default() }
    }

    /// A store whose new orders' `new-order` events are written held by `lease`: that replica's relay publishes
    /// them without claiming them first.
    pub fn holding_new_events(mut self, lease: Lease) -> Self {
        self.lease = Some(lease);
        self
    }

    /// Stores a batch of new orders, each with its `new-order` event in its own document and the name of the replica
    /// that wrote it, in one unordered insert (a duplicate idempotency key stops no other order), with the client's
    /// durable write concern; one outcome per order, in order. Before a replica's first write, its relay's record is
    /// given a checkpoint no later than the batch's oldest order, so that a replica that dies before its relay beats
    /// is read from there by the replica that takes it over.
    pub async fn insert_batch(&self, batch: &[OrderWithEvent]) -> StoredBatch {
        if batch.is_empty() {
            return StoredBatch { outcomes: Vec::new(), events: Some(Vec::new()) };
        }
        if let Some(lease) = &self.lease
            && !lease.is_beating()
        {
            let oldest = batch.iter().filter_map(|new| made_millis(&new.order.id)).min().unwrap_or(0);
            if let Err(error) = self.start_checkpoint(lease, oldest).await {
                return StoredBatch { outcomes: vec![Err(error); batch.len()], events: None };
            }
        }
        let written_by = self.lease.as_ref().map(|lease| lease.owner.clone());
        let documents: Vec<OrderDocument> = batch
            .iter()
            .map(|new| OrderDocument {
                new_order_event: Some(NewOrderStamp {
                    event_id: new.event.event_id.clone(),
                    request_id: new.event.request_id.clone(),
                    tracestate: new.event.tracestate.clone(),
                }),
                written_by: written_by.clone(),
                ..new.order.clone()
            })
            .collect();
        let inserted = self.orders.insert_many(&documents).ordered(false).await;
        let outcomes =
            platform::mongo::insert_many_outcomes(batch.len(), inserted, StoreError::DuplicateIdempotencyKey);
        let stored: Vec<bool> = outcomes.iter().map(Result::is_ok).collect();
        self.recent.remember(documents.iter().zip(&stored).filter(|(_, stored)| **stored).map(|(order, _)| order));
        let known = outcomes.iter().all(|outcome| matches!(outcome, Ok(()) | Err(StoreError::DuplicateIdempotencyKey)));
        let events = known.then(|| {
            batch.iter().zip(&stored).filter(|(_, stored)| **stored).map(|(new, _)| new.event.clone()).collect()
        });
        StoredBatch { outcomes, events }
    }

    /// The replica's heartbeat, and a checkpoint at `oldest` unless it has an earlier one (what a previous run under
    /// its name left unpublished is read from there at its relay's start).
    async fn start_checkpoint(&self, lease: &Lease, oldest: i64) -> Result<(), StoreError> {
        let alive_until = platform::mongo::lease_end(bson::DateTime::now(), lease.duration);
        // Durable: without it, a crash could leave this replica's orders with no checkpoint to be read from.
        self.relays()
            .update_one(
                doc! { "_id": &lease.owner },
                doc! { "$set": { "aliveUntil": alive_until }, "$min": { CHECKPOINT: oldest } },
            )
            .upsert(true)
            .write_concern(platform::mongo::durable())
            .await?;
        lease.beats();
        Ok(())
    }

    fn relays(&self) -> Collection<Document> {
        self.database.collection(platform::mongo::RELAYS)
    }

    /// `owner`'s checkpoint: every order it made before this time (milliseconds since the epoch) has had its event
    /// published, or was never stored. None: it has written nothing, or what it wrote was read by a replica that took
    /// it over.
    pub async fn checkpoint(&self, owner: &str) -> Result<Option<i64>, StoreError> {
        let relay = self.relays().find_one(doc! { "_id": owner }).projection(doc! { CHECKPOINT: 1 }).await?;
        Ok(relay.and_then(|relay| relay.get_i64(CHECKPOINT).ok()))
    }

    /// Moves `owner`'s checkpoint to `millis` (one small write, with the relay's heartbeat: losing it only makes the
    /// next read after a crash start earlier).
    pub async fn note_checkpoint(&self, owner: &str, millis: i64) -> Result<(), StoreError> {
        self.relays()
            .update_one(doc! { "_id": owner }, doc! { "$set": { CHECKPOINT: millis } })
            .write_concern(platform::mongo::bookkeeping())
            .await?;
        Ok(())
    }

    /// The replicas other than `owner` whose heartbeat stopped and that have a checkpoint: what they wrote since it
    /// is to be read by a live replica.
    pub async fn stopped_with_checkpoint(&self, owner: &str) -> Result<Vec<String>, StoreError> {
        let stopped = doc! {
            "aliveUntil": { "$lte": bson::DateTime::now() },
            "_id": { "$ne": owner },
            CHECKPOINT: { "$exists": true },
        };
        let relays: Vec<Document> =
            self.relays().find(stopped).projection(doc! { "_id": 1 }).await?.try_collect().await?;
        Ok(relays.into_iter().filter_map(|relay| relay.get_str("_id").ok().map(str::to_owned)).collect())
    }

    /// Takes over the stopped replica `stopped` for `lease`: its checkpoint and the hold's end, unless another
    /// replica took it first or it beats again. Until then no other replica takes it.
    pub async fn take_over(&self, stopped: &str, lease: Duration) -> Result<Option<(i64, bson::DateTime)>, StoreError> {
        let now = bson::DateTime::now();
        let until = platform::mongo::lease_end(now, lease);
        let taken = self
            .relays()
            .find_one_and_update(
                doc! { "_id": stopped, "aliveUntil": { "$lte": now }, CHECKPOINT: { "$exists": true } },
                doc! { "$set": { "aliveUntil": until } },
            )
            .write_concern(platform::mongo::durable())
            .await?;
        Ok(taken.and_then(|relay| relay.get_i64(CHECKPOINT).ok()).map(|checkpoint| (checkpoint, until)))
    }

    /// The stopped replica `stopped`, taken over until `until`, has had everything it wrote read: its checkpoint
    /// goes (unless it beat again meanwhile), and its hold ends.
    pub async fn taken_over(&self, stopped: &str, until: bson::DateTime) -> Result<(), StoreError> {
        self.relays()
            .update_one(
                doc! { "_id": stopped, "aliveUntil": until },
                doc! { "$unset": { CHECKPOINT: "" }, "$set": { "aliveUntil": bson::DateTime::from_millis(0) } },
            )
            .write_concern(platform::mongo::bookkeeping())
            .await?;
        Ok(())
    }

    /// The orders `owner` wrote from `from` until `until` (milliseconds since the epoch, by their id's time) that carry
    /// their event, as one read streamed in the driver's batches: a range of ids, which SecantusDB reads by scanning
    /// the collection whatever the range (it serves no range of `_id` from its index), so it is read once, not a page
    /// at a time; real MongoDB reads the range only. [`Self::still_pending`] tells which of them to publish.
    pub async fn written_by(
        &self,
        owner: &str,
        from: i64,
        until: i64,
    ) -> Result<impl futures::Stream<Item = Result<OrderDocument, StoreError>> + use<>, StoreError> {
        let range = doc! { "$gte": id_floor(from), "$lt": id_floor(until) };
        let filter = doc! { "_id": range, "writtenBy": owner, "newOrderEvent": { "$exists": true } };
        let cursor = self.orders.find(filter).batch_size(UNPUBLISHED_READ).await?;
        Ok(futures::TryStreamExt::map_err(cursor, StoreError::from))
    }

    /// Of these orders, those still pending (no `processed` record), in one read of their transitions: their
    /// `new-order` event may not have been published (one published and not yet consumed is published again:
    /// consumers are idempotent).
    pub async fn still_pending(&self, orders: Vec<OrderDocument>) -> Result<Vec<OrderDocument>, StoreError> {
        let orders = self.with_transitions(orders).await?;
        Ok(orders.into_iter().filter(|order| order.status == OrderStatus::Pending).collect())
    }

    /// Stores one new order with its event ([`Self::insert_batch`]).
    pub async fn insert(&self, order: &OrderWithEvent) -> Result<(), StoreError> {
        let mut stored = self.insert_batch(std::slice::from_ref(order)).await;
        stored.outcomes.pop().unwrap_or(Err(StoreError::AlreadyRecorded))
    }

    /// The orders holding these idempotency scopes, by scope, in one query.
    pub async fn find_by_idempotency_scopes(
        &self,
        scopes: &[String],
    ) -> Result<HashMap<String, KeyHolder>, StoreError> {
        let holders = self.orders.clone_with_type::<KeyHolder>();
        let cursor =
            holders.find(doc! { "idempotencyScope": { "$in": scopes } }).projection(KeyHolder::fields()).await?;
        let found: Vec<KeyHolder> = cursor.try_collect().await?;
        Ok(found.into_iter().filter_map(|holder| Some((holder.idempotency_scope.clone()?, holder))).collect())
    }

    /// These orders, by id, their transitions applied: two queries, or one when this store wrote them all lately
    /// ([`RecentOrders`]; those it remembered are forgotten now).
    pub async fn find_many(&self, ids: &[String]) -> Result<HashMap<String, OrderDocument>, StoreError> {
        let (mut orders, missing) = self.recent.take(ids);
        if !missing.is_empty() {
            let cursor = self.orders.find(doc! { "_id": { "$in": &missing } }).await?;
            orders.extend(cursor.try_collect::<Vec<_>>().await?);
        }
        let orders = self.with_transitions(orders).await?;
        Ok(orders.into_iter().map(|order| (order.id.clone(), order)).collect())
    }

    /// The orders a lifecycle batch's events name, by id: `arriving`, named by `new-order` events, and `paying`, by
    /// payments. An arriving order this store wrote lately comes from memory as written, its transitions unread: the
    /// only one it can have is a `processed` recorded by another consumer working the same message at once (a
    /// rebalance; a redelivery finds the order taken already, and a restart finds the memory empty), so an insert of
    /// its `processed` record refused as already there is the consumer's cue to read it. Every other order is read,
    /// its transitions applied. A paying order is always read: a payment is checked against the order's state.
    pub async fn find_for_events(
        &self,
        arriving: &[String],
        paying: &[String],
    ) -> Result<HashMap<String, OrderDocument>, StoreError> {
        let paid_for: HashSet<&str> = paying.iter().map(String::as_str).collect();
        let mut fresh: Vec<String> = arriving.iter().filter(|id| !paid_for.contains(id.as_str())).cloned().collect();
        fresh.sort_unstable();
        fresh.dedup();
        let (remembered, _) = self.recent.take(&fresh);
        let known: HashSet<&str> = remembered.iter().map(|order| order.id.as_str()).collect();
        let mut rest: Vec<String> =
            arriving.iter().chain(paying).filter(|id| !known.contains(id.as_str())).cloned().collect();
        rest.sort_unstable();
        rest.dedup();
        let mut found = if rest.is_empty() { HashMap::new() } else { self.find_many(&rest).await? };
        found.extend(remembered.into_iter().map(|order| (order.id.clone(), order)));
        Ok(found)
    }

    pub async fn find(&self, id: &str) -> Result<Option<OrderDocument>, StoreError> {
        let Some(order) = self.orders.find_one(doc! { "_id": id }).await? else { return Ok(None) };
        Ok(self.with_transitions(vec![order]).await?.pop())
    }

    /// Newest first (ids are UUID v7, so they sort by creation time); `before` is the last id seen. Read one range
    /// of ids at a time ([`LIST_WINDOWS`]), newest first, until the page is full: the ranges follow one another
    /// down from `before`, so together they give exactly the orders below it, in order, whatever their ids.
    pub async fn list(
        &self,
        user_id: Option<&str>,
        before: Option<&str>,
        limit: i64,
    ) -> Result<Vec<OrderDocument>, StoreError> {
        let newest = before.and_then(made_millis).unwrap_or_else(|| bson::DateTime::now().timestamp_millis());
        let mut upper = before.map(str::to_owned);
        let mut page: Vec<OrderDocument> = Vec::new();
        for window in LIST_WINDOWS.map(Some).into_iter().chain([None]) {
            let lower = window.map(|window| id_floor(newest.saturating_sub(window.as_millis() as i64)));
            let mut range = Document::new();
            if let Some(upper) = &upper {
                range.insert("$lt", upper);
            }
            if let Some(lower) = &lower {
                range.insert("$gte", lower);
            }
            let mut filter = Document::new();
            if let Some(user_id) = user_id {
                filter.insert("userId", user_id);
            }
            if !range.is_empty() {
                filter.insert("_id", range);
            }
            let remaining = limit - page.len() as i64;
            let cursor = self.orders.find(filter).sort(doc! { "_id": -1 }).limit(remaining).await?;
            page.extend(cursor.try_collect::<Vec<_>>().await?);
            let Some(lower) = lower else { break };
            if page.len() as i64 >= limit {
                break;
            }
            // The next range ends where this one began (or below `before`, if that is lower: an id that is no UUID v7).
            upper = Some(match upper {
                Some(upper) if upper < lower => upper,
                _ => lower,
            });
        }
        self.with_transitions(page).await
    }

    /// `orders` with their recorded transitions applied, in one query (none for orders paid in place by an earlier
    /// version: nothing follows paid).
    async fn with_transitions(&self, mut orders: Vec<OrderDocument>) -> Result<Vec<OrderDocument>, StoreError> {
        let ids: Vec<String> = orders
            .iter()
            .filter(|order| order.status != OrderStatus::Paid)
            .flat_map(|order| [Transition::Processed.record_id(&order.id), Transition::Paid.record_id(&order.id)])
            .collect();
        if ids.is_empty() {
            return Ok(orders);
        }
        let records: Vec<TransitionRecord> =
            self.transitions.find(doc! { "_id": { "$in": &ids } }).await?.try_collect().await?;
        let mut by_order: HashMap<&str, Vec<&TransitionRecord>> = HashMap::new();
        for record in &records {
            if let Some(order_id) = record.order_id() {
                by_order.entry(order_id).or_default().push(record);
            }
        }
        for order in &mut orders {
            let Some(records) = by_order.get_mut(order.id.as_str()) else { continue };
            // Processed before paid.
            records.sort_by_key(|record| record.kind() == Some(Transition::Paid));
            for record in records.iter() {
                order.apply(record);
            }
        }
        Ok(orders)
    }

    /// What may be done with the outbox entries of `read`, in their order, in one query of their orders: an entry
    /// whose orders are all stored is ready; one with orders still missing waits for them (it is left out) until
    /// [`ABANDONED_AFTER`] after it was made, when the missing orders' events are abandoned and the others ready.
    pub async fn with_stored_orders(&self, read: Vec<PendingOutbox>) -> Result<Vec<Readable>, StoreError> {
        Ok(platform::mongo::with_stored_records(&self.orders, read, ABANDONED_AFTER).await?)
    }

    /// Claims for `owner` (its heartbeat lasting `lease` from now) every outbox entry that no live replica holds,
    /// then returns the page `page` of `owner`'s entries, oldest first.
    pub async fn claim_outbox(
        &self,
        owner: &str,
        lease: Duration,
        page: OutboxPage<'_>,
    ) -> Result<Vec<PendingOutbox>, StoreError> {
        Ok(self.leases().claim_oldest(owner, lease, page, Some(PendingOutbox::fields())).await?)
    }

    /// The page `page` of the outbox entries `owner` holds, oldest first, without claiming anything (what this
    /// replica wrote is held by it already).
    pub async fn held_outbox(&self, owner: &str, page: OutboxPage<'_>) -> Result<Vec<PendingOutbox>, StoreError> {
        Ok(self.leases().oldest_claimed(owner, page, Some(PendingOutbox::fields())).await?)
    }

    /// `owner`'s heartbeat, lasting `lease` from now: its hold on its outbox entries lasts as long (one write,
    /// whatever it holds).
    pub async fn renew_leases(&self, owner: &str, lease: Duration) -> Result<(), StoreError> {
        Ok(self.leases().heartbeat(owner, lease).await?)
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

    /// Sets an outbox entry aside with only `abandoned`, the events whose orders were never stored (a crash
    /// between the two writes, or a write that failed; the entry's other events are published): no relay reads it
    /// again unless one of those orders appears ([`Self::revive_set_aside`]). One update, in this rare case only.
    pub async fn set_aside(&self, entry_id: &str, abandoned: &[OutboxEvent]) -> Result<(), StoreError> {
        Ok(self.leases().set_aside(entry_id, "outbox", abandoned, &[]).await?)
    }

    /// Puts back into the outbox every entry set aside with an order that is stored by now; how many. (Read again,
    /// its events whose orders are still missing are set aside again.)
    pub async fn revive_set_aside(&self) -> Result<usize, StoreError> {
        let (projection, entry_id, order_ids) = (PendingOutbox::fields(), PendingOutbox::id, PendingOutbox::order_ids);
        Ok(self.leases().revive_any_stored(&self.orders, projection, entry_id, order_ids).await?)
    }

    fn leases(&self) -> OutboxLeases {
        OutboxLeases::new(&self.database, &self.outbox)
    }

    /// Records a batch of transitions in one unordered insert, with the durable write concern; for each write, whether this call recorded it (false: it was recorded already, by an earlier delivery or another
    /// consumer, or asked twice in the batch). The `processed` records name `batch`, so that a redelivered
    /// `new-order` can tell whether their announcement got out ([`Self::record_announced`]). A failure fails the
    /// batch, which the caller retries whole: what was recorded is not recorded twice.
    pub async fn apply_transitions(&self, writes: &[TransitionWrite], batch: &str) -> Result<Vec<bool>, StoreError> {
        let now = bson::DateTime::now();
        let mut records = Vec::with_capacity(writes.len());
        let mut positions = Vec::with_capacity(writes.len());
        let mut asked = HashSet::new();
        for (position, write) in writes.iter().enumerate() {
            let record = match write {
                TransitionWrite::Processed { order_id } => TransitionRecord {
                    id: Transition::Processed.record_id(order_id),
                    at: now,
                    batch: Some(batch.to_owned()),
                    payment_id: None,
                    paid_by_event_id: None,
                },
                TransitionWrite::Paid { order_id, payment_id, event_id } => TransitionRecord {
                    id: Transition::Paid.record_id(order_id),
                    at: now,
                    batch: None,
                    payment_id: Some(payment_id.clone()),
                    paid_by_event_id: Some(event_id.clone()),
                },
            };
            if asked.insert(record.id.clone()) {
                records.push(record);
                positions.push(position);
            }
        }
        let mut applied = vec![false; writes.len()];
        if !records.is_empty() {
            let inserted =
                self.transitions.insert_many(&records).ordered(false).write_concern(platform::mongo::durable()).await;
            let outcomes = platform::mongo::insert_many_outcomes(records.len(), inserted, StoreError::AlreadyRecorded);
            for (position, outcome) in positions.into_iter().zip(outcomes) {
                match outcome {
                    Ok(()) => applied[position] = true,
                    Err(StoreError::AlreadyRecorded) => {}
                    Err(error) => return Err(error),
                }
            }
        }
        Ok(applied)
    }

    pub async fn ping(&self) -> Result<(), StoreError> {
        self.database.run_command(doc! { "ping": 1 }).await?;
        Ok(())
    }

    /// Records that every `order-processed` event of the consumer batch `batch` was published: one small
    /// insert per batch, instead of a write per order. Recording it twice is no error.
    pub async fn record_announced(&self, batch: &str) -> Result<(), StoreError> {
        let inserted = self
            .announced
            .insert_one(doc! { "_id": batch, "at": bson::DateTime::now() })
            .write_concern(platform::mongo::bookkeeping())
            .await;
        match inserted {
            Err(error) if platform::mongo::is_duplicate_key(&error) => Ok(()),
            other => Ok(other.map(|_| ())?),
        }
    }

    /// Which of these consumer batches had all their `order-processed` events published, in one query.
    pub async fn announced(&self, batches: &[String]) -> Result<HashSet<String>, StoreError> {
        Ok(platform::mongo::existing_ids(&self.announced, batches).await?)
    }

    /// Creates the indexes, and moves the events that orders of an earlier version kept in their own document into
    /// the outbox.
    pub async fn ensure_indexes(&self) -> Result<(), StoreError> {
        let index = |keys: Document, options: IndexOptions| IndexModel::builder().keys(keys).options(options).build();
        self.orders
            .create_indexes([
                index(
                    doc! { "userId": 1, "_id": -1 },
                    IndexOptions::builder().name("user_newest_first".to_owned()).build(),
                ),
                index(
                    doc! { "idempotencyScope": 1 },
                    IndexOptions::builder().name("idempotency_scope".to_owned()).unique(true).sparse(true).build(),
                ),
            ])
            .await?;
        self.outbox.create_index(OutboxLeases::index()).await?;
        self.move_embedded_outboxes().await?;
        // A batch record matters only while its `new-order` messages can still be delivered again.
        let expiry = IndexOptions::builder()
            .name("expire_with_the_topics".to_owned())
            .expire_after(ANNOUNCED_BATCHES_KEPT)
            .build();
        self.announced.create_index(index(doc! { "at": 1 }, expiry)).await?;
        Ok(())
    }

    /// Earlier versions kept an order's events in the order's document (`outboxPending: true`, indexed): those still
    /// pending become outbox entries (moving one twice makes one entry), then the indexes go, and with them the
    /// cost they put on every order written.
    async fn move_embedded_outboxes(&self) -> Result<(), StoreError> {
        let names = self.orders.list_index_names().await?;
        let embedded: Vec<&str> =
            EMBEDDED_OUTBOX_INDEXES.into_iter().filter(|index| names.iter().any(|name| name == index)).collect();
        if embedded.is_empty() {
            return Ok(());
        }
        let orders = self.orders.clone_with_type::<PendingOutbox>();
        let outbox = self.outbox.clone_with_type::<OutboxEntry>();
        loop {
            let cursor = orders
                .find(doc! { "outboxPending": true })
                .projection(PendingOutbox::fields())
                .limit(MOVE_BATCH)
                .await?;
            let pending: Vec<PendingOutbox> = cursor.try_collect().await?;
            if pending.is_empty() {
                break;
            }
            // No `leaseOwner`: any replica's relay claims them.
            let entries: Vec<OutboxEntry> = pending
                .iter()
                .filter(|order| !order.outbox.is_empty())
                .map(|order| OutboxEntry { id: order.id.clone(), outbox: order.outbox.clone(), outbox_pending: true })
                .collect();
            // An entry moved already (by another replica, or by a pass cut short) is moved all the same.
            platform::mongo::insert_many_unless_present(&outbox, &entries).await?;
            let ids: Vec<&str> = pending.iter().map(|order| order.id.as_str()).collect();
            self.orders
                .update_many(
                    doc! { "_id": { "$in": &ids } },
                    doc! {
                        "$set": { "outboxPending": false, "outbox": [] },
                        "$unset": { "leaseOwner": "", "leaseUntil": "" },
                    },
                )
                .await?;
            tracing::info!(count = ids.len(), "order events of an earlier version moved into the outbox");
        }
        for index in embedded {
            platform::mongo::drop_index_if_present(&self.orders, index).await?;
        }
        Ok(())
    }

    /// Frees an expired idempotency key so the same key can create a new order.
    pub async fn release_idempotency_scope(&self, order_id: &str) -> Result<(), StoreError> {
        self.orders.update_one(doc! { "_id": order_id }, doc! { "$unset": { "idempotencyScope": "" } }).await?;
        Ok(())
    }

    /// How many events wait in the outbox to be published (from the prefix of [`OutboxLeases::index`]): one per
    /// order not yet published (and per order refused as a duplicate whose batch is not yet published).
    pub async fn outbox_backlog(&self) -> Result<u64, StoreError> {
        let pipeline = [
            doc! { "$match": { "outboxPending": true } },
            doc! { "$group": { "_id": null, "events": { "$sum": { "$size": "$outbox" } } } },
        ];
        let counted: Vec<Document> = self.outbox.aggregate(pipeline).await?.try_collect().await?;
        let events = match counted.first().and_then(|total| total.get("events")) {
            Some(Bson::Int32(events)) => i64::from(*events),
            Some(Bson::Int64(events)) => *events,
            _ => 0,
        };
        Ok(u64::try_from(events).unwrap_or(0))
    }

    /// The oldest `limit` outbox entries waiting to be published, whoever holds them.
    pub async fn pending_outbox(&self, limit: i64) -> Result<Vec<PendingOutbox>, StoreError> {
        let cursor = self.outbox.find(doc! { "outboxPending": true }).sort(doc! { "_id": 1 }).limit(limit).await?;
        Ok(cursor.try_collect().await?)
    }

    /// Deletes these outbox entries, whose events the broker acknowledged ([`OutboxLeases::remove`]).
    pub async fn acknowledge_published(&self, entry_ids: &[String]) -> Result<(), StoreError> {
        Ok(self.leases().remove(entry_ids).await?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pending_order() -> OrderDocument {
        let product = ProductSnapshot { id: "1".into(), name: "Smartphone".into(), unit_price: Money::from_cents(100) };
        let quantity = Quantity::parse(&serde_json::json!(1)).expect("a quantity");
        OrderDocument::new_pending("u", &product, quantity, Money::from_cents(100), None, None)
    }

    #[test]
    fn recent_orders_keep_the_newest_up_to_their_bound_and_give_each_once() {
        let recent = RecentOrders::default();
        let orders: Vec<OrderDocument> = (0..=RECENT_ORDERS).map(|_| pending_order()).collect();
        recent.remember(&orders);
        let ids: Vec<String> = [0, 1, RECENT_ORDERS].iter().map(|&n| orders[n].id.clone()).collect();
        let (found, missing) = recent.take(&ids);
        assert_eq!(missing, [ids[0].clone()], "the oldest is forgotten past the bound");
        assert_eq!(found.iter().map(|order| order.id.clone()).collect::<Vec<_>>(), ids[1..]);
        let (found, missing) = recent.take(&ids[1..]);
        assert!(found.is_empty() && missing == ids[1..], "each is given once");
        assert_eq!(recent.stored.lock().unwrap().len(), RECENT_ORDERS - 2);
    }

    #[test]
    fn the_floor_of_a_time_sorts_below_every_uuid_v7_made_then_and_above_those_made_before() {
        let id = uuid::Uuid::now_v7().to_string();
        let made = made_millis(&id).expect("a UUID v7");
        assert!(id_floor(made) <= id);
        assert!(id_floor(made + 1) > id);
        assert_eq!(made_millis(&id_floor(made)), None, "a floor is no UUID v7 itself");
        assert_eq!(made_millis(&uuid::Uuid::new_v4().to_string()), None);
        assert_eq!(made_millis("order-1"), None);
    }
}
