//! The product-service runs the shared server (platform::http::server) with its configured limits.
use crate::support;

use std::time::Duration;

use platform::http::testing::{Stalled, stall_after};

const PATIENCE: Duration = Duration::from_secs(10);

#[tokio::test]
async fn a_slow_head_is_disconnected_and_a_stalled_body_gets_a_json_408() {
    let app = support::spawn(&[("HEADER_READ_TIMEOUT_MS", "300"), ("REQUEST_TIMEOUT_MS", "300")]).await;
    let address = app.socket_address();
    assert_eq!(stall_after(address, b"POST /grap", PATIENCE).await.unwrap(), Stalled::Closed);

    let head = "POST /graphql HTTP/1.1\r\nhost: test\r\ncontent-type: application/json\r\ncontent-length: 80\r\n\r\n";
    let outcome = stall_after(address, format!("{head}{{\"query\":").as_bytes(), PATIENCE).await.unwrap();
    let Stalled::Answered(response) = outcome else { panic!("expected an answer, got {outcome:?}") };
    assert_eq!(response.status, 408);
    let body: serde_json::Value = serde_json::from_slice(&response.body).expect("JSON");
    assert_eq!(body["success"], false, "{body}");
    app.stop().await;
}
