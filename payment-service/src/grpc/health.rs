//! Readiness as the standard gRPC health service (`grpc.health.v1.Health`) reports it.
//!
//! Both the whole server ("") and `payment.v1.PaymentService` are NOT_SERVING until MongoDB answered and the
//! indexes exist (before that, at-most-once charging is not guaranteed), and again whenever MongoDB stops
//! answering the check that runs every 2 seconds. The process itself stays up throughout.
use std::time::Duration;

use tonic_health::{ServingStatus, server::HealthReporter};

use crate::{
    backoff::Backoff,
    proto::payment_service_server::SERVICE_NAME,
    shutdown::StopSignal,
    store::{PaymentStore, StoreError},
};

const CHECK_INTERVAL: Duration = Duration::from_secs(2);

/// The statuses the health service reports; clones share them.
#[derive(Clone)]
pub struct HealthStatus {
    reporter: HealthReporter,
}

impl HealthStatus {
    /// Starts as NOT_SERVING.
    pub async fn new(reporter: HealthReporter) -> Self {
        let health = Self { reporter };
        health.set(false).await;
        health
    }

    pub async fn set(&self, serving: bool) {
        let status = if serving { ServingStatus::Serving } else { ServingStatus::NotServing };
        for service in ["", SERVICE_NAME] {
            self.reporter.set_service_status(service, status).await;
        }
    }
}

/// Creates the indexes (retrying with capped, jittered backoff until MongoDB answers), then checks them
/// periodically; the reported health follows. Returns when asked to stop.
pub async fn watch_storage(store: PaymentStore, health: HealthStatus, mut stop: StopSignal) {
    let mut backoff = Backoff::new(Duration::from_millis(100), Duration::from_secs(5));
    let mut serving = false;
    loop {
        let check = tokio::select! {
            check = check_storage(&store) => check,
            () = stop.stopped() => return,
        };
        let delay = match check {
            Ok(()) => {
                backoff.reset();
                if !serving {
                    tracing::info!("MongoDB answers and the indexes exist: SERVING");
                    health.set(true).await;
                    serving = true;
                }
                CHECK_INTERVAL
            }
            Err(error) => {
                let delay = backoff.next_delay();
                tracing::warn!(%error, retry_in_ms = delay.as_millis() as u64, "MongoDB not answering: NOT_SERVING");
                if serving {
                    health.set(false).await;
                    serving = false;
                }
                delay
            }
        };
        tokio::select! {
            () = tokio::time::sleep(delay) => {}
            () = stop.stopped() => return,
        }
    }
}

/// Creating indexes that exist is a cheap no-op, so the same command serves as the periodic check and puts the
/// indexes back if the database was replaced while the service ran.
async fn check_storage(store: &PaymentStore) -> Result<(), StoreError> {
    store.ensure_indexes().await
}
