//! Event listeners (`daemon.notify.listeners`): long-running children fed one JSON line per
//! event on their stdin, as supervisord's event listeners are, without the loop ever waiting.
//!
//! Each listener's stdin is a pipe whose write end is non-blocking. An event is appended to
//! the listener's `LineQueue` (at most `BUFFER` bytes, whole lines only) and written at once as
//! far as the pipe takes it; only while bytes are left is the write end on the poll, for
//! writable readiness (`Sync::add`). A listener that stops reading fills its pipe, then its
//! queue; from then on new events are dropped, whole lines, and counted (one log line when
//! dropping starts, one with the count when a line fits again; the total is in `/metrics`).
//!
//! A listener that exits is restarted after `core::backoff::crash_delay` (at once after a run
//! of 10 s or more, else 1 s, 2 s, 4 s … up to a minute); whatever is left of its process group
//! is killed, and the rest of a line it was reading is dropped, so the next process starts
//! at a line's beginning. Lines queued meanwhile are delivered to it. Stopping a listener (a
//! reload that removes it, the daemon's shutdown) closes its stdin and sends SIGTERM to its
//! group, then SIGKILL after `STOP_TIMEOUT`.
//!
//! This part holds the listeners' state and their descriptors; it never sees the loop. The
//! loop asks it what to put on or take off the poll (`sync`), and when it wants to be called
//! again (`next_deadline`).

use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::fcntl::{fcntl, FcntlArg, OFlag};
use nix::sys::signal::{killpg, Signal};
use nix::unistd::Pid;

use super::notify::Report;
use super::pids::{PidOwner, Pids};
use crate::config::spec::ListenerSpec;
use crate::core::backoff;
use crate::core::ExitStatus;

/// Bytes of events a listener may have waiting in the daemon (its pipe holds as much again).
pub const BUFFER: usize = 64 * 1024;
/// After its stdin is closed and SIGTERM sent, a listener gets this long before SIGKILL.
pub const STOP_TIMEOUT: Duration = Duration::from_secs(2);
/// After SIGKILL, how long the daemon's shutdown waits for the reap before it goes on.
const REAP_WAIT: Duration = Duration::from_secs(1);
/// A run at least this long resets the restart backoff.
const STABLE: Duration = Duration::from_secs(10);

/// What `LineQueue::push` did with a line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Push {
    Queued,
    /// Dropped for want of room; `first` when the previous line was not dropped.
    Dropped {
        first: bool,
    },
    /// Queued after a run of `dropped` lines that were not.
    Resumed {
        dropped: u64,
    },
}

/// Whole lines waiting for a pipe, at most `cap` bytes. Pure: the writer hands it the count
/// of bytes the pipe took.
#[derive(Debug)]
pub struct LineQueue {
    buf: Vec<u8>,
    /// Bytes at the start of `buf` already written.
    head: usize,
    cap: usize,
    /// Lines dropped since the start, and in the current run of drops.
    dropped: u64,
    run: u64,
}

impl LineQueue {
    pub fn new(cap: usize) -> LineQueue {
        LineQueue {
            buf: Vec::new(),
            head: 0,
            cap,
            dropped: 0,
            run: 0,
        }
    }

    /// Queue `line` and its newline, or drop it whole when it does not fit.
    pub fn push(&mut self, line: &str) -> Push {
        let line = line.trim_end_matches('\n');
        if self.len() + line.len() + 1 > self.cap {
            self.dropped += 1;
            self.run += 1;
            return Push::Dropped {
                first: self.run == 1,
            };
        }
        if self.head > 0 && self.head * 2 >= self.buf.len() {
            self.buf.drain(..self.head);
            self.head = 0;
        }
        self.buf.extend_from_slice(line.as_bytes());
        self.buf.push(b'\n');
        match std::mem::take(&mut self.run) {
            0 => Push::Queued,
            dropped => Push::Resumed { dropped },
        }
    }

    /// The bytes not yet written.
    pub fn pending(&self) -> &[u8] {
        &self.buf[self.head..]
    }

