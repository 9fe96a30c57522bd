//! api-gateway: the single REST/JSON entry point. Owns no data: it routes, checks tokens,
//! and shields clients from slow or failing services.

pub mod body_limit;
pub mod client_address;
pub mod config;
pub mod downstream;
pub mod error;
pub mod metrics;
pub mod openapi;
pub mod payment_client;
pub mod product_client;
pub mod resilience;
pub mod routes;
pub mod startup;
pub mod state;
// Shared with every service, kept once in the platform crate.
pub use platform::{auth, backoff, healthcheck, shutdown, telemetry};
