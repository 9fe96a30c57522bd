//! The two use cases: charging an order at most once, and reading a payment.
use std::sync::Arc;

use mongodb::bson;
use platform::group_commit::{GroupCommit, SubmitError};
use tokio::sync::Notify;

use crate::{
    auth::Claims,
    domain::{Decision, DecisionRule, PaymentId, PaymentRequest, PaymentStatus},
    events::{Envelope, PaymentProcessed},
    metrics::Metrics,
    projection::{KnownOrder, OrderProjection, OrderStage},
    store::{PaymentDocument, PaymentStore, StoreError},
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

/// New payments, written by one group-commit writer (`insert_many` per batch).
pub type PaymentWrites = GroupCommit<PaymentDocument, Result<(), StoreError>>;

/// Starts the group-commit writer of `store`'s payments.
pub fn payment_writer(store: PaymentStore, limits: platform::group_commit::Limits, metrics: &Metrics) -> PaymentWrites {
    GroupCommit::spawn(
        limits,
        move |payments: Vec<PaymentDocument>| {
            let store = store.clone();
            async move { store.insert_batch(&payments).await }
        },
        metrics.batch_observer("payments"),
    )
}

pub struct Payments {
    store: PaymentStore,
    /// What this service knows of orders, from their events: the checks never trust the caller.
    orders: OrderProjection,
    rule: DecisionRule,
    /// Wakes the outbox relay as soon as an event is stored.
    outbox_wake: Arc<Notify>,
    writes: PaymentWrites,
    metrics: Arc<Metrics>,
}

impl Payments {
    pub fn new(
        store: PaymentStore,
        orders: OrderProjection,
        rule: DecisionRule,
        outbox_wake: Arc<Notify>,
        writes: PaymentWrites,
        metrics: Arc<Metrics>,
    ) -> Self {
        Self { store, orders, rule, outbox_wake, writes, metrics }
    }

    /// Charges the order unless this idempotency key was seen before (then the first result is replayed, also
    /// once the order is paid), the order is not one this service knows as the payer's and processed, the amount
    /// or currency is not the order's, or the order already has a successful payment. The checks before the
    /// insert give the common answers cheaply; the unique indexes make them hold under concurrent calls too. `trace` (the call's) is stored with the event, so
    /// that its publication joins the call's trace.
    pub async fn pay(
        &self,
        request: &PaymentRequest,
        request_id: Option<&str>,
        trace: &TraceContext,
    ) -> Result<PayOutcome, PayError> {
        if !self.store.indexes_ready() {
            return Err(StoreError::NotReady.into());
        }
        let scope = request.idempotency_scope();
        if let Some(first) = self.store.find_by_idempotency_scope(&scope).await? {
            return replay(request, &first);
        }
        let order = self.orders.find(request.order_id.as_str()).await?;
        check_against(request, order.as_ref())?;
        if let Some(success) = self.store.find_success_for_order(request.order_id.as_str()).await? {
            // A concurrent call with this very key may have stored it since the lookup above.
            return if success.idempotency_scope == scope {
                replay(request, &success)
            } else {
                Err(PayError::OrderAlreadyPaid)
            };
        }
        let payment = self.new_payment(request, scope.clone(), request_id, trace)?;
        // Gathered with concurrent calls' payments into one durable insert; the outcome is this payment's own.
        let written = self.writes.submit(payment.clone()).await.map_err(|error| match error {
            SubmitError::QueueFull => {
                self.metrics.write_rejected("payments");
                PayError::Overloaded
            }
            SubmitError::Stopped => PayError::Store(StoreError::NotReady),
        })?;
        match written {
            Ok(()) => {
                if payment.outbox_pending {
                    self.outbox_wake.notify_one();
                }
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

    /// A concurrent call was stored first: with this key (its result is replayed), or for this order under another
    /// key (the order is paid).
    async fn after_losing_a_race(&self, request: &PaymentRequest, scope: &str) -> Result<PayOutcome, PayError> {
        match self.store.find_by_idempotency_scope(scope).await? {
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

    /// Decides the payment and, for a success, writes its event into the same document (the outbox).
    fn new_payment(
        &self,
        request: &PaymentRequest,
        idempotency_scope: String,
        request_id: Option<&str>,
        trace: &TraceContext,
    ) -> Result<PaymentDocument, PayError> {
        let created_at = bson::DateTime::now();
        let id = uuid::Uuid::now_v7().to_string();
        let (status, reason) = match self.rule.decide(request.amount) {
            Decision::Approve => (PaymentStatus::Success, String::new()),
            Decision::Decline { reason } => (PaymentStatus::Declined, reason),
        };
        let outbox_event = match status {
            PaymentStatus::Success => {
                let occurred_at = rfc3339(created_at).map_err(PayError::Encoding)?;
                let envelope = Envelope::payment_processed(
                    occurred_at,
                    PaymentProcessed {
                        payment_id: id.clone(),
                        order_id: request.order_id.as_str().to_owned(),
                        user_id: request.user_id.as_str().to_owned(),
                        amount_cents: request.amount.cents(),
                        currency: request.amount.currency().code().to_owned(),
                        status,
                    },
                );
                Some(serde_json::to_string(&envelope).map_err(|error| PayError::Encoding(error.to_string()))?)
            }
            PaymentStatus::Declined => None,
        };
        Ok(PaymentDocument {
            id,
            order_id: request.order_id.as_str().to_owned(),
            user_id: request.user_id.as_str().to_owned(),
            amount_cents: request.amount.cents(),
            currency: request.amount.currency().code().to_owned(),
            status,
            reason,
            idempotency_scope,
            success_order_id: (status == PaymentStatus::Success).then(|| request.order_id.as_str().to_owned()),
            created_at,
            request_id: request_id.map(str::to_owned),
            // Only an event has a publication to join the trace to.
            traceparent: outbox_event.as_ref().and(trace.traceparent.clone()),
            tracestate: outbox_event.as_ref().and(trace.tracestate.clone()),
            outbox_pending: outbox_event.is_some(),
            outbox_event,
            lease_until: crate::store::unleased(),
        })
    }
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
