//! Tests for the instance state machine, written as scripts: each row feeds one input at a time
//! (milliseconds after a fixed start) and states what must follow: the state, the deadline
//! and every action, compared in full so an extra action fails the test.
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

/// One row of a script: at `ms`, feed `input`; then expect `state`, the deadline (ms after the
/// start, `None` for none) and exactly these actions, in order.
type Row = (u64, Input, State, Option<u64>, Vec<Action>);

/// An instance on a fake clock: `t0` plus the script's offsets.
struct Run {
    spec: ProgramSpec,
    inst: Instance,
    t0: Instant,
}

impl Run {
    fn new(spec: ProgramSpec) -> Run {
        Run {
            spec,
            inst: Instance::new("web", 0, "web".into()),
            t0: Instant::now(),
        }
    }

    fn at(&self, ms: u64) -> Instant {
        self.t0 + Duration::from_millis(ms)
    }

    fn check(&mut self, rows: Vec<Row>) -> &mut Run {
        for (n, (ms, input, state, deadline, actions)) in rows.into_iter().enumerate() {
            let what = format!("row {n}: {input:?} at {ms}ms");
            let mut out = Vec::new();
            self.inst.step(&self.spec, self.at(ms), input, &mut out);
            assert_eq!(out, actions, "{what}: actions");
            assert_eq!(self.inst.state(), state, "{what}: state");
            assert_eq!(
                self.inst.deadline(),
                deadline.map(|d| self.at(d)),
                "{what}: deadline"
            );
        }
        self
    }
}

