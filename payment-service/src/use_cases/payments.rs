//! The two use cases: charging an order at most once, and reading a payment.
use std::{collections::HashMap, sync::Arc, time::Duration};

use mongodb::bson;
use platform::group_commit::{GroupCommit, SubmitError};

use crate::{
    auth::Claims,
    domain::{Decision, DecisionRule, PaymentId, PaymentRequest, PaymentStatus},
    events::{PaymentProcessed, relay::RelayInbox},
    metrics::Metrics,
    projection::{KnownOrder, OrderProjection, OrderStage, ProcessedOrders},
    store::{NewPayment, PaymentDocument, PaymentStore, PendingEvent, StoreError, StoredBatch},
    telemetry::TraceContext,
};

/// The answer to a `Pay` call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PayOutcome {
    pub payment_id: String,
    pub status: PaymentStatus,
    pub reason: String,
    /// True when this is the stored result of an earlier call with the same idempotency key.
    pub replayed: bool,
}

impl PayOutcome {
    fn of(payment: &PaymentDocument, replayed: bool) -> Self {
        Self { payment_id: payment.id.clone(), status: payment.status, reason: payment.reason.clone(), replayed }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum PayError {
    #[error("idempotency key reused with a different request")]
    KeyReused,
    #[error("the order already has a successful payment")]
    OrderAlreadyPaid,
    /// Unknown here, or not the order of the user paying for it (reported alike, so ids cannot be probed).
    #[error("order not found")]
    OrderNotFound,
    /// Known, but not processed yet.
    #[error("the order is not ready for payment yet")]
    OrderNotReady,
    #[error("the amount is not the order's total")]
    AmountMismatch { total_cents: i64 },
    #[error("the currency is not the order's")]
    CurrencyMismatch { currency: String },
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("cannot encode the payment event: {0}")]
    Encoding(String),
    /// The write queue is full: the caller should retry shortly.
    #[error("too many payments in progress")]
    Overloaded,
}

/// New payments and their events, written by one group-commit writer (one outbox entry holding the batch's events,
/// then one `insert_many` of payments, per batch).
pub type PaymentWrites = GroupCommit<NewPayment, Result<(), StoreError>>;

/// Starts the group-commit writer of `store`'s payments; it hands each batch's outbox entry, once its payments are
/// stored, to the relay through `relay_inbox`, which publishes the events without reading the outbox.
pub fn payment_writer(
    store: PaymentStore,
    relay_inbox: Arc<RelayInbox>,
    limits: platform::group_commit::Limits,
    metrics: &Metrics,
) -> PaymentWrites {
    GroupCommit::spawn(
        limits,
        move |payments: Vec<NewPayment>| {
            let (store, relay_inbox) = (store.clone(), relay_inbox.clone());
            async move {
                let StoredBatch { outcomes, entry } = store.insert_batch(&payments).await;
                if let Some(entry) = entry {
                    relay_inbox.stored(entry);
                }
                outcomes
            }
        },
        metrics.batch_observer("payments"),
    )
}

/// What one `Pay` call needs to read before deciding.
#[derive(Debug, Clone)]
pub struct Lookup {
    /// The call's idempotency scope: a payment stored under it is replayed.
    pub scope: String,
    /// The order the call is checked against, as this service knows it.
    pub order_id: String,
    /// Whether to read the order's successful payment too: only a payment that would be declined needs it (a
    /// success is kept from a second one by the unique index on `successOrderId`).
    pub success_of_order: bool,
}

/// What a [`Lookup`] found.
#[derive(Debug, Clone, Default)]
pub struct Found {
    pub first: Option<PaymentDocument>,
    pub order: Option<KnownOrder>,
    pub success: Option<PaymentDocument>,
}

/// The reads of concurrent `Pay` calls, gathered by one group-commit reader: a batch is read with one `find`
/// per collection (`$in` over its scopes, and over its order ids), whatever its size.
pub type PayLookups = GroupCommit<Lookup, Result<Found, StoreError>>;

/// Starts the reader that batches `Pay` lookups.
pub fn lookup_reader(
    store: PaymentStore,
    orders: OrderProjection,
    limits: platform::group_commit::Limits,
    metrics: &Metrics,
) -> PayLookups {
    GroupCommit::spawn(
        limits,
        move |lookups: Vec<Lookup>| {
            let (store, orders) = (store.clone(), orders.clone());
            async move { read_batch(&store, &orders, &lookups).await }
        },
        metrics.batch_observer("pay_lookups"),
    )
}

/// Two commands for the whole batch, run side by side (a third only when a payment would be declined); one
/// answer per lookup, in order.
async fn read_batch(
    store: &PaymentStore,
    orders: &OrderProjection,
    lookups: &[Lookup],
) -> Vec<Result<Found, StoreError>> {
    let scopes = distinct(lookups.iter().map(|lookup| lookup.scope.as_str()));
    let order_ids = distinct(lookups.iter().map(|lookup| lookup.order_id.as_str()));
    let paid_orders =
        distinct(lookups.iter().filter(|lookup| lookup.success_of_order).map(|lookup| lookup.order_id.as_str()));
    let (firsts, known, successes) = tokio::join!(
        store.find_by_idempotency_scopes(&scopes),
        orders.find_many(&order_ids),
        store.find_successes_for_orders(&paid_orders),
    );
    let (firsts, known, successes) = match (firsts, known, successes) {
        (Ok(firsts), Ok(known), Ok(successes)) => (firsts, known, successes),
        (Err(error), _, _) | (_, Err(error), _) | (_, _, Err(error)) => return vec![Err(error); lookups.len()],
    };
    let firsts: HashMap<&str, &PaymentDocument> =
        firsts.iter().map(|payment| (payment.idempotency_scope.as_str(), payment)).collect();
    let known: HashMap<&str, &KnownOrder> = known.iter().map(|order| (order.order_id.as_str(), order)).collect();
    let successes: HashMap<&str, &PaymentDocument> =
        successes.iter().map(|payment| (payment.order_id.as_str(), payment)).collect();
    lookups
        .iter()
        .map(|lookup| {
            Ok(Found {
                first: firsts.get(lookup.scope.as_str()).map(|&payment| payment.clone()),
                order: known.get(lookup.order_id.as_str()).map(|&order| order.clone()),
                success: lookup
                    .success_of_order
                    .then(|| successes.get(lookup.order_id.as_str()).map(|&payment| payment.clone()))
                    .flatten(),
            })
        })
        .collect()
}

fn distinct<'a>(keys: impl Iterator<Item = &'a str>) -> Vec<&'a str> {
    let mut keys: Vec<&str> = keys.collect();
    keys.sort_unstable();
    keys.dedup();
    keys
}

