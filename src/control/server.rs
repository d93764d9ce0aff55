//! The daemon side of one control connection: framing, limits and buffering, with no
//! knowledge of what requests mean (the daemon answers them).
//!
//! A connection is non-blocking and never holds up the loop: reads stop at `WouldBlock`, a
//! request line may be at most `proto::MAX_REQUEST` bytes, the answer waits in `out` until the
//! socket takes it, and a client whose unread answers pass `MAX_PENDING_OUT` is dropped. So no
//! client, silent, garbled or never reading, can block the loop or grow memory without bound.

use std::io::{self, Read, Write};
use std::time::Instant;

use mio::net::UnixStream;

use super::proto::{Request, Response, MAX_REQUEST, VERSION};

/// Unsent output a client may leave unread before it is disconnected (a `tail -f` that stopped
/// reading, or a client that never reads its answer).
pub const MAX_PENDING_OUT: usize = 4 * 1024 * 1024;

pub struct Conn {
    pub stream: UnixStream,
    inbuf: Vec<u8>,
    /// Where the unconsumed part of `inbuf` starts: lines are taken by moving this, and the
    /// buffer is compacted once per batch, so many short lines cost O(n), not O(n²).
    start: usize,
    /// When the first byte of the unfinished line arrived (its deadline runs from there).
    partial_since: Option<Instant>,
    out: Vec<u8>,
    /// How much of `out` the socket has taken: an answer of thousands of instances goes out
    /// in many writes, and moving the rest to the front after each would copy it again and again.
    sent: usize,
    /// The peer closed its side; answer what is pending, then close.
    pub read_closed: bool,
    /// A fatal framing error was answered; close once it is sent.
    pub closing: bool,
    /// The socket's send buffer was asked to hold this many bytes (0: the kernel's default).
    sndbuf: usize,
}

/// An answer longer than this has the socket's send buffer raised to hold it (within the
/// host's `net.core.wmem_max`): the kernel takes it in one write, so the loop neither comes
/// back for the rest after the client has read the first part nor keeps it in its own heap
/// meanwhile. Below it, the default buffer (about 200 KiB on Linux) takes the answer already.
const RAISE_SNDBUF_OVER: usize = 128 * 1024;
/// The most asked for (the kernel doubles it for its bookkeeping): what a client that stops
/// reading can leave in the kernel stays a few MiB, beside the `MAX_PENDING_OUT` it may leave
/// in the daemon. A status of about ten thousand instances as rows, or five thousand as the
/// list, fits.
const MAX_SNDBUF: usize = 1024 * 1024;

/// What reading produced. Lives for one request line, so the size gap between the variants
/// costs nothing worth a box.
#[allow(clippy::large_enum_variant)]
pub enum Incoming {
    Request(Request),
    /// A line that is not a valid request: answer with this error and keep going.
    Bad(Response),
}

impl Conn {
    pub fn new(stream: UnixStream) -> Conn {
        Conn {
            stream,
            inbuf: Vec::new(),
            start: 0,
            partial_since: None,
            out: Vec::new(),
            sent: 0,
            read_closed: false,
            closing: false,
            sndbuf: 0,
        }
    }

    /// Read until `WouldBlock` or until a request's worth of bytes is buffered. `Ok(true)`
    /// means it stopped at that limit and more may be waiting in the socket: answer what is
    /// buffered, then call again (readiness is edge-triggered, no new event will come).
    pub fn fill(&mut self) -> io::Result<bool> {
        let mut chunk = [0u8; 8192];
        loop {
            if self.unread() > MAX_REQUEST || self.read_closed || self.closing {
                return Ok(!self.read_closed && !self.closing);
            }
            match self.stream.read(&mut chunk) {
                Ok(0) => {
                    self.read_closed = true;
                    return Ok(false);
                }
                Ok(n) => self.inbuf.extend_from_slice(&chunk[..n]),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(false),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            }
        }
    }

    /// Read and drop whatever the peer sends (a streaming client), noting when it hangs up.
    pub fn discard_input(&mut self) -> io::Result<()> {
        let mut chunk = [0u8; 4096];
        loop {
            match self.stream.read(&mut chunk) {
                Ok(0) => {
                    self.read_closed = true;
                    return Ok(());
                }
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(()),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            }
        }
    }