/// Run a script from a fresh, stopped instance.
fn check(spec: ProgramSpec, rows: Vec<Row>) -> Run {
    let mut run = Run::new(spec);
    run.check(rows);
    run
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

fn is_bug(actions: &[Action]) -> bool {
    matches!(actions, [Action::Log(Event::Bug(_))])
}

/// Rows that take a fresh instance to running with `pid`, spawned at `at` (starttime 1 s).
fn up(at: u64, pid: u32) -> Vec<Row> {
    vec![
        (at, I::Start, S::Starting, None, vec![Action::Spawn]),
        (
            at,
            I::Spawned { pid },
            S::Starting,
            Some(at + 1000),
            vec![log(Event::Spawned { pid })],
        ),
        (
            at + 1000,
            I::Deadline,
            S::Running,
            None,
            vec![log(Event::Running)],
        ),
    ]
}

/// A running instance (pid 7, up since 0 ms).
fn running(spec: ProgramSpec) -> Run {
    check(spec, up(0, 7))
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
    check(
        spec_with(|s| s.starttime = Duration::ZERO),
        vec![
            (0, I::Start, S::Starting, None, vec![Action::Spawn]),
            (
                0,
                I::Spawned { pid: 7 },
                S::Running,
                None,
                vec![log(Event::Spawned { pid: 7 }), log(Event::Running)],
            ),
        ],
    );
}

#[test]
fn an_early_deadline_does_nothing() {
    let mut run = check(
        spec(),
        vec![
            (0, I::Start, S::Starting, None, vec![Action::Spawn]),
            (
                0,
                I::Spawned { pid: 7 },
                S::Starting,
                Some(1000),
                vec![log(Event::Spawned { pid: 7 })],
            ),
            (999, I::Deadline, S::Starting, Some(1000), vec![]),
            (
                1000,
                I::Deadline,
                S::Running,
                None,
                vec![log(Event::Running)],
            ),
            (5000, I::Deadline, S::Running, None, vec![]),
            (
                6000,
                I::Stop,
                S::Stopping,
                Some(8000),
                vec![log(Event::Stopping { signal: TERM }), signal(7, TERM)],
            ),
            (7999, I::Deadline, S::Stopping, Some(8000), vec![]),
        ],
    );
    run.check(vec![(
        8000,
        I::Deadline,
        S::Stopping,
        Some(9000),
        vec![
            signal(7, KILL),
            log(Event::Killed {
                after: Duration::from_secs(2),
            }),
        ],
    )]);
    // Killed, leader still there: an early deadline must not resend SIGKILL.
    run.check(vec![(8500, I::Deadline, S::Stopping, Some(9000), vec![])]);
}

#[test]
fn a_spawn_failure_backs_off_then_retries_and_counts_a_restart() {
    let run = check(
        spec(),
        vec![
            (0, I::Start, S::Starting, None, vec![Action::Spawn]),
            (
                0,
                I::SpawnFailed {
                    reason: "no such file".into(),
                },
                S::Backoff,
                Some(1000),
                vec![
                    log(Event::SpawnFailed {
                        reason: "no such file".into(),
                    }),
                    backoff(1),
                ],
            ),
            (500, I::Deadline, S::Backoff, Some(1000), vec![]),
            (1000, I::Deadline, S::Starting, None, vec![Action::Spawn]),
            (
                1000,
                I::Spawned { pid: 8 },
                S::Starting,
                Some(2000),
                vec![log(Event::Spawned { pid: 8 })],
            ),
            (
                2000,
                I::Deadline,
                S::Running,
                None,
                vec![log(Event::Running)],
            ),
        ],
    );
    assert_eq!(run.inst.restarts(), 1);
    assert_eq!(run.inst.last_error(), None, "cleared once running");
}

/// Rows for one failed try that starts at `at` (already spawning) and fails by exit code 1
/// 100 ms later, ending in `then` with `tail` as the last actions.
fn fail_once(at: u64, pid: u32, then: State, deadline: Option<u64>, tail: Action) -> Vec<Row> {
    vec![
        (
            at,
            I::Spawned { pid },
            S::Starting,
            Some(at + 1000),
            vec![log(Event::Spawned { pid })],
        ),
        (
            at + 100,
            I::Exited(ExitStatus::Code(1)),
            then,
            deadline,
            vec![exited(1, false), signal(pid, KILL), tail],
        ),
    ]
}

#[test]
fn fatal_after_exactly_startretries_failed_retries() {
    let mut rows = vec![(0, I::Start, S::Starting, None, vec![Action::Spawn])];
    // Failed starts 1, 2, 3 back off 1 s, 2 s, 4 s; each retry is an automatic restart.
    let mut at = 0;
    for (n, delay) in [1u64, 2, 4].into_iter().enumerate() {
        let pid = 10 + n as u32;
        let retry = at + 100 + delay * 1000;
        rows.extend(fail_once(at, pid, S::Backoff, Some(retry), backoff(delay)));
        rows.push((retry, I::Deadline, S::Starting, None, vec![Action::Spawn]));
        at = retry;
    }
    let reason = "4 failed starts in a row, last: exited with code 1 before starttime";
    rows.extend(fail_once(
        at,
        13,
        S::Fatal,
        None,
        log(Event::Fatal {
            reason: reason.into(),
        }),
    ));
    let run = check(spec(), rows);
    assert_eq!(run.inst.restarts(), 3);
    assert_eq!(run.inst.last_error(), Some(reason));
    assert_eq!(run.inst.last_exit(), Some(1));
    assert_eq!(run.inst.pid(), None);
}

#[test]
fn no_retries_means_fatal_on_the_first_failure() {
    let reason = "1 failed start in a row, last: no such file";
    check(
        spec_with(|s| s.startretries = 0),
        vec![
            (0, I::Start, S::Starting, None, vec![Action::Spawn]),
            (
                0,
                I::SpawnFailed {
                    reason: "no such file".into(),
                },
                S::Fatal,
                None,
                vec![
                    log(Event::SpawnFailed {
                        reason: "no such file".into(),
                    }),
                    log(Event::Fatal {
                        reason: reason.into(),
                    }),
                ],
            ),
        ],
    );
}

#[test]
fn an_exit_before_starttime_is_a_failed_start_even_with_code_zero() {
    let run = check(
        spec_with(|s| s.autorestart = AutoRestart::Never),
        vec![
            (0, I::Start, S::Starting, None, vec![Action::Spawn]),
            (
                0,
                I::Spawned { pid: 7 },
                S::Starting,
                Some(1000),
                vec![log(Event::Spawned { pid: 7 })],
            ),
            (
                999,
                I::Exited(ExitStatus::Code(0)),
                S::Backoff,
                Some(1999),
                vec![exited(0, false), signal(7, KILL), backoff(1)],
            ),
        ],
    );
    assert_eq!(
        run.inst.last_error(),
        Some("exited with code 0 before starttime")
    );
}

#[test]
fn a_signal_before_starttime_names_the_signal() {
    let run = check(
        spec_with(|s| s.startretries = 0),
        vec![
            (0, I::Start, S::Starting, None, vec![Action::Spawn]),
            (
                0,
                I::Spawned { pid: 7 },
                S::Starting,
                Some(1000),
                vec![log(Event::Spawned { pid: 7 })],
            ),
            (
                10,
                I::Exited(ExitStatus::Signaled(9)),
                S::Fatal,
                None,
                vec![
                    log(Event::Exited {
                        status: ExitStatus::Signaled(9),
                        expected: false,
                    }),
                    signal(7, KILL),
                    log(Event::Fatal {
                        reason: "1 failed start in a row, last: killed by SIGKILL before starttime"
                            .into(),
                    }),
                ],
            ),
        ],
    );
    assert_eq!(run.inst.last_exit(), Some(137));
}

#[test]
fn a_start_on_fatal_tries_again_with_full_retries() {
    let mut run = check(
        spec_with(|s| s.startretries = 1),
        vec![
            (0, I::Start, S::Starting, None, vec![Action::Spawn]),
            (
                0,
                I::SpawnFailed { reason: "x".into() },
                S::Backoff,
                Some(1000),
                vec![log(Event::SpawnFailed { reason: "x".into() }), backoff(1)],
            ),
            (1000, I::Deadline, S::Starting, None, vec![Action::Spawn]),
            (
                1000,
                I::SpawnFailed { reason: "x".into() },
                S::Fatal,
                None,
                vec![
                    log(Event::SpawnFailed { reason: "x".into() }),
                    log(Event::Fatal {
                        reason: "2 failed starts in a row, last: x".into(),
                    }),
                ],
            ),
        ],
    );
    run.check(vec![
        (5000, I::Start, S::Starting, None, vec![Action::Spawn]),
        // One failure is allowed again: backoff, not fatal.
        (
            5000,
            I::SpawnFailed { reason: "x".into() },
            S::Backoff,
            Some(6000),
            vec![log(Event::SpawnFailed { reason: "x".into() }), backoff(1)],
        ),
    ]);
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
    let mut rows = vec![(0, I::Start, S::Starting, None, vec![Action::Spawn])];
    let mut at = 0;
    for n in 0..10u32 {
        let delay = (100u64 << n.min(6)).min(5000);
        rows.push((
            at,
            input(),
            S::Backoff,
            Some(at + delay),
            vec![deferred(delay, n + 1)],
        ));
        at += delay;
        rows.push((at, I::Deadline, S::Starting, None, vec![Action::Spawn]));
    }
    rows.push((
        at,
        I::Spawned { pid: 7 },
        S::Running,
        None,
        vec![log(Event::Spawned { pid: 7 }), log(Event::Running)],
    ));
    let mut run = check(
        spec_with(|s| {
            s.startretries = 0;
            s.starttime = Duration::ZERO;
        }),
        rows,
    );
    assert_eq!(run.inst.restarts(), 0, "a deferred spawn is the same start");
    // The streak starts over after a spawn that worked.
    let mut out = Vec::new();
    let t = run.at(at + 20_000);
    run.inst
        .step(&run.spec, t, I::Exited(ExitStatus::Code(1)), &mut out);
    assert_eq!(run.inst.state(), S::Starting, "{out:?}");
    run.check(vec![(
        at + 20_000,
        input(),
        S::Backoff,
        Some(at + 20_100),
        vec![deferred(100, 1)],
    )]);
}

#[test]
fn a_deferred_spawn_anywhere_but_a_pidless_start_is_a_bug() {
    let mut run = running(spec());
    let mut out = Vec::new();
    let t = run.at(5000);
    run.inst.step(
        &run.spec,
        t,
        I::SpawnDeferred { reason: "x".into() },
        &mut out,
    );
    assert!(is_bug(&out), "{out:?}");
    assert_eq!(run.inst.state(), S::Running);
}

// --- running: exits and autorestart ---

/// From running (pid 7, up since 0), an exit at 20 s (a stable run) with `status`.
fn exit_from_running(autorestart: AutoRestart, status: ExitStatus) -> (Run, Vec<Action>) {
    let mut run = running(spec_with(|s| {
        s.autorestart = autorestart;
        s.exitcodes = vec![0, 2];
    }));
    let mut out = Vec::new();
    let at = run.at(20_000);
    run.inst.step(&run.spec, at, I::Exited(status), &mut out);
    (run, out)
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
        let (run, out) = exit_from_running(mode, ExitStatus::Code(code));
        let expected = code != 1;
        let mut want = vec![exited(code, expected), signal(7, KILL)];
        if again {
            want.push(Action::Spawn);
        }
        let what = format!("{mode:?}, code {code}");
        assert_eq!(out, want, "{what}");
        let state = if again { S::Starting } else { S::Exited };
        assert_eq!(run.inst.state(), state, "{what}");
        assert_eq!(run.inst.deadline(), None, "{what}");
        assert_eq!(run.inst.pid(), None, "{what}");
        assert_eq!(run.inst.last_exit(), Some(code), "{what}");
        assert_eq!(run.inst.restarts(), again as u32, "{what}");
    }
}

