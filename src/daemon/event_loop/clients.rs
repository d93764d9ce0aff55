//! Who the loop owes something: how many clients are connected, the requests parked until
//! their instances' transitions end, the clients waiting for the shutdown, and the streaming
//! clients (`tail -f` followers, `subscribe` subscribers) with the events of this turn.
//!
//! The connections themselves are sources (`Sources`); this part holds slots into it and
//! never reads or writes a socket. What an outcome is comes from the loop (`Daemon::outcome`),
//! which knows the instances.

use std::collections::HashMap;

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

/// A waiter with more unsettled items than this keeps them by instance, so a turn looks only
/// at the instances it fed rather than at every item (a `stop all` of thousands, settled over
/// as many turns, would otherwise cost O(N) a turn).
const INDEX_OVER: usize = 16;

/// A request parked until its items settle.
pub(super) struct Waiter {
    pub(super) slot: usize,
    items: Vec<Item>,
    answer: Answer,
    /// Items with no outcome yet.
    unsettled: usize,
    /// The unsettled items by instance (positions in `items`), for a large waiter.
    by_id: Option<HashMap<InstId, Vec<usize>>>,
}

impl Waiter {
    pub(super) fn new(slot: usize, items: Vec<Item>, answer: Answer) -> Waiter {
        let unsettled = items.iter().filter(|i| i.outcome.is_none()).count();
        let by_id = (unsettled > INDEX_OVER).then(|| {
            let mut by_id: HashMap<InstId, Vec<usize>> = HashMap::new();
            for (n, item) in items.iter().enumerate() {
                if item.outcome.is_none() {
                    by_id.entry(item.id).or_default().push(n);
                }
            }
            by_id
        });
        Waiter {
            slot,
            items,
            answer,
            unsettled,
            by_id,
        }
    }

    pub(super) fn done(&self) -> bool {
        self.unsettled == 0
    }

    /// Decide every unsettled item `outcome` has an answer for.
    pub(super) fn settle_all(&mut self, mut outcome: impl FnMut(&Item) -> Option<Outcome>) {
        for item in &mut self.items {
            if item.outcome.is_none() {
                item.outcome = outcome(item);
                self.unsettled -= usize::from(item.outcome.is_some());
            }
        }
    }

    /// Decide only the items of `fed`, the instances fed since the last settle: an item's
    /// outcome is a function of its instance's state (and of held stops and rolling restarts,
    /// for which the caller settles all), which only feeding changes. A small waiter
    /// settles all.
    pub(super) fn settle_fed(
        &mut self,
        fed: &[InstId],
        mut outcome: impl FnMut(&Item) -> Option<Outcome>,
    ) {
        let Some(by_id) = self.by_id.as_mut() else {
            return self.settle_all(outcome);
        };
        for id in fed {
            let Some(positions) = by_id.get_mut(id) else {
                continue;
            };
            positions.retain(|&n| {
                let item = &mut self.items[n];
                if item.outcome.is_none() {
                    item.outcome = outcome(item);
                    self.unsettled -= usize::from(item.outcome.is_some());
                }
                item.outcome.is_none()
            });
            if positions.is_empty() {
                by_id.remove(id);
            }
        }
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
    /// Instances fed since the waiters were last settled (duplicates allowed).
    fed: Vec<InstId>,
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

    /// `id` was fed: a waiter's item for it may have settled.
    pub(super) fn fed(&mut self, id: InstId) {
        self.fed.push(id);
    }

    /// The instances fed since the last call.
    pub(super) fn take_fed(&mut self) -> Vec<InstId> {
        std::mem::take(&mut self.fed)
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
        Waiter::new(slot, Vec::new(), Answer::Outcomes)
    }

    fn items(n: usize) -> Vec<Item> {
        (0..n)
            .map(|id| Item {
                id,
                name: format!("c:{id}"),
                goal: Goal::Down,
                outcome: None,
            })
            .collect()
    }

    fn stopped(item: &Item) -> Option<Outcome> {
        Some(Outcome {
            name: item.name.clone(),
            ok: true,
            message: "stopped".into(),
        })
    }

    #[test]
    fn a_large_waiter_settles_only_the_instances_fed_and_is_done_with_the_last() {
        let n = INDEX_OVER * 4;
        let mut w = Waiter::new(1, items(n), Answer::Outcomes);
        let mut asked = Vec::new();
        w.settle_fed(&[3, 3, 7, n + 5], |i| {
            asked.push(i.id);
            stopped(i)
        });
        assert_eq!(asked, vec![3, 7], "each fed instance once, nothing else");
        assert!(!w.done());
        // Fed but not settled yet: asked again next time.
        w.settle_fed(&[4], |_| None);
        let mut asked = Vec::new();
        w.settle_fed(&(0..n).collect::<Vec<_>>(), |i| {
            asked.push(i.id);
            stopped(i)
        });
        assert_eq!(asked.len(), n - 2, "the settled ones are not asked again");
        assert!(w.done());
        let Response {
            body: ResponseBody::Outcomes { outcomes },
            ..
        } = w.into_response()
        else {
            panic!("outcomes expected");
        };
        let names: Vec<String> = outcomes.into_iter().map(|o| o.name).collect();
        let want: Vec<String> = (0..n).map(|id| format!("c:{id}")).collect();
        assert_eq!(names, want, "answered in the request's order");
    }

    #[test]
    fn a_small_waiter_and_settle_all_look_at_every_unsettled_item() {
        let mut w = Waiter::new(1, items(3), Answer::Outcomes);
        let mut asked = Vec::new();
        w.settle_fed(&[], |i| {
            asked.push(i.id);
            (i.id != 1).then(|| stopped(i)).flatten()
        });
        assert_eq!(asked, vec![0, 1, 2]);
        assert!(!w.done());
        let mut big = Waiter::new(2, items(INDEX_OVER + 1), Answer::Outcomes);
        big.settle_all(stopped);
        assert!(big.done());
        assert!(Waiter::new(3, Vec::new(), Answer::Outcomes).done());
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
