//! The rules the payment-service owns (an order is charged at most once, by its owner, for its total), between
//! the gRPC transport and the store.
pub mod payments;