#[test]
fn last_exit_of_a_signal_is_128_plus_its_number() {
    let (run, out) = exit_from_running(AutoRestart::Never, ExitStatus::Signaled(9));
    assert_eq!(run.inst.last_exit(), Some(137));
    assert_eq!(
        out,
        [
            log(Event::Exited {
                status: ExitStatus::Signaled(9),
                expected: false
            }),
            signal(7, KILL)
        ]
    );
    let (run, _) = exit_from_running(AutoRestart::Never, ExitStatus::Signaled(15));
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
        let mut out = Vec::new();
        let now = run.at(crash);
        run.inst
            .step(&run.spec, now, I::Exited(ExitStatus::Code(1)), &mut out);
        assert_eq!(out[..2], [exited(1, false), signal(pid, KILL)]);
        let spawn_at = match &out[2..] {
            [Action::Spawn] => {
                delays.push(0);
                crash
            }
            [Action::Log(Event::Backoff { delay })] => {
                assert_eq!(run.inst.state(), S::Backoff);
                assert_eq!(run.inst.deadline(), Some(now + *delay));
                delays.push(delay.as_secs());
                let due = crash + delay.as_millis() as u64;
                run.check(vec![(
                    due,
                    I::Deadline,
                    S::Starting,
                    None,
                    vec![Action::Spawn],
                )]);
                due
            }
            other => panic!("unexpected actions {other:?}"),
        };
        pid += 1;
        run.check(up(spawn_at, pid)[1..].to_vec());
        at = spawn_at;
    }
    assert_eq!(delays, [0, 1, 2, 4, 8, 16, 32, 60, 60]);
    assert_eq!(run.inst.restarts(), 9);

    // A stable run (10 s) resets the streak: the next crash restarts at once.
    let crash = at + 10_000;
    run.check(vec![(
        crash,
        I::Exited(ExitStatus::Code(1)),
        S::Starting,
        None,
        vec![exited(1, false), signal(pid, KILL), Action::Spawn],
    )]);
    assert_eq!(run.inst.restarts(), 10);
}

#[test]
fn the_first_crash_restarts_at_once_then_waits_a_second() {
    let mut run = running(spec());
    run.check(vec![
        (
            20_000,
            I::Exited(ExitStatus::Code(3)),
            S::Starting,
            None,
            vec![exited(3, false), signal(7, KILL), Action::Spawn],
        ),
        (
            20_000,
            I::Spawned { pid: 8 },
            S::Starting,
            Some(21_000),
            vec![log(Event::Spawned { pid: 8 })],
        ),
        (
            21_000,
            I::Deadline,
            S::Running,
            None,
            vec![log(Event::Running)],
        ),
        (
            22_000,
            I::Exited(ExitStatus::Code(3)),
            S::Backoff,
            Some(23_000),
            vec![exited(3, false), signal(8, KILL), backoff(1)],
        ),
        (23_000, I::Deadline, S::Starting, None, vec![Action::Spawn]),
    ]);
    assert_eq!(run.inst.restarts(), 2);
}

// --- stopping ---

#[test]
fn stop_from_running_signals_the_group_then_waits_for_it_to_empty() {
    let run = check(
        spec(),
        [
            up(0, 7),
            vec![
                (
                    5000,
                    I::Stop,
                    S::Stopping,
                    Some(7000),
                    vec![log(Event::Stopping { signal: TERM }), signal(7, TERM)],
                ),
                (
                    5100,
                    I::Exited(ExitStatus::Signaled(15)),
                    S::Stopping,
                    Some(5120),
                    vec![
                        log(Event::Exited {
                            status: ExitStatus::Signaled(15),
                            expected: true,
                        }),
                        Action::CheckGroup { pgid: 7 },
                    ],
                ),
                (
                    5100,
                    I::GroupEmpty,
                    S::Stopped,
                    None,
                    vec![log(Event::Stopped)],
                ),
            ],
        ]
        .concat(),
    );
    assert!(!run.inst.want_up());
    assert_eq!(run.inst.pid(), None);
    assert_eq!(run.inst.pgid(), None);
    assert_eq!(run.inst.last_exit(), Some(143));
    assert_eq!(run.inst.restarts(), 0);
}

#[test]
fn stop_from_starting_uses_stoptime_too() {
    check(
        spec(),
        vec![
            (0, I::Start, S::Starting, None, vec![Action::Spawn]),
            (
                0,
                I::Spawned { pid: 7 },
                S::Starting,
                Some(1000),
                vec![log(Event::Spawned { pid: 7 })],
            ),
            (
                500,
                I::Stop,
                S::Stopping,
                Some(2500),
                vec![log(Event::Stopping { signal: TERM }), signal(7, TERM)],
            ),
            // The starttime deadline is gone: an exit now is not a failed start.
            (
                600,
                I::Exited(ExitStatus::Code(0)),
                S::Stopping,
                Some(620),
                vec![exited(0, true), Action::CheckGroup { pgid: 7 }],
            ),
            (
                600,
                I::GroupEmpty,
                S::Stopped,
                None,
                vec![log(Event::Stopped)],
            ),
        ],
    );
}

#[test]
fn the_stopsignal_is_the_configured_one() {
    let usr1 = Signal(10);
    check(
        spec_with(|s| s.stopsignal = usr1),
        [
            up(0, 7),
            vec![(
                5000,
                I::Stop,
                S::Stopping,
                Some(7000),
                vec![log(Event::Stopping { signal: usr1 }), signal(7, usr1)],
            )],
        ]
        .concat(),
    );
}

#[test]
fn stop_from_backoff_goes_straight_to_stopped() {
    let run = check(
        spec(),
        vec![
            (0, I::Start, S::Starting, None, vec![Action::Spawn]),
            (
                0,
                I::SpawnFailed { reason: "x".into() },
                S::Backoff,
                Some(1000),
                vec![log(Event::SpawnFailed { reason: "x".into() }), backoff(1)],
            ),
            (500, I::Stop, S::Stopped, None, vec![log(Event::Stopped)]),
            // The old backoff deadline may still fire: it is stale.
            (1000, I::Deadline, S::Stopped, None, vec![]),
        ],
    );
    assert!(!run.inst.want_up());
}

