//! Events this service publishes: the envelope, the Kafka producer, the topic it goes to, and the outbox relay.
pub mod envelope;
pub mod producer;
pub mod relay;
pub mod topic;

pub use envelope::{Envelope, PAYMENT_PROCESSED, PaymentProcessed};
pub use relay::OutboxRelay;
