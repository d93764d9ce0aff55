//! The life of one instance as a pure state machine: `step(spec, now, input) -> actions`.
//!
//! No syscalls, no clock: the loop passes `now` in and carries the actions out. Every
//! (phase, input) pair is an arm of one exhaustive `match` in `transition`, in the order of
//! the table below, so "nothing to do" is stated too.
//!
//! # Phases
//!
//! | phase | `status` | process | deadline |
//! |---|---|---|---|
//! | `Stopped`, `Exited`, `Fatal` | the same | none | none |
//! | `Scheduled` | scheduled | none | none (the next tick is `tick_at`) |
//! | `Waiting` | starting | none: held back, a dependency does not meet its condition | none |
//! | `Spawning` | starting | asked for, no pid yet | none |
//! | `Starting` | starting | the leader | `starttime`, or `ready_timeout` with `ready` |
//! | `Running` | running | the leader | none |
//! | `Backoff` | backoff | none | the retry |
//! | `Stopping` | stopping | until the group is empty | SIGKILL, its resend, or a group check |
//!
//! `Stopping { kill, leader_gone, then }` says where SIGKILL is (`Term { kill_at }`, due at
//! the end of `stoptime`, or `Killed`), whether the leader was reaped, and what follows once
//! the group is empty: `Rest` (stopped), `Start` (a restart, a start during the stop, a
//! fault, `overlap: kill`) or `FailStart(reason)` (never ready, or failed its checks).
//!
//! What only a scheduled job has (the armed ticker, `tick_at`, the history of runs, an arm
//! pending after a start, a queued run, the last tick a previous daemon recorded) lives in
//! `Kind::Scheduled`; a plain job carries none of it.
//!
//! # Late inputs
//!
//! `Ready`, `Fault`, `Unblocked` and `Deadline` come from sockets and timers that may lag
//! behind the state (a datagram sent before an exit, a deadline that moved since it was
//! armed). `step` drops them, before the table, where they no longer apply; they change
//! nothing:
//!
//! - `Ready` applies only to `Starting` with a `ready` other than `starttime` (a stray READY
//!   does not cut `starttime` short; READY=1 again while running is nothing);
//! - `Fault` only to `Starting` and `Running`;
//! - `Unblocked` only to `Waiting`;
//! - `Deadline` only once the armed deadline has come (an early or stale one does nothing, so
//!   SIGKILL is resent only once a second).
//!
//! # The table
//!
//! In every phase: `StayDown` records the intent (`want_up` false) and changes nothing else
//! (an operator stop that waits for its dependents; the `Stop` comes later); `Reschedule`
//! drops the armed schedule so the next `Tick` (fed at once) arms the new one; `Tick` is in
//! the next section. "Fresh" means the failed starts and the crash streak start over.
//!
//! | phase | input | next phase | actions, and why |
//! |---|---|---|---|
//! | stopped, exited, fatal | start, restart | spawning | `Spawn`, fresh: an operator asked, and a `fatal` job gets its full `startretries` again; a scheduled job's schedule is armed at the next tick |
//! | stopped, exited, fatal | stop | the same | the intent is recorded; the schedule is dropped |
//! | stopped, exited, fatal | shutdown | the same | the schedule is dropped |
//! | scheduled | start, restart | spawning | `Spawn`, fresh: `sup start` runs it now; the schedule does not move |
//! | scheduled | stop, shutdown | stopped | log `stopped`; the schedule is dropped |
//! | waiting | start, restart | waiting | the intent is recorded |
//! | waiting | stop, shutdown | stopped | log `stopped`, the reason cleared: nothing was spawned |
//! | waiting | blocked | waiting | a new reason is logged and shown; the same one again is not |
//! | waiting | unblocked | spawning | `Spawn`: every dependency meets its condition now |
//! | spawning | start | spawning | the intent is recorded |
//! | spawning | stop, restart, shutdown | stopped | log `stopped`: there is nothing to signal (a restart, too, leaves it stopped) |
//! | spawning | spawned | starting | log `spawned`; deadline at `ready_timeout` with a `ready` other than `starttime`, else at `starttime`; running at once (log `running`) when that is 0 or the job is scheduled: a run that ends quickly is a normal run |
//! | spawning | spawn failed | backoff, fatal, scheduled | log it; a scheduled job: a failed run in the history, and the next tick is the retry; else a failed start |
//! | spawning | spawn deferred | backoff | log it; 100 ms, doubling to 5 s; no `startretries` spent and not counted in `restarts`: the daemon could not fork for want of its own resources, which says nothing about the job |
//! | spawning | blocked | waiting | log `waiting`, the reason shown: the loop answers a spawn this way while a dependency does not meet its condition |
//! | starting, running | start | the same | the intent is recorded |
//! | starting, running | stop, shutdown | stopping (`Rest`) | log `stopping`, `stopsignal` to the group, deadline at `stoptime`; the schedule is dropped (an operator stop holds until a start) |
//! | starting, running | restart | stopping (`Start`) | the same, the schedule kept; not counted in `restarts` |
//! | starting | spawn failed | as spawning + spawn failed | forked, but the program could not be executed (the loop learns that after the fork, and reaps the child itself) |
//! | starting | exited | backoff, fatal | log the exit (not expected, whatever its code), SIGKILL to what it left in its group; a failed start: it never came up |
//! | starting | deadline | running | log `running`: up for `starttime`; the failed starts reset |
//! | starting (`ready`) | deadline | stopping (`FailStart`) | log the fault "not ready within ready_timeout", then stop it as above; like systemd's TimeoutStartSec |
//! | starting | ready | running | log `running`: the program says it is ready, not the clock |
//! | starting | fault | stopping (`FailStart`) | log the fault (a check failed `retries` times), stop it |
//! | running | exited | exited, spawning, backoff, scheduled | log the exit (expected per `exitcodes`), SIGKILL to what it left in its group (an orphan of a dead job would hold ports and files); then per `autorestart`: the first crash after a stable run restarts at once, further ones back off exponentially (see `backoff`), both counted in `restarts`; no restart: exited, or scheduled for a scheduled job (with a history entry); a run queued meanwhile starts at once |
//! | running | fault | stopping (`Start`) | log the fault (a missed watchdog, an unhealthy check, a memory or CPU rule), counted in `restarts` |
//! | backoff | start, restart | spawning | `Spawn`; the failed starts reset |
//! | backoff | stop, shutdown | stopped | log `stopped`: there is no process to signal |
//! | backoff | deadline | spawning | `Spawn`, counted in `restarts` (a retry of a deferred spawn is the same start, not counted) |
//! | stopping | start, restart | stopping (`Start`) | the intent is recorded |
//! | stopping | stop, shutdown | stopping (`Rest`) | the start that was to follow is dropped, and the schedule |
//! | stopping, leader there | exited | stopping, leader gone | log the exit (expected), `CheckGroup`; deadline at the next check (20 ms), never after the kill time, never in the past (the exit may be reported after `kill_at` passed) |
//! | stopping, leader there | spawn failed | as exited (code 127) | stopped before its exec failed: the process it would have been is gone |
//! | stopping (`Term`), leader there | deadline | stopping (`Killed`) | SIGKILL to the group, log `killed`; deadline in 1 s |
//! | stopping (`Term`), leader gone | deadline | the same, or `Killed` at `kill_at` | `CheckGroup` (before it: SIGKILL and `killed` once `kill_at` came); deadline at the next check, never after the kill time: stragglers get the rest of `stoptime` |
//! | stopping (`Killed`), leader there | deadline | the same | SIGKILL again, in 1 s again (a process in uninterruptible sleep) |
//! | stopping (`Killed`), leader gone | deadline | the same | `CheckGroup`, again in 20 ms |
//! | stopping, leader gone | group empty | per `then` | log `stopped`; `Rest`: stopped (or a queued run: spawning); `Start`: spawning, fresh; `FailStart`: a failed start. Nothing the job started outlives a stop |
//! | stopping, leader there | group empty | the same | nothing: the leader's exit comes first |
//!
//! A failed start backs off with a growing delay (1 s, 2 s, 4 s, …), or is fatal once more
//! than `startretries` starts failed in a row: retrying fast would only spin.
//!
//! Every other pair cannot happen: a spawn result with no spawn asked for (or a second pid,
//! which would leave a process nobody watches), an exit with no leader, a group check
//! outside a stop, `Blocked` anywhere but `Spawning`. Each is a `bug` event, and the instance
//! is left exactly as it was; the machine never panics.
//!
//! # Schedules
//!
//! A scheduled job (a `schedule` in the spec) is fed `Tick` when `tick_at` comes, with the
//! wall clock and a random roll for jitter (the arithmetic is `schedule`'s), in any phase:
//!
//! - no armed schedule: armed when the job is stopped and wanted up (the loop arms every
//!   scheduled job this way at start-up: stopped → scheduled), or when a start asked for it;
//!   `first_run: now`, or a missed tick with `catchup: once`, runs at once. A schedule that
//!   cannot be armed is fatal.
//! - a tick that is not due (early, a cron check-in, a clock set back) does nothing but re-arm.
//! - a missed tick (clock jump, suspend, downtime) is logged, and runs once with
//!   `catchup: once`.
//! - a due tick in scheduled, stopped, exited, fatal or backoff (an `autorestart` retry
//!   waiting) → spawning, fresh: that is what the schedule is for.
//! - a due tick in spawning, starting or running: the previous run is still going, so
//!   `overlap` decides: skip (log `skipped`), queue (one more run when it ends; more ticks
//!   meanwhile are skipped), or kill (log `replacing`, then stopping (`Start`)).
//! - a due tick in waiting or stopping → log `skipped` (a stop-then-start is under way).
//! - stop and shutdown drop the schedule: an operator stop holds until a start, and nothing
//!   new starts while the daemon stops.
//! - a run that ends (exits, or could not be spawned) adds an entry to the history, at most
//!   `HISTORY`.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};

