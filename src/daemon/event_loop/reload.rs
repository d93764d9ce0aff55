//! Reload: re-read the config and apply the difference, program by program (the README's
//! Reload section). The plan comes from `core::reload`; this file carries it out.
//!
//! - unchanged: untouched (same pids, same counts, same schedule phase);
//! - changed: each instance that is up restarts; the old process is stopped with the old
//!   `stopsignal`/`stoptime`, the new one runs the new definition (swapped in at the spawn);
//! - scaled (`numprocs` only, both above 1): start or stop the difference;
//! - renamed (between 1 and more instances, or between a service and a scheduled job) and
//!   removed: the old instances retire (stopped, hidden from status, freed once down);
//!   renamed ones come back afresh;
//! - a scheduled job keeps its instance, so its phase survives unless its schedule keys
//!   changed; a run in progress finishes under the old definition;
//! - added: start if `autostart`.
//!
//! An invalid config changes nothing. `sup reload` waits until what had to stop has stopped
//! and what had to start has started; SIGHUP does not wait for anyone.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::rc::Rc;
use std::time::Instant;

use super::clients::{Answer, Goal, Item};
use super::{Daemon, InstId};
use crate::config::ProgramSpec;
use crate::control::proto::{ReloadReport, Response, ResponseBody};
use crate::core::{reload, Input};

impl Daemon {
    /// Reload from the config file. With `slot`, the client waits for the outcome.
    pub(super) fn reload(
        &mut self,
        dry_run: bool,
        slot: Option<usize>,
        now: Instant,
    ) -> Option<Response> {
        if !dry_run {
            // The service manager hears of it first; READY=1 follows once it is applied.
            self.systemd.reloading();
        }
        let config = match self.load_again(dry_run) {
            Ok(c) => c,
            Err(answer) => return Some(*answer),
        };
        let plan = reload::plan(&self.running_specs(), &config.programs);
        let mut report = report_of(&plan, dry_run);
        report.groups = reload::group_changes(&self.settings.config.groups, &config.groups);
        let running = &self.settings.config.daemon;
        report.listeners =
            reload::listener_changes(&running.notify.listeners, &config.daemon.notify.listeners);
        // Listeners follow the reload; every other daemon setting waits for a restart.
        let mut daemon = config.daemon.clone();
        daemon.notify.listeners = running.notify.listeners.clone();
        report.daemon_changed = daemon != *running;
        if dry_run {
            return Some(Response::new(ResponseBody::Reload { report }));
        }
        if report.daemon_changed {
            log::warn!(
                "reload: daemon settings changed; they take effect at the next daemon start"
            );
        }
        if config.daemon.notify.listeners != self.settings.config.daemon.notify.listeners {
            self.configure_listeners(&config.daemon.notify.listeners, now);
            self.settings.config.daemon.notify.listeners = config.daemon.notify.listeners;
        }
        let waits = self.carry_out(&plan, &config.programs, now);
        log::info!("{}", summary(&report));
        self.settings.config.programs = config.programs;
        self.settings.config.groups = config.groups;
        self.settings.config.origins = config.origins;
        self.after_reload(report, waits, slot, now)
    }

