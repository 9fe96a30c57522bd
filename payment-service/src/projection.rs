//! The payment-service's own record of the orders it may be asked to charge: owner, total, currency and
//! whether the order is ready to pay. Built from the order-service's events (`new-order`, `order-processed`),
//! never from what a caller says, so that `Pay` decides on facts this service holds itself, and keeps
//! deciding while the order-service is down.
//!
//! Each event is an idempotent upsert by order id that only moves an order forward (`pending` before
//! `processed`): a redelivered or late event changes nothing, whatever order the two topics deliver in.
use mongodb::{
    Collection, Database,
    bson::{self, doc},
    options::UpdateOptions,
};
use serde::{Deserialize, Serialize};

use crate::store::{StoreError, is_duplicate_key};

/// How far an order has come, as far as paying it is concerned.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OrderStage {
    /// Created, not yet processed: not payable yet.
    Pending,
    /// Processed: payable.
    Processed,
}

impl OrderStage {
    fn rank(self) -> i32 {
        match self {
            Self::Pending => 0,
            Self::Processed => 1,
        }
    }
}

/// One order as this service knows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct KnownOrder {
    #[serde(rename = "_id")]
    pub order_id: String,
    pub user_id: String,
    pub total_cents: i64,
    pub currency: String,
    pub stage: OrderStage,
    /// `stage` as a number, so that the upsert's "only forward" condition is a single comparison.
    pub rank: i32,
    /// The event that brought the order to this stage.
    pub event_id: String,
    pub updated_at: bson::DateTime,
}

impl KnownOrder {
    pub fn new(
        order_id: String,
        user_id: String,
        total_cents: i64,
        currency: String,
        stage: OrderStage,
        event_id: String,
    ) -> Self {
        Self {
            order_id,
            user_id,
            total_cents,
            currency,
            stage,
            rank: stage.rank(),
            event_id,
            updated_at: bson::DateTime::now(),
        }
    }
}

/// What applying an event did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Applied {
    /// The order is new here, or moved forward.
    Changed,
    /// The order was already at this stage or further (a redelivery, or the later event came first).
    Unchanged,
}

#[derive(Clone)]
pub struct OrderProjection {
    orders: Collection<KnownOrder>,
}

impl OrderProjection {
    pub fn new(database: &Database) -> Self {
        Self { orders: database.collection("orders") }
    }

    pub async fn find(&self, order_id: &str) -> Result<Option<KnownOrder>, StoreError> {
        Ok(self.orders.find_one(doc! { "_id": order_id }).await?)
    }

    /// Records `order` unless this service already knows it at the same stage or a later one.
    pub async fn apply(&self, order: &KnownOrder) -> Result<Applied, StoreError> {
        let set = bson::to_document(order).map_err(|error| StoreError::Other(error.into()))?;
        let result = self
            .orders
            .update_one(doc! { "_id": &order.order_id, "rank": { "$lt": order.rank } }, doc! { "$set": set })
            .with_options(UpdateOptions::builder().upsert(true).build())
            .await;
        match result {
            Ok(result) if result.matched_count == 1 || result.upserted_id.is_some() => Ok(Applied::Changed),
            Ok(_) => Ok(Applied::Unchanged),
            // The order exists at this stage or later, so the filter missed and the upsert's insert met the
            // existing `_id`: nothing to do.
            Err(error) if is_duplicate_key(&error) => Ok(Applied::Unchanged),
            Err(error) => Err(error.into()),
        }
    }
}
