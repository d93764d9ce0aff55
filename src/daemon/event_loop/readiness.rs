//! The loop's side of readiness: notify sockets (`READY=1`, `WATCHDOG=1`, `STATUS=`) and
//! readiness pipes, made before the fork and watched on the poll; and the per-process record
//! (`Watch`) that readiness, checks and resource rules share. The transitions are
//! `core::instance`'s (`Ready`, `Fault`); this file owns the sockets and pipes that produce
//! them. Nothing here blocks.

use std::collections::HashMap;
use std::io;
use std::os::fd::{AsRawFd, OwnedFd};
use std::path::PathBuf;
use std::time::Instant;

use mio::unix::SourceFd;
use mio::Registry;

use super::checks::{HealthTimer, FIRST_CHECK};
use super::{Daemon, Inputs, InstId, Source, TimerKey};
use crate::config::{ProgramSpec, Ready};
use crate::core::health::Checks;
use crate::core::usage::{sample_every, Sustained};
use crate::core::Input;
use crate::daemon::notifydir::{self, NotifyDirs, NotifySocket};
use crate::daemon::probe::{self, Step};
use crate::daemon::reap;
use crate::daemon::spawn::{self, Extras, SpawnRequest};

/// A source on the poll that belongs to readiness or a check.
pub(in crate::daemon) enum HealthSource {
    Notify {
        id: InstId,
        /// Removed with its directory when the source is dropped.
        socket: NotifySocket,
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
            HealthSource::Notify { socket, .. } => {
                let _ = registry.deregister(&mut socket.socket);
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

pub(super) enum InFlight {
    Cmd { pid: u32 },
    Probe { slot: usize },
}

/// One process's readiness and health; replaced at each spawn, dropped when its leader dies.
pub(super) struct Watch {
    pub(super) notify: Option<usize>,
    pub(super) ready_pipe: Option<usize>,
    pub(super) watchdog_at: Option<Instant>,
    pub(super) checks: Checks,
    pub(super) next_check: Option<Instant>,
    pub(super) in_flight: Option<InFlight>,
    pub(super) check_deadline: Option<Instant>,
    pub(super) sample_at: Option<Instant>,
    pub(super) usage: Sustained,
}

/// Every live process's `Watch`, and what `status` remembers of CPU use.
#[derive(Default)]
pub(in crate::daemon) struct Watches {
    pub(super) of: super::memory::ById<Watch>,
    /// The notify sockets' tree (`notifydir`), made at the first `ready: notify` spawn.
    notify_dirs: Option<NotifyDirs>,
    /// CPU samples for `status`: leader pid → (CPU ticks, when, the share then, RSS).
    pub(super) cpu_seen: std::cell::RefCell<HashMap<u32, CpuSeen>>,
    /// While a list is answered: how many more instances may be read afresh (`None`: no
    /// bound, for one instance's update).
    pub(super) usage_reads: std::cell::Cell<Option<usize>>,
    /// A list went out with figures older than `USAGE_FRESH`: a sweep should follow.
    pub(super) usage_behind: std::cell::Cell<bool>,
    /// The sweep that refreshes them a slice per turn: the next instance and its deadline.
    pub(super) usage_sweep: Option<(InstId, Instant)>,
}

/// The last reading of a pid: CPU ticks, when, the CPU share then, and its RSS.
pub(super) type CpuSeen = (u64, Instant, Option<f64>, u64);

/// What readiness needs from before the spawn until after it.
pub(super) struct Prepared {
    pub(super) extras: Extras,
    notify: Option<NotifySocket>,
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
                // The job's user must be able to reach its socket: it is handed to that uid.
                let owner = spawn::owner(spec)?;
                let socket = self.notify_dirs()?.socket(id, owner)?;
                p.extras
                    .env
                    .push(("NOTIFY_SOCKET".into(), socket.path.display().to_string()));
                if let Some(w) = spec.health.watchdog {
                    p.extras
                        .env
                        .push(("WATCHDOG_USEC".into(), w.as_micros().to_string()));
                }
                p.notify = Some(socket);
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

    /// The notify tree, made (or taken over from a killed predecessor) when first needed.
    fn notify_dirs(&mut self) -> Result<&mut NotifyDirs, String> {
        if self.watches.notify_dirs.is_none() {
            let socket_dir = self
                .settings
                .socket
                .parent()
                .map_or_else(std::env::temp_dir, PathBuf::from);
            let base = notifydir::base_for(&socket_dir, nix::unistd::geteuid().is_root());
            let tag = spawn::daemon_tag()
                .map_or_else(|| format!("pid{}", std::process::id()), str::to_string);
            self.watches.notify_dirs = Some(NotifyDirs::open(&base, &tag)?);
        }
        self.watches
            .notify_dirs
            .as_mut()
            .ok_or_else(|| "notify directory: not made".to_string())
    }

    /// After a successful spawn: watch the readiness sources and arm the first check.
    pub(super) fn after_spawn(
        &mut self,
        id: InstId,
        spec: &ProgramSpec,
        p: Prepared,
        now: Instant,
    ) {
        self.forget_watch(id);
        let mut w = Watch {
            notify: None,
            ready_pipe: None,
            watchdog_at: None,
            checks: Checks::new(now),
            next_check: None,
            in_flight: None,
            check_deadline: None,
            sample_at: None,
            usage: Sustained::default(),
        };
        if let Some(socket) = p.notify {
            w.notify = self.add_health_source(HealthSource::Notify { id, socket });
        }
        if let Some(fd) = p.pipe_read {
            w.ready_pipe = self.add_health_source(HealthSource::ReadyPipe { id, fd });
        }
        if let Some(c) = &spec.health.healthcheck {
            let at = now + c.interval.min(FIRST_CHECK);
            w.next_check = Some(at);
            self.sup
                .push_timer(at, TimerKey::Health(id, HealthTimer::Check));
        }
        if let Some(rule) = &spec.health.watch {
            let at = now + sample_every(rule.sustained);
            w.sample_at = Some(at);
            self.sup
                .push_timer(at, TimerKey::Health(id, HealthTimer::Sample));
        }
        self.watches.of.insert(id, w);
    }

    /// The spawn with readiness extras; it does not wait for the exec (see `spawn::start`).
    pub(super) fn spawn_ready(
        req: &SpawnRequest,
        p: &mut Prepared,
    ) -> Result<spawn::Spawned, spawn::SpawnError> {
        spawn::start(req, std::mem::take(&mut p.extras))
    }

    pub(super) fn add_health_source(&mut self, source: HealthSource) -> Option<usize> {
        self.sources
            .add(Source::Health(source))
            .map_err(|e| log::error!("unable to watch a readiness or health source: {e}"))
            .ok()
    }

    /// The leader is gone (or the instance is freed): close its sources, end its check.
    pub(super) fn forget_watch(&mut self, id: InstId) {
        let Some(w) = self.watches.of.remove(id) else {
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

    pub(super) fn health_ready(&mut self, slot: usize, now: Instant) -> Inputs {
        const NOTIFY_BUDGET: usize = 64;
        let mut inputs: Inputs = Vec::new();
        let mut close = false;
        let mut probe_done: Option<(InstId, Result<(), String>)> = None;
        let mut watchdog: Option<InstId> = None;
        let mut said: Option<String> = None;
        let mut more = false;
        match self.sources.get_mut(slot) {
            Some(Source::Health(HealthSource::Notify { id, socket, .. })) => {
                let id = *id;
                let mut buf = [0u8; 4096];
                // A job that floods its notify socket gets a bounded share of each turn, like a
                // busy output pipe; the rest waits for the next turn.
                for n in 0.. {
                    if n == NOTIFY_BUDGET {
                        more = true;
                        break;
                    }
                    match socket.socket.recv(&mut buf) {
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
            Some(Source::Health(HealthSource::ReadyPipe { id, fd })) => {
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
            Some(Source::Health(HealthSource::Probe { id, conn })) => {
                let id = *id;
                match conn.advance() {
                    Step::Pending => {}
                    Step::Pass => probe_done = Some((id, Ok(()))),
                    Step::Fail(why) => probe_done = Some((id, Err(why))),
                }
            }
            _ => return Vec::new(),
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
            for w in self.watches.of.values_mut() {
                if w.ready_pipe == Some(slot) {
                    w.ready_pipe = None;
                }
            }
        }
        if let Some(id) = watchdog {
            self.pet_watchdog(id, now);
        }
        for (id, input) in &inputs {
            if *input == Input::Ready {
                log::debug!("{} said it is ready", self.name(*id));
            }
        }
        if let Some((id, result)) = probe_done {
            inputs.extend(self.check_done(id, result, now));
        }
        inputs
    }

    fn pet_watchdog(&mut self, id: InstId, now: Instant) {
        let Some(period) = self.sup.get(id).and_then(|i| i.spec.health.watchdog) else {
            return;
        };
        if let Some(w) = self.watches.of.get_mut(id) {
            let at = now + period;
            w.watchdog_at = Some(at);
            self.sup
                .push_timer(at, TimerKey::Health(id, HealthTimer::Watchdog));
        }
    }
}
