//! The loop's side of health checks and resource rules: `cmd` checks are children in their
//! own process group (reaped by the loop's `waitpid(-1)`, killed as a group at their
//! timeout), HTTP and TCP checks non-blocking `probe::Connection`s on the poll, samples of
//! `/proc/PID/stat` on a deadline. What a result means is `core::health` and `core::usage`;
//! every deadline is stored in the `Watch` and compared when its heap entry fires, so an entry
//! left over from an earlier process is stale and ignored.

use std::time::{Duration, Instant};

use super::readiness::{HealthSource, InFlight};
use super::{Daemon, Inputs, InstId, TimerKey};
use crate::config::{OnUnhealthy, Ready};
use crate::control::proto::{InstanceStatus, Response, RowsWriter};
use crate::core::health::Verdict;
use crate::core::usage::{self, sample_every};
use crate::core::{ExitStatus, Input, State};
use crate::daemon::pids::PidOwner;
use crate::daemon::reap;
use crate::daemon::spawn::{self, SpawnRequest, Stdio};
use crate::daemon::{probe, procfs};

/// The first check of a process comes this soon (or after `interval`, if shorter), so that
/// `ready: health` does not wait a whole interval.
pub(super) const FIRST_CHECK: Duration = Duration::from_secs(1);

/// Which of an instance's health deadlines a heap entry is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(in crate::daemon) enum HealthTimer {
    Check,
    CheckTimeout,
    Watchdog,
    Sample,
}

/// Figures younger than this are reused: a CPU share needs a span to mean anything, and a
/// status of a thousand instances then costs no /proc read at all when asked again at once.
const USAGE_FRESH: Duration = Duration::from_secs(1);

/// Reading one instance's usage costs a few file reads (about 45 µs): a list of thousands
/// must not stall the loop for them. One answer reads at most this many afresh and gives the
/// others' last figures; a sweep reads the rest, this many per turn, a turn every
/// `USAGE_SWEEP_GAP`, once through and no more (idle stays idle).
const USAGE_READS: usize = 64;
const USAGE_SWEEP_GAP: Duration = Duration::from_millis(2);

impl Daemon {
    // ----- timers -----

    pub(super) fn fire_health(
        &mut self,
        id: InstId,
        which: HealthTimer,
        at: Instant,
        now: Instant,
    ) -> Inputs {
        let Some(w) = self.watches.of.get_mut(id) else {
            return Vec::new();
        };
        match which {
            HealthTimer::Watchdog if w.watchdog_at == Some(at) => {
                w.watchdog_at = None;
                let running = self
                    .sup
                    .get(id)
                    .is_some_and(|i| i.core().state() == State::Running);
                let period = self
                    .sup
                    .get(id)
                    .and_then(|i| i.spec.health.watchdog)
                    .unwrap_or_default();
                if running {
                    let reason = format!(
                        "watchdog: no WATCHDOG=1 for {}",
                        crate::core::event::human(period)
                    );
                    return vec![(id, Input::Fault { reason })];
                }
            }
            HealthTimer::Check if w.next_check == Some(at) => {
                w.next_check = None;
                return self.run_check(id, now);
            }
            HealthTimer::CheckTimeout if w.check_deadline == Some(at) => {
                // A check that ended in time may not be reaped yet: its SIGCHLD merged into
                // another's waits for a sweep, and with many children those are further
                // apart (`reap::Sweeps`). Ended, it is its own result, not a timeout.
                if let Some(InFlight::Cmd { pid }) = w.in_flight {
                    if let Some((pid, status)) = reap::reap_pids(&[pid]).pop() {
                        return self.reaped(pid, status, now);
                    }
                }
                let Some(w) = self.watches.of.get_mut(id) else {
                    return Vec::new();
                };
                w.check_deadline = None;
                let timeout = self
                    .sup
                    .get(id)
                    .and_then(|i| i.spec.health.healthcheck.as_ref())
                    .map(|c| c.timeout)
                    .unwrap_or_default();
                match w.in_flight.take() {
                    Some(InFlight::Cmd { pid }) => {
                        // Killed as a group; still reaped by the loop (its pid stays known).
                        let _ = reap::signal_group(pid, crate::core::instance::SIGKILL);
                    }
                    Some(InFlight::Probe { slot }) => self.release(slot),
                    None => return Vec::new(),
                }
                let why = format!("timed out after {}", crate::core::event::human(timeout));
                return self.check_done(id, Err(why), now);
            }
            HealthTimer::Sample if w.sample_at == Some(at) => {
                w.sample_at = None;
                return self.sample(id, now);
            }
            HealthTimer::Watchdog
            | HealthTimer::Check
            | HealthTimer::CheckTimeout
            | HealthTimer::Sample => {}
        }
        Vec::new()
    }

