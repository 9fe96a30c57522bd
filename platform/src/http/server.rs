//! The HTTP server every service runs: its axum router on hyper's HTTP/1.1 connections, with the
//! limits `axum::serve` leaves open, so that slow or stuck clients cannot hold a service hostage:
//!
//! - **header read timeout** (`HEADER_READ_TIMEOUT_MS`): a client that has not sent a complete
//!   request head within it is disconnected (slowloris). Hyper also applies it between the requests
//!   of a keep-alive connection, so it is the idle timeout too;
//! - **request timeout** (`REQUEST_TIMEOUT_MS`): a request not answered within it, reading its body
//!   included, gets a JSON 408 and its connection is closed;
//! - **drain deadline** (`SHUTDOWN_DRAIN_MS`): after the shutdown signal the listener closes, idle
//!   connections close, in-flight requests may finish, and whatever is still open at the deadline
//!   is closed, so a stuck connection cannot keep the process from exiting.
//!
//! HTTP/1.1 only: no client of these services speaks HTTP/2 in clear text, and one protocol keeps
//! the header timeout on every connection.
use std::{future::Future, io, time::Duration};

use axum::{
    Json, Router,
    body::Body,
    extract::{ConnectInfo, Request, State},
    http::{HeaderValue, StatusCode, header},
    middleware::{self, Next},
    response::{IntoResponse, Response},
};
use hyper::body::Incoming;
use hyper_util::{
    rt::{TokioIo, TokioTimer},
    server::graceful::GracefulShutdown,
};
use tokio::{net::TcpListener, task::JoinSet};
use tower::ServiceExt as _;

use crate::config::{ConfigError, Source, millis};

/// The three limits, from the environment (see [`ServerLimits::from_source`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ServerLimits {
    /// Longest a client may take to send a request's head (and longest a keep-alive connection idles).
    pub header_read_timeout: Duration,
    /// Longest a request may take from its head to its response, body included; then 408.
    pub request_timeout: Duration,
    /// Longest shutdown waits for open connections before closing them.
    pub shutdown_drain: Duration,
}

pub const DEFAULT_HEADER_READ_TIMEOUT_MS: u64 = 10_000;
pub const DEFAULT_REQUEST_TIMEOUT_MS: u64 = 30_000;
pub const DEFAULT_SHUTDOWN_DRAIN_MS: u64 = 10_000;

impl Default for ServerLimits {
    fn default() -> Self {
        Self {
            header_read_timeout: Duration::from_millis(DEFAULT_HEADER_READ_TIMEOUT_MS),
            request_timeout: Duration::from_millis(DEFAULT_REQUEST_TIMEOUT_MS),
            shutdown_drain: Duration::from_millis(DEFAULT_SHUTDOWN_DRAIN_MS),
        }
    }
}

impl ServerLimits {
    /// Reads `HEADER_READ_TIMEOUT_MS` (default 10000), `REQUEST_TIMEOUT_MS` (30000) and `SHUTDOWN_DRAIN_MS`
    /// (10000) from a service's configuration source.
    pub fn from_source(source: &dyn Source) -> Result<Self, ConfigError> {
        Ok(Self {
            header_read_timeout: millis(source, "HEADER_READ_TIMEOUT_MS", DEFAULT_HEADER_READ_TIMEOUT_MS)?,
            request_timeout: millis(source, "REQUEST_TIMEOUT_MS", DEFAULT_REQUEST_TIMEOUT_MS)?,
            shutdown_drain: millis(source, "SHUTDOWN_DRAIN_MS", DEFAULT_SHUTDOWN_DRAIN_MS)?,
        })
    }
}

/// The JSON 408 of a request that ran out of time. `Connection: close`: its body may be half read.
pub fn request_timeout_response(limit: Duration) -> Response {
    let message = format!("Request not completed within {} ms", limit.as_millis());
    let mut response = (StatusCode::REQUEST_TIMEOUT, Json(serde_json::json!({ "success": false, "message": message })))
        .into_response();
    response.headers_mut().insert(header::CONNECTION, HeaderValue::from_static("close"));
    response
}

