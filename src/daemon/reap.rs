//! Children and their process groups: reaping exit statuses, probing and signalling a group,
//! and becoming the subreaper of everything the jobs start.
//!
//! What to do with a status (which instance it belongs to, what the state machine makes of it)
//! is the loop's business; this file only talks to the kernel.

use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::libc;

use crate::config::Signal;
use crate::core::ExitStatus;

/// The fewest milliseconds between two `waitpid(-1)` sweeps (see `Sweeps`).
const SWEEP_GAP: Duration = Duration::from_millis(20);

/// The most time between a SIGCHLD and the sweep after it (see `Sweeps`).
const MAX_GAP: Duration = Duration::from_secs(1);

/// The gap per child while sweeps find nothing: a sweep costs the kernel about 0.15 µs per
/// child, so sweeps this far apart take at most 0.2% of a CPU at any N.
const GAP_PER_CHILD: Duration = Duration::from_micros(75);

/// When to sweep with `waitpid(-1)`. The kernel walks the whole list of children on every
/// such call, so with thousands of jobs a sweep per SIGCHLD made each restart cost O(N).
/// Each SIGCHLD names its child (`ssi_pid`), which `reap_pids` reaps in O(1); a sweep is
/// still needed because SIGCHLDs that arrive while one is pending are merged into it, but
/// it runs at most once per gap: at once after a quiet spell, else when the gap ends (a
/// deadline in the heap, armed only after a SIGCHLD, so an idle daemon never wakes).
///
/// The gap is `SWEEP_GAP` while sweeps find children (ends are being merged: a burst) and
/// after the daemon signals a stop (`stop all` ends many at once); it grows with the number
/// of children while they find none (`GAP_PER_CHILD`, up to `MAX_GAP`), which keeps the
/// sweeps' cost per restart flat in a storm of single crashes, each named by its own SIGCHLD. The price: an end merged into
/// another after a quiet spell is seen up to that gap late (75 ms with 1000 children, a
/// second from about 13000).
#[derive(Debug, Default)]
pub struct Sweeps {
    last: Option<Instant>,
    armed: Option<Instant>,
    /// The last sweep reaped something: ends are being merged right now.
    found: bool,
}

impl Sweeps {
    /// A SIGCHLD came, with `children` known children: `Ok(())` to sweep now,
    /// `Err(Some(at))` to arm a deadline at `at`, `Err(None)` when one is armed already.
    pub fn on_sigchld(&mut self, now: Instant, children: usize) -> Result<(), Option<Instant>> {
        let gap = if self.found {
            SWEEP_GAP
        } else {
            gap_for(children)
        };
        match self.last {
            Some(last) if now < last + gap => {
                let at = last + gap;
                // One armed no later will do; a later one (armed before `ends_coming`) is
                // replaced, and `fire` ignores its stale deadline.
                if self.armed.is_some_and(|armed| armed <= at) {
                    return Err(None);
                }
                self.armed = Some(at);
                Err(Some(at))
            }
            _ => {
                self.swept(now);
                Ok(())
            }
        }
    }

    /// The deadline `at` came: is it the armed one (then sweep)?
    pub fn fire(&mut self, at: Instant, now: Instant) -> bool {
        if self.armed != Some(at) {
            return false;
        }
        self.swept(now);
        true
    }

    /// What the sweep just run reaped: anything at all brings the next one closer.
    pub fn found(&mut self, reaped: usize) {
        self.found = reaped > 0;
    }

    /// The daemon's stop signal reached a group: ends are coming, many of them merged when
    /// it stops many at once, so the next sweep is as close as after one that found some.
    pub fn ends_coming(&mut self) {
        self.found = true;
    }

    fn swept(&mut self, now: Instant) {
        self.last = Some(now);
        self.armed = None;
    }
}

/// The gap between sweeps that find nothing, for `children` children.
fn gap_for(children: usize) -> Duration {
    let per = GAP_PER_CHILD.saturating_mul(u32::try_from(children).unwrap_or(u32::MAX));
    per.clamp(SWEEP_GAP, MAX_GAP)
}

