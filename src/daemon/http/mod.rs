//! The HTTP interface's sockets: binding and the token at start (`setup`), and one connection
//! (`HttpConn`): reading a request head, writing the answer as the socket takes it, then
//! draining until the peer closes. What a request means is the loop's
//! (`event_loop/http.rs`); the head itself is `request`'s.
//!
//! A connection lives for one request (`Connection: close`): read the head, answer, shut the
//! writing side, and read and drop whatever else the peer sends until it closes. Closing with
//! unread input would reset the connection and could destroy the answer before the peer reads
//! it (a 431 to a client still sending its 100 KiB head).

pub mod request;

use std::io::{self, Read, Write};
use std::net::SocketAddr;
use std::path::Path;
use std::time::{Duration, Instant};

use mio::net::{TcpListener, TcpStream};

use crate::config::spec::HttpSpec;
use request::{Head, Parsed};

/// A request head must be complete this long after its first byte.
pub const HEAD_DEADLINE: Duration = Duration::from_secs(5);
/// A connection that sends nothing is closed after this long.
pub const IDLE_DEADLINE: Duration = Duration::from_secs(10);
/// An answer must be taken (and the peer close) within this long.
pub const WRITE_DEADLINE: Duration = Duration::from_secs(10);
/// What is read and dropped after the answer before giving up on a clean close (at most
/// this much in one turn, like a capture pipe's budget).
const MAX_DRAIN: usize = 1 << 20;
/// The token file is a secret of a few dozen bytes; more than this is not a token.
const MAX_TOKEN: u64 = 4096;

/// What `sup daemon` sets up before the loop: the listeners, bound, and the token, read.
pub struct Setup {
    pub listeners: Vec<(SocketAddr, TcpListener)>,
    pub token: Option<Vec<u8>>,
}

/// Bind every address and read the token. An error names the address or the file.
pub fn setup(spec: &HttpSpec) -> Result<Setup, String> {
    let token = match &spec.token_file {
        Some(path) => Some(read_token(path)?),
        None => None,
    };
    let mut listeners = Vec::new();
    for addr in &spec.listen {
        // std sets SO_REUSEADDR and close-on-exec; mio wants it non-blocking.
        let listener = std::net::TcpListener::bind(addr)
            .and_then(|l| l.set_nonblocking(true).map(|()| l))
            .map_err(|e| format!("unable to listen for HTTP on {addr}: {e}"))?;
        let local = listener.local_addr().unwrap_or(*addr);
        listeners.push((local, TcpListener::from_std(listener)));
    }
    Ok(Setup { listeners, token })
}

fn read_token(path: &Path) -> Result<Vec<u8>, String> {
    use std::os::unix::fs::OpenOptionsExt;
    let shown = path.display();
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(nix::libc::O_CLOEXEC)
        .open(path)
        .map_err(|e| format!("unable to read the HTTP token file {shown}: {e}"))?;
    let mut bytes = Vec::new();
    file.take(MAX_TOKEN + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| format!("unable to read the HTTP token file {shown}: {e}"))?;
    if bytes.len() as u64 > MAX_TOKEN {
        return Err(format!(
            "the HTTP token file {shown} is longer than {MAX_TOKEN} bytes"
        ));
    }
    let token = bytes.trim_ascii();
    if token.is_empty() {
        return Err(format!("the HTTP token file {shown} is empty"));
    }
    if token.iter().any(|b| b.is_ascii_control() || *b == b' ') {
        return Err(format!(
            "the HTTP token file {shown} holds more than one word: a token is one line without spaces"
        ));
    }
    Ok(token.to_vec())
}

/// An HTTP socket in the loop's slab.
pub enum HttpSource {
    Listener {
        listener: TcpListener,
        /// Accepting failed (out of descriptors): try again then.
        retry_at: Option<Instant>,
    },
    Conn(HttpConn),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    Reading,
    Writing,
    /// Answered and shut for writing: reading until the peer closes.
    Draining,
}

