//! Tests for the instance state machine, written as scripts: each row
//! `run.at(ms).input(i).expect(state, deadline, actions)` feeds one input (milliseconds after
//! a fixed start) and states what must follow: the state, the deadline and every action,
//! compared in full so an extra action fails the test. `expect_bug()` states that an input is
//! logged as a bug and changes nothing at all.
//!
//! The last test drives the machine with seeded random inputs, the way the loop would, and
//! checks the invariants after every step.

use std::time::{Duration, Instant};

use super::*;
use crate::config::Signal;
use Input as I;
use State as S;

const TERM: Signal = Signal(15);
const KILL: Signal = Signal(9);

/// A program with short times, so scripts stay readable. Tests tweak fields as they need.
fn spec() -> ProgramSpec {
    ProgramSpec {
        stoptime: Duration::from_secs(2),
        ..ProgramSpec::for_tests("web", &["true"])
    }
}

fn spec_with(tweak: impl FnOnce(&mut ProgramSpec)) -> ProgramSpec {
    let mut s = spec();
    tweak(&mut s);
    s
}

/// An instance on a fake clock, driven one row at a time:
/// `run.at(ms).input(i).expect(state, deadline, actions)` feeds `i` at `ms` milliseconds after
/// the start and checks the state, the deadline (ms after the start, `None` for none) and
/// exactly these actions, in order.
#[derive(Clone)]
struct Run {
    spec: ProgramSpec,
    inst: Instance,
    t0: Instant,
    /// The clock of the next input, in ms after `t0`.
    now: u64,
    /// What the last input was, for messages.
    what: String,
    /// The instance before the last input.
    before: String,
    /// The actions of the last input.
    out: Vec<Action>,
    rows: usize,
}

impl Run {
    fn new(spec: ProgramSpec) -> Run {
        Run {
            spec,
            inst: Instance::new("web", 0, "web".into()),
            t0: Instant::now(),
            now: 0,
            what: String::new(),
            before: String::new(),
            out: Vec::new(),
            rows: 0,
        }
    }

    /// The instant `ms` after the start.
    fn time(&self, ms: u64) -> Instant {
        self.t0 + Duration::from_millis(ms)
    }

    /// Set the clock for the next input.
    fn at(&mut self, ms: u64) -> &mut Run {
        self.now = ms;
        self
    }

    /// Feed one input at the current clock.
    fn input(&mut self, input: Input) -> &mut Run {
        self.what = format!("row {}: {input:?} at {}ms", self.rows, self.now);
        self.rows += 1;
        self.before = format!("{:?}", self.inst);
        self.out.clear();
        let now = self.time(self.now);
        self.inst.step(&self.spec, now, input, &mut self.out);
        self
    }

    /// The last input left `state` and `deadline`, and did exactly `actions`.
    fn expect(
        &mut self,
        state: State,
        deadline: Option<u64>,
        actions: impl IntoIterator<Item = Action>,
    ) -> &mut Run {
        let what = &self.what;
        let actions: Vec<Action> = actions.into_iter().collect();
        assert_eq!(self.out, actions, "{what}: actions");
        assert_eq!(self.inst.state(), state, "{what}: state");
        assert_eq!(
            self.inst.deadline(),
            deadline.map(|d| self.time(d)),
            "{what}: deadline"
        );
        self
    }

    /// The last input was logged as a bug, and changed nothing.
    fn expect_bug(&mut self) -> &mut Run {
        let what = &self.what;
        assert!(
            matches!(self.out[..], [Action::Log(Event::Bug(_))]),
            "{what}: {:?}",
            self.out
        );
        assert_eq!(
            format!("{:?}", self.inst),
            self.before,
            "{what}: changed the instance"
        );
        self
    }

    /// The last input did nothing at all: no action, and the instance is as it was.
    fn expect_nothing(&mut self) -> &mut Run {
        let what = &self.what;
        assert_eq!(self.out, [], "{what}: actions");
        assert_eq!(
            format!("{:?}", self.inst),
            self.before,
            "{what}: changed the instance"
        );
        self
    }

    /// The actions of the last input, for a test that checks only some of them.
    fn actions(&self) -> Vec<Action> {
        self.out.clone()
    }

    /// From down: a start at `at` spawns `pid`, which runs once up for starttime (1 s).
    fn up(&mut self, at: u64, pid: u32) -> &mut Run {
        self.starts(at).spawns(at, pid).runs(at + 1000)
    }

    /// A start at `at`: a spawn is asked for.
    fn starts(&mut self, at: u64) -> &mut Run {
        self.at(at)
            .input(I::Start)
            .expect(S::Starting, None, [Action::Spawn])
    }

    /// The spawn gives `pid` at `at`; starttime (1 s) begins.
    fn spawns(&mut self, at: u64, pid: u32) -> &mut Run {
        self.at(at).input(I::Spawned { pid }).expect(
            S::Starting,
            Some(at + 1000),
            [log(Event::Spawned { pid })],
        )
    }

    /// Starttime is over at `at`: running.
    fn runs(&mut self, at: u64) -> &mut Run {
        self.at(at)
            .input(I::Deadline)
            .expect(S::Running, None, [log(Event::Running)])
    }
}

fn log(e: Event) -> Action {
    Action::Log(e)
}

fn signal(pgid: u32, signal: Signal) -> Action {
    Action::Signal { pgid, signal }
}

fn exited(code: i32, expected: bool) -> Action {
    log(Event::Exited {
        status: ExitStatus::Code(code),
        expected,
    })
}

fn backoff(secs: u64) -> Action {
    log(Event::Backoff {
        delay: Duration::from_secs(secs),
    })
}

/// A running instance (pid 7, up since 0 ms).
fn running(spec: ProgramSpec) -> Run {
    let mut run = Run::new(spec);
    run.up(0, 7);
    run
}

// --- starting ---

#[test]
fn start_spawns_then_runs_once_up_for_starttime() {
    let run = running(spec());
    assert_eq!(run.inst.pid(), Some(7));
    assert_eq!(run.inst.restarts(), 0);
    assert!(run.inst.want_up());
}

#[test]
fn zero_starttime_runs_at_once() {
    let mut run = Run::new(spec_with(|s| s.starttime = Duration::ZERO));
    run.at(0)
        .input(I::Start)
        .expect(S::Starting, None, [Action::Spawn]);
    run.at(0).input(I::Spawned { pid: 7 }).expect(
        S::Running,
        None,
        [log(Event::Spawned { pid: 7 }), log(Event::Running)],
    );
}

#[test]
fn an_early_deadline_does_nothing() {
    let mut run = Run::new(spec());
    run.at(0)
        .input(I::Start)
        .expect(S::Starting, None, [Action::Spawn]);
    run.at(0).input(I::Spawned { pid: 7 }).expect(
        S::Starting,
        Some(1000),
        [log(Event::Spawned { pid: 7 })],
    );
    run.at(999)
        .input(I::Deadline)
        .expect(S::Starting, Some(1000), []);
    run.at(1000)
        .input(I::Deadline)
        .expect(S::Running, None, [log(Event::Running)]);
    run.at(5000).input(I::Deadline).expect(S::Running, None, []);
    run.at(6000).input(I::Stop).expect(
        S::Stopping,
        Some(8000),
        [log(Event::Stopping { signal: TERM }), signal(7, TERM)],
    );
    run.at(7999)
        .input(I::Deadline)
        .expect(S::Stopping, Some(8000), []);
    run.at(8000).input(I::Deadline).expect(
        S::Stopping,
        Some(9000),
        [
            signal(7, KILL),
            log(Event::Killed {
                after: Duration::from_secs(2),
            }),
        ],
    );
    // Killed, leader still there: an early deadline must not resend SIGKILL.
    run.at(8500)
        .input(I::Deadline)
        .expect(S::Stopping, Some(9000), []);
}

#[test]
fn a_spawn_failure_backs_off_then_retries_and_counts_a_restart() {
    let mut run = Run::new(spec());
    run.at(0)
        .input(I::Start)
        .expect(S::Starting, None, [Action::Spawn]);
    run.at(0)
        .input(I::SpawnFailed {
            reason: "no such file".into(),
        })
        .expect(
            S::Backoff,
            Some(1000),
            [
                log(Event::SpawnFailed {
                    reason: "no such file".into(),
                }),
                backoff(1),
            ],
        );
    run.at(500)
        .input(I::Deadline)
        .expect(S::Backoff, Some(1000), []);
    run.at(1000)
        .input(I::Deadline)
        .expect(S::Starting, None, [Action::Spawn]);
    run.at(1000).input(I::Spawned { pid: 8 }).expect(
        S::Starting,
        Some(2000),
        [log(Event::Spawned { pid: 8 })],
    );
    run.at(2000)
        .input(I::Deadline)
        .expect(S::Running, None, [log(Event::Running)]);
    assert_eq!(run.inst.restarts(), 1);
    assert_eq!(run.inst.last_error(), None, "cleared once running");
}

