//! Placing an order, the rules the order-service owns for it: a keyed request is answered once (a retry replays
//! the first answer, a reused key with another body is refused; the unique index on the key decides, and the first
//! order is read only when it refuses), the price comes from the catalogue, never from the caller, and the order is
//! stored with its `new-order` event in its own document, gathered with concurrent requests' orders (group commit:
//! one insert per batch). Each order counts as unpublished from the making of its id (`events::unpublished`).
use std::{sync::Arc, time::Duration};

use mongodb::bson;
use platform::group_commit::{GroupCommit, Limits, SubmitError};

use crate::{
    domain::{Money, Quantity},
    events::{envelope, relay::RelayInbox},
    metrics::Metrics,
    product_client::{ProductClient, ProductSnapshot},
    store::{KeyHolder, OrderDocument, OrderStore, OrderWithEvent, StoreError},
    telemetry::TraceContext,
};

/// New orders with their events, written by one group-commit writer ([`OrderStore::insert_batch`] per batch).
pub type OrderWrites = GroupCommit<OrderWithEvent, Result<(), StoreError>>;
/// Idempotency-key lookups of retries, answered by one group-commit reader (one `find` per batch).
pub type ScopeLookups = GroupCommit<String, Result<Option<KeyHolder>, StoreError>>;

/// What a client asked for, already parsed.
#[derive(Debug, Clone)]
pub struct NewOrder {
    pub user_id: String,
    pub product_id: String,
    pub quantity: Quantity,
    pub idempotency_key: Option<String>,
    pub request_id: Option<String>,
    /// W3C trace context of the request (`traceparent` and `tracestate`): the order's events carry it through
    /// the outbox to Kafka.
    pub trace: TraceContext,
}

/// What the catalogue says the order costs.
struct Priced {
    product: ProductSnapshot,
    total: Money,
}

