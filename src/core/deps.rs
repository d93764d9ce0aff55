//! Dependency order between programs (`depends_on`) and rolling restarts, without the loop.
//!
//! The config check has already refused unknown names and cycles. What is left is: who is
//! held back by whom (a reverse index, so that a change of one instance re-checks only the
//! instances that depend on it), what a holding dependency says in `status`, and the queue of
//! one rolling restart.

use std::collections::{HashMap, VecDeque};

use super::State;

/// Programs by the programs that depend on them; built when a config is loaded.
#[derive(Debug, Default, Clone)]
pub struct Dependents {
    of: HashMap<String, Vec<String>>,
}

impl Dependents {
    /// `programs`: each program's name and its `depends_on`.
    pub fn build<'a>(programs: impl IntoIterator<Item = (&'a str, &'a [String])>) -> Dependents {
        let mut of: HashMap<String, Vec<String>> = HashMap::new();
        for (name, deps) in programs {
            for dep in deps {
                of.entry(dep.clone()).or_default().push(name.to_string());
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

/// Why one instance of a dependency holds a spawn back: `None` when it is running.
pub fn holds(name: &str, state: State, waiting: bool, last_error: Option<&str>) -> Option<String> {
    if state == State::Running {
        return None;
    }
    Some(match (state, last_error) {
        (State::Fatal, Some(why)) => format!("waiting for {name}, which is fatal: {why}"),
        _ if waiting => format!("waiting for {name}, which waits too"),
        _ => format!("waiting for {name} ({})", state.as_str()),
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
        let api = vec!["db".to_string(), "cache".to_string()];
        let worker = vec!["db".to_string()];
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

    #[test]
    fn a_dependency_holds_until_running_and_says_why() {
        assert_eq!(holds("db:0", State::Running, false, None), None);
        assert_eq!(
            holds("db:0", State::Backoff, false, None).as_deref(),
            Some("waiting for db:0 (backoff)")
        );
        assert_eq!(
            holds("db:0", State::Starting, true, None).as_deref(),
            Some("waiting for db:0, which waits too")
        );
        assert_eq!(
            holds("db:0", State::Fatal, false, Some("exec failed")).as_deref(),
            Some("waiting for db:0, which is fatal: exec failed")
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