use super::backoff;
use super::event::Event;
use super::schedule::{self, Clocks, Ticker};
use crate::config::{AutoRestart, Overlap, ProgramSpec, Ready, Signal};

pub const SIGKILL: Signal = Signal(9);

/// How often a stop re-checks a group whose leader is gone but which still has members. Only
/// during such a stop; an idle daemon has no deadline at all.
const GROUP_RECHECK: Duration = Duration::from_millis(20);
/// After SIGKILL, how long before sending it again (a process in uninterruptible sleep).
const KILL_RESEND: Duration = Duration::from_secs(1);
/// How many ended runs of a scheduled job are kept for `status`.
pub const HISTORY: usize = 10;

/// One ended run of a scheduled job.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RunRecord {
    pub started: Instant,
    pub duration: Duration,
    /// `last_exit`, or `None` when it could not be spawned.
    pub exit: Option<i32>,
}

/// The public states, as `status` and the README name them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum State {
    Stopped,
    Starting,
    Running,
    Backoff,
    Stopping,
    Exited,
    Fatal,
    Scheduled,
}

impl State {
    pub fn as_str(self) -> &'static str {
        match self {
            State::Stopped => "stopped",
            State::Starting => "starting",
            State::Running => "running",
            State::Backoff => "backoff",
            State::Stopping => "stopping",
            State::Exited => "exited",
            State::Fatal => "fatal",
            State::Scheduled => "scheduled",
        }
    }

    /// States with no process and nothing pending: a stop has nothing left to do.
    pub fn is_down(self) -> bool {
        matches!(
            self,
            State::Stopped | State::Exited | State::Fatal | State::Scheduled
        )
    }
}

/// How a process ended, as `waitpid` reported it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExitStatus {
    Code(i32),
    Signaled(i32),
}

impl ExitStatus {
    /// `last_exit` as `status` shows it: the code, or 128 + the signal number.
    pub fn as_last_exit(self) -> i32 {
        match self {
            ExitStatus::Code(c) => c,
            ExitStatus::Signaled(s) => 128 + s,
        }
    }
}