#[test]
fn a_leader_that_ignores_the_stopsignal_is_killed_after_stoptime() {
    let after = Duration::from_secs(2);
    check(
        spec(),
        [
            up(0, 7),
            vec![
                (
                    5000,
                    I::Stop,
                    S::Stopping,
                    Some(7000),
                    vec![log(Event::Stopping { signal: TERM }), signal(7, TERM)],
                ),
                (
                    7000,
                    I::Deadline,
                    S::Stopping,
                    Some(8000),
                    vec![signal(7, KILL), log(Event::Killed { after })],
                ),
                // Still there a second later (uninterruptible sleep): SIGKILL again, no new "killed".
                (
                    8000,
                    I::Deadline,
                    S::Stopping,
                    Some(9000),
                    vec![signal(7, KILL)],
                ),
                (
                    8200,
                    I::Exited(ExitStatus::Signaled(9)),
                    S::Stopping,
                    Some(8220),
                    vec![
                        log(Event::Exited {
                            status: ExitStatus::Signaled(9),
                            expected: true,
                        }),
                        Action::CheckGroup { pgid: 7 },
                    ],
                ),
                (
                    8200,
                    I::GroupEmpty,
                    S::Stopped,
                    None,
                    vec![log(Event::Stopped)],
                ),
            ],
        ]
        .concat(),
    );
}

#[test]
fn stragglers_after_the_leader_are_rechecked_then_killed_at_stoptime() {
    let after = Duration::from_secs(2);
    let mut run = check(
        spec(),
        [
            up(0, 7),
            vec![
                (
                    5000,
                    I::Stop,
                    S::Stopping,
                    Some(7000),
                    vec![log(Event::Stopping { signal: TERM }), signal(7, TERM)],
                ),
                // The leader goes, a child of it stays: the group is not empty yet.
                (
                    5000,
                    I::Exited(ExitStatus::Code(0)),
                    S::Stopping,
                    Some(5020),
                    vec![exited(0, true), Action::CheckGroup { pgid: 7 }],
                ),
                (
                    5020,
                    I::Deadline,
                    S::Stopping,
                    Some(5040),
                    vec![Action::CheckGroup { pgid: 7 }],
                ),
                // Re-checks never go past the kill time.
                (
                    6990,
                    I::Deadline,
                    S::Stopping,
                    Some(7000),
                    vec![Action::CheckGroup { pgid: 7 }],
                ),
                (
                    7000,
                    I::Deadline,
                    S::Stopping,
                    Some(7020),
                    vec![
                        signal(7, KILL),
                        log(Event::Killed { after }),
                        Action::CheckGroup { pgid: 7 },
                    ],
                ),
                (
                    7020,
                    I::Deadline,
                    S::Stopping,
                    Some(7040),
                    vec![Action::CheckGroup { pgid: 7 }],
                ),
                (
                    7020,
                    I::GroupEmpty,
                    S::Stopped,
                    None,
                    vec![log(Event::Stopped)],
                ),
            ],
        ]
        .concat(),
    );
    assert_eq!(run.inst.pgid(), None);
    // A stray GroupEmpty afterwards is a bug, and changes nothing.
    let mut out = Vec::new();
    let now = run.at(8000);
    run.inst
        .step(&run.spec.clone(), now, I::GroupEmpty, &mut out);
    assert!(is_bug(&out), "{out:?}");
    assert_eq!(run.inst.state(), S::Stopped);
}

#[test]
fn a_leader_exit_reported_late_never_leaves_a_deadline_in_the_past() {
    // The kill time (7 s) has passed but the loop reaps the leader before firing the deadline.
    check(
        spec(),
        [
            up(0, 7),
            vec![
                (
                    5000,
                    I::Stop,
                    S::Stopping,
                    Some(7000),
                    vec![log(Event::Stopping { signal: TERM }), signal(7, TERM)],
                ),
                (
                    7500,
                    I::Exited(ExitStatus::Code(0)),
                    S::Stopping,
                    Some(7500),
                    vec![exited(0, true), Action::CheckGroup { pgid: 7 }],
                ),
                (
                    7500,
                    I::Deadline,
                    S::Stopping,
                    Some(7520),
                    vec![
                        signal(7, KILL),
                        log(Event::Killed {
                            after: Duration::from_secs(2),
                        }),
                        Action::CheckGroup { pgid: 7 },
                    ],
                ),
            ],
        ]
        .concat(),
    );
}

#[test]
fn restart_while_running_stops_then_spawns_once_the_group_is_empty() {
    let mut run = check(
        spec(),
        [
            up(0, 7),
            vec![
                (
                    5000,
                    I::Restart,
                    S::Stopping,
                    Some(7000),
                    vec![log(Event::Stopping { signal: TERM }), signal(7, TERM)],
                ),
                (
                    5100,
                    I::Exited(ExitStatus::Code(0)),
                    S::Stopping,
                    Some(5120),
                    vec![exited(0, true), Action::CheckGroup { pgid: 7 }],
                ),
                (
                    5100,
                    I::GroupEmpty,
                    S::Starting,
                    None,
                    vec![log(Event::Stopped), Action::Spawn],
                ),
            ],
        ]
        .concat(),
    );
    run.check(up(5100, 8)[1..].to_vec());
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
        check(
            spec(),
            [
                up(0, 7),
                vec![
                    (
                        5000,
                        I::Stop,
                        S::Stopping,
                        Some(7000),
                        vec![log(Event::Stopping { signal: TERM }), signal(7, TERM)],
                    ),
                    (5050, I::Start, S::Stopping, Some(7000), vec![]),
                    (
                        5100,
                        I::Exited(ExitStatus::Code(0)),
                        S::Stopping,
                        Some(5120),
                        vec![exited(0, true), Action::CheckGroup { pgid: 7 }],
                    ),
                ],
            ]
            .concat(),
        )
    };
    let run = {
        let mut r = stopping();
        r.check(vec![(
            5100,
            I::GroupEmpty,
            S::Starting,
            None,
            vec![log(Event::Stopped), Action::Spawn],
        )]);
        r
    };
    assert!(run.inst.want_up());

    let mut run = stopping();
    run.check(vec![
        (5110, I::Stop, S::Stopping, Some(5120), vec![]),
        (
            5120,
            I::Deadline,
            S::Stopping,
            Some(5140),
            vec![Action::CheckGroup { pgid: 7 }],
        ),
        (
            5120,
            I::GroupEmpty,
            S::Stopped,
            None,
            vec![log(Event::Stopped)],
        ),
    ]);
    assert!(!run.inst.want_up());
}