    /// The next complete request line, if any. Blank lines are skipped in a loop: a client
    /// may send any number of them.
    pub fn next_request(&mut self) -> Option<Incoming> {
        loop {
            let Some(pos) = self.inbuf[self.start..].iter().position(|&b| b == b'\n') else {
                self.compact();
                if self.inbuf.len() > MAX_REQUEST {
                    self.inbuf.clear();
                    self.closing = true;
                    return Some(Incoming::Bad(Response::error(format!(
                        "request too large: more than {MAX_REQUEST} bytes without a newline"
                    ))));
                }
                return None;
            };
            let (from, end) = (self.start, self.start + pos);
            self.start = end + 1;
            // A line ended: whatever follows is a new line, with a deadline of its own.
            self.partial_since = None;
            let line = &self.inbuf[from..end];
            if line.iter().all(u8::is_ascii_whitespace) {
                continue;
            }
            let parsed = parse(line);
            if self.start == self.inbuf.len() {
                self.compact();
            }
            return Some(parsed);
        }
    }

    /// Drop the consumed prefix of `inbuf`.
    fn compact(&mut self) {
        if self.start > 0 {
            self.inbuf.drain(..self.start);
            self.start = 0;
        }
        if self.inbuf.is_empty() && self.inbuf.capacity() > 2 * MAX_REQUEST {
            self.inbuf = Vec::new();
        }
    }

    /// Bytes received and not yet taken as lines.
    fn unread(&self) -> usize {
        self.inbuf.len() - self.start
    }

    /// Queue a response line, encoded straight into the output buffer (no copy of its own).
    pub fn send(&mut self, response: &Response) {
        // A stream (`tail -f`) that is never quite caught up: drop what was sent once it is
        // half the buffer, so the buffer stays bounded and each byte moves at most once more.
        if self.sent > 0 && self.sent >= self.out.len() / 2 {
            self.out.drain(..self.sent);
            self.sent = 0;
        }
        let before = self.out.len();
        if let Err(e) = serde_json::to_writer(&mut self.out, response) {
            self.out.truncate(before);
            let fallback = Response::error(format!("unable to encode the answer: {e}"));
            if serde_json::to_writer(&mut self.out, &fallback).is_err() {
                self.out.truncate(before);
                return;
            }
        }
        self.out.push(b'\n');
    }

    /// Queue an answer line encoded elsewhere (`status_rows`), adding its newline. Taken as
    /// the buffer itself when nothing else is pending, so a large answer is not copied.
    pub fn send_line(&mut self, mut line: Vec<u8>) {
        if self.sent > 0 && self.sent >= self.out.len() / 2 {
            self.out.drain(..self.sent);
            self.sent = 0;
        }
        line.push(b'\n');
        if self.out.is_empty() {
            self.out = line;
        } else {
            self.out.extend_from_slice(&line);
        }
    }

    /// Write as much as the socket takes. `Ok(true)` when everything is sent.
    pub fn flush(&mut self) -> io::Result<bool> {
        let pending = self.out.len() - self.sent;
        let want = pending.min(MAX_SNDBUF);
        if pending > RAISE_SNDBUF_OVER && want > self.sndbuf {
            // Only ever a larger buffer: a refusal leaves the default, which works too.
            let _ = nix::sys::socket::setsockopt(
                &self.stream,
                nix::sys::socket::sockopt::SndBuf,
                &want,
            );
            self.sndbuf = want;
        }
        while self.sent < self.out.len() {
            match self.stream.write(&self.out[self.sent..]) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(n) => self.sent += n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            }
        }
        if self.sent == self.out.len() {
            self.out.clear();
            self.sent = 0;
            if self.out.capacity() > 64 * 1024 {
                self.out = Vec::new();
            }
        }
        Ok(self.out.is_empty())
    }

    pub fn pending_out(&self) -> usize {
        self.out.len() - self.sent
    }

    /// When the unfinished request line started, noting `now` if it starts here; `None`
    /// when nothing is pending. Called after the buffered lines were taken, so what remains
    /// arrived no earlier than the last line's end.
    pub fn partial_since(&mut self, now: Instant) -> Option<Instant> {
        if self.unread() == 0 {
            self.partial_since = None;
        } else if self.partial_since.is_none() {
            self.partial_since = Some(now);
        }
        self.partial_since
    }
}