/// Everything that can happen to an instance.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Input {
    /// An operator (or autostart) wants it up.
    Start,
    /// An operator wants it down; remembered across daemon restarts.
    Stop,
    /// Stop, then start again. Not counted in `restarts`.
    Restart,
    /// The daemon is shutting down or the program was removed: stop, but keep the intent.
    Shutdown,
    Spawned {
        pid: u32,
    },
    SpawnFailed {
        reason: String,
    },
    /// The daemon could not fork for want of its own resources (EAGAIN, ENOMEM, descriptors):
    /// not the job's failure, so retried with a short backoff that spends no `startretries`.
    SpawnDeferred {
        reason: String,
    },
    Exited(ExitStatus),
    /// `kill(-pgid, 0)` found nobody left in the group.
    GroupEmpty,
    /// The instance's deadline has come.
    Deadline,
    /// `tick_at` has come (or a scheduled job is to be armed): the wall clock, read with the
    /// `now` of the step, and a random number for jitter.
    Tick {
        wall: DateTime<Utc>,
        roll: u64,
    },
    /// The program said it is ready (`READY=1`, a newline on its fd, a first passing check).
    Ready,
    /// Hung or sick (a missed watchdog, an unhealthy check, a memory or CPU rule): restart it.
    Fault {
        reason: String,
    },
    /// The spawn just asked for is held back: a dependency does not meet its condition.
    Blocked {
        reason: String,
    },
    /// Every dependency meets its condition: a held spawn may go ahead.
    Unblocked,
    /// An operator asked for it to be down: recorded now, while the stop itself waits for
    /// its dependents (it comes as `Stop` later). Nothing else changes.
    StayDown,
    /// A reload changed the schedule: the armed one is dropped, and the next `Tick` (due at
    /// once) arms the new one.
    Reschedule,
}

/// What the loop must do for the instance.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Spawn the program, then feed back `Spawned` or `SpawnFailed` before anything else.
    Spawn,
    /// Send a signal to the whole process group.
    Signal {
        pgid: u32,
        signal: Signal,
    },
    /// Feed back `GroupEmpty` if the group has no member left.
    CheckGroup {
        pgid: u32,
    },
    Log(Event),
}

/// Where an instance is; the module doc has one row per (phase, input).
#[derive(Debug, Clone, PartialEq, Eq)]
enum Phase {
    Stopped,
    Exited,
    Fatal,
    /// A scheduled job waiting for its next tick.
    Scheduled,
    /// Wants to start, held back until its dependencies are running (shown as `starting`).
    Waiting,
    /// A spawn was asked for and no pid has come back yet (shown as `starting`).
    Spawning,
    /// The leader runs; `starttime` or readiness is not there yet.
    Starting,
    Running,
    /// No process; a retry is due at the deadline.
    Backoff,
    /// The stop signal was sent; over once the leader is reaped and the group is empty.
    Stopping {
        kill: Kill,
        /// The leader was reaped; the group may still have members.
        leader_gone: bool,
        /// What follows once the group is empty.
        then: Then,
    },
}

/// Where a stop is with SIGKILL.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kill {
    /// Only the stop signal so far; SIGKILL is due at `kill_at` (the end of `stoptime`).
    Term { kill_at: Instant },
    /// SIGKILL was sent (and is resent once a second while the leader lives).
    Killed,
}

/// What a stop leads to once the group is empty.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Then {
    /// Stopped (or, for a scheduled job with a queued run, that run).
    Rest,
    /// Started again: a restart, a start that came during the stop, a fault, `overlap: kill`.
    Start,
    /// A failed start with this reason: it never became ready, or failed its checks.
    FailStart(String),
}

/// One instance (`web:0`) of a program.
#[derive(Debug, Clone)]
pub struct Instance {
    name: String,
    program: String,
    num: u32,
    phase: Phase,
    /// The live leader's pid (it is also the process group id).
    pid: Option<u32>,
    /// The group to signal while stopping: outlives the leader until the group is empty.
    pgid: Option<u32>,
    restarts: u32,
    last_exit: Option<i32>,
    /// Why the last start failed or why it is fatal; cleared once running.
    last_error: Option<String>,
    /// When the current process was spawned.
    started_at: Option<Instant>,
    /// The one deadline this instance waits for, if any.
    deadline: Option<Instant>,
    /// Operator intent: false once someone stopped it, so a daemon restart keeps it down.
    want_up: bool,
    failed_starts: u32,
    /// Spawns deferred in a row for the daemon's own resources (see `Input::SpawnDeferred`).
    deferred: u32,
    crash_streak: u32,
    /// What only a scheduled job has.
    kind: Kind,
}

/// A plain job has no schedule state; a scheduled one gets it the first time a schedule
/// needs some (an instance is made before its spec is known, and a reload may add one).
#[derive(Debug, Clone)]
enum Kind {
    Plain,
    Scheduled(Box<Sched>),
}

/// The state of a scheduled job's schedule.
#[derive(Debug, Clone, Default)]
struct Sched {
    /// The armed schedule; `None` while stopped.
    ticker: Option<Ticker>,
    /// When the loop must feed the next `Tick`: the ticker's deadline, or "now" when the
    /// schedule is to be armed again after a start.
    tick_at: Option<Instant>,
    /// The last ended runs, oldest first, at most `HISTORY`.
    history: VecDeque<RunRecord>,
    /// A start re-armed nothing yet: the next `Tick` arms the schedule.
    arm_pending: bool,
    /// `overlap: queue` and a tick came during the run: run again when it ends.
    queued: bool,
    /// What a previous daemon recorded as the last tick, for `catchup: once`.
    restored_tick: Option<DateTime<Utc>>,
    /// Every run and skipped tick since the daemon started, for `/metrics`.
    runs: RunCounts,
}

/// A scheduled job's runs since the daemon started: ended as expected (per `exitcodes`, or
/// stopped on purpose), ended otherwise or could not be spawned, and ticks skipped.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RunCounts {
    pub ok: u64,
    pub failed: u64,
    pub skipped: u64,
}

impl Sched {
    fn push_history(&mut self, run: RunRecord) {
        if self.history.len() >= HISTORY {
            self.history.pop_front();
        }
        self.history.push_back(run);
    }
}

/// The history of a job that has none.
static NO_HISTORY: VecDeque<RunRecord> = VecDeque::new();

impl Instance {
    pub fn new(program: &str, num: u32, name: String) -> Instance {
        Instance {
            name,
            program: program.to_string(),
            num,
            phase: Phase::Stopped,
            pid: None,
            pgid: None,
            restarts: 0,
            last_exit: None,
            last_error: None,
            started_at: None,
            deadline: None,
            want_up: true,
            failed_starts: 0,
            deferred: 0,
            crash_streak: 0,
            kind: Kind::Plain,
        }
    }

