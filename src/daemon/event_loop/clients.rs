//! Who the loop owes something: how many clients are connected, the requests parked until
//! their instances' transitions end, the clients waiting for the shutdown, and the streaming
//! clients (`tail -f` followers, `subscribe` subscribers) with the events of this turn.
//!
//! The connections themselves are sources (`Sources`); this part holds slots into it and
//! never reads or writes a socket. What an outcome is comes from the loop (`Daemon::outcome`),
//! which knows the instances.

use crate::control::proto::{Outcome, ReloadReport, Response, ResponseBody};

use super::InstId;

/// What a request waits for of one instance.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Goal {
    Up,
    Down,
    Restarted,
}

pub(super) struct Item {
    pub(super) id: InstId,
    pub(super) name: String,
    pub(super) goal: Goal,
    pub(super) outcome: Option<Outcome>,
}

/// What to answer once every item's transition has ended.
pub(super) enum Answer {
    Outcomes,
    Reload(ReloadReport),
}

/// A request parked until its items settle.
pub(super) struct Waiter {
    pub(super) slot: usize,
    pub(super) items: Vec<Item>,
    pub(super) answer: Answer,
}

impl Waiter {
    pub(super) fn done(&self) -> bool {
        self.items.iter().all(|i| i.outcome.is_some())
    }

    pub(super) fn into_response(self) -> Response {
        match self.answer {
            Answer::Outcomes => Response::new(ResponseBody::Outcomes {
                outcomes: self.items.into_iter().filter_map(|i| i.outcome).collect(),
            }),
            Answer::Reload(mut report) => {
                report.outcomes = self.items.into_iter().filter_map(|i| i.outcome).collect();
                Response::new(ResponseBody::Reload { report })
            }
        }
    }
}

#[derive(Default)]
pub(super) struct Clients {
    connected: usize,
    waiters: Vec<Waiter>,
    shutdown: Vec<usize>,
    followers: Vec<usize>,
    subscribers: Vec<usize>,
    /// Events to publish to subscribers at the end of the turn.
    published: Vec<(InstId, String)>,
}

impl Clients {
    pub(super) fn connected(&self) -> usize {
        self.connected
    }

    pub(super) fn opened(&mut self) {
        self.connected += 1;
    }

    /// The connection in `slot` is gone: forget every slot it held here.
    pub(super) fn closed(&mut self, slot: usize, streaming: bool) {
        self.connected = self.connected.saturating_sub(1);
        if streaming {
            self.followers.retain(|&s| s != slot);
            self.subscribers.retain(|&s| s != slot);
        }
    }

    /// An HTTP connection in `slot` is gone (it is not counted in `connected`): forget its
    /// waiter, its shutdown wait and its stream, so a reused slot inherits nothing.
    pub(super) fn forget(&mut self, slot: usize) {
        self.waiters.retain(|w| w.slot != slot);
        self.shutdown.retain(|&s| s != slot);
        self.followers.retain(|&s| s != slot);
        self.subscribers.retain(|&s| s != slot);
    }

    pub(super) fn park(&mut self, waiter: Waiter) {
        self.waiters.push(waiter);
    }

    /// Every parked waiter, to settle; hand back the unsettled ones with `requeue`.
    pub(super) fn take_waiters(&mut self) -> Vec<Waiter> {
        std::mem::take(&mut self.waiters)
    }

    /// Put back waiters still pending, before any parked meanwhile (by a reply that let a
    /// client's next request in), so answers keep their order.
    pub(super) fn requeue(&mut self, mut pending: Vec<Waiter>) {
        pending.append(&mut self.waiters);
        self.waiters = pending;
    }

    pub(super) fn wait_for_shutdown(&mut self, slot: usize) {
        self.shutdown.push(slot);
    }

    pub(super) fn take_shutdown_waiters(&mut self) -> Vec<usize> {
        std::mem::take(&mut self.shutdown)
    }

    pub(super) fn follow(&mut self, slot: usize) {
        self.followers.push(slot);
    }

    pub(super) fn followers(&self) -> Vec<usize> {
        self.followers.clone()
    }

    pub(super) fn has_followers(&self) -> bool {
        !self.followers.is_empty()
    }

    pub(super) fn subscribe(&mut self, slot: usize) {
        self.subscribers.push(slot);
    }

    pub(super) fn subscribers(&self) -> Vec<usize> {
        self.subscribers.clone()
    }

    /// An event of `id` for the subscribers, if there are any.
    pub(super) fn publish(&mut self, id: InstId, event: String) {
        if !self.subscribers.is_empty() {
            self.published.push((id, event));
        }
    }

    pub(super) fn take_published(&mut self) -> Vec<(InstId, String)> {
        std::mem::take(&mut self.published)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn waiter(slot: usize) -> Waiter {
        Waiter {
            slot,
            items: Vec::new(),
            answer: Answer::Outcomes,
        }
    }

    #[test]
    fn a_closed_stream_is_forgotten_and_requeued_waiters_keep_their_order() {
        let mut c = Clients::default();
        c.opened();
        c.opened();
        c.follow(3);
        c.subscribe(4);
        c.publish(1, "running".into());
        c.closed(3, true);
        assert_eq!(c.connected(), 1);
        assert!(!c.has_followers());
        assert_eq!(c.subscribers(), vec![4]);
        assert_eq!(c.take_published().len(), 1);
        c.closed(4, true);
        c.publish(1, "stopped".into());
        assert!(c.take_published().is_empty(), "nobody to publish to");

        c.park(waiter(1));
        c.park(waiter(2));
        let mut taken = c.take_waiters();
        taken.remove(0);
        c.park(waiter(9));
        c.requeue(taken);
        let slots: Vec<usize> = c.take_waiters().iter().map(|w| w.slot).collect();
        assert_eq!(slots, vec![2, 9]);
    }
}
