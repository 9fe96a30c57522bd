//! One shape for an application a test runs in-process: spawned on port 0, waited for until `/ready`, stopped
//! gracefully by `stop`, aborted when dropped (a failing test leaves no server behind).
use std::{future::Future, pin::Pin, time::Duration};

use tokio::{sync::oneshot, task::JoinHandle};

/// The future an application serves until (`run_until`'s argument).
pub type StopFuture = Pin<Box<dyn Future<Output = ()> + Send>>;

pub struct Running {
    /// `http://127.0.0.1:<port>`.
    pub address: String,
    /// A client with a generous timeout: a slow shared machine must not fail a test.
    pub client: reqwest::Client,
    stop: Option<oneshot::Sender<()>>,
    handle: Option<JoinHandle<anyhow::Result<()>>>,
}

impl Running {
    /// Runs `serve` (e.g. `|stop| app.run_until(stop)`) for the application listening on `port`.
    pub fn spawn<F, Fut>(port: u16, serve: F) -> Self
    where
        F: FnOnce(StopFuture) -> Fut,
        Fut: Future<Output = anyhow::Result<()>> + Send + 'static,
    {
        let (stop, stopped) = oneshot::channel::<()>();
        let handle = tokio::spawn(serve(Box::pin(async {
            let _ = stopped.await;
        })));
        Self {
            address: format!("http://127.0.0.1:{port}"),
            client: platform::tls::http_client(&Default::default())
                .expect("rustls with the web roots")
                .timeout(Duration::from_secs(30))
                .build()
                .expect("an HTTP client"),
            stop: Some(stop),
            handle: Some(handle),
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.address)
    }

    /// The listening socket, for raw-socket probes.
    pub fn socket_address(&self) -> std::net::SocketAddr {
        self.address.trim_start_matches("http://").parse().expect("an ip:port address")
    }

    /// Waits until `GET /ready` answers 200 (at most 30 s: the engines may be slow to answer on a busy machine).
    pub async fn wait_ready(&self) {
        for _ in 0..600 {
            if let Ok(response) = self.client.get(self.url("/ready")).send().await
                && response.status() == 200
            {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("the app at {} never became ready", self.address);
    }

    /// `GET /metrics`: the Prometheus text exposition (checked to be served as such).
    pub async fn metrics(&self) -> String {
        let response = self.client.get(self.url("/metrics")).send().await.expect("request sent");
        let content_type = response.headers()["content-type"].to_str().unwrap_or_default().to_owned();
        assert!(content_type.starts_with("text/plain") && content_type.contains("version=0.0.4"), "{content_type}");
        response.text().await.expect("a body")
    }

    /// `GET /ready`: its status and JSON body.
    pub async fn ready(&self) -> (u16, serde_json::Value) {
        let response = self.client.get(self.url("/ready")).send().await.expect("request sent");
        (response.status().as_u16(), response.json().await.expect("a JSON body"))
    }

    /// Checks an app whose dependency `check` is down: alive (`/health` answers 200) but not ready (`/ready` answers
    /// 503 with that check `down`); returns the `/ready` body.
    pub async fn assert_alive_but_not_ready(&self, check: &str) -> serde_json::Value {
        assert_eq!(self.client.get(self.url("/health")).send().await.expect("request sent").status(), 200);
        let (status, body) = self.ready().await;
        assert_eq!((status, body["checks"][check].as_str()), (503, Some("down")), "{body}");
        body
    }

    /// Checks how `platform::http::observe` counts this app's requests where no route matches: under the one
    /// label `unmatched` (never the raw path, which would make the series unbounded), as is each scrape under
    /// `/metrics`.
    pub async fn assert_unmatched_requests_counted_without_their_path(&self) {
        let before = self.metrics().await;
        let path = format!("/no/such/route/{}", uuid::Uuid::new_v4().simple());
        assert_eq!(self.client.get(self.url(&path)).send().await.expect("request sent").status(), 404);
        let after = self.metrics().await;
        let counted = |route, status| crate::prometheus::requests_between(&before, &after, "GET", route, status);
        assert_eq!(counted("unmatched", "404"), 1.0);
        assert_eq!(counted("/metrics", "200"), 1.0, "the scrape before the request");
        assert!(!after.contains("/no/such/route"), "raw paths never become label values");
    }

    /// Graceful shutdown, waiting for the server task to finish cleanly (at most 30 s: its workers have a drain
    /// deadline of 15 s).
    pub async fn stop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(handle) = self.handle.take() {
            tokio::time::timeout(Duration::from_secs(30), handle)
                .await
                .expect("the server stopped within 30 s")
                .expect("server task")
                .expect("server ran cleanly");
        }
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        if let Some(handle) = self.handle.take() {
            handle.abort();
        }
    }
}