    pub fn state(&self) -> State {
        match self.phase {
            Phase::Stopped => State::Stopped,
            Phase::Starting => State::Starting,
            Phase::Running => State::Running,
            Phase::Backoff => State::Backoff,
            Phase::Stopping { .. } => State::Stopping,
            Phase::Exited => State::Exited,
            Phase::Fatal => State::Fatal,
            Phase::Scheduled => State::Scheduled,
            Phase::Waiting | Phase::Spawning => State::Starting,
        }
    }

    /// The instance's name (`web:0`, or `web` for a single instance).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The program it is an instance of.
    pub fn program(&self) -> &str {
        &self.program
    }

    /// Its number among the program's instances.
    pub fn num(&self) -> u32 {
        self.num
    }

    /// The live leader's pid (it is also the process group id).
    pub fn pid(&self) -> Option<u32> {
        self.pid
    }

    /// The group to signal while stopping: outlives the leader until the group is empty.
    pub fn pgid(&self) -> Option<u32> {
        self.pgid
    }

    /// Automatic restarts so far (an operator's start or restart is not counted).
    pub fn restarts(&self) -> u32 {
        self.restarts
    }

    /// The last exit as `status` shows it (see `ExitStatus::as_last_exit`).
    pub fn last_exit(&self) -> Option<i32> {
        self.last_exit
    }

    /// Why the last start failed, why it is fatal, or what it waits for; cleared once running.
    pub fn last_error(&self) -> Option<&str> {
        self.last_error.as_deref()
    }

    /// When the current process was spawned.
    pub fn started_at(&self) -> Option<Instant> {
        self.started_at
    }

    /// The one deadline this instance waits for, if any: the loop feeds `Deadline` then.
    pub fn deadline(&self) -> Option<Instant> {
        self.deadline
    }

    /// When the loop must feed the next `Tick`, if ever.
    pub fn tick_at(&self) -> Option<Instant> {
        self.sched().and_then(|s| s.tick_at)
    }

    /// The last ended runs of a scheduled job, oldest first, at most `HISTORY`.
    /// A scheduled job's runs and skipped ticks since the daemon started.
    pub fn runs(&self) -> RunCounts {
        self.sched().map_or_else(RunCounts::default, |s| s.runs)
    }

    /// A tick that does not run: counted and logged.
    fn skip(&mut self, out: &mut Vec<Action>) {
        self.with_sched(|s| s.runs.skipped += 1);
        out.push(Action::Log(Event::Skipped));
    }

    pub fn history(&self) -> &VecDeque<RunRecord> {
        self.sched().map_or(&NO_HISTORY, |s| &s.history)
    }

    /// Held back by a dependency that is not running (its state shows as `starting`).
    pub fn is_waiting(&self) -> bool {
        self.phase == Phase::Waiting
    }

    /// Operator intent: false once someone stopped it, so a daemon restart keeps it down.
    pub fn want_up(&self) -> bool {
        self.want_up
    }

    /// The last tick of a scheduled job accounted for (what a successor daemon catches up
    /// from).
    pub fn last_tick(&self) -> Option<DateTime<Utc>> {
        self.ticker().and_then(|t| t.last_tick)
    }

    /// Feed one input; the actions to carry out are appended to `out`.
    pub fn step(&mut self, spec: &ProgramSpec, now: Instant, input: Input, out: &mut Vec<Action>) {
        if !self.is_late(spec, now, &input) {
            self.transition(spec, now, input, out);
        }
        if let Some(s) = self.sched_mut() {
            s.tick_at = if s.arm_pending {
                Some(now)
            } else {
                s.ticker.as_ref().and_then(|t| t.at)
            };
        }
    }

    /// An input that no longer applies: it comes from a socket or a timer that may lag behind
    /// the state (a datagram sent before an exit, a check that passed before a stop, a
    /// deadline that was moved or dropped since it was armed). Such inputs change nothing.
    fn is_late(&self, spec: &ProgramSpec, now: Instant, input: &Input) -> bool {
        use Input as I;
        match input {
            I::Ready => !(self.phase == Phase::Starting && spec.health.ready != Ready::Starttime),
            I::Fault { .. } => !matches!(self.phase, Phase::Starting | Phase::Running),
            I::Unblocked => self.phase != Phase::Waiting,
            I::Deadline => self.deadline.is_none_or(|d| now < d),
            I::Start
            | I::Stop
            | I::Restart
            | I::Shutdown
            | I::Spawned { .. }
            | I::SpawnFailed { .. }
            | I::SpawnDeferred { .. }
            | I::Exited(_)
            | I::GroupEmpty
            | I::Tick { .. }
            | I::Blocked { .. }
            | I::StayDown
            | I::Reschedule => false,
        }
    }

