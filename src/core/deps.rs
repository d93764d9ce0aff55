//! Dependency order between programs (`depends_on`) and rolling restarts, without the loop.
//!
//! The config check has already refused unknown names and cycles. What is left is: who is
//! held back by whom (a reverse index, so that a change of one instance re-checks only the
//! instances that depend on it), whether one instance of a dependency meets the condition
//! written for it (`started`, `healthy`, `completed`) and, when it does not, what `status`
//! says about it, and the queue of one rolling restart.

use std::collections::{HashMap, VecDeque};

use super::health::Status as Health;
use super::{Instance, State};
use crate::config::{Condition, Dependency, ProgramSpec};

/// Programs by the programs that depend on them; built when a config is loaded.
#[derive(Debug, Default, Clone)]
pub struct Dependents {
    of: HashMap<String, Vec<String>>,
}

impl Dependents {
    /// `programs`: each program's name and its `depends_on`.
    pub fn build<'a>(
        programs: impl IntoIterator<Item = (&'a str, &'a [Dependency])>,
    ) -> Dependents {
        let mut of: HashMap<String, Vec<String>> = HashMap::new();
        for (name, deps) in programs {
            for dep in deps {
                of.entry(dep.program.clone())
                    .or_default()
                    .push(name.to_string());
            }
        }
        for v in of.values_mut() {
            v.sort();
            v.dedup();
        }
        Dependents { of }
    }

    /// The programs whose `depends_on` names `program`.
    pub fn of(&self, program: &str) -> &[String] {
        self.of.get(program).map_or(&[], Vec::as_slice)
    }

    pub fn is_empty(&self) -> bool {
        self.of.is_empty()
    }
}

/// One instance of a dependency, as far as a condition looks at it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Dep<'a> {
    pub name: &'a str,
    pub state: State,
    pub waiting: bool,
    pub last_error: Option<&'a str>,
    /// `last_exit`, and whether its program's `exitcodes` expect it.
    pub last_exit: Option<(i32, bool)>,
    /// The health check's status while the process lives; `None` without a check.
    pub health: Option<Health>,
}

impl<'a> Dep<'a> {
    /// `inst`, run by `spec`, whose health check (if any) says `health`.
    pub fn of(inst: &'a Instance, spec: &ProgramSpec, health: Option<Health>) -> Dep<'a> {
        Dep {
            name: inst.name(),
            state: inst.state(),
            waiting: inst.is_waiting(),
            last_error: inst.last_error(),
            last_exit: inst
                .last_exit()
                .map(|code| (code, spec.exitcodes.contains(&code))),
            health: spec.health.healthcheck.as_ref().and(health),
        }
    }
}

/// Why one instance of a dependency holds a spawn back: `None` when it meets `condition`.
///
/// - `started`: it is `running`.
/// - `healthy`: it is `running` and its health check passes (without a check, `running`
///   is enough: with `ready` it is running only once ready).
/// - `completed`: it exited with an expected code and is not restarted (`exited`, or a
///   scheduled job back in `scheduled` after such a run). An unexpected exit that is not
///   restarted, or `fatal`, can never meet it: the reason says so.
pub fn holds(condition: Condition, d: &Dep) -> Option<String> {
    let name = d.name;
    let not_yet = |what: &str| match condition {
        Condition::Started => format!("waiting for {name} ({what})"),
        _ => format!("waiting for {name}: {} ({what})", condition.as_str()),
    };
    let fatal = |why: &str| match condition {
        Condition::Started => format!("waiting for {name}, which is fatal: {why}"),
        _ => format!(
            "waiting for {name}: {}, but it is fatal: {why}",
            condition.as_str()
        ),
    };
    match condition {
        Condition::Started | Condition::Healthy => {
            if d.state == State::Running {
                return match (condition, d.health) {
                    (Condition::Healthy, Some(h)) if h != Health::Healthy => {
                        Some(not_yet(&format!("health check {}", h.as_str())))
                    }
                    _ => None,
                };
            }
        }
        Condition::Completed => match (d.state, d.last_exit) {
            (State::Exited | State::Scheduled, Some((_, true))) => return None,
            (State::Exited, Some((code, false))) => {
                return Some(format!(
                    "waiting for {name}: completed, but it exited {code} and will not restart"
                ))
            }
            _ => {}
        },
    }
    Some(match (d.state, d.last_error) {
        (State::Fatal, Some(why)) => fatal(why),
        (State::Fatal, None) => fatal("gave up"),
        _ if d.waiting => match condition {
            Condition::Started => format!("waiting for {name}, which waits too"),
            _ => format!(
                "waiting for {name}: {}, and it waits too",
                condition.as_str()
            ),
        },
        (state, _) => not_yet(state.as_str()),
    })
}

/// One program's rolling restart: the instance restarted last and those still to go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rolling<T> {
    current: T,
    rest: VecDeque<T>,
}

