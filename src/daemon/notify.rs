//! Notifications (`daemon.notify`): an event an operator asked for becomes a mail, a JSON line
//! on the report address, and a run of the hook, without the loop ever waiting.
//!
//! How the loop stays free: every delivery is a short-lived child. Mail and reports go
//! through `sup __notify` (`deliver.rs`), which gets its `Delivery` as JSON on a pipe (a few
//! KiB: the write never blocks) and does the blocking network work in its own process; the
//! hook is spawned directly. Each child has its own process group, is reaped by the loop's
//! `waitpid(-1)` like any child (`reaped_sender`), and is killed with its group once it
//! outlives `SENDER_TIMEOUT`. A failed mail or report is tried again, `MAX_ATTEMPTS` times in
//! all; a hook runs once. At most `MAX_RUNNING` senders run at once; others wait in a queue.
//!
//! Rate limit: per program and event kind, `BURST` mails in a `WINDOW`; more events in it are
//! counted, and at its end one summary mail says how many ("web: 37 unexpected exits in the
//! last 5 minutes"). Reports and hooks are not limited: they are machines' business.
//!
//! Each notification sent or failed is a line in the event log naming the instance.

use std::collections::HashMap;
use std::io::{Read, Write};
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use super::deliver::{Delivery, SUBCOMMAND};
use super::logs::Outputs;
use super::pids::{PidOwner, Pids};
use crate::config::NotifySpec;
use crate::core::event::Event;
use crate::core::{ExitStatus, Instance};

/// A sender or hook still running after this is killed with its group.
pub const SENDER_TIMEOUT: Duration = Duration::from_secs(30);
/// Tries per mail or report, the first included.
const MAX_ATTEMPTS: u32 = 3;
/// Pause before the second and later tries.
const RETRY_AFTER: [Duration; 2] = [Duration::from_secs(2), Duration::from_secs(5)];
const WINDOW: Duration = Duration::from_secs(300);
/// Mails per program and event kind in a `WINDOW` before the rest become one summary.
const BURST: u32 = 3;
const MAX_RUNNING: usize = 8;
const MAX_QUEUED: usize = 1000;

#[derive(Default)]
pub struct Notifier {
    exe: Option<PathBuf>,
    host: String,
    running: HashMap<u32, Job>,
    queue: Vec<Job>,
    windows: HashMap<(String, &'static str), Window>,
    /// Notifications delivered, and given up on, since the start (for `/metrics`).
    sent: u64,
    failed: u64,
}

struct Job {
    /// `email fatal`, `report backoff`, `hook fatal`: for the event log.
    what: String,
    instance: String,
    kind: JobKind,
    attempt: u32,
    not_before: Instant,
    deadline: Instant,
    timed_out: bool,
    stderr: Option<OwnedFd>,
}

enum JobKind {
    Send(Delivery),
    Hook(Vec<String>, Vec<(String, String)>),
}

struct Window {
    start: Instant,
    /// Mails allowed so far (a window after a summary starts with none left).
    sent: u32,
    /// Mails actually sent in this window.
    mailed: u32,
    total: u32,
    last_instance: String,
    last_reason: String,
}

impl Window {
    /// Count an event of this window; true when it may still be mailed on its own.
    fn admit(&mut self, instance: &str, reason: &str) -> bool {
        self.total += 1;
        self.last_instance = instance.to_string();
        self.last_reason = reason.to_string();
        if self.sent < BURST {
            self.sent += 1;
            self.mailed += 1;
            true
        } else {
            false
        }
    }