/// Reap the children SIGCHLDs named, each with its own `waitpid(pid)`.
pub fn reap_pids(pids: &[u32]) -> Vec<(u32, ExitStatus)> {
    let mut reaped = Vec::new();
    for &pid in pids {
        // 0 would mean "any child in our group": only a real pid is waited for.
        if let Ok(pid @ 1..) = libc::pid_t::try_from(pid) {
            reaped.extend(reap_one(pid));
        }
    }
    reaped
}

/// One `waitpid(pid, WNOHANG)`: a pid is reaped at most once, so unlike `reap_matching` no
/// second call is made to find that nothing more is there.
fn reap_one(pid: libc::pid_t) -> Option<(u32, ExitStatus)> {
    loop {
        let mut status: libc::c_int = 0;
        // SAFETY: plain syscall writing into a local.
        let r = unsafe { libc::waitpid(pid, &mut status, libc::WNOHANG) };
        return match r {
            -1 if Errno::last() == Errno::EINTR => continue,
            0 | -1 => None,
            r => decode(status).map(|st| (r as u32, st)),
        };
    }
}

/// Reap every child that has ended, until none is left to reap right now.
///
/// Waits for any child (`waitpid(-1)`): once the daemon is a subreaper, orphaned grandchildren
/// land here too, and their pids match no instance; the loop ignores those. Stopped and continued
/// children are not reported (they are not ends).
pub fn reap_all() -> Vec<(u32, ExitStatus)> {
    reap_matching(-1)
}

/// `waitpid(which, WNOHANG)` until nothing more is ready. `which` follows waitpid: -1 any
/// child, a pid that child, -PGID any child in that group.
pub(crate) fn reap_matching(which: libc::pid_t) -> Vec<(u32, ExitStatus)> {
    let mut reaped = Vec::new();
    loop {
        let mut status: libc::c_int = 0;
        // libc directly rather than nix: nix turns a death by a signal it has no name for
        // (a real-time one) into an error after the child is already reaped, losing the status.
        // SAFETY: plain syscall writing into a local.
        let pid = unsafe { libc::waitpid(which, &mut status, libc::WNOHANG) };
        match pid {
            0 => break, // children remain, none has ended yet
            -1 => match Errno::last() {
                Errno::EINTR => continue,
                _ => break, // ECHILD: no child left
            },
            pid => {
                if let Some(st) = decode(status) {
                    reaped.push((pid as u32, st));
                }
            }
        }
    }
    reaped
}

/// A raw wait status as an exit, or `None` for stopped/continued reports.
pub(crate) fn decode(status: libc::c_int) -> Option<ExitStatus> {
    if libc::WIFEXITED(status) {
        Some(ExitStatus::Code(libc::WEXITSTATUS(status)))
    } else if libc::WIFSIGNALED(status) {
        Some(ExitStatus::Signaled(libc::WTERMSIG(status)))
    } else {
        None
    }
}

/// A pgid we may address as `-pgid`. 0 would mean our own group and 1 (as -1) every process
/// we may signal, so both are refused outright rather than trusted to callers.
fn group_arg(pgid: u32) -> Option<libc::pid_t> {
    match libc::pid_t::try_from(pgid) {
        Ok(p) if p > 1 => Some(-p),
        _ => None,
    }
}

/// Whether the process group still has a member (`kill(-pgid, 0)`). EPERM means someone is
/// there that we may not signal, which is still someone. Zombies count as members until they
/// are reaped, so reap before asking.
pub fn group_alive(pgid: u32) -> bool {
    let Some(target) = group_arg(pgid) else {
        return false;
    };
    // SAFETY: signal 0 only checks for existence.
    let r = unsafe { libc::kill(target, 0) };
    r == 0 || Errno::last() != Errno::ESRCH
}

/// Send `signal` to every process in the group.
pub fn signal_group(pgid: u32, signal: Signal) -> Result<(), String> {
    kill_group(pgid, signal).map_err(|e| describe(pgid, signal, e))
}

