//! The api-gateway integration tests, one binary (one link, one process): a module per route group or
//! behaviour, and `support` for what they share.

mod support;

mod breaker;
mod client_address;
mod routing;
mod server_limits;
