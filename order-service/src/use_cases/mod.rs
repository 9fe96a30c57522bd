//! The rules the order-service owns, between the transports (HTTP routes, Kafka consumer) and the store.
pub mod place_order;