impl Run {
    /// One failed try that starts at `at` (already spawning) and fails by exit code 1 100 ms
    /// later, ending in `then` with `tail` as the last action.
    fn fail_once(
        &mut self,
        at: u64,
        pid: u32,
        then: State,
        deadline: Option<u64>,
        tail: Action,
    ) -> &mut Run {
        self.spawns(at, pid)
            .at(at + 100)
            .input(I::Exited(ExitStatus::Code(1)))
            .expect(then, deadline, [exited(1, false), signal(pid, KILL), tail])
    }
}

#[test]
fn fatal_after_exactly_startretries_failed_retries() {
    let mut run = Run::new(spec());
    run.starts(0);
    // Failed starts 1, 2, 3 back off 1 s, 2 s, 4 s; each retry is an automatic restart.
    let mut at = 0;
    for (n, delay) in [1u64, 2, 4].into_iter().enumerate() {
        let pid = 10 + n as u32;
        let retry = at + 100 + delay * 1000;
        run.fail_once(at, pid, S::Backoff, Some(retry), backoff(delay));
        run.at(retry)
            .input(I::Deadline)
            .expect(S::Starting, None, [Action::Spawn]);
        at = retry;
    }
    let reason = "4 failed starts in a row, last: exited with code 1 before starttime";
    run.fail_once(
        at,
        13,
        S::Fatal,
        None,
        log(Event::Fatal {
            reason: reason.into(),
        }),
    );
    assert_eq!(run.inst.restarts(), 3);
    assert_eq!(run.inst.last_error(), Some(reason));
    assert_eq!(run.inst.last_exit(), Some(1));
    assert_eq!(run.inst.pid(), None);
}

#[test]
fn no_retries_means_fatal_on_the_first_failure() {
    let reason = "1 failed start in a row, last: no such file";
    let mut run = Run::new(spec_with(|s| s.startretries = 0));
    run.at(0)
        .input(I::Start)
        .expect(S::Starting, None, [Action::Spawn]);
    run.at(0)
        .input(I::SpawnFailed {
            reason: "no such file".into(),
        })
        .expect(
            S::Fatal,
            None,
            [
                log(Event::SpawnFailed {
                    reason: "no such file".into(),
                }),
                log(Event::Fatal {
                    reason: reason.into(),
                }),
            ],
        );
}

#[test]
fn an_exit_before_starttime_is_a_failed_start_even_with_code_zero() {
    let mut run = Run::new(spec_with(|s| s.autorestart = AutoRestart::Never));
    run.at(0)
        .input(I::Start)
        .expect(S::Starting, None, [Action::Spawn]);
    run.at(0).input(I::Spawned { pid: 7 }).expect(
        S::Starting,
        Some(1000),
        [log(Event::Spawned { pid: 7 })],
    );
    run.at(999).input(I::Exited(ExitStatus::Code(0))).expect(
        S::Backoff,
        Some(1999),
        [exited(0, false), signal(7, KILL), backoff(1)],
    );
    assert_eq!(
        run.inst.last_error(),
        Some("exited with code 0 before starttime")
    );
}

#[test]
fn a_signal_before_starttime_names_the_signal() {
    let mut run = Run::new(spec_with(|s| s.startretries = 0));
    run.at(0)
        .input(I::Start)
        .expect(S::Starting, None, [Action::Spawn]);
    run.at(0).input(I::Spawned { pid: 7 }).expect(
        S::Starting,
        Some(1000),
        [log(Event::Spawned { pid: 7 })],
    );
    run.at(10).input(I::Exited(ExitStatus::Signaled(9))).expect(
        S::Fatal,
        None,
        [
            log(Event::Exited {
                status: ExitStatus::Signaled(9),
                expected: false,
            }),
            signal(7, KILL),
            log(Event::Fatal {
                reason: "1 failed start in a row, last: killed by SIGKILL before starttime".into(),
            }),
        ],
    );
    assert_eq!(run.inst.last_exit(), Some(137));
}

#[test]
fn a_start_on_fatal_tries_again_with_full_retries() {
    let mut run = Run::new(spec_with(|s| s.startretries = 1));
    run.at(0)
        .input(I::Start)
        .expect(S::Starting, None, [Action::Spawn]);
    run.at(0)
        .input(I::SpawnFailed { reason: "x".into() })
        .expect(
            S::Backoff,
            Some(1000),
            [log(Event::SpawnFailed { reason: "x".into() }), backoff(1)],
        );
    run.at(1000)
        .input(I::Deadline)
        .expect(S::Starting, None, [Action::Spawn]);
    run.at(1000)
        .input(I::SpawnFailed { reason: "x".into() })
        .expect(
            S::Fatal,
            None,
            [
                log(Event::SpawnFailed { reason: "x".into() }),
                log(Event::Fatal {
                    reason: "2 failed starts in a row, last: x".into(),
                }),
            ],
        );
    run.at(5000)
        .input(I::Start)
        .expect(S::Starting, None, [Action::Spawn]);
    // One failure is allowed again: backoff, not fatal.
    run.at(5000)
        .input(I::SpawnFailed { reason: "x".into() })
        .expect(
            S::Backoff,
            Some(6000),
            [log(Event::SpawnFailed { reason: "x".into() }), backoff(1)],
        );
    assert_eq!(
        run.inst.restarts(),
        1,
        "the operator's start is not counted"
    );
}

#[test]
fn a_deferred_spawn_retries_quickly_without_spending_startretries() {
    let deferred = |ms: u64, attempt: u32| {
        log(Event::SpawnDeferred {
            reason: "fork failed: resource temporarily unavailable".into(),
            delay: Duration::from_millis(ms),
            attempt,
        })
    };
    let input = || I::SpawnDeferred {
        reason: "fork failed: resource temporarily unavailable".into(),
    };
    // No retries at all: a single failed start would be fatal, ten deferrals are not.
    let mut run = Run::new(spec_with(|s| {
        s.startretries = 0;
        s.starttime = Duration::ZERO;
    }));
    run.starts(0);
    let mut at = 0;
    for n in 0..10u32 {
        let delay = (100u64 << n.min(6)).min(5000);
        run.at(at)
            .input(input())
            .expect(S::Backoff, Some(at + delay), [deferred(delay, n + 1)]);
        at += delay;
        run.at(at)
            .input(I::Deadline)
            .expect(S::Starting, None, [Action::Spawn]);
    }
    run.at(at).input(I::Spawned { pid: 7 }).expect(
        S::Running,
        None,
        [log(Event::Spawned { pid: 7 }), log(Event::Running)],
    );
    assert_eq!(run.inst.restarts(), 0, "a deferred spawn is the same start");
    // The streak starts over after a spawn that worked.
    run.at(at + 20_000)
        .input(I::Exited(ExitStatus::Code(1)))
        .expect(
            S::Starting,
            None,
            [exited(1, false), signal(7, KILL), Action::Spawn],
        )
        .input(input())
        .expect(S::Backoff, Some(at + 20_100), [deferred(100, 1)]);
}

#[test]
fn a_deferred_spawn_anywhere_but_a_pidless_start_is_a_bug() {
    let mut run = running(spec());
    run.at(5000)
        .input(I::SpawnDeferred { reason: "x".into() })
        .expect_bug();
    assert_eq!(run.inst.state(), S::Running);
}

// --- running: exits and autorestart ---

/// From running (pid 7, up since 0), an exit at 20 s (a stable run) with `status`, fed and
/// not yet checked.
fn exit_from_running(autorestart: AutoRestart, status: ExitStatus) -> Run {
    let mut run = running(spec_with(|s| {
        s.autorestart = autorestart;
        s.exitcodes = vec![0, 2];
    }));
    run.at(20_000).input(I::Exited(status));
    run
}

#[test]
fn autorestart_decides_per_expected_or_unexpected_exit() {
    use AutoRestart::*;
    let cases = [
        (Always, 0, true),
        (Always, 1, true),
        (Never, 0, false),
        (Never, 1, false),
        (Unexpected, 0, false),
        (Unexpected, 2, false),
        (Unexpected, 1, true),
    ];
    for (mode, code, again) in cases {
        let mut run = exit_from_running(mode, ExitStatus::Code(code));
        let expected = code != 1;
        let mut want = vec![exited(code, expected), signal(7, KILL)];
        if again {
            want.push(Action::Spawn);
        }
        let what = format!("{mode:?}, code {code}");
        let state = if again { S::Starting } else { S::Exited };
        run.expect(state, None, want);
        assert_eq!(run.inst.pid(), None, "{what}");
        assert_eq!(run.inst.last_exit(), Some(code), "{what}");
        assert_eq!(run.inst.restarts(), again as u32, "{what}");
    }
}

