//! The product-service integration tests, one binary (one link, one process): a module per route group or
//! behaviour, and `support` for what they share.

mod support;

mod auth;
mod health;
mod limits;
mod metrics;
mod mutations;
mod queries;
mod seed;
mod server_limits;
