//! The order-service integration tests, one binary (one link, one process): a module per route group or
//! behaviour, and `support` for what they share.

mod support;

mod batching;
mod broker_outage;
mod health;
mod lifecycle;
mod metrics;
mod orders;
mod pricing;
mod replicas;
mod server_limits;