    pub fn len(&self) -> usize {
        self.buf.len() - self.head
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The pipe took `n` bytes of `pending`.
    pub fn consumed(&mut self, n: usize) {
        self.head = (self.head + n).min(self.buf.len());
        if self.head == self.buf.len() {
            self.buf.clear();
            self.head = 0;
        }
    }

    /// Part of the first line was written to a reader that is gone: drop the rest of it, so
    /// the next reader starts at a line's beginning. True when there was such a rest.
    pub fn drop_partial(&mut self) -> bool {
        let started = self.head > 0 && self.buf.get(self.head - 1) != Some(&b'\n');
        if started {
            let rest = self.pending();
            let cut = rest
                .iter()
                .position(|&b| b == b'\n')
                .map_or(rest.len(), |i| i + 1);
            self.consumed(cut);
            self.dropped += 1;
        }
        started
    }

    /// Lines dropped since the start.
    pub fn dropped(&self) -> u64 {
        self.dropped
    }

    /// Lines dropped since the last one that fitted.
    #[cfg(test)]
    pub fn dropping(&self) -> u64 {
        self.run
    }
}

/// The listener lines one event makes for a listener subscribed to `events`: its own name
/// when wanted (`exited` also covers `exited-unexpectedly`, as in `daemon.notify.events`),
/// and `exit` once more for an exit when that is wanted.
pub fn kinds_for<'a>(events: &[String], kind: &'a str, is_exit: bool) -> Vec<&'a str> {
    let mut out = Vec::new();
    if super::notify::wanted(events, kind) {
        out.push(kind);
    }
    if is_exit && kind != "exit" && events.iter().any(|e| e == "exit") {
        out.push("exit");
    }
    out
}

struct Run {
    pid: u32,
    /// The write end of its stdin; `None` once closed (the listener closed its end, or is
    /// being stopped).
    stdin: Option<OwnedFd>,
    started: Instant,
    /// SIGTERM was sent: SIGKILL at this time.
    kill_at: Option<Instant>,
    /// SIGKILL was sent: a shutdown waits for the reap until then.
    reap_by: Option<Instant>,
}

struct Listener {
    /// Its position in the config's list (as when it was started, for one being removed).
    label: String,
    spec: ListenerSpec,
    queue: LineQueue,
    run: Option<Run>,
    /// Exits since the last stable run.
    streak: u32,
    restart_at: Option<Instant>,
    /// The slot the loop gave its stdin while it is on the poll.
    slot: Option<usize>,
    /// The serial its slot is registered under (never reused).
    serial: u64,
}

/// What the loop should change on its poll.
#[derive(Default)]
pub struct Sync {
    /// Slots to take off the poll.
    pub release: Vec<usize>,
    /// Descriptors to close once their slots are off the poll.
    pub close: Vec<OwnedFd>,
    /// Stdin write ends to put on the poll (writable), by serial.
    pub add: Vec<(u64, RawFd)>,
}

#[derive(Default)]
pub struct Listeners {
    /// The config's listeners, in order.
    live: Vec<Listener>,
    /// Removed by a reload, until reaped.
    leaving: Vec<Listener>,
    next_serial: u64,
    /// Closed stdins waiting for `sync` (their slot, if on the poll, comes off first).
    closing: Vec<(Option<usize>, OwnedFd)>,
    /// The latest deadline the loop's heap holds for this part.
    armed: Option<Instant>,
    /// The shutdown stopped every listener: none restarts.
    stopping: bool,
}

