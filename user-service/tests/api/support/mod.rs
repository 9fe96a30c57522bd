//! Spawns the real user-service on port 0 against the MongoDB-protocol engine started by
//! `scripts/engines.py` (MONGODB_URI); every app gets its own database.
#![allow(dead_code)]

use std::collections::HashMap;

use test_support::Running;
use user_service::{config::Config, startup::Application};

pub struct TestApp {
    pub running: Running,
    pub database: String,
}

impl std::ops::Deref for TestApp {
    type Target = Running;
    fn deref(&self) -> &Running {
        &self.running
    }
}

pub fn unique_database() -> String {
    format!("users_test_{}", uuid::Uuid::new_v4().simple())
}

/// Starts the app with test defaults overridden by `settings`, and waits until it is ready.
pub async fn spawn(settings: &[(&str, &str)]) -> TestApp {
    let app = spawn_unready(settings).await;
    app.wait_ready().await;
    app
}

pub async fn spawn_unready(settings: &[(&str, &str)]) -> TestApp {
    test_support::logs_on_request("user-service");
    let uri = test_support::env("MONGODB_URI");
    let database = unique_database();
    let mut source: HashMap<&str, &str> = HashMap::from([
        ("HOST", "127.0.0.1"),
        ("PORT", "0"),
        ("MONGODB_URI", uri.as_str()),
        ("MONGODB_DATABASE", database.as_str()),
    ]);
    source.extend(settings.iter().copied());
    let database = source["MONGODB_DATABASE"].to_owned();
    let config = Config::from_source(&source).expect("test configuration is valid");
    let app = Application::build(config).await.expect("the app builds");
    let running = Running::spawn(app.port(), |stop| app.run_until(stop));
    TestApp { running, database }
}

impl TestApp {
    /// Graceful shutdown, waiting for the server task to finish.
    pub async fn stop(mut self) {
        self.running.stop().await;
    }

    pub async fn post_json(&self, path: &str, body: &serde_json::Value) -> reqwest::Response {
        self.client.post(self.url(path)).json(body).send().await.expect("request sent")
    }

    pub async fn register(&self, username: &str, email: &str, password: &str) -> reqwest::Response {
        self.post_json(
            "/users/register",
            &serde_json::json!({ "username": username, "email": email, "password": password }),
        )
        .await
    }

    pub async fn login(&self, email: &str, password: &str) -> reqwest::Response {
        self.post_json("/users/login", &serde_json::json!({ "email": email, "password": password })).await
    }

    /// A login as relayed by a proxy for the client at `address` (believed only with TRUSTED_PROXIES).
    /// Owns its arguments, so that a burst can be built from formatted strings.
    pub async fn login_from(
        &self,
        address: impl Into<String>,
        email: impl Into<String>,
        password: impl Into<String>,
    ) -> reqwest::Response {
        self.client
            .post(self.url("/users/login"))
            .header("x-forwarded-for", address.into())
            .json(&serde_json::json!({ "email": email.into(), "password": password.into() }))
            .send()
            .await
            .expect("request sent")
    }

    /// Registers a fresh user and returns (email, password, token).
    pub async fn registered_token(&self) -> (String, String, String) {
        let name = format!("u{}", &uuid::Uuid::new_v4().simple().to_string()[..12]);
        let email = format!("{name}@example.com");
        let password = "s3cret-password".to_owned();
        assert_eq!(self.register(&name, &email, &password).await.status(), 201);
        let body: serde_json::Value = self.login(&email, &password).await.json().await.unwrap();
        (email, password, body["token"].as_str().expect("token").to_owned())
    }
}
