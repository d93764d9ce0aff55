//! One HTTP or TCP health probe as a non-blocking socket: connect, (for HTTP) write a `GET`
//! and read the status line, each step taken only when the loop says the socket is ready.
//!
//! Nothing here waits: `start` begins a non-blocking connect and `advance` does what the
//! socket allows right now, then says `Pending`, `Pass` or `Fail`. The timeout is the loop's
//! (a deadline in its heap); registering the socket with mio is the loop's too.

use std::io::{self, Read, Write};
use std::net::SocketAddr;

use mio::net::TcpStream;

use crate::config::Probe;

/// More response than this without a complete status line and headers is a failure.
const MAX_RESPONSE: usize = 64 * 1024;

#[derive(Debug, PartialEq, Eq)]
pub enum Step {
    Pending,
    Pass,
    Fail(String),
}

#[derive(Debug)]
pub struct Connection {
    pub stream: TcpStream,
    addr: SocketAddr,
    /// The request to write (HTTP); empty for a TCP probe.
    request: Vec<u8>,
    written: usize,
    response: Vec<u8>,
    connected: bool,
}

impl Connection {
    /// Begin the connect. Only `Probe::Http` and `Probe::Tcp` are sockets.
    pub fn start(probe: &Probe) -> Result<Connection, String> {
        let (addr, request) = match probe {
            Probe::Http { addr, host, path } => (
                *addr,
                format!(
                    "GET {path} HTTP/1.0\r\nHost: {host}\r\nUser-Agent: sup-healthcheck\r\n\
                     Connection: close\r\n\r\n"
                )
                .into_bytes(),
            ),
            Probe::Tcp(addr) => (*addr, Vec::new()),
            Probe::Cmd(_) => return Err("a command check is not a socket".into()),
        };
        let stream =
            TcpStream::connect(addr).map_err(|e| format!("connect to {addr}: {}", text(&e)))?;
        Ok(Connection {
            stream,
            addr,
            request,
            written: 0,
            response: Vec::new(),
            connected: false,
        })
    }

    /// Do what the socket allows now. Call on every readiness event of the socket.
    pub fn advance(&mut self) -> Step {
        if !self.connected {
            if let Ok(Some(e)) | Err(e) = self.stream.take_error() {
                return Step::Fail(format!("connect to {}: {}", self.addr, text(&e)));
            }
            match self.stream.peer_addr() {
                Ok(_) => self.connected = true,
                Err(e) if e.kind() == io::ErrorKind::NotConnected => return Step::Pending,
                Err(e) => return Step::Fail(format!("connect to {}: {}", self.addr, text(&e))),
            }
            if self.request.is_empty() {
                return Step::Pass;
            }
        }
        while self.written < self.request.len() {
            match self.stream.write(&self.request[self.written..]) {
                Ok(0) => return Step::Fail("the connection closed before the request".into()),
                Ok(n) => self.written += n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Step::Pending,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Step::Fail(format!("sending the request: {}", text(&e))),
            }
        }
        let mut buf = [0u8; 4096];
        loop {
            match self.stream.read(&mut buf) {
                Ok(0) => {
                    return match parse(&self.response) {
                        Some(step) => step,
                        None => Step::Fail(format!(
                            "the connection closed after {} bytes, before a complete response",
                            self.response.len()
                        )),
                    }
                }
                Ok(n) => {
                    self.response.extend_from_slice(&buf[..n]);
                    if let Some(step) = parse(&self.response) {
                        return step;
                    }
                    if self.response.len() > MAX_RESPONSE {
                        return Step::Fail("response headers longer than 64 KiB".into());
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Step::Pending,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Step::Fail(format!("reading the response: {}", text(&e))),
            }
        }
    }
}

/// A complete status line and headers decide; `None` while more is needed.
fn parse(data: &[u8]) -> Option<Step> {
    let mut headers = [httparse::EMPTY_HEADER; 64];
    let mut resp = httparse::Response::new(&mut headers);
    match resp.parse(data) {
        Ok(httparse::Status::Complete(_)) => {
            let code = resp.code.unwrap_or(0);
            Some(if (200..400).contains(&code) {
                Step::Pass
            } else {
                Step::Fail(format!(
                    "HTTP {code} {}",
                    resp.reason.unwrap_or_default().trim()
                ))
            })
        }
        Ok(httparse::Status::Partial) => None,
        Err(e) => Some(Step::Fail(format!("not an HTTP response: {e}"))),
    }
}

fn text(e: &io::Error) -> String {
    super::reap::io_text(e)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_codes_decide() {
        assert_eq!(parse(b"HTTP/1.0 200 OK\r\n\r\n"), Some(Step::Pass));
        assert_eq!(
            parse(b"HTTP/1.1 302 Found\r\nLocation: /\r\n\r\n"),
            Some(Step::Pass)
        );
        assert_eq!(
            parse(b"HTTP/1.0 503 Service Unavailable\r\n\r\n"),
            Some(Step::Fail("HTTP 503 Service Unavailable".into()))
        );
        assert_eq!(parse(b"HTTP/1.0 200 OK\r\nX: y"), None);
        assert!(matches!(
            parse(b"SSH-2.0-OpenSSH\r\n\r\n"),
            Some(Step::Fail(_))
        ));
    }

    #[test]
    fn a_closed_port_fails_and_a_listening_one_passes() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let addr = listener.local_addr().expect("addr");
        let mut c = Connection::start(&Probe::Tcp(addr)).expect("start");
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        let mut step = c.advance();
        while step == Step::Pending && std::time::Instant::now() < deadline {
            std::thread::sleep(std::time::Duration::from_millis(5));
            step = c.advance();
        }
        assert_eq!(step, Step::Pass);
        drop(listener);
        let mut c = Connection::start(&Probe::Tcp(addr)).expect("start");
        let mut step = c.advance();
        while step == Step::Pending && std::time::Instant::now() < deadline {
            std::thread::sleep(std::time::Duration::from_millis(5));
            step = c.advance();
        }
        assert!(
            matches!(step, Step::Fail(ref m) if m.contains("refused")),
            "{step:?}"
        );
    }
}
