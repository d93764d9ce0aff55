//! The deadline heap: the loop sleeps until its earliest entry and never polls on a tick.
//!
//! Entries are never removed in place. An owner that moves or drops its deadline just pushes a
//! new one; when an entry comes due, the owner's current deadline decides whether it is stale.
//! That keeps every operation O(log n) and the owner the single source of truth.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::time::Instant;

#[derive(Debug)]
pub struct Timers<K: Ord> {
    heap: BinaryHeap<Reverse<(Instant, K)>>,
}

impl<K: Ord + Clone> Default for Timers<K> {
    fn default() -> Self {
        Timers {
            heap: BinaryHeap::new(),
        }
    }
}

impl<K: Ord + Clone> Timers<K> {
    pub fn push(&mut self, at: Instant, key: K) {
        self.heap.push(Reverse((at, key)));
    }

    /// The earliest entry, stale or not.
    pub fn next(&self) -> Option<Instant> {
        self.heap.peek().map(|Reverse((at, _))| *at)
    }

    /// Removes and returns every entry due at `now`, earliest first.
    pub fn pop_due(&mut self, now: Instant) -> Vec<(Instant, K)> {
        let mut due = Vec::new();
        while let Some(Reverse((at, _))) = self.heap.peek() {
            if *at > now {
                break;
            }
            if let Some(Reverse(entry)) = self.heap.pop() {
                due.push(entry);
            }
        }
        due
    }

    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.heap.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn pops_only_what_is_due_in_order() {
        let t0 = Instant::now();
        let mut t = Timers::default();
        t.push(t0 + Duration::from_secs(3), "c");
        t.push(t0 + Duration::from_secs(1), "a");
        t.push(t0 + Duration::from_secs(2), "b");
        assert_eq!(t.next(), Some(t0 + Duration::from_secs(1)));
        let due: Vec<_> = t
            .pop_due(t0 + Duration::from_secs(2))
            .into_iter()
            .map(|(_, k)| k)
            .collect();
        assert_eq!(due, ["a", "b"]);
        assert_eq!(t.len(), 1);
        assert!(t.pop_due(t0).is_empty());
    }
}