#[test]
fn last_exit_of_a_signal_is_128_plus_its_number() {
    let mut run = exit_from_running(AutoRestart::Never, ExitStatus::Signaled(9));
    run.expect(
        S::Exited,
        None,
        [
            log(Event::Exited {
                status: ExitStatus::Signaled(9),
                expected: false,
            }),
            signal(7, KILL),
        ],
    );
    assert_eq!(run.inst.last_exit(), Some(137));
    let run = exit_from_running(AutoRestart::Never, ExitStatus::Signaled(15));
    assert_eq!(run.inst.last_exit(), Some(143));
}

#[test]
fn a_crash_loop_backs_off_and_a_stable_run_resets_it() {
    // Each run reaches running (1 s) but crashes 2 s after its spawn: not stable (< 10 s).
    let mut run = running(spec_with(|s| s.autorestart = AutoRestart::Always));
    let mut at = 0;
    let mut pid = 7;
    let mut delays = Vec::new();
    for _ in 0..9 {
        let crash = at + 2000;
        let out = run
            .at(crash)
            .input(I::Exited(ExitStatus::Code(1)))
            .actions();
        assert_eq!(out[..2], [exited(1, false), signal(pid, KILL)]);
        let spawn_at = match &out[2..] {
            [Action::Spawn] => {
                run.expect(S::Starting, None, out.clone());
                delays.push(0);
                crash
            }
            [Action::Log(Event::Backoff { delay })] => {
                let due = crash + delay.as_millis() as u64;
                run.expect(S::Backoff, Some(due), out.clone());
                delays.push(delay.as_secs());
                run.at(due)
                    .input(I::Deadline)
                    .expect(S::Starting, None, [Action::Spawn]);
                due
            }
            other => panic!("unexpected actions {other:?}"),
        };
        pid += 1;
        run.spawns(spawn_at, pid).runs(spawn_at + 1000);
        at = spawn_at;
    }
    assert_eq!(delays, [0, 1, 2, 4, 8, 16, 32, 60, 60]);
    assert_eq!(run.inst.restarts(), 9);

    // A stable run (10 s) resets the streak: the next crash restarts at once.
    let crash = at + 10_000;
    run.at(crash).input(I::Exited(ExitStatus::Code(1))).expect(
        S::Starting,
        None,
        [exited(1, false), signal(pid, KILL), Action::Spawn],
    );
    assert_eq!(run.inst.restarts(), 10);
}

#[test]
fn the_first_crash_restarts_at_once_then_waits_a_second() {
    let mut run = running(spec());
    run.at(20_000).input(I::Exited(ExitStatus::Code(3))).expect(
        S::Starting,
        None,
        [exited(3, false), signal(7, KILL), Action::Spawn],
    );
    run.at(20_000).input(I::Spawned { pid: 8 }).expect(
        S::Starting,
        Some(21_000),
        [log(Event::Spawned { pid: 8 })],
    );
    run.at(21_000)
        .input(I::Deadline)
        .expect(S::Running, None, [log(Event::Running)]);
    run.at(22_000).input(I::Exited(ExitStatus::Code(3))).expect(
        S::Backoff,
        Some(23_000),
        [exited(3, false), signal(8, KILL), backoff(1)],
    );
    run.at(23_000)
        .input(I::Deadline)
        .expect(S::Starting, None, [Action::Spawn]);
    assert_eq!(run.inst.restarts(), 2);
}

// --- stopping ---

#[test]
fn stop_from_running_signals_the_group_then_waits_for_it_to_empty() {
    let mut run = Run::new(spec());
    run.up(0, 7);
    run.at(5000).input(I::Stop).expect(
        S::Stopping,
        Some(7000),
        [log(Event::Stopping { signal: TERM }), signal(7, TERM)],
    );
    run.at(5100)
        .input(I::Exited(ExitStatus::Signaled(15)))
        .expect(
            S::Stopping,
            Some(5120),
            [
                log(Event::Exited {
                    status: ExitStatus::Signaled(15),
                    expected: true,
                }),
                Action::CheckGroup { pgid: 7 },
            ],
        );
    run.at(5100)
        .input(I::GroupEmpty)
        .expect(S::Stopped, None, [log(Event::Stopped)]);
    assert!(!run.inst.want_up());
    assert_eq!(run.inst.pid(), None);
    assert_eq!(run.inst.pgid(), None);
    assert_eq!(run.inst.last_exit(), Some(143));
    assert_eq!(run.inst.restarts(), 0);
}

#[test]
fn stop_from_starting_uses_stoptime_too() {
    let mut run = Run::new(spec());
    run.at(0)
        .input(I::Start)
        .expect(S::Starting, None, [Action::Spawn]);
    run.at(0).input(I::Spawned { pid: 7 }).expect(
        S::Starting,
        Some(1000),
        [log(Event::Spawned { pid: 7 })],
    );
    run.at(500).input(I::Stop).expect(
        S::Stopping,
        Some(2500),
        [log(Event::Stopping { signal: TERM }), signal(7, TERM)],
    );
    // The starttime deadline is gone: an exit now is not a failed start.
    run.at(600).input(I::Exited(ExitStatus::Code(0))).expect(
        S::Stopping,
        Some(620),
        [exited(0, true), Action::CheckGroup { pgid: 7 }],
    );
    run.at(600)
        .input(I::GroupEmpty)
        .expect(S::Stopped, None, [log(Event::Stopped)]);
}

#[test]
fn the_stopsignal_is_the_configured_one() {
    let usr1 = Signal(10);
    let mut run = Run::new(spec_with(|s| s.stopsignal = usr1));
    run.up(0, 7);
    run.at(5000).input(I::Stop).expect(
        S::Stopping,
        Some(7000),
        [log(Event::Stopping { signal: usr1 }), signal(7, usr1)],
    );
}

#[test]
fn stop_from_backoff_goes_straight_to_stopped() {
    let mut run = Run::new(spec());
    run.at(0)
        .input(I::Start)
        .expect(S::Starting, None, [Action::Spawn]);
    run.at(0)
        .input(I::SpawnFailed { reason: "x".into() })
        .expect(
            S::Backoff,
            Some(1000),
            [log(Event::SpawnFailed { reason: "x".into() }), backoff(1)],
        );
    run.at(500)
        .input(I::Stop)
        .expect(S::Stopped, None, [log(Event::Stopped)]);
    // The old backoff deadline may still fire: it is stale.
    run.at(1000).input(I::Deadline).expect(S::Stopped, None, []);
    assert!(!run.inst.want_up());
}

#[test]
fn a_leader_that_ignores_the_stopsignal_is_killed_after_stoptime() {
    let after = Duration::from_secs(2);
    let mut run = Run::new(spec());
    run.up(0, 7);
    run.at(5000).input(I::Stop).expect(
        S::Stopping,
        Some(7000),
        [log(Event::Stopping { signal: TERM }), signal(7, TERM)],
    );
    run.at(7000).input(I::Deadline).expect(
        S::Stopping,
        Some(8000),
        [signal(7, KILL), log(Event::Killed { after })],
    );
    // Still there a second later (uninterruptible sleep): SIGKILL again, no new "killed".
    run.at(8000)
        .input(I::Deadline)
        .expect(S::Stopping, Some(9000), [signal(7, KILL)]);
    run.at(8200)
        .input(I::Exited(ExitStatus::Signaled(9)))
        .expect(
            S::Stopping,
            Some(8220),
            [
                log(Event::Exited {
                    status: ExitStatus::Signaled(9),
                    expected: true,
                }),
                Action::CheckGroup { pgid: 7 },
            ],
        );
    run.at(8200)
        .input(I::GroupEmpty)
        .expect(S::Stopped, None, [log(Event::Stopped)]);
}

