//! The loop's side of `depends_on`: spawns held until every dependency meets its condition
//! (`started`, `healthy`, `completed`), stops held until every dependent in the same request
//! is down.
//!
//! Event-driven: `feed` notes each instance whose state changed, `check_done` each whose
//! health status changed, and `settle_order` re-checks only what depends on those (through
//! `core::deps::Dependents`), so a turn costs the same with ten instances or ten thousand.

use std::collections::{HashMap, HashSet};
use std::time::Instant;

use super::{Daemon, Inputs, InstId};
use crate::control::proto::Outcome;
use crate::core::deps::{self, Dependents, Rolling};
use crate::core::Input;

/// A chain of dependencies deeper than this is settled over several turns (the loop then does
/// not sleep between them).
const MAX_ROUNDS: usize = 256;

/// Everything dependency order and rolling restarts keep between turns.
#[derive(Default)]
pub(in crate::daemon) struct Order {
    dependents: Dependents,
    /// Instances whose state changed since the order was last settled.
    pub(super) changed: Vec<InstId>,
    /// Stops held back until the instance's dependents in the same request are down.
    held_stops: Vec<(InstId, Input)>,
    /// The instances of the stop requests (or the shutdown) under way.
    stop_set: HashSet<InstId>,
    /// Rolling restarts, one per program (see `rolling.rs`).
    pub(super) rolling: Vec<Rolling<InstId>>,
    /// Instances whose rolling restart was abandoned, and why.
    pub(super) rolling_failed: HashMap<InstId, String>,
}

impl Order {
    /// Something changed that is not settled yet: the loop must turn again without sleeping.
    pub(super) fn unsettled(&self) -> bool {
        !self.changed.is_empty()
    }

    /// Held stops or rolling restarts (or the outcome of an abandoned one) are there: they
    /// decide waiters' outcomes beside the instances' states (`Daemon::held_outcome`).
    pub(super) fn holds_any(&self) -> bool {
        !self.held_stops.is_empty() || !self.rolling.is_empty() || !self.rolling_failed.is_empty()
    }
}

impl Daemon {
    /// The reverse dependency index, from the programs now configured.
    pub(super) fn index_dependencies(&mut self) {
        self.order.dependents = Dependents::build(
            self.settings
                .config
                .programs
                .values()
                .map(|p| (p.name.as_str(), p.health.depends_on.as_slice())),
        );
    }

    /// Why `id` may not be spawned now: the first dependency instance that does not meet the
    /// condition written for it.
    pub(super) fn blocked_by(&self, id: InstId) -> Option<String> {
        let inst = self.sup.get(id)?;
        for want in &inst.spec.health.depends_on {
            let dep = &want.program;
            let Some(program) = self.sup.by_name(dep) else {
                // Not added yet (start-up adds programs by name): it will be.
                if self.settings.config.programs.contains_key(dep) {
                    return Some(format!("waiting for {dep} (not started yet)"));
                }
                continue;
            };
            for &d in program.instances() {
                let Some(di) = self.sup.get(d) else {
                    continue;
                };
                let view = deps::Dep::of(di.core(), &di.spec, self.health_status(d));
                let why = deps::holds(want.condition, &view);
                if why.is_some() {
                    return why;
                }
            }
        }
        None
    }

    /// Some instance that depends on `id`'s program is part of a stop under way and still up.
    fn dependents_up(&self, id: InstId) -> bool {
        let Some(program) = self.sup.get(id).map(|i| i.core().program()) else {
            return false;
        };
        let up = |o: InstId| {
            self.order.stop_set.contains(&o)
                && self.sup.get(o).is_some_and(|i| !i.core().state().is_down())
        };
        let configured = self
            .order
            .dependents
            .of(program)
            .iter()
            .filter_map(|p| self.sup.by_name(p))
            .flat_map(|p| p.instances().iter().copied());
        // Instances removed by a reload are in no program but may still be stopping.
        let retiring = self.sup.retiring().iter().copied().filter(|&o| {
            self.sup.get(o).is_some_and(|i| {
                i.spec
                    .health
                    .depends_on
                    .iter()
                    .any(|d| d.program == program)
            })
        });
        configured.chain(retiring).any(up)
    }

