//! The client side of the control socket: connect, send one request, read responses.
//!
//! It owns the transport only (one JSON object per line, blocking I/O) and the translation of
//! transport problems into `Fail`s that name the socket. What a command does with the answers
//! belongs to `crate::client`. The wire types themselves live in `proto`.

use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::Shutdown;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::proto::{Request, Response, ResponseBody, VERSION};
use crate::fail::Fail;

/// The longest response line we accept. A status of thousands of instances fits easily; the
/// limit only stops a wrong peer (something that is not sup) from filling our memory.
const MAX_RESPONSE: u64 = 64 * 1024 * 1024;

/// One connection to the daemon.
#[derive(Debug)]
pub struct Conn {
    path: PathBuf,
    reader: BufReader<UnixStream>,
    /// A second handle on the same socket, so writes do not fight the reader's buffer.
    writer: UnixStream,
    /// As asked for: the kernel rounds what it stores, and messages should show the request.
    timeout: Option<Duration>,
}

/// Closes a connection from another thread (a signal handler's thread, for `tail -f`): the
/// blocked read in `Conn::next` then sees end-of-file and the command ends normally.
#[derive(Debug)]
pub struct Closer(UnixStream);

impl Closer {
    pub fn close(&self) {
        // Already closed or never open: either way nothing is left to do.
        let _ = self.0.shutdown(Shutdown::Both);
    }
}

impl Conn {
    pub fn connect(path: &Path) -> Result<Conn, Fail> {
        let stream = UnixStream::connect(path).map_err(|e| connect_fail(path, &e))?;
        let writer = stream
            .try_clone()
            .map_err(|e| Fail::new(format!("{}: {}", path.display(), cause(&e))))?;
        Ok(Conn {
            path: path.to_path_buf(),
            reader: BufReader::new(stream),
            writer,
            timeout: None,
        })
    }

    /// Send `req` and read its one answer. `timeout` bounds the wait for the answer: `None` for
    /// requests that wait on the outcome of a transition (start, stop, shutdown), which may
    /// legitimately take as long as the jobs' `stoptime`.
    pub fn request(&mut self, req: &Request, timeout: Option<Duration>) -> Result<Response, Fail> {
        self.send(req)?;
        self.set_timeout(timeout)?;
        match self.next()? {
            Some(resp) => Ok(resp),
            None => Err(Fail::new(format!(
                "the daemon on {} closed the connection without answering",
                self.path.display()
            ))
            .hint("its event log may say why")),
        }
    }

    /// Write one request line. Use `next` to read streamed answers.
    pub fn send(&mut self, req: &Request) -> Result<(), Fail> {
        let mut line = serde_json::to_string(req)
            .map_err(|e| Fail::new(format!("cannot encode the request: {e}")))?;
        line.push('\n');
        let sent = self
            .writer
            .write_all(line.as_bytes())
            .and_then(|()| self.writer.flush());
        let Err(e) = sent else {
            return Ok(());
        };
        // The daemon may have refused us (wrong uid) and hung up before we wrote: its
        // answer, if any, says why better than "broken pipe".
        let _ = self.set_timeout(Some(Duration::from_secs(1)));
        let mut line = Vec::new();
        if let Ok(n) = (&mut self.reader)
            .take(MAX_RESPONSE)
            .read_until(b'\n', &mut line)
        {
            if let Ok(Response {
                body: ResponseBody::Error { message, hint },
                ..
            }) = serde_json::from_slice::<Response>(&line[..n])
            {
                let fail = Fail::new(message);
                return Err(match hint {
                    Some(h) => fail.hint(h),
                    None => fail,
                });
            }
        }
        Err(Fail::new(format!(
            "cannot send to the daemon on {}: {}",
            self.path.display(),
            cause(&e)
        )))
    }

    /// How long `next` may block; `None` waits forever.
    pub fn set_timeout(&mut self, timeout: Option<Duration>) -> Result<(), Fail> {
        // A zero duration is an error for the socket call; treat it as the smallest wait.
        let timeout = timeout.map(|d| d.max(Duration::from_millis(1)));
        self.timeout = timeout;
        self.reader
            .get_ref()
            .set_read_timeout(timeout)
            .map_err(|e| {
                Fail::new(format!(
                    "{}: cannot set a timeout: {}",
                    self.path.display(),
                    cause(&e)
                ))
            })
    }