pub struct HttpConn {
    pub stream: TcpStream,
    pub peer: SocketAddr,
    head: Head,
    out: Vec<u8>,
    sent: usize,
    phase: Phase,
    accepted: Instant,
    first_byte: Option<Instant>,
    answered: Option<Instant>,
    drained: usize,
    /// The deadline armed in the loop's heap.
    pub deadline: Option<Instant>,
}

/// What a turn of IO left.
pub enum Progress {
    /// A complete head (or a bad one) to answer.
    Request(Parsed),
    /// Nothing to do until the socket is ready again.
    Idle,
    /// Done or broken: close it.
    Close,
}

impl HttpConn {
    pub fn new(stream: TcpStream, peer: SocketAddr, now: Instant) -> HttpConn {
        HttpConn {
            stream,
            peer,
            head: Head::default(),
            out: Vec::new(),
            sent: 0,
            phase: Phase::Reading,
            accepted: now,
            first_byte: None,
            answered: None,
            drained: 0,
            deadline: None,
        }
    }

    pub fn accepted_at(&self) -> Instant {
        self.accepted
    }

    /// Still waiting for its request head, and since when it is connected: what the loop may
    /// drop to make room when every slot is taken.
    pub fn reading_since(&self) -> Option<Instant> {
        matches!(self.phase, Phase::Reading).then_some(self.accepted)
    }

    /// Read, write or drain, whichever the phase wants, until the socket would block.
    pub fn io(&mut self, now: Instant) -> Progress {
        match self.phase {
            Phase::Reading => self.read_head(now),
            Phase::Writing => self.write(),
            Phase::Draining => self.drain(),
        }
    }

    fn read_head(&mut self, now: Instant) -> Progress {
        let mut buf = [0u8; 4096];
        loop {
            let want = buf.len().min(self.head.room().max(1));
            match self.stream.read(&mut buf[..want]) {
                // The peer closed before finishing its request: nobody to answer.
                Ok(0) => return Progress::Close,
                Ok(n) => {
                    self.first_byte.get_or_insert(now);
                    if let Some(parsed) = self.head.push(&buf[..n]) {
                        return Progress::Request(parsed);
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Progress::Idle,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => return Progress::Close,
            }
        }
    }

    /// Queue the answer and start writing it.
    pub fn respond(&mut self, bytes: Vec<u8>, now: Instant) -> Progress {
        self.out = bytes;
        self.sent = 0;
        self.phase = Phase::Writing;
        self.answered = Some(now);
        self.write()
    }

    fn write(&mut self) -> Progress {
        while self.sent < self.out.len() {
            match self.stream.write(&self.out[self.sent..]) {
                Ok(0) => return Progress::Close,
                Ok(n) => self.sent += n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Progress::Idle,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => return Progress::Close,
            }
        }
        self.out = Vec::new();
        if self.stream.shutdown(std::net::Shutdown::Write).is_err() {
            return Progress::Close;
        }
        self.phase = Phase::Draining;
        self.drain()
    }

    fn drain(&mut self) -> Progress {
        let mut buf = [0u8; 4096];
        loop {
            match self.stream.read(&mut buf) {
                Ok(0) => return Progress::Close,
                Ok(n) => {
                    self.drained += n;
                    if self.drained > MAX_DRAIN {
                        return Progress::Close;
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Progress::Idle,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => return Progress::Close,
            }
        }
    }

    /// When to give up on it: the head is due `HEAD_DEADLINE` after its first byte (a client
    /// dripping bytes does not push it back), a silent connection is closed after
    /// `IDLE_DEADLINE`, and an answer must be taken within `WRITE_DEADLINE`.
    pub fn due(&self) -> Instant {
        match (self.answered, self.first_byte) {
            (Some(at), _) => at + WRITE_DEADLINE,
            (None, Some(at)) => at + HEAD_DEADLINE,
            (None, None) => self.accepted + IDLE_DEADLINE,
        }
    }
}

/// Answer a connection over the limit with a 503, as far as the socket takes it at once, and
/// close it.
pub fn refuse(mut stream: TcpStream) {
    let answer = request::text(
        503,
        "too many HTTP connections; try again later\n",
        "",
        false,
    );
    let _ = stream.write(&answer);
    let _ = stream.shutdown(std::net::Shutdown::Write);
}
