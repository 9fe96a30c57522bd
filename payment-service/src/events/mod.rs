//! Events: the envelope, the Kafka producer, the topics, the outbox relay that publishes `payment-processed`, and
//! the consumer of the order events that feed the order projection.
pub mod consumer;
pub mod envelope;
pub mod producer;
pub mod relay;
pub mod topic;

pub use consumer::OrderEventsConsumer;
pub use envelope::{Envelope, PAYMENT_PROCESSED, PaymentProcessed};
pub use relay::OutboxRelay;