    /// The next response, or `None` at end of file. An `error` response becomes a `Fail`
    /// carrying the daemon's message and hint.
    pub fn next(&mut self) -> Result<Option<Response>, Fail> {
        let mut line = Vec::new();
        let n = (&mut self.reader)
            .take(MAX_RESPONSE)
            .read_until(b'\n', &mut line)
            .map_err(|e| self.read_fail(&e))?;
        if n == 0 {
            return Ok(None);
        }
        if !line.ends_with(b"\n") && n as u64 >= MAX_RESPONSE {
            return Err(Fail::new(format!(
                "the daemon on {} sent an answer longer than {} MiB",
                self.path.display(),
                MAX_RESPONSE / (1024 * 1024)
            )));
        }
        let resp = parse(&line).map_err(|e| {
            let what = match e {
                ParseError::Version(theirs) => {
                    return Fail::new(format!(
                        "the daemon on {} speaks protocol version {theirs}, this client speaks {VERSION}",
                        self.path.display()
                    ))
                    .hint("use the sup binary that matches the running daemon, or restart the daemon with this one");
                }
                ParseError::Json(msg) => msg,
            };
            Fail::new(format!(
                "the daemon on {} sent an answer this client cannot read: {what}",
                self.path.display()
            ))
            .hint("is another program listening on this socket?")
        })?;
        match resp.body {
            ResponseBody::Error { message, hint } => {
                let fail = Fail::new(message);
                Err(match hint {
                    Some(h) => fail.hint(h),
                    None => fail,
                })
            }
            _ => Ok(Some(resp)),
        }
    }

    /// The socket this connection reached, for a second connection to the same daemon.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// A handle that can end this connection from another thread.
    pub fn closer(&self) -> Result<Closer, Fail> {
        self.writer
            .try_clone()
            .map(Closer)
            .map_err(|e| Fail::new(format!("{}: {}", self.path.display(), cause(&e))))
    }

    fn read_fail(&self, e: &io::Error) -> Fail {
        match e.kind() {
            // A read timeout shows up as either, depending on the platform.
            io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut => {
                let waited = match self.timeout {
                    Some(d) if d.subsec_millis() == 0 => format!(" within {}s", d.as_secs()),
                    Some(d) => format!(" within {}ms", d.as_millis()),
                    None => String::new(),
                };
                Fail::new(format!(
                    "the daemon on {} did not answer{waited}",
                    self.path.display()
                ))
                .hint("it may be stuck; its event log may say why")
            }
            _ => Fail::new(format!(
                "cannot read from the daemon on {}: {}",
                self.path.display(),
                cause(e)
            )),
        }
    }
}

fn connect_fail(path: &Path, e: &io::Error) -> Fail {
    let p = path.display();
    match e.kind() {
        io::ErrorKind::NotFound | io::ErrorKind::ConnectionRefused => {
            Fail::new(format!("no daemon is listening on {p}: {}", cause(e)))
                .hint("start one with `sup daemon`, or pass --socket")
        }
        io::ErrorKind::PermissionDenied => {
            Fail::new(format!("cannot connect to the daemon on {p}: {}", cause(e))).hint(
                "the socket is mode 0600: run sup as the user that started the daemon, or pass --socket",
            )
        }
        _ => Fail::new(format!("cannot connect to the daemon on {p}: {}", cause(e))),
    }
}

enum ParseError {
    Version(String),
    Json(String),
}

/// Check the version before the shape: a daemon of another version may answer with a body
/// this client does not know, and "wrong version" is the message that helps.
fn parse(line: &[u8]) -> Result<Response, ParseError> {
    let value: serde_json::Value =
        serde_json::from_slice(line).map_err(|e| ParseError::Json(e.to_string()))?;
    match value.get("v") {
        Some(v) if v.as_u64() == Some(u64::from(VERSION)) => {}
        Some(v) => return Err(ParseError::Version(v.to_string())),
        None => return Err(ParseError::Json("no protocol version (`v`) in it".into())),
    }
    // A status answer is the one that grows with the number of instances. Read its array
    // straight into the wire type: going through the tagged, flattened `Response` makes serde
    // buffer and copy every object first, which costs more than the rest of `sup status`.
    if value.get("kind").and_then(serde_json::Value::as_str) == Some("status") {
        let mut value = value;
        let instances = value
            .get_mut("instances")
            .map(serde_json::Value::take)
            .unwrap_or_default();
        let daemon = value
            .get_mut("daemon")
            .map(serde_json::Value::take)
            .unwrap_or_default();
        return Ok(Response::new(ResponseBody::Status {
            instances: serde_json::from_value(instances)
                .map_err(|e| ParseError::Json(e.to_string()))?,
            daemon: serde_json::from_value(daemon).map_err(|e| ParseError::Json(e.to_string()))?,
        }));
    }
    serde_json::from_value(value).map_err(|e| ParseError::Json(e.to_string()))
}

