//! payment-service: charges orders over gRPC (`payment.v1.PaymentService`), stores payments in MongoDB and
//! announces each successful payment on Kafka through a transactional outbox.

pub mod config;
pub mod deadline;
pub mod domain;
pub mod error;
pub mod events;
pub mod grpc;
pub mod healthcheck;
pub mod metrics;
pub mod projection;
pub mod startup;
pub mod store;
pub mod use_cases;
// Shared with every service, kept once in the platform crate.
pub use platform::{auth, backoff, shutdown, telemetry};

/// The generated `payment.v1` messages, server and client (`proto::payment_service_client::PaymentServiceClient`).
pub mod proto {
    tonic::include_proto!("payment.v1");

    /// The encoded descriptors of `payment.v1`, served by gRPC reflection.
    pub const FILE_DESCRIPTOR_SET: &[u8] = tonic::include_file_descriptor_set!("payment_v1_descriptor");
}
