//! A bounded memory of the last values added under their keys, the oldest forgotten first: what a service keeps
//! of its own recent work so as not to ask the database again (the order-service's orders just written, what a
//! relay's read of its outbox published already).
use std::collections::{HashMap, VecDeque};

pub struct Recent<V> {
    by_key: HashMap<String, V>,
    /// Keys in the order they were added; some taken since, and counted until they are the oldest.
    by_age: VecDeque<String>,
    limit: usize,
}

impl<V> Recent<V> {
    /// Remembers at most the last `limit` keys added.
    pub fn new(limit: usize) -> Self {
        Self { by_key: HashMap::new(), by_age: VecDeque::new(), limit }
    }

    /// Remembers `value` under `key`, unless the key is remembered already; the oldest beyond the limit are forgotten.
    pub fn add(&mut self, key: &str, value: V) {
        if self.by_key.contains_key(key) {
            return;
        }
        self.by_key.insert(key.to_owned(), value);
        self.by_age.push_back(key.to_owned());
        while self.by_age.len() > self.limit {
            if let Some(oldest) = self.by_age.pop_front() {
                self.by_key.remove(&oldest);
            }
        }
    }

    pub fn contains(&self, key: &str) -> bool {
        self.by_key.contains_key(key)
    }

    /// The value under `key`, forgotten now.
    pub fn take(&mut self, key: &str) -> Option<V> {
        self.by_key.remove(key)
    }

    /// How many values are remembered.
    pub fn len(&self) -> usize {
        self.by_key.len()
    }

    pub fn is_empty(&self) -> bool {
        self.by_key.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_last_keys_added_are_remembered_up_to_the_limit_and_a_key_taken_is_forgotten() {
        let mut recent = Recent::new(2);
        recent.add("a", 1);
        recent.add("b", 2);
        recent.add("a", 3);
        assert_eq!((recent.len(), recent.take("a")), (2, Some(1)), "adding a key twice keeps the first value");
        assert_eq!(recent.take("a"), None, "taken once");
        recent.add("c", 4);
        assert!(recent.contains("b") && recent.contains("c"));
        recent.add("d", 5);
        assert!(!recent.contains("b") && recent.contains("c") && recent.contains("d"), "the oldest is forgotten");
        assert!(recent.by_age.len() <= 2 && recent.len() == 2);
    }
}
