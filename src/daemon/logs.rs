//! The loop's side of job output: which files an instance's streams go to (rotation,
//! timestamps, `redirect_stderr`), what is reported when a log file fails or recovers, the
//! deadline for held partial lines, `sup logreopen` / SIGUSR2, and `log_error` in status.
//!
//! `output.rs` moves the bytes; this file decides and reports. Per instance it keeps the newest
//! output (`Tail`, when mail is configured) and the current log files beyond the life of the
//! captures, so that a fatal mail can quote the last lines and `status` can show a failure
//! after the child died, until a reload removes the instance (`free_retired`); the files of a
//! down instance are kept closed (`park`).

use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;
use std::time::Instant;

use super::event_loop::{Daemon, Source, TimerKey};
use super::output::{Capture, LogFile, Pump, SharedLog, Tail, Trouble};
use super::spawn::{io_daemon_resource, SpawnError, Stdio};
use crate::config::{Output, ProgramSpec};
use crate::control::proto::{Response, ResponseBody};

/// Bytes of recent output kept per instance for notifications.
const RECENT: usize = 8 * 1024;

/// Per-instance output state that outlives the captures.
#[derive(Default)]
pub struct Outputs {
    per: HashMap<String, InstanceOutput>,
    /// The flush deadline already in the timer heap, so that each pump does not push another.
    armed: Option<Instant>,
}

struct InstanceOutput {
    /// Only with `daemon.notify.email` (fixed for the daemon's life), the one reader: up to
    /// `RECENT` bytes an instance is otherwise better off without.
    recent: Option<Rc<RefCell<Tail>>>,
    files: Vec<SharedLog>,
}

/// What `spawn` connects a child's streams to, and the log files behind the pipes.
pub struct Plan {
    pub stdout: Stdio,
    pub stderr: Stdio,
    /// stdout's and stderr's files (the same one with `redirect_stderr`).
    pub sinks: [Option<SharedLog>; 2],
    pub timestamps: bool,
    pub shared: bool,
}

impl Outputs {
    /// The newest output of an instance, as its last `n` lines.
    pub fn last_lines(&self, instance: &str, n: usize) -> String {
        self.per
            .get(instance)
            .and_then(|o| o.recent.as_ref())
            .map(|r| r.borrow().last_lines(n))
            .unwrap_or_default()
    }

    /// The instance is down (stopped, exited, fatal, or scheduled between runs): close its
    /// files, so that a thousand idle instances hold no descriptors. Backoff keeps them: the
    /// instance respawns soon, and holds no more than it did while running. Its next spawn
    /// opens fresh ones; the parked ones stay here for `log_error`.
    pub fn park(&self, instance: &str) {
        if let Some(o) = self.per.get(instance) {
            for f in &o.files {
                if let Ok(mut f) = f.try_borrow_mut() {
                    f.park();
                }
            }
        }
    }

    /// Drop the output state of names no instance has any more (a reload removed or renamed
    /// them): its recent output and its log files, which would otherwise stay open.
    pub fn retain_names(&mut self, mut keep: impl FnMut(&str) -> bool) {
        self.per.retain(|name, _| keep(name));
    }

    /// The failure of one of the instance's log files, if one is in force.
    pub fn log_error(&self, instance: &str) -> Option<String> {
        self.per
            .get(instance)?
            .files
            .iter()
            .find_map(|f| f.borrow().error())
    }
}

fn open(
    output: &Output,
    instance: &str,
    what: &str,
    rot: crate::config::Rotation,
    now: Instant,
) -> Result<Option<SharedLog>, SpawnError> {
    match output.path_for(instance) {
        None => Ok(None),
        Some(path) => match LogFile::open(&path, rot) {
            Ok(f) => Ok(Some(f.shared())),
            // A planted symlink or FIFO (or device, socket) must not keep the job from
            // running: its output is dropped and the refusal reported, as for a log that
            // fails later.
            Err(e) if path.is_symlink() || super::output::not_regular(&path).is_some() => {
                let error = format!("unable to open {}: {e}", path.display());
                Ok(Some(LogFile::refused(&path, rot, error, now).shared()))
            }
            // Out of descriptors is the daemon's shortage, not the job's: retried without
            // spending its `startretries` (files of down instances are closed, so it passes).
            Err(e) => Err(SpawnError {
                reason: format!("unable to open its {what} log {}: {e}", path.display()),
                daemon: io_daemon_resource(&e),
            }),
        },
    }
}