    /// At the window's end: how many events were not mailed, when a summary is due.
    fn suppressed(&self) -> Option<u32> {
        let n = self.total.saturating_sub(self.mailed);
        (self.total > 0 && n > 0).then_some(n)
    }
}

/// One mail to `daemon.notify.email`'s recipients.
fn email_delivery(
    email: &crate::config::spec::EmailSpec,
    subject: String,
    body: String,
) -> Delivery {
    Delivery::Email {
        host: email.host.clone(),
        port: email.port,
        starttls: email.starttls,
        username_env: email.username_env.clone(),
        password_env: email.password_env.clone(),
        from: email.from.clone(),
        to: email.to.clone(),
        subject,
        body,
    }
}

/// The name of an event in `daemon.notify.events`, if it has one.
pub fn event_name(event: &Event) -> Option<&'static str> {
    Some(match event {
        Event::Spawned { .. } => "spawned",
        Event::SpawnFailed { .. } => "spawn-failed",
        Event::Running => "running",
        Event::Exited {
            expected: false, ..
        } => "exited-unexpectedly",
        Event::Exited { expected: true, .. } => "exited",
        Event::Backoff { .. } => "backoff",
        Event::Fatal { .. } => "fatal",
        Event::Stopping { .. } => "stopping",
        Event::Killed { .. } => "killed",
        Event::Stopped => "stopped",
        Event::Skipped => "skipped",
        // The daemon's own trouble, retried in a moment: its log, not the job's notification.
        Event::Queued | Event::Replacing | Event::Missed { .. } | Event::SpawnDeferred { .. } => {
            return None
        }
        // A failed scheduled run counts like any other unexpected exit.
        Event::RunFinished {
            expected: false, ..
        } => "exited-unexpectedly",
        Event::RunFinished { expected: true, .. } => "exited",
        Event::Fault { .. } => "unhealthy",
        Event::Waiting { .. } => "waiting",
        Event::Bug(_) => return None,
    })
}

/// Whether `events` (names from `daemon.notify.events`) asks for `kind`.
pub fn wanted(events: &[String], kind: &str) -> bool {
    events
        .iter()
        .any(|e| e == kind || (e == "exited" && kind == "exited-unexpectedly"))
}

/// "37 unexpected exits": how a summary counts events of a kind.
fn plural(kind: &str, n: u32) -> String {
    let word = match kind {
        "exited-unexpectedly" => "unexpected exit",
        "exited" => "exit",
        "fatal" => "fatal state",
        "backoff" => "backoff",
        "spawned" => "spawn",
        "spawn-failed" => "failed spawn",
        "stopped" => "stop",
        "killed" => "kill",
        other => return format!("{n} {other} events"),
    };
    format!("{n} {word}{}", if n == 1 { "" } else { "s" })
}

impl Notifier {
    pub fn new() -> Notifier {
        let host = nix::unistd::gethostname()
            .ok()
            .and_then(|h| h.into_string().ok())
            .unwrap_or_else(|| "localhost".into());
        Notifier {
            exe: std::env::current_exe().ok(),
            host,
            ..Notifier::default()
        }
    }

    /// The host name every report carries.
    pub fn host(&self) -> &str {
        &self.host
    }

    fn enqueue(&mut self, job: Job) {
        if self.queue.len() >= MAX_QUEUED {
            self.failed += 1;
            log::error!(
                "{} notification failed: {}: more than {MAX_QUEUED} are waiting",
                job.instance,
                job.what
            );
            return;
        }
        self.queue.push(job);
    }

    /// Start what may start now; returns the earliest deadline left.
    fn kick(&mut self, now: Instant, pids: &mut Pids) -> Option<Instant> {
        let mut i = 0;
        while i < self.queue.len() && self.running.len() < MAX_RUNNING {
            if self.queue[i].not_before > now {
                i += 1;
                continue;
            }
            let mut job = self.queue.swap_remove(i);
            match self.start(&mut job) {
                Ok(pid) => {
                    job.deadline = now + SENDER_TIMEOUT;
                    pids.insert(pid, PidOwner::Sender);
                    self.running.insert(pid, job);
                }
                Err(e) => {
                    self.failed += 1;
                    log::error!("{} notification failed: {}: {e}", job.instance, job.what)
                }
            }
        }
        let waiting = self.queue.iter().map(|j| j.not_before);
        let running = self
            .running
            .values()
            .filter(|j| !j.timed_out)
            .map(|j| j.deadline);
        let windows = self
            .windows
            .values()
            .filter(|w| w.total > 0 || w.sent > 0)
            .map(|w| w.start + WINDOW);
        waiting.chain(running).chain(windows).min()
    }