    // ----- checks -----

    fn run_check(&mut self, id: InstId, now: Instant) -> Inputs {
        let Some(inst) = self.sup.get(id) else {
            return Vec::new();
        };
        let Some(check) = inst.spec.health.healthcheck.clone() else {
            return Vec::new();
        };
        if inst.core().pid().is_none() {
            return Vec::new();
        }
        let started = match &check.probe {
            crate::config::Probe::Cmd(cmd) => {
                let mut spec = (*inst.spec).clone();
                spec.cmd = cmd.clone();
                spec.health = Default::default();
                let req = SpawnRequest {
                    spec: &spec,
                    name: inst.core().name(),
                    num: inst.core().num(),
                    stdout: Stdio::Null,
                    stderr: Stdio::Null,
                };
                spawn::spawn(&req).map(|c| {
                    self.pids.insert(c.pid, PidOwner::Check(id));
                    InFlight::Cmd { pid: c.pid }
                })
            }
            probe => match probe::Connection::start(probe) {
                Ok(conn) => self
                    .add_health_source(HealthSource::Probe { id, conn })
                    .map(|slot| InFlight::Probe { slot })
                    .ok_or_else(|| "unable to watch the probe's socket".to_string()),
                Err(e) => Err(e),
            },
        };
        match started {
            Ok(f) => {
                if let Some(w) = self.watches.of.get_mut(id) {
                    let at = now + check.timeout;
                    w.in_flight = Some(f);
                    w.check_deadline = Some(at);
                    self.sup
                        .push_timer(at, TimerKey::Health(id, HealthTimer::CheckTimeout));
                }
                Vec::new()
            }
            Err(why) => self.check_done(id, Err(why), now),
        }
    }

    /// A `cmd` check the loop reaped.
    pub(super) fn reaped_check(
        &mut self,
        id: InstId,
        pid: u32,
        status: ExitStatus,
        now: Instant,
    ) -> Inputs {
        let Some(w) = self.watches.of.get_mut(id) else {
            return Vec::new();
        };
        if !matches!(w.in_flight, Some(InFlight::Cmd { pid: p }) if p == pid) {
            // Killed at its timeout (already counted) or from an earlier process.
            return Vec::new();
        }
        w.in_flight = None;
        w.check_deadline = None;
        let result = match status {
            ExitStatus::Code(0) => Ok(()),
            ExitStatus::Code(c) => Err(format!("check command exited with code {c}")),
            ExitStatus::Signaled(s) => Err(format!(
                "check command killed by {}",
                crate::config::signal::name(crate::config::Signal(s))
            )),
        };
        self.check_done(id, result, now)
    }

