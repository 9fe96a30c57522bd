//! The gateway's edge against clients that send slowly or too much: header and request timeouts
//! (platform::http::server), the 413 a client still reads after writing its whole body, and the
//! configuration check that keeps the request timeout above the downstream timeout.
use crate::support;

use std::time::Duration;

use platform::http::testing::{Stalled, read_response, stall_after};
use tokio::{io::AsyncWriteExt as _, net::TcpSocket};

const PATIENCE: Duration = Duration::from_secs(10);
const TWO_MIB: usize = 2 * 1024 * 1024;

#[tokio::test]
async fn a_slow_head_is_disconnected_and_a_stalled_body_gets_a_json_408() {
    let gateway = support::start(&[
        ("HEADER_READ_TIMEOUT_MS", "300"),
        ("REQUEST_TIMEOUT_MS", "300"),
        ("DOWNSTREAM_TIMEOUT_MS", "100"),
    ])
    .await;
    assert_eq!(stall_after(gateway.address, b"POST /users/log", PATIENCE).await.unwrap(), Stalled::Closed);
    let head =
        "POST /users/login HTTP/1.1\r\nhost: test\r\ncontent-type: application/json\r\ncontent-length: 80\r\n\r\n";
    let outcome = stall_after(gateway.address, format!("{head}{{\"email\":").as_bytes(), PATIENCE).await.unwrap();
    let Stalled::Answered(response) = outcome else { panic!("expected an answer, got {outcome:?}") };
    assert_eq!(response.status, 408);
    let body: serde_json::Value = serde_json::from_slice(&response.body).expect("JSON");
    assert_eq!(body["success"], false, "{body}");
    assert_eq!(gateway.users.hits(), 0, "nothing half-read went downstream");
    gateway.stop().await;
}

/// Writes `head` and then `body` in full before reading anything, as Python's urllib does.
///
/// With a small send buffer, as over a real network: on loopback the kernel's buffers would take
/// the whole 2 MiB at once whether the gateway reads it or not, and the write could not fail.
async fn write_everything_then_read(address: std::net::SocketAddr, head: &str, body: &[u8]) -> serde_json::Value {
    let socket = TcpSocket::new_v4().unwrap();
    socket.set_send_buffer_size(32 * 1024).unwrap();
    let mut stream = socket.connect(address).await.unwrap();
    stream.write_all(head.as_bytes()).await.expect("the head is written");
    stream.write_all(body).await.expect("the whole body is written: the gateway reads it, no broken pipe");
    let response = read_response(&mut stream, PATIENCE).await.expect("an answer, no reset").expect("an answer");
    assert_eq!(response.status, 413, "{response:?}");
    serde_json::from_slice(&response.body).expect("a JSON body")
}

#[tokio::test]
async fn a_client_that_writes_its_whole_2_mib_body_before_reading_gets_the_413() {
    let gateway = support::start(&[]).await;
    let head = format!(
        "POST /users/register HTTP/1.1\r\nhost: test\r\ncontent-type: application/json\r\ncontent-length: {TWO_MIB}\r\n\r\n"
    );
    let body = write_everything_then_read(gateway.address, &head, &vec![b'a'; TWO_MIB]).await;
    assert_eq!(body, serde_json::json!({ "success": false, "message": "Request body too large (limit 65536 bytes)" }));
    assert_eq!(gateway.users.hits(), 0);
    gateway.stop().await;
}

#[tokio::test]
async fn a_chunked_body_over_the_limit_written_whole_before_reading_gets_the_413() {
    let gateway = support::start(&[]).await;
    let head = "POST /users/register HTTP/1.1\r\nhost: test\r\ncontent-type: application/json\r\ntransfer-encoding: chunked\r\n\r\n";
    let mut body = Vec::new();
    for _ in 0..32 {
        body.extend_from_slice(format!("{:x}\r\n", 64 * 1024).as_bytes());
        body.extend_from_slice(&vec![b'a'; 64 * 1024]);
        body.extend_from_slice(b"\r\n");
    }
    body.extend_from_slice(b"0\r\n\r\n");
    let answer = write_everything_then_read(gateway.address, head, &body).await;
    assert_eq!(answer["success"], false);
    assert_eq!(gateway.users.hits(), 0);
    gateway.stop().await;
}

#[test]
fn a_request_timeout_not_above_the_downstream_timeout_stops_startup_with_exit_code_2_naming_it() {
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_api-gateway"))
        .env_clear()
        .env("HOST", "127.0.0.1")
        .env("PORT", "0")
        .env("DOWNSTREAM_TIMEOUT_MS", "3000")
        .env("REQUEST_TIMEOUT_MS", "2000")
        .output()
        .expect("the binary runs");
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("REQUEST_TIMEOUT_MS") && stderr.contains("must exceed DOWNSTREAM_TIMEOUT_MS"), "{stderr}");
}
