//! Parse-don't-validate types for orders.
mod money;
mod order_view;
mod quantity;
mod status;

pub use money::{CURRENCY, Money};
pub use order_view::{OrderView, rfc3339};
pub use quantity::Quantity;
pub use status::OrderStatus;