async fn answer_408_after(State(limit): State<Duration>, request: Request, next: Next) -> Response {
    // Only read on a timeout, for the log line; both clones are cheap (shared bytes).
    let (method, uri) = (request.method().clone(), request.uri().clone());
    match tokio::time::timeout(limit, next.run(request)).await {
        Ok(response) => response,
        Err(_) => {
            tracing::warn!(%method, path = uri.path(), timeout_ms = limit.as_millis() as u64, "request timed out: 408");
            request_timeout_response(limit)
        }
    }
}

/// Errors of one connection's accept that say nothing about the listener (the client gave up).
fn is_connection_error(error: &io::Error) -> bool {
    matches!(
        error.kind(),
        io::ErrorKind::ConnectionRefused | io::ErrorKind::ConnectionAborted | io::ErrorKind::ConnectionReset
    )
}

/// Serves `router` on `listener` until `shutdown` resolves, then drains: the listener closes, open
/// connections finish their requests and close, and at `limits.shutdown_drain` the rest are closed.
/// Handlers can extract `ConnectInfo<SocketAddr>` (the TCP peer).
pub async fn serve(
    listener: TcpListener,
    router: Router,
    limits: ServerLimits,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> io::Result<()> {
    // Outermost, so that nothing inside (body reading included) escapes the deadline.
    let router = router.layer(middleware::from_fn_with_state(limits.request_timeout, answer_408_after));
    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(TokioTimer::new()).header_read_timeout(limits.header_read_timeout);
    let graceful = GracefulShutdown::new();
    // The connection tasks are owned here, so that those still open at the drain deadline can be closed.
    let mut connections = JoinSet::new();
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            () = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, peer)) => {
                    let router = router.clone();
                    let service = hyper::service::service_fn(move |mut request: hyper::Request<Incoming>| {
                        request.extensions_mut().insert(ConnectInfo(peer));
                        router.clone().oneshot(request.map(Body::new))
                    });
                    let connection = graceful.watch(http.serve_connection(TokioIo::new(stream), service));
                    connections.spawn(async move {
                        if let Err(error) = connection.await {
                            // Header timeouts and clients that hang up: routine, and a flood of them must not flood the log.
                            tracing::debug!(%peer, %error, "connection ended with an error");
                        }
                    });
                }
                Err(error) if is_connection_error(&error) => {}
                Err(error) => {
                    // Out of file descriptors, say: give the system a moment instead of spinning.
                    tracing::error!(%error, "cannot accept connections; retrying in 1 s");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
            },
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
        }
    }
    drop(listener);
    tracing::info!(
        open_connections = graceful.count(),
        drain_ms = limits.shutdown_drain.as_millis() as u64,
        "shutting down: no new connections; waiting for open ones"
    );
    if tokio::time::timeout(limits.shutdown_drain, graceful.shutdown()).await.is_err() {
        tracing::warn!(
            drain_ms = limits.shutdown_drain.as_millis() as u64,
            "drain deadline passed: closing the connections still open"
        );
    }
    connections.shutdown().await;
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    fn limits(pairs: &[(&str, &str)]) -> Result<ServerLimits, ConfigError> {
        ServerLimits::from_source(&pairs.iter().copied().collect::<HashMap<&str, &str>>())
    }

    #[test]
    fn unset_limits_take_the_documented_defaults() {
        let defaults = limits(&[]).unwrap();
        assert_eq!(defaults.header_read_timeout, Duration::from_secs(10));
        assert_eq!(defaults.request_timeout, Duration::from_secs(30));
        assert_eq!(defaults.shutdown_drain, Duration::from_secs(10));
        assert_eq!(defaults, ServerLimits::default());
        let set = limits(&[("HEADER_READ_TIMEOUT_MS", "300"), ("REQUEST_TIMEOUT_MS", " 4000 ")]).unwrap();
        assert_eq!(set.header_read_timeout, Duration::from_millis(300));
        assert_eq!(set.request_timeout, Duration::from_millis(4000));
    }

    #[test]
    fn malformed_or_zero_limits_name_their_variable() {
        for name in ["HEADER_READ_TIMEOUT_MS", "REQUEST_TIMEOUT_MS", "SHUTDOWN_DRAIN_MS"] {
            for bad in ["0", "soon", "-5", "1.5"] {
                let error = limits(&[(name, bad)]).unwrap_err();
                assert_eq!(error.variable, name, "{bad}");
                assert!(error.to_string().contains(name));
            }
        }
    }
}
