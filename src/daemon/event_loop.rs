//! The loop: one thread, one `mio::Poll`, and every source the daemon has.
//!
//! Fixed sources have named tokens (the signalfd, the control socket listener); child pipes
//! and client connections live in a slab indexed by the other tokens. Each turn: poll with a
//! timeout that ends at the earliest deadline, drain every ready source until `WouldBlock`
//! (child output with a per-turn budget, so a fast writer cannot starve the rest), reap every
//! exited child, read the clock once, fire every due deadline, answer the waiters whose
//! transitions ended, write the state file if something changed, flush the event log. When
//! nothing is due and nothing happens, `poll` sleeps without a timeout: an idle daemon makes
//! no wakeups at all.

use std::borrow::Cow;
use std::collections::HashMap;
use std::io;
use std::os::fd::{AsRawFd, OwnedFd};
use std::path::PathBuf;
use std::rc::Rc;
use std::time::{Duration, Instant};

use mio::net::UnixListener;
use mio::unix::SourceFd;
use mio::{Events, Interest, Poll, Token};
use nix::sys::signal::Signal as NixSignal;
use nix::sys::signalfd::SignalFd;

use super::output::Capture;
use super::pids::{PidOwner, Pids};
use super::spawn::{SpawnRequest, Stdio};
use super::{reap, state};
use crate::config::{Config, ProgramSpec, SignalTarget};
use crate::control::proto::{
    DaemonInfo, InstanceStatus, Outcome, Request, RequestBody, Response, ResponseBody,
    SignalTarget as WireTarget, StatusRow, Text,
};
use crate::control::server::{Conn, Incoming, MAX_PENDING_OUT};
use crate::core::{names, Action, Input, Instance, State};
use crate::daemon::http::api;
use acceptor::{Accepted, Acceptor};
use clients::{Answer, Clients, Goal, Item, Waiter};
use sources::Sources;
use supervisor::{Inst, Supervisor};

mod acceptor;
mod cgroups;
mod checks;
mod clear;
mod clients;
pub(super) mod follow;
mod http;
mod init;
mod listeners;
mod memory;
mod order;
mod readiness;
mod reload;
mod rolling;
mod scheduling;
mod sources;
mod supervisor;
mod systemd;

pub use init::FORWARDED;

const SIGNALS: Token = Token(0);
const LISTENER: Token = Token(1);

/// Child output read per source per turn before the loop moves on to other work.
const PUMP_BUDGET: usize = 1 << 20;
/// A connection with a half-written request gets this long to finish it.
const PARTIAL_REQUEST_DEADLINE: Duration = Duration::from_secs(5);
/// A connection that says nothing for this long is closed.
const IDLE_CLIENT_DEADLINE: Duration = Duration::from_secs(60);
/// More connections than this at once are refused (each costs a descriptor).
const MAX_CLIENTS: usize = 4096;
/// Past this much unsent output a client's further requests wait until it reads.
const OUT_HIGH_WATER: usize = 256 * 1024;
/// Buffers (up to a request's worth each) read from one client per turn.
const CLIENT_FILLS: usize = 4;

pub(super) type InstId = usize;

/// What an event handler produced for the state machines: the loop feeds them, in order, in
/// one place (`apply`), once the handler has returned.
pub(super) type Inputs = Vec<(InstId, Input)>;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(super) enum TimerKey {
    Instance(InstId),
    Client(usize),
    /// A scheduled instance's `tick_at` (see `scheduling`).
    Tick(InstId),
    /// A readiness, health-check or resource deadline (see `readiness` and `checks`).
    Health(InstId, checks::HealthTimer),
    /// Held output lines and notifications (`logs.rs`, `notify.rs`).
    Logs,
    /// Accept again after an accept error.
    Accept,
    /// Sweep for children whose SIGCHLDs were merged (`reap::Sweeps`).
    Reap,
    /// An HTTP connection's deadline or a listener's accept retry (see `http`).
    Http(usize),
    /// The end of the shutdown's grace, or of the wait after its kill (see `init`).
    Grace,
    /// The next `WATCHDOG=1` to the service manager (see `systemd`).
    Watchdog,
    /// A listener's restart or kill (see `listeners`).
    Listeners,
    /// The next slice of `status`'s usage sweep (see `checks`).
    Usage,
}

pub(super) struct CaptureSource {
    pub(super) capture: Capture,
    /// The instance that wrote it, for the log; output outlives a restart until EOF.
    pub(super) instance: String,
    /// The log file it feeds: `tail -f` clients following that file are sent what is new.
    pub(super) path: PathBuf,
}

pub(super) struct ClientSource {
    conn: Conn,
    deadline: Option<Instant>,
    /// A start/stop/shutdown request is waiting for its outcome: read nothing more until then.
    waiting: bool,
    /// Streaming until the client hangs up: a `tail -f` or a subscription.
    stream: Option<follow::Stream>,
}

/// A child between fork and exec: its status pipe says whether the program runs.
pub(super) struct ExecSource {
    fd: OwnedFd,
    id: InstId,
    pid: u32,
    program: String,
}

pub(in crate::daemon) enum Source {
    Capture(CaptureSource),
    Client(ClientSource),
    Exec(ExecSource),
    /// A notify socket, a readiness pipe or a health probe (see `readiness`).
    Health(readiness::HealthSource),
    /// An HTTP listener or connection (see `http`).
    Http(super::http::HttpSource),
    /// An event listener's stdin with bytes pending (see `listeners`).
    Listener(listeners::ListenerPipe),
}

/// What a control connection is sent for one request line. Lives for one request, so the
/// size gap between the variants costs nothing worth a box (as `Incoming`).
#[allow(clippy::large_enum_variant)]
enum Reply {
    Message(Response),
    /// An answer already encoded (`status_rows`), without its newline.
    Line(Vec<u8>),
}

pub struct Settings {
    pub config: Config,
    pub socket: PathBuf,
    pub state_path: PathBuf,
    /// The HTTP listeners, bound, and the token; taken by `Daemon::new`.
    pub http: Option<super::http::Setup>,
    /// The instances' cgroups (`Cgroups::none` on a host without).
    pub cgroups: super::cgroup::Cgroups,
    /// Running as a container's init (`--init`, or PID 1): signals are passed on (`init`).
    pub init: bool,
    /// The longest a shutdown may take before what is left is killed (`--grace`).
    pub grace: Option<Duration>,
    /// `$NOTIFY_SOCKET` and half `$WATCHDOG_USEC`, when a service manager asked for them;
    /// taken by `Daemon::new`.
    pub systemd: Option<(super::sdnotify::Link, Option<Duration>)>,
}

pub struct Daemon {
    /// The poll and every source on it but the signalfd and the listener.
    pub(super) sources: Sources,
    signals: SignalFd,
    /// When to call `waitpid(-1)` next.
    sweeps: reap::Sweeps,
    /// The control socket: accepting, and refusing with an answer.
    acceptor: Acceptor,
    pub(super) settings: Settings,
    /// The programs, the instance table and the deadline heap.
    pub(super) sup: Supervisor,
    /// Every child the daemon started and still has to reap, by what it is for.
    pub(super) pids: Pids,
    /// What the loop owes its clients: parked requests, streams, the shutdown's waiters.
    clients: Clients,
    shutting_down: bool,
    /// Instances changed this turn: `save_state` records them (duplicates allowed).
    state_dirty: Vec<InstId>,
    /// The state file and its journal.
    journal: state::Journal,
    /// Instances whose stop ended this turn: their escapees are killed before waiters hear.
    escape_scan: Vec<String>,
    /// Cgroup directories per program, and removals to retry (`cgroups.rs`).
    cg_dirs: cgroups::CgDirs,
    started: Instant,
    /// Readiness and health of each live process (`readiness.rs`, `checks.rs`).
    watches: readiness::Watches,
    /// Dependency holds and rolling restarts (`order.rs`, `rolling.rs`).
    order: order::Order,
    pub(super) logs: super::logs::Outputs,
    pub(super) notifier: super::notify::Notifier,
    /// Event listeners: their children, stdins and queues (`listen.rs`).
    listeners: super::listen::Listeners,
    http: http::Http,
    /// The grace, critical jobs and the exit status (`init.rs`).
    init: init::Init,
    /// What the service manager is told (`systemd.rs`).
    systemd: systemd::Systemd,
    /// What the last trim of the daemon's memory saw (`memory.rs`); none yet at the start.
    trimmed: Option<memory::Marks>,
}

