//! The Kafka side of the order lifecycle: the event envelope, the outbox relay that publishes
//! what the database says is unpublished (`new-order`), and the consumer that moves orders through
//! their states and announces the processed ones.
pub mod consumer;
pub mod envelope;
pub mod kafka;
pub mod relay;
pub mod unpublished;
