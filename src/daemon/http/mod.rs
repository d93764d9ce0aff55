//! The HTTP interface's sockets: binding and the token at start (`setup`), and one connection
//! (`HttpConn`): reading a request head and its body, waiting for the loop, writing the
//! answer (or a stream of events) as the socket takes it, then draining until the peer
//! closes. What a request means is the loop's (`event_loop/http.rs`); the head itself is
//! `request`'s, the API's routes and answer shapes `api`'s.
//!
//! A connection lives for one request (`Connection: close`): read the head and body, answer,
//! shut the writing side, and read and drop whatever else the peer sends until it closes.
//! Closing with unread input would reset the connection and could destroy the answer before
//! the peer reads it (a 431 to a client still sending its 100 KiB head).

pub mod api;
pub mod dashboard;
pub mod guard;
pub mod request;
pub mod tls;

use std::io::{self, Read, Write};
use std::net::SocketAddr;
use std::path::Path;
use std::time::{Duration, Instant};

use mio::net::{TcpListener, TcpStream};

use crate::config::spec::HttpSpec;
use request::{Head, Parsed};

/// A request (head and body) must be complete this long after its first byte.
pub const HEAD_DEADLINE: Duration = Duration::from_secs(5);
/// A parked API request (`start` with `wait`, `reload`) is answered 504 after this long; the
/// CLI's own bound for waiting requests is the same by default.
pub const WAIT_DEADLINE: Duration = Duration::from_secs(600);
/// A stream (`tail` with `follow`, `events`) whose reader lets this much pile up is dropped,
/// as a `tail -f` follower of the control socket is.
pub const MAX_STREAM_OUT: usize = crate::control::server::MAX_PENDING_OUT;
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
    /// `daemon.http.tls`, read: every listener serves HTTPS.
    pub tls: Option<std::sync::Arc<rustls::ServerConfig>>,
}

/// Bind every address and read the token. An error names the address or the file.
pub fn setup(spec: &HttpSpec) -> Result<Setup, String> {
    let token = match &spec.token_file {
        Some(path) => Some(read_token(path)?),
        None => None,
    };
    let tls = match &spec.tls {
        Some(t) => Some(tls::server_config(t)?),
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
    Ok(Setup {
        listeners,
        token,
        tls,
    })
}

fn read_token(path: &Path) -> Result<Vec<u8>, String> {
    let shown = path.display();
    let file = open_token_file(path)
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

/// Open a token file for reading, the daemon's or the client's: never waiting (a FIFO or a
/// device would block the open or the read forever), and only a regular file. A symlink is
/// followed, as `sup check` follows it (mounted secrets are often symlinks); the file is only
/// read, never created.
pub(crate) fn open_token_file(path: &Path) -> std::io::Result<std::fs::File> {
    use std::os::unix::fs::{FileTypeExt, OpenOptionsExt};
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(nix::libc::O_CLOEXEC | nix::libc::O_NONBLOCK | nix::libc::O_NOCTTY)
        .open(path)?;
    let kind = file.metadata()?.file_type();
    if kind.is_file() {
        return Ok(file);
    }
    let what = if kind.is_fifo() {
        "a FIFO"
    } else if kind.is_dir() {
        "a directory"
    } else if kind.is_socket() {
        "a socket"
    } else if kind.is_char_device() || kind.is_block_device() {
        "a device"
    } else {
        "not a file"
    };
    Err(std::io::Error::new(
        std::io::ErrorKind::InvalidInput,
        format!("it is {what}, not a regular file"),
    ))
}

/// An HTTP socket in the loop's slab.
pub enum HttpSource {
    Listener {
        listener: TcpListener,
        /// Accepting failed (out of descriptors): try again then.
        retry_at: Option<Instant>,
    },
    /// Boxed: a connection's buffers and phase are much larger than a listener.
    Conn(Box<HttpConn>),
}

/// Where a connection is in its one request. The order is fixed: `Head`, then `Body` when
/// the head announced one, then the loop's: `Parked` while a control request waits for its
/// transitions (or for the loop to decide), then `Writing` one answer or `Streaming` events;
/// after an answer, `Draining`. Nothing goes back: one request per connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// Reading the request head.
    Head,
    /// Reading the `Content-Length` bytes of the body.
    Body,
    /// The request is the loop's: nothing to write until it answers. Input is read only to
    /// see the peer hang up.
    Parked,
    /// Writing the whole answer.
    Writing,
    /// Writing Server-Sent Events as the loop sends them, until the peer closes.
    Streaming,
    /// Answered and shut for writing: reading until the peer closes.
    Draining,
}

pub struct HttpConn {
    pub stream: TcpStream,
    pub peer: SocketAddr,
    head: Head,
    /// The request whose body is being read.
    request: Option<Parsed>,
    body: Vec<u8>,
    out: Vec<u8>,
    sent: usize,
    phase: Phase,
    /// How the loop's answers are written (`None` outside the API).
    shape: Option<api::Shape>,
    accepted: Instant,
    first_byte: Option<Instant>,
    parked: Option<Instant>,
    answered: Option<Instant>,
    drained: usize,
    /// A write from `send` failed or left too much unsent: the next `io` says so, and the
    /// loop closes the connection.
    broken: Option<Broken>,
    /// The deadline armed in the loop's heap.
    pub deadline: Option<Instant>,
    /// HTTPS: every read and write goes through rustls (`tls.rs`).
    tls: Option<Box<tls::Tls>>,
}

/// Why a connection that `send` wrote to must close.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Broken {
    WriteFailed,
    TooSlow,
}