#[test]
fn stragglers_after_the_leader_are_rechecked_then_killed_at_stoptime() {
    let after = Duration::from_secs(2);
    let mut run = Run::new(spec());
    run.up(0, 7);
    run.at(5000).input(I::Stop).expect(
        S::Stopping,
        Some(7000),
        [log(Event::Stopping { signal: TERM }), signal(7, TERM)],
    );
    // The leader goes, a child of it stays: the group is not empty yet.
    run.at(5000).input(I::Exited(ExitStatus::Code(0))).expect(
        S::Stopping,
        Some(5020),
        [exited(0, true), Action::CheckGroup { pgid: 7 }],
    );
    run.at(5020).input(I::Deadline).expect(
        S::Stopping,
        Some(5040),
        [Action::CheckGroup { pgid: 7 }],
    );
    // Re-checks never go past the kill time.
    run.at(6990).input(I::Deadline).expect(
        S::Stopping,
        Some(7000),
        [Action::CheckGroup { pgid: 7 }],
    );
    run.at(7000).input(I::Deadline).expect(
        S::Stopping,
        Some(7020),
        [
            signal(7, KILL),
            log(Event::Killed { after }),
            Action::CheckGroup { pgid: 7 },
        ],
    );
    run.at(7020).input(I::Deadline).expect(
        S::Stopping,
        Some(7040),
        [Action::CheckGroup { pgid: 7 }],
    );
    run.at(7020)
        .input(I::GroupEmpty)
        .expect(S::Stopped, None, [log(Event::Stopped)]);
    assert_eq!(run.inst.pgid(), None);
    // A stray GroupEmpty afterwards is a bug, and changes nothing.
    run.at(8000).input(I::GroupEmpty).expect_bug();
    assert_eq!(run.inst.state(), S::Stopped);
}

#[test]
fn a_leader_exit_reported_late_never_leaves_a_deadline_in_the_past() {
    // The kill time (7 s) has passed but the loop reaps the leader before firing the deadline.
    let mut run = Run::new(spec());
    run.up(0, 7);
    run.at(5000).input(I::Stop).expect(
        S::Stopping,
        Some(7000),
        [log(Event::Stopping { signal: TERM }), signal(7, TERM)],
    );
    run.at(7500).input(I::Exited(ExitStatus::Code(0))).expect(
        S::Stopping,
        Some(7500),
        [exited(0, true), Action::CheckGroup { pgid: 7 }],
    );
    run.at(7500).input(I::Deadline).expect(
        S::Stopping,
        Some(7520),
        [
            signal(7, KILL),
            log(Event::Killed {
                after: Duration::from_secs(2),
            }),
            Action::CheckGroup { pgid: 7 },
        ],
    );
}

#[test]
fn restart_while_running_stops_then_spawns_once_the_group_is_empty() {
    let mut run = Run::new(spec());
    run.up(0, 7);
    run.at(5000).input(I::Restart).expect(
        S::Stopping,
        Some(7000),
        [log(Event::Stopping { signal: TERM }), signal(7, TERM)],
    );
    run.at(5100).input(I::Exited(ExitStatus::Code(0))).expect(
        S::Stopping,
        Some(5120),
        [exited(0, true), Action::CheckGroup { pgid: 7 }],
    );
    run.at(5100).input(I::GroupEmpty).expect(
        S::Starting,
        None,
        [log(Event::Stopped), Action::Spawn],
    );
    run.spawns(5100, 8).runs(5100 + 1000);
    assert_eq!(
        run.inst.restarts(),
        0,
        "an operator's restart is not counted"
    );
    assert!(run.inst.want_up());
}

#[test]
fn start_while_stopping_is_queued_and_a_stop_cancels_it() {
    let stopping = || {
        let mut run = Run::new(spec());
        run.up(0, 7);
        run.at(5000).input(I::Stop).expect(
            S::Stopping,
            Some(7000),
            [log(Event::Stopping { signal: TERM }), signal(7, TERM)],
        );
        run.at(5050)
            .input(I::Start)
            .expect(S::Stopping, Some(7000), []);
        run.at(5100).input(I::Exited(ExitStatus::Code(0))).expect(
            S::Stopping,
            Some(5120),
            [exited(0, true), Action::CheckGroup { pgid: 7 }],
        );
        run
    };
    let run = {
        let mut r = stopping();
        r.at(5100).input(I::GroupEmpty).expect(
            S::Starting,
            None,
            [log(Event::Stopped), Action::Spawn],
        );
        r
    };
    assert!(run.inst.want_up());

    let mut run = stopping();
    run.at(5110)
        .input(I::Stop)
        .expect(S::Stopping, Some(5120), []);
    run.at(5120).input(I::Deadline).expect(
        S::Stopping,
        Some(5140),
        [Action::CheckGroup { pgid: 7 }],
    );
    run.at(5120)
        .input(I::GroupEmpty)
        .expect(S::Stopped, None, [log(Event::Stopped)]);
    assert!(!run.inst.want_up());
}

#[test]
fn stop_when_down_only_records_the_intent() {
    let down: Vec<(&str, Run)> = vec![
        ("stopped", Run::new(spec())),
        (
            "exited",
            exit_from_running(AutoRestart::Never, ExitStatus::Code(0)),
        ),
        ("fatal", {
            let mut run = Run::new(spec_with(|s| s.startretries = 0));
            run.starts(0)
                .input(I::SpawnFailed { reason: "x".into() })
                .expect(
                    S::Fatal,
                    None,
                    [
                        log(Event::SpawnFailed { reason: "x".into() }),
                        log(Event::Fatal {
                            reason: "1 failed start in a row, last: x".into(),
                        }),
                    ],
                );
            run
        }),
    ];
    for (name, mut run) in down {
        let state = run.inst.state();
        assert_eq!(state.as_str(), name);
        run.at(30_000).input(I::Stop).expect(state, None, []);
        run.at(30_000).input(I::Shutdown).expect(state, None, []);
        run.at(30_000).input(I::Deadline).expect(state, None, []);
        assert!(!run.inst.want_up(), "{name}");
    }
}

#[test]
fn shutdown_stops_but_keeps_the_intent() {
    let mut run = Run::new(spec());
    run.up(0, 7);
    run.at(5000).input(I::Shutdown).expect(
        S::Stopping,
        Some(7000),
        [log(Event::Stopping { signal: TERM }), signal(7, TERM)],
    );
    run.at(5100).input(I::Exited(ExitStatus::Code(0))).expect(
        S::Stopping,
        Some(5120),
        [exited(0, true), Action::CheckGroup { pgid: 7 }],
    );
    run.at(5100)
        .input(I::GroupEmpty)
        .expect(S::Stopped, None, [log(Event::Stopped)]);
    assert!(run.inst.want_up());

    // From backoff too.
    let mut run = Run::new(spec());
    run.at(0)
        .input(I::Start)
        .expect(S::Starting, None, [Action::Spawn]);
    run.at(0)
        .input(I::SpawnFailed { reason: "x".into() })
        .expect(
            S::Backoff,
            Some(1000),
            [log(Event::SpawnFailed { reason: "x".into() }), backoff(1)],
        );
    run.at(10)
        .input(I::Shutdown)
        .expect(S::Stopped, None, [log(Event::Stopped)]);
    assert!(run.inst.want_up());
}

#[test]
fn shutdown_while_a_restart_is_queued_cancels_the_start() {
    let mut run = Run::new(spec());
    run.up(0, 7);
    run.at(5000).input(I::Restart).expect(
        S::Stopping,
        Some(7000),
        [log(Event::Stopping { signal: TERM }), signal(7, TERM)],
    );
    run.at(5010)
        .input(I::Shutdown)
        .expect(S::Stopping, Some(7000), []);
    run.at(5100).input(I::Exited(ExitStatus::Code(0))).expect(
        S::Stopping,
        Some(5120),
        [exited(0, true), Action::CheckGroup { pgid: 7 }],
    );
    run.at(5100)
        .input(I::GroupEmpty)
        .expect(S::Stopped, None, [log(Event::Stopped)]);
}

#[test]
fn start_when_already_up_changes_nothing() {
    let mut run = running(spec());
    run.at(2000).input(I::Start).expect(S::Running, None, []);
    assert_eq!(run.inst.pid(), Some(7));
}

#[test]
fn durations_too_long_for_the_clock_do_not_panic() {
    let mut run = Run::new(spec_with(|s| {
        s.starttime = Duration::MAX;
        s.stoptime = Duration::MAX;
    }));
    let mut out = Vec::new();
    for input in [
        I::Start,
        I::Spawned { pid: 7 },
        I::Deadline,
        I::Stop,
        I::Deadline,
    ] {
        out.extend(run.at(1000).input(input).actions());
    }
    assert_eq!(run.inst.state(), S::Stopping);
    assert!(run.inst.deadline().is_some_and(|d| d > run.time(1000)));
    assert!(!out.iter().any(|a| matches!(a, Action::Log(Event::Bug(_)))));
}

// --- inputs that cannot happen ---