    /// The table: one arm per (phase, input), in the order of the module doc. `Ready`,
    /// `Fault`, `Unblocked` and `Deadline` arrive here only where they apply (`is_late`).
    fn transition(
        &mut self,
        spec: &ProgramSpec,
        now: Instant,
        input: Input,
        out: &mut Vec<Action>,
    ) {
        use Input as I;
        use Phase as P;
        match (self.phase.clone(), input) {
            // --- bookkeeping, the same in every phase ---
            (_, I::StayDown) => self.want_up = false,
            (_, I::Reschedule) => {
                if spec.schedule.is_some() {
                    self.with_sched(|s| {
                        s.ticker = None;
                        s.arm_pending = true;
                    });
                } else if let Some(s) = self.sched_mut() {
                    s.ticker = None;
                    s.arm_pending = false;
                }
            }
            (_, I::Tick { wall, roll }) => self.tick(spec, Clocks { mono: now, wall }, roll, out),

            // --- stopped, exited, fatal: nothing runs ---
            (P::Stopped | P::Exited | P::Fatal, I::Start | I::Restart) => {
                self.want_up = true;
                if spec.schedule.is_some() {
                    self.with_sched(|s| s.arm_pending |= s.ticker.is_none());
                }
                self.spawn_afresh(out);
            }
            (P::Stopped | P::Exited | P::Fatal, I::Stop) => {
                self.want_up = false;
                self.drop_schedule();
            }
            (P::Stopped | P::Exited | P::Fatal, I::Shutdown) => self.drop_schedule(),

            // --- scheduled: no process, waiting for the next tick ---
            (P::Scheduled, I::Start | I::Restart) => {
                self.want_up = true;
                self.spawn_afresh(out);
            }
            (P::Scheduled, stop @ (I::Stop | I::Shutdown)) => {
                if stop == I::Stop {
                    self.want_up = false;
                }
                self.drop_schedule();
                self.down(out);
            }

            // --- waiting: wants to start, a dependency does not meet its condition yet ---
            (P::Waiting, I::Start | I::Restart) => self.want_up = true,
            (P::Waiting, stop @ (I::Stop | I::Shutdown)) => {
                if stop == I::Stop {
                    self.want_up = false;
                }
                self.drop_schedule();
                self.last_error = None;
                self.down(out);
            }
            (P::Waiting, I::Blocked { reason }) => {
                if self.last_error.as_deref() != Some(reason.as_str()) {
                    out.push(Action::Log(Event::Waiting {
                        reason: reason.clone(),
                    }));
                    self.last_error = Some(reason);
                }
            }
            (P::Waiting, I::Unblocked) => {
                self.last_error = None;
                self.spawn(out);
            }

            // --- spawning: a spawn asked for, no pid yet ---
            (P::Spawning | P::Starting | P::Running, I::Start) => self.want_up = true,
            // Nothing to signal yet. (A restart leaves it stopped, like a stop.)
            (P::Spawning, I::Stop) => {
                self.want_up = false;
                self.drop_schedule();
                self.down(out);
            }
            (P::Spawning, I::Restart) => {
                self.want_up = true;
                self.down(out);
            }
            (P::Spawning, I::Shutdown) => {
                self.drop_schedule();
                self.down(out);
            }
            (P::Spawning, I::Spawned { pid }) => {
                self.deferred = 0;
                self.pid = Some(pid);
                self.pgid = Some(pid);
                self.started_at = Some(now);
                self.phase = P::Starting;
                out.push(Action::Log(Event::Spawned { pid }));
                // `starttime` does not apply to a scheduled run: a quick run is a normal one.
                if spec.schedule.is_none() && spec.health.ready != Ready::Starttime {
                    self.deadline = Some(later(now, spec.health.ready_timeout));
                } else if spec.starttime.is_zero() || spec.schedule.is_some() {
                    self.become_running(out);
                } else {
                    self.deadline = Some(later(now, spec.starttime));
                }
            }
            (P::Spawning, I::SpawnFailed { reason }) => self.spawn_failed(spec, now, reason, out),
            (P::Spawning, I::SpawnDeferred { reason }) => {
                self.deferred += 1;
                let delay = backoff::deferred_delay(self.deferred);
                out.push(Action::Log(Event::SpawnDeferred {
                    reason: reason.clone(),
                    delay,
                    attempt: self.deferred,
                }));
                self.last_error = Some(reason);
                self.phase = P::Backoff;
                self.deadline = Some(now + delay);
            }
            (P::Spawning, I::Blocked { reason }) => {
                self.phase = P::Waiting;
                out.push(Action::Log(Event::Waiting {
                    reason: reason.clone(),
                }));
                self.last_error = Some(reason);
            }

            // --- starting: spawned, waiting for `starttime` or readiness ---
            (P::Starting | P::Running, I::Stop) => {
                self.want_up = false;
                self.drop_schedule();
                self.begin_stop(spec, now, Then::Rest, out);
            }
            (P::Starting | P::Running, I::Restart) => {
                self.want_up = true;
                self.begin_stop(spec, now, Then::Start, out);
            }
            (P::Starting | P::Running, I::Shutdown) => {
                self.drop_schedule();
                self.begin_stop(spec, now, Then::Rest, out)
            }
            // Forked, but the program could not be executed (the loop learns it after the
            // fork, and reaps the child itself): a failed start, with the exec's reason.
            (P::Starting, I::SpawnFailed { reason }) => {
                self.pid = None;
                self.pgid = None;
                self.started_at = None;
                self.deadline = None;
                self.spawn_failed(spec, now, reason, out);
            }
            (P::Starting, I::Exited(status)) => {
                let code = self.record_exit(spec, now, status, out);
                let reason = match status {
                    ExitStatus::Code(_) => format!("exited with code {code} before starttime"),
                    ExitStatus::Signaled(s) => {
                        format!("killed by {} before starttime", signal_name(Signal(s)))
                    }
                };
                self.fail_start(spec, now, reason, out);
            }
            (P::Starting, I::Deadline) => {
                if spec.health.ready == Ready::Starttime || spec.schedule.is_some() {
                    self.become_running(out);
                } else {
                    let reason = format!(
                        "not ready within ready_timeout {}",
                        super::event::human(spec.health.ready_timeout)
                    );
                    self.fail_by_stop(spec, now, reason, out);
                }
            }
            (P::Starting, I::Ready) => self.become_running(out),
            (P::Starting, I::Fault { reason }) => self.fail_by_stop(spec, now, reason, out),

            // --- running ---
            (P::Running, I::Exited(status)) => {
                let code = self.record_exit(spec, now, status, out);
                let expected = spec.exitcodes.contains(&code);
                let again = match spec.autorestart {
                    AutoRestart::Always => true,
                    AutoRestart::Never => false,
                    AutoRestart::Unexpected => !expected,
                };
                if spec.schedule.is_some() && self.take_queued() {
                    // The tick that came during the run.
                    self.spawn(out);
                    return;
                }
                if !again {
                    if spec.schedule.is_some() {
                        self.rest();
                    } else {
                        self.phase = P::Exited;
                    }
                    return;
                }
                let ran = self.started_at.map_or(Duration::ZERO, |s| now - s);
                if ran >= backoff::stable_after(spec.starttime) {
                    self.crash_streak = 0;
                }
                match backoff::crash_delay(self.crash_streak) {
                    None => {
                        self.crash_streak += 1;
                        self.restarts += 1;
                        self.spawn(out);
                    }
                    Some(delay) => {
                        self.crash_streak += 1;
                        self.enter_backoff(now, delay, out);
                    }
                }
            }
            (P::Running, I::Fault { reason }) => {
                out.push(Action::Log(Event::Fault {
                    reason: reason.clone(),
                }));
                self.last_error = Some(reason);
                self.restarts += 1;
                self.begin_stop(spec, now, Then::Start, out);
            }

            // --- backoff: no process, a retry is due at the deadline ---
            (P::Backoff, I::Start | I::Restart) => {
                self.want_up = true;
                self.failed_starts = 0;
                self.spawn(out);
            }
            (P::Backoff, stop @ (I::Stop | I::Shutdown)) => {
                if stop == I::Stop {
                    self.want_up = false;
                }
                self.drop_schedule();
                self.down(out);
            }
            (P::Backoff, I::Deadline) => {
                // A retry of a deferred spawn is the same start, not a restart.
                if self.deferred == 0 {
                    self.restarts += 1;
                }
                self.spawn(out);
            }

            // --- stopping: stopsignal sent, waiting for the group to empty ---
            (
                P::Stopping {
                    kill, leader_gone, ..
                },
                I::Start | I::Restart,
            ) => {
                self.want_up = true;
                self.phase = P::Stopping {
                    kill,
                    leader_gone,
                    then: Then::Start,
                };
            }
            (
                P::Stopping {
                    kill, leader_gone, ..
                },
                stop @ (I::Stop | I::Shutdown),
            ) => {
                if stop == I::Stop {
                    self.want_up = false;
                }
                self.drop_schedule();
                self.phase = P::Stopping {
                    kill,
                    leader_gone,
                    then: Then::Rest,
                };
            }
            (
                P::Stopping {
                    kill,
                    leader_gone: false,
                    then,
                },
                I::Exited(status),
            ) => self.leader_exited_in_stop(spec, now, status, kill, then, out),
            // Stopped before its exec failed: the process is gone, as if it had exited 127.
            (
                P::Stopping {
                    kill,
                    leader_gone: false,
                    then,
                },
                I::SpawnFailed { .. },
            ) => self.leader_exited_in_stop(spec, now, ExitStatus::Code(127), kill, then, out),
            (
                P::Stopping {
                    kill,
                    leader_gone,
                    then,
                },
                I::Deadline,
            ) => {
                let Some(pgid) = self.pgid else {
                    return self.bug(&I::Deadline, out);
                };
                let kill = match kill {
                    // A re-check of the group before `stoptime` is over.
                    Kill::Term { kill_at } if now < kill_at => kill,
                    Kill::Term { .. } => {
                        out.push(Action::Signal {
                            pgid,
                            signal: SIGKILL,
                        });
                        out.push(Action::Log(Event::Killed {
                            after: spec.stoptime,
                        }));
                        Kill::Killed
                    }
                    Kill::Killed => {
                        if !leader_gone {
                            // In uninterruptible sleep, perhaps: once more.
                            out.push(Action::Signal {
                                pgid,
                                signal: SIGKILL,
                            });
                        }
                        Kill::Killed
                    }
                };
                self.deadline = Some(match (leader_gone, kill) {
                    (false, Kill::Term { kill_at }) => kill_at,
                    (false, Kill::Killed) => now + KILL_RESEND,
                    (true, Kill::Term { kill_at }) => kill_at.min(now + GROUP_RECHECK),
                    (true, Kill::Killed) => now + GROUP_RECHECK,
                });
                self.phase = P::Stopping {
                    kill,
                    leader_gone,
                    then,
                };
                if leader_gone {
                    out.push(Action::CheckGroup { pgid });
                }
            }
            (
                P::Stopping {
                    leader_gone: true,
                    then,
                    ..
                },
                I::GroupEmpty,
            ) => {
                self.pgid = None;
                self.deadline = None;
                self.phase = P::Stopped;
                out.push(Action::Log(Event::Stopped));
                match then {
                    // Stopped because it never became ready: a failed start.
                    Then::FailStart(reason) => self.fail_start(spec, now, reason, out),
                    // (A run queued meanwhile stays queued: it runs after this one.)
                    Then::Start => self.spawn_afresh(out),
                    Then::Rest if self.take_queued() => self.spawn_afresh(out),
                    Then::Rest => {}
                }
            }
            // The leader is still there: its exit comes first.
            (
                P::Stopping {
                    leader_gone: false, ..
                },
                I::GroupEmpty,
            ) => {}

            // --- late inputs: `is_late` drops them before the match, so this arm is never
            // reached; it says that they change nothing ---
            (_, I::Ready | I::Fault { .. } | I::Unblocked | I::Deadline) => {}

            // --- inputs that cannot happen there: a `bug` event, nothing changes ---
            // A spawn result with no spawn asked for. One spawn gets one pid: a second one
            // would lose track of a live process.
            (
                P::Stopped
                | P::Exited
                | P::Fatal
                | P::Scheduled
                | P::Waiting
                | P::Starting
                | P::Running
                | P::Backoff
                | P::Stopping { .. },
                i @ (I::Spawned { .. } | I::SpawnDeferred { .. }),
            ) => self.bug(&i, out),
            (
                P::Stopped
                | P::Exited
                | P::Fatal
                | P::Scheduled
                | P::Waiting
                | P::Running
                | P::Backoff
                | P::Stopping {
                    leader_gone: true, ..
                },
                i @ I::SpawnFailed { .. },
            ) => self.bug(&i, out),
            // An exit with no leader: nothing was spawned, or it was reaped already.
            (
                P::Stopped
                | P::Exited
                | P::Fatal
                | P::Scheduled
                | P::Waiting
                | P::Spawning
                | P::Backoff
                | P::Stopping {
                    leader_gone: true, ..
                },
                i @ I::Exited(_),
            ) => self.bug(&i, out),
            // A group check only happens during a stop.
            (
                P::Stopped
                | P::Exited
                | P::Fatal
                | P::Scheduled
                | P::Waiting
                | P::Spawning
                | P::Starting
                | P::Running
                | P::Backoff,
                i @ I::GroupEmpty,
            ) => self.bug(&i, out),
            // Only a spawn can be held back.
            (
                P::Stopped
                | P::Exited
                | P::Fatal
                | P::Scheduled
                | P::Starting
                | P::Running
                | P::Backoff
                | P::Stopping { .. },
                i @ I::Blocked { .. },
            ) => self.bug(&i, out),
        }
    }