impl Listeners {
    /// Make the listeners `specs`: an unchanged one keeps running, one no longer listed is
    /// stopped, a new one is started.
    pub fn configure(&mut self, specs: &[ListenerSpec], pids: &mut Pids, now: Instant) {
        let mut old: Vec<Option<Listener>> = std::mem::take(&mut self.live)
            .into_iter()
            .map(Some)
            .collect();
        for (i, spec) in specs.iter().enumerate() {
            let same = old
                .iter_mut()
                .find(|l| l.as_ref().is_some_and(|l| &l.spec == spec))
                .and_then(Option::take);
            let l = match same {
                Some(mut l) => {
                    if l.label != i.to_string() {
                        log::info!("listener {} is now listener {i}", l.label);
                        l.label = i.to_string();
                    }
                    l
                }
                None => {
                    self.next_serial += 1;
                    let mut l = Listener {
                        label: i.to_string(),
                        spec: spec.clone(),
                        queue: LineQueue::new(BUFFER),
                        run: None,
                        streak: 0,
                        restart_at: None,
                        slot: None,
                        serial: self.next_serial,
                    };
                    if !self.stopping {
                        start(&mut l, pids, now);
                    }
                    l
                }
            };
            self.live.push(l);
        }
        for mut l in old.into_iter().flatten() {
            l.restart_at = None;
            if l.run.is_some() {
                log::info!("listener {} is no longer configured: stopping it", l.label);
                stop(&mut l, &mut self.closing, now);
                self.leaving.push(l);
            }
        }
    }

    /// Queue one event's line for every listener that wants it, and write what the pipes take.
    pub fn deliver(&mut self, report: &Report, is_exit: bool) {
        for l in &mut self.live {
            let kinds = kinds_for(&l.spec.events, &report.event, is_exit);
            for kind in kinds {
                let line = if kind == report.event {
                    report.line()
                } else {
                    Report {
                        event: kind.to_string(),
                        ..report.clone()
                    }
                    .line()
                };
                match l.queue.push(&line) {
                    Push::Queued => {}
                    Push::Dropped { first: true } => log::warn!(
                        "listener {} is not reading its stdin: dropping events ({} KiB waiting)",
                        l.label,
                        BUFFER / 1024
                    ),
                    Push::Dropped { first: false } => {}
                    Push::Resumed { dropped } => log::warn!(
                        "listener {} reads again: {dropped} event(s) were dropped",
                        l.label
                    ),
                }
            }
            flush(l, &mut self.closing);
        }
    }

    /// The stdin registered under `serial` is writable again.
    pub fn writable(&mut self, serial: u64) {
        if let Some(l) = self.live.iter_mut().find(|l| l.serial == serial) {
            flush(l, &mut self.closing);
        }
    }

    /// A child was reaped: true when it was a listener's.
    pub fn reaped(&mut self, pid: u32, status: ExitStatus, pids: &mut Pids, now: Instant) -> bool {
        if let Some(i) = self.leaving.iter().position(|l| runs(l, pid)) {
            let mut l = self.leaving.swap_remove(i);
            end_run(&mut l, &mut self.closing);
            log::info!("listener {} stopped ({})", l.label, describe(status));
            return true;
        }
        let stopping = self.stopping;
        let Some(l) = self.live.iter_mut().find(|l| runs(l, pid)) else {
            return false;
        };
        let ran = end_run(l, &mut self.closing);
        if stopping {
            log::info!("listener {} stopped ({})", l.label, describe(status));
            return true;
        }
        if ran >= STABLE {
            l.streak = 0;
        }
        let delay = backoff::crash_delay(l.streak);
        l.streak = l.streak.saturating_add(1);
        let then = match delay {
            None => "restarting it".to_string(),
            Some(d) => format!("restarting it in {}s", d.as_secs()),
        };
        log::warn!("listener {} {}; {then}", l.label, describe(status));
        match delay {
            None => start(l, pids, now),
            Some(d) => l.restart_at = Some(now + d),
        }
        true
    }

    /// Restarts and kills that are due.
    pub fn due(&mut self, at: Instant, pids: &mut Pids, now: Instant) {
        if self.armed == Some(at) {
            self.armed = None;
        }
        for l in &mut self.live {
            if l.restart_at.is_some_and(|t| t <= now) && !self.stopping {
                l.restart_at = None;
                start(l, pids, now);
            }
        }
        for l in self.live.iter_mut().chain(self.leaving.iter_mut()) {
            if let Some(run) = &mut l.run {
                if run.kill_at.is_some_and(|t| t <= now) {
                    run.kill_at = None;
                    run.reap_by = Some(now + REAP_WAIT);
                    log::warn!(
                        "listener {} still running {}s after SIGTERM: sending SIGKILL",
                        l.label,
                        STOP_TIMEOUT.as_secs()
                    );
                    signal(run.pid, Signal::SIGKILL);
                }
            }
        }
    }