#[test]
fn impossible_inputs_are_logged_as_bugs_and_change_nothing() {
    let status = I::Exited(ExitStatus::Code(0));
    let spawned = I::Spawned { pid: 99 };
    let failed = I::SpawnFailed { reason: "x".into() };

    let mut stopped = Run::new(spec());
    for i in [
        spawned.clone(),
        failed.clone(),
        status.clone(),
        I::GroupEmpty,
    ] {
        stopped.at(0).input(i).expect_bug();
    }

    let mut running = running(spec());
    for i in [spawned.clone(), failed.clone(), I::GroupEmpty] {
        running.at(2000).input(i).expect_bug();
    }

    let mut backing_off = Run::new(spec());
    backing_off
        .at(0)
        .input(I::Start)
        .expect(S::Starting, None, [Action::Spawn]);
    backing_off.at(0).input(failed.clone()).expect(
        S::Backoff,
        Some(1000),
        [log(Event::SpawnFailed { reason: "x".into() }), backoff(1)],
    );
    for i in [
        spawned.clone(),
        failed.clone(),
        status.clone(),
        I::GroupEmpty,
    ] {
        backing_off.at(10).input(i).expect_bug();
    }

    let mut starting = Run::new(spec());
    starting.starts(0).spawns(0, 7);
    // A second Spawned would lose track of the first process.
    for i in [spawned.clone(), I::GroupEmpty] {
        starting.at(10).input(i).expect_bug();
    }

    let mut spawning = Run::new(spec());
    spawning.starts(0);
    // Nothing was spawned yet, so nothing can have exited.
    spawning.at(0).input(status.clone()).expect_bug();

    let mut stopping = Run::new(spec());
    stopping.up(0, 7);
    stopping.at(5000).input(I::Stop).expect(
        S::Stopping,
        Some(7000),
        [log(Event::Stopping { signal: TERM }), signal(7, TERM)],
    );
    stopping.at(5010).input(spawned.clone()).expect_bug();
    stopping.at(5020).input(status.clone()).expect(
        S::Stopping,
        Some(5040),
        [exited(0, true), Action::CheckGroup { pgid: 7 }],
    );
    // The leader cannot exit twice.
    stopping.at(5030).input(status).expect_bug();
}

// --- scheduled jobs ---

/// A job run every 10 s (starttime 1 s, which a scheduled run ignores; stoptime 2 s).
fn every_10s(overlap: crate::config::Overlap) -> ProgramSpec {
    spec_with(|s| {
        s.schedule = Some(crate::config::Schedule::Every(Duration::from_secs(10)));
        s.autorestart = AutoRestart::Never;
        s.sched.overlap = overlap;
    })
}

/// The wall clock `ms` after an arbitrary fixed time (the monotonic clock moves with it).
fn tick(ms: u64) -> Input {
    let base = chrono::DateTime::parse_from_rfc3339("2026-05-01T12:00:00Z")
        .expect("a valid time")
        .with_timezone(&chrono::Utc);
    I::Tick {
        wall: base + chrono::Duration::milliseconds(ms as i64),
        roll: 0,
    }
}

fn finished(ms: u64, code: i32, expected: bool) -> Action {
    log(Event::RunFinished {
        duration: Duration::from_millis(ms),
        code,
        expected,
    })
}

impl Run {
    /// Arm the schedule at 0 and run the first tick at 10 s as pid 7.
    fn first_run(&mut self) -> &mut Run {
        self.at(0).input(tick(0)).expect(S::Scheduled, None, []);
        self.at(10_000)
            .input(tick(10_000))
            .expect(S::Starting, None, [Action::Spawn]);
        self.at(10_000).input(I::Spawned { pid: 7 }).expect(
            S::Running,
            None,
            [log(Event::Spawned { pid: 7 }), log(Event::Running)],
        )
    }
}

#[test]
fn a_scheduled_job_runs_per_tick_and_goes_back_to_scheduled() {
    let mut run = Run::new(every_10s(Default::default()));
    run.first_run();
    assert_eq!(run.inst.tick_at(), Some(run.time(20_000)));
    run.at(10_200).input(I::Exited(ExitStatus::Code(0))).expect(
        S::Scheduled,
        None,
        [exited(0, true), finished(200, 0, true), signal(7, KILL)],
    );
    assert_eq!(run.inst.last_exit(), Some(0));
    assert_eq!(run.inst.history().len(), 1);
    assert_eq!(run.inst.history()[0].duration, Duration::from_millis(200));
    // An early tick does nothing; the next one runs again, still on the 10 s grid.
    run.at(19_999)
        .input(tick(19_999))
        .expect(S::Scheduled, None, []);
    run.at(20_300)
        .input(tick(20_300))
        .expect(S::Starting, None, [Action::Spawn]);
    assert_eq!(run.inst.tick_at(), Some(run.time(30_000)));
}

#[test]
fn a_failed_run_is_logged_and_waits_for_the_next_tick() {
    let mut run = Run::new(every_10s(Default::default()));
    run.first_run();
    run.at(10_050).input(I::Exited(ExitStatus::Code(3))).expect(
        S::Scheduled,
        None,
        [exited(3, false), finished(50, 3, false), signal(7, KILL)],
    );
    run.at(20_000)
        .input(tick(20_000))
        .expect(S::Starting, None, [Action::Spawn]);
    run.at(20_000)
        .input(I::SpawnFailed {
            reason: "no such file".into(),
        })
        .expect(
            S::Scheduled,
            None,
            [log(Event::SpawnFailed {
                reason: "no such file".into(),
            })],
        );
    assert_eq!(run.inst.last_error(), Some("no such file"));
    assert_eq!(run.inst.history().len(), 2);
    assert_eq!(run.inst.history()[1].exit, None);
    // An unexpected exit and a spawn that failed are both failed runs.
    let runs = run.inst.runs();
    assert_eq!((runs.ok, runs.failed, runs.skipped), (0, 2, 0));
}

#[test]
fn history_keeps_the_last_ten_runs() {
    let mut run = Run::new(every_10s(Default::default()));
    run.at(0).input(tick(0)).expect(S::Scheduled, None, []);
    for n in 1..=12u64 {
        let at = n * 10_000;
        run.at(at)
            .input(tick(at))
            .input(I::Spawned { pid: n as u32 });
        run.at(at + n).input(I::Exited(ExitStatus::Code(n as i32)));
    }
    let codes: Vec<_> = run.inst.history().iter().map(|r| r.exit).collect();
    assert_eq!(codes, (3..=12).map(Some).collect::<Vec<_>>());
}

#[test]
fn overlap_skip_logs_skipped_while_the_run_goes_on() {
    let mut run = Run::new(every_10s(crate::config::Overlap::Skip));
    run.first_run();
    run.at(20_000)
        .input(tick(20_000))
        .expect(S::Running, None, [log(Event::Skipped)]);
    run.at(25_000).input(I::Exited(ExitStatus::Code(0))).expect(
        S::Scheduled,
        None,
        [exited(0, true), finished(15_000, 0, true), signal(7, KILL)],
    );
    let runs = run.inst.runs();
    assert_eq!((runs.ok, runs.failed, runs.skipped), (1, 0, 1));
}

#[test]
fn overlap_queue_runs_once_more_right_after() {
    let mut run = Run::new(every_10s(crate::config::Overlap::Queue));
    run.first_run();
    run.at(20_000)
        .input(tick(20_000))
        .expect(S::Running, None, [log(Event::Queued)]);
    // More ticks meanwhile collapse into the one queued run.
    run.at(30_000)
        .input(tick(30_000))
        .expect(S::Running, None, [log(Event::Skipped)]);
    run.at(35_000).input(I::Exited(ExitStatus::Code(0))).expect(
        S::Starting,
        None,
        [
            exited(0, true),
            finished(25_000, 0, true),
            signal(7, KILL),
            Action::Spawn,
        ],
    );
    run.at(35_000).input(I::Spawned { pid: 8 }).expect(
        S::Running,
        None,
        [log(Event::Spawned { pid: 8 }), log(Event::Running)],
    );
    run.at(36_000).input(I::Exited(ExitStatus::Code(0))).expect(
        S::Scheduled,
        None,
        [exited(0, true), finished(1000, 0, true), signal(8, KILL)],
    );
}

#[test]
fn overlap_kill_stops_the_old_run_then_starts_a_new_one() {
    let mut run = Run::new(every_10s(crate::config::Overlap::Kill));
    run.first_run();
    run.at(20_000).input(tick(20_000)).expect(
        S::Stopping,
        Some(22_000),
        [
            log(Event::Replacing),
            log(Event::Stopping { signal: TERM }),
            signal(7, TERM),
        ],
    );
    // Another tick while it stops is skipped: a new run is coming anyway.
    run.at(20_500)
        .input(tick(20_500))
        .expect(S::Stopping, Some(22_000), []);
    run.at(21_000)
        .input(I::Exited(ExitStatus::Signaled(15)))
        .expect(
            S::Stopping,
            Some(21_020),
            [
                log(Event::Exited {
                    status: ExitStatus::Signaled(15),
                    expected: true,
                }),
                finished(11_000, 143, true),
                Action::CheckGroup { pgid: 7 },
            ],
        );
    run.at(21_000).input(I::GroupEmpty).expect(
        S::Starting,
        None,
        [log(Event::Stopped), Action::Spawn],
    );
}