pub struct Payments {
    store: PaymentStore,
    rule: DecisionRule,
    writes: PaymentWrites,
    /// The reads before a decision: the key's earlier payment, and the order as this service knows it (from
    /// its events: the checks never trust the caller).
    lookups: PayLookups,
    /// Tells a call waiting for its order that the projection now knows it processed.
    processed: ProcessedOrders,
    /// The longest a call waits for its order to become known as processed (see [`Payments::pay`]).
    order_wait: Duration,
    metrics: Arc<Metrics>,
}

/// The parts of [`Payments`] that read and wait for the order projection.
pub struct ProjectionReads {
    pub lookups: PayLookups,
    pub processed: ProcessedOrders,
    pub order_wait: Duration,
}

impl Payments {
    pub fn new(
        store: PaymentStore,
        rule: DecisionRule,
        writes: PaymentWrites,
        reads: ProjectionReads,
        metrics: Arc<Metrics>,
    ) -> Self {
        let ProjectionReads { lookups, processed, order_wait } = reads;
        Self { store, rule, writes, lookups, processed, order_wait, metrics }
    }

    /// Charges the order unless this idempotency key was seen before (then the first result is replayed, also
    /// once the order is paid), the order is not one this service knows as the payer's and processed, the amount
    /// or currency is not the order's, or the order already has a successful payment. The checks before the
    /// insert give the common answers cheaply; the unique indexes make them hold under concurrent calls too.
    /// `trace` (the call's) is stored with the event, so that its publication joins the call's trace.
    ///
    /// An order this service does not know yet, or knows only as pending, may be one whose events are still on
    /// their way (the projection lags the order-service a little): the call then waits, at most `order_wait` and
    /// at most half of `budget` (the caller's deadline), for the consumer to record it processed, and reads
    /// again. Only then is it refused (`NOT_FOUND`, `FAILED_PRECONDITION`).
    pub async fn pay(
        &self,
        request: &PaymentRequest,
        request_id: Option<&str>,
        trace: &TraceContext,
        budget: Option<Duration>,
    ) -> Result<PayOutcome, PayError> {
        if !self.store.indexes_ready() {
            return Err(StoreError::NotReady.into());
        }
        let scope = request.idempotency_scope();
        let decision = self.rule.decide(request.amount);
        let lookup = Lookup {
            scope: scope.clone(),
            order_id: request.order_id.as_str().to_owned(),
            success_of_order: matches!(decision, Decision::Decline { .. }),
        };
        let wait = budget.map_or(self.order_wait, |budget| self.order_wait.min(budget / 2));
        // Watching before the read, so that the order recorded while the read is under way still wakes the call.
        let mut watch = (!wait.is_zero()).then(|| self.processed.watch(request.order_id.as_str())).flatten();
        let mut found = self.look_up(lookup.clone()).await?;
        if found.first.is_none()
            && may_still_come(request, found.order.as_ref())
            && let Some(watch) = watch.as_mut()
        {
            // Woken or not, read again: another replica's consumer may have recorded it, or a concurrent call with
            // this key may have paid meanwhile.
            let _ = tokio::time::timeout(wait, watch.processed()).await;
            found = self.look_up(lookup).await?;
        }
        drop(watch);
        if let Some(first) = &found.first {
            return replay(request, first);
        }
        check_against(request, found.order.as_ref())?;
        if let Some(success) = &found.success {
            // A declined attempt is not stored for an order that is paid already.
            return if success.idempotency_scope == scope {
                replay(request, success)
            } else {
                Err(PayError::OrderAlreadyPaid)
            };
        }
        let new = self.new_payment(request, decision, scope.clone(), request_id, trace)?;
        let payment = new.payment.clone();
        // Gathered with concurrent calls' payments into one durable insert; the outcome is this payment's own.
        let written = self.writes.submit(new).await.map_err(|error| self.refused("payments", error))?;
        match written {
            Ok(()) => {
                tracing::info!(
                    payment_id = %payment.id, order_id = %payment.order_id, status = payment.status.as_str(),
                    "payment stored"
                );
                Ok(PayOutcome::of(&payment, false))
            }
            Err(StoreError::Duplicate) => self.after_losing_a_race(request, &scope).await,
            Err(error) => Err(error.into()),
        }
    }

