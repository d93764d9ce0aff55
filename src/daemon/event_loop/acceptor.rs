//! The control socket's listener: accepting, refusing, and never leaving a client unanswered.
//!
//! Owns the listener, a few reserve descriptors and the accept retry deadline. It hands the
//! loop connections from our own uid (or root) that fit under the connection limit; everything
//! else gets a one-line error here and is closed. It knows nothing of the loop's sources.
//!
//! The reserve is what keeps the daemon controllable when its jobs' pipes and files have
//! taken every descriptor: spawns defer on EMFILE while the reserve is held, and a client
//! that finds the table full is served on a reserve descriptor (the last one only answers
//! "out of file descriptors"). `top_up` takes freed descriptors back before a spawn can.

use std::io;
use std::os::fd::{AsRawFd, OwnedFd};
use std::time::{Duration, Instant};

use mio::net::UnixListener;

use crate::control::client;
use crate::control::proto::Response;
use crate::control::server::Conn;

/// After an accept error other than running out of descriptors, try again this soon.
const ACCEPT_RETRY: Duration = Duration::from_millis(100);

/// At most this many connections are taken from the backlog in one turn, so that a flood of
/// connects (refused ones included) cannot hold the loop away from everything else.
const ACCEPTS_PER_TURN: u32 = 64;

/// Descriptors held back for clients: enough for an operator's `status`, `stop all` and a
/// `tail -f` or two while jobs hold the rest.
const RESERVE: usize = 8;

pub(super) struct Acceptor {
    listener: UnixListener,
    /// Open /dev/null descriptors, closed one at a time to make room for a client when
    /// the table is full, and reopened by `top_up`.
    reserve: Vec<OwnedFd>,
    /// Running out of descriptors was logged; cleared by the next accept that works.
    fd_shortage: bool,
    /// When accepting is tried again after an error.
    retry_at: Option<Instant>,
    /// This turn's accepts were used up with clients still waiting: accept again next turn.
    more: bool,
    /// Accepts left this turn.
    budget: u32,
    uid: u32,
}

/// What one accept gave.
pub(super) enum Accepted {
    /// A client to serve.
    Conn(Conn),
    /// Nothing more now. With a deadline: accept again then (the listener is edge-triggered,
    /// so a backlog left after an error would never wake the loop).
    Done(Option<Instant>),
}

impl Acceptor {
    pub(super) fn new(listener: UnixListener) -> Acceptor {
        let mut acceptor = Acceptor {
            listener,
            reserve: Vec::with_capacity(RESERVE),
            fd_shortage: false,
            retry_at: None,
            more: false,
            budget: 0,
            uid: nix::unistd::getuid().as_raw(),
        };
        if let Err(e) = acceptor.top_up() {
            log::warn!("unable to open /dev/null as a reserve descriptor: {e}");
        }
        acceptor
    }

    /// Take back reserve descriptors a client gave up. Call as soon as a client is closed,
    /// before anything else in the turn can take the descriptor.
    pub(super) fn top_up(&mut self) -> io::Result<()> {
        while self.reserve.len() < RESERVE {
            self.reserve.push(open_reserve()?);
        }
        Ok(())
    }

    /// A new turn: the accept budget is full again. Returns whether clients were left
    /// waiting last turn (then accept now, without waiting for the listener to fire).
    pub(super) fn new_turn(&mut self) -> bool {
        self.budget = ACCEPTS_PER_TURN;
        std::mem::take(&mut self.more)
    }

    /// Clients are left in the backlog for the next turn: poll without sleeping.
    pub(super) fn has_more(&self) -> bool {
        self.more
    }

    /// The retry deadline `at` came: is it still the one armed?
    pub(super) fn retry_due(&self, at: Instant) -> bool {
        self.retry_at == Some(at)
    }