    pub(super) fn check_done(
        &mut self,
        id: InstId,
        result: Result<(), String>,
        now: Instant,
    ) -> Inputs {
        let Some(inst) = self.sup.get(id) else {
            return Vec::new();
        };
        let Some(check) = inst.spec.health.healthcheck.clone() else {
            return Vec::new();
        };
        let ready_by_health = inst.spec.health.ready == Ready::Health;
        let state = inst.core().state();
        let name = inst.core().name().to_string();
        let Some(w) = self.watches.of.get_mut(id) else {
            return Vec::new();
        };
        if let Some(InFlight::Probe { slot }) = w.in_flight.take() {
            self.release(slot);
        }
        let Some(w) = self.watches.of.get_mut(id) else {
            return Vec::new();
        };
        w.check_deadline = None;
        let at = now + check.interval;
        w.next_check = Some(at);
        self.sup
            .push_timer(at, TimerKey::Health(id, HealthTimer::Check));
        let starting = state == State::Starting;
        let before = w.checks.status();
        let verdict = w
            .checks
            .record(&check, ready_by_health, starting, result, now);
        let after = w.checks.status();
        if after != before {
            // A dependent waiting for it to be `healthy` is looked at again this turn.
            self.order.changed.push(id);
            let why = match &verdict {
                Verdict::Unhealthy { why, .. } | Verdict::Failed { why, .. } => why.as_str(),
                _ => "",
            };
            self.listen_health(id, after, why);
        }
        match verdict {
            Verdict::Pass { recovered, ready } => {
                if recovered {
                    log::info!("{name} healthy");
                }
                if ready {
                    return vec![(id, Input::Ready)];
                }
            }
            Verdict::Grace { why } => {
                log::debug!("{name} health check failed during start_period: {why}")
            }
            Verdict::Failed {
                failures,
                retries,
                why,
            } => log::warn!("{name} health check failed ({failures}/{retries}): {why}"),
            Verdict::Unhealthy {
                failures,
                retries,
                why,
                reason,
                then,
            } => {
                log::warn!("{name} health check failed ({failures}/{retries}): {why}");
                match then {
                    OnUnhealthy::Restart => return vec![(id, Input::Fault { reason })],
                    OnUnhealthy::Notify => log::warn!("{name} unhealthy: {reason}"),
                    OnUnhealthy::None => {}
                }
            }
        }
        Vec::new()
    }

    /// The health check's status while the process lives; `None` without a check (`health`
    /// for status: null without a check or without a process).
    pub(super) fn health_status(&self, id: InstId) -> Option<crate::core::health::Status> {
        let inst = self.sup.get(id)?;
        inst.spec.health.healthcheck.as_ref()?;
        inst.core().pid()?;
        let w = self.watches.of.get(id)?;
        Some(w.checks.status())
    }

    // ----- resources -----

    fn sample(&mut self, id: InstId, now: Instant) -> Inputs {
        let Some(inst) = self.sup.get(id) else {
            return Vec::new();
        };
        let (Some(rule), Some(pid)) = (inst.spec.health.watch, inst.core().pid()) else {
            return Vec::new();
        };
        let running = inst.core().state() == State::Running;
        let sample = self.usage_sample(id, pid);
        let Some(w) = self.watches.of.get_mut(id) else {
            return Vec::new();
        };
        let at = now + sample_every(rule.sustained);
        w.sample_at = Some(at);
        self.sup
            .push_timer(at, TimerKey::Health(id, HealthTimer::Sample));
        let hz = procfs::ticks_per_s();
        match w.usage.sample(&rule, sample, running, now, hz) {
            Some(reason) => vec![(id, Input::Fault { reason })],
            None => Vec::new(),
        }
    }

