//! The `payments` collection: indexes created at startup, payment documents and their outbox fields.
//!
//! Two unique indexes carry the service's guarantees, also under concurrent calls and across replicas:
//! - `idempotencyScope` (`<userId>:<idempotencyKey>`): one payment per key, so a retried call replays instead
//!   of charging again;
//! - `successOrderId`, sparse (only SUCCESS payments carry the field): at most one successful payment per order,
//!   while declined attempts do not block a later payment.
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
use platform::mongo::{Lease, OutboxLeases, UPDATE_CHUNK};
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
    /// The event envelope (JSON) to publish, written in the same insert as the payment (transactional outbox).
    pub outbox_event: Option<String>,
    /// True until the event has been acknowledged by Kafka.
    #[serde(default)]
    pub outbox_pending: bool,
    /// Until when a relay's claim on the event holds; the epoch when none does. Always present, so that a claim
    /// selects on it next to `outboxPending` (indexed) rather than with an `$or`, which SecantusDB answers by
    /// scanning the whole collection.
    #[serde(default = "unleased")]
    pub lease_until: bson::DateTime,
}

pub use platform::mongo::unleased;

/// An event waiting in the outbox.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PendingEvent {
    #[serde(rename = "_id")]
    pub payment_id: String,
    pub order_id: String,
    pub outbox_event: String,
    #[serde(default)]
    pub request_id: Option<String>,
    #[serde(default)]
    pub traceparent: Option<String>,
    #[serde(default)]
    pub tracestate: Option<String>,
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

/// What the relay reads of a payment with an event to publish.
fn pending_event_fields() -> bson::Document {
    doc! { "orderId": 1, "outboxEvent": 1, "requestId": 1, "traceparent": 1, "tracestate": 1 }
}

#[derive(Clone)]
pub struct PaymentStore {
    payments: Collection<PaymentDocument>,
    indexes_ready: Arc<AtomicBool>,
    /// The hold this replica's writes put on the events they create, if any.
    lease: Option<Lease>,
}

impl PaymentStore {
    pub fn new(database: Database) -> Self {
        let payments = database.collection("payments");
        Self { payments, indexes_ready: Arc::new(AtomicBool::new(false)), lease: None }
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

    pub async fn ensure_indexes(&self) -> Result<(), StoreError> {
        let index =
            |keys: bson::Document, options: IndexOptions| IndexModel::builder().keys(keys).options(options).build();
        let named = |name: &str| IndexOptions::builder().name(name.to_owned());
        self.payments
            .create_indexes([
                index(doc! { "idempotencyScope": 1 }, named("idempotency_scope_unique").unique(true).build()),
                index(doc! { "successOrderId": 1 }, named("one_success_per_order").unique(true).sparse(true).build()),
                index(doc! { "outboxPending": 1 }, named("outbox_pending").build()),
            ])
            .await?;
        self.indexes_ready.store(true, Ordering::Release);
        Ok(())
    }

    /// Inserts a batch of payments in one command (unordered: a duplicate stops no other payment), with the
    /// client's durable write concern; one outcome per payment, in order. A unique index makes a concurrent
    /// duplicate fail with [`StoreError::Duplicate`], for that payment only.
    pub async fn insert_batch(&self, payments: &[PaymentDocument]) -> Vec<Result<(), StoreError>> {
        if !self.indexes_ready() {
            return vec![Err(StoreError::NotReady); payments.len()];
        }
        let result = platform::mongo::insert_many_held(&self.payments, payments, self.lease.as_ref(), |payment| {
            payment.outbox_pending
        })
        .await;
        platform::mongo::insert_many_outcomes(payments.len(), result, StoreError::Duplicate)
    }

    /// Inserts a payment; a unique index makes a concurrent duplicate fail with [`StoreError::Duplicate`].
    pub async fn insert(&self, payment: &PaymentDocument) -> Result<(), StoreError> {
        if !self.indexes_ready() {
            return Err(StoreError::NotReady);
        }
        platform::mongo::insert_outcome(self.payments.insert_one(payment).await, StoreError::Duplicate)
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

    /// Claims for `owner`, until `lease` from now, every unpublished event whose lease has expired (or that none
    /// holds), then returns the oldest `limit` of its claimed events.
    pub async fn claim_pending_events(
        &self,
        owner: &str,
        lease: Duration,
        limit: usize,
    ) -> Result<Vec<PendingEvent>, StoreError> {
        Ok(OutboxLeases::new(&self.payments).claim_oldest(owner, lease, limit, Some(pending_event_fields())).await?)
    }

    /// The oldest `limit` unpublished events `owner` holds, without claiming anything (what this replica wrote is
    /// held by it already).
    pub async fn held_pending_events(&self, owner: &str, limit: usize) -> Result<Vec<PendingEvent>, StoreError> {
        Ok(OutboxLeases::new(&self.payments).oldest_claimed(owner, limit, Some(pending_event_fields())).await?)
    }

    /// Frees `owner`'s claims (at start, what a previous run under this name left; at shutdown, what it did not
    /// publish); also gives events stored before leases existed the field the claim selects on.
    pub async fn release_leases(&self, owner: &str) -> Result<(), StoreError> {
        Ok(OutboxLeases::new(&self.payments).release(owner).await?)
    }

    /// How many events wait in the outbox.
    pub async fn count_pending(&self) -> Result<u64, StoreError> {
        Ok(self.payments.count_documents(doc! { "outboxPending": true }).await?)
    }

    /// Records that Kafka acknowledged these events, one command per [`UPDATE_CHUNK`]; conditional, so a
    /// concurrent relay's update is harmless.
    pub async fn mark_published(&self, payment_ids: &[&str]) -> Result<(), StoreError> {
        for chunk in payment_ids.chunks(UPDATE_CHUNK) {
            self.payments
                .update_many(
                    doc! { "_id": { "$in": chunk }, "outboxPending": true },
                    doc! {
                        "$set": { "outboxPending": false, "publishedAt": bson::DateTime::now(), "leaseUntil": unleased() },
                        "$unset": { "leaseOwner": "" },
                    },
                )
                .await?;
        }
        Ok(())
    }
}