#[test]
fn start_runs_a_scheduled_job_now_without_moving_its_schedule() {
    let mut run = Run::new(every_10s(Default::default()));
    run.at(0).input(tick(0)).expect(S::Scheduled, None, []);
    run.at(3_000)
        .input(I::Start)
        .expect(S::Starting, None, [Action::Spawn]);
    run.at(3_000).input(I::Spawned { pid: 7 }).expect(
        S::Running,
        None,
        [log(Event::Spawned { pid: 7 }), log(Event::Running)],
    );
    assert_eq!(run.inst.tick_at(), Some(run.time(10_000)));
    run.at(3_100).input(I::Exited(ExitStatus::Code(0))).expect(
        S::Scheduled,
        None,
        [exited(0, true), finished(100, 0, true), signal(7, KILL)],
    );
    assert_eq!(run.inst.tick_at(), Some(run.time(10_000)));
}

#[test]
fn stop_ends_the_run_and_the_schedule_until_a_start() {
    let mut run = Run::new(every_10s(Default::default()));
    run.first_run();
    run.at(12_000).input(I::Stop).expect(
        S::Stopping,
        Some(14_000),
        [log(Event::Stopping { signal: TERM }), signal(7, TERM)],
    );
    run.at(12_100).input(I::Exited(ExitStatus::Code(0))).expect(
        S::Stopping,
        Some(12_120),
        [
            exited(0, true),
            finished(2_100, 0, true),
            Action::CheckGroup { pgid: 7 },
        ],
    );
    run.at(12_100)
        .input(I::GroupEmpty)
        .expect(S::Stopped, None, [log(Event::Stopped)]);
    run.at(20_000)
        .input(tick(20_000))
        .expect(S::Stopped, None, []);
    assert_eq!(run.inst.tick_at(), None);
    assert!(!run.inst.want_up());
    // A start runs it now and arms the schedule again at the next tick input (fed at once).
    run.at(30_000)
        .input(I::Start)
        .expect(S::Starting, None, [Action::Spawn]);
    run.at(30_000).input(I::Spawned { pid: 8 }).expect(
        S::Running,
        None,
        [log(Event::Spawned { pid: 8 }), log(Event::Running)],
    );
    assert_eq!(run.inst.tick_at(), Some(run.time(30_000)));
    run.at(30_000)
        .input(tick(30_000))
        .expect(S::Running, None, []);
    assert_eq!(run.inst.tick_at(), Some(run.time(40_000)));
}

#[test]
fn stop_while_scheduled_goes_straight_to_stopped() {
    let mut run = Run::new(every_10s(Default::default()));
    run.at(0).input(tick(0)).expect(S::Scheduled, None, []);
    run.at(1_000)
        .input(I::Stop)
        .expect(S::Stopped, None, [log(Event::Stopped)]);
    run.at(10_000)
        .input(tick(10_000))
        .expect(S::Stopped, None, []);
    assert_eq!(run.inst.tick_at(), None);
}

#[test]
fn an_operator_stopped_job_is_not_armed_at_startup() {
    let mut run = Run::new(every_10s(Default::default()));
    run.inst.restore(0, false);
    run.at(0).input(tick(0)).expect(S::Stopped, None, []);
    assert_eq!(run.inst.tick_at(), None);
}

#[test]
fn first_run_now_runs_when_armed() {
    let mut run = Run::new(spec_with(|s| {
        s.schedule = Some(crate::config::Schedule::Every(Duration::from_secs(10)));
        s.sched.first_run = crate::config::FirstRun::Now;
    }));
    run.at(0)
        .input(tick(0))
        .expect(S::Starting, None, [Action::Spawn]);
}

#[test]
fn shutdown_drops_the_schedule() {
    let mut run = Run::new(every_10s(Default::default()));
    run.at(0).input(tick(0)).expect(S::Scheduled, None, []);
    run.at(1_000)
        .input(I::Shutdown)
        .expect(S::Stopped, None, [log(Event::Stopped)]);
    assert_eq!(run.inst.tick_at(), None);
    assert!(run.inst.want_up(), "a shutdown keeps the intent");
}

#[test]
fn a_tick_for_a_job_without_schedule_does_nothing() {
    let mut run = Run::new(spec());
    run.at(0).input(tick(0)).expect(S::Stopped, None, []);
}

// --- invariants under random inputs ---

/// xorshift64*: small, seeded, good enough to pick inputs.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }

    fn chance(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }
}

/// The processes as the loop would see them.
#[derive(Debug, Default)]
struct World {
    /// The live leader, if any.
    leader: Option<u32>,
    /// The group of the last spawn and whether members other than the leader live in it.
    group: Option<u32>,
    stragglers: bool,
    /// The group got SIGKILL: stragglers still in it die soon.
    doomed: bool,
    next_pid: u32,
    /// Consecutive failed starts, counted from outside the machine.
    failed_in_a_row: u32,
}

/// Feed `input` and then, as the loop does, everything the actions call for at once: a
/// `Spawned`/`SpawnFailed` after `Spawn`, a `GroupEmpty` after `CheckGroup` on an empty group.
fn feed(
    rng: &mut Rng,
    world: &mut World,
    spec: &ProgramSpec,
    inst: &mut Instance,
    now: Instant,
    input: Input,
) {
    let mut queue = vec![input];
    while let Some(input) = queue.pop() {
        let before = inst.state();
        if before == S::Starting && matches!(input, I::SpawnFailed { .. } | I::Exited(_)) {
            world.failed_in_a_row += 1;
        }
        let operator = matches!(input, I::Start | I::Restart | I::GroupEmpty);
        if let I::Exited(_) = input {
            world.leader = None;
        }
        let due = inst.deadline.is_some_and(|d| d <= now);
        let fired = due && input == I::Deadline;
        let (old_deadline, old_phase) = (inst.deadline, timing(&inst.phase));
        let old_debug = format!("{inst:?}");
        let mut out = Vec::new();
        inst.step(spec, now, input.clone(), &mut out);
        let after = inst.state();
        // Not ready in time, or a fault while starting: stopped, then a failed start.
        if before == S::Starting
            && after == S::Stopping
            && matches!(input, I::Fault { .. } | I::Deadline)
        {
            world.failed_in_a_row += 1;
        }
        if input == I::Deadline && !due {
            assert!(
                out.is_empty(),
                "an early deadline in {before:?} did {out:?}"
            );
            assert_eq!(
                format!("{inst:?}"),
                old_debug,
                "an early deadline changed the instance"
            );
        }
        // A step may leave a due deadline alone for the loop to fire, but never arms one in
        // the past, and a deadline that fired moves past `now` (else the loop would spin).
        if let Some(d) = inst.deadline {
            if fired {
                assert!(d > now, "deadline not moved on after firing in {after:?}");
            } else if Some(d) != old_deadline || timing(&inst.phase) != old_phase {
                assert!(d >= now, "deadline armed in the past in {after:?}");
            }
        }
        if after == S::Running {
            world.failed_in_a_row = 0;
        }
        if after == S::Fatal && before != S::Fatal {
            assert!(
                world.failed_in_a_row > spec.startretries,
                "fatal after {} failed starts, startretries {}",
                world.failed_in_a_row,
                spec.startretries
            );
        }
        // (A stop for not being ready ends in `fatal` once the group is empty.)
        if world.failed_in_a_row > spec.startretries
            && before == S::Starting
            && after != S::Stopping
        {
            assert_eq!(
                after,
                S::Fatal,
                "{} failed starts in a row",
                world.failed_in_a_row
            );
        }
        for action in out {
            match action {
                Action::Spawn => {
                    assert_eq!(world.leader, None, "spawn while a leader lives");
                    assert!(!world.stragglers, "spawn while the last group lives");
                    if operator {
                        world.failed_in_a_row = 0;
                    }
                    if rng.chance(30) {
                        queue.push(I::SpawnFailed {
                            reason: "no".into(),
                        });
                    } else {
                        world.next_pid += 1;
                        world.leader = Some(world.next_pid);
                        world.group = Some(world.next_pid);
                        world.stragglers = rng.chance(30);
                        world.doomed = false;
                        queue.push(I::Spawned {
                            pid: world.next_pid,
                        });
                    }
                }
                Action::Signal { pgid, signal } => {
                    assert_eq!(Some(pgid), world.group, "signal to a foreign group");
                    // While stopping, a straggler may outlive a SIGKILL for a while (it is in
                    // uninterruptible sleep); outside a stop, SIGKILL clears the group.
                    let survives = match signal {
                        KILL => after == S::Stopping && rng.chance(30),
                        _ => rng.chance(50),
                    };
                    if !survives {
                        world.stragglers = false;
                    }
                    world.doomed |= signal == KILL;
                }
                Action::CheckGroup { pgid } => {
                    assert_eq!(Some(pgid), world.group);
                    if world.doomed && rng.chance(50) {
                        world.stragglers = false;
                    }
                    if world.leader.is_none() && !world.stragglers {
                        queue.push(I::GroupEmpty);
                    }
                }
                Action::Log(Event::Bug(what)) => panic!("bug event for a possible input: {what}"),
                Action::Log(_) => {}
            }
        }
    }
}

