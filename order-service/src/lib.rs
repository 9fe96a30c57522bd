//! order-service: orders over HTTP, their lifecycle over Kafka (`new-order` → `order-processed`,
//! `payment-processed` → paid), stored in MongoDB with a transactional outbox.

pub mod config;
pub mod domain;
pub mod error;
pub mod events;
pub mod metrics;
pub mod product_client;
pub mod routes;
pub mod startup;
pub mod state;
pub mod store;
pub mod use_cases;
// Shared with every service, kept once in the platform crate.
pub use platform::{auth, backoff, healthcheck, shutdown, telemetry};