    /// The shutdown: close every listener's stdin and send SIGTERM; no restarts from now on.
    pub fn stop_all(&mut self, now: Instant) {
        if self.stopping {
            return;
        }
        self.stopping = true;
        for l in &mut self.live {
            l.restart_at = None;
            if l.run.is_some() {
                stop(l, &mut self.closing, now);
            }
        }
    }

    /// Whether the shutdown has stopped every listener (or given up waiting for a reap).
    pub fn all_gone(&self, now: Instant) -> bool {
        self.stopping
            && self.live.iter().chain(&self.leaving).all(|l| {
                l.run
                    .as_ref()
                    .is_none_or(|r| r.reap_by.is_some_and(|t| t <= now))
            })
    }

    pub fn is_stopping(&self) -> bool {
        self.stopping
    }

    /// The earliest time `due` has something to do.
    pub fn next_deadline(&self) -> Option<Instant> {
        let restarts = self.live.iter().filter_map(|l| l.restart_at);
        let kills = self
            .live
            .iter()
            .chain(&self.leaving)
            .filter_map(|l| l.run.as_ref())
            .filter_map(|r| r.kill_at.or(r.reap_by));
        restarts.chain(kills).min()
    }

    /// The deadline to push on the loop's heap, when it is earlier than the one pushed last.
    pub fn arm(&mut self) -> Option<Instant> {
        let next = self.next_deadline()?;
        if self.armed.is_some_and(|a| a <= next) {
            return None;
        }
        self.armed = Some(next);
        Some(next)
    }

    /// What the poll should change: closed stdins off (then closed), stdins with bytes
    /// pending on, those drained off. The loop calls `registered` for each added one.
    pub fn sync(&mut self) -> Sync {
        let mut out = Sync::default();
        for (slot, fd) in self.closing.drain(..) {
            out.release.extend(slot);
            out.close.push(fd);
        }
        for l in &mut self.live {
            let fd = l.run.as_ref().and_then(|r| r.stdin.as_ref());
            let wants = fd.is_some() && !l.queue.is_empty();
            match (wants, l.slot) {
                (true, None) => {
                    if let Some(fd) = fd {
                        out.add.push((l.serial, fd.as_raw_fd()));
                    }
                }
                (false, Some(slot)) => {
                    out.release.push(slot);
                    l.slot = None;
                }
                _ => {}
            }
        }
        out
    }

    /// The stdin of `serial` is on the poll at `slot`.
    pub fn registered(&mut self, serial: u64, slot: usize) {
        if let Some(l) = self.live.iter_mut().find(|l| l.serial == serial) {
            l.slot = Some(slot);
        }
    }

    /// Events dropped since the start, by listener label (for `/metrics`).
    pub fn dropped(&self) -> Vec<(String, u64)> {
        self.live
            .iter()
            .map(|l| (l.label.clone(), l.queue.dropped()))
            .collect()
    }
}

/// The `SUP_PROCESS_NAME` a listener's processes carry: `#` is in no instance's name.
fn tag_name(serial: u64) -> String {
    format!("listener#{serial}")
}

fn runs(l: &Listener, pid: u32) -> bool {
    l.run.as_ref().is_some_and(|r| r.pid == pid)
}

fn describe(status: ExitStatus) -> String {
    match status {
        ExitStatus::Code(c) => format!("exited with code {c}"),
        ExitStatus::Signaled(s) => format!("was killed by signal {s}"),
    }
}

fn signal(pid: u32, sig: Signal) {
    let Ok(pgid) = i32::try_from(pid) else {
        return;
    };
    if pgid > 1 {
        let _ = killpg(Pid::from_raw(pgid), sig);
    }
}

