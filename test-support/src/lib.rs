//! What the services' tests share, kept once: the engines' addresses (`scripts/engines.py` exports them), a JWKS
//! issuer playing the user-service, Prometheus samples, a MongoDB client that records its writes, the check of a service's production rule, and ports. A
//! dev-dependency only; no service links it.
pub mod config;
pub mod engines;
pub mod issuer;
pub mod kafka;
pub mod mongo;
pub mod prometheus;
pub mod running;

pub use issuer::Issuer;
pub use running::Running;

/// The engine setting `name` (`MONGODB_URI`, `KAFKA_BROKERS`) exported by `scripts/engines.py`; without it
/// the test stops with the one command that provides it.
pub fn env(name: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| {
        panic!(
            "{name} is not set: these tests need the engines; run them as \
             `python3 scripts/engines.py run -- cargo test -p <crate>` (or `just test-crate <crate>`, or scripts/test)"
        )
    })
}

/// A port nothing listens on (bound, read, released).
pub fn closed_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").expect("a free port").local_addr().expect("bound").port()
}

/// A MongoDB URI where nothing listens: a service given it must start anyway and report the database down.
pub fn unreachable_mongodb_uri() -> String {
    format!("mongodb://127.0.0.1:{}/?directConnection=true", closed_port())
}

/// Turns the logs of a service started in-process on when the run asks for them (`TEST_LOG=1`): they are off by
/// default because they would bury the test output.
pub fn logs_on_request(service: &str) {
    if std::env::var_os("TEST_LOG").is_some() {
        let tracing = platform::config::TracingConfig::disabled(service);
        let _ = platform::telemetry::init(platform::config::LogFormat::Text, &tracing);
    }
}
