//! The payment-service integration tests, one binary (one link, one process): a module per route group or
//! behaviour, and `support` for what they share.

mod support;

mod auth;
mod events;
mod get_payment;
mod group_commit;
mod metrics;
mod operations;
mod outbox;
mod pay;
mod projection;
mod tls;
mod validation;