    /// The leader of a group being stopped is gone: wait for the rest of the group, with
    /// SIGKILL still due at the end of `stoptime`.
    fn leader_exited_in_stop(
        &mut self,
        spec: &ProgramSpec,
        now: Instant,
        status: ExitStatus,
        kill: Kill,
        then: Then,
        out: &mut Vec<Action>,
    ) {
        self.record_exit(spec, now, status, out);
        // `max(now)`: the exit may be reported after `kill_at` passed, before its deadline
        // fired; the kill is then due now, not in the past.
        self.deadline = Some(match kill {
            Kill::Killed => now + GROUP_RECHECK,
            Kill::Term { kill_at } => kill_at.min(now + GROUP_RECHECK).max(now),
        });
        self.phase = Phase::Stopping {
            kill,
            leader_gone: true,
            then,
        };
        if let Some(pgid) = self.pgid {
            out.push(Action::CheckGroup { pgid });
        }
    }

    /// A start after a stop, or a run queued meanwhile: a fresh start.
    fn spawn_afresh(&mut self, out: &mut Vec<Action>) {
        self.failed_starts = 0;
        self.crash_streak = 0;
        self.spawn(out);
    }

    /// A start that went wrong while the process lives (not ready in time, failing checks):
    /// stop it; once its group is empty, `fail_start` decides between backoff and fatal.
    fn fail_by_stop(
        &mut self,
        spec: &ProgramSpec,
        now: Instant,
        reason: String,
        out: &mut Vec<Action>,
    ) {
        out.push(Action::Log(Event::Fault {
            reason: reason.clone(),
        }));
        self.last_error = Some(reason.clone());
        self.begin_stop(spec, now, Then::FailStart(reason), out);
    }