/// The phase with what a stop leads to left out: a start or stop during a stop changes only
/// that, and arms nothing.
fn timing(phase: &Phase) -> Phase {
    match phase {
        Phase::Stopping {
            kill, leader_gone, ..
        } => Phase::Stopping {
            kill: *kill,
            leader_gone: *leader_gone,
            then: Then::Rest,
        },
        other => other.clone(),
    }
}

fn assert_invariants(spec: &ProgramSpec, inst: &Instance, world: &World) {
    let state = inst.state();
    let has_leader = match inst.phase {
        Phase::Starting | Phase::Running => true,
        Phase::Stopping { leader_gone, .. } => !leader_gone,
        _ => false,
    };
    assert_eq!(
        inst.pid.is_some(),
        has_leader,
        "pid {:?} in {state:?}",
        inst.pid
    );
    assert_eq!(inst.pid, world.leader, "the machine's pid is the live one");
    let wants_deadline = match state {
        S::Backoff | S::Stopping => true,
        S::Starting => !spec.starttime.is_zero(),
        S::Stopped | S::Exited | S::Fatal | S::Running | S::Scheduled => false,
    };
    assert_eq!(
        inst.deadline.is_some(),
        wants_deadline,
        "deadline {:?} in {state:?}",
        inst.deadline
    );
    if state == S::Fatal {
        assert!(inst.failed_starts > spec.startretries);
    }
    if spec.schedule.is_none() {
        assert!(
            matches!(inst.kind, Kind::Plain),
            "a plain job has schedule state"
        );
    }
}

#[test]
fn random_inputs_keep_the_invariants() {
    let specs = [
        spec(),
        spec_with(|s| s.startretries = 0),
        spec_with(|s| s.starttime = Duration::ZERO),
        spec_with(|s| s.autorestart = AutoRestart::Always),
        spec_with(|s| {
            s.autorestart = AutoRestart::Never;
            s.stoptime = Duration::ZERO;
        }),
        spec_with(|s| s.health.ready = Ready::Notify),
    ];
    for seed in 1..=300u64 {
        let spec = &specs[seed as usize % specs.len()];
        let mut rng = Rng(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1);
        let mut world = World::default();
        let mut inst = Instance::new("web", 0, "web".into());
        let t0 = Instant::now();
        let mut now = t0;
        for _ in 0..400 {
            now += Duration::from_millis(match rng.below(4) {
                0 => 0,
                1 => rng.below(50),
                2 => rng.below(3000),
                _ => rng.below(70_000),
            });
            let input = match rng.below(10) {
                0 => I::Start,
                1 => I::Stop,
                2 => I::Restart,
                3 if rng.chance(20) => I::Shutdown,
                7 if rng.chance(30) => I::Ready,
                8 if rng.chance(15) => I::Fault {
                    reason: "watchdog".into(),
                },
                4..=6 if world.leader.is_some() => I::Exited(match rng.below(3) {
                    0 => ExitStatus::Code(0),
                    1 => ExitStatus::Code(rng.below(3) as i32),
                    _ => ExitStatus::Signaled(9),
                }),
                _ => {
                    // Mostly as the loop does, exactly at the deadline; sometimes stale or early.
                    if let Some(d) = inst.deadline.filter(|_| rng.chance(80)) {
                        now = now.max(d);
                    }
                    I::Deadline
                }
            };
            let what = format!("seed {seed}, {input:?} at {:?}", now - t0);
            let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                feed(&mut rng, &mut world, spec, &mut inst, now, input);
                assert_invariants(spec, &inst, &world);
            }));
            if let Err(e) = outcome {
                eprintln!("{what}: {inst:?}");
                std::panic::resume_unwind(e);
            }
        }
    }
}

// --- readiness, health and dependencies ---

fn notify() -> ProgramSpec {
    spec_with(|s| {
        s.health.ready = Ready::Notify;
        s.health.ready_timeout = Duration::from_secs(5);
    })
}

fn fault(reason: &str) -> Action {
    log(Event::Fault {
        reason: reason.into(),
    })
}

#[test]
fn ready_notify_waits_for_ready_not_for_starttime() {
    let mut run = Run::new(notify());
    run.at(0)
        .input(I::Start)
        .expect(S::Starting, None, [Action::Spawn]);
    run.at(0).input(I::Spawned { pid: 7 }).expect(
        S::Starting,
        Some(5000),
        [log(Event::Spawned { pid: 7 })],
    );
    run.at(3000)
        .input(I::Ready)
        .expect(S::Running, None, [log(Event::Running)]);
    // READY=1 again while running changes nothing.
    run.at(4000).input(I::Ready).expect(S::Running, None, []);
}

#[test]
fn not_ready_within_ready_timeout_is_a_failed_start_after_a_proper_stop() {
    let reason = "not ready within ready_timeout 5s";
    let mut run = Run::new(notify());
    run.at(0)
        .input(I::Start)
        .expect(S::Starting, None, [Action::Spawn]);
    run.at(0).input(I::Spawned { pid: 7 }).expect(
        S::Starting,
        Some(5000),
        [log(Event::Spawned { pid: 7 })],
    );
    run.at(5000).input(I::Deadline).expect(
        S::Stopping,
        Some(7000),
        [
            fault(reason),
            log(Event::Stopping { signal: TERM }),
            signal(7, TERM),
        ],
    );
    run.at(5100)
        .input(I::Exited(ExitStatus::Signaled(15)))
        .expect(
            S::Stopping,
            Some(5120),
            [
                log(Event::Exited {
                    status: ExitStatus::Signaled(15),
                    expected: true,
                }),
                Action::CheckGroup { pgid: 7 },
            ],
        );
    run.at(5120).input(I::GroupEmpty).expect(
        S::Backoff,
        Some(6120),
        [log(Event::Stopped), backoff(1)],
    );
}

#[test]
fn a_ready_timeout_with_no_retries_left_is_fatal() {
    let mut run = Run::new(spec_with(|s| {
        s.health.ready = Ready::Fd(3);
        s.health.ready_timeout = Duration::from_secs(5);
        s.startretries = 0;
    }));
    run.at(0)
        .input(I::Start)
        .expect(S::Starting, None, [Action::Spawn]);
    run.at(0).input(I::Spawned { pid: 7 }).expect(
        S::Starting,
        Some(5000),
        [log(Event::Spawned { pid: 7 })],
    );
    run.at(5000).input(I::Deadline).expect(
        S::Stopping,
        Some(7000),
        [
            fault("not ready within ready_timeout 5s"),
            log(Event::Stopping { signal: TERM }),
            signal(7, TERM),
        ],
    );
    run.at(5010).input(I::Exited(ExitStatus::Code(0))).expect(
        S::Stopping,
        Some(5030),
        [exited(0, true), Action::CheckGroup { pgid: 7 }],
    );
    run.at(5020).input(I::GroupEmpty).expect(
        S::Fatal,
        None,
        [
            log(Event::Stopped),
            log(Event::Fatal {
                reason: "1 failed start in a row, last: not ready within ready_timeout 5s".into(),
            }),
        ],
    );
    assert!(run
        .inst
        .last_error()
        .is_some_and(|e| e.contains("not ready within ready_timeout 5s")));
}

#[test]
fn a_fault_while_running_restarts_and_counts() {
    let mut run = running(spec());
    run.at(5000)
        .input(I::Fault {
            reason: "watchdog: no WATCHDOG=1 for 2s".into(),
        })
        .expect(
            S::Stopping,
            Some(7000),
            [
                fault("watchdog: no WATCHDOG=1 for 2s"),
                log(Event::Stopping { signal: TERM }),
                signal(7, TERM),
            ],
        );
    run.at(5100)
        .input(I::Exited(ExitStatus::Signaled(15)))
        .expect(
            S::Stopping,
            Some(5120),
            [
                log(Event::Exited {
                    status: ExitStatus::Signaled(15),
                    expected: true,
                }),
                Action::CheckGroup { pgid: 7 },
            ],
        );
    run.at(5120).input(I::GroupEmpty).expect(
        S::Starting,
        None,
        [log(Event::Stopped), Action::Spawn],
    );
    assert_eq!(run.inst.restarts(), 1);
}