fn parse(line: &[u8]) -> Incoming {
    // The version is checked before the body, so a client of another version is told so
    // rather than getting a parse error about a command it thinks exists.
    let value: serde_json::Value = match serde_json::from_slice(line) {
        Ok(v) => v,
        Err(e) => {
            return Incoming::Bad(Response::error(format!("malformed request: not JSON: {e}")))
        }
    };
    match value.get("v").and_then(serde_json::Value::as_u64) {
        Some(v) if v == u64::from(VERSION) => {}
        Some(v) => {
            return Incoming::Bad(Response::new(super::proto::ResponseBody::Error {
                message: format!(
                    "the client speaks protocol version {v}, this daemon speaks {VERSION}"
                ),
                hint: Some("use the sup binary that matches the running daemon".into()),
            }))
        }
        None => {
            return Incoming::Bad(Response::error(
                "malformed request: no protocol version (\"v\")",
            ))
        }
    }
    match serde_json::from_value::<Request>(value) {
        Ok(r) => Incoming::Request(r),
        Err(e) => Incoming::Bad(Response::error(format!("malformed request: {e}"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn message(i: Incoming) -> String {
        match i {
            Incoming::Bad(r) => serde_json::to_string(&r).unwrap_or_default(),
            Incoming::Request(r) => format!("{r:?}"),
        }
    }

    fn pair() -> (Conn, std::os::unix::net::UnixStream) {
        let (a, b) = std::os::unix::net::UnixStream::pair().expect("pair");
        a.set_nonblocking(true).expect("non-blocking");
        (Conn::new(UnixStream::from_std(a)), b)
    }

    #[test]
    fn an_encoded_line_goes_out_after_what_is_pending_with_its_newline() {
        let (mut conn, peer) = pair();
        conn.send(&Response::error("first"));
        conn.send_line(br#"{"v":1,"kind":"status_rows","rows":[]}"#.to_vec());
        assert_eq!(conn.flush().ok(), Some(true));
        let mut lines = std::io::BufRead::lines(std::io::BufReader::new(peer));
        let first = lines.next().and_then(Result::ok).unwrap_or_default();
        assert!(first.contains("first"), "{first}");
        let second = lines.next().and_then(Result::ok).unwrap_or_default();
        assert_eq!(second, r#"{"v":1,"kind":"status_rows","rows":[]}"#);
    }

    #[test]
    fn a_large_answer_leaves_in_one_write() {
        let (mut conn, peer) = pair();
        let size = 600 * 1024;
        conn.send_line(vec![b'x'; size]);
        // Nothing reads yet: the default buffer (about 200 KiB) could not take it all. The
        // raised one can, where the host's limit allows it.
        let allowed = std::fs::read_to_string("/proc/sys/net/core/wmem_max")
            .ok()
            .and_then(|t| t.trim().parse::<usize>().ok())
            .unwrap_or(0);
        let flushed = conn.flush().expect("writes");
        if allowed > size {
            assert!(flushed, "{} left", conn.pending_out());
        }
        // Where it did not, the rest goes out as the reader below takes the first part.
        let rest = std::thread::spawn(move || {
            while !conn.flush().expect("writes") {
                std::thread::sleep(std::time::Duration::from_millis(1));
            }
        });
        let mut got = Vec::new();
        let mut r = std::io::BufReader::new(peer);
        std::io::BufRead::read_until(&mut r, b'\n', &mut got).expect("reads");
        rest.join().expect("writer");
        assert_eq!(got.len(), size + 1);
    }

    #[test]
    fn garbage_and_wrong_versions_get_errors() {
        assert!(message(parse(b"hello")).contains("not JSON"));
        assert!(message(parse(br#"{"cmd":"status"}"#)).contains("no protocol version"));
        assert!(message(parse(br#"{"v":99,"cmd":"status"}"#)).contains("version 99"));
        assert!(message(parse(br#"{"v":1,"cmd":"dance"}"#)).contains("malformed request"));
        assert!(matches!(
            parse(br#"{"v":1,"cmd":"status"}"#),
            Incoming::Request(_)
        ));
    }
}
