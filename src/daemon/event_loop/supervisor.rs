//! The supervision state: the programs, the instance table and the deadline heap.
//!
//! An instance's id is its slot in the table, stable for its life; a slot a reload freed is
//! reused by the next instance added. An instance a reload removed *retires*: it leaves its
//! program (so `status` no longer shows it) but keeps its slot until it is down.
//!
//! `step` is the one place an instance's state machine runs, and it pushes every deadline and
//! tick the step moved onto the heap, so no change of either can go unarmed. Nothing here
//! makes a syscall or knows a source, a client or a socket: the loop carries out the actions
//! `step` returns.

use std::collections::BTreeMap;
use std::rc::Rc;
use std::time::Instant;

use chrono::{DateTime, Utc};

use super::{InstId, TimerKey};
use crate::config::ProgramSpec;
use crate::core::timers::Timers;
use crate::core::{Action, Input, Instance, State};

/// One instance in the table: its state machine and what the loop keeps beside it.
pub(in crate::daemon) struct Inst {
    /// Private: only `Supervisor::step` runs the machine, so its deadlines are in the heap.
    core: Instance,
    pub(in crate::daemon) spec: Rc<ProgramSpec>,
    /// A reload changed the definition: it takes effect at the next spawn, so the running
    /// process is still stopped with the old `stopsignal` and `stoptime`.
    pub(in crate::daemon) next_spec: Option<Rc<ProgramSpec>>,
    /// Removed by a reload: hidden from status, freed once down.
    retiring: bool,
    /// The slot watching the current process's exec status, until it reports.
    pub(in crate::daemon) exec_slot: Option<usize>,
    /// Pipes of the current process, by stream.
    pub(in crate::daemon) captures: [Option<usize>; 2],
    /// Field 22 of /proc/PID/stat for the leader, recorded so a successor daemon never
    /// signals a reused pid.
    pub(in crate::daemon) start_ticks: Option<u64>,
    /// The instance's cgroup (see `event_loop/cgroups.rs`).
    pub(in crate::daemon) cg: super::cgroups::CgState,
}

impl Inst {
    pub(in crate::daemon) fn core(&self) -> &Instance {
        &self.core
    }

    pub(in crate::daemon) fn is_retiring(&self) -> bool {
        self.retiring
    }

    /// The last tick a previous daemon recorded (see `Instance::restore_last_tick`); it arms
    /// nothing by itself, the next `Tick` does.
    pub(in crate::daemon) fn restore_last_tick(&mut self, last: Option<DateTime<Utc>>) {
        self.core.restore_last_tick(last);
    }

    /// The definition to spawn with: one a reload changed takes effect here.
    pub(in crate::daemon) fn spec_for_spawn(&mut self) -> Rc<ProgramSpec> {
        if let Some(next) = self.next_spec.take() {
            self.spec = next;
        }
        self.spec.clone()
    }
}

/// A configured program and its instances, by instance number.
pub(in crate::daemon) struct Program {
    spec: Rc<ProgramSpec>,
    instances: Vec<InstId>,
}

impl Program {
    pub(in crate::daemon) fn instances(&self) -> &[InstId] {
        &self.instances
    }
}

/// How many instances of the table (retiring ones included) are in each state, and how many
/// of the `starting` ones are held back by a dependency. Kept up to date by `step`, so reading
/// it costs nothing at any number of instances.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(in crate::daemon) struct Tally {
    by_state: [usize; 8],
    waiting: usize,
}

impl Tally {
    pub(in crate::daemon) fn of(&self, state: State) -> usize {
        self.by_state[state as usize]
    }

    /// `starting` instances held back by a dependency that is not running.
    pub(in crate::daemon) fn waiting(&self) -> usize {
        self.waiting
    }

    /// A tally with these counts, for the tests of what reads it.
    #[cfg(test)]
    pub(in crate::daemon) fn with(counts: &[(State, usize)], waiting: usize) -> Tally {
        let mut t = Tally {
            waiting,
            ..Tally::default()
        };
        for &(state, n) in counts {
            t.by_state[state as usize] = n;
        }
        t
    }

    fn add(&mut self, core: &Instance) {
        self.by_state[core.state() as usize] += 1;
        self.waiting += usize::from(core.is_waiting());
    }

