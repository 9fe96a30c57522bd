//! The payment-service's own record of the orders it may be asked to charge: owner, total, currency and
//! whether the order is ready to pay. Built from the order-service's events (`new-order`, `order-processed`),
//! never from what a caller says, so that `Pay` decides on facts this service holds itself, and keeps
//! deciding while the order-service is down.
//!
//! Each event is an idempotent write by order id that only moves an order forward (`pending` before
//! `processed`): a redelivered or late event changes nothing, whatever order the two topics deliver in. The
//! consumer applies what it has received as one batch (an insert of the orders new here, an update of those it
//! moves forward), and [`ProcessedOrders`] tells the `Pay` calls waiting for an order that it is now known as
//! processed.
use std::{
    collections::HashMap,
    sync::{Arc, Mutex, PoisonError},
};

use futures::TryStreamExt as _;
use mongodb::{
    Collection, Database,
    bson::{self, doc},
    error::ErrorKind,
    options::{Acknowledgment, UpdateOptions, WriteConcern},
};
use serde::{Deserialize, Serialize};
use tokio::sync::oneshot;

use platform::mongo::{UPDATE_CHUNK, is_duplicate_key, pick, position_of_id};

use crate::store::StoreError;

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

    /// The known orders among `order_ids`, in one command.
    pub async fn find_many(&self, order_ids: &[&str]) -> Result<Vec<KnownOrder>, StoreError> {
        if order_ids.is_empty() {
            return Ok(Vec::new());
        }
        let cursor = self.orders.find(doc! { "_id": { "$in": order_ids } }).await?;
        Ok(cursor.try_collect().await?)
    }

    /// Records a batch of order events, durable before it returns; the orders it wrote, one per order id (the
    /// furthest stage the batch brings it to: applying the earlier stage first would change nothing more). The
    /// orders new here are inserted with one unordered `insert_many`; an insert that meets an existing `_id` is that
    /// order's "already known", and those of them the batch brings to a later stage are moved forward with a
    /// conditional update (one per stage and [`UPDATE_CHUNK`] orders). (The engine commits each statement of a
    /// `bulkWrite` on its own, one journal flush each, so no write here is one statement per order.) A failure
    /// fails the batch, which the caller retries whole: every write is conditional, so nothing applies twice.
    pub async fn apply_batch<'a>(&self, events: &'a [KnownOrder]) -> Result<Vec<&'a KnownOrder>, StoreError> {
        let latest = furthest_per_order(events);
        let known = self.insert_new(&latest).await?;
        let forward: Vec<&KnownOrder> = known
            .into_iter()
            .map(|index| latest[index])
            .filter(|order| order.rank > OrderStage::Pending.rank())
            .collect();
        self.move_forward(&forward).await?;
        Ok(latest)
    }

    /// Inserts the orders not known yet, with one unordered `insert_many`; the indexes of those that were known
    /// already (a duplicate `_id`).
    async fn insert_new(&self, orders: &[&KnownOrder]) -> Result<Vec<usize>, StoreError> {
        if orders.is_empty() {
            return Ok(Vec::new());
        }
        // The client's write concern, spelled out: offsets are committed on the strength of this write.
        let durable = WriteConcern::builder().w(Acknowledgment::Majority).journal(true).build();
        let error = match self.orders.insert_many(orders.iter().copied()).ordered(false).write_concern(durable).await {
            Ok(_) => return Ok(Vec::new()),
            Err(error) => error,
        };
        let ErrorKind::InsertMany(failure) = &*error.kind else {
            return Err(error.into());
        };
        let write_errors = failure.write_errors.as_deref().unwrap_or_default();
        if failure.write_concern_error.is_some() || write_errors.iter().any(|write_error| write_error.code != 11000) {
            return Err(error.into());
        }
        Ok(write_errors.iter().map(|write_error| write_error.index).collect())
    }

    /// Moves known orders forward to the stage given, each only if it is behind it: one update per stage and
    /// [`UPDATE_CHUNK`] orders (the filter is on `_id` and `rank` alone, which the engine answers through the `_id`
    /// index), each order's own document picked out of a literal array by the position of its `_id`.
    async fn move_forward(&self, orders: &[&KnownOrder]) -> Result<(), StoreError> {
        let mut ranks: Vec<i32> = orders.iter().map(|order| order.rank).collect();
        ranks.sort_unstable();
        ranks.dedup();
        for rank in ranks {
            let at_rank: Vec<&KnownOrder> = orders.iter().copied().filter(|order| order.rank == rank).collect();
            for chunk in at_rank.chunks(UPDATE_CHUNK) {
                let ids: Vec<&str> = chunk.iter().map(|order| order.order_id.as_str()).collect();
                let replacements = chunk
                    .iter()
                    .map(bson::to_bson)
                    .collect::<Result<Vec<_>, _>>()
                    .map_err(|error| StoreError::Other(error.into()))?;
                let position = position_of_id(&ids);
                let filter = doc! { "_id": { "$in": &ids }, "rank": { "$lt": rank } };
                let update = vec![doc! { "$replaceWith": pick(replacements, position) }];
                let durable = WriteConcern::builder().w(Acknowledgment::Majority).journal(true).build();
                self.orders.update_many(filter, update).write_concern(durable).await?;
            }
        }
        Ok(())
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

/// One event per order id: the one with the furthest stage (the first of equals), in first-seen order.
pub fn furthest_per_order(events: &[KnownOrder]) -> Vec<&KnownOrder> {
    let mut position: HashMap<&str, usize> = HashMap::with_capacity(events.len());
    let mut latest: Vec<&KnownOrder> = Vec::with_capacity(events.len());
    for event in events {
        match position.get(event.order_id.as_str()) {
            Some(&index) if latest[index].rank < event.rank => latest[index] = event,
            Some(_) => {}
            None => {
                position.insert(event.order_id.as_str(), latest.len());
                latest.push(event);
            }
        }
    }
    latest
}

/// `Pay` calls waiting for orders to become known as processed: the consumer announces every order it has
/// durably recorded as processed, and the waiters for that order wake up. Bounded: beyond `limit` waiters, a call
/// gets no watch (it answers from what it read, without waiting). In-process only: an order another replica's
/// consumer records wakes nobody here, which is why a waiter reads again when its wait ends.
#[derive(Clone)]
pub struct ProcessedOrders {
    waiters: Arc<Mutex<Waiters>>,
}

struct Waiters {
    limit: usize,
    count: usize,
    next_id: u64,
    by_order: HashMap<String, Vec<(u64, oneshot::Sender<()>)>>,
}

/// One call's watch on one order; dropping it stops watching.
pub struct Watch {
    id: u64,
    order_id: String,
    announced: oneshot::Receiver<()>,
    waiters: Arc<Mutex<Waiters>>,
}

impl ProcessedOrders {
    pub fn new(limit: usize) -> Self {
        let waiters = Waiters { limit, count: 0, next_id: 0, by_order: HashMap::new() };
        Self { waiters: Arc::new(Mutex::new(waiters)) }
    }

    /// Starts watching `order_id`; `None` when `limit` calls are watching already.
    pub fn watch(&self, order_id: &str) -> Option<Watch> {
        let mut waiters = self.waiters.lock().unwrap_or_else(PoisonError::into_inner);
        if waiters.count >= waiters.limit {
            return None;
        }
        let (announce, announced) = oneshot::channel();
        let id = waiters.next_id;
        waiters.next_id += 1;
        waiters.count += 1;
        waiters.by_order.entry(order_id.to_owned()).or_default().push((id, announce));
        Some(Watch { id, order_id: order_id.to_owned(), announced, waiters: self.waiters.clone() })
    }

    /// Wakes the calls watching any of these orders that is processed (durably recorded so, by the caller).
    pub fn announce<'a>(&self, orders: impl IntoIterator<Item = &'a KnownOrder>) {
        let mut waiters = self.waiters.lock().unwrap_or_else(PoisonError::into_inner);
        if waiters.count == 0 {
            return;
        }
        for order in orders.into_iter().filter(|order| order.stage == OrderStage::Processed) {
            if let Some(watching) = waiters.by_order.remove(&order.order_id) {
                waiters.count -= watching.len();
                for (_, announce) in watching {
                    let _ = announce.send(());
                }
            }
        }
    }

    /// Calls watching now.
    pub fn watching(&self) -> usize {
        self.waiters.lock().unwrap_or_else(PoisonError::into_inner).count
    }
}