impl Daemon {
    pub fn new(
        settings: Settings,
        listener: UnixListener,
        signals: SignalFd,
        restored: HashMap<String, state::InstanceState>,
    ) -> io::Result<Daemon> {
        let poll = Poll::new()?;
        poll.registry().register(
            &mut SourceFd(&signals.as_raw_fd()),
            SIGNALS,
            Interest::READABLE,
        )?;
        let mut listener = listener;
        poll.registry()
            .register(&mut listener, LISTENER, Interest::READABLE)?;
        let journal = state::Journal::new(&settings.state_path);
        let mut settings = settings;
        let (link, watchdog) = settings
            .systemd
            .take()
            .map_or((None, None), |(l, w)| (Some(l), w));
        let mut d = Daemon {
            sources: Sources::new(poll),
            signals,
            acceptor: Acceptor::new(listener),
            sweeps: reap::Sweeps::default(),
            settings,
            sup: Supervisor::default(),
            pids: Pids::default(),
            clients: Clients::default(),
            shutting_down: false,
            state_dirty: Vec::new(),
            journal,
            escape_scan: Vec::new(),
            cg_dirs: Default::default(),
            started: Instant::now(),
            watches: Default::default(),
            order: Default::default(),
            logs: Default::default(),
            notifier: super::notify::Notifier::new(),
            listeners: Default::default(),
            http: Default::default(),
            init: Default::default(),
            systemd: systemd::Systemd::new(link, watchdog),
            trimmed: None,
        };
        if let Some(setup) = d.settings.http.take() {
            d.start_http(setup);
        }
        d.index_dependencies();
        let listeners = d.settings.config.daemon.notify.listeners.clone();
        d.configure_listeners(&listeners, Instant::now());
        let specs: Vec<ProgramSpec> = d.settings.config.programs.values().cloned().collect();
        let now = Instant::now();
        for spec in specs {
            d.add_program(spec, &restored, now);
        }
        if let Some(at) = d.systemd.arm(now) {
            d.sup.push_timer(at, TimerKey::Watchdog);
        }
        Ok(d)
    }

    fn add_program(
        &mut self,
        spec: ProgramSpec,
        restored: &HashMap<String, state::InstanceState>,
        now: Instant,
    ) -> Vec<InstId> {
        let spec = Rc::new(spec);
        let names = spec.instance_names();
        self.sup.reserve(names.len());
        let ids: Vec<InstId> = names
            .into_iter()
            .enumerate()
            .map(|(num, name)| self.new_instance(&spec, num as u32, name, restored))
            .collect();
        self.sup.add_program(spec.clone(), ids.clone());
        // Instances waiting for this program say so by name from now on.
        self.order.changed.extend(&ids);
        for &id in &ids {
            let last = self.sup.get(id).map(|i| i.core().name().to_string());
            let last = last.and_then(|n| restored.get(&n)?.last_tick.clone());
            let inputs = self.arm_schedule(id, last.as_deref());
            self.apply(inputs, now);
        }
        if spec.autostart && spec.schedule.is_none() {
            for &id in &ids {
                let wants = self.sup.get(id).is_some_and(|i| i.core().want_up());
                if wants {
                    self.apply(vec![(id, Input::Start)], now);
                }
            }
        }
        ids
    }

    fn new_instance(
        &mut self,
        spec: &Rc<ProgramSpec>,
        num: u32,
        name: String,
        restored: &HashMap<String, state::InstanceState>,
    ) -> InstId {
        let mut core = Instance::new(&spec.name, num, name);
        if let Some(r) = restored.get(core.name()) {
            core.restore(r.restarts, r.want_up);
        }
        let id = self.sup.add_instance(core, spec.clone());
        self.state_dirty.push(id);
        id
    }

    /// Run until shutdown completes; the exit status the daemon ends with (see `init`).
    pub fn run(&mut self) -> io::Result<u8> {
        let mut events = Events::with_capacity(1024);
        // The first write, a snapshot, records what `new` spawned before the first poll.
        self.save_state();
        // A config with nothing to start is ready before anything happens.
        self.systemd
            .end_turn(self.sup.tally(), !self.order.unsettled());
        loop {
            let timeout = if !self.order.unsettled() && !self.acceptor.has_more() {
                self.sup
                    .next_deadline()
                    .map(|at| at.saturating_duration_since(Instant::now()))
            } else {
                Some(Duration::ZERO)
            };
            if timeout != Some(Duration::ZERO) {
                self.trim_memory();
            }
            if let Err(e) = self.sources.poll(&mut events, timeout) {
                if e.kind() != io::ErrorKind::Interrupted {
                    log::error!("poll failed: {e}");
                }
                continue;
            }
            // The clock is read once a turn: every deadline and timestamp of this turn is
            // measured from here.
            let now = Instant::now();
            let mut reap = false;
            let mut chld = Vec::new();
            let mut signals = Vec::new();
            if self.acceptor.new_turn() {
                self.accept(now);
            }
            for ev in events.iter() {
                match ev.token() {
                    SIGNALS => self.read_signals(&mut reap, &mut chld, &mut signals),
                    LISTENER => self.accept(now),
                    token => {
                        if let Some(slot) = Sources::slot_of(token) {
                            let inputs = self.ready(slot, now);
                            self.apply(inputs, now);
                        }
                    }
                }
            }
            let hot = self.sources.take_hot();
            for slot in hot {
                let inputs = match self.sources.get(slot) {
                    Some(
                        Source::Capture(_)
                        | Source::Client(_)
                        | Source::Health(_)
                        | Source::Http(_),
                    ) => self.ready(slot, now),
                    _ => Vec::new(),
                };
                self.apply(inputs, now);
            }
            if reap {
                // The children the SIGCHLDs named first, each with its own O(1) waitpid, and
                // fed at once: a crashed leader's restart is spawned before the sweep, whose
                // `waitpid(-1)` walks every child, runs (after it, for those merged).
                for (pid, status) in reap::reap_pids(&chld) {
                    let inputs = self.reaped(pid, status, now);
                    self.apply(inputs, now);
                }
                match self.sweeps.on_sigchld(now, self.pids.count()) {
                    Ok(()) => {
                        let swept = reap::reap_all();
                        self.sweeps.found(swept.len());
                        for (pid, status) in swept {
                            let inputs = self.reaped(pid, status, now);
                            self.apply(inputs, now);
                        }
                    }
                    Err(Some(at)) => self.sup.push_timer(at, TimerKey::Reap),
                    Err(None) => {}
                }
                // What kept a stopped instance's cgroup busy may be gone now.
                self.retry_cgroup_removals();
            }
            for sig in signals {
                self.on_signal(sig, now);
            }
            for (at, key) in self.sup.pop_due(now) {
                let inputs = self.timer(key, at, now);
                self.apply(inputs, now);
            }
            self.shutdown_if_critical(now);
            self.settle_order(now);
            self.free_retired();
            self.kill_escapees();
            self.settle_waiters(now);
            self.remove_down_cgroups();
            self.publish(now);
            self.systemd
                .end_turn(self.sup.tally(), !self.order.unsettled());
            // Every group spawned this turn is on disk before the next poll (`save_state`).
            self.save_state();
            log::logger().flush();
            self.feed_event_log(now);
            if self.shutting_down
                && (self.all_down() || self.init.gave_up(now))
                && self.listeners_stopped(now)
            {
                self.finish_shutdown(now);
                return Ok(self.init.status());
            }
        }
    }

