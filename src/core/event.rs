//! The events an instance reports, each carrying the word INTERFACE.md's event log requires
//! (`spawned`, `running`, `exited`, `backoff`, `fatal`, `stopping`, `killed`, `stopped`).

use std::fmt;
use std::time::Duration;

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
    /// An input that cannot happen in the current state: logged, never fatal.
    Bug(String),
}

impl Event {
    pub fn level(&self) -> log::Level {
        match self {
            Event::Spawned { .. } | Event::Running | Event::Stopping { .. } | Event::Stopped => {
                log::Level::Info
            }
            Event::Exited { expected: true, .. } => log::Level::Info,
            Event::Exited {
                expected: false, ..
            }
            | Event::Backoff { .. }
            | Event::Killed { .. }
            | Event::SpawnFailed { .. } => log::Level::Warn,
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