    fn start(&self, job: &mut Job) -> Result<u32, String> {
        match &job.kind {
            JobKind::Hook(cmd, env) => {
                let (program, args) = cmd.split_first().ok_or("empty hook command")?;
                let mut cmd = Command::new(program);
                cmd.args(args)
                    .envs(env.iter().map(|(k, v)| (k, v)))
                    .stdin(Stdio::null())
                    .stdout(Stdio::null())
                    .stderr(Stdio::null())
                    .process_group(0);
                let child = like_a_job(&mut cmd)
                    .spawn()
                    .map_err(|e| format!("unable to run {program}: {e}"))?;
                Ok(child.id())
            }
            JobKind::Send(delivery) => {
                let exe = self.exe.as_ref().ok_or("the sup binary cannot be found")?;
                let text = serde_json::to_vec(delivery).map_err(|e| e.to_string())?;
                let mut cmd = Command::new(exe);
                cmd.arg(SUBCOMMAND)
                    .stdin(Stdio::piped())
                    .stdout(Stdio::null())
                    .stderr(Stdio::piped())
                    .process_group(0);
                let mut child = like_a_job(&mut cmd)
                    .spawn()
                    .map_err(|e| format!("unable to start a sender: {e}"))?;
                // A few KiB into an empty pipe: this never blocks.
                if let Some(mut stdin) = child.stdin.take() {
                    let _ = stdin.write_all(&text);
                }
                job.stderr = child.stderr.take().map(OwnedFd::from);
                Ok(child.id())
            }
        }
    }
}

/// A hook or sender starts like a job: default signals, and death with the daemon.
fn like_a_job(cmd: &mut Command) -> &mut Command {
    let daemon = std::process::id() as nix::libc::pid_t;
    // SAFETY: `like_a_job` makes raw syscalls only, as a child between fork and exec may.
    unsafe { cmd.pre_exec(move || super::spawn::like_a_job(daemon)) }
}

/// What the sender said on stderr (it has exited, so this does not wait long: the read end is
/// made non-blocking first).
fn reason_from(fd: Option<OwnedFd>) -> String {
    let Some(fd) = fd else {
        return String::new();
    };
    let _ = nix::fcntl::fcntl(
        fd.as_raw_fd(),
        nix::fcntl::FcntlArg::F_SETFL(nix::fcntl::OFlag::O_NONBLOCK),
    );
    let mut buf = Vec::new();
    let _ = std::fs::File::from(fd).take(4096).read_to_end(&mut buf);
    String::from_utf8_lossy(&buf)
        .lines()
        .next()
        .unwrap_or("")
        .trim()
        .to_string()
}

/// One event as a machine reads it: the TCP report's line, and a listener's.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Report {
    pub event: String,
    pub instance: String,
    pub program: String,
    pub exit_code: Option<i32>,
    pub reason: String,
    pub message: String,
    pub host: String,
    pub at: String,
}

impl Report {
    /// `event` of `inst`, under the name `kind`, now.
    pub fn of(inst: &Instance, event: &Event, kind: &str, host: &str) -> Report {
        let name = inst.name().to_string();
        let reason = match event {
            Event::Fatal { reason } | Event::SpawnFailed { reason } => reason.clone(),
            _ => inst.last_error().map(str::to_string).unwrap_or_default(),
        };
        Report {
            event: kind.to_string(),
            message: format!("{name} {event}"),
            instance: name,
            program: inst.program().to_string(),
            exit_code: inst.last_exit(),
            reason,
            host: host.to_string(),
            at: crate::logging::timestamp(),
        }
    }

    /// One line of JSON, without its newline.
    pub fn line(&self) -> String {
        serde_json::to_string(self).unwrap_or_default()
    }
}

/// What a notification needs from the rest of the daemon, lent for one call.
pub struct Context<'a> {
    pub spec: &'a NotifySpec,
    /// Recent output, quoted in mails.
    pub outputs: &'a Outputs,
    /// Senders are children the loop reaps: they are registered here.
    pub pids: &'a mut Pids,
    pub now: Instant,
}

