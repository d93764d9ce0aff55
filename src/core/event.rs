//! The events an instance reports, each carrying the word the README's event log shows
//! (`spawned`, `running`, `exited`, `backoff`, `fatal`, `stopping`, `killed`, `stopped`,
//! `skipped`), plus the other lines of a scheduled job's life.

use std::fmt;
use std::time::Duration;

use chrono::{DateTime, SecondsFormat, Utc};

use super::instance::ExitStatus;
use crate::config::{signal, Signal};

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    Spawned {
        pid: u32,
    },
    SpawnFailed {
        reason: String,
    },
    /// The daemon's own resources ran out for a spawn; retried after `delay`. `attempt`
    /// counts the deferrals in a row: only the first is a warning, so a long shortage
    /// logs one line per instance, not one per retry.
    SpawnDeferred {
        reason: String,
        delay: Duration,
        attempt: u32,
    },
    Running,
    Exited {
        status: ExitStatus,
        expected: bool,
    },
    Backoff {
        delay: Duration,
    },
    Fatal {
        reason: String,
    },
    Stopping {
        signal: Signal,
    },
    Killed {
        after: Duration,
    },
    Stopped,
    /// A tick found the previous run still going (`overlap: skip`).
    Skipped,
    /// A tick found the previous run still going (`overlap: queue`): one more run after it.
    Queued,
    /// A tick found the previous run still going (`overlap: kill`): it is stopped first.
    Replacing,
    /// A scheduled run ended.
    RunFinished {
        duration: Duration,
        code: i32,
        expected: bool,
    },
    /// A tick was missed (clock jump, suspend, downtime); `run` with `catchup: once`.
    Missed {
        due: DateTime<Utc>,
        run: bool,
    },
    /// Found hung or sick (a missed watchdog, a failing health check, a memory or CPU rule,
    /// not ready in time): it is stopped, and started again or counted as a failed start.
    Fault {
        reason: String,
    },
    /// A start held back: a dependency is not running.
    Waiting {
        reason: String,
    },
    /// An input that cannot happen in the current state: logged, never fatal.
    Bug(String),
}

impl Event {
    pub fn level(&self) -> log::Level {
        match self {
            Event::Spawned { .. }
            | Event::Running
            | Event::Stopping { .. }
            | Event::Stopped
            | Event::Queued
            | Event::Replacing
            | Event::Waiting { .. }
            | Event::RunFinished { expected: true, .. } => log::Level::Info,
            Event::Fault { .. } => log::Level::Warn,
            Event::Skipped
            | Event::Missed { .. }
            | Event::RunFinished {
                expected: false, ..
            } => log::Level::Warn,
            Event::Exited { expected: true, .. } => log::Level::Info,
            Event::Exited {
                expected: false, ..
            }
            | Event::Backoff { .. }
            | Event::Killed { .. }
            | Event::SpawnFailed { .. }
            | Event::SpawnDeferred { attempt: 1, .. } => log::Level::Warn,
            Event::SpawnDeferred { .. } => log::Level::Debug,
            Event::Fatal { .. } | Event::Bug(_) => log::Level::Error,
        }
    }
}

/// Formats the part after the instance name: `web:0 {event}`.
impl fmt::Display for Event {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Event::Spawned { pid } => write!(f, "spawned pid={pid}"),
            Event::SpawnFailed { reason } => write!(f, "spawn failed: {reason}"),
            Event::SpawnDeferred {
                reason,
                delay,
                attempt: 1,
            } => write!(
                f,
                "{reason} (the daemon's resources); retrying in {}",
                human(*delay)
            ),
            Event::SpawnDeferred {
                reason,
                delay,
                attempt,
            } => write!(
                f,
                "{reason} (the daemon's resources); retrying in {} (attempt {attempt})",
                human(*delay)
            ),
            Event::Running => write!(f, "running"),
            Event::Exited { status, expected } => {
                let how = if *expected { "expected" } else { "unexpected" };
                match status {
                    ExitStatus::Code(c) => write!(f, "exited code={c} ({how})"),
                    ExitStatus::Signaled(s) => write!(
                        f,
                        "exited code={} signal={} ({how})",
                        128 + s,
                        signal::name(Signal(*s))
                    ),
                }
            }
            Event::Backoff { delay } => write!(f, "backoff: next start in {}", human(*delay)),
            Event::Fatal { reason } => write!(f, "fatal: {reason}"),
            Event::Stopping { signal: s } => write!(f, "stopping: sent {}", signal::name(*s)),
            Event::Killed { after } => {
                write!(f, "killed: sent SIGKILL after stoptime {}", human(*after))
            }
            Event::Stopped => write!(f, "stopped"),
            Event::Skipped => write!(f, "skipped: the previous run is still going"),
            Event::Queued => write!(f, "queued: runs again when the current run ends"),
            Event::Replacing => write!(f, "tick: the previous run is still going, stopping it"),
            Event::RunFinished {
                duration,
                code,
                expected,
            } => {
                let how = if *expected { "ok" } else { "failed" };
                write!(
                    f,
                    "run finished in {} code={code} ({how})",
                    human(*duration)
                )
            }
            Event::Missed { due, run } => write!(
                f,
                "missed the tick due at {} (clock jump, suspend or downtime); {}",
                due.to_rfc3339_opts(SecondsFormat::Secs, true),
                if *run {
                    "running it once now (catchup: once)"
                } else {
                    "not run (catchup: none)"
                }
            ),
            Event::Fault { reason } => write!(f, "unhealthy: {reason}: stopping it"),
            Event::Waiting { reason } => write!(f, "waiting: {reason}"),
            Event::Bug(what) => write!(f, "bug: {what}"),
        }
    }
}

/// `1.5s`, `250ms`, `2m3s`: durations as people read them.
pub fn human(d: Duration) -> String {
    let ms = d.as_millis();
    if ms < 1000 {
        return format!("{ms}ms");
    }
    let secs = d.as_secs_f64();
    if secs < 60.0 {
        let s = format!("{secs:.1}");
        return format!("{}s", s.trim_end_matches(".0"));
    }
    let total = d.as_secs();
    let (h, m, s) = (total / 3600, (total / 60) % 60, total % 60);
    let mut out = String::new();
    if h > 0 {
        out.push_str(&format!("{h}h"));
    }
    if m > 0 {
        out.push_str(&format!("{m}m"));
    }
    if s > 0 || out.is_empty() {
        out.push_str(&format!("{s}s"));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_first_deferral_in_a_row_is_a_warning() {
        let deferral = |attempt| Event::SpawnDeferred {
            reason: "creating the stdout pipe: too many open files".into(),
            delay: Duration::from_secs(5),
            attempt,
        };
        assert_eq!(deferral(1).level(), log::Level::Warn);
        assert_eq!(
            deferral(1).to_string(),
            "creating the stdout pipe: too many open files (the daemon's resources); retrying in 5s"
        );
        assert_eq!(deferral(2).level(), log::Level::Debug);
        assert!(deferral(9)
            .to_string()
            .ends_with("retrying in 5s (attempt 9)"));
    }
}
