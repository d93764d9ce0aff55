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

#[cfg(test)]
mod tests {
    use std::os::unix::net::UnixDatagram;

    use super::*;
    use crate::daemon::sdnotify::Target;

    /// A `Systemd` sending to a socket the test reads, and that socket.
    fn linked(
        name: &str,
        watchdog: Option<Duration>,
    ) -> (Systemd, UnixDatagram, std::path::PathBuf) {
        let dir = std::env::temp_dir().join(format!("sup-systemd-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("mkdir");
        let path = dir.join("notify.sock");
        let rx = UnixDatagram::bind(&path).expect("bind");
        rx.set_nonblocking(true).expect("nonblocking");
        let link = Link::new(&Target::Path(path)).expect("link");
        (Systemd::new(Some(link), watchdog), rx, dir)
    }

    /// Every message waiting on the socket.
    fn got(rx: &UnixDatagram) -> Vec<String> {
        let mut out = Vec::new();
        let mut buf = [0u8; 1024];
        while let Ok(n) = rx.recv(&mut buf) {
            out.push(String::from_utf8_lossy(&buf[..n]).into_owned());
        }
        out
    }

    #[test]
    fn ready_once_settled_status_only_when_its_text_changes() {
        let (mut sd, rx, dir) = linked("ready", None);
        let starting = Tally::with(&[(State::Running, 1), (State::Starting, 1)], 0);
        sd.end_turn(starting, true);
        let pid = std::process::id();
        assert_eq!(
            got(&rx),
            [format!(
                "STATUS=1 running, 0 backoff, 0 fatal, 1 starting\nMAINPID={pid}\n"
            )]
        );
        sd.end_turn(starting, true);
        assert!(got(&rx).is_empty(), "nothing changed, nothing sent");
        // A start held back by a dependency does not hold READY back, and does not show.
        let held = Tally::with(&[(State::Running, 1), (State::Starting, 1)], 1);
        sd.end_turn(held, false);
        assert!(got(&rx).is_empty(), "dependency order not settled yet");
        sd.end_turn(held, true);
        assert_eq!(got(&rx), ["READY=1\n"]);
        let up = Tally::with(&[(State::Running, 2)], 0);
        sd.end_turn(up, true);
        assert_eq!(got(&rx), ["STATUS=2 running, 0 backoff, 0 fatal\n"]);

        // A reload: RELOADING=1 at once, READY=1 once settled again.
        sd.reloading();
        let msgs = got(&rx);
        assert!(
            msgs.len() == 1 && msgs[0].starts_with("RELOADING=1\nMONOTONIC_USEC="),
            "{msgs:?}"
        );
        let stopping = Tally::with(&[(State::Running, 1), (State::Stopping, 1)], 0);
        sd.end_turn(stopping, true);
        assert_eq!(
            got(&rx),
            ["STATUS=1 running, 0 backoff, 0 fatal, 1 stopping\n"]
        );
        sd.end_turn(up, true);
        assert_eq!(
            got(&rx),
            ["READY=1\nSTATUS=2 running, 0 backoff, 0 fatal\n"]
        );

        // The shutdown: STOPPING=1 once, and READY=1 never again.
        sd.stopping();
        sd.stopping();
        sd.reloading();
        assert_eq!(got(&rx), ["STOPPING=1\n"]);
        sd.end_turn(Tally::with(&[(State::Stopped, 2)], 0), true);
        assert_eq!(
            got(&rx),
            ["STATUS=0 running, 0 backoff, 0 fatal, 2 stopped\n"]
        );
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn the_watchdog_pings_only_at_its_current_deadline() {
        let t0 = Instant::now();
        let (mut sd, rx, dir) = linked("watchdog", Some(Duration::from_millis(100)));
        let first = sd.arm(t0);
        assert_eq!(first, Some(t0 + Duration::from_millis(100)));
        let Some(first) = first else { return };
        assert_eq!(sd.watchdog_due(t0, t0), None, "a stale entry does nothing");
        assert!(got(&rx).is_empty());
        let late = first + Duration::from_millis(30);
        assert_eq!(
            sd.watchdog_due(first, late),
            Some(late + Duration::from_millis(100))
        );
        let msgs = got(&rx);
        assert!(
            msgs.len() == 1 && msgs[0].starts_with("WATCHDOG=1\nMAINPID="),
            "{msgs:?}"
        );
        let _ = std::fs::remove_dir_all(&dir);

        // No link, or no watchdog: no deadline, so an idle daemon never wakes for it.
        assert_eq!(
            Systemd::new(None, Some(Duration::from_secs(1))).arm(t0),
            None
        );
        let (mut plain, _rx, dir) = linked("plain", None);
        assert_eq!(plain.arm(t0), None);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