    /// Stop (or shut down) `ids` in reverse dependency order: an instance whose dependents
    /// among them are still up is held until they are down.
    pub(super) fn stop_in_order(&mut self, ids: &[InstId], input: Input) -> Inputs {
        self.order.stop_set.extend(ids.iter().copied());
        let (held, now_ids): (Vec<InstId>, Vec<InstId>) =
            ids.iter().partition(|&&id| self.dependents_up(id));
        for id in held {
            self.order.held_stops.retain(|(h, _)| *h != id);
            self.order.held_stops.push((id, input.clone()));
        }
        now_ids.into_iter().map(|id| (id, input.clone())).collect()
    }

    /// Once a turn, after everything else was fed: follow the changes of this turn to what
    /// depends on them. Held stops whose dependents are down go ahead, waiting starts whose
    /// dependencies changed are re-checked, and each rolling restart takes its next step.
    pub(super) fn settle_order(&mut self, now: Instant) {
        for _ in 0..MAX_ROUNDS {
            let changed = std::mem::take(&mut self.order.changed);
            if changed.is_empty() {
                break;
            }
            // Held stops first: a dependency they stop must hold its waiting dependents.
            let inputs = self.release_held_stops();
            self.apply(inputs, now);
            let inputs = self.recheck_dependents(&changed);
            self.apply(inputs, now);
            if !self.order.rolling.is_empty() {
                let inputs = self.roll();
                self.apply(inputs, now);
            }
        }
        if self.order.held_stops.is_empty() {
            self.order.stop_set.clear();
        }
    }

    fn release_held_stops(&mut self) -> Inputs {
        if self.order.held_stops.is_empty() {
            return Vec::new();
        }
        let held = std::mem::take(&mut self.order.held_stops);
        let (still, go): (Vec<_>, Vec<_>) = held
            .into_iter()
            .partition(|(id, _)| self.dependents_up(*id));
        self.order.held_stops = still;
        go
    }

    /// Waiting instances of the programs that depend on a changed instance's program.
    fn recheck_dependents(&self, changed: &[InstId]) -> Inputs {
        if self.order.dependents.is_empty() {
            return Vec::new();
        }
        let mut seen = HashSet::new();
        let mut waiting = Vec::new();
        for &id in changed {
            let Some(program) = self.sup.get(id).map(|i| i.core().program()) else {
                continue;
            };
            for dependent in self.order.dependents.of(program) {
                if !seen.insert(dependent.as_str()) {
                    continue;
                }
                let Some(p) = self.sup.by_name(dependent) else {
                    continue;
                };
                waiting.extend(
                    p.instances()
                        .iter()
                        .copied()
                        .filter(|&d| self.sup.get(d).is_some_and(|i| i.core().is_waiting())),
                );
            }
        }
        self.recheck(waiting)
    }

    fn recheck(&self, waiting: Vec<InstId>) -> Inputs {
        let input = |id| match self.blocked_by(id) {
            None => Input::Unblocked,
            Some(reason) => Input::Blocked { reason },
        };
        waiting.into_iter().map(|id| (id, input(id))).collect()
    }

    /// Every waiting instance is checked again: a reload may have changed what depends on
    /// what.
    pub(super) fn recheck_all_waiting(&self) -> Inputs {
        let waiting: Vec<InstId> = self
            .sup
            .iter()
            .filter(|(_, i)| i.core().is_waiting())
            .map(|(id, _)| id)
            .collect();
        self.recheck(waiting)
    }

    /// A stop or start an operator asked for, or a reload retiring the instance, drops a held
    /// stop or a rolling restart of it, and the outcome of one abandoned earlier: a later
    /// request, or an instance reusing the id, would be answered with it.
    pub(super) fn forget_holds(&mut self, id: InstId) {
        self.order.held_stops.retain(|(h, _)| *h != id);
        for r in &mut self.order.rolling {
            r.forget(id);
        }
        self.order.rolling_failed.remove(&id);
    }

    /// `Some(None)` while a held stop or a rolling restart still has `id` to do;
    /// `Some(Some(outcome))` when its rolling restart was abandoned.
    pub(super) fn held_outcome(&self, id: InstId, name: &str) -> Option<Option<Outcome>> {
        if let Some(why) = self.order.rolling_failed.get(&id) {
            return Some(Some(Outcome {
                name: name.to_string(),
                ok: false,
                message: why.clone(),
            }));
        }
        let held = self.order.held_stops.iter().any(|(h, _)| *h == id)
            || self.order.rolling.iter().any(|r| r.has_pending(id));
        held.then_some(None)
    }
}