impl Watch {
    /// Resolves once the order is announced processed (never, if it is not).
    pub async fn processed(&mut self) {
        if (&mut self.announced).await.is_err() {
            std::future::pending::<()>().await;
        }
    }
}

impl Drop for Watch {
    fn drop(&mut self) {
        let mut waiters = self.waiters.lock().unwrap_or_else(PoisonError::into_inner);
        let Some(watching) = waiters.by_order.get_mut(&self.order_id) else {
            // Announced: its entry went with the announcement.
            return;
        };
        let before = watching.len();
        watching.retain(|(id, _)| *id != self.id);
        let removed = before - watching.len();
        if watching.is_empty() {
            waiters.by_order.remove(&self.order_id);
        }
        waiters.count -= removed;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(order_id: &str, stage: OrderStage, event_id: &str) -> KnownOrder {
        KnownOrder::new(order_id.into(), "u".into(), 100, "EUR".into(), stage, event_id.into())
    }

    #[test]
    fn a_batch_keeps_the_furthest_stage_of_each_order_whatever_the_arrival_order() {
        let events = [
            event("a", OrderStage::Processed, "a2"),
            event("b", OrderStage::Pending, "b1"),
            event("a", OrderStage::Pending, "a1"),
            event("b", OrderStage::Processed, "b2"),
            event("b", OrderStage::Processed, "b2-again"),
            event("c", OrderStage::Pending, "c1"),
        ];
        let latest: Vec<&str> = furthest_per_order(&events).iter().map(|order| order.event_id.as_str()).collect();
        assert_eq!(latest, ["a2", "b2", "c1"]);
    }

    #[tokio::test]
    async fn an_announcement_wakes_the_watchers_of_that_processed_order_only() {
        let orders = ProcessedOrders::new(10);
        let (mut first, mut second, mut other) =
            (orders.watch("a").unwrap(), orders.watch("a").unwrap(), orders.watch("b").unwrap());
        assert_eq!(orders.watching(), 3);
        orders.announce(&[event("a", OrderStage::Pending, "a1"), event("c", OrderStage::Processed, "c2")]);
        assert_eq!(orders.watching(), 3, "a pending order wakes nobody");
        orders.announce(&[event("a", OrderStage::Processed, "a2")]);
        first.processed().await;
        second.processed().await;
        assert_eq!(orders.watching(), 1, "the announced watches are gone");
        let pending = tokio::time::timeout(std::time::Duration::from_millis(10), other.processed()).await;
        assert!(pending.is_err(), "b was not announced");
        drop((first, second, other));
        assert_eq!(orders.watching(), 0);
    }

    #[test]
    fn watches_are_bounded_and_a_dropped_watch_frees_its_place() {
        let orders = ProcessedOrders::new(2);
        let first = orders.watch("a").unwrap();
        let _second = orders.watch("b").unwrap();
        assert!(orders.watch("c").is_none(), "no third watch");
        drop(first);
        assert!(orders.watch("c").is_some());
    }
}