    /// The call's reads, gathered with concurrent calls' into one batch.
    async fn look_up(&self, lookup: Lookup) -> Result<Found, PayError> {
        Ok(self.lookups.submit(lookup).await.map_err(|error| self.refused("pay_lookups", error))??)
    }

    fn refused(&self, queue: &str, error: SubmitError) -> PayError {
        match error {
            SubmitError::QueueFull => {
                self.metrics.write_rejected(queue);
                PayError::Overloaded
            }
            SubmitError::Stopped => PayError::Store(StoreError::NotReady),
        }
    }

    /// A concurrent call was stored first: with this key (its result is replayed), or for this order under another
    /// key (the order is paid).
    async fn after_losing_a_race(&self, request: &PaymentRequest, scope: &str) -> Result<PayOutcome, PayError> {
        let lookup =
            Lookup { scope: scope.to_owned(), order_id: request.order_id.as_str().to_owned(), success_of_order: false };
        match self.look_up(lookup).await?.first {
            Some(first) => replay(request, &first),
            None => Err(PayError::OrderAlreadyPaid),
        }
    }

    /// The payment, if it exists and the caller may see it (their own, or any for an admin). Someone else's
    /// payment is reported as absent so that ids cannot be probed.
    pub async fn get(&self, payment_id: &PaymentId, caller: &Claims) -> Result<Option<PaymentDocument>, StoreError> {
        let payment = self.store.find_by_id(payment_id.as_str()).await?;
        Ok(payment.filter(|payment| caller.may_act_for(&payment.user_id)))
    }