    /// `sup add NAME…` (`adding`) and `sup remove NAME…`: the reload plan restricted to these
    /// programs, as supervisorctl's `add` and `remove` after a `reread`. `add` applies what
    /// the config now says for each (a new program is added and started, a changed one
    /// restarted); `remove` stops and drops a program the config no longer has. Every other
    /// program's pending change waits for a full reload. A name `add` does not find in the
    /// config, or `remove` finds still in it, fails the whole request: nothing changes.
    pub(super) fn reload_some(
        &mut self,
        names: &[String],
        adding: bool,
        slot: usize,
        now: Instant,
    ) -> Option<Response> {
        let verb = if adding { "add" } else { "remove" };
        if self.shutting_down {
            return Some(Response::error(super::api::SHUTTING_DOWN));
        }
        let config = match self.load_again(false) {
            Ok(c) => c,
            Err(answer) => return Some(*answer),
        };
        let old = self.running_specs();
        // A group stands for its programs, as in the config that defines it now (for
        // `add`) or as it was loaded (for `remove`).
        let groups = if adding {
            &config.groups
        } else {
            &self.settings.config.groups
        };
        let mut wanted = BTreeSet::new();
        let mut bad = Vec::new();
        for name in names {
            let programs = groups
                .get(name)
                .cloned()
                .unwrap_or_else(|| vec![name.clone()]);
            for p in programs {
                let (in_config, running) = (config.programs.contains_key(&p), old.contains_key(&p));
                match (adding, in_config, running) {
                    (true, false, _) => bad.push(format!("{p}: not in the config")),
                    (false, _, false) => bad.push(format!("{p}: no such program is running")),
                    (false, true, true) => bad.push(format!(
                        "{p}: still in the config (take it out first; `sup stop {p}` stops it \
                         and keeps it)"
                    )),
                    _ => {
                        wanted.insert(p);
                    }
                }
            }
        }
        if !bad.is_empty() {
            return Some(Response::new(ResponseBody::Error {
                message: format!("{verb}: {}", bad.join("; ")),
                hint: Some("`sup reload --dry-run` shows what the config changes".into()),
            }));
        }
        let full = reload::plan(&old, &config.programs);
        let plan = restrict(&full, &wanted, adding);
        let report = report_of(&plan, false);
        let waits = self.carry_out(&plan, &config.programs, now);
        log::info!("{verb}: {}", summary(&report));
        // The running config takes only these programs' new definitions.
        let cfg = &mut self.settings.config;
        for name in &plan.removed {
            cfg.programs.remove(name);
            cfg.origins.remove(name);
        }
        for name in plan.added.iter().chain(&plan.changed).chain(&plan.renamed) {
            copy_program(cfg, &config, name);
        }
        for (name, _, _) in &plan.scaled {
            copy_program(cfg, &config, name);
        }
        self.after_reload(report, waits, Some(slot), now)
    }

    /// The config as the files say now; an invalid one is logged and answered with its errors.
    fn load_again(&mut self, dry_run: bool) -> Result<crate::config::Config, Box<Response>> {
        let path = self.settings.config.source.clone();
        crate::config::load(&path).map_err(|errors| {
            log::error!(
                "reload failed: {} error{} in {}; the running config stays in force",
                errors.len(),
                if errors.len() == 1 { "" } else { "s" },
                path.display()
            );
            for e in &errors {
                log::error!("reload: {}", e.to_string().replace('\n', " "));
            }
            let report = ReloadReport {
                errors: errors.iter().map(|e| e.to_string()).collect(),
                dry_run,
                ..ReloadReport::default()
            };
            Box::new(Response::new(ResponseBody::Reload { report }))
        })
    }

    fn running_specs(&self) -> BTreeMap<String, ProgramSpec> {
        self.sup
            .specs()
            .map(|(name, spec)| (name.to_string(), spec.clone()))
            .collect()
    }

    /// Carry out a plan with the new definitions in `programs`; what a waiting client waits
    /// for.
    fn carry_out(
        &mut self,
        plan: &reload::Plan,
        programs: &BTreeMap<String, ProgramSpec>,
        now: Instant,
    ) -> Vec<(InstId, Goal)> {
        let mut waits = Vec::new();
        for name in plan.removed.iter().chain(&plan.renamed) {
            waits.extend(self.retire_program(name, now));
        }
        for name in &plan.changed {
            if let Some(spec) = programs.get(name) {
                waits.extend(self.change_program(spec.clone(), now));
            }
        }
        for (name, _, _) in &plan.scaled {
            if let Some(spec) = programs.get(name) {
                waits.extend(self.scale_program(spec.clone(), now));
            }
        }
        for name in plan.added.iter().chain(&plan.renamed) {
            if let Some(spec) = programs.get(name) {
                let ids = self.add_program(spec.clone(), &HashMap::new(), now);
                if spec.autostart && spec.schedule.is_none() {
                    waits.extend(ids.into_iter().map(|id| (id, Goal::Up)));
                }
            }
        }
        waits
    }