/// Close `l`'s stdin: it joins `closing` with its slot, which the loop releases first.
fn close_stdin(l: &mut Listener, closing: &mut Vec<(Option<usize>, OwnedFd)>) {
    if let Some(fd) = l.run.as_mut().and_then(|r| r.stdin.take()) {
        closing.push((l.slot.take(), fd));
    }
}

/// The leader was reaped: what is left of its group goes, its stdin is closed, the rest of a
/// half-read line dropped. Returns how long it ran.
fn end_run(l: &mut Listener, closing: &mut Vec<(Option<usize>, OwnedFd)>) -> Duration {
    close_stdin(l, closing);
    let Some(run) = l.run.take() else {
        return Duration::ZERO;
    };
    // A child it left behind may hold the pipe or go on writing: the group dies with it, and
    // so does one that left the group (one /proc scan per end, which backoff keeps rare).
    signal(run.pid, Signal::SIGKILL);
    if let Some(tag) = super::spawn::daemon_tag() {
        let strays = super::state::kill_tagged(tag, Some(&[tag_name(l.serial)]), &[], &[]);
        if !strays.is_empty() {
            log::warn!(
                "listener {}: killed {} process(es) that had left its group: {strays:?}",
                l.label,
                strays.len()
            );
        }
    }
    if l.queue.drop_partial() {
        log::warn!(
            "listener {} ended in the middle of a line: its rest is dropped",
            l.label
        );
    }
    run.started.elapsed()
}

/// Write what the pipe takes, never waiting.
fn flush(l: &mut Listener, closing: &mut Vec<(Option<usize>, OwnedFd)>) {
    let Some(fd) = l.run.as_ref().and_then(|r| r.stdin.as_ref()) else {
        return;
    };
    let mut closed = None;
    while !l.queue.is_empty() {
        match nix::unistd::write(fd, l.queue.pending()) {
            Ok(0) => break,
            Ok(n) => l.queue.consumed(n),
            Err(Errno::EINTR) => continue,
            Err(Errno::EAGAIN) => break,
            Err(e) => {
                closed = Some(e);
                break;
            }
        }
    }
    if let Some(e) = closed {
        let why = if e == Errno::EPIPE {
            "closed its stdin".to_string()
        } else {
            format!("cannot be written to: {e}")
        };
        log::warn!(
            "listener {} {why}: events wait for its restart (up to {} KiB)",
            l.label,
            BUFFER / 1024
        );
        close_stdin(l, closing);
    }
}

/// Start `l` with a new stdin pipe; on failure, try again after a backoff.
fn start(l: &mut Listener, pids: &mut Pids, now: Instant) {
    match spawn(l) {
        Ok((pid, stdin)) => {
            log::info!(
                "listener {} started pid={pid}: {}",
                l.label,
                l.spec.cmd.join(" ")
            );
            pids.insert(pid, PidOwner::Listener);
            l.run = Some(Run {
                pid,
                stdin: Some(stdin),
                started: now,
                kill_at: None,
                reap_by: None,
            });
        }
        Err(e) => {
            l.streak = l.streak.saturating_add(1);
            let delay = backoff::start_delay(l.streak);
            log::error!(
                "listener {} could not start: {e}; trying again in {}s",
                l.label,
                delay.as_secs()
            );
            l.restart_at = Some(now + delay);
        }
    }
}

