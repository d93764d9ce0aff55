//! The sd_notify protocol, spoken by the daemon to whatever started it (systemd with
//! `Type=notify`): where `$NOTIFY_SOCKET` points, the watchdog interval `$WATCHDOG_USEC` asks
//! for, the text of each message, and the one socket they are sent on.
//!
//! The socket is an unbound, non-blocking datagram socket made once at start; each message is
//! one `sendto` to the address, as `sd_notify(3)` does. A send that fails (nobody listens,
//! the receiver's queue is full) drops that message: it is logged at WARN once per run of
//! failures, never retried, never fatal, and it never blocks the loop. When the loop sends
//! what is `event_loop/systemd.rs`'s business; this file knows only the protocol.
//!
//! Reading the jobs' own `READY=1` (`ready: notify`) is `event_loop/readiness.rs`'s.

use std::ffi::OsStr;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::net::{SocketAddr, UnixDatagram};
use std::path::PathBuf;
use std::time::Duration;

/// The variables that carry the protocol. Children never inherit them from the daemon: a job
/// that found them would speak for sup (or, with `WATCHDOG_USEC`, believe it is watched).
pub const VARS: [&str; 3] = ["NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID"];

/// Where `$NOTIFY_SOCKET` points.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// A socket in the file system.
    Path(PathBuf),
    /// `@name`: a name in the abstract namespace (no file; the `@` is not part of it).
    Abstract(Vec<u8>),
}

/// `$NOTIFY_SOCKET` read as systemd writes it: an absolute path, or `@name` for the abstract
/// namespace. Anything else (empty, relative, `vsock:`) is not a target sup can send to.
pub fn target(value: &OsStr) -> Result<Target, String> {
    let bytes = value.as_bytes();
    match bytes.first() {
        Some(b'@') if bytes.len() > 1 => Ok(Target::Abstract(bytes[1..].to_vec())),
        Some(b'/') => Ok(Target::Path(PathBuf::from(value))),
        _ => Err(format!(
            "NOTIFY_SOCKET={:?} is neither an absolute path nor an @abstract name",
            value.to_string_lossy()
        )),
    }
}

/// How often to send `WATCHDOG=1`: half of `$WATCHDOG_USEC`, as `sd_watchdog_enabled(3)`
/// advises, when it is set and `$WATCHDOG_PID` is unset or names this process (a watchdog
/// meant for another process, such as a parent shell, is not ours to feed).
pub fn watchdog_interval(usec: Option<&OsStr>, pid: Option<&OsStr>, own: u32) -> Option<Duration> {
    let usec: u64 = usec?.to_str()?.trim().parse().ok()?;
    if usec == 0 {
        return None;
    }
    if let Some(pid) = pid {
        let pid: u32 = pid.to_str()?.trim().parse().ok()?;
        if pid != own {
            return None;
        }
    }
    Some(Duration::from_micros(usec / 2).max(Duration::from_millis(1)))
}

/// One datagram's text: `KEY=value` lines, in the order they were added.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Message(String);

impl Message {
    fn line(mut self, key: &str, value: &str) -> Message {
        // A value is one line: a newline in it would start a key of its own.
        let value: String = value.chars().filter(|&c| c != '\n').collect();
        self.0.push_str(key);
        self.0.push('=');
        self.0.push_str(&value);
        self.0.push('\n');
        self
    }

    pub fn ready(self) -> Message {
        self.line("READY", "1")
    }

    /// `RELOADING=1` with `MONOTONIC_USEC` (CLOCK_MONOTONIC at the start of the reload), which
    /// systemd's `Type=notify-reload` requires to tell this reload from an earlier one.
    pub fn reloading(self, monotonic_usec: u64) -> Message {
        self.line("RELOADING", "1")
            .line("MONOTONIC_USEC", &monotonic_usec.to_string())
    }

    pub fn stopping(self) -> Message {
        self.line("STOPPING", "1")
    }

    pub fn watchdog(self) -> Message {
        self.line("WATCHDOG", "1")
    }

    pub fn status(self, text: &str) -> Message {
        self.line("STATUS", text)
    }

