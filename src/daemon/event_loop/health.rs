//! The loop's side of readiness, health checks, dependencies, rolling restarts and resource
//! watching. The transitions are `core::instance`'s (`Ready`, `Fault`, `Blocked`,
//! `Unblocked`); this file owns the sockets, pipes, probes and timers that produce them.
//!
//! Nothing here blocks. A notify socket and a readiness pipe are non-blocking sources on the
//! poll; an HTTP or TCP check is a non-blocking `probe::Connection` on the poll with its
//! timeout in the deadline heap; a `cmd` check is a child in its own process group, reaped by
//! the loop's `waitpid(-1)` like every child, and killed as a group at its timeout. Every
//! per-instance deadline is stored here and compared when its heap entry fires, so an entry
//! left over from an earlier process is stale and ignored.

use std::collections::{HashMap, HashSet, VecDeque};
use std::io;
use std::os::fd::{AsRawFd, OwnedFd};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use mio::net::UnixDatagram;
use mio::unix::SourceFd;
use mio::{Interest, Registry, Token};

use super::{Daemon, Goal, InstId, Item, Source, TimerKey, FIRST_SLOT};
use crate::config::{OnUnhealthy, ProgramSpec, Ready};
use crate::control::proto::{Outcome, Response};
use crate::core::{ExitStatus, Input, State};
use crate::daemon::probe::{self, Step};
use crate::daemon::reap;
use crate::daemon::spawn::{self, Extras, SpawnRequest, Stdio};

/// The first check of a process comes this soon (or after `interval`, if shorter), so that
/// `ready: health` does not wait a whole interval.
const FIRST_CHECK: Duration = Duration::from_secs(1);

/// Which of an instance's health deadlines a heap entry is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(in crate::daemon) enum HealthTimer {
    Check,
    CheckTimeout,
    Watchdog,
    Sample,
}

/// A source on the poll that belongs to readiness or a check.
pub(in crate::daemon) enum HealthSource {
    Notify {
        id: InstId,
        socket: UnixDatagram,
        path: PathBuf,
    },
    ReadyPipe {
        id: InstId,
        fd: OwnedFd,
    },
    Probe {
        id: InstId,
        conn: probe::Connection,
    },
}