/// `kill(pid)`: the leader alone (`sup signal --main`). Only for a pid the daemon has not
/// reaped yet, which therefore cannot belong to anyone else.
pub fn signal_leader(pid: u32, signal: Signal) -> Result<(), String> {
    // Never 0, -1 or a group: those would reach far more than one process.
    let target = group_arg(pid)
        .map(|g| -g)
        .ok_or_else(|| format!("pid {pid}: refusing to signal it"))?;
    // SAFETY: plain syscall on a checked, positive pid.
    if unsafe { libc::kill(target, signal.0) } == 0 {
        Ok(())
    } else {
        Err(format!(
            "pid {pid}: signal {}: {}",
            signal.0,
            errno_text(Errno::last())
        ))
    }
}

/// `signal_group` for the loop's own actions: a group that is already empty (ESRCH) is the
/// normal end of a job whose leader exited with nobody left behind, not a failure. Returns
/// whether anyone was there to receive it.
pub fn signal_group_if_any(pgid: u32, signal: Signal) -> Result<bool, String> {
    match kill_group(pgid, signal) {
        Ok(()) => Ok(true),
        Err(Some(Errno::ESRCH)) => Ok(false),
        Err(e) => Err(describe(pgid, signal, e)),
    }
}

/// `kill(-pgid)`; `Err(None)` for a pgid refused outright.
fn kill_group(pgid: u32, signal: Signal) -> Result<(), Option<Errno>> {
    let target = group_arg(pgid).ok_or(None)?;
    // SAFETY: plain syscall; the target was checked to be a real group above.
    if unsafe { libc::kill(target, signal.0) } == 0 {
        Ok(())
    } else {
        Err(Some(Errno::last()))
    }
}

fn describe(pgid: u32, signal: Signal, e: Option<Errno>) -> String {
    match e {
        None => format!("process group {pgid}: refusing to signal it"),
        Some(e) => format!(
            "process group {pgid}: signal {}: {}",
            signal.0,
            errno_text(e)
        ),
    }
}

/// Make the daemon the subreaper of its descendants: a job's orphaned grandchildren are
/// reparented to us rather than to init, so `reap_all` collects them and a stop can see the
/// whole tree.
pub fn become_subreaper() -> Result<(), String> {
    // SAFETY: plain prctl with integer arguments.
    let r = unsafe { libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1 as libc::c_ulong, 0, 0, 0) };
    if r == 0 {
        Ok(())
    } else {
        Err(format!(
            "unable to become a subreaper: {}",
            errno_text(Errno::last())
        ))
    }
}

/// An errno as the lowercase phrase our messages use: `no such file or directory`.
pub(crate) fn errno_text(e: Errno) -> String {
    lower_first(e.desc())
}

/// An io::Error the same way, when it carries an errno.
pub(crate) fn io_text(e: &std::io::Error) -> String {
    match e.raw_os_error() {
        Some(n) => errno_text(Errno::from_raw(n)),
        None => lower_first(&e.to_string()),
    }
}

