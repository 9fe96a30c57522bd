//! The order-service runs the shared server (platform::http::server) with its configured limits.
use crate::support;

use std::time::Duration;

use platform::http::testing::{Stalled, stall_after};

#[tokio::test]
async fn a_client_sending_its_head_slowly_is_disconnected_after_the_configured_timeout() {
    let app = support::settings().with("HEADER_READ_TIMEOUT_MS", "300").spawn().await;
    let outcome = stall_after(app.socket_address(), b"GET /ord", Duration::from_secs(10)).await.unwrap();
    assert_eq!(outcome, Stalled::Closed);
    app.stop().await;
}