#[test]
fn stop_when_down_only_records_the_intent() {
    let down: Vec<(&str, Run)> = vec![
        ("stopped", Run::new(spec())),
        (
            "exited",
            exit_from_running(AutoRestart::Never, ExitStatus::Code(0)).0,
        ),
        (
            "fatal",
            check(
                spec_with(|s| s.startretries = 0),
                vec![
                    (0, I::Start, S::Starting, None, vec![Action::Spawn]),
                    (
                        0,
                        I::SpawnFailed { reason: "x".into() },
                        S::Fatal,
                        None,
                        vec![
                            log(Event::SpawnFailed { reason: "x".into() }),
                            log(Event::Fatal {
                                reason: "1 failed start in a row, last: x".into(),
                            }),
                        ],
                    ),
                ],
            ),
        ),
    ];
    for (name, mut run) in down {
        let state = run.inst.state();
        assert_eq!(state.as_str(), name);
        run.check(vec![
            (30_000, I::Stop, state, None, vec![]),
            (30_000, I::Shutdown, state, None, vec![]),
            (30_000, I::Deadline, state, None, vec![]),
        ]);
        assert!(!run.inst.want_up(), "{name}");
    }
}

#[test]
fn shutdown_stops_but_keeps_the_intent() {
    let run = check(
        spec(),
        [
            up(0, 7),
            vec![
                (
                    5000,
                    I::Shutdown,
                    S::Stopping,
                    Some(7000),
                    vec![log(Event::Stopping { signal: TERM }), signal(7, TERM)],
                ),
                (
                    5100,
                    I::Exited(ExitStatus::Code(0)),
                    S::Stopping,
                    Some(5120),
                    vec![exited(0, true), Action::CheckGroup { pgid: 7 }],
                ),
                (
                    5100,
                    I::GroupEmpty,
                    S::Stopped,
                    None,
                    vec![log(Event::Stopped)],
                ),
            ],
        ]
        .concat(),
    );
    assert!(run.inst.want_up());

    // From backoff too.
    let run = check(
        spec(),
        vec![
            (0, I::Start, S::Starting, None, vec![Action::Spawn]),
            (
                0,
                I::SpawnFailed { reason: "x".into() },
                S::Backoff,
                Some(1000),
                vec![log(Event::SpawnFailed { reason: "x".into() }), backoff(1)],
            ),
            (10, I::Shutdown, S::Stopped, None, vec![log(Event::Stopped)]),
        ],
    );
    assert!(run.inst.want_up());
}

#[test]
fn shutdown_while_a_restart_is_queued_cancels_the_start() {
    check(
        spec(),
        [
            up(0, 7),
            vec![
                (
                    5000,
                    I::Restart,
                    S::Stopping,
                    Some(7000),
                    vec![log(Event::Stopping { signal: TERM }), signal(7, TERM)],
                ),
                (5010, I::Shutdown, S::Stopping, Some(7000), vec![]),
                (
                    5100,
                    I::Exited(ExitStatus::Code(0)),
                    S::Stopping,
                    Some(5120),
                    vec![exited(0, true), Action::CheckGroup { pgid: 7 }],
                ),
                (
                    5100,
                    I::GroupEmpty,
                    S::Stopped,
                    None,
                    vec![log(Event::Stopped)],
                ),
            ],
        ]
        .concat(),
    );
}

#[test]
fn start_when_already_up_changes_nothing() {
    let mut run = running(spec());
    run.check(vec![(2000, I::Start, S::Running, None, vec![])]);
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
        let now = run.at(1000);
        run.inst.step(&run.spec, now, input, &mut out);
    }
    assert_eq!(run.inst.state(), S::Stopping);
    assert!(run.inst.deadline().is_some_and(|d| d > run.at(1000)));
    assert!(!out.iter().any(|a| matches!(a, Action::Log(Event::Bug(_)))));
}

// --- inputs that cannot happen ---

/// Feed `input` at `ms` and check that it is logged as a bug and changes nothing.
fn assert_ignored_as_bug(run: &mut Run, ms: u64, input: Input) {
    let before = format!("{:?}", run.inst);
    let mut out = Vec::new();
    let now = run.at(ms);
    run.inst.step(&run.spec, now, input.clone(), &mut out);
    assert!(is_bug(&out), "{input:?}: {out:?}");
    assert_eq!(
        format!("{:?}", run.inst),
        before,
        "{input:?} changed the instance"
    );
}

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
        assert_ignored_as_bug(&mut stopped, 0, i);
    }

    let mut running = running(spec());
    for i in [spawned.clone(), failed.clone(), I::GroupEmpty] {
        assert_ignored_as_bug(&mut running, 2000, i);
    }

    let mut backoff = check(
        spec(),
        vec![
            (0, I::Start, S::Starting, None, vec![Action::Spawn]),
            (
                0,
                failed.clone(),
                S::Backoff,
                Some(1000),
                vec![log(Event::SpawnFailed { reason: "x".into() }), backoff(1)],
            ),
        ],
    );
    for i in [
        spawned.clone(),
        failed.clone(),
        status.clone(),
        I::GroupEmpty,
    ] {
        assert_ignored_as_bug(&mut backoff, 10, i);
    }

    let mut starting = check(spec(), up(0, 7)[..2].to_vec());
    // A second Spawned would lose track of the first process.
    for i in [spawned.clone(), I::GroupEmpty] {
        assert_ignored_as_bug(&mut starting, 10, i);
    }

    let mut spawning = check(spec(), up(0, 7)[..1].to_vec());
    // Nothing was spawned yet, so nothing can have exited.
    assert_ignored_as_bug(&mut spawning, 0, status.clone());

    let mut stopping = check(
        spec(),
        [
            up(0, 7),
            vec![(
                5000,
                I::Stop,
                S::Stopping,
                Some(7000),
                vec![log(Event::Stopping { signal: TERM }), signal(7, TERM)],
            )],
        ]
        .concat(),
    );
    assert_ignored_as_bug(&mut stopping, 5010, spawned.clone());
    stopping.check(vec![(
        5020,
        status.clone(),
        S::Stopping,
        Some(5040),
        vec![exited(0, true), Action::CheckGroup { pgid: 7 }],
    )]);
    // The leader cannot exit twice.
    assert_ignored_as_bug(&mut stopping, 5030, status);
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

/// Rows that arm the schedule at 0 and run the first tick at 10 s as pid 7.
fn first_run() -> Vec<Row> {
    vec![
        (0, tick(0), S::Scheduled, None, vec![]),
        (10_000, tick(10_000), S::Starting, None, vec![Action::Spawn]),
        (
            10_000,
            I::Spawned { pid: 7 },
            S::Running,
            None,
            vec![log(Event::Spawned { pid: 7 }), log(Event::Running)],
        ),
    ]
}

