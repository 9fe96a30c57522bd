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
//! Publishing deletes the entry. The outbox is a collection of its own because the engine's cost of a write grows
//! with the indexes of the document written: acknowledging an event in the payment's own document rewrote all four
//! of its index entries, two of them unique, where deleting an entry touches one (measured on the Python SecantusDB:
//! 1.3 ms of engine time per payment for the insert and its acknowledgement, 0.65-0.7 ms for the two inserts and
//! the delete).
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

/// An event waiting in the outbox (`payment_outbox`), under its payment's id.
#[serde_with::skip_serializing_none]
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PendingEvent {
    #[serde(rename = "_id")]
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
    /// True while the event waits; false once the relay set it aside as abandoned (its payment was never stored).
    #[serde(default = "waiting")]
    pub outbox_pending: bool,
}

fn waiting() -> bool {
    true
}

/// A payment to store, and its event (a successful payment's) to publish.
#[derive(Debug, Clone)]
pub struct NewPayment {
    pub payment: PaymentDocument,
    pub event: Option<PendingEvent>,
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

/// What an event moved from a payment document of an earlier version needs.
fn pending_event_fields() -> bson::Document {
    doc! { "orderId": 1, "outboxEvent": 1, "requestId": 1, "traceparent": 1, "tracestate": 1 }
}

/// The index versions before the outbox collection had on `payments.outboxPending`; while it exists, some payments
/// may still hold their event in their own document.
const EMBEDDED_OUTBOX_INDEX: &str = "outbox_pending";
/// How many events one pass moves out of payment documents of an earlier version.
const MOVE_BATCH: i64 = 500;

#[derive(Clone)]
pub struct PaymentStore {
    database: Database,
    payments: Collection<PaymentDocument>,
    outbox: Collection<PendingEvent>,
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
    /// still pending become outbox entries (moving one twice makes one entry), then the index goes, and with it the
    /// cost it put on every payment written.
    async fn move_embedded_events(&self) -> Result<(), StoreError> {
        if !self.payments.list_index_names().await?.iter().any(|name| name == EMBEDDED_OUTBOX_INDEX) {
            return Ok(());
        }
        let payments = self.payments.clone_with_type::<PendingEvent>();
        loop {
            let cursor = payments
                .find(doc! { "outboxPending": true })
                .projection(pending_event_fields())
                .limit(MOVE_BATCH)
                .await?;
            let mut events: Vec<PendingEvent> = cursor.try_collect().await?;
            if events.is_empty() {
                break;
            }
            for event in &mut events {
                // No `leaseOwner`: any replica's relay claims it.
                event.outbox_pending = true;
            }
            // An event moved already (by another replica, or by a pass cut short) is moved all the same.
            platform::mongo::insert_many_unless_present(&self.outbox, &events).await?;
            let ids: Vec<&str> = events.iter().map(|event| event.payment_id.as_str()).collect();
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
    /// first, in one unordered insert: a payment is stored only once its event is in the outbox, so no crash
    /// loses an event, and the relay publishes an event only once its payment exists. Then the payments, in one
    /// unordered insert (a duplicate stops no other payment), with the client's durable write concern. A unique
    /// index makes a concurrent duplicate fail with [`StoreError::Duplicate`], for that payment only, and its event
    /// is deleted at once.
    pub async fn insert_batch(&self, batch: &[NewPayment]) -> Vec<Result<(), StoreError>> {
        if !self.indexes_ready() {
            return vec![Err(StoreError::NotReady); batch.len()];
        }
        let mut outcomes: Vec<Option<Result<(), StoreError>>> = vec![None; batch.len()];
        let events: Vec<PendingEvent> = batch.iter().filter_map(|new| new.event.clone()).collect();
        if !events.is_empty() {
            let written = self.leases().insert_held(&events, self.lease.as_ref()).await;
            let mut written =
                platform::mongo::insert_many_outcomes(events.len(), written, StoreError::Duplicate).into_iter();
            for (outcome, new) in outcomes.iter_mut().zip(batch) {
                if new.event.is_some()
                    && let Some(Err(error)) = written.next()
                {
                    *outcome = Some(Err(error));
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
        // A payment refused as a duplicate is certainly not stored: its event goes now rather than wait for the relay.
        let refused: Vec<&str> = batch
            .iter()
            .zip(&outcomes)
            .filter(|(new, outcome)| new.event.is_some() && matches!(outcome, Some(Err(StoreError::Duplicate))))
            .map(|(new, _)| new.payment.id.as_str())
            .collect();
        if !refused.is_empty()
            && let Err(error) = self.leases().remove(&refused).await
        {
            tracing::warn!(%error, "events of refused payments left for the relay to set aside");
        }
        outcomes.into_iter().map(|outcome| outcome.unwrap_or(Err(StoreError::NotReady))).collect()
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

    /// The events of `read` whose payment is stored, in their order; those whose payment is still missing
    /// `abandoned_after` after they were written are set aside ([`OutboxLeases::keep_stored`]).
    pub async fn with_stored_payment(
        &self,
        read: Vec<PendingEvent>,
        abandoned_after: Duration,
    ) -> Result<Vec<PendingEvent>, StoreError> {
        let leases = self.leases();
        Ok(leases.keep_stored(read, |event| event.payment_id.as_str(), &self.payments, abandoned_after).await?)
    }

    /// Claims for `owner` (its heartbeat lasting `lease` from now) every waiting event that no live replica holds,
    /// then returns the oldest `limit` of the events it holds.
    pub async fn claim_pending_events(
        &self,
        owner: &str,
        lease: Duration,
        limit: usize,
    ) -> Result<Vec<PendingEvent>, StoreError> {
        Ok(self.leases().claim_oldest(owner, lease, OutboxPage::first(limit), None).await?)
    }

    /// The oldest `limit` waiting events `owner` holds, without claiming anything (what this replica wrote is held
    /// by it already).
    pub async fn held_pending_events(&self, owner: &str, limit: usize) -> Result<Vec<PendingEvent>, StoreError> {
        Ok(self.leases().oldest_claimed(owner, OutboxPage::first(limit), None).await?)
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

    /// How many events wait in the outbox.
    pub async fn count_pending(&self) -> Result<u64, StoreError> {
        Ok(self.outbox.count_documents(doc! { "outboxPending": true }).await?)
    }

    /// Deletes the events Kafka acknowledged from the outbox ([`OutboxLeases::remove`]).
    pub async fn mark_published(&self, payment_ids: &[&str]) -> Result<(), StoreError> {
        Ok(self.leases().remove(payment_ids).await?)
    }

    /// Sets these events aside: their payments were never stored (a crash between the two writes), so they are
    /// not to be published and no relay reads them again. They are kept, in case a payment write still under way
    /// lands after all ([`Self::revive_set_aside`]).
    pub async fn set_aside(&self, payment_ids: &[&str]) -> Result<(), StoreError> {
        Ok(self.leases().set_aside(payment_ids).await?)
    }

    /// Puts back into the outbox every event set aside whose payment is stored by now; how many.
    pub async fn revive_set_aside(&self) -> Result<usize, StoreError> {
        Ok(self.leases().revive_stored(&self.payments).await?)
    }
}
