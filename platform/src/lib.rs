//! What the five services share and none of them owns: configuration plumbing, telemetry, shutdown, backoff,
//! the HTTP server with its limits, trusted-proxy client addresses, token verification, metrics plumbing, how
//! clients connect (TLS, Kafka security), the Kafka consumer loop and event envelope, and MongoDB plumbing.
//! Domain types and storage never come here: each service keeps its own.
//!
//! A service that moves to its own repository pins a version of this crate; it never copies it.
#[cfg(feature = "auth")]
pub mod auth;
pub mod backoff;
pub mod config;
pub mod group_commit;
pub mod healthcheck;
pub mod http;
pub mod idempotency;
#[cfg(feature = "kafka")]
pub mod kafka;
#[cfg(feature = "metrics")]
pub mod metrics;
#[cfg(feature = "mongodb")]
pub mod mongo;
pub mod recent;
#[cfg(feature = "telemetry")]
pub mod service_main;
pub mod shutdown;
#[cfg(feature = "telemetry")]
pub mod telemetry;
#[cfg(feature = "tls")]
pub mod tls;