#[test]
fn ready_and_fault_when_nothing_runs_change_nothing() {
    let mut run = Run::new(spec());
    run.at(0).input(I::Ready).expect(S::Stopped, None, []);
    run.at(0)
        .input(I::Fault {
            reason: "late".into(),
        })
        .expect(S::Stopped, None, []);
    run.at(0).input(I::Unblocked).expect(S::Stopped, None, []);
    // With ready: starttime, a stray READY does not cut starttime short.
    let mut run = Run::new(spec());
    run.at(0)
        .input(I::Start)
        .expect(S::Starting, None, [Action::Spawn]);
    run.at(0).input(I::Spawned { pid: 7 }).expect(
        S::Starting,
        Some(1000),
        [log(Event::Spawned { pid: 7 })],
    );
    run.at(10)
        .input(I::Ready)
        .expect(S::Starting, Some(1000), []);
}

#[test]
fn a_blocked_spawn_waits_until_unblocked() {
    let waiting = |r: &str| log(Event::Waiting { reason: r.into() });
    let mut run = Run::new(spec());
    run.at(0)
        .input(I::Start)
        .expect(S::Starting, None, [Action::Spawn]);
    run.at(0)
        .input(I::Blocked {
            reason: "waiting for db (starting)".into(),
        })
        .expect(S::Starting, None, [waiting("waiting for db (starting)")]);
    // The same reason again is not logged again; a new one is.
    run.at(10)
        .input(I::Blocked {
            reason: "waiting for db (starting)".into(),
        })
        .expect(S::Starting, None, []);
    run.at(20)
        .input(I::Blocked {
            reason: "waiting for db, which is fatal".into(),
        })
        .expect(
            S::Starting,
            None,
            [waiting("waiting for db, which is fatal")],
        );
    assert!(run.inst.is_waiting());
    assert_eq!(run.inst.pid(), None);
    assert_eq!(
        run.inst.last_error(),
        Some("waiting for db, which is fatal")
    );
    run.at(30)
        .input(I::Unblocked)
        .expect(S::Starting, None, [Action::Spawn]);
    run.at(30).input(I::Spawned { pid: 8 }).expect(
        S::Starting,
        Some(1030),
        [log(Event::Spawned { pid: 8 })],
    );
    assert!(!run.inst.is_waiting());
    assert_eq!(run.inst.last_error(), None);
}

#[test]
fn a_waiting_instance_stops_without_a_process() {
    let mut run = Run::new(spec());
    run.at(0)
        .input(I::Start)
        .expect(S::Starting, None, [Action::Spawn]);
    run.at(0)
        .input(I::Blocked {
            reason: "waiting for db".into(),
        })
        .expect(
            S::Starting,
            None,
            [log(Event::Waiting {
                reason: "waiting for db".into(),
            })],
        );
    run.at(5)
        .input(I::Stop)
        .expect(S::Stopped, None, [log(Event::Stopped)]);
    assert!(!run.inst.want_up());
    run.at(6)
        .input(I::Start)
        .expect(S::Starting, None, [Action::Spawn]);
    run.at(6)
        .input(I::Blocked {
            reason: "waiting for db".into(),
        })
        .expect(
            S::Starting,
            None,
            [log(Event::Waiting {
                reason: "waiting for db".into(),
            })],
        );
    run.at(7)
        .input(I::Shutdown)
        .expect(S::Stopped, None, [log(Event::Stopped)]);
}

#[test]
fn blocked_outside_a_spawn_is_a_bug() {
    let mut run = running(spec());
    run.at(2000)
        .input(I::Blocked { reason: "x".into() })
        .expect_bug();
    assert_eq!(run.inst.state(), S::Running);
}

// --- an exec that fails after the fork ---

#[test]
fn an_exec_failure_after_the_fork_is_a_failed_start_with_its_reason() {
    let failed = I::SpawnFailed {
        reason: "/x: permission denied".into(),
    };
    let mut run = Run::new(spec());
    run.starts(0).spawns(0, 7);
    run.at(3).input(failed).expect(
        S::Backoff,
        Some(1003),
        [
            log(Event::SpawnFailed {
                reason: "/x: permission denied".into(),
            }),
            backoff(1),
        ],
    );
    assert_eq!(run.inst.pid(), None);
    assert_eq!(run.inst.pgid(), None);
    assert_eq!(run.inst.last_error(), Some("/x: permission denied"));
}

#[test]
fn an_exec_failure_during_a_stop_ends_it_like_an_exit() {
    let mut run = Run::new(spec());
    run.starts(0).spawns(0, 7);
    run.at(5).input(I::Stop).expect(
        S::Stopping,
        Some(2005),
        [log(Event::Stopping { signal: TERM }), signal(7, TERM)],
    );
    run.at(6)
        .input(I::SpawnFailed {
            reason: "/x: no such file or directory".into(),
        })
        .expect(
            S::Stopping,
            Some(26),
            [exited(127, true), Action::CheckGroup { pgid: 7 }],
        );
    run.at(7)
        .input(I::GroupEmpty)
        .expect(S::Stopped, None, [log(Event::Stopped)]);
}

#[test]
fn an_operator_stop_held_for_dependents_is_recorded_before_the_stop_comes() {
    let mut run = running(spec());
    // Held: the intent is recorded, nothing else happens yet.
    run.at(2000).input(I::StayDown).expect(S::Running, None, []);
    assert!(!run.inst.want_up());
    run.at(2100).input(I::Stop).expect(
        S::Stopping,
        Some(4100),
        [log(Event::Stopping { signal: TERM }), signal(7, TERM)],
    );
    assert!(!run.inst.want_up());
}

#[test]
fn reschedule_drops_the_armed_schedule_and_the_next_tick_arms_it_again() {
    let mut run = Run::new(every_10s(Default::default()));
    run.at(0).input(tick(0)).expect(S::Scheduled, None, []);
    assert_eq!(run.inst.tick_at(), Some(run.time(10_000)));
    run.at(1000)
        .input(I::Reschedule)
        .expect(S::Scheduled, None, []);
    assert!(run.inst.ticker().is_none());
    assert_eq!(
        run.inst.tick_at(),
        Some(run.time(1000)),
        "the new schedule is armed at once"
    );
    // Armed afresh from the new tick: the next run is 10 s after it, not after 0.
    run.at(1000)
        .input(tick(3000))
        .expect(S::Scheduled, None, []);
    assert_eq!(run.inst.tick_at(), Some(run.time(11_000)));
}

#[test]
fn late_inputs_change_nothing_wherever_they_no_longer_apply() {
    let fault = || I::Fault {
        reason: "late".into(),
    };
    let stopped = Run::new(spec());
    let running = running(spec());
    let mut starting = Run::new(spec());
    starting.starts(0).spawns(0, 7);
    let mut spawning = Run::new(spec());
    spawning.starts(0);
    let mut waiting = Run::new(spec());
    waiting.starts(0).input(I::Blocked {
        reason: "db".into(),
    });
    let mut backing_off = Run::new(spec());
    backing_off
        .starts(0)
        .input(I::SpawnFailed { reason: "x".into() });
    let mut stopping = running.clone();
    stopping.at(5000).input(I::Stop);
    let mut scheduled = Run::new(every_10s(Default::default()));
    scheduled.at(0).input(tick(0));
    let cases = [
        (stopped, vec![I::Ready, fault(), I::Unblocked, I::Deadline]),
        (running, vec![I::Ready, I::Unblocked, I::Deadline]),
        // `ready: starttime`: a READY does not cut starttime short; the deadline is early.
        (starting, vec![I::Ready, I::Unblocked, I::Deadline]),
        (spawning, vec![I::Ready, fault(), I::Unblocked, I::Deadline]),
        (waiting, vec![I::Ready, fault(), I::Deadline]),
        (
            backing_off,
            vec![I::Ready, fault(), I::Unblocked, I::Deadline],
        ),
        (stopping, vec![I::Ready, fault(), I::Unblocked, I::Deadline]),
        (
            scheduled,
            vec![I::Ready, fault(), I::Unblocked, I::Deadline],
        ),
    ];
    for (mut run, inputs) in cases {
        let state = run.inst.state();
        for input in inputs {
            run.at(10).input(input).expect_nothing();
        }
        assert_eq!(run.inst.state(), state);
    }
}
