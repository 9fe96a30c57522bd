//! The gRPC port over TLS (GRPC_TLS_CERT_FILE, GRPC_TLS_KEY_FILE), with a CA generated at test time: a client
//! trusting that CA (what the gateway does with an https:// PAYMENT_SERVICE_URL and TLS_CA_FILE) is served,
//! the `--healthcheck` probe reaches the port through TLS, and a plaintext client is not served.
use crate::support;

use std::{
    collections::HashMap,
    net::{IpAddr, Ipv4Addr},
    time::{Duration, Instant},
};

use payment_service::{healthcheck, proto::payment_service_server::SERVICE_NAME};
use platform::{config::ServerIdentity, tls::testing::TestPki};
use tonic_health::pb::{HealthCheckRequest, health_check_response::ServingStatus, health_client::HealthClient};

const LOCALHOST: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);

#[tokio::test]
async fn the_grpc_port_serves_tls_and_the_healthcheck_probe_speaks_it() {
    let pki = TestPki::new();
    let (cert_file, key_file) = (pki.cert_file(), pki.key_file());
    let settings = [("GRPC_TLS_CERT_FILE", cert_file.as_str()), ("GRPC_TLS_KEY_FILE", key_file.as_str())];
    let app = support::spawn_unready(&settings).await;
    let port: u16 = app.address.rsplit(':').next().and_then(|port| port.parse().ok()).expect("the app's port");
    let identity = ServerIdentity::from_source(&HashMap::from(settings), "GRPC_TLS_CERT_FILE", "GRPC_TLS_KEY_FILE")
        .expect("valid files")
        .expect("TLS settings");

    let deadline = Instant::now() + Duration::from_secs(30);
    while !healthcheck::probe(LOCALHOST, port, Some(&identity)).await {
        assert!(Instant::now() < deadline, "the TLS health probe never saw SERVING");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    let channel = tonic::transport::Endpoint::from_shared(format!("https://localhost:{port}"))
        .expect("a URL")
        .tls_config(platform::tls::grpc_client(&pki.roots()))
        .expect("client TLS")
        .connect()
        .await
        .expect("a TLS connection trusting the test CA");
    let status = HealthClient::new(channel)
        .check(HealthCheckRequest { service: SERVICE_NAME.to_owned() })
        .await
        .expect("an answer over TLS")
        .into_inner()
        .status;
    assert_eq!(status, ServingStatus::Serving as i32);

    assert!(!healthcheck::probe(LOCALHOST, port, None).await, "a plaintext client must not be served");
    app.stop().await.expect("a clean stop");
}

#[tokio::test]
async fn a_tls_certificate_without_its_key_or_with_another_key_stops_startup() {
    let pki = TestPki::new();
    let other = TestPki::new();
    let (cert_file, other_key) = (pki.cert_file(), other.key_file());
    let config = |settings: &[(&'static str, &str)]| {
        payment_service::config::Config::from_source(&HashMap::from_iter(settings.iter().copied()))
    };
    let error = config(&[("GRPC_TLS_CERT_FILE", &cert_file)]).expect_err("a certificate without its key");
    assert_eq!(error.variable, "GRPC_TLS_KEY_FILE");
    let mismatched =
        config(&[("GRPC_TLS_CERT_FILE", &cert_file), ("GRPC_TLS_KEY_FILE", &other_key)]).expect("readable");
    let error =
        payment_service::startup::Application::build(mismatched).await.err().expect("a key of another certificate");
    assert!(format!("{error:#}").contains("does not fit"), "{error:#}");
}
