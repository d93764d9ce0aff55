//! `Systemd`: what the daemon tells the service manager that started it, when
//! `$NOTIFY_SOCKET` was set (`daemon/sdnotify.rs` has the protocol and the socket).
//!
//! - `READY=1` (with `MAINPID=` in the first message ever sent) once the loop is settled:
//!   no instance is starting (one held back by a dependency does not count: the dependency
//!   itself is counted) or stopping. So every autostart instance is running (ready, for a job
//!   with `ready:`), scheduled, in backoff, fatal or exited: a job that keeps failing does not
//!   hold READY back, and a start always ends, at `starttime` or `ready_timeout` at the
//!   latest.
//! - `RELOADING=1` with `MONOTONIC_USEC=` when a reload begins, then `READY=1` once settled
//!   again, as `Type=notify-reload` wants.
//! - `STOPPING=1` when the shutdown begins; nothing is READY after it.
//! - `STATUS=` with the counts by state, at the end of a turn whose counts differ from those
//!   last sent: at most one datagram a turn, and none for a turn that changed nothing.
//! - `WATCHDOG=1` every half `$WATCHDOG_USEC`, from a `TimerKey::Watchdog` deadline: only
//!   with a watchdog is there a periodic deadline, so without one an idle daemon still makes
//!   no wakeups.
//!
//! This part owns the link and what was sent; it reads the `Tally` it is given and returns
//! deadlines, and never touches an instance.

use std::time::{Duration, Instant};

use super::supervisor::Tally;
use crate::core::State;
use crate::daemon::sdnotify::{self, Link, Message};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// The first autostart set is still coming up.
    Starting,
    /// A reload is being applied.
    Reloading,
    Ready,
    Stopping,
}

/// The service manager's link and what it has been told.
pub(in crate::daemon) struct Systemd {
    link: Option<Link>,
    phase: Phase,
    mainpid_sent: bool,
    /// The counts last looked at, and the `STATUS=` text last sent: a text is made only when
    /// the counts moved, and sent only when it differs (a change the text does not show, such
    /// as a start held back by a dependency, sends nothing).
    seen: Option<Tally>,
    told: String,
    watchdog: Option<Duration>,
    /// The one `WATCHDOG=1` deadline that is current; any other heap entry is stale.
    watchdog_at: Option<Instant>,
}

impl Systemd {
    /// With no link (no `$NOTIFY_SOCKET`), every call does nothing.
    pub(in crate::daemon) fn new(link: Option<Link>, watchdog: Option<Duration>) -> Systemd {
        Systemd {
            watchdog: watchdog.filter(|_| link.is_some()),
            link,
            phase: Phase::Starting,
            mainpid_sent: false,
            seen: None,
            told: String::new(),
            watchdog_at: None,
        }
    }

    /// The first `WATCHDOG=1` deadline, for the heap (none without a watchdog).
    pub(in crate::daemon) fn arm(&mut self, now: Instant) -> Option<Instant> {
        let at = now + self.watchdog?;
        self.watchdog_at = Some(at);
        Some(at)
    }

    /// A `TimerKey::Watchdog` entry came due: ping if it is the current one, and return the
    /// next deadline, measured from `now` so a late turn does not bunch pings.
    pub(in crate::daemon) fn watchdog_due(&mut self, at: Instant, now: Instant) -> Option<Instant> {
        if self.watchdog_at != Some(at) {
            return None;
        }
        let msg = self.first(Message::default().watchdog());
        self.send(msg);
        self.arm(now)
    }

    /// A reload begins (not a dry run): sent at once, before the config is read.
    pub(in crate::daemon) fn reloading(&mut self) {
        if self.link.is_none() || self.phase == Phase::Stopping {
            return;
        }
        self.phase = Phase::Reloading;
        let msg = self.first(Message::default().reloading(sdnotify::monotonic_usec()));
        self.send(msg);
    }

    /// The shutdown begins: sent at once.
    pub(in crate::daemon) fn stopping(&mut self) {
        if self.link.is_none() || self.phase == Phase::Stopping {
            return;
        }
        self.phase = Phase::Stopping;
        let msg = self.first(Message::default().stopping());
        self.send(msg);
    }

    /// The end of a turn: `READY=1` if the loop is settled and systemd waits for it, and
    /// `STATUS=` if the counts moved, in one datagram.
    pub(in crate::daemon) fn end_turn(&mut self, tally: Tally, order_settled: bool) {
        if self.link.is_none() {
            return;
        }
        let mut msg = Message::default();
        let waiting_for_ready = matches!(self.phase, Phase::Starting | Phase::Reloading);
        if waiting_for_ready && order_settled && settled(&tally) {
            self.phase = Phase::Ready;
            msg = msg.ready();
        }
        if self.seen != Some(tally) {
            self.seen = Some(tally);
            let text = status(&tally);
            if text != self.told {
                msg = msg.status(&text);
                self.told = text;
            }
        }
        if !msg.is_empty() {
            let msg = self.first(msg);
            self.send(msg);
        }
    }

    /// The first message ever sent names the daemon's pid.
    fn first(&mut self, msg: Message) -> Message {
        if self.mainpid_sent {
            return msg;
        }
        self.mainpid_sent = true;
        msg.mainpid(std::process::id())
    }

    fn send(&mut self, msg: Message) {
        if let Some(link) = &mut self.link {
            link.send(&msg);
        }
    }
}

/// Nothing is on its way up or down: no start in progress but those held by a dependency.
fn settled(t: &Tally) -> bool {
    t.of(State::Starting) <= t.waiting() && t.of(State::Stopping) == 0
}

fn status(t: &Tally) -> String {
    sdnotify::status_text(
        &[
            ("running", t.of(State::Running)),
            ("backoff", t.of(State::Backoff)),
            ("fatal", t.of(State::Fatal)),
        ],
        &[
            ("starting", t.of(State::Starting)),
            ("stopping", t.of(State::Stopping)),
            ("scheduled", t.of(State::Scheduled)),
            ("exited", t.of(State::Exited)),
            ("stopped", t.of(State::Stopped)),
        ],
    )
}