    // ----- signals and children -----

    /// Read every pending signal: the pids SIGCHLDs name go to `chld` (an empty list with
    /// `reap` set when one named none), the rest to `signals`.
    fn read_signals(&mut self, reap: &mut bool, chld: &mut Vec<u32>, signals: &mut Vec<NixSignal>) {
        loop {
            match self.signals.read_signal() {
                Ok(Some(info)) => match NixSignal::try_from(info.ssi_signo as i32) {
                    Ok(NixSignal::SIGCHLD) => {
                        *reap = true;
                        chld.push(info.ssi_pid);
                    }
                    Ok(sig) => signals.push(sig),
                    Err(_) => {}
                },
                Ok(None) => return,
                Err(nix::errno::Errno::EINTR) => continue,
                Err(e) => {
                    log::error!("reading the signalfd failed: {e}");
                    return;
                }
            }
        }
    }

    fn on_signal(&mut self, sig: NixSignal, now: Instant) {
        match sig {
            NixSignal::SIGTERM | NixSignal::SIGINT if !self.shutting_down => {
                log::info!("received {sig}: stopping every job");
                self.begin_shutdown(now);
            }
            NixSignal::SIGHUP => {
                log::info!("received SIGHUP: reloading");
                self.reload(false, None, now);
            }
            NixSignal::SIGUSR2 => {
                let _ = self.logreopen(now);
            }
            NixSignal::SIGQUIT if self.settings.init && !self.shutting_down => {
                log::info!("received {sig}: stopping every job");
                self.begin_shutdown(now);
            }
            sig if self.settings.init && FORWARDED.contains(&sig) => self.forward(sig),
            _ => {}
        }
    }

    /// One child `waitpid` returned, handed to what it was for.
    fn reaped(&mut self, pid: u32, status: crate::core::ExitStatus, now: Instant) -> Inputs {
        let mut inputs = Vec::new();
        // The child's exec report is in its pipe before its exit: read it first, so a failed
        // exec is told as such (and its pid forgotten) rather than as an exit with code 127.
        if let Some(PidOwner::Leader(id)) = self.pids.get(pid) {
            if let Some(slot) = self.sup.get(id).and_then(|i| i.exec_slot) {
                inputs = self.exec_status(slot);
            }
        }
        let id = match self.pids.remove(pid) {
            Some(PidOwner::Leader(id)) => id,
            Some(PidOwner::Check(id)) => {
                inputs.extend(self.reaped_check(id, pid, status, now));
                return inputs;
            }
            Some(PidOwner::Sender) => {
                let next = self.notifier.reaped(pid, status, &mut self.pids, now);
                if let Some(at) = next {
                    self.arm_logs(at, now);
                }
                return inputs;
            }
            Some(PidOwner::Listener) => {
                self.listener_reaped(pid, status, now);
                return inputs;
            }
            // An orphan adopted as subreaper, or a child whose exec failed (already fed as
            // such).
            None => return inputs,
        };
        self.forget_watch(id);
        // Every byte the child wrote before it died reaches its file before its exit is
        // logged: the pipe may still hold the last of it.
        if let Some(inst) = self.sup.get(id) {
            for slot in inst.captures.into_iter().flatten() {
                self.pump(slot, usize::MAX, now);
            }
        }
        if let Some(inst) = self.sup.get_mut(id) {
            inst.captures = [None, None];
            inst.start_ticks = None;
        }
        self.note_exit(id, status);
        inputs.push((id, Input::Exited(status)));
        inputs
    }

    // ----- the state machine -----

    /// The one place where what the handlers produced reaches the state machines.
    pub(super) fn apply(&mut self, inputs: Inputs, now: Instant) {
        for (id, input) in inputs {
            self.feed(id, input, now);
        }
    }

    /// Feed an input to an instance and carry out what it asks, including the inputs its
    /// actions produce (a spawn's result, an empty group).
    fn feed(&mut self, id: InstId, input: Input, now: Instant) {
        let mut queue = vec![input];
        let was = self
            .sup
            .get(id)
            .map(|i| (i.core().state(), i.core().is_waiting()));
        while let Some(input) = queue.pop() {
            if self.sup.get(id).is_none() {
                break;
            }
            let actions = self.sup.step(id, input, now);
            for action in actions {
                match action {
                    Action::Spawn => {
                        // A dependency that is not running holds the spawn back.
                        if let Some(reason) = self.blocked_by(id) {
                            queue.push(Input::Blocked { reason });
                            continue;
                        }
                        // A definition changed by a reload takes effect here, at the spawn.
                        let Some(spec) = self.sup.get_mut(id).map(Inst::spec_for_spawn) else {
                            continue;
                        };
                        match self.spawn(id, &spec, now) {
                            Ok(pid) => queue.push(Input::Spawned { pid }),
                            Err(e) if e.daemon => {
                                queue.push(Input::SpawnDeferred { reason: e.reason })
                            }
                            Err(e) => queue.push(Input::SpawnFailed { reason: e.reason }),
                        }
                    }
                    Action::Signal { pgid, signal } => {
                        if signal.0 == nix::libc::SIGKILL {
                            // The whole cgroup: what left the group dies with it.
                            self.kill_cgroup(id);
                        }
                        let reached = reap::signal_group_if_any(pgid, signal);
                        // Someone was there to stop: ends are coming (many at once in a
                        // `stop all`). A crashed leader's empty group reaches no one and
                        // leaves the sweeps' gap as it is.
                        if reached == Ok(true) {
                            self.sweeps.ends_coming();
                        }
                        match reached {
                            // The machine signals only to stop: a job stopped with SIGSTOP
                            // would sit on its stopsignal until SIGKILL, so wake it (as
                            // systemd does).
                            Ok(true) if signal.0 != nix::libc::SIGKILL => {
                                let _ = reap::signal_group_if_any(
                                    pgid,
                                    crate::config::Signal(nix::libc::SIGCONT),
                                );
                            }
                            Ok(true) => {}
                            Ok(false) => log::debug!(
                                "{}: process group {pgid} already empty for signal {}",
                                self.name(id),
                                signal.0
                            ),
                            Err(e) => log::warn!("{}: {e}", self.name(id)),
                        }
                    }
                    Action::CheckGroup { pgid } => {
                        if !reap::group_alive(pgid) {
                            // The group is gone; whatever escaped it goes too: killed with
                            // the cgroup (the stop ends once that is empty), or without one
                            // found by its tag (this turn, one /proc scan for every stop
                            // that ended).
                            match self.cgroup_holds_escapees(id) {
                                Some(true) => continue,
                                Some(false) => {}
                                None if !self.shutting_down => {
                                    let name = self.name(id).to_string();
                                    self.escape_scan.push(name);
                                }
                                None => {}
                            }
                            queue.push(Input::GroupEmpty);
                        }
                    }
                    Action::Log(event) => {
                        log::log!(event.level(), "{} {}", self.name(id), event);
                        self.clients.publish(id, event.to_string());
                        self.notice(id, &event, now);
                    }
                }
            }
        }
        self.state_dirty.push(id);
        self.clients.fed(id);
        let is = self
            .sup
            .get(id)
            .map(|i| (i.core().state(), i.core().is_waiting()));
        self.note_critical(id, was.map(|(state, _)| state));
        if is != was {
            // What depends on it is looked at again once this turn's inputs are in.
            self.order.changed.push(id);
        }
        // Down now: close its output files. `reap` drained the pipes before feeding the exit,
        // so every byte the leader wrote is already in them.
        if let Some(inst) = self.sup.get(id) {
            if inst.core().state().is_down() {
                self.logs.park(inst.core().name());
                self.cgroup_down(id);
            }
        }
    }