/// The order the request created, or the one an earlier request with the same key created.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Placed {
    pub order_id: String,
    pub replayed: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum PlaceOrderError {
    #[error("Product {0} does not exist")]
    UnknownProduct(String),
    #[error("Order total is too large")]
    TotalTooLarge,
    #[error("Idempotency-Key was already used with a different request")]
    KeyReused,
    #[error("Concurrent request with the same Idempotency-Key")]
    ConcurrentKey,
    #[error("Product catalogue temporarily unavailable")]
    CatalogueUnavailable,
    /// A group-commit queue is full: the caller should retry shortly.
    #[error("Too many orders in progress; retry shortly")]
    Overloaded,
    /// The writer has stopped (the service is shutting down).
    #[error("Order storage temporarily unavailable")]
    Stopped,
    #[error("cannot encode the new-order event: {0}")]
    Encoding(#[from] serde_json::Error),
    #[error(transparent)]
    Store(#[from] StoreError),
}

pub struct PlaceOrder {
    store: OrderStore,
    writes: OrderWrites,
    lookups: ScopeLookups,
    products: ProductClient,
    new_order_topic: String,
    idempotency_ttl: Duration,
    /// Counts each order made until its event is published ([`RelayInbox::made`]).
    relay_inbox: Arc<RelayInbox>,
    metrics: Metrics,
}

impl PlaceOrder {
    /// Starts the group-commit writer and reader of `store`. The writer hands each batch it stored to the outbox
    /// relay (`relay_inbox`), which publishes its events without reading the outbox.
    pub fn new(
        store: OrderStore,
        limits: Limits,
        products: ProductClient,
        new_order_topic: String,
        idempotency_ttl: Duration,
        relay_inbox: Arc<RelayInbox>,
        metrics: Metrics,
    ) -> Self {
        let writer = store.clone();
        let inbox = relay_inbox.clone();
        let writes = GroupCommit::spawn(
            limits,
            move |orders: Vec<OrderWithEvent>| {
                let (store, relay_inbox) = (writer.clone(), relay_inbox.clone());
                async move {
                    let stored = store.insert_batch(&orders).await;
                    match stored.events {
                        Some(events) => {
                            let refused = orders.iter().zip(&stored.outcomes).filter(|(_, outcome)| outcome.is_err());
                            relay_inbox.not_stored(refused.map(|(new, _)| new.order.id.as_str()));
                            if !events.is_empty() {
                                relay_inbox.stored(events);
                            }
                        }
                        // Whether some orders were stored is unknown: the relay reads them.
                        None => relay_inbox.unknown(orders.iter().map(|new| new.order.id.as_str())),
                    }
                    stored.outcomes
                }
            },
            metrics.batch_observer("orders"),
        );
        let reader = store.clone();
        let lookups = GroupCommit::spawn(
            limits,
            move |scopes: Vec<String>| {
                let store = reader.clone();
                async move {
                    match store.find_by_idempotency_scopes(&scopes).await {
                        // Several callers may ask for one scope (retries of one key): each gets it.
                        Ok(found) => scopes.iter().map(|scope| Ok(found.get(scope).cloned())).collect(),
                        Err(error) => vec![Err(error); scopes.len()],
                    }
                }
            },
            metrics.batch_observer("idempotency_lookups"),
        );
        Self { store, writes, lookups, products, new_order_topic, idempotency_ttl, relay_inbox: inbox, metrics }
    }

    pub async fn place(&self, order: NewOrder) -> Result<Placed, PlaceOrderError> {
        let fingerprint = format!("{}|{}", order.product_id, order.quantity.get());
        let scope = order.idempotency_key.as_ref().map(|key| format!("{}:{key}", order.user_id));
        // A key is not looked up before the write: the unique index on its scope refuses one already used, and only
        // then is its first order read. A first request, the common case, costs no read and no round trip.
        let priced = match self.price(&order).await {
            Ok(priced) => priced,
            // A request that cannot be priced now may be the retry of one that was: it gets that first answer.
            Err(error) => {
                return match &scope {
                    Some(scope) => self.replay_or_release(scope, &fingerprint).await?.ok_or(error),
                    None => Err(error),
                };
            }
        };
        // Twice at most: the first refusal of an expired key releases it.
        for _ in 0..2 {
            let new =
                self.new_order(&order, &priced, scope.as_ref().map(|scope| (scope.clone(), fingerprint.clone())))?;
            let order_id = new.order.id.clone();
            self.relay_inbox.made(&order_id);
            // Gathered with concurrent requests' orders into one durable write; the answer is this order's own.
            let submitted = self.writes.submit(new).await.map_err(|error| {
                match error {
                    SubmitError::QueueFull => self.relay_inbox.not_stored([order_id.as_str()]),
                    // The writer may have taken it before it stopped.
                    SubmitError::Stopped => self.relay_inbox.unknown([order_id.as_str()]),
                }
                self.queue_error("orders", error)
            })?;
            match submitted {
                Ok(()) => {
                    tracing::info!(order_id = %order_id, user_id = %order.user_id, "order created");
                    return Ok(Placed { order_id, replayed: false });
                }
                // The key was used before, or by a concurrent request that won the race: answer as it did.
                Err(StoreError::DuplicateIdempotencyKey) => {
                    let Some(scope) = &scope else { break };
                    if let Some(replay) = self.replay_or_release(scope, &fingerprint).await? {
                        return Ok(replay);
                    }
                }
                Err(error) => return Err(error.into()),
            }
        }
        Err(PlaceOrderError::ConcurrentKey)
    }

    /// The product's price snapshot and the order's total: the price comes from the catalogue, never the caller.
    async fn price(&self, order: &NewOrder) -> Result<Priced, PlaceOrderError> {
        let product = self.products.product(&order.product_id, order.request_id.as_deref()).await.map_err(|error| {
            tracing::warn!(%error, "cannot price the order");
            PlaceOrderError::CatalogueUnavailable
        })?;
        let product = product.ok_or_else(|| PlaceOrderError::UnknownProduct(order.product_id.clone()))?;
        let total = product.unit_price.times(order.quantity.get()).ok_or(PlaceOrderError::TotalTooLarge)?;
        Ok(Priced { product, total })
    }

    /// A new pending order (a new id each time) with its `new-order` event.
    fn new_order(
        &self,
        order: &NewOrder,
        priced: &Priced,
        keyed: Option<(String, String)>,
    ) -> Result<OrderWithEvent, PlaceOrderError> {
        let document = OrderDocument::new_pending(
            &order.user_id,
            &priced.product,
            order.quantity,
            priced.total,
            keyed,
            order.trace.traceparent.clone(),
        );
        let event =
            envelope::new_order_event(&document, &self.new_order_topic, order.request_id.clone(), order.trace.clone())?;
        Ok(OrderWithEvent { order: document, event })
    }

    /// The first answer for this key if it is still fresh; frees the key when it has expired.
    async fn replay_or_release(&self, scope: &str, fingerprint: &str) -> Result<Option<Placed>, PlaceOrderError> {
        let lookup = self.lookups.submit(scope.to_owned()).await;
        let Some(existing) = lookup.map_err(|error| self.queue_error("idempotency_lookups", error))?? else {
            return Ok(None);
        };
        let age_ms = bson::DateTime::now().timestamp_millis() - existing.created_at.timestamp_millis();
        if age_ms > i64::try_from(self.idempotency_ttl.as_millis()).unwrap_or(i64::MAX) {
            self.store.release_idempotency_scope(&existing.id).await?;
            return Ok(None);
        }
        if existing.request_fingerprint.as_deref() != Some(fingerprint) {
            return Err(PlaceOrderError::KeyReused);
        }
        Ok(Some(Placed { order_id: existing.id, replayed: true }))
    }

    /// A group-commit queue refused or lost the job; a full queue is counted.
    fn queue_error(&self, queue: &str, error: SubmitError) -> PlaceOrderError {
        match error {
            SubmitError::QueueFull => {
                self.metrics.write_queue_rejected.with_label_values(&[queue]).inc();
                PlaceOrderError::Overloaded
            }
            SubmitError::Stopped => PlaceOrderError::Stopped,
        }
    }
}