    pub fn mainpid(self, pid: u32) -> Message {
        self.line("MAINPID", &pid.to_string())
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// `STATUS=` text from counts by state: the `always` ones even at 0 (`12 running, 1 backoff,
/// 0 fatal`), then the others that are not 0.
pub fn status_text(always: &[(&str, usize)], if_any: &[(&str, usize)]) -> String {
    let shown = always
        .iter()
        .chain(if_any.iter().filter(|(_, n)| *n > 0))
        .map(|(state, n)| format!("{n} {state}"));
    shown.collect::<Vec<_>>().join(", ")
}

/// CLOCK_MONOTONIC now, in microseconds (the clock systemd compares `MONOTONIC_USEC` with).
pub fn monotonic_usec() -> u64 {
    match nix::time::clock_gettime(nix::time::ClockId::CLOCK_MONOTONIC) {
        Ok(t) => (t.tv_sec() as u64)
            .saturating_mul(1_000_000)
            .saturating_add(t.tv_nsec() as u64 / 1000),
        Err(_) => 0,
    }
}

/// The socket messages leave on, and where they go.
pub struct Link {
    socket: UnixDatagram,
    addr: SocketAddr,
    shown: String,
    /// The last send failed: further failures are not logged again until one succeeds.
    failing: bool,
}

impl Link {
    /// A non-blocking, unbound datagram socket (close-on-exec, as std makes every socket) for
    /// `target`. Fails when the socket cannot be made or the address is too long.
    pub fn new(target: &Target) -> io::Result<Link> {
        let (addr, shown) = match target {
            Target::Path(p) => (SocketAddr::from_pathname(p)?, p.display().to_string()),
            Target::Abstract(name) => {
                use std::os::linux::net::SocketAddrExt;
                (
                    SocketAddr::from_abstract_name(name)?,
                    format!("@{}", String::from_utf8_lossy(name)),
                )
            }
        };
        let socket = UnixDatagram::unbound()?;
        socket.set_nonblocking(true)?;
        Ok(Link {
            socket,
            addr,
            shown,
            failing: false,
        })
    }

    /// Where messages go, for the log.
    pub fn shown(&self) -> &str {
        &self.shown
    }

    /// Send one message now. Never blocks; a failure is logged (once per run of failures)
    /// and the message is dropped.
    pub fn send(&mut self, msg: &Message) {
        if msg.is_empty() {
            return;
        }
        match self
            .socket
            .send_to_addr(msg.as_str().as_bytes(), &self.addr)
        {
            Ok(_) => {
                if self.failing {
                    log::info!("sd_notify: {} takes messages again", self.shown);
                }
                self.failing = false;
                log::trace!("sd_notify: sent {:?}", msg.as_str());
            }
            Err(e) if self.failing => {
                log::debug!(
                    "sd_notify: {:?} not sent to {}: {e}",
                    msg.as_str(),
                    self.shown
                );
            }
            Err(e) => {
                self.failing = true;
                log::warn!(
                    "sd_notify: unable to send {:?} to {}: {e}; dropped (further failures are \
                     not logged until a send succeeds)",
                    msg.as_str().trim_end().replace('\n', " "),
                    self.shown
                );
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn notify_socket_is_a_path_or_an_abstract_name() {
        assert_eq!(
            target(OsStr::new("/run/systemd/notify")),
            Ok(Target::Path(PathBuf::from("/run/systemd/notify")))
        );
        assert_eq!(
            target(OsStr::new("@sup/notify")),
            Ok(Target::Abstract(b"sup/notify".to_vec()))
        );
        for bad in ["", "@", "relative.sock", "vsock:2:1234"] {
            assert!(target(OsStr::new(bad)).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn watchdog_is_half_the_interval_and_only_for_our_pid() {
        let os = |s: &'static str| Some(OsStr::new(s));
        assert_eq!(
            watchdog_interval(os("200000"), None, 42),
            Some(Duration::from_millis(100))
        );
        assert_eq!(
            watchdog_interval(os("30000000"), os("42"), 42),
            Some(Duration::from_secs(15))
        );
        assert_eq!(watchdog_interval(os("200000"), os("41"), 42), None);
        assert_eq!(watchdog_interval(None, os("42"), 42), None);
        assert_eq!(watchdog_interval(os("0"), None, 42), None);
        assert_eq!(watchdog_interval(os("soon"), None, 42), None);
        assert_eq!(watchdog_interval(os("200000"), os("x"), 42), None);
        // Never a zero period, which would spin the loop.
        assert_eq!(
            watchdog_interval(os("1"), None, 42),
            Some(Duration::from_millis(1))
        );
    }

    #[test]
    fn messages_are_key_value_lines_in_order() {
        let first = Message::default()
            .ready()
            .mainpid(4312)
            .status("2 running, 0 backoff, 0 fatal");
        assert_eq!(
            first.as_str(),
            "READY=1\nMAINPID=4312\nSTATUS=2 running, 0 backoff, 0 fatal\n"
        );
        assert_eq!(
            Message::default().reloading(123_456).as_str(),
            "RELOADING=1\nMONOTONIC_USEC=123456\n"
        );
        assert_eq!(Message::default().stopping().as_str(), "STOPPING=1\n");
        assert_eq!(Message::default().watchdog().as_str(), "WATCHDOG=1\n");
        assert!(Message::default().is_empty());
        // A newline in a value cannot smuggle a key in.
        assert_eq!(
            Message::default().status("a\nREADY=1").as_str(),
            "STATUS=aREADY=1\n"
        );
    }

    #[test]
    fn status_shows_running_backoff_fatal_always_and_the_rest_when_present() {
        let always = [("running", 12), ("backoff", 1), ("fatal", 0)];
        assert_eq!(
            status_text(&always, &[("starting", 0), ("stopping", 0)]),
            "12 running, 1 backoff, 0 fatal"
        );
        assert_eq!(
            status_text(
                &always,
                &[("starting", 2), ("stopping", 0), ("scheduled", 3)]
            ),
            "12 running, 1 backoff, 0 fatal, 2 starting, 3 scheduled"
        );
    }

    #[test]
    fn monotonic_clock_moves_forward() {
        let a = monotonic_usec();
        let b = monotonic_usec();
        assert!(a > 0 && b >= a);
    }

    #[test]
    fn a_send_with_nobody_listening_is_dropped_without_blocking() {
        let dir = std::env::temp_dir().join(format!("sup-sdnotify-{}", std::process::id()));
        let _ = std::fs::create_dir_all(&dir);
        let path = dir.join("n.sock");
        let _ = std::fs::remove_file(&path);
        let mut link = Link::new(&Target::Path(path.clone())).expect("link");
        link.send(&Message::default().ready());
        assert!(link.failing, "no socket there: the send failed");
        let rx = UnixDatagram::bind(&path).expect("bind");
        link.send(&Message::default().ready());
        assert!(!link.failing);
        let mut buf = [0u8; 64];
        let n = rx.recv(&mut buf).expect("recv");
        assert_eq!(&buf[..n], b"READY=1\n");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
