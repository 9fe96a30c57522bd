//! The orders this replica created whose `new-order` event is not yet known to be published, shared by the
//! requests that create them, the group-commit writer and the outbox relay: from it the relay knows how far back a
//! crash could leave events unpublished (its checkpoint, see `events::relay`).
//!
//! An order counts from the moment its id is made (before it is queued for the writer: an order waiting in the
//! queue or in a write holds the checkpoint back) until its event is published, or until it is certain it was never
//! stored. When whether an order was stored is unknown (a write that failed midway, a batch the relay's handover
//! could not keep), it leaves the count and the checkpoint stays at or before it until a read of the orders from
//! there has published whatever was stored ([`Unpublished::read_from`]).
use std::{
    collections::BTreeSet,
    sync::{Mutex, PoisonError},
};

/// When an order's id was made, in milliseconds since the epoch (its UUID v7 time), and the id.
type Made = (i64, String);

#[derive(Default)]
pub struct Unpublished {
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    /// The orders counted, oldest first.
    orders: BTreeSet<Made>,
    /// The earliest order whose fate only a read can tell, and how many times such a read was asked for (a read
    /// answers only the asks made before it started).
    read_from: Option<i64>,
    asks: u64,
}

impl State {
    /// A new ask for a read from `from` on, even from no earlier than the read owed: a read already under way may have
    /// passed the orders it is for.
    fn owe_read(&mut self, from: i64) {
        self.read_from = Some(self.read_from.map_or(from, |owed| owed.min(from)));
        self.asks += 1;
    }
}

/// A read of the orders from `from` on that the relay owes ([`Unpublished::read_from`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReadOwed {
    pub from: i64,
    asks: u64,
}

fn made(order_id: &str) -> i64 {
    crate::store::made_millis(order_id).unwrap_or(0)
}

impl Unpublished {
    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// A new order, from the making of its id.
    pub fn made(&self, order_id: &str) {
        self.state().orders.insert((made(order_id), order_id.to_owned()));
    }

    /// These orders' events are published, or the orders were certainly never stored. Settling one twice, or one
    /// never counted, changes nothing.
    pub fn settled<'a>(&self, order_ids: impl IntoIterator<Item = &'a str>) {
        let mut state = self.state();
        for order_id in order_ids {
            state.orders.remove(&(made(order_id), order_id.to_owned()));
        }
    }

    /// Whether these orders were stored is unknown: a read of the orders from the oldest of them on is owed.
    pub fn unknown<'a>(&self, order_ids: impl IntoIterator<Item = &'a str>) {
        let mut state = self.state();
        let mut oldest = None;
        for order_id in order_ids {
            let made = made(order_id);
            state.orders.remove(&(made, order_id.to_owned()));
            oldest = Some(oldest.map_or(made, |oldest: i64| oldest.min(made)));
        }
        if let Some(oldest) = oldest {
            state.owe_read(oldest);
        }
    }

    /// Asks for a read from `from` on (a replica's start reads from its last checkpoint).
    pub fn read_from_checkpoint(&self, from: i64) {
        self.state().owe_read(from);
    }

    /// The read owed, if any.
    pub fn read_owed(&self) -> Option<ReadOwed> {
        let state = self.state();
        state.read_from.map(|from| ReadOwed { from, asks: state.asks })
    }

    /// The read `owed` is done: forgotten, unless another was asked for since it started.
    pub fn read_done(&self, owed: ReadOwed) {
        let mut state = self.state();
        if state.asks == owed.asks {
            state.read_from = None;
        }
    }

    /// Every order made before this time (milliseconds since the epoch) is published, or certainly not stored: the
    /// oldest order counted, or the oldest a read is owed from, or `now`.
    pub fn checkpoint(&self, now: i64) -> i64 {
        let state = self.state();
        let oldest = state.orders.first().map(|(made, _)| *made);
        [Some(now), oldest, state.read_from].into_iter().flatten().min().unwrap_or(now)
    }

    /// How many orders are counted.
    pub fn len(&self) -> usize {
        self.state().orders.len()
    }

    pub fn is_empty(&self) -> bool {
        self.state().orders.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id_at(millis: u64) -> String {
        let timestamp = uuid::Timestamp::from_unix(uuid::NoContext, millis / 1000, (millis % 1000) as u32 * 1_000_000);
        uuid::Uuid::new_v7(timestamp).to_string()
    }

    #[test]
    fn the_checkpoint_is_the_oldest_order_not_yet_published() {
        let unpublished = Unpublished::default();
        let (early, late) = (id_at(1_000), id_at(2_000));
        unpublished.made(&late);
        unpublished.made(&early);
        assert_eq!(unpublished.checkpoint(5_000), 1_000);
        unpublished.settled([early.as_str()]);
        assert_eq!(unpublished.checkpoint(5_000), 2_000);
        unpublished.settled([late.as_str(), late.as_str()]);
        assert_eq!(unpublished.checkpoint(5_000), 5_000, "nothing counted: now");
    }

    #[test]
    fn an_unknown_fate_holds_the_checkpoint_until_the_read_asked_for_is_done() {
        let unpublished = Unpublished::default();
        let (early, late) = (id_at(1_000), id_at(3_000));
        unpublished.made(&early);
        unpublished.unknown([early.as_str()]);
        assert_eq!(unpublished.len(), 0);
        assert_eq!(unpublished.checkpoint(5_000), 1_000);
        let owed = unpublished.read_owed().expect("a read owed");
        assert_eq!(owed.from, 1_000);
        // Another unknown fate while the read runs: that read does not answer it.
        unpublished.unknown([late.as_str()]);
        unpublished.read_done(owed);
        assert_eq!(unpublished.read_owed().map(|owed| owed.from), Some(1_000));
        let owed = unpublished.read_owed().unwrap();
        unpublished.read_done(owed);
        assert_eq!(unpublished.read_owed(), None);
        assert_eq!(unpublished.checkpoint(5_000), 5_000);
    }
}
