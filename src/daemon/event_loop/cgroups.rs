//! The loop's side of cgroups (`daemon::cgroup`): make an instance's cgroup at its spawn,
//! kill what is left in it when a stop finds its process group empty, read its usage, tell
//! an OOM kill apart, and remove it once the instance is down.

use std::collections::HashMap;

use super::{Daemon, InstId};
use crate::config::ProgramSpec;
use crate::core::ExitStatus;
use crate::daemon::cgroup::Trees;
use crate::daemon::procfs;
use crate::daemon::spawn::{Extras, SpawnError};

/// What the daemon knows of one instance's cgroup.
#[derive(Debug, Default)]
pub(in crate::daemon) struct CgState {
    /// The current (or last) process was placed in the instance's cgroup.
    pub(in crate::daemon) joined: bool,
    /// The hierarchies the current (or last) process joined (`Cgroups::prepare`).
    trees: Trees,
    /// The hierarchies that may hold a directory of the instance, until `remove_cgroup`.
    made: Trees,
    /// The OOM-kill counter at the spawn.
    oom_base: Option<u64>,
    /// The cgroup's CPU µs at the spawn: the cgroup outlives a restart.
    cpu_base: u64,
    /// The limits written at the last spawn, so the next writes only what changed.
    written: Option<crate::config::spec::CgroupLimits>,
    /// Limits the host cannot apply were reported once.
    warned: bool,
    /// The cgroup was killed since its directory was made. Linux up to at least 6.18 then
    /// SIGKILLs every child `clone3(CLONE_INTO_CGROUP)` makes in it (`cgroup_css_set_fork`
    /// reads the kill counter of the parent's cgroup instead of the target's, and
    /// `cgroup_post_fork` compares it with the target's), so until the directory is removed
    /// and made anew, a spawn joins by writing `cgroup.procs` instead.
    killed: std::cell::Cell<bool>,
    /// The directory could not be removed yet (a process still in it): retried after reaps.
    pub(in crate::daemon) pending_removal: bool,
    /// How the last run ended, for `status`: `code`, `signal`, or `oom` when the kernel's
    /// OOM killer ended it.
    pub(in crate::daemon) exit_reason: Option<&'static str>,
}

/// Which instances hold cgroup directories, beside each one's `CgState`: how many per program
/// (its directory goes with the last one's, and is not tried before: a refused `rmdir` of a
/// directory with children costs the kernel a walk over them, so one per stop made a stop of
/// every instance quadratic), and the removals that must be tried again after reaps (a list,
/// so a reap costs nothing per instance that has no removal pending).
#[derive(Debug, Default)]
pub(in crate::daemon) struct CgDirs {
    /// Instances with `made != 0`, by program name.
    by_program: HashMap<String, usize>,
    /// Instances whose removal failed (`CgState::pending_removal`); may hold stale ids.
    retry: Vec<InstId>,
    /// Instances that went down this turn holding a directory: removed at the end of the
    /// turn, once the waiters have their answers (the processes are gone already).
    down: Vec<InstId>,
}

impl CgDirs {
    /// An instance of `program` went from holding no directory to some (`had` → `has`), or
    /// back: true when it was the program's last.
    fn changed(&mut self, program: &str, had: Trees, has: Trees) -> bool {
        match (had != 0, has != 0) {
            (false, true) => {
                *self.by_program.entry(program.to_string()).or_default() += 1;
                false
            }
            (true, false) => match self.by_program.get_mut(program) {
                Some(n) if *n > 1 => {
                    *n -= 1;
                    false
                }
                Some(_) => {
                    self.by_program.remove(program);
                    true
                }
                None => true,
            },
            _ => false,
        }
    }
}

impl Daemon {
    /// Make the instance's cgroup and give the child its `cgroup.procs` descriptors.
    pub(super) fn prepare_cgroup(
        &mut self,
        id: InstId,
        spec: &ProgramSpec,
        extras: &mut Extras,
    ) -> Result<(), SpawnError> {
        let Some(inst) = self.sup.get(id) else {
            return Ok(());
        };
        let name = inst.core().name().to_string();
        let previous = inst.cg.written;
        let killed = inst.cg.killed.get();
        let made = inst.cg.made;
        let mut joined = self
            .settings
            .cgroups
            .prepare(&spec.name, &name, &spec.cgroup, previous.as_ref(), made)
            .map_err(|(reason, daemon)| SpawnError { reason, daemon })?;
        if killed {
            joined.v2_dir = None;
        }
        // A directory made by this spawn starts at 0.
        let cpu_base = match joined.procs.is_empty() || joined.fresh {
            true => 0,
            false => self
                .settings
                .cgroups
                .cpu_us(&spec.name, &name, joined.trees)
                .unwrap_or(0),
        };
        let warn = !joined.unapplied.is_empty();
        self.cg_dirs.changed(&spec.name, made, joined.made);
        if let Some(inst) = self.sup.get_mut(id) {
            inst.cg.joined = !joined.procs.is_empty();
            inst.cg.trees = joined.trees;
            inst.cg.made = joined.made;
            inst.cg.written = inst.cg.joined.then_some(spec.cgroup);
            inst.cg.oom_base = joined.oom_base;
            inst.cg.cpu_base = cpu_base;
            inst.cg.pending_removal = false;
            if warn && !inst.cg.warned {
                inst.cg.warned = true;
                log::warn!(
                    "{name} limits not applied: {} ({})",
                    joined.unapplied.join(", "),
                    self.settings.cgroups.summary()
                );
            }
        }
        extras.cgroup_procs = joined.procs;
        extras.cgroup_dir = joined.v2_dir;
        Ok(())
    }