/// What a rolling restart does after a look at its current instance.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Roll<T> {
    /// The current instance is still on its way: nothing to do.
    Wait,
    /// Restart this one next.
    Next(T),
    /// Nothing left.
    Done,
    /// The current instance did not come back (it is in `at`): these are not restarted.
    Abandoned { at: State, rest: Vec<T> },
}

impl<T: Copy + PartialEq> Rolling<T> {
    /// The first instance to restart now, and the rest of the queue.
    pub fn start(mut queue: VecDeque<T>) -> Option<(T, Rolling<T>)> {
        let first = queue.pop_front()?;
        Some((
            first,
            Rolling {
                current: first,
                rest: queue,
            },
        ))
    }

    pub fn current(&self) -> T {
        self.current
    }

    /// Look at the current instance (`None` once it is gone, e.g. removed by a reload).
    pub fn advance(&mut self, current: Option<State>) -> Roll<T> {
        match current {
            Some(State::Running) | None => match self.rest.pop_front() {
                Some(next) => {
                    self.current = next;
                    Roll::Next(next)
                }
                None => Roll::Done,
            },
            Some(State::Starting | State::Stopping) => Roll::Wait,
            Some(at) => Roll::Abandoned {
                at,
                rest: self.rest.drain(..).collect(),
            },
        }
    }

    /// Drop `id` from the queue (an operator or a reload took it over).
    pub fn forget(&mut self, id: T) {
        self.rest.retain(|&r| r != id);
    }

    /// `id` is still to be restarted.
    pub fn has_pending(&self, id: T) -> bool {
        self.rest.contains(&id)
    }

    pub fn is_finished(&self) -> bool {
        self.rest.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_reverse_index_names_each_dependent_once() {
        let api = vec![Dependency::started("db"), Dependency::started("cache")];
        let worker = vec![Dependency::started("db")];
        let d = Dependents::build([
            ("api", api.as_slice()),
            ("worker", worker.as_slice()),
            ("db", &[][..]),
        ]);
        assert_eq!(d.of("db"), ["api", "worker"]);
        assert_eq!(d.of("cache"), ["api"]);
        assert!(d.of("api").is_empty());
        assert!(Dependents::default().is_empty());
    }

    fn dep(name: &str, state: State) -> Dep<'_> {
        Dep {
            name,
            state,
            waiting: false,
            last_error: None,
            last_exit: None,
            health: None,
        }
    }

    #[test]
    fn a_dependency_holds_until_running_and_says_why() {
        let started = |d: Dep| holds(Condition::Started, &d);
        assert_eq!(started(dep("db:0", State::Running)), None);
        assert_eq!(
            started(dep("db:0", State::Backoff)).as_deref(),
            Some("waiting for db:0 (backoff)")
        );
        let waits = Dep {
            waiting: true,
            ..dep("db:0", State::Starting)
        };
        assert_eq!(
            started(waits).as_deref(),
            Some("waiting for db:0, which waits too")
        );
        let fatal = Dep {
            last_error: Some("exec failed"),
            ..dep("db:0", State::Fatal)
        };
        assert_eq!(
            started(fatal).as_deref(),
            Some("waiting for db:0, which is fatal: exec failed")
        );
    }

    #[test]
    fn healthy_needs_a_passing_check_when_there_is_one() {
        let healthy = |d: Dep| holds(Condition::Healthy, &d);
        // No check: running is enough.
        assert_eq!(healthy(dep("db", State::Running)), None);
        let checking = |h| Dep {
            health: Some(h),
            ..dep("db", State::Running)
        };
        assert_eq!(
            healthy(checking(Health::Starting)).as_deref(),
            Some("waiting for db: healthy (health check starting)")
        );
        assert_eq!(
            healthy(checking(Health::Unhealthy)).as_deref(),
            Some("waiting for db: healthy (health check unhealthy)")
        );
        assert_eq!(healthy(checking(Health::Healthy)), None);
        assert_eq!(
            healthy(dep("db", State::Starting)).as_deref(),
            Some("waiting for db: healthy (starting)")
        );
        // `started` does not look at the check.
        assert_eq!(
            holds(Condition::Started, &checking(Health::Unhealthy)),
            None
        );
    }

