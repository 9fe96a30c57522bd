//! What every handler shares: the store, the place-order use case, the token verifier, the producer, the metrics, and whether storage and topics are ready. Built once by
//! `startup`; nothing here knows how the application is assembled.
use std::sync::{
    Arc,
    atomic::{AtomicBool, Ordering},
};

use crate::{
    auth::JwksVerifier, config::Topics, error::ApiError, events::relay::RelayInbox, metrics::Metrics,
    store::OrderStore, use_cases::place_order::PlaceOrder,
};
use platform::kafka::ReplaceableProducer;

#[derive(Clone)]
pub struct AppState {
    inner: Arc<Inner>,
    readiness: Arc<Readiness>,
}

/// Set by the startup workers once MongoDB and Kafka are usable.
#[derive(Default)]
struct Readiness {
    bootstrapped: AtomicBool,
    topics_ready: AtomicBool,
}

pub struct Inner {
    /// Reads (`GET /orders`) and the outbox backlog; writes go through `place_order`.
    pub store: OrderStore,
    pub place_order: PlaceOrder,
    pub verifier: JwksVerifier,
    /// Asked whether the broker answers (`/ready`).
    pub producer: Arc<ReplaceableProducer>,
    pub topics: Topics,
    /// What the order writer tells the outbox relay.
    pub relay_inbox: Arc<RelayInbox>,
    pub metrics: Metrics,
}

impl std::ops::Deref for AppState {
    type Target = Inner;
    fn deref(&self) -> &Inner {
        &self.inner
    }
}

impl AppState {
    pub fn new(inner: Inner) -> Self {
        Self { inner: Arc::new(inner), readiness: Arc::default() }
    }

    /// True once the indexes exist: before that, idempotency keys are not guaranteed unique.
    pub fn is_bootstrapped(&self) -> bool {
        self.readiness.bootstrapped.load(Ordering::Acquire)
    }

    pub fn mark_bootstrapped(&self) {
        self.readiness.bootstrapped.store(true, Ordering::Release);
    }

    pub fn topics_ready(&self) -> bool {
        self.readiness.topics_ready.load(Ordering::Acquire)
    }

    pub fn mark_topics_ready(&self) {
        self.readiness.topics_ready.store(true, Ordering::Release);
    }

    pub fn require_bootstrapped(&self) -> Result<(), ApiError> {
        if self.is_bootstrapped() { Ok(()) } else { Err(ApiError::unavailable("Order storage is starting up")) }
    }
}

/// Where the bearer-token extractors (`platform::http::bearer`) find the verifier.
impl AsRef<JwksVerifier> for AppState {
    fn as_ref(&self) -> &JwksVerifier {
        &self.verifier
    }
}