    /// Hand a logged event to the notifier, and arm its next deadline.
    fn notice(&mut self, id: InstId, event: &crate::core::event::Event, now: Instant) {
        let Some(inst) = self.sup.get(id) else {
            return;
        };
        let cx = super::notify::Context {
            spec: &self.settings.config.daemon.notify,
            outputs: &self.logs,
            pids: &mut self.pids,
            now,
        };
        if let Some(at) = self.notifier.notice(inst.core(), event, cx) {
            self.arm_logs(at, now);
        }
        self.listen_event(id, event);
    }

    fn name(&self, id: InstId) -> &str {
        self.sup.get(id).map_or("?", |i| i.core().name())
    }

    fn spawn(
        &mut self,
        id: InstId,
        spec: &ProgramSpec,
        now: Instant,
    ) -> Result<u32, super::spawn::SpawnError> {
        let Some(inst) = self.sup.get(id) else {
            return Err(String::from("instance is gone").into());
        };
        let name = inst.core().name().to_string();
        let num = inst.core().num();
        let mut plan = self.plan_outputs(spec, &name, now)?;
        let mut ready = self.prepare_readiness(id, spec)?;
        self.prepare_cgroup(id, spec, &mut ready.extras)?;
        // Not waiting for the exec: the status pipe reports it on the loop, so the next spawn
        // forks while this child is still loading its program.
        let child = Daemon::spawn_ready(
            &SpawnRequest {
                spec,
                name: &name,
                num,
                stdout: std::mem::replace(&mut plan.stdout, Stdio::Null),
                stderr: std::mem::replace(&mut plan.stderr, Stdio::Null),
            },
            &mut ready,
        )?;
        self.after_spawn(id, spec, ready, now);
        let pid = child.pid;
        let start_ticks = child.start_ticks;
        if let Some(fd) = child.exec_status {
            self.watch_exec(fd, id, pid, child.program);
        }
        // The files `tail` reads (stderr's is stdout's when they are merged), or the label of
        // the daemon's own stream.
        let paths = std::mem::take(&mut plan.paths);
        let mut captures = [None, None];
        let sinks = std::mem::take(&mut plan.sinks);
        for (i, ((fd, sink), path)) in [child.stdout, child.stderr]
            .into_iter()
            .zip(sinks)
            .zip(paths)
            .enumerate()
        {
            if let (Some(fd), Some(sink), Some(path)) = (fd, sink, path) {
                let capture = self.capture_for(&plan, i, fd, sink, &name);
                captures[i] = self.add_capture(capture, path, &name);
            }
        }
        self.pids.insert(pid, PidOwner::Leader(id));
        if let Some(inst) = self.sup.get_mut(id) {
            inst.captures = captures;
            // Known from the clock around the clone, most often; else from /proc.
            inst.start_ticks = start_ticks.or_else(|| state::proc_start_ticks(pid));
        }
        Ok(pid)
    }

    fn add_capture(&mut self, capture: Capture, path: PathBuf, instance: &str) -> Option<usize> {
        let source = Source::Capture(CaptureSource {
            capture,
            instance: instance.to_string(),
            path,
        });
        self.sources
            .add(source)
            .map_err(|e| log::error!("{instance}: unable to watch its output pipe: {e}"))
            .ok()
    }

    /// A heap entry came due. An entry that no longer matches its owner's deadline is stale
    /// and does nothing.
    fn timer(&mut self, key: TimerKey, at: Instant, now: Instant) -> Inputs {
        match key {
            TimerKey::Instance(id) => {
                if !self.sup.deadline_due(id, at) {
                    return Vec::new();
                }
                // A leader that ended but is not reaped yet (its SIGCHLD merged into
                // another's waits for a sweep, further apart with many children) ends before
                // its deadline counts: an exit before `starttime`, a stop before `stoptime`.
                let pid = self.sup.get(id).and_then(|i| i.core().pid());
                if let Some(pid) = pid.filter(|&p| self.pids.get(p) == Some(PidOwner::Leader(id))) {
                    if let Some((pid, status)) = reap::reap_pids(&[pid]).pop() {
                        let inputs = self.reaped(pid, status, now);
                        self.apply(inputs, now);
                        if !self.sup.deadline_due(id, at) {
                            return Vec::new();
                        }
                    }
                }
                return vec![(id, Input::Deadline)];
            }
            TimerKey::Tick(id) => return self.fire_tick(id, at),
            TimerKey::Health(id, which) => return self.fire_health(id, which, at, now),
            TimerKey::Client(slot) => {
                let expired = matches!(
                    self.sources.get(slot),
                    Some(Source::Client(c)) if c.deadline == Some(at) && !c.waiting
                );
                if expired {
                    self.release(slot);
                }
            }
            TimerKey::Logs => self.logs_due(now),
            TimerKey::Reap => {
                if self.sweeps.fire(at, now) {
                    let mut inputs = Vec::new();
                    let swept = reap::reap_all();
                    self.sweeps.found(swept.len());
                    for (pid, status) in swept {
                        inputs.extend(self.reaped(pid, status, now));
                    }
                    return inputs;
                }
            }
            TimerKey::Accept => {
                if self.acceptor.retry_due(at) {
                    self.accept(now);
                }
            }
            TimerKey::Http(slot) => self.http_timer(slot, at, now),
            TimerKey::Grace => self.grace_due(at, now),
            TimerKey::Watchdog => {
                if let Some(next) = self.systemd.watchdog_due(at, now) {
                    self.sup.push_timer(next, TimerKey::Watchdog);
                }
            }
            TimerKey::Listeners => self.listeners_due(at, now),
            TimerKey::Usage => self.usage_sweep_due(at, now),
        }
        Vec::new()
    }

    // ----- slots -----

    /// Take a source off the poll, and forget what it was to the rest of the daemon.
    fn release(&mut self, slot: usize) {
        match self.sources.remove(slot) {
            Some(Source::Capture(c)) => c.capture.release_sink(),
            Some(Source::Client(c)) => {
                self.clients.closed(slot, c.stream.is_some());
                drop(c);
                // The descriptor may be one the reserve lent: take it back before a spawn.
                let _ = self.acceptor.top_up();
            }
            Some(Source::Http(h)) => self.http_released(slot, h),
            Some(Source::Exec(_) | Source::Health(_) | Source::Listener(_)) | None => {}
        }
    }

    /// A source is ready (or was left hot last turn). Requests are answered from the state
    /// they leave, so `serve` feeds its instances itself; everything else returns its inputs.
    fn ready(&mut self, slot: usize, now: Instant) -> Inputs {
        match &self.sources.get(slot) {
            Some(Source::Capture(_)) => self.pump(slot, PUMP_BUDGET, now),
            Some(Source::Client(_)) => self.serve(slot, now),
            Some(Source::Exec(_)) => return self.exec_status(slot),
            Some(Source::Health(_)) => return self.health_ready(slot, now),
            Some(Source::Http(_)) => self.http_ready(slot, now),
            Some(Source::Listener(_)) => self.listener_writable(slot),
            None => {}
        }
        Vec::new()
    }