    /// Decides the payment and, for a success, the event that announces it.
    fn new_payment(
        &self,
        request: &PaymentRequest,
        decision: Decision,
        idempotency_scope: String,
        request_id: Option<&str>,
        trace: &TraceContext,
    ) -> Result<NewPayment, PayError> {
        let created_at = bson::DateTime::now();
        let id = uuid::Uuid::now_v7().to_string();
        let (status, reason) = match decision {
            Decision::Approve => (PaymentStatus::Success, String::new()),
            Decision::Decline { reason } => (PaymentStatus::Declined, reason),
        };
        let outbox_event = match status {
            PaymentStatus::Success => {
                let occurred_at = rfc3339(created_at).map_err(PayError::Encoding)?;
                let envelope = PaymentProcessed {
                    payment_id: id.clone(),
                    order_id: request.order_id.as_str().to_owned(),
                    user_id: request.user_id.as_str().to_owned(),
                    amount_cents: request.amount.cents(),
                    currency: request.amount.currency().code().to_owned(),
                    status,
                }
                .event(occurred_at);
                Some(serde_json::to_string(&envelope).map_err(|error| PayError::Encoding(error.to_string()))?)
            }
            PaymentStatus::Declined => None,
        };
        // Only an event has a publication to join the trace to.
        let (traceparent, tracestate) = match outbox_event {
            Some(_) => (trace.traceparent.clone(), trace.tracestate.clone()),
            None => (None, None),
        };
        let request_id = request_id.map(str::to_owned);
        let order_id = request.order_id.as_str().to_owned();
        let event = outbox_event.map(|outbox_event| PendingEvent {
            payment_id: id.clone(),
            order_id: order_id.clone(),
            outbox_event,
            request_id: request_id.clone(),
            traceparent: traceparent.clone(),
            tracestate: tracestate.clone(),
        });
        let payment = PaymentDocument {
            id,
            order_id,
            user_id: request.user_id.as_str().to_owned(),
            amount_cents: request.amount.cents(),
            currency: request.amount.currency().code().to_owned(),
            status,
            reason,
            idempotency_scope,
            success_order_id: (status == PaymentStatus::Success).then(|| request.order_id.as_str().to_owned()),
            created_at,
            request_id,
            traceparent,
            tracestate,
        };
        Ok(NewPayment { payment, event })
    }
}

/// Whether the order may yet become payable by this caller as its events arrive: unknown here, or the caller's
/// and still pending (an order's owner never changes, so someone else's order will not become theirs).
fn may_still_come(request: &PaymentRequest, order: Option<&KnownOrder>) -> bool {
    order.is_none_or(|order| order.user_id == request.user_id.as_str() && order.stage < OrderStage::Processed)
}

/// The order must be the payer's, processed, and charged exactly its total in its currency.
fn check_against(request: &PaymentRequest, order: Option<&KnownOrder>) -> Result<(), PayError> {
    let order = order.filter(|order| order.user_id == request.user_id.as_str()).ok_or(PayError::OrderNotFound)?;
    if order.stage < OrderStage::Processed {
        return Err(PayError::OrderNotReady);
    }
    if order.currency != request.amount.currency().code() {
        return Err(PayError::CurrencyMismatch { currency: order.currency.clone() });
    }
    if order.total_cents != request.amount.cents() {
        return Err(PayError::AmountMismatch { total_cents: order.total_cents });
    }
    Ok(())
}

/// The first result for this key, provided the call repeats the same request; a key reused for another charge
/// is a client bug that must not be papered over by answering with an unrelated payment.
fn replay(request: &PaymentRequest, first: &PaymentDocument) -> Result<PayOutcome, PayError> {
    let same_request = first.order_id == request.order_id.as_str()
        && first.amount_cents == request.amount.cents()
        && first.currency == request.amount.currency().code();
    if same_request { Ok(PayOutcome::of(first, true)) } else { Err(PayError::KeyReused) }
}

/// RFC 3339 with milliseconds, e.g. `2025-01-01T12:00:00.000Z`.
pub fn rfc3339(at: bson::DateTime) -> Result<String, String> {
    at.try_to_rfc3339_string().map_err(|error| error.to_string())
}