/// An I/O error as the cause part of a message: lowercase, without Rust's `(os error N)`.
pub fn cause(e: &io::Error) -> String {
    let text = match e.raw_os_error() {
        Some(errno) => nix::errno::Errno::from_raw(errno).desc().to_string(),
        None => e.to_string(),
    };
    let mut chars = text.chars();
    match chars.next() {
        Some(first) => first.to_lowercase().chain(chars).collect(),
        None => text,
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::control::proto::{RequestBody, Response};
    use std::os::unix::net::UnixListener;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::thread::JoinHandle;

    /// A fresh directory under the system temp dir, removed on drop.
    pub(crate) struct TempDir(pub PathBuf);

    impl TempDir {
        pub(crate) fn new(tag: &str) -> TempDir {
            static N: AtomicUsize = AtomicUsize::new(0);
            let dir = std::env::temp_dir().join(format!(
                "sup-{tag}-{}-{}",
                std::process::id(),
                N.fetch_add(1, Ordering::Relaxed)
            ));
            let _ = std::fs::remove_dir_all(&dir);
            std::fs::create_dir_all(&dir).expect("temp dir");
            TempDir(dir)
        }

        pub(crate) fn sock(&self) -> PathBuf {
            self.0.join("s.sock")
        }
    }

    impl Drop for TempDir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    /// A daemon that accepts one connection, reads one request line, answers with `lines`
    /// verbatim, and closes. The join handle returns the request line it received.
    pub(crate) fn fake_daemon(path: &Path, lines: Vec<String>) -> JoinHandle<String> {
        let listener = UnixListener::bind(path).expect("bind");
        std::thread::spawn(move || {
            let (stream, _) = listener.accept().expect("accept");
            let mut reader = BufReader::new(stream.try_clone().expect("clone"));
            let mut request = String::new();
            reader.read_line(&mut request).expect("read request");
            let mut w = stream;
            for l in lines {
                w.write_all(l.as_bytes()).expect("write");
                w.write_all(b"\n").expect("write");
            }
            request
        })
    }

    pub(crate) fn line(body: ResponseBody) -> String {
        serde_json::to_string(&Response::new(body)).expect("encodes")
    }

    fn status_request() -> Request {
        Request::new(RequestBody::Status { names: vec![] })
    }

    #[test]
    fn nothing_listening_names_the_socket_and_hints() {
        let dir = TempDir::new("conn");
        let missing = dir.sock();
        let fail = Conn::connect(&missing).expect_err("nothing there");
        assert_eq!(
            fail.message,
            format!(
                "no daemon is listening on {}: no such file or directory",
                missing.display()
            )
        );
        assert_eq!(
            fail.hint.as_deref(),
            Some("start one with `sup daemon`, or pass --socket")
        );

        // A socket file left behind by a daemon that is gone: connection refused.
        drop(UnixListener::bind(&missing).expect("bind"));
        let fail = Conn::connect(&missing).expect_err("stale socket");
        assert_eq!(
            fail.message,
            format!(
                "no daemon is listening on {}: connection refused",
                missing.display()
            )
        );
        assert!(fail.hint.is_some());
    }

    #[test]
    fn request_is_one_line_and_the_answer_is_parsed() {
        let dir = TempDir::new("conn");
        let daemon = fake_daemon(
            &dir.sock(),
            vec![line(ResponseBody::Done {
                message: "ok".into(),
            })],
        );
        let mut conn = Conn::connect(&dir.sock()).expect("connects");
        let resp = conn
            .request(&status_request(), Some(Duration::from_secs(5)))
            .expect("answer");
        assert_eq!(
            resp.body,
            ResponseBody::Done {
                message: "ok".into()
            }
        );
        let sent = daemon.join().expect("daemon thread");
        assert_eq!(sent, "{\"v\":1,\"cmd\":\"status\",\"names\":[]}\n");
    }

    #[test]
    fn another_protocol_version_is_named() {
        let dir = TempDir::new("conn");
        // A future daemon, with a body this client has never heard of.
        let _d = fake_daemon(
            &dir.sock(),
            vec![r#"{"v":2,"kind":"hologram","beams":3}"#.into()],
        );
        let mut conn = Conn::connect(&dir.sock()).expect("connects");
        let fail = conn
            .request(&status_request(), Some(Duration::from_secs(5)))
            .expect_err("mismatch");
        assert!(
            fail.message
                .ends_with("speaks protocol version 2, this client speaks 1"),
            "{}",
            fail.message
        );
        assert!(fail
            .hint
            .as_deref()
            .is_some_and(|h| h.contains("sup binary")));
    }

    #[test]
    fn error_response_becomes_a_fail_with_its_hint() {
        let dir = TempDir::new("conn");
        let _d = fake_daemon(
            &dir.sock(),
            vec![line(ResponseBody::Error {
                message: "no program or instance named \"wbe\"".into(),
                hint: Some("did you mean \"web\"?".into()),
            })],
        );
        let mut conn = Conn::connect(&dir.sock()).expect("connects");
        let fail = conn
            .request(&status_request(), None)
            .expect_err("error response");
        assert_eq!(
            fail,
            Fail::new("no program or instance named \"wbe\"").hint("did you mean \"web\"?")
        );
    }

    #[test]
    fn garbage_is_a_clear_error() {
        let dir = TempDir::new("conn");
        let _d = fake_daemon(&dir.sock(), vec!["HTTP/1.1 400 Bad Request".into()]);
        let mut conn = Conn::connect(&dir.sock()).expect("connects");
        let fail = conn.request(&status_request(), None).expect_err("garbage");
        assert!(
            fail.message
                .contains("sent an answer this client cannot read"),
            "{}",
            fail.message
        );
    }

    #[test]
    fn closing_without_an_answer_is_an_error() {
        let dir = TempDir::new("conn");
        let _d = fake_daemon(&dir.sock(), vec![]);
        let mut conn = Conn::connect(&dir.sock()).expect("connects");
        let fail = conn.request(&status_request(), None).expect_err("eof");
        assert!(fail
            .message
            .contains("closed the connection without answering"));
    }

    #[test]
    fn a_silent_daemon_times_out() {
        let dir = TempDir::new("conn");
        let listener = UnixListener::bind(dir.sock()).expect("bind");
        let mut conn = Conn::connect(&dir.sock()).expect("connects");
        let fail = conn
            .request(&status_request(), Some(Duration::from_millis(50)))
            .expect_err("timeout");
        assert!(
            fail.message.contains("did not answer within 50ms"),
            "{}",
            fail.message
        );
        drop(listener);
    }

    #[test]
    fn streamed_output_until_end_of_file() {
        let dir = TempDir::new("conn");
        let chunks = ["one\n", "two\nthree\n", "four"];
        let _d = fake_daemon(
            &dir.sock(),
            chunks
                .iter()
                .map(|c| line(ResponseBody::Output { data: (*c).into() }))
                .collect(),
        );
        let mut conn = Conn::connect(&dir.sock()).expect("connects");
        conn.send(&Request::new(RequestBody::Tail {
            name: "web".into(),
            lines: 10,
            stderr: false,
            follow: true,
        }))
        .expect("sends");
        let mut got = Vec::new();
        while let Some(resp) = conn.next().expect("reads") {
            match resp.body {
                ResponseBody::Output { data } => got.push(data),
                other => panic!("unexpected {other:?}"),
            }
        }
        assert_eq!(got, chunks);
    }

    #[test]
    fn closer_ends_a_blocked_read() {
        let dir = TempDir::new("conn");
        let listener = UnixListener::bind(dir.sock()).expect("bind");
        let mut conn = Conn::connect(&dir.sock()).expect("connects");
        let closer = conn.closer().expect("closer");
        let t = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(20));
            closer.close();
        });
        assert_eq!(conn.next().expect("eof, not an error"), None);
        t.join().expect("thread");
        drop(listener);
    }

    #[test]
    fn causes_read_like_the_rest_of_our_messages() {
        let e = io::Error::from_raw_os_error(nix::libc::ECONNREFUSED);
        assert_eq!(cause(&e), "connection refused");
    }
}
