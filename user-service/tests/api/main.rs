//! The user-service integration tests, one binary (one link, one process): a module per route group or
//! behaviour, and `support` for what they share.

mod support;

mod admin_seed;
mod health;
mod login;
mod metrics;
mod register;
mod server_limits;
mod tokens;