    /// Once the running config is the new one: dependencies, subscribers, the waiting client.
    fn after_reload(
        &mut self,
        report: ReloadReport,
        waits: Vec<(InstId, Goal)>,
        slot: Option<usize>,
        now: Instant,
    ) -> Option<Response> {
        self.index_dependencies();
        let inputs = self.recheck_all_waiting();
        self.apply(inputs, now);
        self.resnapshot(now);
        let slot = slot?;
        let items = waits
            .into_iter()
            .filter_map(|(id, goal)| {
                let name = self.sup.get(id)?.core().name().to_string();
                Some(Item {
                    id,
                    name,
                    goal,
                    outcome: None,
                })
            })
            .collect();
        self.wait(slot, items, Answer::Reload(report), now)
    }

    /// Stop every instance of a program and hide it; the slots are freed once down.
    fn retire_program(&mut self, name: &str, now: Instant) -> Vec<(InstId, Goal)> {
        let Some(ids) = self.sup.remove_program(name) else {
            return Vec::new();
        };
        for &id in &ids {
            self.retire(id, now);
        }
        ids.into_iter().map(|id| (id, Goal::Down)).collect()
    }

    fn retire(&mut self, id: InstId, now: Instant) {
        self.sup.retire(id);
        self.state_retire(id);
        self.forget_holds(id);
        self.apply(vec![(id, Input::Shutdown)], now);
    }

    /// A new definition for the same instance names: restart what is up, swap the rest.
    fn change_program(&mut self, spec: ProgramSpec, now: Instant) -> Vec<(InstId, Goal)> {
        let spec = Rc::new(spec);
        let mut waits = self.resize(&spec, now);
        let Some(old) = self.sup.set_program_spec(spec.clone()) else {
            return waits;
        };
        let old_autostart = old.autostart;
        let ids = self.instances_of(&spec.name);
        for id in ids {
            let Some(inst) = self.sup.get_mut(id) else {
                continue;
            };
            let state = inst.core().state();
            if spec.schedule.is_some() {
                inst.spec = spec.clone();
                inst.next_spec = None;
                let rearm = old.schedule != spec.schedule
                    || old.timezone != spec.timezone
                    || old.sched != spec.sched;
                if rearm {
                    self.apply(vec![(id, Input::Reschedule)], now);
                    let inputs = self.arm_schedule(id, None);
                    self.apply(inputs, now);
                }
            } else if state.is_down() {
                // Nothing runs: the new definition simply applies from the next start.
                inst.spec = spec.clone();
                inst.next_spec = None;
                let start = !old_autostart
                    && spec.autostart
                    && inst.core().want_up()
                    && state == crate::core::State::Stopped
                    && spec.schedule.is_none();
                if start {
                    self.apply(vec![(id, Input::Start)], now);
                    waits.push((id, Goal::Up));
                }
            } else if inst.core().want_up() {
                inst.next_spec = Some(spec.clone());
                self.apply(vec![(id, Input::Restart)], now);
                waits.push((id, Goal::Restarted));
            } else {
                // An operator is stopping it: it ends stopped, and starts anew when asked.
                inst.next_spec = Some(spec.clone());
                waits.push((id, Goal::Down));
            }
        }
        waits
    }

    /// Only `numprocs` changed: start or stop the difference, leave the others alone.
    fn scale_program(&mut self, spec: ProgramSpec, now: Instant) -> Vec<(InstId, Goal)> {
        let spec = Rc::new(spec);
        let waits = self.resize(&spec, now);
        if self.sup.set_program_spec(spec.clone()).is_some() {
            for id in self.instances_of(&spec.name) {
                if let Some(inst) = self.sup.get_mut(id) {
                    inst.spec = spec.clone();
                }
            }
        }
        waits
    }