impl Daemon {
    /// Open the log files an instance's next process writes to. An error is a failed start.
    pub(super) fn plan_outputs(
        &mut self,
        spec: &ProgramSpec,
        instance: &str,
        now: Instant,
    ) -> Result<Plan, SpawnError> {
        let logs = spec.logs;
        let out = open(&spec.stdout, instance, "stdout", logs.stdout, now)?;
        let err = if logs.redirect_stderr {
            out.clone()
        } else {
            open(&spec.stderr, instance, "stderr", logs.stderr, now)?
        };
        let mut files: Vec<SharedLog> = out.iter().cloned().collect();
        if !logs.redirect_stderr {
            files.extend(err.iter().cloned());
        }
        let mail = self.settings.config.daemon.notify.email.is_some();
        let entry = self
            .logs
            .per
            .entry(instance.to_string())
            .or_insert_with(|| InstanceOutput {
                recent: mail.then(|| Rc::new(RefCell::new(Tail::new(RECENT)))),
                files: Vec::new(),
            });
        entry.files = files;
        let stdio = |s: &Option<SharedLog>| {
            if s.is_some() {
                Stdio::Pipe
            } else {
                Stdio::Null
            }
        };
        Ok(Plan {
            stdout: stdio(&out),
            stderr: stdio(&err),
            shared: logs.redirect_stderr,
            timestamps: logs.timestamps,
            sinks: [out, err],
        })
    }

    /// The capture for one pipe of a plan.
    pub(super) fn capture_for(
        &self,
        plan: &Plan,
        fd: std::os::fd::OwnedFd,
        sink: SharedLog,
        instance: &str,
    ) -> Capture {
        let mut c = Capture::new(fd, sink)
            .timestamps(plan.timestamps)
            .whole_lines(plan.shared);
        if let Some(recent) = self.logs.per.get(instance).and_then(|o| o.recent.as_ref()) {
            c = c.recent(recent.clone());
        }
        c
    }

    /// After a pump: report log-file trouble once, and arm the held-line deadline.
    pub(super) fn pumped(&mut self, slot: usize, pump: &Pump, now: Instant) {
        let Some(Source::Capture(c)) = self.sources.get(slot) else {
            return;
        };
        report(&c.instance, &pump.troubles);
        if let Some(at) = c.capture.flush_deadline() {
            self.arm_logs(at, now);
        }
    }

    /// Ask for a `TimerKey::Logs` wakeup at `at` unless an earlier one is pending.
    pub(super) fn arm_logs(&mut self, at: Instant, now: Instant) {
        if self
            .logs
            .armed
            .is_some_and(|armed| armed <= at && armed >= now)
        {
            return;
        }
        self.logs.armed = Some(at);
        self.sup.push_timer(at, TimerKey::Logs);
    }

    /// `TimerKey::Logs` came due: write held lines whose time is up, run the notifier's
    /// deadlines, and arm the next wakeup.
    pub(super) fn logs_due(&mut self, now: Instant) {
        self.logs.armed = None;
        let mut next: Option<Instant> = None;
        for slot in self.sources.captures() {
            let Some(Source::Capture(c)) = self.sources.get_mut(slot) else {
                continue;
            };
            let troubles = c.capture.flush_if_due(now);
            report(&c.instance, &troubles);
            if let Some(at) = c.capture.flush_deadline() {
                next = Some(next.map_or(at, |n| n.min(at)));
            }
        }
        let cx = super::notify::Context {
            spec: &self.settings.config.daemon.notify,
            outputs: &self.logs,
            pids: &mut self.pids,
            now,
        };
        if let Some(at) = self.notifier.due(cx) {
            next = Some(next.map_or(at, |n| n.min(at)));
        }
        if let Some(at) = next {
            self.arm_logs(at, now);
        }
    }

    /// `sup logreopen` and SIGUSR2: reopen the event log and the files of instances that are
    /// up. A down instance's files stay closed (one a late writer holds open is closed, to be
    /// opened again at the new path when it writes).
    pub(super) fn logreopen(&mut self, now: Instant) -> Result<usize, String> {
        let mut errors = Vec::new();
        if let Err(e) = crate::logging::reopen() {
            errors.push(e);
        }
        let mut files = 0;
        for o in self.logs.per.values() {
            for f in &o.files {
                let mut f = f.borrow_mut();
                if f.is_parked() {
                    f.close_if_parked();
                    continue;
                }
                f.reopen(now);
                files += 1;
                for t in f.take_news() {
                    if let Trouble::Failed { error, .. } = t {
                        errors.push(error);
                    }
                }
            }
        }
        if errors.is_empty() {
            log::info!("logreopen: reopened the event log and {files} output files");
            Ok(files)
        } else {
            for e in &errors {
                log::error!("logreopen: {e}");
            }
            Err(errors.join("; "))
        }
    }

    pub(super) fn logreopen_response(&mut self, now: Instant) -> Response {
        match self.logreopen(now) {
            Ok(n) => Response::new(ResponseBody::Done {
                message: format!("reopened the event log and {n} output files"),
            }),
            Err(e) => Response::error(e),
        }
    }
}

fn report(instance: &str, troubles: &[Trouble]) {
    for t in troubles {
        match t {
            Trouble::Failed { error, .. } => {
                log::error!("{instance} output: {error}: dropping its output until it works again")
            }
            Trouble::Recovered { path, dropped } => log::warn!(
                "{instance} output: writing {} again; {dropped} bytes were dropped",
                path.display()
            ),
        }
    }
}
