//! The request body limit (`MAX_BODY_BYTES`, 413 above) with a lingering close.
//!
//! Refusing a large body used to mean answering 413 and closing the connection with the body still
//! arriving; the kernel then resets the connection, and a client that writes its whole body before
//! reading (Python's urllib, most simple clients) gets a broken pipe instead of the 413. So after a
//! 413 the rest of the body is read and thrown away, up to `DRAIN_BYTES` or `DRAIN_TIME`, whichever
//! comes first, before the connection closes: the client's writes complete and it reads the answer.
use std::{
    pin::Pin,
    sync::{Arc, Mutex, PoisonError},
    task::{Context, Poll},
    time::Duration,
};

use axum::{
    body::{Body, Bytes},
    extract::{Request, State},
    http::{StatusCode, header},
    middleware::Next,
    response::{IntoResponse, Response},
};
use http_body::{Frame, SizeHint};
use http_body_util::{BodyExt as _, Limited};

use crate::error::ApiError;

/// How much of a refused body is read before the connection closes anyway.
pub const DRAIN_BYTES: u64 = 4 * 1024 * 1024;
/// How long a refused body may take to arrive before the connection closes anyway.
pub const DRAIN_TIME: Duration = Duration::from_secs(5);

#[derive(Debug, Clone, Copy)]
pub struct BodyLimit(pub usize);

fn too_large(limit: usize) -> Response {
    ApiError::new(StatusCode::PAYLOAD_TOO_LARGE, format!("Request body too large (limit {limit} bytes)"))
        .into_response()
}

/// Middleware: a declared `Content-Length` above the limit is refused before the handler runs; a
/// body without one (chunked) is cut at the limit while the handler reads it. Either way the rest
/// of a refused body lingers (see the module).
pub async fn limit_body(State(BodyLimit(limit)): State<BodyLimit>, request: Request, next: Next) -> Response {
    let declared = request
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.trim().parse::<u64>().ok());
    if declared.is_some_and(|length| length > limit as u64) {
        // A client that sent `Expect: 100-continue` waits for a go-ahead before sending its body:
        // the answer is all it needs, and asking for the body would invite it.
        let expects_continue = request
            .headers()
            .get(header::EXPECT)
            .is_some_and(|value| value.as_bytes().eq_ignore_ascii_case(b"100-continue"));
        if !expects_continue {
            linger(request.into_body());
        }
        return too_large(limit);
    }
    let (parts, body) = request.into_parts();
    // The handler reads through the limit; the body itself stays reachable from here, so that
    // its rest can linger if the handler refuses it.
    let shared = Shared(Arc::new(Mutex::new(Some(body))));
    let response = next.run(Request::from_parts(parts, Body::new(Limited::new(shared.clone(), limit)))).await;
    if response.status() == StatusCode::PAYLOAD_TOO_LARGE
        && let Some(rest) = shared.take()
    {
        linger(rest);
    }
    response
}

/// Reads and discards what is left of `body` in the background, within the bounds above; the
/// connection closes once it is dropped, or stays open if the body was read to its end.
fn linger(body: Body) {
    tokio::spawn(async move {
        let mut body = body;
        let mut read = 0u64;
        let drain = async {
            while let Some(Ok(frame)) = body.frame().await {
                read += frame.data_ref().map_or(0, |data| data.len() as u64);
                if read > DRAIN_BYTES {
                    break;
                }
            }
        };
        if tokio::time::timeout(DRAIN_TIME, drain).await.is_err() {
            tracing::debug!("a refused body was still arriving after the drain time; closing its connection");
        }
    });
}

/// The request body, readable by the handler and, after it, by `limit_body`.
#[derive(Clone)]
struct Shared(Arc<Mutex<Option<Body>>>);

impl Shared {
    fn take(&self) -> Option<Body> {
        self.0.lock().unwrap_or_else(PoisonError::into_inner).take()
    }
}

impl http_body::Body for Shared {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, axum::Error>>> {
        match self.0.lock().unwrap_or_else(PoisonError::into_inner).as_mut() {
            Some(body) => Pin::new(body).poll_frame(cx),
            None => Poll::Ready(None),
        }
    }

    fn is_end_stream(&self) -> bool {
        self.0.lock().unwrap_or_else(PoisonError::into_inner).as_ref().is_none_or(http_body::Body::is_end_stream)
    }

    fn size_hint(&self) -> SizeHint {
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .as_ref()
            .map(http_body::Body::size_hint)
            .unwrap_or_default()
    }
}
