//! The shared server against real sockets: slow heads are cut off, stalled bodies get a JSON 408,
//! in-flight requests finish during the drain and stuck connections are closed at its deadline.
use std::{io, net::SocketAddr, sync::Arc, time::Duration};

use axum::{Router, body::Bytes, extract::ConnectInfo, routing::get, routing::post};
use platform::http::{
    server::{ServerLimits, serve},
    testing::{Stalled, read_response, stall_after},
};
use tokio::{
    io::AsyncWriteExt as _,
    net::{TcpListener, TcpStream},
    sync::{Notify, oneshot},
    task::JoinHandle,
};

/// Generous bounds: a probe fails only when the server does not react at all.
const PATIENCE: Duration = Duration::from_secs(10);

struct Server {
    address: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    handle: JoinHandle<io::Result<()>>,
}

impl Server {
    async fn start(router: Router, limits: ServerLimits) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        let (stop, stopped) = oneshot::channel::<()>();
        let handle = tokio::spawn(serve(listener, router, limits, async {
            let _ = stopped.await;
        }));
        Self { address, stop: Some(stop), handle }
    }

    /// Signals shutdown and waits for `serve` to return.
    async fn stop(mut self) -> io::Result<()> {
        let _ = self.stop.take().expect("running").send(());
        tokio::time::timeout(PATIENCE, self.handle)
            .await
            .expect("serve returned within the bound")
            .expect("serve did not panic")
    }
}

fn limits(header_ms: u64, request_ms: u64, drain_ms: u64) -> ServerLimits {
    ServerLimits {
        header_read_timeout: Duration::from_millis(header_ms),
        request_timeout: Duration::from_millis(request_ms),
        shutdown_drain: Duration::from_millis(drain_ms),
    }
}

fn routes() -> Router {
    Router::new()
        .route("/hello", get(|| async { "hello" }))
        .route("/echo", post(|body: Bytes| async move { body }))
        .route("/peer", get(|ConnectInfo(peer): ConnectInfo<SocketAddr>| async move { peer.to_string() }))
}

async fn get_raw(address: SocketAddr, path: &str) -> platform::http::testing::RawResponse {
    let mut stream = TcpStream::connect(address).await.unwrap();
    stream.write_all(format!("GET {path} HTTP/1.1\r\nhost: test\r\n\r\n").as_bytes()).await.unwrap();
    read_response(&mut stream, PATIENCE).await.unwrap().expect("an answer")
}

#[tokio::test]
async fn a_client_sending_its_head_slowly_is_disconnected_after_the_header_timeout() {
    let server = Server::start(routes(), limits(300, 60_000, 1_000)).await;
    assert_eq!(get_raw(server.address, "/hello").await.status, 200, "a whole head is served");
    let outcome = stall_after(server.address, b"GET /hel", PATIENCE).await.unwrap();
    assert_eq!(outcome, Stalled::Closed, "half a request line, then silence: disconnected without an answer");
    server.stop().await.unwrap();
}

#[tokio::test]
async fn a_request_whose_body_stalls_gets_a_json_408_and_its_connection_closes() {
    let server = Server::start(routes(), limits(60_000, 300, 1_000)).await;
    let head = "POST /echo HTTP/1.1\r\nhost: test\r\ncontent-type: application/json\r\ncontent-length: 100\r\n\r\n";
    let outcome = stall_after(server.address, format!("{head}{{\"partial\":").as_bytes(), PATIENCE).await.unwrap();
    let Stalled::Answered(response) = outcome else { panic!("expected an answer, got {outcome:?}") };
    assert_eq!(response.status, 408, "{response:?}");
    assert_eq!(response.header("connection"), Some("close"));
    let body: serde_json::Value = serde_json::from_slice(&response.body).expect("a JSON body");
    assert_eq!(body["success"], false);
    assert_eq!(body["message"], "Request not completed within 300 ms");
    server.stop().await.unwrap();
}

#[tokio::test]
async fn shutdown_closes_a_stuck_connection_at_the_drain_deadline() {
    let entered = Arc::new(Notify::new());
    let signal = entered.clone();
    let router = routes().route(
        "/stuck",
        get(move || {
            let signal = signal.clone();
            async move {
                signal.notify_one();
                std::future::pending::<&'static str>().await
            }
        }),
    );
    // Header and request timeouts far beyond the drain: only the drain deadline can end this connection.
    let server = Server::start(router, limits(60_000, 60_000, 300)).await;
    let mut stuck = TcpStream::connect(server.address).await.unwrap();
    stuck.write_all(b"GET /stuck HTTP/1.1\r\nhost: test\r\n\r\n").await.unwrap();
    entered.notified().await;
    server.stop().await.expect("serve returns once the drain deadline passed");
    let answer = read_response(&mut stuck, PATIENCE).await.expect("the connection is closed, not left hanging");
    assert_eq!(answer, None, "closed without an answer");
}

#[tokio::test]
async fn an_in_flight_request_finishes_during_the_drain_while_new_connections_are_refused() {
    let entered = Arc::new(Notify::new());
    let release = Arc::new(Notify::new());
    let (signal, gate) = (entered.clone(), release.clone());
    let router = routes().route(
        "/slow",
        get(move || {
            let (signal, gate) = (signal.clone(), gate.clone());
            async move {
                signal.notify_one();
                gate.notified().await;
                "finished"
            }
        }),
    );
    let server = Server::start(router, limits(60_000, 60_000, 30_000)).await;
    let address = server.address;
    let mut in_flight = TcpStream::connect(address).await.unwrap();
    in_flight.write_all(b"GET /slow HTTP/1.1\r\nhost: test\r\n\r\n").await.unwrap();
    entered.notified().await;
    let stopping = tokio::spawn(server.stop());
    // Draining begins when the listener closes: only then is the handler let go.
    let mut refused = false;
    for _ in 0..1_000 {
        if TcpStream::connect(address).await.is_err() {
            refused = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(refused, "the listener closes at the shutdown signal");
    release.notify_one();
    let response = read_response(&mut in_flight, PATIENCE).await.unwrap().expect("an answer");
    assert_eq!((response.status, response.body_text().as_str()), (200, "finished"));
    stopping.await.unwrap().expect("serve returns once the connection closed");
}

#[tokio::test]
async fn handlers_see_the_tcp_peer_as_connect_info() {
    let server = Server::start(routes(), limits(60_000, 60_000, 1_000)).await;
    let mut stream = TcpStream::connect(server.address).await.unwrap();
    let local = stream.local_addr().unwrap();
    stream.write_all(b"GET /peer HTTP/1.1\r\nhost: test\r\n\r\n").await.unwrap();
    let response = read_response(&mut stream, PATIENCE).await.unwrap().expect("an answer");
    assert_eq!(response.body_text(), local.to_string());
    drop(stream);
    server.stop().await.unwrap();
}