    /// Bring a program's instance list to `spec.numprocs` (names `NAME:i` on both sides):
    /// retire the extra ones, add and start the missing ones.
    fn resize(&mut self, spec: &Rc<ProgramSpec>, now: Instant) -> Vec<(InstId, Goal)> {
        let mut waits = Vec::new();
        let Some(have) = self.sup.by_name(&spec.name).map(|p| p.instances().len()) else {
            return waits;
        };
        let want = spec.numprocs as usize;
        if have > want {
            for id in self.sup.split_program(&spec.name, want) {
                self.retire(id, now);
                waits.push((id, Goal::Down));
            }
        } else if have < want {
            let names = spec.instance_names();
            for (num, name) in names.into_iter().enumerate().skip(have) {
                let id = self.new_instance(spec, num as u32, name, &HashMap::new());
                self.sup.push_instance(&spec.name, id);
                if spec.schedule.is_some() {
                    let inputs = self.arm_schedule(id, None);
                    self.apply(inputs, now);
                } else if spec.autostart {
                    self.apply(vec![(id, Input::Start)], now);
                    waits.push((id, Goal::Up));
                }
            }
        }
        waits
    }

    /// Free the slots of retired instances that are down.
    pub(super) fn free_retired(&mut self) {
        let freed = self.sup.free_retired();
        if freed.is_empty() {
            return;
        }
        for name in &freed {
            self.state_forget(name);
        }
        // Output state is kept by name, across restarts: drop it only for names that no
        // instance has now (a name re-added while its old instance stopped keeps it).
        let live: HashSet<&str> = self.sup.iter().map(|(_, i)| i.core().name()).collect();
        self.logs.retain_names(|name| live.contains(name));
    }

    /// A configured program's instances (none for a name not configured).
    fn instances_of(&self, program: &str) -> Vec<InstId> {
        self.sup
            .by_name(program)
            .map(|p| p.instances().to_vec())
            .unwrap_or_default()
    }
}

/// A plan cut down to `wanted`: for `add` everything but removals, for `remove` only them.
fn restrict(full: &reload::Plan, wanted: &BTreeSet<String>, adding: bool) -> reload::Plan {
    let keep = |v: &[String]| -> Vec<String> {
        v.iter().filter(|n| wanted.contains(*n)).cloned().collect()
    };
    if !adding {
        return reload::Plan {
            removed: keep(&full.removed),
            ..reload::Plan::default()
        };
    }
    reload::Plan {
        added: keep(&full.added),
        changed: keep(&full.changed),
        scaled: full
            .scaled
            .iter()
            .filter(|(n, _, _)| wanted.contains(n))
            .cloned()
            .collect(),
        renamed: keep(&full.renamed),
        removed: Vec::new(),
        unchanged: keep(&full.unchanged),
    }
}

/// Take program `name` (its definition and where it is written) from `new` into `cfg`.
fn copy_program(cfg: &mut crate::config::Config, new: &crate::config::Config, name: &str) {
    if let Some(spec) = new.programs.get(name) {
        cfg.programs.insert(name.to_string(), spec.clone());
    }
    if let Some(origin) = new.origins.get(name) {
        cfg.origins.insert(name.to_string(), origin.clone());
    }
}

fn report_of(plan: &reload::Plan, dry_run: bool) -> ReloadReport {
    let mut changed = plan.changed.clone();
    changed.extend(
        plan.scaled
            .iter()
            .map(|(name, from, to)| format!("{name} (numprocs {from} → {to})")),
    );
    changed.extend(
        plan.renamed
            .iter()
            .map(|n| format!("{n} (renamed instances)")),
    );
    changed.sort();
    ReloadReport {
        added: plan.added.clone(),
        changed,
        removed: plan.removed.clone(),
        unchanged: plan.unchanged.clone(),
        groups: Vec::new(),
        listeners: Vec::new(),
        daemon_changed: false,
        errors: Vec::new(),
        dry_run,
        outcomes: Vec::new(),
    }
}

fn summary(r: &ReloadReport) -> String {
    let list = |v: &[String]| {
        if v.is_empty() {
            "none".to_string()
        } else {
            v.join(", ")
        }
    };
    let more = |word: &str, v: &[String]| {
        if v.is_empty() {
            String::new()
        } else {
            format!("; {word} {}", v.join(", "))
        }
    };
    let (groups, listeners) = (more("groups", &r.groups), more("listeners", &r.listeners));
    format!(
        "reload: added {}; changed {}; removed {}; unchanged {}{groups}{listeners}",
        list(&r.added),
        list(&r.changed),
        list(&r.removed),
        r.unchanged.len()
    )
}
