//! The real gateway on port 0 in front of a fake user-service that answers as a test tells it to
//! and records what it received. No engine is needed: the other services are closed ports.
#![allow(dead_code)]

use std::{
    collections::HashMap,
    net::SocketAddr,
    sync::{
        Arc, Mutex,
        atomic::{AtomicU8, AtomicUsize, Ordering},
    },
};

use api_gateway::{config::Config, startup::Application};
use axum::{
    Json, Router,
    http::{HeaderMap, StatusCode, header},
    response::{IntoResponse, Response},
    routing::{get, post},
};
use tokio::{net::TcpListener, sync::oneshot, task::JoinHandle};

/// How the fake user-service answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Mode {
    Ok = 0,
    /// 503 with `Retry-After: 7`: load shed on purpose (a full password hashing queue).
    Shedding = 1,
    /// 503 without Retry-After: broken.
    Failing = 2,
}

#[derive(Default)]
pub struct FakeUsers {
    mode: AtomicU8,
    hits: AtomicUsize,
    forwarded_for: Mutex<Vec<Option<String>>>,
}

impl FakeUsers {
    pub fn set_mode(&self, mode: Mode) {
        self.mode.store(mode as u8, Ordering::SeqCst);
    }

    /// Requests that reached the service.
    pub fn hits(&self) -> usize {
        self.hits.load(Ordering::SeqCst)
    }

    /// The `X-Forwarded-For` of every request received, in order (all its lines, comma-joined).
    pub fn forwarded_for(&self) -> Vec<Option<String>> {
        self.forwarded_for.lock().unwrap().clone()
    }

    fn answer(&self, headers: &HeaderMap) -> Response {
        self.hits.fetch_add(1, Ordering::SeqCst);
        let lines: Vec<&str> = headers.get_all("x-forwarded-for").iter().filter_map(|v| v.to_str().ok()).collect();
        self.forwarded_for.lock().unwrap().push((!lines.is_empty()).then(|| lines.join(", ")));
        match self.mode.load(Ordering::SeqCst) {
            0 => Json(serde_json::json!({ "success": true })).into_response(),
            1 => (
                StatusCode::SERVICE_UNAVAILABLE,
                [(header::RETRY_AFTER, "7")],
                Json(serde_json::json!({ "success": false, "message": "Too many logins at once; retry shortly" })),
            )
                .into_response(),
            _ => (StatusCode::SERVICE_UNAVAILABLE, Json(serde_json::json!({ "success": false, "message": "broken" })))
                .into_response(),
        }
    }
}

pub use test_support::closed_port;

pub struct TestGateway {
    pub address: SocketAddr,
    pub users: Arc<FakeUsers>,
    pub client: reqwest::Client,
    stop: Option<oneshot::Sender<()>>,
    handle: Option<JoinHandle<anyhow::Result<()>>>,
}

/// Starts a fake user-service and the gateway in front of it, with `settings` over the defaults.
pub async fn start(settings: &[(&str, &str)]) -> TestGateway {
    let users = Arc::new(FakeUsers::default());
    let fake = users.clone();
    let handler = move |headers: HeaderMap| {
        let fake = fake.clone();
        async move { fake.answer(&headers) }
    };
    let router = Router::new()
        .route("/users/login", post(handler.clone()))
        .route("/users/register", post(handler.clone()))
        .route("/users/me", get(handler));
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let users_url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, router).await });

    let nowhere = format!("http://127.0.0.1:{}", closed_port());
    let mut source: HashMap<&str, &str> = HashMap::from([
        ("HOST", "127.0.0.1"),
        ("PORT", "0"),
        ("USER_SERVICE_URL", users_url.as_str()),
        ("PRODUCT_SERVICE_URL", nowhere.as_str()),
        ("ORDER_SERVICE_URL", nowhere.as_str()),
        ("PAYMENT_SERVICE_URL", nowhere.as_str()),
    ]);
    source.extend(settings.iter().copied());
    let config = Config::from_source(&source).expect("test configuration is valid");
    let app = Application::build(config).await.expect("the gateway builds");
    let address: SocketAddr = format!("127.0.0.1:{}", app.port()).parse().unwrap();
    let (stop, stopped) = oneshot::channel::<()>();
    let handle = tokio::spawn(app.run_until(async {
        let _ = stopped.await;
    }));
    TestGateway {
        address,
        users,
        client: platform::tls::http_client(&Default::default())
            .expect("rustls with the web roots")
            .build()
            .expect("an HTTP client"),
        stop: Some(stop),
        handle: Some(handle),
    }
}

impl TestGateway {
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.address)
    }

    pub async fn login(&self) -> reqwest::Response {
        self.client
            .post(self.url("/users/login"))
            .json(&serde_json::json!({ "email": "a@example.com", "password": "password" }))
            .send()
            .await
            .expect("request sent")
    }

    pub async fn stop(mut self) {
        let _ = self.stop.take().expect("running").send(());
        self.handle.take().expect("running").await.expect("server task").expect("served cleanly");
    }
}

impl Drop for TestGateway {
    fn drop(&mut self) {
        if let Some(handle) = self.handle.take() {
            handle.abort();
        }
    }
}