    fn watch_exec(&mut self, fd: OwnedFd, id: InstId, pid: u32, program: String) {
        let source = Source::Exec(ExecSource {
            fd,
            id,
            pid,
            program,
        });
        match self.sources.add(source) {
            Ok(slot) => {
                if let Some(inst) = self.sup.get_mut(id) {
                    inst.exec_slot = Some(slot);
                }
            }
            // Unwatched, an exec failure shows as an exit with code 127: less precise, still
            // a failed start.
            Err(e) => log::warn!("{}: unable to watch its exec status: {e}", self.name(id)),
        }
    }

    /// Read a child's exec report. A failed exec is fed as `SpawnFailed` with its reason, and
    /// the child (which exits 127) is then reaped without feeding its exit.
    fn exec_status(&mut self, slot: usize) -> Inputs {
        let Some(Source::Exec(e)) = self.sources.get(slot) else {
            return Vec::new();
        };
        let Some(result) = super::spawn::exec_result(&e.fd, &e.program) else {
            return Vec::new();
        };
        let (id, pid) = (e.id, e.pid);
        self.release(slot);
        if let Some(inst) = self.sup.get_mut(id) {
            if inst.exec_slot == Some(slot) {
                inst.exec_slot = None;
            }
        }
        if let Err(reason) = result {
            if self.pids.get(pid) == Some(PidOwner::Leader(id)) {
                self.pids.remove(pid);
                return vec![(id, Input::SpawnFailed { reason })];
            }
        }
        Vec::new()
    }

    // ----- child output -----

    fn pump(&mut self, slot: usize, budget: usize, now: Instant) {
        let Some(Source::Capture(c)) = self.sources.get_mut(slot) else {
            return;
        };
        match c.capture.pump(budget, now) {
            Ok(p) => {
                if p.bytes > 0 && self.clients.has_followers() {
                    let path = c.path.clone();
                    self.feed_followers(&path, now);
                }
                self.pumped(slot, &p, now);
                if p.eof {
                    self.release(slot);
                } else if p.more {
                    self.keep_hot(slot);
                }
            }
            Err(e) => {
                log::error!("{}: reading its output failed: {e}", c.instance);
                self.release(slot);
            }
        }
    }

    // ----- control clients -----

    fn accept(&mut self, now: Instant) {
        loop {
            match self
                .acceptor
                .next(self.clients.connected(), MAX_CLIENTS, now)
            {
                Accepted::Conn(conn) => {
                    let source = Source::Client(ClientSource {
                        conn,
                        deadline: None,
                        waiting: false,
                        stream: None,
                    });
                    match self.sources.add(source) {
                        Ok(slot) => {
                            self.clients.opened();
                            self.serve(slot, now);
                        }
                        Err(e) => {
                            log::error!("unable to watch a control connection: {e}");
                            let _ = self.acceptor.top_up();
                        }
                    }
                }
                Accepted::Done(retry) => {
                    if let Some(at) = retry {
                        self.sup.push_timer(at, TimerKey::Accept);
                    }
                    return;
                }
            }
        }
    }

    /// Read, answer, write: everything a ready client connection needs. Readiness is
    /// edge-triggered, so every complete request already read is answered now.
    fn serve(&mut self, slot: usize, now: Instant) {
        if let Some(Source::Client(c)) = self.sources.get_mut(slot) {
            if c.stream.is_some() {
                // A streaming client sends nothing more; reading only tells us it hung up.
                if c.conn.discard_input().is_err() || c.conn.read_closed {
                    self.release(slot);
                    return;
                }
                self.after_io(slot, now);
                return;
            }
        }
        // At most `CLIENT_FILLS` buffers a turn: a client that sends without pause is served
        // again next turn (like a hot capture pipe) rather than holding the loop.
        for _ in 0..CLIENT_FILLS {
            let more = match self.sources.get_mut(slot) {
                // Answers the client has not taken yet: read nothing more until it does (the
                // socket turning writable serves it again).
                Some(Source::Client(c)) if c.conn.pending_out() > OUT_HIGH_WATER => {
                    self.after_io(slot, now);
                    return;
                }
                Some(Source::Client(c)) if !c.waiting => match c.conn.fill() {
                    Ok(more) => more,
                    Err(e) => {
                        log::debug!("control connection error: {e}");
                        self.release(slot);
                        return;
                    }
                },
                Some(Source::Client(_)) => false,
                _ => return,
            };
            loop {
                let incoming = match self.sources.get_mut(slot) {
                    Some(Source::Client(c)) if !c.waiting => c.conn.next_request(),
                    _ => None,
                };
                let Some(incoming) = incoming else { break };
                let response = match incoming {
                    Incoming::Bad(r) => Some(Reply::Message(r)),
                    // Only a control connection gets rows: they are encoded for its buffer.
                    Incoming::Request(Request {
                        body: RequestBody::Status { names, rows: true },
                        ..
                    }) => Some(match self.select_or_all(&names) {
                        Ok(ids) => Reply::Line(self.status_rows(&ids, now)),
                        Err(e) => Reply::Message(*e),
                    }),
                    Incoming::Request(r) => self.handle(slot, r, now).map(Reply::Message),
                };
                let Some(Source::Client(c)) = self.sources.get_mut(slot) else {
                    return;
                };
                match response {
                    Some(Reply::Message(r)) => c.conn.send(&r),
                    Some(Reply::Line(line)) => c.conn.send_line(line),
                    None => {}
                }
                // Checked per answer: a client that sends requests faster than it reads
                // their answers must not grow the buffer within one turn either.
                if c.conn.pending_out() > OUT_HIGH_WATER {
                    let _ = c.conn.flush();
                    if c.conn.pending_out() > OUT_HIGH_WATER {
                        self.after_io(slot, now);
                        return;
                    }
                }
            }
            if !more {
                self.after_io(slot, now);
                return;
            }
        }
        self.keep_hot(slot);
        self.after_io(slot, now);
    }

    /// A source that stopped at its share of this turn with more to read: readiness is
    /// edge-triggered, so it is served again next turn without waiting for an event.
    pub(super) fn keep_hot(&mut self, slot: usize) {
        self.sources.keep_hot(slot);
    }

    /// Flush, then decide the connection's fate: close it, or give it a deadline.
    fn after_io(&mut self, slot: usize, now: Instant) {
        let Some(Source::Client(c)) = self.sources.get_mut(slot) else {
            return;
        };
        // A client that sees an outcome must find its events in the log already.
        log::logger().flush();
        let flushed = match c.conn.flush() {
            Ok(done) => done,
            Err(_) => {
                self.release(slot);
                return;
            }
        };
        let done = c.conn.closing || (c.conn.read_closed && !c.waiting);
        if (done && flushed) || c.conn.pending_out() > MAX_PENDING_OUT {
            self.release(slot);
            return;
        }
        if c.waiting {
            c.deadline = None;
            return;
        }
        // A started line must be finished within its deadline from its first byte: a client
        // dripping a byte at a time does not push it back.
        let at = match c.conn.partial_since(now) {
            // Unread lines held back until the client takes its answers are not slow ones.
            Some(_) if c.conn.pending_out() > OUT_HIGH_WATER => now + IDLE_CLIENT_DEADLINE,
            Some(since) => since + PARTIAL_REQUEST_DEADLINE,
            None => now + IDLE_CLIENT_DEADLINE,
        };
        if c.deadline != Some(at) {
            c.deadline = Some(at);
            self.sup.push_timer(at, TimerKey::Client(slot));
        }
    }

    fn reply(&mut self, slot: usize, response: Response, now: Instant) {
        match self.sources.get_mut(slot) {
            Some(Source::Client(c)) => {
                c.waiting = false;
                c.conn.send(&response);
            }
            Some(Source::Http(_)) => {
                self.peer_send(slot, &response, now);
                self.peer_flush(slot, now);
                return;
            }
            _ => return,
        }
        self.after_io(slot, now);
        // The client may have pipelined another request while this one waited.
        if matches!(self.sources.get(slot), Some(Source::Client(_))) {
            self.serve(slot, now);
        }
    }

