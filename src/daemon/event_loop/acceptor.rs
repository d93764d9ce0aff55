//! The control socket's listener: accepting, refusing, and never leaving a client unanswered.
//!
//! Owns the listener, a reserve descriptor and the accept retry deadline. It hands the loop
//! connections from our own uid (or root) that fit under the connection limit; everything
//! else gets a one-line error here and is closed. It knows nothing of the loop's sources.

use std::io;
use std::os::fd::{AsRawFd, OwnedFd};
use std::time::{Duration, Instant};

use mio::net::UnixListener;

use crate::control::client;
use crate::control::proto::Response;
use crate::control::server::Conn;

/// After an accept error other than running out of descriptors, try again this soon.
const ACCEPT_RETRY: Duration = Duration::from_millis(100);

pub(super) struct Acceptor {
    listener: UnixListener,
    /// An open /dev/null, closed to make room for answering a client when descriptors run
    /// out, then reopened.
    reserve: Option<OwnedFd>,
    /// Running out of descriptors was logged; cleared by the next accept that works.
    fd_shortage: bool,
    /// When accepting is tried again after an error.
    retry_at: Option<Instant>,
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
        Acceptor {
            listener,
            reserve: open_reserve(),
            fd_shortage: false,
            retry_at: None,
            uid: nix::unistd::getuid().as_raw(),
        }
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
                    ) && self.reserve.is_some() =>
                {
                    // Spend the reserve descriptor to take the waiting client and tell it why,
                    // then take the reserve back. The kernel reports EMFILE before it looks at
                    // the backlog, so only the accept made with the reserve tells whether
                    // anyone is waiting.
                    self.reserve = None;
                    let refused = match self.listener.accept() {
                        Ok((stream, _)) => {
                            refuse(
                                &mut Conn::new(stream),
                                format!(
                                    "the daemon is out of file descriptors ({clients} clients connected): {}",
                                    client::cause(&e)
                                ),
                            );
                            Ok(())
                        }
                        Err(e) => Err(e),
                    };
                    // Reopened once the refused connection is closed: it took this descriptor.
                    self.reserve = open_reserve();
                    match refused {
                        Ok(()) => {}
                        Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                            return Accepted::Done(None)
                        }
                        Err(_) => return Accepted::Done(Some(self.retry(now))),
                    }
                    if !self.fd_shortage {
                        self.fd_shortage = true;
                        log::warn!(
                            "accepting a control connection failed: {e}; refusing clients until descriptors are free"
                        );
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

fn open_reserve() -> Option<OwnedFd> {
    use std::os::unix::fs::OpenOptionsExt;
    match std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(nix::libc::O_NOFOLLOW | nix::libc::O_CLOEXEC)
        .open("/dev/null")
    {
        Ok(f) => Some(f.into()),
        Err(e) => {
            log::warn!("unable to open /dev/null as a reserve descriptor: {e}");
            None
        }
    }
}
