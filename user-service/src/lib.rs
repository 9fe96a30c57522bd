//! user-service: registration, login and JWT issuance over REST, users stored in MongoDB.

pub mod config;
pub mod domain;
pub mod error;
pub mod metrics;
pub mod password;
pub mod routes;
pub mod startup;
pub mod state;
pub mod store;
pub mod throttle;
pub mod tokens;
// Shared with every service, kept once in the platform crate.
pub use platform::{backoff, healthcheck, shutdown, telemetry};
