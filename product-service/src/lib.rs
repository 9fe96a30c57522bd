//! product-service: the product catalogue over GraphQL (`/graphql`), stored in MongoDB.
#![forbid(unsafe_code)]

pub mod auth;
pub mod backoff;
pub mod cache;
pub mod catalogue;
pub mod config;
pub mod domain;
pub mod error;
pub mod graphql;
pub mod healthcheck;
pub mod metrics;
pub mod routes;
pub mod seed;
pub mod shutdown;
pub mod startup;
pub mod store;
pub mod telemetry;