    /// The program and instance names of an instance in a cgroup.
    fn cg_names(&self, id: InstId) -> Option<(String, String)> {
        self.cg_of(id).map(|(p, i, _)| (p, i))
    }

    /// `cg_names` and the hierarchies the instance joined.
    fn cg_of(&self, id: InstId) -> Option<(String, String, Trees)> {
        let inst = self.sup.get(id)?;
        inst.cg.joined.then(|| {
            (
                inst.core().program().to_string(),
                inst.core().name().to_string(),
                inst.cg.trees,
            )
        })
    }

    /// SIGKILL the whole cgroup (a SIGKILL to the process group reaches no escapee).
    pub(super) fn kill_cgroup(&self, id: InstId) {
        if let Some((p, i)) = self.cg_names(id) {
            // After a crash the cgroup is most often empty already: nothing to kill, and a
            // kill would cost the restart its clone3 (see `CgState::killed`). An empty cgroup
            // cannot fill again but by a spawn of ours.
            if self.settings.cgroups.populated(&p, &i) == Some(false) {
                return;
            }
            self.note_killed(id);
            if let Err(e) = self.settings.cgroups.kill(&p, &i) {
                log::warn!("{i}: {e}");
            }
        }
    }

    /// A stop found the process group empty: is something left in the cgroup? Then it is
    /// killed (it escaped the group: `setsid`, a double fork) and the stop goes on until the
    /// next check finds the cgroup empty. `None` without a cgroup.
    pub(super) fn cgroup_holds_escapees(&self, id: InstId) -> Option<bool> {
        let (p, i) = self.cg_names(id)?;
        let populated = self.settings.cgroups.populated(&p, &i)?;
        if populated {
            log::warn!("{i}: killing what left its process group but not its cgroup");
            self.note_killed(id);
            if let Err(e) = self.settings.cgroups.kill(&p, &i) {
                log::warn!("{i}: {e}");
            }
        }
        Some(populated)
    }

    /// The leader exited: was it the OOM killer? (SIGKILL, and the cgroup's counter rose.)
    pub(super) fn note_exit(&mut self, id: InstId, status: ExitStatus) {
        let oom = match (status, self.cg_of(id)) {
            (ExitStatus::Signaled(9), Some((p, i, trees))) => {
                let now = self.settings.cgroups.oom_kills(&p, &i, trees);
                let base = self.sup.get(id).and_then(|x| x.cg.oom_base);
                matches!((now, base), (Some(n), Some(b)) if n > b)
            }
            _ => false,
        };
        if let Some(inst) = self.sup.get_mut(id) {
            inst.cg.exit_reason = Some(match status {
                _ if oom => "oom",
                ExitStatus::Signaled(_) => "signal",
                ExitStatus::Code(_) => "code",
            });
            if oom {
                let limit = inst.spec.cgroup.memory_max.map_or(String::new(), |m| {
                    format!(" (memory_max {})", human_bytes(m))
                });
                let name = inst.core().name().to_string();
                log::warn!("{name} oom: killed by the kernel's OOM killer{limit}");
            }
        }
    }

    /// Remove the cgroup of an instance that is down; one still holding a process is tried
    /// again after the next reap. The program's directory goes with its last instance's.
    pub(super) fn remove_cgroup(&mut self, id: InstId) {
        let Some((p, i)) = self.cg_names(id) else {
            return;
        };
        let made = self.sup.get(id).map_or(0, |x| x.cg.made);
        if made == 0 {
            return;
        }
        let done = self.settings.cgroups.remove(&p, &i, made);
        if let Some(inst) = self.sup.get_mut(id) {
            if !done && !inst.cg.pending_removal {
                self.cg_dirs.retry.push(id);
            }
            inst.cg.pending_removal = !done;
            if done {
                inst.cg.killed.set(false);
                inst.cg.made = 0;
            }
        }
        if done && self.cg_dirs.changed(&p, made, 0) {
            self.settings.cgroups.remove_program(&p);
        }
    }

