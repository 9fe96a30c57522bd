//! What every handler and worker shares: the store and its group-commit queues, the product catalogue client,
//! the token verifier, the producer, the metrics, and whether storage and topics are ready. Built once by
//! `startup`; nothing here knows how the application is assembled.
use std::{
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::Duration,
};

use platform::group_commit::GroupCommit;
use rdkafka::producer::FutureProducer;
use tokio::sync::Notify;

use crate::{
    auth::JwksVerifier,
    catalog::ProductCatalog,
    config::Topics,
    error::ApiError,
    metrics::Metrics,
    store::{OrderDocument, OrderStore, StoreError},
};

/// New orders, written by one group-commit writer (`insert_many` per batch).
pub type OrderWrites = GroupCommit<OrderDocument, Result<(), StoreError>>;
/// Idempotency-key lookups, answered by one group-commit reader (one `find` per batch).
pub type ScopeLookups = GroupCommit<String, Result<Option<OrderDocument>, StoreError>>;

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
    pub store: OrderStore,
    pub order_writes: OrderWrites,
    pub scope_lookups: ScopeLookups,
    pub catalog: ProductCatalog,
    pub verifier: JwksVerifier,
    pub producer: FutureProducer,
    pub topics: Topics,
    pub relay_wake: Arc<Notify>,
    pub idempotency_ttl: Duration,
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