fn lower_first(s: &str) -> String {
    let mut c = s.chars();
    match c.next() {
        Some(f) => f.to_lowercase().chain(c).collect(),
        None => String::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::daemon::testutil::{wait_exit, Deadline};
    use std::process::Command;

    #[test]
    fn sweeps_run_at_once_after_a_quiet_spell_and_at_most_once_per_gap() {
        let t0 = Instant::now();
        let ms = |n| t0 + Duration::from_millis(n);
        let mut s = Sweeps::default();
        assert_eq!(s.on_sigchld(ms(0), 10), Ok(()), "the first SIGCHLD sweeps");
        assert_eq!(
            s.on_sigchld(ms(5), 10),
            Err(Some(ms(20))),
            "then one deadline"
        );
        assert_eq!(s.on_sigchld(ms(9), 10), Err(None), "armed already");
        assert!(!s.fire(ms(19), ms(19)), "a stale deadline is ignored");
        assert!(s.fire(ms(20), ms(21)));
        assert!(!s.fire(ms(20), ms(22)), "fired once");
        assert_eq!(s.on_sigchld(ms(30), 10), Err(Some(ms(41))));
        assert_eq!(
            s.on_sigchld(ms(500), 10),
            Ok(()),
            "a quiet spell sweeps at once"
        );
    }

    #[test]
    fn sweeps_that_find_nothing_are_further_apart_the_more_children_there_are() {
        let t0 = Instant::now();
        let ms = |n| t0 + Duration::from_millis(n);
        let mut s = Sweeps::default();
        assert_eq!(s.on_sigchld(ms(0), 5000), Ok(()));
        s.found(0);
        // 5000 children: 375 ms, so a crash every 50 ms costs one sweep in seven or so.
        assert_eq!(s.on_sigchld(ms(50), 5000), Err(Some(ms(375))));
        assert_eq!(s.on_sigchld(ms(100), 5000), Err(None));
        assert!(s.fire(ms(375), ms(376)));
        // It found merged ends: the next one is as close as ever.
        s.found(3);
        assert_eq!(s.on_sigchld(ms(380), 5000), Err(Some(ms(396))));
        assert!(s.fire(ms(396), ms(396)));
        s.found(0);
        assert_eq!(s.on_sigchld(ms(400), 5000), Err(Some(ms(771))));
        // A stop is signalled: the sweep armed far off is brought back to the short gap.
        s.ends_coming();
        assert_eq!(s.on_sigchld(ms(410), 5000), Err(Some(ms(416))));
        assert!(s.fire(ms(416), ms(416)));
        assert!(!s.fire(ms(771), ms(771)), "the far deadline is stale");
        assert_eq!(gap_for(0), SWEEP_GAP);
        assert_eq!(gap_for(1000), Duration::from_millis(75));
        assert_eq!(gap_for(100_000), MAX_GAP);
        assert_eq!(gap_for(usize::MAX), MAX_GAP);
    }

    #[test]
    fn a_named_child_is_reaped_alone_and_pid_0_reaps_nothing() {
        let child = Command::new("sh").args(["-c", "exit 3"]).spawn();
        let pid = child.map(|c| c.id()).unwrap_or(0);
        assert!(reap_pids(&[0]).is_empty());
        let deadline = Deadline::after(Duration::from_secs(10));
        let mut got = Vec::new();
        while got.is_empty() && !deadline.passed() {
            got = reap_pids(&[pid]);
            std::thread::sleep(Duration::from_millis(5));
        }
        assert_eq!(got, vec![(pid, ExitStatus::Code(3))]);
    }

    #[test]
    fn exit_codes_and_signals_decode_like_waitpid_reports_them() {
        let child = Command::new("sh").args(["-c", "exit 7"]).spawn();
        let pid = child.map(|c| c.id()).unwrap_or(0);
        assert_eq!(wait_exit(pid), ExitStatus::Code(7));

        let child = Command::new("sh").args(["-c", "kill -KILL $$"]).spawn();
        let pid = child.map(|c| c.id()).unwrap_or(0);
        assert_eq!(wait_exit(pid), ExitStatus::Signaled(9));
    }

    #[test]
    fn reaping_one_pid_returns_its_status_once() {
        let pid = Command::new("true").spawn().map(|c| c.id()).unwrap_or(0);
        let deadline = Deadline::after(Duration::from_secs(10));
        let mut got = Vec::new();
        while got.is_empty() && !deadline.passed() {
            got = reap_matching(pid as libc::pid_t);
            std::thread::yield_now();
        }
        assert_eq!(got, vec![(pid, ExitStatus::Code(0))]);
        assert!(reap_matching(pid as libc::pid_t).is_empty());
    }

    #[test]
    fn a_group_is_alive_until_its_last_member_is_reaped() {
        let mut cmd = Command::new("sleep");
        std::os::unix::process::CommandExt::process_group(cmd.arg("30"), 0);
        let pid = cmd.spawn().map(|c| c.id()).unwrap_or(0);
        assert!(group_alive(pid));
        assert_eq!(signal_group(pid, Signal(15)), Ok(()));
        assert_eq!(wait_exit(pid), ExitStatus::Signaled(15));
        assert!(!group_alive(pid));
        assert!(signal_group(pid, Signal(15))
            .unwrap_err()
            .ends_with("no such process"));
        assert_eq!(signal_group_if_any(pid, Signal(15)), Ok(false));
    }

    #[test]
    fn our_own_group_and_everyone_are_never_addressed() {
        assert!(!group_alive(0));
        assert!(!group_alive(1));
        assert!(signal_group(0, Signal(0)).is_err());
        assert!(signal_group(1, Signal(0)).is_err());
        assert!(signal_group(u32::MAX, Signal(0)).is_err());
    }
}
