//! `payment-service --healthcheck`: asks the running service's standard gRPC health service and
//! exits 0 when `payment.v1.PaymentService` is SERVING. Container runtimes use it as a probe that
//! needs no grpc_health_probe in the image.
use std::{
    net::{IpAddr, Ipv4Addr},
    time::Duration,
};

use tonic_health::pb::{HealthCheckRequest, health_check_response::ServingStatus, health_client::HealthClient};

use crate::proto::payment_service_server::SERVICE_NAME;

pub async fn probe(host: IpAddr, port: u16) -> bool {
    let host = if host.is_unspecified() { IpAddr::V4(Ipv4Addr::LOCALHOST) } else { host };
    let check = async {
        let channel =
            tonic::transport::Endpoint::from_shared(format!("http://{host}:{port}")).ok()?.connect().await.ok()?;
        let mut client = HealthClient::new(channel);
        let response = client.check(HealthCheckRequest { service: SERVICE_NAME.to_owned() }).await.ok()?;
        Some(response.into_inner().status == ServingStatus::Serving as i32)
    };
    matches!(tokio::time::timeout(Duration::from_secs(4), check).await, Ok(Some(true)))
}
