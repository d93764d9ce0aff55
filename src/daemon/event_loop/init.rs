//! The loop's side of running as a container's init (`sup daemon --init`, implied as PID 1):
//! the shutdown's bound (`--grace`), signals passed on to the jobs, the end of a `critical`
//! job, and the exit status all of that leads to.
//!
//! Reaping is not here: the daemon is a subreaper in every mode, and `reaped` already takes
//! a pid no `Pids` entry names (an orphan reparented to us) as reaped and nothing more.
//!
//! The status, chosen once and never lowered:
//! - 0 after a shutdown in which every job stopped by itself (its `stopsignal`, or the
//!   `SIGKILL` of its own `stoptime`, within the grace);
//! - a critical job's code (128 + the signal when it was killed, 1 when it went `fatal`
//!   without a code) when its end began the shutdown, however that shutdown went;
//! - otherwise 137 (128 + SIGKILL) when the grace ran out and what was left was killed: what
//!   tini or dumb-init report when the process they wait for is killed, and what a container
//!   runtime shows for a container it had to kill.
//!
//! Both deadlines (`grace`, and the short wait after the kill) are `TimerKey::Grace` entries,
//! pushed when the shutdown begins: an idle daemon has none.

use std::time::{Duration, Instant};

use nix::libc;
use nix::sys::signal::Signal as NixSignal;

use super::{Daemon, InstId, TimerKey};
use crate::config::Signal;
use crate::core::{Input, State};

/// The signals the daemon passes on to every job's process group when it is init: they mean
/// something to the programs (a terminal resize, a "reopen your logs" or "dump state") and
/// nothing to a supervisor. HUP (reload), USR2 (the daemon's logreopen), TERM, INT and QUIT
/// (shutdown) stay the daemon's own.
pub const FORWARDED: [NixSignal; 2] = [NixSignal::SIGUSR1, NixSignal::SIGWINCH];

/// After the grace's kill, how long the daemon waits to reap what it killed before it exits
/// anyway (a process stuck in the kernel may never die).
const AFTER_KILL: Duration = Duration::from_secs(2);

/// 128 + SIGKILL: the status after a shutdown that had to kill.
const KILLED_STATUS: u8 = 128 + libc::SIGKILL as u8;

/// What the init side of the loop keeps.
#[derive(Debug, Default)]
pub(super) struct Init {
    /// The shutdown's deadline, while one is in the heap.
    grace_at: Option<Instant>,
    /// After the kill: the daemon exits at this instant whatever is left.
    give_up_at: Option<Instant>,
    /// The status chosen so far (`None` is 0).
    status: Option<u8>,
    /// A critical job ended this turn: (its name, the status it gives); the shutdown begins
    /// once the turn's inputs are in.
    critical: Option<(String, u8)>,
}

impl Init {
    /// The daemon's exit status.
    pub(super) fn status(&self) -> u8 {
        self.status.unwrap_or(0)
    }

    /// The loop has waited long enough after the kill: exit now.
    pub(super) fn gave_up(&self, now: Instant) -> bool {
        self.give_up_at.is_some_and(|at| at <= now)
    }
}

/// The status a critical instance's end gives, or `None` when it has not ended for good.
fn critical_status(state: State, last_exit: Option<i32>) -> Option<u8> {
    let code = match state {
        State::Exited => last_exit.unwrap_or(1),
        // `fatal` after exits with code 0 (a job that kept exiting at once) is still a failure.
        State::Fatal => last_exit.filter(|&c| c != 0).unwrap_or(1),
        State::Stopped
        | State::Starting
        | State::Running
        | State::Backoff
        | State::Stopping
        | State::Scheduled => return None,
    };
    Some(u8::try_from(code).unwrap_or(1))
}

impl Daemon {
    /// After `feed` moved an instance from `was`: a critical job that ended for good (not
    /// during a shutdown, where every job ends) is noted, for `after_turn`.
    pub(super) fn note_critical(&mut self, id: InstId, was: Option<State>) {
        if self.shutting_down || self.init.critical.is_some() {
            return;
        }
        let Some(inst) = self.sup.get(id) else {
            return;
        };
        if !inst.spec.critical || inst.is_retiring() {
            return;
        }
        let state = inst.core().state();
        if Some(state) == was {
            return;
        }
        if let Some(status) = critical_status(state, inst.core().last_exit()) {
            self.init.critical = Some((inst.core().name().to_string(), status));
        }
    }