    fn remove(&mut self, core: &Instance) {
        let n = &mut self.by_state[core.state() as usize];
        *n = n.saturating_sub(1);
        self.waiting = self.waiting.saturating_sub(usize::from(core.is_waiting()));
    }
}

#[derive(Default)]
pub(in crate::daemon) struct Supervisor {
    /// The configured programs, by name (so display order is by name, then number).
    programs: BTreeMap<String, Program>,
    instances: Vec<Option<Inst>>,
    /// Freed slots, reused by later instances.
    free: Vec<InstId>,
    /// Instances removed by a reload that are still stopping.
    retiring: Vec<InstId>,
    /// Every deadline of the daemon, this table's and its other parts'.
    timers: Timers<TimerKey>,
    /// Instances by state.
    tally: Tally,
}

impl Supervisor {
    // ----- looking up -----

    pub(in crate::daemon) fn get(&self, id: InstId) -> Option<&Inst> {
        self.instances.get(id)?.as_ref()
    }

    /// For what the loop keeps beside the machine (spec, captures, exec slot, start ticks).
    pub(in crate::daemon) fn get_mut(&mut self, id: InstId) -> Option<&mut Inst> {
        self.instances.get_mut(id)?.as_mut()
    }

    /// Every instance in the table, retiring ones included, by id.
    pub(in crate::daemon) fn iter(&self) -> impl Iterator<Item = (InstId, &Inst)> {
        self.instances
            .iter()
            .enumerate()
            .filter_map(|(id, i)| Some((id, i.as_ref()?)))
    }

    /// How many slots the table has, free ones included.
    pub(in crate::daemon) fn slots(&self) -> usize {
        self.instances.len()
    }

    /// The instances of the configured programs in display order: by program name, then
    /// instance number. Retiring instances are in no program.
    pub(in crate::daemon) fn ordered(&self) -> Vec<InstId> {
        self.programs
            .values()
            .flat_map(|p| p.instances.iter().copied())
            .collect()
    }

    /// A configured program by name.
    pub(in crate::daemon) fn by_name(&self, program: &str) -> Option<&Program> {
        self.programs.get(program)
    }

    /// The configured programs, by name.
    pub(in crate::daemon) fn programs(&self) -> impl Iterator<Item = (&str, &Program)> {
        self.programs.iter().map(|(name, p)| (name.as_str(), p))
    }

    /// The configured programs' definitions, by name.
    pub(in crate::daemon) fn specs(&self) -> impl Iterator<Item = (&str, &ProgramSpec)> {
        self.programs
            .iter()
            .map(|(name, p)| (name.as_str(), &*p.spec))
    }

    /// Instances removed by a reload that are not freed yet.
    pub(in crate::daemon) fn retiring(&self) -> &[InstId] {
        &self.retiring
    }

    /// How many instances are in each state.
    pub(in crate::daemon) fn tally(&self) -> Tally {
        self.tally
    }

    // ----- programs and instances -----

    /// Room for `n` more instances: a program's instances are added one by one, and the
    /// table would otherwise double past them (up to twice the memory at rest).
    pub(in crate::daemon) fn reserve(&mut self, n: usize) {
        self.instances.reserve(n.saturating_sub(self.free.len()));
    }

    /// Put a new instance in the table, in a freed slot if there is one.
    pub(in crate::daemon) fn add_instance(
        &mut self,
        core: Instance,
        spec: Rc<ProgramSpec>,
    ) -> InstId {
        self.tally.add(&core);
        let inst = Inst {
            core,
            spec,
            captures: [None, None],
            start_ticks: None,
            next_spec: None,
            retiring: false,
            exec_slot: None,
            cg: Default::default(),
        };
        match self.free.pop() {
            Some(id) => {
                self.instances[id] = Some(inst);
                id
            }
            None => {
                self.instances.push(Some(inst));
                self.instances.len() - 1
            }
        }
    }

    /// Configure a program with these instances (replacing one of the same name).
    pub(in crate::daemon) fn add_program(&mut self, spec: Rc<ProgramSpec>, instances: Vec<InstId>) {
        self.programs
            .insert(spec.name.clone(), Program { spec, instances });
    }

    /// Take a program out of the configuration; its instances stay in the table (retire
    /// them).
    pub(in crate::daemon) fn remove_program(&mut self, name: &str) -> Option<Vec<InstId>> {
        self.programs.remove(name).map(|p| p.instances)
    }

