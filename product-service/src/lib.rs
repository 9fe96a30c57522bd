//! product-service: the product catalogue over GraphQL (`/graphql`), stored in MongoDB.

pub mod cache;
pub mod catalogue;
pub mod config;
pub mod domain;
pub mod error;
pub mod graphql;
pub mod metrics;
pub mod routes;
pub mod seed;
pub mod startup;
pub mod state;
pub mod store;
// Shared with every service, kept once in the platform crate.
pub use platform::{auth, backoff, healthcheck, shutdown, telemetry};