impl Notifier {
    /// An instance logged `event`: notify whoever asked for it. Returns the notifier's next
    /// deadline, for the loop's heap.
    pub fn notice(&mut self, inst: &Instance, event: &Event, cx: Context) -> Option<Instant> {
        let kind = event_name(event)?;
        let spec = cx.spec;
        if (spec.email.is_none() && spec.report.is_none() && spec.hook.is_none())
            || !wanted(&spec.events, kind)
        {
            return None;
        }
        let now = cx.now;
        let report = Report::of(inst, event, kind, &self.host);
        let Report {
            instance: name,
            program,
            exit_code: exit,
            reason,
            at,
            ..
        } = report.clone();
        let host = self.host.clone();
        let job = |what: &str, kind: JobKind| Job {
            what: what.to_string(),
            instance: name.clone(),
            kind,
            attempt: 1,
            not_before: now,
            deadline: now,
            timed_out: false,
            stderr: None,
        };
        if let Some(cmd) = &spec.hook {
            let env = vec![
                ("SUP_EVENT".to_string(), kind.to_string()),
                ("SUP_PROCESS_NAME".to_string(), name.clone()),
                ("SUP_PROGRAM".to_string(), program.clone()),
                (
                    "SUP_EXIT_CODE".to_string(),
                    exit.map(|c| c.to_string()).unwrap_or_default(),
                ),
                ("SUP_REASON".to_string(), reason.clone()),
            ];
            let j = job(&format!("hook {kind}"), JobKind::Hook(cmd.clone(), env));
            self.enqueue(j);
        }
        if let Some(address) = &spec.report {
            let d = Delivery::Report {
                address: address.clone(),
                line: report.line(),
            };
            self.enqueue(job(
                &format!("report {kind} to {address}"),
                JobKind::Send(d),
            ));
        }
        if let Some(email) = &spec.email {
            let w = self
                .windows
                .entry((program.clone(), kind))
                .or_insert_with(|| Window {
                    start: now,
                    sent: 0,
                    mailed: 0,
                    total: 0,
                    last_instance: String::new(),
                    last_reason: String::new(),
                });
            if w.admit(&name, &reason) {
                let body = format!(
                    "{name} (program {program}) {kind} on {host} at {at}\n\n\
                     event:     {name} {event}\n\
                     reason:    {}\n\
                     last exit: {}\n\n\
                     last lines of output:\n{}\n",
                    if reason.is_empty() { "-" } else { &reason },
                    exit.map_or("-".to_string(), |c| c.to_string()),
                    indent(&cx.outputs.last_lines(&name, 20)),
                );
                let d = email_delivery(email, format!("sup: {name} {kind} on {host}"), body);
                let to = email.to.join(", ");
                self.enqueue(job(&format!("email {kind} to {to}"), JobKind::Send(d)));
            }
        }
        self.kick(now, cx.pids)
    }

    /// A sender or hook was reaped. Returns the notifier's next deadline.
    pub fn reaped(
        &mut self,
        pid: u32,
        status: ExitStatus,
        pids: &mut Pids,
        now: Instant,
    ) -> Option<Instant> {
        let mut job = self.running.remove(&pid)?;
        let said = reason_from(job.stderr.take());
        let failure = match (status, job.timed_out) {
            (_, true) => Some(format!("no answer within {}s", SENDER_TIMEOUT.as_secs())),
            (ExitStatus::Code(0), false) => None,
            (ExitStatus::Code(c), false)
                if !said.is_empty() && matches!(job.kind, JobKind::Send(_)) =>
            {
                let _ = c;
                Some(said)
            }
            (ExitStatus::Code(c), false) => Some(format!("exited with code {c}")),
            (ExitStatus::Signaled(s), false) => Some(format!("killed by signal {s}")),
        };
        match failure {
            None => {
                self.sent += 1;
                log::info!("{} notification sent: {}", job.instance, job.what)
            }
            Some(why) => {
                let retry = matches!(job.kind, JobKind::Send(_)) && job.attempt < MAX_ATTEMPTS;
                if retry {
                    let pause = RETRY_AFTER[(job.attempt as usize - 1).min(RETRY_AFTER.len() - 1)];
                    log::warn!(
                        "{} notification try {} of {MAX_ATTEMPTS} failed: {}: {why}; trying again in {}s",
                        job.instance,
                        job.attempt,
                        job.what,
                        pause.as_secs()
                    );
                    job.attempt += 1;
                    job.not_before = now + pause;
                    job.timed_out = false;
                    self.enqueue(job);
                } else {
                    self.failed += 1;
                    log::error!(
                        "{} notification failed: {}: {why}{}",
                        job.instance,
                        job.what,
                        if job.attempt > 1 {
                            format!(" (after {} tries)", job.attempt)
                        } else {
                            String::new()
                        }
                    );
                }
            }
        }
        self.kick(now, pids)
    }