    // ----- the peers of the control path -----
    //
    // A request comes from a control client (one JSON line) or an HTTP API connection; the
    // handlers below reach either through these, by slot.

    /// Send one answer (or, on a stream, the next message).
    pub(super) fn peer_send(&mut self, slot: usize, response: &Response, now: Instant) {
        match self.sources.get_mut(slot) {
            Some(Source::Client(c)) => c.conn.send(response),
            Some(Source::Http(super::http::HttpSource::Conn(c))) => c.send(response, now),
            _ => {}
        }
    }

    /// The request waits in the loop (a waiter, the shutdown): read nothing more meanwhile.
    fn peer_park(&mut self, slot: usize, now: Instant) {
        match self.sources.get_mut(slot) {
            Some(Source::Client(c)) => c.waiting = true,
            Some(Source::Http(super::http::HttpSource::Conn(c))) => c.park(now),
            _ => {}
        }
    }

    /// The connection streams from now on (after its first message was sent); false when it
    /// cannot (it is gone, or its first message was an answer that ended it).
    pub(super) fn peer_stream(&mut self, slot: usize, stream: follow::Stream) -> bool {
        match self.sources.get_mut(slot) {
            Some(Source::Client(c)) => {
                c.waiting = true;
                c.stream = Some(stream);
                true
            }
            Some(Source::Http(super::http::HttpSource::Conn(c))) if c.is_streaming() => {
                self.http.streams.insert(slot, stream);
                true
            }
            _ => false,
        }
    }

    pub(super) fn peer_stream_of(&self, slot: usize) -> Option<&follow::Stream> {
        match self.sources.get(slot) {
            Some(Source::Client(c)) => c.stream.as_ref(),
            Some(Source::Http(_)) => self.http.streams.get(&slot),
            _ => None,
        }
    }

    pub(super) fn peer_stream_mut(&mut self, slot: usize) -> Option<&mut follow::Stream> {
        match self.sources.get_mut(slot) {
            Some(Source::Client(c)) => c.stream.as_mut(),
            Some(Source::Http(_)) => self.http.streams.get_mut(&slot),
            _ => None,
        }
    }

    /// Write what was sent, and close or keep the connection.
    pub(super) fn peer_flush(&mut self, slot: usize, now: Instant) {
        match self.sources.get(slot) {
            Some(Source::Client(_)) => self.after_io(slot, now),
            Some(Source::Http(_)) => self.http_flush(slot, now),
            _ => {}
        }
    }

    // ----- requests -----

    /// The instances `names_` select. No names is an error: acting on everything takes an
    /// explicit `all`, as on the command line.
    fn select(&self, names_: &[String]) -> Result<Vec<InstId>, Box<Response>> {
        if names_.is_empty() {
            return Err(Box::new(Response::new(ResponseBody::Error {
                message: "no program or instance named: the request selects nothing".into(),
                hint: Some("name programs or instances, or `all` for every one".into()),
            })));
        }
        let ids = self.sup.ordered();
        let pairs: Vec<(&str, &str)> = ids
            .iter()
            .filter_map(|&id| self.sup.get(id))
            .map(|i| (i.core().program(), i.core().name()))
            .collect();
        match names::resolve(&pairs, &self.settings.config.groups, names_) {
            Ok(picked) => Ok(picked.into_iter().map(|i| ids[i]).collect()),
            Err(unknown) => Err(Box::new(Response::new(ResponseBody::Error {
                message: format!("{}: {}", api::UNKNOWN_NAME, unknown.join(", ")),
                hint: Some("`sup status` lists them".into()),
            }))),
        }
    }

    /// For requests that only look (`status`, `subscribe`): no names means every instance.
    fn select_or_all(&self, names_: &[String]) -> Result<Vec<InstId>, Box<Response>> {
        if names_.is_empty() {
            return Ok(self.sup.ordered());
        }
        self.select(names_)
    }

    fn handle(&mut self, slot: usize, request: Request, now: Instant) -> Option<Response> {
        let resp = match request.body {
            // `rows` is for the control socket (see `serve`); anyone else gets the list.
            RequestBody::Status { names, rows: _ } => match self.select_or_all(&names) {
                Ok(ids) => Response::new(ResponseBody::Status {
                    instances: self.status_list(&ids, now),
                    daemon: Some(self.info(now)),
                }),
                Err(e) => *e,
            },
            RequestBody::Start { names, wait } => {
                return self.act(slot, &names, Goal::Up, wait, now);
            }
            RequestBody::Stop { names, wait } => {
                return self.act(slot, &names, Goal::Down, wait, now);
            }
            RequestBody::Restart {
                names,
                wait,
                rolling,
            } => {
                if rolling {
                    return self.act_rolling(slot, &names, wait, now);
                }
                return self.act(slot, &names, Goal::Restarted, wait, now);
            }
            RequestBody::Signal {
                signal,
                names,
                target,
            } => self.signal(&signal, &names, target),
            RequestBody::Pid { name } => self.pid_answer(name),
            RequestBody::Shutdown => {
                if !self.shutting_down {
                    log::info!("shutdown requested: stopping every job");
                    self.begin_shutdown(now);
                }
                self.clients.wait_for_shutdown(slot);
                self.peer_park(slot, now);
                return None;
            }
            RequestBody::Reload { dry_run } => {
                if self.shutting_down {
                    Response::error(api::SHUTTING_DOWN)
                } else {
                    return self.reload(dry_run, Some(slot), now);
                }
            }
            RequestBody::Tail {
                name,
                lines,
                stderr,
                follow,
            } => return self.tail(slot, &name, lines, stderr, follow, now),
            RequestBody::EventLog { lines, follow } => {
                return self.event_log(slot, lines, follow, now)
            }
            RequestBody::Clear { names } => self.clear(&names, now),
            RequestBody::Add { names } => return self.reload_some(&names, true, slot, now),
            RequestBody::Remove { names } => return self.reload_some(&names, false, slot, now),
            RequestBody::Logreopen => self.logreopen_response(now),
            RequestBody::Subscribe { names } => return self.subscribe(slot, names, now),
        };
        Some(resp)
    }

    fn info(&self, now: Instant) -> DaemonInfo {
        DaemonInfo {
            pid: std::process::id(),
            version: env!("CARGO_PKG_VERSION").to_string(),
            uptime_s: (now.saturating_duration_since(self.started).as_secs_f64() * 10.0).round()
                / 10.0,
            groups: self.settings.config.groups.clone(),
        }
    }

    /// One instance for `status`; `None` for a slot that holds no instance.
    fn status_of(&self, id: InstId, now: Instant) -> Option<InstanceStatus> {
        let program = self.sup.get(id)?.core().program().to_string();
        Some(self.status_row(id, now)?.into_status(program))
    }