    /// Accept the next client to serve, refusing (with an answer) those over `max` of
    /// `clients` and those of another uid. Call until `Done`.
    pub(super) fn next(&mut self, clients: usize, max: usize, now: Instant) -> Accepted {
        self.retry_at = None;
        loop {
            if self.budget == 0 {
                self.more = true;
                return Accepted::Done(None);
            }
            self.budget -= 1;
            match self.listener.accept() {
                Ok((stream, _)) => {
                    self.fd_shortage = false;
                    let mut conn = Conn::new(stream);
                    if clients >= max {
                        refuse(
                            &mut conn,
                            format!("the daemon has too many clients ({max}); try again later"),
                        );
                        continue;
                    }
                    if let Err(why) = self.check_peer(&conn) {
                        refuse(&mut conn, why);
                        continue;
                    }
                    return Accepted::Conn(conn);
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Accepted::Done(None),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e)
                    if matches!(
                        e.raw_os_error(),
                        Some(nix::libc::EMFILE | nix::libc::ENFILE)
                    ) && !self.reserve.is_empty() =>
                {
                    if !self.fd_shortage {
                        self.fd_shortage = true;
                        log::warn!(
                            "the daemon is out of file descriptors ({}); serving clients from its reserve",
                            client::cause(&e)
                        );
                    }
                    // Spend a reserve descriptor to take the waiting client. The kernel
                    // reports EMFILE before it looks at the backlog, so only the accept made
                    // with the reserve tells whether anyone is waiting.
                    let last = self.reserve.len() == 1;
                    self.reserve.pop();
                    match self.listener.accept() {
                        Ok((stream, _)) if !last => {
                            let mut conn = Conn::new(stream);
                            if let Err(why) = self.check_peer(&conn) {
                                refuse(&mut conn, why);
                                drop(conn);
                                let _ = self.top_up();
                                continue;
                            }
                            return Accepted::Conn(conn);
                        }
                        Ok((stream, _)) => {
                            refuse(
                                &mut Conn::new(stream),
                                format!(
                                    "the daemon is out of file descriptors ({clients} clients connected): {}",
                                    client::cause(&e)
                                ),
                            );
                            // The refused connection is closed: its descriptor is the reserve's.
                            let _ = self.top_up();
                        }
                        Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                            let _ = self.top_up();
                            return Accepted::Done(None);
                        }
                        Err(_) => {
                            let _ = self.top_up();
                            return Accepted::Done(Some(self.retry(now)));
                        }
                    }
                }
                Err(e) => {
                    // Not answered, so not forgotten: try again shortly.
                    log::error!("accepting a control connection failed: {e}");
                    return Accepted::Done(Some(self.retry(now)));
                }
            }
        }
    }

    fn retry(&mut self, now: Instant) -> Instant {
        let at = now + ACCEPT_RETRY;
        self.retry_at = Some(at);
        at
    }

    /// Only our own uid and root may control the daemon, whatever the socket's mode says.
    fn check_peer(&self, conn: &Conn) -> Result<(), String> {
        use nix::sys::socket::{getsockopt, sockopt::PeerCredentials};
        let fd = unsafe { std::os::fd::BorrowedFd::borrow_raw(conn.stream.as_raw_fd()) };
        match getsockopt(&fd, PeerCredentials) {
            Ok(cred) if cred.uid() == self.uid || cred.uid() == 0 => Ok(()),
            Ok(cred) => Err(format!(
                "permission denied: uid {} may not control this daemon (it runs as uid {})",
                cred.uid(),
                self.uid
            )),
            Err(e) => Err(format!("unable to check the peer's credentials: {e}")),
        }
    }
}

/// Answer a connection that will not be served with one error line, then close it.
fn refuse(conn: &mut Conn, message: String) {
    conn.send(&Response::error(message));
    let _ = conn.flush();
}

fn open_reserve() -> io::Result<OwnedFd> {
    use std::os::unix::fs::OpenOptionsExt;
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(nix::libc::O_NOFOLLOW | nix::libc::O_CLOEXEC)
        .open("/dev/null")?;
    Ok(file.into())
}
