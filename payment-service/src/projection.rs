//! The payment-service's own record of the orders it may be asked to charge: owner, total, currency and
//! whether the order is ready to pay. Built from the order-service's events (`new-order`, `order-processed`),
//! never from what a caller says, so that `Pay` decides on facts this service holds itself, and keeps
//! deciding while the order-service is down.
//!
//! Each event is a record of one stage of one order, inserted once and never changed: the pending record under
//! the order id, the processed one under `<orderId>/processed`. An order is at the furthest stage recorded, so a
//! redelivered or late event changes nothing, whatever order the two topics deliver in. The consumer applies what
//! it has received as one unordered insert, and [`ProcessedOrders`] tells the `Pay` calls waiting for an order
//! that it is now known as processed.
//!
//! Why records and not one document moved forward: on the default engine (the Python SecantusDB) the update that
//! moved a known order to `processed` (an insert refused as a duplicate, then a conditional replacement) cost 0.52
//! ms of engine CPU per order, against 0.20 ms for the two inserts (measured alone, commands of 20 orders, `w:
//! majority, j: true`). Orders recorded by earlier versions, one document under the order id moved forward in
//! place, are read the same way.
use std::{
    collections::{HashMap, HashSet},
    sync::{Arc, Mutex, PoisonError},
};

use futures::TryStreamExt as _;
use mongodb::{
    Collection, Database,
    bson::{self, doc},
};
use serde::{Deserialize, Serialize};
use tokio::sync::oneshot;

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

/// One order as this service knows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KnownOrder {
    pub order_id: String,
    pub user_id: String,
    pub total_cents: i64,
    pub currency: String,
    pub stage: OrderStage,
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
        Self { order_id, user_id, total_cents, currency, stage, event_id, updated_at: bson::DateTime::now() }
    }
}

/// The suffix of the `_id` of an order's processed record.
const PROCESSED: &str = "/processed";

/// The `_id` of `order_id`'s record of `stage`.
fn record_id(order_id: &str, stage: OrderStage) -> String {
    match stage {
        OrderStage::Pending => order_id.to_owned(),
        OrderStage::Processed => format!("{order_id}{PROCESSED}"),
    }
}

/// One stage of one order, as stored ([`record_id`]). A record of an earlier version is under the order id at
/// either stage (and has a `rank` field, not read).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct StageRecord {
    #[serde(rename = "_id")]
    id: String,
    user_id: String,
    total_cents: i64,
    currency: String,
    stage: OrderStage,
    event_id: String,
    updated_at: bson::DateTime,
}

impl StageRecord {
    fn of(order: &KnownOrder) -> Self {
        Self {
            id: record_id(&order.order_id, order.stage),
            user_id: order.user_id.clone(),
            total_cents: order.total_cents,
            currency: order.currency.clone(),
            stage: order.stage,
            event_id: order.event_id.clone(),
            updated_at: order.updated_at,
        }
    }

    /// The order this records: a processed record names it in its `_id`'s prefix, other records by their `_id`.
    /// (A pending event for an order id that ends in the suffix is stored under that id, and reads as that order,
    /// never as another's processed record.)
    fn into_known(self) -> KnownOrder {
        let order_id = match self.stage {
            OrderStage::Processed => self.id.strip_suffix(PROCESSED).unwrap_or(&self.id).to_owned(),
            OrderStage::Pending => self.id,
        };
        KnownOrder {
            order_id,
            user_id: self.user_id,
            total_cents: self.total_cents,
            currency: self.currency,
            stage: self.stage,
            event_id: self.event_id,
            updated_at: self.updated_at,
        }
    }
}

#[derive(Clone)]
pub struct OrderProjection {
    records: Collection<StageRecord>,
}

impl OrderProjection {
    pub fn new(database: &Database) -> Self {
        Self { records: database.collection("orders") }
    }

    pub async fn find(&self, order_id: &str) -> Result<Option<KnownOrder>, StoreError> {
        Ok(self.find_many(&[order_id]).await?.pop())
    }

    /// The known orders among `order_ids`, each at its furthest stage: their processed records in one command,
    /// then, for the orders without one, the records under their ids (pending, or of an earlier version) in one
    /// more. A `Pay` for a processed order, the usual one, reads one document.
    pub async fn find_many(&self, order_ids: &[&str]) -> Result<Vec<KnownOrder>, StoreError> {
        if order_ids.is_empty() {
            return Ok(Vec::new());
        }
        let asked: HashSet<&str> = order_ids.iter().copied().collect();
        let processed: Vec<String> = asked.iter().map(|order_id| record_id(order_id, OrderStage::Processed)).collect();
        let mut known = self.read(&asked, &processed).await?;
        let found: HashSet<&str> = known.iter().map(|order| order.order_id.as_str()).collect();
        let rest: Vec<&str> = asked.iter().copied().filter(|order_id| !found.contains(order_id)).collect();
        if !rest.is_empty() {
            known.extend(self.read(&asked, &rest).await?);
        }
        Ok(known)
    }

    /// The records with these `_id`s, as the orders they record, keeping only the orders `asked` for.
    async fn read(&self, asked: &HashSet<&str>, ids: &[impl AsRef<str>]) -> Result<Vec<KnownOrder>, StoreError> {
        let ids: Vec<&str> = ids.iter().map(AsRef::as_ref).collect();
        let records: Vec<StageRecord> = self.records.find(doc! { "_id": { "$in": ids } }).await?.try_collect().await?;
        Ok(records
            .into_iter()
            .map(StageRecord::into_known)
            .filter(|order| asked.contains(order.order_id.as_str()))
            .collect())
    }

    /// Records a batch of order events, durable before it returns (the client's write concern: offsets are
    /// committed on the strength of this write), in one unordered insert of the furthest stage each order reaches
    /// in the batch (its earlier stage would add nothing); a record that is there already (a redelivery) counts as
    /// written. Returns those orders. A failure fails the batch, which the caller retries whole.
    pub async fn apply_batch<'a>(&self, events: &'a [KnownOrder]) -> Result<Vec<&'a KnownOrder>, StoreError> {
        let latest = furthest_per_order(events);
        let records: Vec<StageRecord> = latest.iter().map(|order| StageRecord::of(order)).collect();
        platform::mongo::insert_many_unless_present(&self.records, &records).await?;
        Ok(latest)
    }

    /// Records `order` at its stage (once: recording it again changes nothing).
    pub async fn apply(&self, order: &KnownOrder) -> Result<(), StoreError> {
        self.apply_batch(std::slice::from_ref(order)).await.map(drop)
    }
}

/// One event per order id: the one with the furthest stage (the first of equals), in first-seen order.
pub fn furthest_per_order(events: &[KnownOrder]) -> Vec<&KnownOrder> {
    let mut position: HashMap<&str, usize> = HashMap::with_capacity(events.len());
    let mut latest: Vec<&KnownOrder> = Vec::with_capacity(events.len());
    for event in events {
        match position.get(event.order_id.as_str()) {
            Some(&index) if latest[index].stage < event.stage => latest[index] = event,
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
