//! A TCP relay in front of the MongoDB engine that a test can cut, to see the service lose its database
//! without stopping the engine the other tests share.
use std::net::SocketAddr;

use tokio::{
    net::{TcpListener, TcpStream},
    task::{JoinHandle, JoinSet},
};

pub struct TcpProxy {
    port: u16,
    relay: JoinHandle<()>,
}

impl TcpProxy {
    pub async fn start(target: SocketAddr) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("a free port");
        let port = listener.local_addr().expect("bound").port();
        let relay = tokio::spawn(async move {
            // Owned by this task: aborting the task drops the set, which aborts every open connection.
            let mut connections = JoinSet::new();
            while let Ok((mut inbound, _)) = listener.accept().await {
                connections.spawn(async move {
                    if let Ok(mut outbound) = TcpStream::connect(target).await {
                        let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                    }
                });
                while connections.try_join_next().is_some() {}
            }
        });
        Self { port, relay }
    }

    /// A connection string to the engine through this proxy.
    pub fn mongodb_uri(&self) -> String {
        format!("mongodb://127.0.0.1:{}/?directConnection=true", self.port)
    }

    /// Closes the listening port and every relayed connection.
    pub fn cut(&self) {
        self.relay.abort();
    }
}

impl Drop for TcpProxy {
    fn drop(&mut self) {
        self.relay.abort();
    }
}

/// host:port of the engine in MONGODB_URI (`mongodb://127.0.0.1:PORT/?directConnection=true`).
pub fn engine_address() -> SocketAddr {
    let uri = test_support::env("MONGODB_URI");
    let rest = uri.strip_prefix("mongodb://").expect("a mongodb:// URI");
    let host_port = rest.split(['/', '?']).next().expect("host:port");
    host_port.parse().unwrap_or_else(|error| panic!("MONGODB_URI host {host_port:?}: {error}"))
}