    /// `cpu_percent` and `rss_bytes` for status: read from /proc on request, at most once a
    /// second per process. CPU is the share since the previous reading, else since the process
    /// began.
    pub(super) fn usage_of(&self, id: InstId, now: Instant) -> (Option<f64>, Option<u64>) {
        let Some(pid) = self.sup.get(id).and_then(|i| i.core().pid()) else {
            return (None, None);
        };
        let hz = procfs::ticks_per_s();
        let mut seen = self.watches.cpu_seen.borrow_mut();
        let last = seen.get(&pid).copied();
        if let Some((_, at, pct, rss)) = last {
            if now.saturating_duration_since(at) < USAGE_FRESH {
                return (pct.map(|p| (p * 10.0).round() / 10.0), Some(rss));
            }
        }
        match self.watches.usage_reads.get() {
            Some(0) => {
                self.watches.usage_behind.set(true);
                return last.map_or((None, None), |(_, _, pct, rss)| {
                    (pct.map(|p| (p * 10.0).round() / 10.0), Some(rss))
                });
            }
            Some(n) => self.watches.usage_reads.set(Some(n - 1)),
            None => {}
        }
        let Some((ticks, rss)) = self.usage_sample(id, pid) else {
            return (None, None);
        };
        let pct = match seen.get(&pid) {
            Some(&(t0, at, _, _)) => usage::cpu_percent(ticks.saturating_sub(t0), now - at, hz),
            None => {
                let started = self.sup.get(id).and_then(|i| i.core().started_at());
                started
                    .and_then(|s| usage::cpu_percent(ticks, now.saturating_duration_since(s), hz))
            }
        };
        seen.insert(pid, (ticks, now, pct, rss));
        let rss = Some(rss);
        if seen.len() > 4 * self.sup.slots() + 64 {
            seen.clear();
        }
        (pct.map(|p| (p * 10.0).round() / 10.0), rss)
    }

    /// `status` for `ids`, reading at most `USAGE_READS` instances' usage afresh. When some
    /// were behind, a sweep is armed to read them over the next turns, so the next list has
    /// them fresh.
    pub(super) fn status_list(&mut self, ids: &[InstId], now: Instant) -> Vec<InstanceStatus> {
        self.usage_slice(now, |d| {
            ids.iter().filter_map(|&id| d.status_of(id, now)).collect()
        })
    }

    /// The `status_rows` answer line for `ids` (no newline), each row encoded as it is made,
    /// with the same figures and the same slice of fresh usage reads as `status_list`.
    pub(super) fn status_rows(&mut self, ids: &[InstId], now: Instant) -> Vec<u8> {
        self.usage_slice(now, |d| {
            // About what a row of a running instance takes, so the buffer grows once or never.
            let mut line = Vec::with_capacity(64 + 96 * ids.len());
            let mut rows = RowsWriter::new(&mut line);
            for &id in ids {
                let Some(row) = d.status_row(id, now) else {
                    continue;
                };
                if let Err(e) = rows.push(&row) {
                    line.clear();
                    let fail = Response::error(format!("unable to encode the answer: {e}"));
                    // An error answer is plain strings: encoding it cannot fail.
                    let _ = serde_json::to_writer(&mut line, &fail);
                    return line;
                }
            }
            rows.finish();
            line
        })
    }

    /// Run `f` with at most `USAGE_READS` usage reads allowed afresh; when some figures it
    /// gave were behind, arm a sweep to read them over the next turns, so the next list has
    /// them fresh.
    fn usage_slice<R>(&mut self, now: Instant, f: impl FnOnce(&Self) -> R) -> R {
        self.watches.usage_reads.set(Some(USAGE_READS));
        let out = f(self);
        self.watches.usage_reads.set(None);
        if self.watches.usage_behind.replace(false) && self.watches.usage_sweep.is_none() {
            self.arm_usage_sweep(0, now);
        }
        out
    }

    fn arm_usage_sweep(&mut self, from: InstId, now: Instant) {
        let at = now + USAGE_SWEEP_GAP;
        self.watches.usage_sweep = Some((from, at));
        self.sup.push_timer(at, TimerKey::Usage);
    }

    /// A `TimerKey::Usage` entry came due: the next slice of the sweep.
    pub(super) fn usage_sweep_due(&mut self, at: Instant, now: Instant) {
        let Some((from, due)) = self.watches.usage_sweep else {
            return;
        };
        if due != at {
            return;
        }
        self.watches.usage_sweep = None;
        self.watches.usage_reads.set(Some(USAGE_READS));
        let mut next = None;
        for id in from..self.sup.slots() {
            if self.watches.usage_reads.get() == Some(0) {
                next = Some(id);
                break;
            }
            let _ = self.usage_of(id, now);
        }
        self.watches.usage_reads.set(None);
        self.watches.usage_behind.set(false);
        if let Some(id) = next {
            self.arm_usage_sweep(id, now);
        }
    }
}
