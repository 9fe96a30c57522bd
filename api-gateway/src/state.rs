//! What every handler shares: the clients of the four services behind the gateway, the token verifier and
//! the metrics. Built once by `startup`; nothing here knows how the application is assembled.
use std::sync::Arc;

use crate::{auth::JwksVerifier, downstream::Downstream, metrics::Metrics, payment_client::PaymentClient};

#[derive(Clone)]
pub struct AppState(Arc<Inner>);

impl AppState {
    pub fn new(inner: Inner) -> Self {
        Self(Arc::new(inner))
    }
}

pub struct Inner {
    pub users: Downstream,
    pub products: Downstream,
    pub orders: Downstream,
    pub payments: PaymentClient,
    pub verifier: JwksVerifier,
    pub metrics: Arc<Metrics>,
}

impl std::ops::Deref for AppState {
    type Target = Inner;
    fn deref(&self) -> &Inner {
        &self.0
    }
}

/// Where the bearer-token extractors (`platform::http::bearer`) find the verifier.
impl AsRef<JwksVerifier> for AppState {
    fn as_ref(&self) -> &JwksVerifier {
        &self.verifier
    }
}
