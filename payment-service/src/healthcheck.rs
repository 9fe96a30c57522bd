//! `payment-service --healthcheck`: asks the running service's standard gRPC health service and
//! exits 0 when `payment.v1.PaymentService` is SERVING. Container runtimes use it as a probe that
//! needs no grpc_health_probe in the image. When the port serves TLS (GRPC_TLS_CERT_FILE), the probe
//! connects with TLS and accepts exactly that certificate: it reaches 127.0.0.1, a name the certificate need
//! not carry.
use std::{
    net::{IpAddr, Ipv4Addr},
    time::Duration,
};

use platform::config::ServerIdentity;
use tonic::transport::{Channel, Endpoint};
use tonic_health::pb::{HealthCheckRequest, health_check_response::ServingStatus, health_client::HealthClient};

use crate::proto::payment_service_server::SERVICE_NAME;

pub async fn probe(host: IpAddr, port: u16, tls: Option<&ServerIdentity>) -> bool {
    let host = if host.is_unspecified() { IpAddr::V4(Ipv4Addr::LOCALHOST) } else { host };
    let check = async {
        let channel = connect(host, port, tls).await?;
        let mut client = HealthClient::new(channel);
        let response = client.check(HealthCheckRequest { service: SERVICE_NAME.to_owned() }).await.ok()?;
        Some(response.into_inner().status == ServingStatus::Serving as i32)
    };
    matches!(tokio::time::timeout(Duration::from_secs(4), check).await, Ok(Some(true)))
}

async fn connect(host: IpAddr, port: u16, tls: Option<&ServerIdentity>) -> Option<Channel> {
    let endpoint = Endpoint::from_shared(format!("http://{host}:{port}")).ok()?;
    let Some(identity) = tls else { return endpoint.connect().await.ok() };
    let connector = tokio_rustls::TlsConnector::from(std::sync::Arc::new(platform::tls::pinned_client_config(
        identity.leaf.clone(),
    )));
    // The pinned verifier ignores the name; SNI needs one all the same.
    let name = rustls_pki_types::ServerName::try_from("localhost").ok()?;
    let connect = tower::service_fn(move |_: http::Uri| {
        let (connector, name) = (connector.clone(), name.clone());
        async move {
            let tcp = tokio::net::TcpStream::connect((host, port)).await?;
            let stream = connector.connect(name, tcp).await?;
            Ok::<_, std::io::Error>(hyper_util::rt::TokioIo::new(stream))
        }
    });
    endpoint.connect_with_connector(connect).await.ok()
}