/// What a turn of IO left.
pub enum Progress {
    /// A complete request (or a bad one) to answer, with its body.
    Request(Parsed, Vec<u8>),
    /// Nothing to do until the socket is ready again.
    Idle,
    /// Done or broken: close it.
    Close,
    /// A stream's unsent events passed `MAX_STREAM_OUT`: the peer is not reading, drop it.
    TooSlow,
}

impl HttpConn {
    pub fn new(stream: TcpStream, peer: SocketAddr, now: Instant) -> HttpConn {
        HttpConn {
            stream,
            peer,
            head: Head::default(),
            request: None,
            body: Vec::new(),
            out: Vec::new(),
            sent: 0,
            phase: Phase::Head,
            shape: None,
            accepted: now,
            first_byte: None,
            parked: None,
            answered: None,
            drained: 0,
            broken: None,
            deadline: None,
            tls: None,
        }
    }

    /// Speak TLS on this connection (a listener with `daemon.http.tls`).
    pub fn start_tls(&mut self, config: &std::sync::Arc<rustls::ServerConfig>) -> bool {
        match tls::Tls::new(config) {
            Ok(t) => {
                self.tls = Some(Box::new(t));
                true
            }
            Err(_) => false,
        }
    }

    fn read_some(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match &mut self.tls {
            Some(t) => t.read(&mut self.stream, buf),
            None => self.stream.read(buf),
        }
    }

    fn shut_write(&mut self) -> io::Result<()> {
        match &mut self.tls {
            Some(t) => t.shutdown(&mut self.stream),
            None => self.stream.shutdown(std::net::Shutdown::Write),
        }
    }

    pub fn accepted_at(&self) -> Instant {
        self.accepted
    }

    /// Still waiting for its request, or answered and only waiting for the peer to hang up,
    /// and since when it is connected: what the loop may drop to make room when every slot
    /// is taken (closing it loses no answer).
    pub fn reading_since(&self) -> Option<Instant> {
        matches!(self.phase, Phase::Head | Phase::Body | Phase::Draining).then_some(self.accepted)
    }

    /// Waiting for the loop: a parked control request.
    pub fn is_parked(&self) -> bool {
        self.phase == Phase::Parked
    }

    pub fn is_streaming(&self) -> bool {
        self.phase == Phase::Streaming
    }