    /// A one-shot job driven through the real machine on a fake clock: its exit decides.
    fn one_shot(code: i32) -> (Instance, ProgramSpec) {
        use super::super::{Action, ExitStatus, Input};
        let mut spec = ProgramSpec::for_tests("migrate", &["./migrate"]);
        spec.starttime = std::time::Duration::ZERO;
        // A one-shot job: whatever its exit, it is not run again.
        spec.autorestart = crate::config::AutoRestart::Never;
        let t0 = std::time::Instant::now();
        let mut inst = Instance::new("migrate", 0, "migrate".into());
        let mut out: Vec<Action> = Vec::new();
        let ms = std::time::Duration::from_millis;
        inst.step(&spec, t0, Input::Start, &mut out);
        inst.step(&spec, t0 + ms(1), Input::Spawned { pid: 42 }, &mut out);
        assert_eq!(inst.state(), State::Running);
        let exit = Input::Exited(ExitStatus::Code(code));
        inst.step(&spec, t0 + ms(500), exit, &mut out);
        (inst, spec)
    }

    #[test]
    fn completed_is_an_expected_exit_that_is_not_restarted() {
        let (inst, spec) = one_shot(0);
        assert_eq!(inst.state(), State::Exited);
        assert_eq!(
            holds(Condition::Completed, &Dep::of(&inst, &spec, None)),
            None
        );
        // `started` would wait for it forever: it is not running.
        assert_eq!(
            holds(Condition::Started, &Dep::of(&inst, &spec, None)).as_deref(),
            Some("waiting for migrate (exited)")
        );

        let (inst, spec) = one_shot(3);
        assert_eq!(inst.state(), State::Exited);
        assert_eq!(
            holds(Condition::Completed, &Dep::of(&inst, &spec, None)).as_deref(),
            Some("waiting for migrate: completed, but it exited 3 and will not restart")
        );

        // Still running, or never run: not yet.
        assert_eq!(
            holds(Condition::Completed, &dep("migrate", State::Running)).as_deref(),
            Some("waiting for migrate: completed (running)")
        );
        assert_eq!(
            holds(Condition::Completed, &dep("migrate", State::Stopped)).as_deref(),
            Some("waiting for migrate: completed (stopped)")
        );
        let fatal = Dep {
            last_error: Some("exec failed"),
            ..dep("migrate", State::Fatal)
        };
        assert_eq!(
            holds(Condition::Completed, &fatal).as_deref(),
            Some("waiting for migrate: completed, but it is fatal: exec failed")
        );
    }

    #[test]
    fn an_expected_code_other_than_zero_completes_too() {
        let (inst, mut spec) = one_shot(3);
        spec.exitcodes = vec![0, 3];
        assert_eq!(
            holds(Condition::Completed, &Dep::of(&inst, &spec, None)),
            None
        );
    }

    #[test]
    fn a_rolling_restart_goes_one_at_a_time_and_stops_at_a_failure() {
        let (first, mut r) = Rolling::start(VecDeque::from([1, 2, 3])).expect("started");
        assert_eq!(first, 1);
        assert_eq!(r.advance(Some(State::Stopping)), Roll::Wait);
        assert_eq!(r.advance(Some(State::Starting)), Roll::Wait);
        assert_eq!(r.advance(Some(State::Running)), Roll::Next(2));
        assert_eq!(r.current(), 2);
        assert!(r.has_pending(3));
        assert_eq!(
            r.advance(Some(State::Backoff)),
            Roll::Abandoned {
                at: State::Backoff,
                rest: vec![3]
            }
        );
        assert!(r.is_finished());

        let (_, mut r) = Rolling::start(VecDeque::from([1, 2, 3])).expect("started");
        r.forget(2);
        assert_eq!(r.advance(None), Roll::Next(3));
        assert_eq!(r.advance(Some(State::Running)), Roll::Done);
        assert!(Rolling::<u8>::start(VecDeque::new()).is_none());
    }
}