    /// Once a turn: a critical job's end begins the shutdown.
    pub(super) fn shutdown_if_critical(&mut self, now: Instant) {
        let Some((name, status)) = self.init.critical.take() else {
            return;
        };
        if self.shutting_down {
            return;
        }
        let state = self.sup.iter().find(|(_, i)| i.core().name() == name);
        let how = state.map_or("ended", |(_, i)| i.core().state().as_str());
        log::warn!(
            "{name} is critical and {how}: stopping every job, then exiting with status {status}"
        );
        self.init.status = Some(status);
        self.begin_shutdown(now);
    }

    /// The shutdown began: arm its bound.
    pub(super) fn arm_grace(&mut self, now: Instant) {
        if let Some(grace) = self.settings.grace {
            let at = now + grace;
            self.init.grace_at = Some(at);
            self.sup.push_timer(at, TimerKey::Grace);
        }
    }

    /// A `TimerKey::Grace` entry came due.
    pub(super) fn grace_due(&mut self, at: Instant, now: Instant) {
        if self.init.grace_at != Some(at) {
            return;
        }
        self.init.grace_at = None;
        let left: Vec<InstId> = self
            .sup
            .iter()
            .filter(|(_, i)| !i.core().state().is_down())
            .map(|(id, _)| id)
            .collect();
        if left.is_empty() {
            // The last job went down in this very turn: the shutdown ends clean.
            return;
        }
        log::warn!(
            "shutdown: the grace of {} is over with {} job(s) still up: killing them",
            crate::core::event::human(self.settings.grace.unwrap_or_default()),
            left.len()
        );
        // A stop still held for its dependents goes now, so that no machine sees its process
        // die while it still wants it up (and restarts it).
        for &id in &left {
            self.forget_holds(id);
        }
        let inputs = left.iter().map(|&id| (id, Input::Shutdown)).collect();
        self.apply(inputs, now);
        for &id in &left {
            let Some(pgid) = self.sup.get(id).and_then(|i| i.core().pgid()) else {
                continue;
            };
            match super::reap::signal_group_if_any(pgid, Signal(libc::SIGKILL)) {
                Ok(true) => log::warn!(
                    "{} killed: SIGKILL to its group at the end of the grace",
                    self.name(id)
                ),
                Ok(false) => {}
                Err(e) => log::warn!("{}: {e}", self.name(id)),
            }
        }
        if std::process::id() == 1 {
            // The init of a PID namespace: whatever is left in it (escapees, orphans of
            // other parents) is ours to end. kill(-1) spares the caller.
            // SAFETY: plain syscall with integer arguments.
            if unsafe { libc::kill(-1, libc::SIGKILL) } == 0 {
                log::warn!("shutdown: SIGKILL to every other process of the PID namespace");
            }
        }
        self.init.status.get_or_insert(KILLED_STATUS);
        let give_up = now + AFTER_KILL;
        self.init.give_up_at = Some(give_up);
        self.sup.push_timer(give_up, TimerKey::Grace);
    }

    /// SIGUSR1 or SIGWINCH as init: passed on to the group of every instance with a process.
    pub(super) fn forward(&mut self, sig: NixSignal) {
        let groups: Vec<(String, u32)> = self
            .sup
            .iter()
            .filter_map(|(_, i)| Some((i.core().name().to_string(), i.core().pgid()?)))
            .collect();
        for (name, pgid) in &groups {
            if let Err(e) = super::reap::signal_group_if_any(*pgid, Signal(sig as i32)) {
                log::warn!("{name}: {e}");
            }
        }
        log::debug!("received {sig}: passed on to {} job group(s)", groups.len());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_critical_job_ends_only_when_down_for_good() {
        assert_eq!(critical_status(State::Exited, Some(3)), Some(3));
        assert_eq!(critical_status(State::Exited, Some(0)), Some(0));
        assert_eq!(critical_status(State::Exited, Some(128 + 9)), Some(137));
        assert_eq!(critical_status(State::Fatal, None), Some(1));
        assert_eq!(critical_status(State::Fatal, Some(0)), Some(1));
        assert_eq!(critical_status(State::Fatal, Some(4)), Some(4));
        for state in [
            State::Stopped,
            State::Starting,
            State::Running,
            State::Backoff,
            State::Stopping,
            State::Scheduled,
        ] {
            assert_eq!(critical_status(state, Some(3)), None, "{state:?}");
        }
    }

    #[test]
    fn the_status_after_a_kill_is_137() {
        assert_eq!(KILLED_STATUS, 137);
    }
}