    /// A program's new definition; returns the old one. Its instances keep theirs.
    pub(in crate::daemon) fn set_program_spec(
        &mut self,
        spec: Rc<ProgramSpec>,
    ) -> Option<Rc<ProgramSpec>> {
        let p = self.programs.get_mut(&spec.name)?;
        Some(std::mem::replace(&mut p.spec, spec))
    }

    /// Take the instances numbered `keep` and above out of a program (retire them).
    pub(in crate::daemon) fn split_program(&mut self, name: &str, keep: usize) -> Vec<InstId> {
        match self.programs.get_mut(name) {
            Some(p) if p.instances.len() > keep => p.instances.drain(keep..).collect(),
            _ => Vec::new(),
        }
    }

    /// Append an instance to a program's list (the next instance number).
    pub(in crate::daemon) fn push_instance(&mut self, program: &str, id: InstId) {
        if let Some(p) = self.programs.get_mut(program) {
            p.instances.push(id);
        }
    }

    /// Mark an instance removed by a reload: hidden from status, its pending definition
    /// dropped, and its slot freed by `free_retired` once it is down.
    pub(in crate::daemon) fn retire(&mut self, id: InstId) {
        if let Some(inst) = self.get_mut(id) {
            inst.retiring = true;
            inst.next_spec = None;
        }
        self.retiring.push(id);
    }

    /// Free the slots of the retiring instances that are down; returns their names.
    pub(in crate::daemon) fn free_retired(&mut self) -> Vec<String> {
        let mut freed = Vec::new();
        if self.retiring.is_empty() {
            return freed;
        }
        let mut keep = Vec::new();
        for id in std::mem::take(&mut self.retiring) {
            let down = self.get(id).is_none_or(|i| i.core.state().is_down());
            if down {
                if let Some(inst) = self.instances[id].take() {
                    self.tally.remove(&inst.core);
                    freed.push(inst.core.name().to_string());
                }
                self.free.push(id);
            } else {
                keep.push(id);
            }
        }
        self.retiring = keep;
        freed
    }

    // ----- deadlines -----

    pub(in crate::daemon) fn push_timer(&mut self, at: Instant, key: TimerKey) {
        self.timers.push(at, key);
    }

    /// Every entry due at `now`, earliest first, stale or not: each owner decides (for this
    /// table's keys, `deadline_due` and `tick_due`).
    pub(in crate::daemon) fn pop_due(&mut self, now: Instant) -> Vec<(Instant, TimerKey)> {
        self.timers.pop_due(now)
    }

    /// The earliest entry, stale or not: the loop sleeps until then.
    pub(in crate::daemon) fn next_deadline(&self) -> Option<Instant> {
        self.timers.next()
    }

    /// A `TimerKey::Instance` entry for `at` is still the instance's deadline (else stale).
    pub(in crate::daemon) fn deadline_due(&self, id: InstId, at: Instant) -> bool {
        self.get(id).is_some_and(|i| i.core.deadline() == Some(at))
    }

    /// A `TimerKey::Tick` entry for `at` is still the instance's tick (else stale).
    pub(in crate::daemon) fn tick_due(&self, id: InstId, at: Instant) -> bool {
        self.get(id).is_some_and(|i| i.core.tick_at() == Some(at))
    }

    // ----- the state machine -----