    fn spawn(&mut self, out: &mut Vec<Action>) {
        self.phase = Phase::Spawning;
        self.deadline = None;
        self.pid = None;
        self.started_at = None;
        out.push(Action::Spawn);
    }

    fn become_running(&mut self, out: &mut Vec<Action>) {
        self.phase = Phase::Running;
        self.deadline = None;
        self.failed_starts = 0;
        self.last_error = None;
        out.push(Action::Log(Event::Running));
    }

    /// Record an exit of the leader: `last_exit`, the log line, and a KILL to whatever it left
    /// in its group (outside a stop, anything left behind by a dead leader is an orphan).
    fn record_exit(
        &mut self,
        spec: &ProgramSpec,
        now: Instant,
        status: ExitStatus,
        out: &mut Vec<Action>,
    ) -> i32 {
        let code = status.as_last_exit();
        self.last_exit = Some(code);
        self.pid = None;
        // An exit we asked for is expected whatever its code; one before `starttime` is a
        // failed start whatever its code; otherwise `exitcodes` decides.
        let expected = match self.phase {
            Phase::Stopping { .. } => true,
            Phase::Starting => false,
            _ => spec.exitcodes.contains(&code),
        };
        out.push(Action::Log(Event::Exited { status, expected }));
        if spec.schedule.is_some() {
            let started = self.started_at.unwrap_or(now);
            let duration = now.saturating_duration_since(started);
            self.with_sched(|s| {
                s.push_history(RunRecord {
                    started,
                    duration,
                    exit: Some(code),
                });
                if expected {
                    s.runs.ok += 1;
                } else {
                    s.runs.failed += 1;
                }
            });
            out.push(Action::Log(Event::RunFinished {
                duration,
                code,
                expected,
            }));
        }
        if !matches!(self.phase, Phase::Stopping { .. }) {
            if let Some(pgid) = self.pgid.take() {
                out.push(Action::Signal {
                    pgid,
                    signal: SIGKILL,
                });
            }
        }
        code
    }

    fn fail_start(
        &mut self,
        spec: &ProgramSpec,
        now: Instant,
        reason: String,
        out: &mut Vec<Action>,
    ) {
        self.failed_starts += 1;
        if self.failed_starts > spec.startretries {
            let reason = format!(
                "{} failed start{} in a row, last: {reason}",
                self.failed_starts,
                if self.failed_starts == 1 { "" } else { "s" }
            );
            self.phase = Phase::Fatal;
            self.deadline = None;
            out.push(Action::Log(Event::Fatal {
                reason: reason.clone(),
            }));
            self.last_error = Some(reason);
        } else {
            self.last_error = Some(reason);
            let delay = backoff::start_delay(self.failed_starts);
            self.enter_backoff(now, delay, out);
        }
    }

    fn enter_backoff(&mut self, now: Instant, delay: Duration, out: &mut Vec<Action>) {
        self.phase = Phase::Backoff;
        self.deadline = Some(now + delay);
        out.push(Action::Log(Event::Backoff { delay }));
    }

    fn begin_stop(&mut self, spec: &ProgramSpec, now: Instant, then: Then, out: &mut Vec<Action>) {
        let Some(pgid) = self.pgid else {
            // Spawning (`overlap: kill` on a tick that comes before the pid): nothing to signal.
            return self.down(out);
        };
        let kill_at = later(now, spec.stoptime);
        self.phase = Phase::Stopping {
            kill: Kill::Term { kill_at },
            leader_gone: false,
            then,
        };
        self.deadline = Some(kill_at);
        out.push(Action::Log(Event::Stopping {
            signal: spec.stopsignal,
        }));
        out.push(Action::Signal {
            pgid,
            signal: spec.stopsignal,
        });
    }

    /// Straight to stopped: there is no process to signal.
    fn down(&mut self, out: &mut Vec<Action>) {
        self.phase = Phase::Stopped;
        self.deadline = None;
        out.push(Action::Log(Event::Stopped));
    }

    /// The spawn asked for did not happen (or its exec failed after the fork): a failed run of
    /// a scheduled job, else a failed start.
    fn spawn_failed(
        &mut self,
        spec: &ProgramSpec,
        now: Instant,
        reason: String,
        out: &mut Vec<Action>,
    ) {
        out.push(Action::Log(Event::SpawnFailed {
            reason: reason.clone(),
        }));
        if spec.schedule.is_some() {
            // A failed run: the next tick is the retry.
            self.with_sched(|s| {
                s.push_history(RunRecord {
                    started: now,
                    duration: Duration::ZERO,
                    exit: None,
                });
                s.runs.failed += 1;
                s.queued = false;
            });
            self.last_error = Some(reason);
            self.rest();
        } else {
            self.fail_start(spec, now, reason, out);
        }
    }

