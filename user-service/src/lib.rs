//! user-service: registration, login and JWT issuance over REST, users stored in MongoDB.
#![forbid(unsafe_code)]

pub mod backoff;
pub mod config;
pub mod domain;
pub mod error;
pub mod extract;
pub mod healthcheck;
pub mod metrics;
pub mod password;
pub mod routes;
pub mod shutdown;
pub mod startup;
pub mod store;
pub mod telemetry;
pub mod throttle;
pub mod tokens;
