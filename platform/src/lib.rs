//! What the HTTP services share instead of keeping copies: the HTTP server every service runs
//! (timeouts against slow clients, a drain deadline at shutdown) and the trusted-proxy rule that
//! says which address a request comes from. Each part is behind a feature (`server`, `proxies`,
//! `testing`), so a service compiles only what it uses.
#![forbid(unsafe_code)]

pub mod http;