#[test]
fn a_scheduled_job_runs_per_tick_and_goes_back_to_scheduled() {
    let mut run = check(every_10s(Default::default()), first_run());
    assert_eq!(run.inst.tick_at(), Some(run.at(20_000)));
    run.check(vec![(
        10_200,
        I::Exited(ExitStatus::Code(0)),
        S::Scheduled,
        None,
        vec![exited(0, true), finished(200, 0, true), signal(7, KILL)],
    )]);
    assert_eq!(run.inst.last_exit(), Some(0));
    assert_eq!(run.inst.history().len(), 1);
    assert_eq!(run.inst.history()[0].duration, Duration::from_millis(200));
    // An early tick does nothing; the next one runs again, still on the 10 s grid.
    run.check(vec![
        (19_999, tick(19_999), S::Scheduled, None, vec![]),
        (20_300, tick(20_300), S::Starting, None, vec![Action::Spawn]),
    ]);
    assert_eq!(run.inst.tick_at(), Some(run.at(30_000)));
}

#[test]
fn a_failed_run_is_logged_and_waits_for_the_next_tick() {
    let mut run = check(every_10s(Default::default()), first_run());
    run.check(vec![(
        10_050,
        I::Exited(ExitStatus::Code(3)),
        S::Scheduled,
        None,
        vec![exited(3, false), finished(50, 3, false), signal(7, KILL)],
    )]);
    run.check(vec![
        (20_000, tick(20_000), S::Starting, None, vec![Action::Spawn]),
        (
            20_000,
            I::SpawnFailed {
                reason: "no such file".into(),
            },
            S::Scheduled,
            None,
            vec![log(Event::SpawnFailed {
                reason: "no such file".into(),
            })],
        ),
    ]);
    assert_eq!(run.inst.last_error(), Some("no such file"));
    assert_eq!(run.inst.history().len(), 2);
    assert_eq!(run.inst.history()[1].exit, None);
}

#[test]
fn history_keeps_the_last_ten_runs() {
    let mut run = check(
        every_10s(Default::default()),
        vec![(0, tick(0), S::Scheduled, None, vec![])],
    );
    for n in 1..=12u64 {
        let at = n * 10_000;
        let mut out = Vec::new();
        run.inst.step(&run.spec, run.at(at), tick(at), &mut out);
        run.inst.step(
            &run.spec,
            run.at(at),
            I::Spawned { pid: n as u32 },
            &mut out,
        );
        run.inst.step(
            &run.spec,
            run.at(at + n),
            I::Exited(ExitStatus::Code(n as i32)),
            &mut out,
        );
    }
    let codes: Vec<_> = run.inst.history().iter().map(|r| r.exit).collect();
    assert_eq!(codes, (3..=12).map(Some).collect::<Vec<_>>());
}

#[test]
fn overlap_skip_logs_skipped_while_the_run_goes_on() {
    check(
        every_10s(crate::config::Overlap::Skip),
        first_run()
            .into_iter()
            .chain([
                (
                    20_000,
                    tick(20_000),
                    S::Running,
                    None,
                    vec![log(Event::Skipped)],
                ),
                (
                    25_000,
                    I::Exited(ExitStatus::Code(0)),
                    S::Scheduled,
                    None,
                    vec![exited(0, true), finished(15_000, 0, true), signal(7, KILL)],
                ),
            ])
            .collect(),
    );
}

#[test]
fn overlap_queue_runs_once_more_right_after() {
    check(
        every_10s(crate::config::Overlap::Queue),
        first_run()
            .into_iter()
            .chain([
                (
                    20_000,
                    tick(20_000),
                    S::Running,
                    None,
                    vec![log(Event::Queued)],
                ),
                // More ticks meanwhile collapse into the one queued run.
                (
                    30_000,
                    tick(30_000),
                    S::Running,
                    None,
                    vec![log(Event::Skipped)],
                ),
                (
                    35_000,
                    I::Exited(ExitStatus::Code(0)),
                    S::Starting,
                    None,
                    vec![
                        exited(0, true),
                        finished(25_000, 0, true),
                        signal(7, KILL),
                        Action::Spawn,
                    ],
                ),
                (
                    35_000,
                    I::Spawned { pid: 8 },
                    S::Running,
                    None,
                    vec![log(Event::Spawned { pid: 8 }), log(Event::Running)],
                ),
                (
                    36_000,
                    I::Exited(ExitStatus::Code(0)),
                    S::Scheduled,
                    None,
                    vec![exited(0, true), finished(1000, 0, true), signal(8, KILL)],
                ),
            ])
            .collect(),
    );
}

#[test]
fn overlap_kill_stops_the_old_run_then_starts_a_new_one() {
    check(
        every_10s(crate::config::Overlap::Kill),
        first_run()
            .into_iter()
            .chain([
                (
                    20_000,
                    tick(20_000),
                    S::Stopping,
                    Some(22_000),
                    vec![
                        log(Event::Replacing),
                        log(Event::Stopping { signal: TERM }),
                        signal(7, TERM),
                    ],
                ),
                // Another tick while it stops is skipped: a new run is coming anyway.
                (20_500, tick(20_500), S::Stopping, Some(22_000), vec![]),
                (
                    21_000,
                    I::Exited(ExitStatus::Signaled(15)),
                    S::Stopping,
                    Some(21_020),
                    vec![
                        log(Event::Exited {
                            status: ExitStatus::Signaled(15),
                            expected: true,
                        }),
                        finished(11_000, 143, true),
                        Action::CheckGroup { pgid: 7 },
                    ],
                ),
                (
                    21_000,
                    I::GroupEmpty,
                    S::Starting,
                    None,
                    vec![log(Event::Stopped), Action::Spawn],
                ),
            ])
            .collect(),
    );
}

#[test]
fn start_runs_a_scheduled_job_now_without_moving_its_schedule() {
    let mut run = check(
        every_10s(Default::default()),
        vec![
            (0, tick(0), S::Scheduled, None, vec![]),
            (3_000, I::Start, S::Starting, None, vec![Action::Spawn]),
            (
                3_000,
                I::Spawned { pid: 7 },
                S::Running,
                None,
                vec![log(Event::Spawned { pid: 7 }), log(Event::Running)],
            ),
        ],
    );
    assert_eq!(run.inst.tick_at(), Some(run.at(10_000)));
    run.check(vec![(
        3_100,
        I::Exited(ExitStatus::Code(0)),
        S::Scheduled,
        None,
        vec![exited(0, true), finished(100, 0, true), signal(7, KILL)],
    )]);
    assert_eq!(run.inst.tick_at(), Some(run.at(10_000)));
}

