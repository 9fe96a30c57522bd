//! Which address a request comes from, decided once at the edge: the TCP peer, unless the peer is
//! one of `TRUSTED_PROXIES` (a load balancer in front of the gateway), in which case the rightmost
//! `X-Forwarded-For` entry that is not itself a trusted proxy (`platform::http::proxies`).
//!
//! The request's `X-Forwarded-For` is replaced by that one address, so every downstream call carries
//! exactly the address the gateway derived and nothing a client wrote; the user-service, which trusts
//! the gateway, throttles logins and registrations by it.
use std::{net::SocketAddr, sync::Arc};

use axum::{
    extract::{ConnectInfo, Request, State},
    http::{HeaderName, HeaderValue},
    middleware::Next,
    response::Response,
};
use platform::http::proxies::TrustedProxies;

const X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");

/// Middleware: rewrites `X-Forwarded-For` to the derived client address.
pub async fn derive(State(proxies): State<Arc<TrustedProxies>>, mut request: Request, next: Next) -> Response {
    let peer = request.extensions().get::<ConnectInfo<SocketAddr>>().map(|ConnectInfo(peer)| peer.ip());
    let client = peer.map(|peer| proxies.client_address(peer, request.headers()));
    let headers = request.headers_mut();
    headers.remove(&X_FORWARDED_FOR);
    if let Some(value) = client.and_then(|client| HeaderValue::try_from(client.to_string()).ok()) {
        headers.insert(X_FORWARDED_FOR, value);
    }
    next.run(request).await
}