    /// Feed one input to an instance's machine and return what it asks the loop to do. A
    /// deadline or tick the step moved is pushed onto the heap (the old entry turns stale).
    /// An id with no instance does nothing.
    pub(in crate::daemon) fn step(
        &mut self,
        id: InstId,
        input: Input,
        now: Instant,
    ) -> Vec<Action> {
        let mut actions = Vec::new();
        let Some(inst) = self.instances.get_mut(id).and_then(Option::as_mut) else {
            return actions;
        };
        let before = inst.core.deadline();
        let tick_before = inst.core.tick_at();
        let spec = inst.spec.clone();
        self.tally.remove(&inst.core);
        inst.core.step(&spec, now, input, &mut actions);
        self.tally.add(&inst.core);
        if inst.core.deadline() != before {
            if let Some(at) = inst.core.deadline() {
                self.timers.push(at, TimerKey::Instance(id));
            }
        }
        if inst.core.tick_at() != tick_before {
            if let Some(at) = inst.core.tick_at() {
                self.timers.push(at, TimerKey::Tick(id));
            }
        }
        actions
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn spec(name: &str) -> Rc<ProgramSpec> {
        Rc::new(ProgramSpec {
            starttime: Duration::from_secs(1),
            stoptime: Duration::from_secs(2),
            ..ProgramSpec::for_tests(name, &["true"])
        })
    }

    /// A supervisor with one program of one instance, and the base of the fake clock.
    fn one(name: &str) -> (Supervisor, InstId, Instant) {
        let mut sup = Supervisor::default();
        let spec = spec(name);
        let id = sup.add_instance(Instance::new(name, 0, name.into()), spec.clone());
        sup.add_program(spec, vec![id]);
        (sup, id, Instant::now())
    }

    fn ms(t0: Instant, ms: u64) -> Instant {
        t0 + Duration::from_millis(ms)
    }

    /// Every due entry at `now`, with whether its owner (the table) still wants it.
    fn due(sup: &mut Supervisor, now: Instant) -> Vec<(TimerKey, bool)> {
        sup.pop_due(now)
            .into_iter()
            .map(|(at, key)| {
                let current = match key {
                    TimerKey::Instance(id) => sup.deadline_due(id, at),
                    TimerKey::Tick(id) => sup.tick_due(id, at),
                    _ => true,
                };
                (key, current)
            })
            .collect()
    }

    #[test]
    fn the_tally_follows_every_step_and_the_freeing_of_a_slot() {
        let (mut sup, id, t0) = one("web");
        let t = sup.tally();
        assert_eq!((t.of(State::Stopped), t.of(State::Running)), (1, 0));
        sup.step(id, Input::Start, t0);
        sup.step(id, Input::Spawned { pid: 4242 }, t0);
        assert_eq!(sup.tally().of(State::Starting), 1);
        sup.step(id, Input::Deadline, ms(t0, 1000));
        let t = sup.tally();
        assert_eq!((t.of(State::Starting), t.of(State::Running)), (0, 1));
        assert_eq!(t.waiting(), 0);
        sup.remove_program("web");
        sup.retire(id);
        sup.step(id, Input::Shutdown, ms(t0, 1100));
        assert_eq!(sup.tally().of(State::Stopping), 1);
        sup.step(
            id,
            Input::Exited(crate::core::ExitStatus::Signaled(15)),
            ms(t0, 1200),
        );
        sup.step(id, Input::GroupEmpty, ms(t0, 1200));
        assert_eq!(sup.tally().of(State::Stopped), 1);
        assert_eq!(sup.free_retired(), ["web"]);
        assert_eq!(sup.tally(), Tally::default(), "a freed slot counts nowhere");
    }

    #[test]
    fn a_step_arms_the_deadline_it_sets() {
        let (mut sup, id, t0) = one("web");
        assert_eq!(
            sup.next_deadline(),
            None,
            "a new instance waits for nothing"
        );
        let actions = sup.step(id, Input::Start, t0);
        assert!(actions.contains(&Action::Spawn), "{actions:?}");
        // Spawned: running once up for `starttime`, a deadline the step just set.
        sup.step(id, Input::Spawned { pid: 4242 }, ms(t0, 10));
        let at = sup.get(id).and_then(|i| i.core().deadline());
        assert_eq!(at, Some(ms(t0, 1010)));
        assert_eq!(sup.next_deadline(), at, "the heap has the new deadline");
        assert!(due(&mut sup, ms(t0, 1009)).is_empty(), "nothing due early");
        assert_eq!(
            due(&mut sup, ms(t0, 1010)),
            [(TimerKey::Instance(id), true)]
        );
        sup.step(id, Input::Deadline, ms(t0, 1010));
        assert_eq!(sup.get(id).map(|i| i.core().state()), Some(State::Running));
        assert_eq!(sup.next_deadline(), None, "running waits for nothing");
    }

    #[test]
    fn a_moved_deadline_leaves_a_stale_entry_that_is_ignored() {
        let (mut sup, id, t0) = one("web");
        sup.step(id, Input::Start, t0);
        sup.step(id, Input::Spawned { pid: 4242 }, t0);
        // Stopped before it was up: the starttime entry (1000) is stale, the stoptime one
        // (500 + 2000) is the instance's deadline now.
        sup.step(id, Input::Stop, ms(t0, 500));
        assert_eq!(
            sup.get(id).and_then(|i| i.core().deadline()),
            Some(ms(t0, 2500))
        );
        assert_eq!(
            due(&mut sup, ms(t0, 1000)),
            [(TimerKey::Instance(id), false)],
            "the old entry comes due and is stale"
        );
        assert_eq!(sup.next_deadline(), Some(ms(t0, 2500)));
        assert_eq!(
            due(&mut sup, ms(t0, 2500)),
            [(TimerKey::Instance(id), true)]
        );
        assert_eq!(sup.next_deadline(), None);
    }

    #[test]
    fn an_entry_of_a_freed_slot_is_stale_for_its_new_instance() {
        let (mut sup, id, t0) = one("old");
        sup.step(id, Input::Start, t0);
        sup.step(id, Input::Spawned { pid: 4242 }, t0);
        // Removed by a reload while starting: its starttime (1000), stoptime (2100) and any
        // later entries stay in the heap.
        assert_eq!(sup.remove_program("old"), Some(vec![id]));
        sup.retire(id);
        sup.step(id, Input::Shutdown, ms(t0, 100));
        sup.step(
            id,
            Input::Exited(crate::core::ExitStatus::Signaled(15)),
            ms(t0, 200),
        );
        sup.step(id, Input::GroupEmpty, ms(t0, 200));
        assert_eq!(sup.free_retired(), ["old"]);
        let new = sup.add_instance(Instance::new("new", 0, "new".into()), spec("new"));
        assert_eq!(new, id, "the slot is reused");
        sup.step(new, Input::Start, ms(t0, 300));
        sup.step(new, Input::Spawned { pid: 4343 }, ms(t0, 300));
        // Of everything under this id in the heap, only the new instance's starttime is its
        // deadline: what the old one left is stale.
        let due = sup.pop_due(ms(t0, 10_000));
        assert!(due.len() >= 3, "{due:?}");
        assert!(due.iter().all(|&(_, key)| key == TimerKey::Instance(id)));
        let current: Vec<Instant> = due
            .iter()
            .filter(|&&(at, _)| sup.deadline_due(id, at))
            .map(|&(at, _)| at)
            .collect();
        assert_eq!(current, [ms(t0, 1300)]);
    }

    #[test]
    fn a_retired_slot_is_freed_once_down_and_reused() {
        let mut sup = Supervisor::default();
        let t0 = Instant::now();
        let web = spec("web");
        let ids: Vec<InstId> = (0..3)
            .map(|n| {
                let name = format!("web:{n}");
                sup.add_instance(Instance::new("web", n, name), web.clone())
            })
            .collect();
        sup.add_program(web.clone(), ids.clone());
        assert_eq!(sup.ordered(), ids);
        sup.step(ids[2], Input::Start, t0);
        sup.step(ids[2], Input::Spawned { pid: 4242 }, t0);
        // Scaled to 2: the third leaves the program but not the table while it stops.
        let extra = sup.split_program("web", 2);
        assert_eq!(extra, [ids[2]]);
        sup.retire(ids[2]);
        sup.step(ids[2], Input::Shutdown, ms(t0, 10));
        assert_eq!(sup.ordered(), &ids[..2], "hidden from status");
        assert!(sup.get(ids[2]).is_some_and(Inst::is_retiring));
        assert!(sup.free_retired().is_empty(), "still stopping");
        assert_eq!(sup.retiring(), [ids[2]]);
        sup.step(
            ids[2],
            Input::Exited(crate::core::ExitStatus::Signaled(15)),
            ms(t0, 20),
        );
        sup.step(ids[2], Input::GroupEmpty, ms(t0, 20));
        assert!(sup.get(ids[2]).is_some_and(|i| i.core().state().is_down()));
        assert_eq!(sup.free_retired(), ["web:2"]);
        assert!(sup.get(ids[2]).is_none() && sup.retiring().is_empty());
        assert_eq!(sup.iter().map(|(id, _)| id).collect::<Vec<_>>(), &ids[..2]);
        // Scaled back to 3: the new instance takes the freed slot, not a new one.
        let again = sup.add_instance(Instance::new("web", 2, "web:2".into()), web);
        sup.push_instance("web", again);
        assert_eq!(again, ids[2]);
        assert_eq!(sup.slots(), 3);
        assert!(sup.get(again).is_some_and(|i| !i.is_retiring()));
        assert_eq!(sup.ordered(), ids);
    }
}