#[test]
fn stop_ends_the_run_and_the_schedule_until_a_start() {
    let mut run = check(every_10s(Default::default()), first_run());
    run.check(vec![
        (
            12_000,
            I::Stop,
            S::Stopping,
            Some(14_000),
            vec![log(Event::Stopping { signal: TERM }), signal(7, TERM)],
        ),
        (
            12_100,
            I::Exited(ExitStatus::Code(0)),
            S::Stopping,
            Some(12_120),
            vec![
                exited(0, true),
                finished(2_100, 0, true),
                Action::CheckGroup { pgid: 7 },
            ],
        ),
        (
            12_100,
            I::GroupEmpty,
            S::Stopped,
            None,
            vec![log(Event::Stopped)],
        ),
        (20_000, tick(20_000), S::Stopped, None, vec![]),
    ]);
    assert_eq!(run.inst.tick_at(), None);
    assert!(!run.inst.want_up());
    // A start runs it now and arms the schedule again at the next tick input (fed at once).
    run.check(vec![
        (30_000, I::Start, S::Starting, None, vec![Action::Spawn]),
        (
            30_000,
            I::Spawned { pid: 8 },
            S::Running,
            None,
            vec![log(Event::Spawned { pid: 8 }), log(Event::Running)],
        ),
    ]);
    assert_eq!(run.inst.tick_at(), Some(run.at(30_000)));
    run.check(vec![(30_000, tick(30_000), S::Running, None, vec![])]);
    assert_eq!(run.inst.tick_at(), Some(run.at(40_000)));
}

#[test]
fn stop_while_scheduled_goes_straight_to_stopped() {
    let run = check(
        every_10s(Default::default()),
        vec![
            (0, tick(0), S::Scheduled, None, vec![]),
            (1_000, I::Stop, S::Stopped, None, vec![log(Event::Stopped)]),
            (10_000, tick(10_000), S::Stopped, None, vec![]),
        ],
    );
    assert_eq!(run.inst.tick_at(), None);
}

#[test]
fn an_operator_stopped_job_is_not_armed_at_startup() {
    let mut run = Run::new(every_10s(Default::default()));
    run.inst.restore(0, false);
    run.check(vec![(0, tick(0), S::Stopped, None, vec![])]);
    assert_eq!(run.inst.tick_at(), None);
}

#[test]
fn first_run_now_runs_when_armed() {
    check(
        spec_with(|s| {
            s.schedule = Some(crate::config::Schedule::Every(Duration::from_secs(10)));
            s.sched.first_run = crate::config::FirstRun::Now;
        }),
        vec![(0, tick(0), S::Starting, None, vec![Action::Spawn])],
    );
}

#[test]
fn shutdown_drops_the_schedule() {
    let run = check(
        every_10s(Default::default()),
        vec![
            (0, tick(0), S::Scheduled, None, vec![]),
            (
                1_000,
                I::Shutdown,
                S::Stopped,
                None,
                vec![log(Event::Stopped)],
            ),
        ],
    );
    assert_eq!(run.inst.tick_at(), None);
    assert!(run.inst.want_up(), "a shutdown keeps the intent");
}

#[test]
fn a_tick_for_a_job_without_schedule_does_nothing() {
    check(spec(), vec![(0, tick(0), S::Stopped, None, vec![])]);
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
    let mut run = check(
        notify(),
        vec![
            (0, I::Start, S::Starting, None, vec![Action::Spawn]),
            (
                0,
                I::Spawned { pid: 7 },
                S::Starting,
                Some(5000),
                vec![log(Event::Spawned { pid: 7 })],
            ),
            (3000, I::Ready, S::Running, None, vec![log(Event::Running)]),
        ],
    );
    // READY=1 again while running changes nothing.
    run.check(vec![(4000, I::Ready, S::Running, None, vec![])]);
}

#[test]
fn not_ready_within_ready_timeout_is_a_failed_start_after_a_proper_stop() {
    let reason = "not ready within ready_timeout 5s";
    check(
        notify(),
        vec![
            (0, I::Start, S::Starting, None, vec![Action::Spawn]),
            (
                0,
                I::Spawned { pid: 7 },
                S::Starting,
                Some(5000),
                vec![log(Event::Spawned { pid: 7 })],
            ),
            (
                5000,
                I::Deadline,
                S::Stopping,
                Some(7000),
                vec![
                    fault(reason),
                    log(Event::Stopping { signal: TERM }),
                    signal(7, TERM),
                ],
            ),
            (
                5100,
                I::Exited(ExitStatus::Signaled(15)),
                S::Stopping,
                Some(5120),
                vec![
                    log(Event::Exited {
                        status: ExitStatus::Signaled(15),
                        expected: true,
                    }),
                    Action::CheckGroup { pgid: 7 },
                ],
            ),
            (
                5120,
                I::GroupEmpty,
                S::Backoff,
                Some(6120),
                vec![log(Event::Stopped), backoff(1)],
            ),
        ],
    );
}

#[test]
fn a_ready_timeout_with_no_retries_left_is_fatal() {
    let run = check(
        spec_with(|s| {
            s.health.ready = Ready::Fd(3);
            s.health.ready_timeout = Duration::from_secs(5);
            s.startretries = 0;
        }),
        vec![
            (0, I::Start, S::Starting, None, vec![Action::Spawn]),
            (
                0,
                I::Spawned { pid: 7 },
                S::Starting,
                Some(5000),
                vec![log(Event::Spawned { pid: 7 })],
            ),
            (
                5000,
                I::Deadline,
                S::Stopping,
                Some(7000),
                vec![
                    fault("not ready within ready_timeout 5s"),
                    log(Event::Stopping { signal: TERM }),
                    signal(7, TERM),
                ],
            ),
        ],
    );
    let mut run = run;
    let mut out = Vec::new();
    run.inst.step(
        &run.spec,
        run.at(5010),
        I::Exited(ExitStatus::Code(0)),
        &mut out,
    );
    out.clear();
    run.inst
        .step(&run.spec, run.at(5020), I::GroupEmpty, &mut out);
    assert_eq!(run.inst.state(), S::Fatal);
    assert!(run
        .inst
        .last_error()
        .is_some_and(|e| e.contains("not ready within ready_timeout 5s")));
}

#[test]
fn a_fault_while_running_restarts_and_counts() {
    let mut run = running(spec());
    run.check(vec![
        (
            5000,
            I::Fault {
                reason: "watchdog: no WATCHDOG=1 for 2s".into(),
            },
            S::Stopping,
            Some(7000),
            vec![
                fault("watchdog: no WATCHDOG=1 for 2s"),
                log(Event::Stopping { signal: TERM }),
                signal(7, TERM),
            ],
        ),
        (
            5100,
            I::Exited(ExitStatus::Signaled(15)),
            S::Stopping,
            Some(5120),
            vec![
                log(Event::Exited {
                    status: ExitStatus::Signaled(15),
                    expected: true,
                }),
                Action::CheckGroup { pgid: 7 },
            ],
        ),
        (
            5120,
            I::GroupEmpty,
            S::Starting,
            None,
            vec![log(Event::Stopped), Action::Spawn],
        ),
    ]);
    assert_eq!(run.inst.restarts(), 1);
}

