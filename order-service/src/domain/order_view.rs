use serde::{Deserialize, Serialize};

use super::OrderStatus;

/// An order as clients and events see it: money as two-decimal numbers, times as RFC 3339.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct OrderView {
    pub id: String,
    pub user_id: String,
    pub product_id: String,
    pub product_name: String,
    pub quantity: u32,
    pub unit_price: f64,
    pub total: f64,
    pub status: OrderStatus,
    pub created_at: String,
    pub updated_at: String,
}

/// A stored time as clients and events show it (RFC 3339; epoch milliseconds if out of its range).
pub fn rfc3339(at: mongodb::bson::DateTime) -> String {
    at.try_to_rfc3339_string().unwrap_or_else(|_| at.timestamp_millis().to_string())
}