impl HealthSource {
    pub(super) fn deregister(&mut self, registry: &Registry) {
        match self {
            HealthSource::Notify { socket, path, .. } => {
                let _ = registry.deregister(socket);
                let _ = std::fs::remove_file(path);
            }
            HealthSource::ReadyPipe { fd, .. } => {
                let _ = registry.deregister(&mut SourceFd(&fd.as_raw_fd()));
            }
            HealthSource::Probe { conn, .. } => {
                let _ = registry.deregister(&mut conn.stream);
            }
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Status {
    Starting,
    Healthy,
    Unhealthy,
}

enum InFlight {
    Cmd { pid: u32 },
    Probe { slot: usize },
}

/// One process's readiness and health; replaced at each spawn, dropped when its leader dies.
struct Watch {
    spawned_at: Instant,
    notify: Option<usize>,
    ready_pipe: Option<usize>,
    watchdog_at: Option<Instant>,
    status: Status,
    failures: u32,
    next_check: Option<Instant>,
    in_flight: Option<InFlight>,
    check_deadline: Option<Instant>,
    sample_at: Option<Instant>,
    /// Last sample of the leader's CPU time (ticks) and when, for `max_cpu`.
    last_cpu: Option<(u64, Instant)>,
    /// Since when a `max_memory` / `max_cpu` rule has been broken without a break.
    over_since: Option<Instant>,
}

/// Everything this file keeps between turns; a field of `Daemon`.
#[derive(Default)]
pub(in crate::daemon) struct Health {
    watches: HashMap<InstId, Watch>,
    /// Pids of running `cmd` checks, and those killed at their timeout (still to be reaped).
    check_pids: HashMap<u32, InstId>,
    /// Stops held back until the instance's dependents in the same request are down.
    held_stops: Vec<(InstId, Input)>,
    /// The instances of the stop requests (or the shutdown) under way.
    stop_set: HashSet<InstId>,
    /// Rolling restarts: the instance restarted last, and those still to go.
    rolling: Vec<(InstId, VecDeque<InstId>)>,
    /// Instances whose rolling restart was abandoned, and why.
    rolling_failed: HashMap<InstId, String>,
    /// CPU samples for `status`: leader pid → (CPU ticks, when).
    cpu_seen: std::cell::RefCell<HashMap<u32, CpuSeen>>,
}

/// A leader's CPU ticks when status last asked, and the figure it gave.
/// The last reading of a pid: CPU ticks, when, the CPU share then, and its RSS.
type CpuSeen = (u64, Instant, Option<f64>, u64);

/// Figures younger than this are reused: a CPU share needs a span to mean anything, and a
/// status of a thousand instances then costs no /proc read at all when asked again at once.
const USAGE_FRESH: Duration = Duration::from_secs(1);

/// What readiness needs from before the spawn until after it.
pub(super) struct Prepared {
    extras: Extras,
    notify: Option<(UnixDatagram, PathBuf)>,
    pipe_read: Option<OwnedFd>,
}

impl Daemon {
    // ----- spawning -----

    /// Sockets and pipes for `ready: notify` / `ready: fd:N`, made before the fork.
    pub(super) fn prepare_readiness(
        &mut self,
        id: InstId,
        spec: &ProgramSpec,
    ) -> Result<Prepared, String> {
        let mut p = Prepared {
            extras: Extras::default(),
            notify: None,
            pipe_read: None,
        };
        match spec.health.ready {
            Ready::Notify => {
                let dir = self
                    .settings
                    .socket
                    .parent()
                    .map_or_else(std::env::temp_dir, PathBuf::from);
                let path = dir.join(format!("notify.{id}.sock"));
                let _ = std::fs::remove_file(&path);
                let socket = UnixDatagram::bind(&path)
                    .map_err(|e| format!("notify socket {}: {e}", path.display()))?;
                p.extras
                    .env
                    .push(("NOTIFY_SOCKET".into(), path.display().to_string()));
                if let Some(w) = spec.health.watchdog {
                    p.extras
                        .env
                        .push(("WATCHDOG_USEC".into(), w.as_micros().to_string()));
                }
                p.notify = Some((socket, path));
            }
            Ready::Fd(target) => {
                let (read, write) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC)
                    .map_err(|e| format!("ready fd:{target}: pipe: {e}"))?;
                nix::fcntl::fcntl(
                    read.as_raw_fd(),
                    nix::fcntl::FcntlArg::F_SETFL(nix::fcntl::OFlag::O_NONBLOCK),
                )
                .map_err(|e| format!("ready fd:{target}: {e}"))?;
                p.extras.ready_fd = Some((write, target));
                p.pipe_read = Some(read);
            }
            Ready::Starttime | Ready::Health => {}
        }
        Ok(p)
    }

    /// After a successful spawn: watch the readiness sources and arm the first check.
    pub(super) fn after_spawn(&mut self, id: InstId, spec: &ProgramSpec, p: Prepared) {
        let now = Instant::now();
        self.forget_watch(id);
        let mut w = Watch {
            spawned_at: now,
            notify: None,
            ready_pipe: None,
            watchdog_at: None,
            status: Status::Starting,
            failures: 0,
            next_check: None,
            in_flight: None,
            check_deadline: None,
            sample_at: None,
            last_cpu: None,
            over_since: None,
        };
        if let Some((socket, path)) = p.notify {
            w.notify = self.add_health_source(HealthSource::Notify { id, socket, path });
        }
        if let Some(fd) = p.pipe_read {
            w.ready_pipe = self.add_health_source(HealthSource::ReadyPipe { id, fd });
        }
        if let Some(c) = &spec.health.healthcheck {
            let at = now + c.interval.min(FIRST_CHECK);
            w.next_check = Some(at);
            self.timers
                .push(at, TimerKey::Health(id, HealthTimer::Check));
        }
        if let Some(rule) = &spec.health.watch {
            let at = now + sample_every(rule.sustained);
            w.sample_at = Some(at);
            self.timers
                .push(at, TimerKey::Health(id, HealthTimer::Sample));
        }
        self.health.watches.insert(id, w);
    }

    /// The spawn with readiness extras; it does not wait for the exec (see `spawn::start`).
    pub(super) fn spawn_ready(
        req: &SpawnRequest,
        p: &mut Prepared,
    ) -> Result<spawn::Spawned, spawn::SpawnError> {
        spawn::start(req, std::mem::take(&mut p.extras))
    }

    fn add_health_source(&mut self, mut source: HealthSource) -> Option<usize> {
        let slot_guess = self.free_slots.last().copied().unwrap_or(self.slots.len());
        let token = Token(slot_guess + FIRST_SLOT);
        let registry = self.poll.registry();
        let res = match &mut source {
            HealthSource::Notify { socket, .. } => {
                registry.register(socket, token, Interest::READABLE)
            }
            HealthSource::ReadyPipe { fd, .. } => {
                registry.register(&mut SourceFd(&fd.as_raw_fd()), token, Interest::READABLE)
            }
            HealthSource::Probe { conn, .. } => registry.register(
                &mut conn.stream,
                token,
                Interest::READABLE | Interest::WRITABLE,
            ),
        };
        if let Err(e) = res {
            log::error!("unable to watch a readiness or health source: {e}");
            source.deregister(self.poll.registry());
            return None;
        }
        let slot = self.alloc(Source::Health(source));
        debug_assert_eq!(slot, slot_guess);
        Some(slot)
    }

    /// The leader is gone (or the instance is freed): close its sources, end its check.
    pub(super) fn forget_watch(&mut self, id: InstId) {
        let Some(w) = self.health.watches.remove(&id) else {
            return;
        };
        for slot in [w.notify, w.ready_pipe].into_iter().flatten() {
            self.release(slot);
        }
        match w.in_flight {
            Some(InFlight::Cmd { pid }) => {
                let _ = reap::signal_group(pid, crate::core::instance::SIGKILL);
            }
            Some(InFlight::Probe { slot }) => self.release(slot),
            None => {}
        }
    }

    // ----- readiness sources -----

    pub(super) fn health_ready(&mut self, slot: usize) {
        const NOTIFY_BUDGET: usize = 64;
        let now = Instant::now();
        let mut inputs: Vec<(InstId, Input)> = Vec::new();
        let mut close = false;
        let mut probe_done: Option<(InstId, Result<(), String>)> = None;
        let mut watchdog: Option<InstId> = None;
        let mut said: Option<String> = None;
        let mut more = false;
        match self.slots.get_mut(slot) {
            Some(Some(Source::Health(HealthSource::Notify { id, socket, .. }))) => {
                let id = *id;
                let mut buf = [0u8; 4096];
                // A job that floods its notify socket gets a bounded share of each turn, like a
                // busy output pipe; the rest waits for the next turn.
                for n in 0.. {
                    if n == NOTIFY_BUDGET {
                        more = true;
                        break;
                    }
                    match socket.recv(&mut buf) {
                        Ok(n) => {
                            let text = String::from_utf8_lossy(&buf[..n]);
                            for line in text.lines() {
                                match line.trim() {
                                    "READY=1" => inputs.push((id, Input::Ready)),
                                    "WATCHDOG=1" => watchdog = Some(id),
                                    l if l.starts_with("STATUS=") => {
                                        said = Some(l[7..].to_string())
                                    }
                                    _ => {}
                                }
                            }
                        }
                        Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                        Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                        Err(e) => {
                            log::warn!("{}: reading its notify socket: {e}", self.name(id));
                            break;
                        }
                    }
                }
                if inputs.iter().any(|(_, i)| *i == Input::Ready) {
                    watchdog = Some(id);
                }
            }
            Some(Some(Source::Health(HealthSource::ReadyPipe { id, fd }))) => {
                let id = *id;
                let mut buf = [0u8; 512];
                loop {
                    match nix::unistd::read(fd.as_raw_fd(), &mut buf) {
                        Ok(0) => {
                            close = true;
                            break;
                        }
                        Ok(n) => {
                            if buf[..n].contains(&b'\n') {
                                inputs.push((id, Input::Ready));
                            }
                        }
                        Err(nix::errno::Errno::EAGAIN) => break,
                        Err(nix::errno::Errno::EINTR) => {}
                        Err(_) => {
                            close = true;
                            break;
                        }
                    }
                }
            }
            Some(Some(Source::Health(HealthSource::Probe { id, conn }))) => {
                let id = *id;
                match conn.advance() {
                    Step::Pending => {}
                    Step::Pass => probe_done = Some((id, Ok(()))),
                    Step::Fail(why) => probe_done = Some((id, Err(why))),
                }
            }
            _ => return,
        }
        if more {
            self.keep_hot(slot);
        }
        if let Some(s) = said {
            if let Some(id) = inputs.first().map(|(id, _)| *id).or(watchdog) {
                log::debug!("{} status: {s}", self.name(id));
            }
        }
        if close {
            self.release(slot);
            for w in self.health.watches.values_mut() {
                if w.ready_pipe == Some(slot) {
                    w.ready_pipe = None;
                }
            }
        }
        if let Some(id) = watchdog {
            self.pet_watchdog(id, now);
        }
        for (id, input) in inputs {
            if input == Input::Ready {
                log::debug!("{} said it is ready", self.name(id));
            }
            self.feed(id, input, now);
        }
        if let Some((id, result)) = probe_done {
            self.check_done(id, result, now);
        }
    }

    fn pet_watchdog(&mut self, id: InstId, now: Instant) {
        let Some(period) = self.instances[id]
            .as_ref()
            .and_then(|i| i.spec.health.watchdog)
        else {
            return;
        };
        if let Some(w) = self.health.watches.get_mut(&id) {
            let at = now + period;
            w.watchdog_at = Some(at);
            self.timers
                .push(at, TimerKey::Health(id, HealthTimer::Watchdog));
        }
    }

    // ----- timers -----

    pub(super) fn fire_health(
        &mut self,
        id: InstId,
        which: HealthTimer,
        at: Instant,
        now: Instant,
    ) {
        let Some(w) = self.health.watches.get_mut(&id) else {
            return;
        };
        match which {
            HealthTimer::Watchdog if w.watchdog_at == Some(at) => {
                w.watchdog_at = None;
                let running = self.instances[id]
                    .as_ref()
                    .is_some_and(|i| i.core.state() == State::Running);
                let period = self.instances[id]
                    .as_ref()
                    .and_then(|i| i.spec.health.watchdog)
                    .unwrap_or_default();
                if running {
                    let reason = format!(
                        "watchdog: no WATCHDOG=1 for {}",
                        crate::core::event::human(period)
                    );
                    self.feed(id, Input::Fault { reason }, now);
                }
            }
            HealthTimer::Check if w.next_check == Some(at) => {
                w.next_check = None;
                self.run_check(id, now);
            }
            HealthTimer::CheckTimeout if w.check_deadline == Some(at) => {
                w.check_deadline = None;
                let timeout = self.instances[id]
                    .as_ref()
                    .and_then(|i| i.spec.health.healthcheck.as_ref())
                    .map(|c| c.timeout)
                    .unwrap_or_default();
                match w.in_flight.take() {
                    Some(InFlight::Cmd { pid }) => {
                        // Killed as a group; still reaped by the loop (its pid stays known).
                        let _ = reap::signal_group(pid, crate::core::instance::SIGKILL);
                    }
                    Some(InFlight::Probe { slot }) => self.release(slot),
                    None => return,
                }
                let why = format!("timed out after {}", crate::core::event::human(timeout));
                self.check_done(id, Err(why), now);
            }
            HealthTimer::Sample if w.sample_at == Some(at) => {
                w.sample_at = None;
                self.sample(id, now);
            }
            HealthTimer::Watchdog
            | HealthTimer::Check
            | HealthTimer::CheckTimeout
            | HealthTimer::Sample => {}
        }
    }

    // ----- checks -----

    fn run_check(&mut self, id: InstId, now: Instant) {
        let Some(inst) = self.instances[id].as_ref() else {
            return;
        };
        let Some(check) = inst.spec.health.healthcheck.clone() else {
            return;
        };
        if inst.core.pid.is_none() {
            return;
        }
        let started = match &check.probe {
            crate::config::Probe::Cmd(cmd) => {
                let mut spec = (*inst.spec).clone();
                spec.cmd = cmd.clone();
                spec.health = Default::default();
                let req = SpawnRequest {
                    spec: &spec,
                    name: &inst.core.name,
                    num: inst.core.num,
                    stdout: Stdio::Null,
                    stderr: Stdio::Null,
                };
                spawn::spawn(&req).map(|c| {
                    self.health.check_pids.insert(c.pid, id);
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
                if let Some(w) = self.health.watches.get_mut(&id) {
                    let at = now + check.timeout;
                    w.in_flight = Some(f);
                    w.check_deadline = Some(at);
                    self.timers
                        .push(at, TimerKey::Health(id, HealthTimer::CheckTimeout));
                }
            }
            Err(why) => self.check_done(id, Err(why), now),
        }
    }

    /// A child the loop reaped that is not an instance's leader: maybe a `cmd` check.
    pub(super) fn reaped_check(&mut self, pid: u32, status: ExitStatus) {
        let Some(id) = self.health.check_pids.remove(&pid) else {
            return;
        };
        let Some(w) = self.health.watches.get_mut(&id) else {
            return;
        };
        if !matches!(w.in_flight, Some(InFlight::Cmd { pid: p }) if p == pid) {
            // Killed at its timeout (already counted) or from an earlier process.
            return;
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
        self.check_done(id, result, Instant::now());
    }

    fn check_done(&mut self, id: InstId, result: Result<(), String>, now: Instant) {
        let Some(inst) = self.instances[id].as_ref() else {
            return;
        };
        let Some(check) = inst.spec.health.healthcheck.clone() else {
            return;
        };
        let ready_by_health = inst.spec.health.ready == Ready::Health;
        let state = inst.core.state();
        let name = inst.core.name.clone();
        let Some(w) = self.health.watches.get_mut(&id) else {
            return;
        };
        if let Some(InFlight::Probe { slot }) = w.in_flight.take() {
            self.release(slot);
        }
        let Some(w) = self.health.watches.get_mut(&id) else {
            return;
        };
        w.check_deadline = None;
        let at = now + check.interval;
        w.next_check = Some(at);
        self.timers
            .push(at, TimerKey::Health(id, HealthTimer::Check));
        match result {
            Ok(()) => {
                w.failures = 0;
                if w.status != Status::Healthy {
                    log::info!("{name} healthy");
                    w.status = Status::Healthy;
                }
                if ready_by_health && state == State::Starting {
                    self.feed(id, Input::Ready, now);
                }
            }
            Err(why) => {
                // Before the first pass, failures inside `start_period` do not count; with
                // `ready: health` none count while starting: `ready_timeout` decides then.
                let grace = w.status == Status::Starting
                    && (now.saturating_duration_since(w.spawned_at) < check.start_period
                        || (ready_by_health && state == State::Starting));
                if grace {
                    log::debug!("{name} health check failed during start_period: {why}");
                    return;
                }
                w.failures += 1;
                log::warn!(
                    "{name} health check failed ({}/{}): {why}",
                    w.failures,
                    check.retries
                );
                if w.failures < check.retries || w.status == Status::Unhealthy {
                    return;
                }
                w.status = Status::Unhealthy;
                let reason = format!(
                    "health check failed {} time{} in a row, last: {why}",
                    w.failures,
                    if w.failures == 1 { "" } else { "s" }
                );
                match check.on_unhealthy {
                    OnUnhealthy::Restart => self.feed(id, Input::Fault { reason }, now),
                    OnUnhealthy::Notify => log::warn!("{name} unhealthy: {reason}"),
                    OnUnhealthy::None => {}
                }
            }
        }
    }

    /// `health` for status: null without a check or without a process.
    pub(super) fn health_of(&self, id: InstId) -> Option<String> {
        let inst = self.instances[id].as_ref()?;
        inst.spec.health.healthcheck.as_ref()?;
        inst.core.pid?;
        let w = self.health.watches.get(&id)?;
        Some(
            match w.status {
                Status::Starting => "starting",
                Status::Healthy => "healthy",
                Status::Unhealthy => "unhealthy",
            }
            .to_string(),
        )
    }

    // ----- resources -----

    fn sample(&mut self, id: InstId, now: Instant) {
        let Some(inst) = self.instances[id].as_ref() else {
            return;
        };
        let (Some(rule), Some(pid)) = (inst.spec.health.watch, inst.core.pid) else {
            return;
        };
        let running = inst.core.state() == State::Running;
        let Some(w) = self.health.watches.get_mut(&id) else {
            return;
        };
        let at = now + sample_every(rule.sustained);
        w.sample_at = Some(at);
        self.timers
            .push(at, TimerKey::Health(id, HealthTimer::Sample));
        let usage = proc_usage(pid);
        let (cpu, rss) = (usage.map(|u| u.0), usage.map(|u| u.1));
        let cpu_pct = match (cpu, w.last_cpu) {
            (Some(c), Some((c0, t0))) => cpu_percent(c.saturating_sub(c0), now - t0),
            _ => None,
        };
        w.last_cpu = cpu.map(|c| (c, now));
        let mem_over = matches!((rule.max_memory, rss), (Some(max), Some(r)) if r > max);
        let cpu_over =
            matches!((rule.max_cpu, cpu_pct), (Some(max), Some(p)) if p > f64::from(max));
        if !(mem_over || cpu_over) || !running {
            w.over_since = None;
            return;
        }
        let since = *w.over_since.get_or_insert(now);
        if now.saturating_duration_since(since) < rule.sustained {
            return;
        }
        w.over_since = None;
        let human = crate::core::event::human(rule.sustained);
        let reason = if mem_over {
            format!(
                "memory {} above max_memory {} for {human}",
                bytes(rss.unwrap_or(0)),
                bytes(rule.max_memory.unwrap_or(0))
            )
        } else {
            format!(
                "CPU {:.0}% above max_cpu {}% for {human}",
                cpu_pct.unwrap_or(0.0),
                rule.max_cpu.unwrap_or(0)
            )
        };
        self.feed(id, Input::Fault { reason }, now);
    }

    /// `cpu_percent` and `rss_bytes` for status: read from /proc on request, at most once a
    /// second per process. CPU is the share since the previous reading, else since the process
    /// began.
    pub(super) fn usage_of(&self, id: InstId, now: Instant) -> (Option<f64>, Option<u64>) {
        let Some(pid) = self.instances[id].as_ref().and_then(|i| i.core.pid) else {
            return (None, None);
        };
        let mut seen = self.health.cpu_seen.borrow_mut();
        if let Some(&(_, at, pct, rss)) = seen.get(&pid) {
            if now.saturating_duration_since(at) < USAGE_FRESH {
                return (pct.map(|p| (p * 10.0).round() / 10.0), Some(rss));
            }
        }
        let Some((ticks, rss)) = proc_usage(pid) else {
            return (None, None);
        };
        let pct = match seen.get(&pid) {
            Some(&(t0, at, _, _)) => cpu_percent(ticks.saturating_sub(t0), now - at),
            None => {
                let started = self.instances[id].as_ref().and_then(|i| i.core.started_at);
                started.and_then(|s| cpu_percent(ticks, now.saturating_duration_since(s)))
            }
        };
        seen.insert(pid, (ticks, now, pct, rss));
        let rss = Some(rss);
        if seen.len() > 4 * self.instances.len() + 64 {
            seen.clear();
        }
        (pct.map(|p| (p * 10.0).round() / 10.0), rss)
    }

    // ----- dependencies -----

    /// Why `id` may not be spawned now: the first dependency instance that is not running.
    pub(super) fn blocked_by(&self, id: InstId) -> Option<String> {
        let inst = self.instances[id].as_ref()?;
        for dep in &inst.spec.health.depends_on {
            let Some(program) = self.programs.get(dep) else {
                // Not added yet (start-up adds programs by name): it will be.
                if self.settings.config.programs.contains_key(dep) {
                    return Some(format!("waiting for {dep} (not started yet)"));
                }
                continue;
            };
            for &d in &program.instances {
                let Some(di) = self.instances[d].as_ref() else {
                    continue;
                };
                let s = di.core.state();
                if s == State::Running {
                    continue;
                }
                return Some(match (s, &di.core.last_error) {
                    (State::Fatal, Some(why)) => {
                        format!("waiting for {}, which is fatal: {why}", di.core.name)
                    }
                    _ if di.core.is_waiting() => {
                        format!("waiting for {}, which waits too", di.core.name)
                    }
                    _ => format!("waiting for {} ({})", di.core.name, s.as_str()),
                });
            }
        }
        None
    }

    fn dependents_up(&self, id: InstId) -> bool {
        let Some(program) = self.instances[id].as_ref().map(|i| i.core.program.clone()) else {
            return false;
        };
        self.health.stop_set.iter().any(|&other| {
            self.instances[other].as_ref().is_some_and(|o| {
                o.spec.health.depends_on.contains(&program) && !o.core.state().is_down()
            })
        })
    }

    /// Stop (or shut down) `ids` in reverse dependency order: an instance whose dependents
    /// among them are still up is held until they are down. Returns the ids fed now.
    pub(super) fn stop_in_order(&mut self, ids: &[InstId], input: Input, now: Instant) {
        self.health.stop_set.extend(ids.iter().copied());
        let (held, now_ids): (Vec<InstId>, Vec<InstId>) =
            ids.iter().partition(|&&id| self.dependents_up(id));
        for id in held {
            self.health.held_stops.retain(|(h, _)| *h != id);
            self.health.held_stops.push((id, input.clone()));
        }
        for id in now_ids {
            self.feed(id, input.clone(), now);
        }
    }

    /// Once a turn: held stops whose dependents are down, waiting starts whose dependencies
    /// are up, and the next step of each rolling restart.
    pub(super) fn health_turn(&mut self) {
        let now = Instant::now();
        for _ in 0..8 {
            let mut progressed = false;
            let held = std::mem::take(&mut self.health.held_stops);
            for (id, input) in held {
                if self.dependents_up(id) {
                    self.health.held_stops.push((id, input));
                } else {
                    self.feed(id, input, now);
                    progressed = true;
                }
            }
            if self.health.held_stops.is_empty() {
                self.health.stop_set.clear();
            }
            let waiting: Vec<InstId> = (0..self.instances.len())
                .filter(|&id| {
                    self.instances[id]
                        .as_ref()
                        .is_some_and(|i| i.core.is_waiting())
                })
                .collect();
            for id in waiting {
                match self.blocked_by(id) {
                    None => {
                        self.feed(id, Input::Unblocked, now);
                        progressed = true;
                    }
                    Some(reason) => self.feed(id, Input::Blocked { reason }, now),
                }
            }
            progressed |= self.roll(now);
            if !progressed {
                break;
            }
        }
    }

    /// A stop or start an operator asked for, or a reload retiring the instance, drops a held
    /// stop or a rolling restart of it, and the outcome of one abandoned earlier: a later
    /// request, or an instance reusing the id, would be answered with it.
    pub(super) fn forget_holds(&mut self, id: InstId) {
        self.health.held_stops.retain(|(h, _)| *h != id);
        for (_, rest) in &mut self.health.rolling {
            rest.retain(|&r| r != id);
        }
        self.health.rolling_failed.remove(&id);
    }

    /// `Some(None)` while a held stop or a rolling restart still has `id` to do;
    /// `Some(Some(outcome))` when its rolling restart was abandoned.
    pub(super) fn held_outcome(&self, id: InstId, name: &str) -> Option<Option<Outcome>> {
        if let Some(why) = self.health.rolling_failed.get(&id) {
            return Some(Some(Outcome {
                name: name.to_string(),
                ok: false,
                message: why.clone(),
            }));
        }
        let held = self.health.held_stops.iter().any(|(h, _)| *h == id)
            || self
                .health
                .rolling
                .iter()
                .any(|(_, rest)| rest.contains(&id));
        held.then_some(None)
    }

    // ----- rolling restarts -----

    /// `sup restart NAME --rolling`: one instance of each program at a time, the next once
    /// the previous is running again.
    pub(super) fn act_rolling(
        &mut self,
        slot: usize,
        names: &[String],
        wait: bool,
        now: Instant,
    ) -> Option<Response> {
        let ids = match self.select(names) {
            Ok(ids) => ids,
            Err(e) => return Some(*e),
        };
        if self.shutting_down {
            return Some(Response::error("the daemon is shutting down"));
        }
        let mut by_program: Vec<(String, VecDeque<InstId>)> = Vec::new();
        let mut items = Vec::new();
        for &id in &ids {
            let Some(inst) = self.instances[id].as_ref() else {
                continue;
            };
            self.health.rolling_failed.remove(&id);
            let program = inst.core.program.clone();
            match by_program.iter_mut().find(|(p, _)| *p == program) {
                Some((_, q)) => q.push_back(id),
                None => by_program.push((program, VecDeque::from([id]))),
            }
            items.push(Item {
                id,
                name: inst.core.name.clone(),
                goal: Goal::Restarted,
                outcome: None,
            });
        }
        for (_, mut queue) in by_program {
            if let Some(first) = queue.pop_front() {
                self.feed(first, Input::Restart, now);
                self.health.rolling.push((first, queue));
            }
        }
        if !wait {
            for item in &mut items {
                item.outcome = Some(Outcome {
                    name: item.name.clone(),
                    ok: true,
                    message: "rolling restart under way (not waiting)".into(),
                });
            }
        }
        self.wait(slot, items, super::Answer::Outcomes)
    }

    fn roll(&mut self, now: Instant) -> bool {
        let mut progressed = false;
        let mut rolling = std::mem::take(&mut self.health.rolling);
        for (current, rest) in &mut rolling {
            let state = self.instances[*current].as_ref().map(|i| i.core.state());
            match state {
                Some(State::Running) | None => {
                    if let Some(next) = rest.pop_front() {
                        self.feed(next, Input::Restart, now);
                        *current = next;
                        progressed = true;
                    }
                }
                Some(State::Starting | State::Stopping) => {}
                Some(s) => {
                    let name = self.name(*current).to_string();
                    for id in rest.drain(..) {
                        self.health.rolling_failed.insert(
                            id,
                            format!(
                                "not restarted: the rolling restart stopped at {name} ({})",
                                s.as_str()
                            ),
                        );
                    }
                    progressed = true;
                }
            }
        }
        rolling.retain(|(_, rest)| !rest.is_empty());
        rolling.append(&mut self.health.rolling);
        self.health.rolling = rolling;
        progressed
    }
}

fn sample_every(sustained: Duration) -> Duration {
    (sustained / 5).clamp(Duration::from_millis(200), Duration::from_secs(5))
}

fn cpu_percent(ticks: u64, over: Duration) -> Option<f64> {
    let hz = nix::unistd::sysconf(nix::unistd::SysconfVar::CLK_TCK)
        .ok()
        .flatten()
        .filter(|&h| h > 0)? as f64;
    let secs = over.as_secs_f64();
    (secs > 0.0).then(|| ticks as f64 / hz / secs * 100.0)
}

/// utime + stime in clock ticks and the resident set in bytes, from one read of
/// `/proc/PID/stat` (status asks for every instance at once: one file each, not two).
fn proc_usage(pid: u32) -> Option<(u64, u64)> {
    static PAGE: std::sync::OnceLock<u64> = std::sync::OnceLock::new();
    let page = *PAGE.get_or_init(|| {
        nix::unistd::sysconf(nix::unistd::SysconfVar::PAGE_SIZE)
            .ok()
            .flatten()
            .map_or(4096, |p| p as u64)
    });
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name may hold spaces and parentheses: fields start after the last ')'.
    let rest = &text[text.rfind(')')? + 1..];
    let mut f = rest.split_whitespace();
    let utime: u64 = f.nth(11)?.parse().ok()?;
    let stime: u64 = f.next()?.parse().ok()?;
    let rss_pages: u64 = f.nth(8)?.parse().ok()?;
    Some((utime + stime, rss_pages * page))
}

fn bytes(n: u64) -> String {
    const MIB: f64 = (1 << 20) as f64;
    format!("{:.0}M", n as f64 / MIB)
}