#[test]
fn ready_and_fault_when_nothing_runs_change_nothing() {
    check(
        spec(),
        vec![
            (0, I::Ready, S::Stopped, None, vec![]),
            (
                0,
                I::Fault {
                    reason: "late".into(),
                },
                S::Stopped,
                None,
                vec![],
            ),
            (0, I::Unblocked, S::Stopped, None, vec![]),
        ],
    );
    // With ready: starttime, a stray READY does not cut starttime short.
    check(
        spec(),
        vec![
            (0, I::Start, S::Starting, None, vec![Action::Spawn]),
            (
                0,
                I::Spawned { pid: 7 },
                S::Starting,
                Some(1000),
                vec![log(Event::Spawned { pid: 7 })],
            ),
            (10, I::Ready, S::Starting, Some(1000), vec![]),
        ],
    );
}

#[test]
fn a_blocked_spawn_waits_until_unblocked() {
    let waiting = |r: &str| log(Event::Waiting { reason: r.into() });
    let mut run = check(
        spec(),
        vec![
            (0, I::Start, S::Starting, None, vec![Action::Spawn]),
            (
                0,
                I::Blocked {
                    reason: "waiting for db (starting)".into(),
                },
                S::Starting,
                None,
                vec![waiting("waiting for db (starting)")],
            ),
            // The same reason again is not logged again; a new one is.
            (
                10,
                I::Blocked {
                    reason: "waiting for db (starting)".into(),
                },
                S::Starting,
                None,
                vec![],
            ),
            (
                20,
                I::Blocked {
                    reason: "waiting for db, which is fatal".into(),
                },
                S::Starting,
                None,
                vec![waiting("waiting for db, which is fatal")],
            ),
        ],
    );
    assert!(run.inst.is_waiting());
    assert_eq!(run.inst.pid(), None);
    assert_eq!(
        run.inst.last_error(),
        Some("waiting for db, which is fatal")
    );
    run.check(vec![
        (30, I::Unblocked, S::Starting, None, vec![Action::Spawn]),
        (
            30,
            I::Spawned { pid: 8 },
            S::Starting,
            Some(1030),
            vec![log(Event::Spawned { pid: 8 })],
        ),
    ]);
    assert!(!run.inst.is_waiting());
    assert_eq!(run.inst.last_error(), None);
}

#[test]
fn a_waiting_instance_stops_without_a_process() {
    let mut run = check(
        spec(),
        vec![
            (0, I::Start, S::Starting, None, vec![Action::Spawn]),
            (
                0,
                I::Blocked {
                    reason: "waiting for db".into(),
                },
                S::Starting,
                None,
                vec![log(Event::Waiting {
                    reason: "waiting for db".into(),
                })],
            ),
            (5, I::Stop, S::Stopped, None, vec![log(Event::Stopped)]),
        ],
    );
    assert!(!run.inst.want_up());
    run.check(vec![
        (6, I::Start, S::Starting, None, vec![Action::Spawn]),
        (
            6,
            I::Blocked {
                reason: "waiting for db".into(),
            },
            S::Starting,
            None,
            vec![log(Event::Waiting {
                reason: "waiting for db".into(),
            })],
        ),
        (7, I::Shutdown, S::Stopped, None, vec![log(Event::Stopped)]),
    ]);
}

#[test]
fn blocked_outside_a_spawn_is_a_bug() {
    let mut run = running(spec());
    let mut out = Vec::new();
    run.inst.step(
        &run.spec,
        run.at(2000),
        I::Blocked { reason: "x".into() },
        &mut out,
    );
    assert!(is_bug(&out));
    assert_eq!(run.inst.state(), S::Running);
}

// --- an exec that fails after the fork ---

#[test]
fn an_exec_failure_after_the_fork_is_a_failed_start_with_its_reason() {
    let failed = I::SpawnFailed {
        reason: "/x: permission denied".into(),
    };
    let mut run = check(spec(), up(0, 7)[..2].to_vec());
    run.check(vec![(
        3,
        failed,
        S::Backoff,
        Some(1003),
        vec![
            log(Event::SpawnFailed {
                reason: "/x: permission denied".into(),
            }),
            backoff(1),
        ],
    )]);
    assert_eq!(run.inst.pid(), None);
    assert_eq!(run.inst.pgid(), None);
    assert_eq!(run.inst.last_error(), Some("/x: permission denied"));
}

#[test]
fn an_exec_failure_during_a_stop_ends_it_like_an_exit() {
    let mut run = check(
        spec(),
        [
            up(0, 7)[..2].to_vec(),
            vec![(
                5,
                I::Stop,
                S::Stopping,
                Some(2005),
                vec![log(Event::Stopping { signal: TERM }), signal(7, TERM)],
            )],
        ]
        .concat(),
    );
    run.check(vec![(
        6,
        I::SpawnFailed {
            reason: "/x: no such file or directory".into(),
        },
        S::Stopping,
        Some(26),
        vec![exited(127, true), Action::CheckGroup { pgid: 7 }],
    )]);
    run.check(vec![(
        7,
        I::GroupEmpty,
        S::Stopped,
        None,
        vec![log(Event::Stopped)],
    )]);
}

#[test]
fn an_operator_stop_held_for_dependents_is_recorded_before_the_stop_comes() {
    let mut run = running(spec());
    // Held: the intent is recorded, nothing else happens yet.
    run.check(vec![(2000, I::StayDown, S::Running, None, vec![])]);
    assert!(!run.inst.want_up());
    run.check(vec![(
        2100,
        I::Stop,
        S::Stopping,
        Some(4100),
        vec![log(Event::Stopping { signal: TERM }), signal(7, TERM)],
    )]);
    assert!(!run.inst.want_up());
}

#[test]
fn reschedule_drops_the_armed_schedule_and_the_next_tick_arms_it_again() {
    let mut run = check(
        every_10s(Default::default()),
        vec![(0, tick(0), S::Scheduled, None, vec![])],
    );
    assert_eq!(run.inst.tick_at(), Some(run.at(10_000)));
    run.check(vec![(1000, I::Reschedule, S::Scheduled, None, vec![])]);
    assert!(run.inst.ticker().is_none());
    assert_eq!(
        run.inst.tick_at(),
        Some(run.at(1000)),
        "the new schedule is armed at once"
    );
    // Armed afresh from the new tick: the next run is 10 s after it, not after 0.
    run.check(vec![(1000, tick(3000), S::Scheduled, None, vec![])]);
    assert_eq!(run.inst.tick_at(), Some(run.at(11_000)));
}