fn spawn(l: &Listener) -> Result<(u32, OwnedFd), String> {
    let (program, args) = l.spec.cmd.split_first().ok_or("empty command")?;
    let (read, write) = nix::unistd::pipe2(OFlag::O_CLOEXEC).map_err(|e| format!("pipe: {e}"))?;
    fcntl(write.as_raw_fd(), FcntlArg::F_SETFL(OFlag::O_NONBLOCK))
        .map_err(|e| format!("pipe: {e}"))?;
    let mut cmd = Command::new(program);
    cmd.args(args)
        .stdin(Stdio::from(read))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .env("SUP_LISTENER", &l.label)
        .process_group(0);
    let daemon = std::process::id() as nix::libc::pid_t;
    // SAFETY: `like_a_job` makes raw syscalls only, as a child between fork and exec may.
    unsafe {
        cmd.pre_exec(move || super::spawn::like_a_job(daemon));
    }
    // Found by the shutdown's sweep (and a later daemon's) should it leave its group, and by
    // the sweep at its own end under a name no instance can have.
    if let Some(tag) = super::spawn::daemon_tag() {
        cmd.env(super::state::DAEMON_VAR, tag)
            .env(super::state::INSTANCE_VAR, tag_name(l.serial));
    }
    let child = cmd
        .spawn()
        .map_err(|e| format!("unable to run {program}: {e}"))?;
    Ok((child.id(), write))
}

/// Close stdin (after one last write of what the pipe takes), SIGTERM, SIGKILL later.
fn stop(l: &mut Listener, closing: &mut Vec<(Option<usize>, OwnedFd)>, now: Instant) {
    flush(l, closing);
    close_stdin(l, closing);
    if let Some(run) = &mut l.run {
        signal(run.pid, Signal::SIGTERM);
        signal(run.pid, Signal::SIGCONT);
        run.kill_at = Some(now + STOP_TIMEOUT);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_full_queue_drops_whole_lines_and_counts_them() {
        let mut q = LineQueue::new(20);
        assert_eq!(q.push("0123456789"), Push::Queued); // 11 bytes
        assert_eq!(q.push("abcdefgh"), Push::Queued); // 20 bytes: full
        assert_eq!(q.push("x"), Push::Dropped { first: true });
        assert_eq!(q.push("y"), Push::Dropped { first: false });
        assert_eq!(q.dropping(), 2);
        assert_eq!(q.pending(), b"0123456789\nabcdefgh\n");
        // The pipe takes part of a line: only room for whole lines counts.
        q.consumed(4);
        assert_eq!(q.push("z"), Push::Resumed { dropped: 2 });
        assert_eq!(q.pending(), b"456789\nabcdefgh\nz\n");
        assert_eq!(q.dropped(), 2);
        assert_eq!(q.dropping(), 0);
        // A line longer than the whole buffer never fits.
        assert_eq!(q.push(&"w".repeat(30)), Push::Dropped { first: true });
        q.consumed(q.len());
        assert!(q.is_empty());
        assert_eq!(q.push("after"), Push::Resumed { dropped: 1 });
    }

    #[test]
    fn a_reader_that_died_mid_line_leaves_the_rest_dropped() {
        let mut q = LineQueue::new(100);
        q.push("first");
        q.push("second");
        assert!(!q.drop_partial());
        q.consumed(3);
        assert!(q.drop_partial());
        assert_eq!(q.pending(), b"second\n");
        assert_eq!(q.dropped(), 1);
        q.consumed(7);
        assert!(!q.drop_partial());
        assert!(q.is_empty());
    }

    #[test]
    fn room_is_reused_as_lines_go_out() {
        let mut q = LineQueue::new(16);
        for i in 0..1000 {
            assert_eq!(q.push(&format!("line{i:03}")), Push::Queued, "{i}");
            q.consumed(q.len());
        }
        assert_eq!(q.dropped(), 0);
        assert!(q.buf.capacity() < 64);
    }

    #[test]
    fn exit_is_sent_once_more_under_its_own_name() {
        let ev = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        let all = ev(&["backoff", "exit", "fatal", "health"]);
        assert_eq!(kinds_for(&all, "fatal", false), ["fatal"]);
        assert_eq!(kinds_for(&all, "exited-unexpectedly", true), ["exit"]);
        assert_eq!(kinds_for(&all, "health", false), ["health"]);
        assert!(kinds_for(&all, "running", false).is_empty());
        let exited = ev(&["exited", "exit"]);
        assert_eq!(
            kinds_for(&exited, "exited-unexpectedly", true),
            ["exited-unexpectedly", "exit"]
        );
        assert!(kinds_for(&ev(&["fatal"]), "health", false).is_empty());
    }
}