    /// Read, write or drain, whichever the phase wants, until the socket would block.
    pub fn io(&mut self, now: Instant) -> Progress {
        match self.broken {
            Some(Broken::TooSlow) => return Progress::TooSlow,
            Some(Broken::WriteFailed) => return Progress::Close,
            None => {}
        }
        if let Some(t) = &mut self.tls {
            if t.pending(&mut self.stream).is_err() {
                return Progress::Close;
            }
        }
        match self.phase {
            Phase::Head => self.read_head(now),
            Phase::Body => self.read_body(),
            Phase::Parked => self.drain(),
            Phase::Writing => self.write(),
            Phase::Streaming => match self.write_stream() {
                Progress::Idle => self.drain(),
                other => other,
            },
            Phase::Draining => self.drain(),
        }
    }

    fn read_head(&mut self, now: Instant) -> Progress {
        let mut buf = [0u8; 4096];
        loop {
            let want = buf.len().min(self.head.room().max(1));
            let read = self.read_some(&mut buf[..want]);
            // A TLS handshake is the start of the request: its deadline runs from there.
            if self.tls.as_ref().is_some_and(|t| t.heard) {
                self.first_byte.get_or_insert(now);
            }
            match read {
                // The peer closed before finishing its request: nobody to answer.
                Ok(0) => return Progress::Close,
                Ok(n) => {
                    self.first_byte.get_or_insert(now);
                    if let Some(parsed) = self.head.push(&buf[..n]) {
                        return self.head_done(parsed);
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Progress::Idle,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => return Progress::Close,
            }
        }
    }

    /// The head is in: hand it over, or read its body first. Bytes after the body (a
    /// pipelined request) are dropped: one request per connection.
    fn head_done(&mut self, parsed: Parsed) -> Progress {
        let want = match &parsed {
            Parsed::Request(r) => r.body_len,
            Parsed::Bad(_) => 0,
        };
        let rest = self.head.rest();
        self.body = rest[..rest.len().min(want)].to_vec();
        self.head = Head::default();
        if self.body.len() >= want {
            self.phase = Phase::Parked;
            return Progress::Request(parsed, std::mem::take(&mut self.body));
        }
        self.request = Some(parsed);
        self.phase = Phase::Body;
        self.read_body()
    }

    fn read_body(&mut self) -> Progress {
        let want = match &self.request {
            Some(Parsed::Request(r)) => r.body_len,
            _ => 0,
        };
        let mut buf = [0u8; 4096];
        while self.body.len() < want {
            let room = (want - self.body.len()).min(buf.len());
            match self.read_some(&mut buf[..room]) {
                Ok(0) => return Progress::Close,
                Ok(n) => self.body.extend_from_slice(&buf[..n]),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Progress::Idle,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => return Progress::Close,
            }
        }
        self.phase = Phase::Parked;
        match self.request.take() {
            Some(parsed) => Progress::Request(parsed, std::mem::take(&mut self.body)),
            None => Progress::Close,
        }
    }

    /// Parked, streaming or answered, the peer sends nothing more that counts: read and drop
    /// it (at most `MAX_DRAIN` in all), and see whether it hung up.
    fn drain(&mut self) -> Progress {
        let mut buf = [0u8; 4096];
        loop {
            match self.read_some(&mut buf) {
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

    /// The loop keeps the request: parked until it answers, for at most `WAIT_DEADLINE`.
    pub fn park(&mut self, now: Instant) {
        if self.phase == Phase::Parked {
            self.parked.get_or_insert(now);
        }
    }

    /// Answers of the control path go out as `shape` says (the API's requests).
    pub fn set_shape(&mut self, shape: api::Shape) {
        self.shape = Some(shape);
    }

    /// One control answer: the whole response, or on a stream the next event (the first one
    /// starts the stream). Ignored once the connection has answered. A failed write is
    /// reported by the next `io`.
    pub fn send(&mut self, resp: &crate::control::proto::Response, now: Instant) {
        match self.send_now(resp, now) {
            Progress::Close => self.broken = Some(Broken::WriteFailed),
            Progress::TooSlow => self.broken = Some(Broken::TooSlow),
            Progress::Idle | Progress::Request(..) => {}
        }
    }

    fn send_now(&mut self, resp: &crate::control::proto::Response, now: Instant) -> Progress {
        match (self.phase, self.shape) {
            (Phase::Streaming, _) => {
                self.out.extend_from_slice(&api::sse_event(resp));
                self.write_stream()
            }
            (Phase::Parked, Some(api::Shape::Events)) if api::status_of(resp) == 200 => {
                self.out = api::sse_head();
                self.out.extend_from_slice(&api::sse_event(resp));
                self.sent = 0;
                self.phase = Phase::Streaming;
                self.answered = Some(now);
                self.write_stream()
            }
            (Phase::Parked, shape) => {
                let shape = match shape {
                    Some(api::Shape::StatusArray) => api::Shape::StatusArray,
                    _ => api::Shape::Json,
                };
                self.respond(api::answer(resp, shape), now)
            }
            (Phase::Head | Phase::Body | Phase::Writing | Phase::Draining, _) => Progress::Idle,
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
        match self.write_out() {
            Progress::Idle if self.sent < self.out.len() => return Progress::Idle,
            Progress::Idle => {}
            other => return other,
        }
        self.out = Vec::new();
        if self.shut_write().is_err() {
            return Progress::Close;
        }
        self.phase = Phase::Draining;
        self.drain()
    }

    /// Write what the socket takes; `Idle` whether or not all of it went.
    fn write_out(&mut self) -> Progress {
        while self.sent < self.out.len() {
            match write_to(&mut self.stream, &mut self.tls, &self.out[self.sent..]) {
                Ok(0) => return Progress::Close,
                Ok(n) => self.sent += n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Progress::Idle,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => return Progress::Close,
            }
        }
        Progress::Idle
    }

    /// A stream's events, as far as the socket takes them; a peer that lets more than
    /// `MAX_STREAM_OUT` pile up is too slow to keep.
    fn write_stream(&mut self) -> Progress {
        let progress = self.write_out();
        if self.sent == self.out.len() {
            self.out.clear();
            self.sent = 0;
        } else if self.sent > self.out.len() / 2 {
            self.out.drain(..self.sent);
            self.sent = 0;
        }
        match progress {
            Progress::Idle if self.out.len() - self.sent > MAX_STREAM_OUT => Progress::TooSlow,
            other => other,
        }
    }

    /// When to give up on it: the request (head and body) is due `HEAD_DEADLINE` after its
    /// first byte (a client dripping bytes does not push it back), a silent connection is
    /// closed after `IDLE_DEADLINE`, a parked request is answered 504 after `WAIT_DEADLINE`,
    /// and an answer must be taken within `WRITE_DEADLINE`. A stream has no deadline: it
    /// lasts until the peer closes or stops reading.
    pub fn due(&self) -> Option<Instant> {
        match self.phase {
            Phase::Streaming => None,
            Phase::Parked => Some(self.parked.unwrap_or(self.accepted) + WAIT_DEADLINE),
            Phase::Head | Phase::Body | Phase::Writing | Phase::Draining => {
                Some(match (self.answered, self.first_byte) {
                    (Some(at), _) => at + WRITE_DEADLINE,
                    (None, Some(at)) => at + HEAD_DEADLINE,
                    (None, None) => self.accepted + IDLE_DEADLINE,
                })
            }
        }
    }
}

/// Write to the socket, through rustls on an HTTPS connection.
fn write_to(
    stream: &mut TcpStream,
    tls: &mut Option<Box<tls::Tls>>,
    buf: &[u8],
) -> io::Result<usize> {
    match tls {
        Some(t) => t.write(stream, buf),
        None => stream.write(buf),
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::control::proto::{Response, ResponseBody};

    #[test]
    fn a_token_file_that_is_a_fifo_is_refused_at_once() {
        let dir = std::env::temp_dir().join(format!("sup-token-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("dir");
        let fifo = dir.join("fifo");
        nix::unistd::mkfifo(
            &fifo,
            nix::sys::stat::Mode::S_IRUSR | nix::sys::stat::Mode::S_IWUSR,
        )
        .expect("mkfifo");
        // No writer: a blocking open would never return.
        let err = read_token(&fifo).expect_err("a FIFO");
        assert!(
            err.contains("fifo") && err.contains("a FIFO, not a regular file"),
            "{err}"
        );
        let err = read_token(&dir).expect_err("a directory");
        assert!(err.contains("a directory"), "{err}");
        let file = dir.join("token");
        std::fs::write(&file, "s3cret\n").expect("write");
        let link = dir.join("link");
        std::os::unix::fs::symlink(&file, &link).expect("symlink");
        assert_eq!(
            read_token(&link).as_deref(),
            Ok(&b"s3cret"[..]),
            "a symlink is followed"
        );
        let _ = std::fs::remove_dir_all(&dir);
    }

    /// A connection as the loop holds it, and the client's end of it.
    fn pair() -> (HttpConn, std::net::TcpStream) {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let addr = listener.local_addr().expect("addr");
        let client = std::net::TcpStream::connect(addr).expect("connect");
        let (server, peer) = listener.accept().expect("accept");
        server.set_nonblocking(true).expect("nonblocking");
        let conn = HttpConn::new(TcpStream::from_std(server), peer, Instant::now());
        (conn, client)
    }

    /// `io` until it is not idle, or give up after a while (the bytes are on loopback).
    fn settle(conn: &mut HttpConn) -> Progress {
        let until = Instant::now() + Duration::from_secs(5);
        loop {
            match conn.io(Instant::now()) {
                Progress::Idle if Instant::now() < until => {
                    std::thread::sleep(Duration::from_millis(5))
                }
                other => return other,
            }
        }
    }

    #[test]
    fn a_body_in_pieces_is_handed_over_whole_then_the_answer_closes() {
        let (mut conn, mut client) = pair();
        client
            .write_all(b"POST /api/v1/stop HTTP/1.1\r\nContent-Length: 9\r\n\r\n{\"na")
            .expect("write");
        assert!(matches!(conn.io(Instant::now()), Progress::Idle));
        assert!(conn.reading_since().is_some(), "still reading the body");
        client.write_all(b"mes\":1}extra").expect("write");
        let Progress::Request(Parsed::Request(r), body) = settle(&mut conn) else {
            panic!("a request");
        };
        assert_eq!(
            (r.path.as_str(), body.as_slice()),
            ("/api/v1/stop", &b"{\"names\":"[..])
        );
        assert!(conn.is_parked());
        conn.set_shape(api::Shape::Json);
        conn.send(&Response::error("no"), Instant::now());
        let mut answer = String::new();
        client
            .shutdown(std::net::Shutdown::Write)
            .expect("shutdown");
        client.read_to_string(&mut answer).expect("read");
        assert!(answer.starts_with("HTTP/1.1 400 "), "{answer}");
        assert!(matches!(settle(&mut conn), Progress::Close));
    }

    #[test]
    fn a_stream_sends_events_until_the_peer_hangs_up() {
        let (mut conn, mut client) = pair();
        client
            .write_all(b"GET /api/v1/events HTTP/1.1\r\n\r\n")
            .expect("write");
        assert!(matches!(settle(&mut conn), Progress::Request(..)));
        conn.set_shape(api::Shape::Events);
        let out = Response::new(ResponseBody::Output { data: "x".into() });
        conn.send(&out, Instant::now());
        assert!(conn.is_streaming());
        assert_eq!(conn.due(), None, "a stream has no deadline");
        conn.send(&out, Instant::now());
        client
            .set_read_timeout(Some(Duration::from_secs(5)))
            .expect("timeout");
        let mut got = Vec::new();
        let mut buf = [0u8; 4096];
        while !String::from_utf8_lossy(&got).ends_with(
            "\"x\"}\n\nevent: output\ndata: {\"v\":1,\"kind\":\"output\",\"data\":\"x\"}\n\n",
        ) {
            let n = client.read(&mut buf).expect("read");
            assert!(n > 0, "the stream ended early");
            got.extend_from_slice(&buf[..n]);
        }
        assert!(got.starts_with(b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n"));
        drop(client);
        assert!(matches!(settle(&mut conn), Progress::Close));
    }
}
