//! `payment.v1.PaymentService` over tonic. Handlers stay thin: deadline → parse → authenticate → authorise →
//! use case → response. Input is validated before the token so that malformed calls cost no JWKS fetch.
//! The call's server span (method, request id, the caller's trace) and its metrics come from
//! `rpc_telemetry`, around the whole server.
pub mod health;
pub mod telemetry;

use std::time::Duration;

use tonic::{Request, Response, Status, metadata::MetadataMap};

use crate::{
    auth::{AuthError, Claims, JwksVerifier, bearer_token},
    deadline,
    domain::{PaymentId, PaymentRequest, PaymentStatus},
    error,
    proto::{self, GetPaymentRequest, PayRequest, PayResponse, payment_service_server::PaymentService},
    store::PaymentDocument,
    telemetry::TraceContext,
    use_cases::payments::{Payments, rfc3339},
};

pub struct PaymentApi {
    payments: Payments,
    verifier: JwksVerifier,
}

impl PaymentApi {
    pub fn new(payments: Payments, verifier: JwksVerifier) -> Self {
        Self { payments, verifier }
    }

    /// The caller's verified claims, from `authorization: Bearer <jwt>` metadata.
    async fn authenticate(&self, metadata: &MetadataMap) -> Result<Claims, AuthError> {
        let authorization = metadata.get("authorization").and_then(|value| value.to_str().ok());
        self.verifier.verify(authorization.and_then(bearer_token).ok_or(AuthError::Missing)?).await
    }

    /// `budget`: the time the caller allows for the whole call, if it said.
    async fn pay_now(
        &self,
        request: Request<PayRequest>,
        budget: Option<Duration>,
    ) -> Result<Response<PayResponse>, Status> {
        let (metadata, _, body) = request.into_parts();
        let payment = PaymentRequest::parse(
            &body.order_id,
            &body.user_id,
            body.amount_cents,
            &body.currency,
            &body.idempotency_key,
        )?;
        let caller = self.authenticate(&metadata).await.map_err(error::unauthenticated)?;
        if !caller.may_act_for(payment.user_id.as_str()) {
            return Err(error::permission_denied_for_other_user());
        }
        // The call's span (see `rpc_telemetry`): the event this payment publishes joins its trace.
        let trace = TraceContext::current();
        let outcome = self.payments.pay(&payment, request_id(&metadata), &trace, budget).await?;
        Ok(Response::new(PayResponse {
            payment_id: outcome.payment_id,
            status: proto_status(outcome.status).into(),
            reason: outcome.reason,
            replayed: outcome.replayed,
        }))
    }

    async fn get_payment_now(&self, request: Request<GetPaymentRequest>) -> Result<Response<proto::Payment>, Status> {
        let (metadata, _, body) = request.into_parts();
        let payment_id = PaymentId::parse(&body.payment_id)?;
        let caller = self.authenticate(&metadata).await.map_err(error::unauthenticated)?;
        let payment = self.payments.get(&payment_id, &caller).await?.ok_or_else(error::payment_not_found)?;
        Ok(Response::new(to_proto(payment)?))
    }
}

#[tonic::async_trait]
impl PaymentService for PaymentApi {
    async fn pay(&self, request: Request<PayRequest>) -> Result<Response<PayResponse>, Status> {
        let timeout = deadline::client_timeout(request.metadata());
        deadline::within_client_deadline(timeout, self.pay_now(request, timeout)).await
    }

    async fn get_payment(&self, request: Request<GetPaymentRequest>) -> Result<Response<proto::Payment>, Status> {
        let timeout = deadline::client_timeout(request.metadata());
        deadline::within_client_deadline(timeout, self.get_payment_now(request)).await
    }
}

/// The caller's `x-request-id`, when it is a sane value (it ends up in Kafka headers and logs).
pub fn request_id(metadata: &MetadataMap) -> Option<&str> {
    metadata.get("x-request-id")?.to_str().ok().filter(|value| is_sane_request_id(value))
}

/// 1 to 128 visible ASCII characters: enough for any UUID or trace id, too little to flood a log line.
pub fn is_sane_request_id(value: &str) -> bool {
    !value.is_empty() && value.len() <= 128 && value.bytes().all(|byte| byte.is_ascii_graphic())
}

fn proto_status(status: PaymentStatus) -> proto::PaymentStatus {
    match status {
        PaymentStatus::Success => proto::PaymentStatus::Success,
        PaymentStatus::Declined => proto::PaymentStatus::Declined,
    }
}

fn to_proto(payment: PaymentDocument) -> Result<proto::Payment, Status> {
    let created_at = rfc3339(payment.created_at).map_err(|detail| {
        tracing::error!(%detail, payment_id = %payment.id, "stored payment has an unrepresentable date");
        Status::internal("internal error")
    })?;
    Ok(proto::Payment {
        payment_id: payment.id,
        order_id: payment.order_id,
        user_id: payment.user_id,
        amount_cents: payment.amount_cents,
        currency: payment.currency,
        status: proto_status(payment.status).into(),
        reason: payment.reason,
        created_at,
    })
}