    /// The instance's cgroup is being killed: see `CgState::killed`.
    fn note_killed(&self, id: InstId) {
        if let Some(inst) = self.sup.get(id) {
            inst.cg.killed.set(true);
        }
    }

    /// `id` is down: its cgroup goes at the end of the turn (`remove_down_cgroups`), or now
    /// for a retiring instance, whose slot is freed before then.
    pub(super) fn cgroup_down(&mut self, id: InstId) {
        match self.sup.get(id) {
            Some(i) if i.cg.made != 0 && i.is_retiring() => self.remove_cgroup(id),
            Some(i) if i.cg.made != 0 => self.cg_dirs.down.push(id),
            _ => {}
        }
    }

    /// At the end of the turn, after the waiters were answered: remove the cgroups of the
    /// instances that went down, one `rmdir` each (the kernel's most costly part of a stop,
    /// which a `stop` need not wait for: its processes are gone). One started again meanwhile
    /// keeps its directory.
    pub(super) fn remove_down_cgroups(&mut self) {
        if self.cg_dirs.down.is_empty() {
            return;
        }
        for id in std::mem::take(&mut self.cg_dirs.down) {
            if self.sup.get(id).is_some_and(|i| i.core().state().is_down()) {
                self.remove_cgroup(id);
            }
        }
    }

    /// After reaps: the removals that had to wait (an instance up again keeps its directory,
    /// and its spawn cleared `pending_removal`).
    pub(super) fn retry_cgroup_removals(&mut self) {
        if self.cg_dirs.retry.is_empty() {
            return;
        }
        let ids = std::mem::take(&mut self.cg_dirs.retry);
        for id in ids {
            let Some(inst) = self.sup.get_mut(id) else {
                continue;
            };
            if !inst.cg.pending_removal {
                continue;
            }
            if !inst.core().state().is_down() {
                // Listed again at its next failed removal.
                inst.cg.pending_removal = false;
                continue;
            }
            inst.cg.pending_removal = false;
            self.remove_cgroup(id);
        }
    }

    /// CPU ticks and resident bytes for `status`, `/metrics` and the `max_memory`/`max_cpu`
    /// rules: the whole cgroup's where there is one (CPU since this process's spawn), else
    /// (or for a figure the host does not keep) the leader's from `/proc`.
    pub(super) fn usage_sample(&self, id: InstId, pid: u32) -> Option<(u64, u64)> {
        let (cpu, mem) = match self.cg_of(id) {
            Some((p, i, trees)) => self.settings.cgroups.usage(&p, &i, trees),
            None => (None, None),
        };
        let base = self.sup.get(id).map_or(0, |i| i.cg.cpu_base);
        let hz = procfs::ticks_per_s();
        let cpu = cpu.map(|us| us.saturating_sub(base) * hz / 1_000_000);
        match (cpu, mem) {
            (Some(c), Some(m)) => Some((c, m)),
            _ => {
                let leader = procfs::usage(pid);
                Some((cpu.or(leader.map(|l| l.0))?, mem.or(leader.map(|l| l.1))?))
            }
        }
    }

    /// `status`'s `exit_reason`: how the run `last_exit` describes ended.
    pub(super) fn exit_reason(&self, id: InstId) -> Option<String> {
        let inst = self.sup.get(id)?;
        inst.core().last_exit()?;
        inst.cg.exit_reason.map(str::to_string)
    }
}

fn human_bytes(n: u64) -> String {
    const MIB: u64 = 1 << 20;
    if n % MIB == 0 {
        format!("{}M", n / MIB)
    } else {
        format!("{n} bytes")
    }
}

#[cfg(test)]
mod tests {
    use super::CgDirs;

    #[test]
    fn a_programs_directory_goes_with_its_last_instance_holding_one() {
        let mut d = CgDirs::default();
        assert!(!d.changed("web", 0, 1), "a first directory");
        assert!(!d.changed("web", 0, 3), "a second instance");
        assert!(!d.changed("web", 1, 3), "more trees: still one instance");
        assert!(!d.changed("db", 0, 1));
        assert!(!d.changed("web", 3, 0), "one of two left");
        assert!(d.changed("web", 1, 0), "the last one");
        assert!(!d.changed("web", 0, 0), "nothing held, nothing changes");
        assert!(d.changed("db", 1, 0));
        assert!(d.changed("gone", 1, 0), "uncounted: tried anyway");
    }
}
