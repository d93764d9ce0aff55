//! The loop's side of job output: which files an instance's streams go to (rotation,
//! timestamps, `redirect_stderr`), what is reported when a log file fails or recovers, the
//! deadline for held partial lines, `sup logreopen` / SIGUSR2, and `log_error` in status.
//!
//! `output.rs` moves the bytes; this file decides and reports. Per instance it keeps the newest
//! output (`Tail`, when mail is configured) and the current log files beyond the life of the
//! captures, so that a fatal mail can quote the last lines and `status` can show a failure
//! after the child died, until a reload removes the instance (`free_retired`); the files of a
//! down instance are kept closed (`park`).
//!
//! `stdout: inherit` (or `stderr: inherit`) hands the child a copy of the daemon's own
//! descriptor; with `prefix` the stream goes through a pipe instead, into one `LogFile` over
//! the daemon's stdout (or stderr) that every prefixed instance shares, whole lines only.

use std::cell::RefCell;
use std::collections::HashMap;
use std::path::PathBuf;
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
    /// The daemon's stdout and stderr for prefixed inherited streams, opened at first use.
    streams: [Option<SharedLog>; 2],
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
    /// What `tail -f` followers of each stream follow: the file, or a label for the
    /// daemon's own stream.
    pub paths: [Option<PathBuf>; 2],
    /// Each stream is a prefixed inherited one.
    pub prefixed: [bool; 2],
    pub timestamps: bool,
    pub shared: bool,
}

/// The labels the daemon's own streams go by in reports.
const STREAM_LABELS: [&str; 2] = ["<the daemon's stdout>", "<the daemon's stderr>"];

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

    /// `sup clear`: empty each of `paths` (an instance's stdout and stderr files) through the
    /// descriptor its `LogFile` holds, or, for one not open, by a path open that follows no
    /// symlink. How many existed and were emptied, or the first failure.
    pub fn clear(&self, instance: &str, paths: &[PathBuf]) -> Result<usize, String> {
        let files = self.per.get(instance).map(|o| &o.files[..]).unwrap_or(&[]);
        let mut cleared = 0;
        for path in paths {
            let held = files.iter().find(|f| f.borrow().path() == path);
            let result = match held {
                Some(f) => f.borrow_mut().clear(),
                None => super::output::truncate_path(path),
            };
            match result {
                Ok(true) => cleared += 1,
                Ok(false) => {}
                Err(e) => return Err(format!("unable to clear {}: {e}", path.display())),
            }
        }
        Ok(cleared)
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

impl Outputs {
    /// The shared `LogFile` over the daemon's descriptor `fd` (1 or 2), opened once.
    fn stream(&mut self, fd: i32) -> Result<SharedLog, SpawnError> {
        let which = usize::from(fd == 2);
        if let Some(s) = &self.streams[which] {
            return Ok(s.clone());
        }
        let file = std::os::fd::BorrowedFd::try_clone_to_owned(
            // SAFETY: 1 and 2 are the daemon's own stdout and stderr, open for its life (a
            // closed one makes the duplicate fail, which is reported).
            &unsafe { std::os::fd::BorrowedFd::borrow_raw(fd) },
        )
        .map_err(|e| SpawnError {
            reason: format!("unable to use {}: {e}", STREAM_LABELS[which]),
            daemon: io_daemon_resource(&e),
        })?;
        let log = LogFile::stream(STREAM_LABELS[which], std::fs::File::from(file)).shared();
        self.streams[which] = Some(log.clone());
        Ok(log)
    }
}

/// One stream of a plan: what the child gets, the file behind its pipe, what followers follow,
/// whether it is prefixed.
type Stream = (Stdio, Option<SharedLog>, Option<PathBuf>, bool);

impl Daemon {
    /// Where stream `which` (0 stdout, 1 stderr) goes: a file, nowhere, or the daemon's own
    /// descriptor of the same number.
    fn plan_stream(
        &mut self,
        spec: &ProgramSpec,
        instance: &str,
        which: usize,
        now: Instant,
    ) -> Result<Stream, SpawnError> {
        let (output, rot, what, fd) = if which == 0 {
            (&spec.stdout, spec.logs.stdout, "stdout", 1)
        } else {
            (&spec.stderr, spec.logs.stderr, "stderr", 2)
        };
        Ok(match output {
            Output::Inherit if spec.logs.prefix => {
                let sink = self.logs.stream(fd)?;
                let label = PathBuf::from(STREAM_LABELS[usize::from(fd == 2)]);
                (Stdio::Pipe, Some(sink), Some(label), true)
            }
            Output::Inherit => (Stdio::Inherit(fd), None, None, false),
            Output::Discard | Output::File(_) => {
                let sink = open(output, instance, what, rot, now)?;
                let stdio = if sink.is_some() {
                    Stdio::Pipe
                } else {
                    Stdio::Null
                };
                (stdio, sink, output.path_for(instance), false)
            }
        })
    }

    /// Open the log files an instance's next process writes to. An error is a failed start.
    pub(super) fn plan_outputs(
        &mut self,
        spec: &ProgramSpec,
        instance: &str,
        now: Instant,
    ) -> Result<Plan, SpawnError> {
        let logs = spec.logs;
        let (out_stdio, out, out_path, out_prefixed) = self.plan_stream(spec, instance, 0, now)?;
        let (err_stdio, err, err_path, err_prefixed) = if logs.redirect_stderr {
            // stderr goes where stdout goes: its file, its pipe, or the same descriptor.
            (out_stdio, out.clone(), out_path.clone(), out_prefixed)
        } else {
            self.plan_stream(spec, instance, 1, now)?
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
        Ok(Plan {
            stdout: out_stdio,
            stderr: err_stdio,
            shared: logs.redirect_stderr,
            timestamps: logs.timestamps,
            sinks: [out, err],
            paths: [out_path, err_path],
            prefixed: [out_prefixed, err_prefixed],
        })
    }

    /// The capture for one pipe of a plan.
    pub(super) fn capture_for(
        &self,
        plan: &Plan,
        which: usize,
        fd: std::os::fd::OwnedFd,
        sink: SharedLog,
        instance: &str,
    ) -> Capture {
        let mut c = Capture::new(fd, sink)
            .timestamps(plan.timestamps)
            .whole_lines(plan.shared)
            .prefix(plan.prefixed[which].then_some(instance));
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
                if f.is_stream() {
                    continue;
                }
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
