//! The platform integration tests, one binary (one link, one process): a module per route group or
//! behaviour, and `support` for what they share.

mod server;
mod tls;
