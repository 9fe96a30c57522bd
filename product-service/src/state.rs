//! What the probes and the GraphQL resolvers share: the catalogue, and whether storage is ready. Built once by
//! `startup`; nothing here knows how the application is assembled.
use std::sync::{
    Arc,
    atomic::{AtomicBool, Ordering},
};

use crate::{catalogue::Catalogue, error::ServiceError};

#[derive(Clone)]
pub struct AppState {
    pub catalogue: Arc<Catalogue>,
    /// Set by the startup worker once the indexes and the seed products exist.
    bootstrapped: Arc<AtomicBool>,
}

impl AppState {
    pub fn new(catalogue: Catalogue) -> Self {
        Self { catalogue: Arc::new(catalogue), bootstrapped: Arc::default() }
    }

    pub fn mark_bootstrapped(&self) {
        self.bootstrapped.store(true, Ordering::Release);
    }

    /// True once the indexes and the seed products exist: before that, a listing would be incomplete and a
    /// new product could be given a seed's id.
    pub fn is_bootstrapped(&self) -> bool {
        self.bootstrapped.load(Ordering::Acquire)
    }

    pub fn require_bootstrapped(&self) -> Result<(), ServiceError> {
        if self.is_bootstrapped() { Ok(()) } else { Err(ServiceError::Unavailable) }
    }
}