    /// What `status` says of one instance, borrowing its strings: the one place its figures
    /// are made, for both the `status` answer and `status_rows`.
    fn status_row(&self, id: InstId, now: Instant) -> Option<StatusRow<'_>> {
        let inst = self.sup.get(id)?;
        let c = inst.core();
        let state = c.state();
        let secs = |d: Duration| (d.as_secs_f64() * 10.0).round() / 10.0;
        let uptime = match state {
            State::Starting | State::Running | State::Stopping => c
                .started_at()
                .map(|s| secs(now.saturating_duration_since(s))),
            _ => None,
        };
        let next_restart_in = match state {
            State::Backoff => c.deadline().map(|d| secs(d.saturating_duration_since(now))),
            _ => None,
        };
        let usage = self.usage_of(id, now);
        let owned = |s: Option<String>| s.map(|s| Text(Cow::Owned(s)));
        Some(StatusRow {
            name: Text::from(c.name()),
            state: Text::from(state.as_str()),
            pid: c.pid(),
            restarts: c.restarts(),
            last_exit: c.last_exit(),
            uptime_s: uptime,
            next_run: owned(self.next_run_of(id, now)),
            next_restart_in,
            reason: c.last_error().map(Text::from),
            history: Cow::Owned(self.history_of(id, now)),
            health: self.health_status(id).map(|h| Text::from(h.as_str())),
            cpu_percent: usage.0,
            rss_bytes: usage.1,
            exit_reason: owned(self.exit_reason(id)),
            log_error: owned(self.logs.log_error(c.name())),
        })
    }

    fn act(
        &mut self,
        slot: usize,
        names_: &[String],
        goal: Goal,
        wait: bool,
        now: Instant,
    ) -> Option<Response> {
        let ids = match self.select(names_) {
            Ok(ids) => ids,
            Err(e) => return Some(*e),
        };
        if self.shutting_down && goal != Goal::Down {
            return Some(Response::error(api::SHUTTING_DOWN));
        }
        let mut items = Vec::with_capacity(ids.len());
        let mut intent_changed = false;
        let mut stops = Vec::new();
        for id in ids {
            let Some(inst) = self.sup.get(id) else {
                continue;
            };
            let name = inst.core().name().to_string();
            let before = inst.core().state();
            let wanted_up = inst.core().want_up();
            let already = match goal {
                Goal::Up => matches!(before, State::Running).then_some("already running"),
                Goal::Down => before.is_down().then_some("not running"),
                Goal::Restarted => None,
            };
            let input = match goal {
                Goal::Up => Input::Start,
                Goal::Down => Input::Stop,
                Goal::Restarted => Input::Restart,
            };
            // Even a no-op records the operator's intent (a stop on an exited job keeps it
            // down across daemon restarts). Stops go in reverse dependency order; the intent
            // is recorded now even when the stop waits for dependents to go first.
            self.forget_holds(id);
            if goal == Goal::Down {
                self.apply(vec![(id, Input::StayDown)], now);
                stops.push(id);
            } else {
                self.apply(vec![(id, input)], now);
            }
            intent_changed |= self
                .sup
                .get(id)
                .is_some_and(|i| i.core().want_up() != wanted_up);
            let outcome = already.map(|m| Outcome {
                name: name.clone(),
                ok: true,
                message: m.into(),
            });
            items.push(Item {
                id,
                name,
                goal,
                outcome,
            });
        }
        let inputs = self.stop_in_order(&stops, Input::Stop);
        self.apply(inputs, now);
        if intent_changed {
            // What an operator decided must survive the daemon being killed the moment after
            // it answered: written now, not with the coalesced churn.
            self.save_state();
        }
        if !wait {
            for item in &mut items {
                if item.outcome.is_none() {
                    let state = self
                        .sup
                        .get(item.id)
                        .map_or("gone", |i| i.core().state().as_str());
                    item.outcome = Some(Outcome {
                        name: item.name.clone(),
                        ok: true,
                        message: format!("{state} (not waiting)"),
                    });
                }
            }
        }
        self.wait(slot, items, Answer::Outcomes, now)
    }

    /// Answer now if every item is settled, else park the client until they are.
    fn wait(
        &mut self,
        slot: usize,
        items: Vec<Item>,
        answer: Answer,
        now: Instant,
    ) -> Option<Response> {
        let mut waiter = Waiter::new(slot, items, answer);
        waiter.settle_all(|i| self.outcome(i.id, &i.name, i.goal));
        if waiter.done() {
            return Some(waiter.into_response());
        }
        self.peer_park(slot, now);
        self.clients.park(waiter);
        None
    }

    fn outcome(&self, id: InstId, name: &str, goal: Goal) -> Option<Outcome> {
        let Some(inst) = self.sup.get(id) else {
            return Some(match goal {
                Goal::Down => ok(name, "stopped"),
                Goal::Up | Goal::Restarted => fail(name, "removed by a reload"),
            });
        };
        if let Some(held) = self.held_outcome(id, name) {
            return held;
        }
        let c = inst.core();
        let reason = || c.last_error().map(str::to_string).unwrap_or_default();
        match (goal, c.state()) {
            (Goal::Up, State::Running) => Some(ok(name, "started")),
            (Goal::Restarted, State::Running) => Some(ok(name, "restarted")),
            (Goal::Up | Goal::Restarted, State::Starting | State::Stopping) => None,
            (Goal::Up | Goal::Restarted, State::Backoff) => {
                Some(fail(name, &format!("failed to start: {}", reason())))
            }
            (Goal::Up | Goal::Restarted, State::Fatal) => {
                Some(fail(name, &format!("fatal: {}", reason())))
            }
            (Goal::Up | Goal::Restarted, State::Exited) => Some(fail(
                name,
                &format!(
                    "exited with code {}",
                    c.last_exit().map_or("?".into(), |x| x.to_string())
                ),
            )),
            (Goal::Up | Goal::Restarted, State::Stopped) => {
                Some(fail(name, "stopped before it was running"))
            }
            (Goal::Up | Goal::Restarted, State::Scheduled) => Some(ok(name, "scheduled")),
            (Goal::Down, s) if s.is_down() => Some(ok(name, "stopped")),
            (Goal::Down, _) => None,
        }
    }

    /// Answer the waiters whose items have all settled. Only the items of instances fed
    /// since the last call are looked at (`Waiter::settle_fed`), unless held stops or rolling
    /// restarts, which decide outcomes too, are under way.
    fn settle_waiters(&mut self, now: Instant) {
        let fed = self.clients.take_fed();
        let waiters = self.clients.take_waiters();
        if waiters.is_empty() {
            return;
        }
        let all = self.order.holds_any();
        let mut pending = Vec::new();
        for mut w in waiters {
            let outcome = |i: &Item| self.outcome(i.id, &i.name, i.goal);
            match all {
                true => w.settle_all(outcome),
                false => w.settle_fed(&fed, outcome),
            }
            if w.done() {
                let slot = w.slot;
                self.reply(slot, w.into_response(), now);
            } else {
                pending.push(w);
            }
        }
        // A reply may have let a client's next request park a new waiter meanwhile.
        self.clients.requeue(pending);
    }

    /// `sup signal`: each instance's group, or its leader alone (`--main`, or the job's
    /// `signal_target: main` when the request does not say).
    fn signal(&mut self, signal: &str, names_: &[String], target: Option<WireTarget>) -> Response {
        let Some(sig) = crate::config::signal::parse(signal) else {
            return Response::new(ResponseBody::Error {
                message: format!("unknown signal {signal:?}"),
                hint: Some(
                    "use a name such as TERM, HUP, USR1 (with or without SIG) or a number".into(),
                ),
            });
        };
        let ids = match self.select(names_) {
            Ok(ids) => ids,
            Err(e) => return *e,
        };
        let mut out = Vec::new();
        for id in ids {
            let Some(inst) = self.sup.get(id) else {
                continue;
            };
            let c = inst.core();
            let main = match target {
                Some(WireTarget::Main) => true,
                Some(WireTarget::Group) => false,
                None => inst.spec.signal_target == SignalTarget::Main,
            };
            let sig_name = crate::config::signal::name(sig);
            // The leader is our child until we reap it, so its pid cannot be reused meanwhile.
            let sent = match c.pid() {
                Some(pid) if main => reap::signal_leader(pid, sig).map(|()| {
                    (
                        format!("sent {sig_name} to its leader, pid {pid}"),
                        format!("sent {sig_name} to the leader (pid {pid}) only"),
                    )
                }),
                Some(pid) => reap::signal_group(pid, sig).map(|()| {
                    (
                        format!("sent {sig_name} to its group"),
                        format!("sent {sig_name}"),
                    )
                }),
                None => Err("not running".to_string()),
            };
            let outcome = match sent {
                Ok((logged, message)) => {
                    log::info!("{} signalled: {logged}", c.name());
                    Outcome {
                        name: c.name().to_string(),
                        ok: true,
                        message,
                    }
                }
                Err(e) => fail(c.name(), &e),
            };
            out.push(outcome);
        }
        Response::new(ResponseBody::Outcomes { outcomes: out })
    }

    fn pid_answer(&self, name: Option<String>) -> Response {
        let Some(name) = name else {
            return Response::new(ResponseBody::Pids {
                daemon: Some(std::process::id()),
                pids: Vec::new(),
            });
        };
        match self.select(std::slice::from_ref(&name)) {
            Ok(ids) => Response::new(ResponseBody::Pids {
                daemon: Some(std::process::id()),
                pids: ids
                    .iter()
                    .filter_map(|&id| self.sup.get(id))
                    .map(|i| (i.core().name().to_string(), i.core().pid()))
                    .collect(),
            }),
            Err(e) => *e,
        }
    }

    // ----- shutdown and state -----

    fn begin_shutdown(&mut self, now: Instant) {
        self.shutting_down = true;
        self.arm_grace(now);
        self.systemd.stopping();
        // Stop in reverse display order; every stop runs in parallel with its own stoptime,
        // except that dependents are down before what they depend on is stopped.
        let ids: Vec<InstId> = self.sup.ordered().into_iter().rev().collect();
        let inputs = self.stop_in_order(&ids, Input::Shutdown);
        self.apply(inputs, now);
    }

    fn all_down(&self) -> bool {
        self.sup.iter().all(|(_, i)| i.core().state().is_down())
    }

    fn finish_shutdown(&mut self, now: Instant) {
        // Drain what the last children wrote.
        for slot in self.sources.captures() {
            self.pump(slot, usize::MAX, now);
        }
        self.save_state();
        let waiters = self.clients.take_shutdown_waiters();
        let done = Response::new(ResponseBody::Done {
            message: "every job stopped; the daemon exits".into(),
        });
        for slot in waiters {
            match self.sources.get_mut(slot) {
                Some(Source::Client(c)) => {
                    c.conn.send(&done);
                    let _ = c.conn.flush();
                }
                // As far as the socket takes it at once: the daemon exits next.
                Some(Source::Http(_)) => self.peer_send(slot, &done, now),
                _ => {}
            }
        }
        self.notifier.stop_senders();
        if let Some(tag) = super::spawn::daemon_tag() {
            let strays = state::kill_tagged(tag, None, &[], &[]);
            if !strays.is_empty() {
                log::warn!(
                    "killed {} process(es) that had left their jobs' groups: {strays:?}",
                    strays.len()
                );
            }
        }
        self.settings.cgroups.teardown();
        let _ = std::fs::remove_file(&self.settings.socket);
        let status = self.init.status();
        log::info!(
            "sup {} shutdown: {}, exiting status={status} pid={} config={}",
            env!("CARGO_PKG_VERSION"),
            if self.all_down() {
                "every job stopped"
            } else {
                "some jobs would not die"
            },
            std::process::id(),
            self.settings.config.source.display()
        );
        log::logger().flush();
    }

    /// SIGKILL what escaped the groups of the instances whose stop ended this turn (see
    /// `state::kill_tagged`): a `setsid` child no group signal reaches.
    fn kill_escapees(&mut self) {
        if self.escape_scan.is_empty() {
            return;
        }
        let names = std::mem::take(&mut self.escape_scan);
        let Some(tag) = super::spawn::daemon_tag() else {
            return;
        };
        // A restart has already spawned the new process under the same name: its group is
        // spared, and so is what it started (it has exec'd by now, and may have sent an
        // escapee of its own out of the group).
        let live: Vec<u32> = self
            .sup
            .iter()
            .filter_map(|(_, i)| i.core().pgid())
            .collect();
        let fresh: Vec<(&str, u64)> = self
            .sup
            .iter()
            .map(|(_, i)| i)
            .filter(|i| i.core().pgid().is_some() && names.iter().any(|n| n == i.core().name()))
            .filter_map(|i| Some((i.core().name(), i.start_ticks?)))
            .collect();
        let killed = state::kill_tagged(tag, Some(&names), &live, &fresh);
        if !killed.is_empty() {
            log::warn!(
                "killed {} process(es) that had left the process group of {}: {killed:?}",
                killed.len(),
                names.join(", ")
            );
        }
    }

    /// Record the instances changed since the last call: one journal line each (O(1) per
    /// change, whatever the number of instances), or a snapshot of all of them when the
    /// journal asks for one (at start, and once it is about twice as long as the snapshot).
    ///
    /// Called at the end of every turn (and at once for operator intent): a group spawned in
    /// a turn is recorded, write(2) returned, before the loop polls again, so a daemon killed
    /// from then on leaves it to the next one. Only a kill within the turn of the spawn
    /// leaves it unrecorded; its leader dies with us (parent-death signal), and the next
    /// daemon finds the rest by their `SUP_DAEMON` tag.
    fn save_state(&mut self) {
        let result = if self.journal.wants_compaction() {
            self.state_dirty.clear();
            // Every instance, retiring ones included: if the daemon dies while they stop, the
            // next one must still find and clean up their groups.
            let all: Vec<state::InstanceState> =
                self.sup.iter().map(|(_, i)| record_of(i)).collect();
            self.journal.compact(&all)
        } else {
            let mut dirty = std::mem::take(&mut self.state_dirty);
            dirty.sort_unstable();
            dirty.dedup();
            let records: Vec<state::InstanceState> = dirty
                .iter()
                .filter_map(|&id| self.sup.get(id))
                .map(record_of)
                .collect();
            dirty.clear();
            self.state_dirty = dirty;
            self.journal.record_all(&records)
        };
        self.state_failed(result);
    }

    /// `id` retires (a reload removed it): its record moves to the retiring key, written
    /// before the tombstone of the live key, so its group is never unrecorded; a new instance
    /// of the same name then records under the live key.
    pub(super) fn state_retire(&mut self, id: InstId) {
        let Some(inst) = self.sup.get(id) else {
            return;
        };
        let record = record_of(inst);
        let result = self
            .journal
            .record(&record)
            .and_then(|()| self.journal.remove(&record.name, false));
        self.state_failed(result);
    }

    /// A retired instance is down and its slot freed: the next daemon forgets it.
    pub(super) fn state_forget(&mut self, name: &str) {
        let result = self.journal.remove(name, true);
        self.state_failed(result);
    }

    fn state_failed(&self, result: io::Result<()>) {
        if let Err(e) = result {
            log::warn!(
                "unable to write the state file {} or its journal: {e}",
                self.settings.state_path.display()
            );
        }
    }
}

/// What the state file records of an instance.
fn record_of(i: &Inst) -> state::InstanceState {
    state::InstanceState {
        name: i.core().name().to_string(),
        pgid: i.core().pgid(),
        start_ticks: i.start_ticks,
        restarts: i.core().restarts(),
        want_up: i.core().want_up(),
        last_tick: scheduling::last_tick(i.core()),
        retiring: i.is_retiring(),
    }
}

fn fail(name: &str, message: &str) -> Outcome {
    Outcome {
        name: name.to_string(),
        ok: false,
        message: message.to_string(),
    }
}

fn ok(name: &str, message: &str) -> Outcome {
    Outcome {
        name: name.to_string(),
        ok: true,
        message: message.to_string(),
    }
}