    /// Deadlines of the notifier: kill late senders, start retries, close rate-limit windows
    /// (sending their summaries). Returns the next deadline.
    pub fn due(&mut self, cx: Context) -> Option<Instant> {
        let now = cx.now;
        for (&pid, job) in self.running.iter_mut() {
            if !job.timed_out && job.deadline <= now {
                job.timed_out = true;
                let _ = nix::sys::signal::killpg(
                    nix::unistd::Pid::from_raw(pid as i32),
                    nix::sys::signal::Signal::SIGKILL,
                );
            }
        }
        let closing: Vec<(String, &'static str)> = self
            .windows
            .iter()
            .filter(|(_, w)| w.start + WINDOW <= now)
            .map(|(k, _)| k.clone())
            .collect();
        for key in closing {
            let Some(w) = self.windows.remove(&key) else {
                continue;
            };
            let (program, kind) = key;
            let Some(suppressed) = w.suppressed() else {
                continue;
            };
            let Some(email) = cx.spec.email.clone() else {
                continue;
            };
            let host = self.host.clone();
            let minutes = WINDOW.as_secs() / 60;
            let summary = format!(
                "{program}: {} in the last {minutes} minutes",
                plural(kind, w.total)
            );
            let body = format!(
                "{summary} on {host}.\n\
                 {suppressed} of them were not mailed one by one.\n\n\
                 latest: {}\nreason: {}\n\nlast lines of output:\n{}\n",
                w.last_instance,
                w.last_reason,
                indent(&cx.outputs.last_lines(&w.last_instance, 20)),
            );
            let d = email_delivery(&email, format!("sup: {summary} on {host}"), body);
            self.enqueue(Job {
                what: format!("email summary of {}", plural(kind, w.total)),
                instance: program.clone(),
                kind: JobKind::Send(d),
                attempt: 1,
                not_before: now,
                deadline: now,
                timed_out: false,
                stderr: None,
            });
            // The flood may go on: the next window starts throttled, so it costs one summary.
            self.windows.insert(
                (program, kind),
                Window {
                    start: now,
                    sent: BURST,
                    mailed: 0,
                    total: 0,
                    last_instance: w.last_instance,
                    last_reason: String::new(),
                },
            );
        }
        // A throttled window that saw nothing more is dropped: the next event mails at once.
        self.windows
            .retain(|_, w| !(w.total == 0 && w.start + WINDOW <= now));
        self.kick(now, cx.pids)
    }

    /// Notifications delivered and given up on since the start.
    pub fn counts(&self) -> (u64, u64) {
        (self.sent, self.failed)
    }

    /// At shutdown: senders still running are killed with their groups, so nothing the
    /// daemon started outlives it.
    pub fn stop_senders(&mut self) {
        for (&pid, job) in &self.running {
            log::error!(
                "{} notification failed: {}: the daemon is shutting down",
                job.instance,
                job.what
            );
            let _ = nix::sys::signal::killpg(
                nix::unistd::Pid::from_raw(pid as i32),
                nix::sys::signal::Signal::SIGKILL,
            );
        }
        self.running.clear();
    }
}

fn indent(text: &str) -> String {
    if text.is_empty() {
        return "  (none)".into();
    }
    text.lines()
        .map(|l| format!("  {l}"))
        .collect::<Vec<_>>()
        .join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_flood_mails_a_burst_then_one_summary() {
        let mut w = Window {
            start: Instant::now(),
            sent: 0,
            mailed: 0,
            total: 0,
            last_instance: String::new(),
            last_reason: String::new(),
        };
        assert_eq!(w.suppressed(), None);
        let mailed = (0..37).filter(|_| w.admit("web:0", "boom")).count();
        assert_eq!(mailed, BURST as usize);
        assert_eq!(w.suppressed(), Some(37 - BURST));
        assert_eq!(
            format!(
                "web: {} in the last 5 minutes",
                plural("exited-unexpectedly", w.total)
            ),
            "web: 37 unexpected exits in the last 5 minutes"
        );
        // A throttled window (after a summary) mails nothing on its own.
        let mut next = Window {
            sent: BURST,
            mailed: 0,
            total: 0,
            ..w
        };
        assert!(!next.admit("web:0", "boom"));
        assert_eq!(next.suppressed(), Some(1));
    }

    #[test]
    fn summaries_count_in_words() {
        assert_eq!(plural("exited-unexpectedly", 37), "37 unexpected exits");
        assert_eq!(plural("fatal", 1), "1 fatal state");
        assert_eq!(plural("running", 2), "2 running events");
    }

    #[test]
    fn exited_covers_unexpected_exits_too() {
        let mut spec = NotifySpec::default();
        assert!(wanted(&spec.events, "fatal"));
        assert!(!wanted(&spec.events, "exited"));
        spec.events = vec!["exited".into()];
        assert!(wanted(&spec.events, "exited-unexpectedly"));
        assert!(!wanted(&spec.events, "fatal"));
    }
}