    fn bug(&self, input: &Input, out: &mut Vec<Action>) {
        out.push(Action::Log(Event::Bug(format!(
            "unexpected {input:?} in state {}",
            self.state().as_str()
        ))));
    }

    /// A `Tick`: arm the schedule if it is not, else ask the ticker whether a tick is due, and
    /// run it (or apply `overlap`) when it is.
    fn tick(&mut self, spec: &ProgramSpec, now: Clocks, roll: u64, out: &mut Vec<Action>) {
        let ticked = self
            .sched_mut()
            .and_then(|s| s.ticker.as_mut())
            .map(|t| t.tick(now, roll));
        let outcome = match ticked {
            Some(outcome) => outcome,
            None => {
                let pending = self.sched().is_some_and(|s| s.arm_pending);
                let arm = spec.schedule.is_some()
                    && (pending || (self.phase == Phase::Stopped && self.want_up));
                if !arm {
                    return;
                }
                let restored = self.with_sched(|s| {
                    s.arm_pending = false;
                    s.restored_tick.take()
                });
                match Ticker::arm(spec, now, roll, restored) {
                    Ok((t, outcome)) => {
                        self.with_sched(|s| s.ticker = Some(t));
                        if self.phase == Phase::Stopped {
                            self.phase = Phase::Scheduled;
                        }
                        outcome
                    }
                    Err(reason) => {
                        out.push(Action::Log(Event::Fatal {
                            reason: reason.clone(),
                        }));
                        self.last_error = Some(reason);
                        self.phase = Phase::Fatal;
                        return;
                    }
                }
            }
        };
        match outcome {
            schedule::Outcome::Wait => {}
            schedule::Outcome::Run => self.run_tick(spec, now.mono, out),
            schedule::Outcome::Missed { due, run } => {
                out.push(Action::Log(Event::Missed { due, run }));
                if run {
                    self.run_tick(spec, now.mono, out);
                }
            }
        }
    }

    /// A due tick: run, or follow `overlap` when the previous run is still going.
    fn run_tick(&mut self, spec: &ProgramSpec, now: Instant, out: &mut Vec<Action>) {
        match self.phase {
            Phase::Scheduled | Phase::Stopped | Phase::Exited | Phase::Fatal | Phase::Backoff => {
                // Backoff is an `autorestart` retry waiting: the tick is a fresh run anyway.
                self.spawn_afresh(out);
            }
            Phase::Stopping { .. } | Phase::Waiting => self.skip(out),
            Phase::Spawning | Phase::Starting | Phase::Running => match spec.sched.overlap {
                Overlap::Skip => self.skip(out),
                Overlap::Queue if self.sched().is_some_and(|s| s.queued) => self.skip(out),
                Overlap::Queue => {
                    self.with_sched(|s| s.queued = true);
                    out.push(Action::Log(Event::Queued));
                }
                Overlap::Kill => {
                    out.push(Action::Log(Event::Replacing));
                    self.begin_stop(spec, now, Then::Start, out);
                }
            },
        }
    }

    /// Back to waiting for the next tick after a run (or stopped when there is no schedule).
    fn rest(&mut self) {
        self.deadline = None;
        self.phase = if self
            .sched()
            .is_some_and(|s| s.ticker.is_some() || s.arm_pending)
        {
            Phase::Scheduled
        } else {
            Phase::Exited
        };
    }

    fn drop_schedule(&mut self) {
        if let Some(s) = self.sched_mut() {
            s.ticker = None;
            s.arm_pending = false;
            s.queued = false;
        }
    }

    /// A run queued by `overlap: queue`, taken (false for a plain job).
    fn take_queued(&mut self) -> bool {
        self.sched_mut()
            .is_some_and(|s| std::mem::take(&mut s.queued))
    }

    fn sched(&self) -> Option<&Sched> {
        match &self.kind {
            Kind::Plain => None,
            Kind::Scheduled(s) => Some(s),
        }
    }

    fn sched_mut(&mut self) -> Option<&mut Sched> {
        match &mut self.kind {
            Kind::Plain => None,
            Kind::Scheduled(s) => Some(s),
        }
    }

    /// Change the schedule state, making it first for a job that had none.
    fn with_sched<R>(&mut self, change: impl FnOnce(&mut Sched) -> R) -> R {
        match &mut self.kind {
            Kind::Scheduled(s) => change(s),
            Kind::Plain => {
                let mut s = Box::<Sched>::default();
                let r = change(&mut s);
                self.kind = Kind::Scheduled(s);
                r
            }
        }
    }

    fn ticker(&self) -> Option<&Ticker> {
        self.sched().and_then(|s| s.ticker.as_ref())
    }

    /// The last tick a previous daemon recorded, for `catchup: once` when the schedule is armed.
    pub fn restore_last_tick(&mut self, last: Option<DateTime<Utc>>) {
        if last.is_some() || self.sched().is_some() {
            self.with_sched(|s| s.restored_tick = last);
        }
    }

    /// When the next tick is due, as a wall-clock time, given both clocks now.
    pub fn next_run(&self, now: Clocks) -> Option<DateTime<Utc>> {
        self.ticker().and_then(|t| t.next_run(now))
    }

    /// Restore what a previous daemon recorded (restart count and operator intent).
    pub fn restore(&mut self, restarts: u32, want_up: bool) {
        self.restarts = restarts;
        self.want_up = want_up;
    }
}

/// `now + d`, but a duration too long for the clock (a config value in the billions of years)
/// gives a deadline a century away instead of a panic: the core never dies on its input.
fn later(now: Instant, d: Duration) -> Instant {
    const CENTURY: Duration = Duration::from_secs(100 * 365 * 24 * 3600);
    now.checked_add(d)
        .or_else(|| now.checked_add(CENTURY))
        .unwrap_or(now)
}

fn signal_name(s: Signal) -> String {
    crate::config::signal::name(s)
}

#[cfg(test)]
#[path = "instance_tests.rs"]
mod tests;
