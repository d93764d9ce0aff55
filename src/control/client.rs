//! The client side of the control protocol: connect, send one request, read responses.
//!
//! It owns the transport only and the translation of transport problems into `Fail`s that
//! name the daemon. A `Conn` reaches a daemon through one of two transports (`Endpoint`): its
//! Unix socket (one JSON object per line, blocking I/O), or its HTTP API (`--url`, see
//! `http_client`), which carries the same requests and answers. What a command does with the
//! answers belongs to `crate::client`. The wire types themselves live in `proto`.

use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::Shutdown;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use super::http_client::{self, HttpTransport, Url};
use super::proto::{Request, RequestBody, Response, ResponseBody, VERSION};
use crate::fail::Fail;

/// Where the daemon is: its control socket, or its HTTP API.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Endpoint {
    Socket(PathBuf),
    Http(Url),
}

impl std::fmt::Display for Endpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Endpoint::Socket(path) => write!(f, "{}", path.display()),
            Endpoint::Http(url) => f.write_str(&url.shown),
        }
    }
}

impl From<&Path> for Endpoint {
    fn from(path: &Path) -> Endpoint {
        Endpoint::Socket(path.to_path_buf())
    }
}

impl From<&PathBuf> for Endpoint {
    fn from(path: &PathBuf) -> Endpoint {
        Endpoint::Socket(path.clone())
    }
}

impl From<PathBuf> for Endpoint {
    fn from(path: PathBuf) -> Endpoint {
        Endpoint::Socket(path)
    }
}

impl From<&Endpoint> for Endpoint {
    fn from(e: &Endpoint) -> Endpoint {
        e.clone()
    }
}

/// How a `Conn` reaches its daemon.
#[derive(Debug)]
enum Transport {
    Socket {
        reader: BufReader<Deadlined>,
        /// A second handle on the same socket, so writes do not fight the reader's buffer.
        writer: UnixStream,
    },
    /// Boxed: it carries two readers' buffers and the URL, the socket far less.
    Http(Box<HttpTransport>),
}

/// The longest response line we accept. A status of thousands of instances fits easily; the
/// limit only stops a wrong peer (something that is not sup) from filling our memory.
const MAX_RESPONSE: u64 = 64 * 1024 * 1024;

/// How long a request that does not wait on jobs may take to be answered. The daemon answers
/// those from memory, so a long silence means it is stuck, and saying so beats hanging.
pub const QUICK: Duration = Duration::from_secs(30);
/// Added to the longest a waiting request's transitions may take, for the daemon's own work.
pub const WAIT_MARGIN: Duration = Duration::from_secs(30);

/// The bounds a connection puts on the daemon.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timeouts {
    /// Connecting, and the whole answer to a request that does not wait on jobs.
    pub quick: Duration,
    /// The whole answer to a request that waits for transitions (start/stop/restart with
    /// wait, reload, shutdown).
    pub wait: Duration,
}

impl Default for Timeouts {
    fn default() -> Timeouts {
        Timeouts {
            quick: QUICK,
            wait: Duration::from_secs(600),
        }
    }
}

/// One connection to the daemon.
#[derive(Debug)]
pub struct Conn {
    endpoint: Endpoint,
    transport: Transport,
    /// As asked for: the kernel rounds what it stores, and messages should show the request.
    timeout: Option<Duration>,
    timeouts: Timeouts,
    /// The command of the last request sent, for messages.
    waiting_for: &'static str,
}

/// The socket reader's buffer.
const READ_BUF: usize = 256 * 1024;

/// The socket as the reader sees it: every read gets what is left of one deadline, so a
/// daemon trickling bytes cannot stretch an answer past it.
#[derive(Debug)]
struct Deadlined {
    stream: UnixStream,
    deadline: Option<Instant>,
}

impl Read for Deadlined {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if let Some(at) = self.deadline {
            let left = at.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(io::ErrorKind::TimedOut.into());
            }
            self.stream.set_read_timeout(Some(left))?;
        }
        self.stream.read(buf)
    }
}

/// Closes a connection from another thread (a signal handler's thread, for `tail -f`): the
/// blocked read in `Conn::next` then sees end-of-file and the command ends normally.
#[derive(Debug)]
pub enum Closer {
    Socket(UnixStream),
    /// Over HTTP a connection is opened per request: whichever is current is closed.
    Http(std::sync::Arc<std::sync::Mutex<Option<std::net::TcpStream>>>),
}

impl Closer {
    pub fn close(&self) {
        // Already closed or never open: either way nothing is left to do.
        match self {
            Closer::Socket(s) => {
                let _ = s.shutdown(Shutdown::Both);
            }
            Closer::Http(current) => http_client::close(current),
        }
    }
}

impl Conn {
    pub fn connect(to: impl Into<Endpoint>) -> Result<Conn, Fail> {
        Conn::connect_with(to, Timeouts::default())
    }

    /// Connect within `timeouts.quick`: a daemon whose backlog is full does not hold us.
    pub fn connect_with(to: impl Into<Endpoint>, timeouts: Timeouts) -> Result<Conn, Fail> {
        let endpoint = to.into();
        let path = match &endpoint {
            Endpoint::Socket(path) => path.clone(),
            Endpoint::Http(url) => {
                let transport =
                    Transport::Http(Box::new(HttpTransport::connect(url, timeouts.quick)?));
                return Ok(Conn {
                    endpoint,
                    transport,
                    timeout: None,
                    timeouts,
                    waiting_for: "an answer",
                });
            }
        };
        let path = path.as_path();
        let stream = connect_within(path, timeouts.quick).map_err(|e| {
            if matches!(
                e.kind(),
                io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
            ) {
                Fail::new(format!(
                    "cannot connect to the daemon on {} within {}",
                    path.display(),
                    seconds(timeouts.quick)
                ))
                .hint("it may be stuck or out of descriptors; its event log may say why")
            } else {
                connect_fail(path, &e)
            }
        })?;
        let writer = stream
            .try_clone()
            .map_err(|e| Fail::new(format!("{}: {}", path.display(), cause(&e))))?;
        Ok(Conn {
            endpoint,
            transport: Transport::Socket {
                // Large: a status of thousands of instances is a megabyte or more, and each read
                // also sets the socket's timeout (see `Deadlined`).
                reader: BufReader::with_capacity(
                    READ_BUF,
                    Deadlined {
                        stream,
                        deadline: None,
                    },
                ),
                writer,
            },
            timeout: None,
            timeouts,
            waiting_for: "an answer",
        })
    }

    /// The bound for a request answered from the daemon's memory.
    pub fn quick(&self) -> Duration {
        self.timeouts.quick
    }

    /// The bound for a request that waits for jobs to change state.
    pub fn wait_bound(&self) -> Duration {
        self.timeouts.wait
    }

    /// Send `req` and read its one answer. `timeout` bounds the wait for the answer: `None` for
    /// requests that wait on the outcome of a transition (start, stop, shutdown), which may
    /// legitimately take as long as the jobs' `stoptime`.
    pub fn request(&mut self, req: &Request, timeout: Option<Duration>) -> Result<Response, Fail> {
        self.send(req)?;
        self.set_timeout(timeout)?;
        match self.next()? {
            Some(resp) => Ok(resp),
            None => Err(self.no_answer()),
        }
    }

    /// The daemon hung up before its answer.
    pub fn no_answer(&self) -> Fail {
        Fail::new(format!(
            "the daemon on {} closed the connection without answering",
            self.endpoint
        ))
        .hint("its event log may say why")
    }

    /// Write one request line. Use `next` to read streamed answers.
    pub fn send(&mut self, req: &Request) -> Result<(), Fail> {
        self.waiting_for = command(&req.body);
        let (reader, writer) = match &mut self.transport {
            Transport::Socket { reader, writer } => (reader, writer),
            Transport::Http(http) => return http.send(&req.body),
        };
        let mut line = serde_json::to_string(req)
            .map_err(|e| Fail::new(format!("cannot encode the request: {e}")))?;
        line.push('\n');
        let sent = writer
            .write_all(line.as_bytes())
            .and_then(|()| writer.flush());
        let Err(e) = sent else {
            return Ok(());
        };
        // The daemon may have refused us (wrong uid) and hung up before we wrote: its
        // answer, if any, says why better than "broken pipe".
        let r = reader.get_mut();
        r.deadline = Some(Instant::now() + Duration::from_secs(1));
        let _ = r.stream.set_read_timeout(Some(Duration::from_secs(1)));
        let mut line = Vec::new();
        if let Ok(n) = reader.take(MAX_RESPONSE).read_until(b'\n', &mut line) {
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
            self.endpoint,
            cause(&e)
        )))
    }

    /// How long `next` may take for the whole of the next answers, from now; `None` waits
    /// forever (a stream the user ends).
    pub fn set_timeout(&mut self, timeout: Option<Duration>) -> Result<(), Fail> {
        // A zero duration is an error for the socket call; treat it as the smallest wait.
        let timeout = timeout.map(|d| d.max(Duration::from_millis(1)));
        self.timeout = timeout;
        let deadline = timeout.map(|d| Instant::now() + d);
        let reader = match &mut self.transport {
            Transport::Socket { reader, .. } => reader,
            Transport::Http(http) => {
                http.set_deadline(deadline);
                return Ok(());
            }
        };
        let r = reader.get_mut();
        r.deadline = deadline;
        r.stream.set_read_timeout(timeout).map_err(|e| {
            Fail::new(format!(
                "{}: cannot set a timeout: {}",
                self.endpoint,
                cause(&e)
            ))
        })
    }

    /// The next response, or `None` at end of file. An `error` response becomes a `Fail`
    /// carrying the daemon's message and hint.
    pub fn next(&mut self) -> Result<Option<Response>, Fail> {
        if let Transport::Http(http) = &mut self.transport {
            let resp = match http.next() {
                Ok(Some(resp)) => resp,
                Ok(None) => return Ok(None),
                Err(e) => return Err(self.read_fail(&e)),
            };
            return answer(resp).map(Some);
        }
        match self.next_line()? {
            Some(line) => self.decode(&line).map(Some),
            None => Ok(None),
        }
    }

    /// Whether answers come as lines off the control socket (`next_line`), not over HTTP.
    pub fn is_socket(&self) -> bool {
        matches!(self.transport, Transport::Socket { .. })
    }

    /// The next answer line as it came, for an answer read without `Response` (`status_rows`);
    /// `None` at end of file. What it holds is the caller's to clean. Over HTTP there are no
    /// lines: `None`.
    pub fn next_line(&mut self) -> Result<Option<Vec<u8>>, Fail> {
        let reader = match &mut self.transport {
            Transport::Socket { reader, .. } => reader,
            Transport::Http(_) => return Ok(None),
        };
        let mut line = Vec::new();
        let n = reader
            .take(MAX_RESPONSE)
            .read_until(b'\n', &mut line)
            .map_err(|e| self.read_fail(&e))?;
        if n == 0 {
            return Ok(None);
        }
        if !line.ends_with(b"\n") && n as u64 >= MAX_RESPONSE {
            return Err(Fail::new(format!(
                "the daemon on {} sent an answer longer than {} MiB",
                self.endpoint,
                MAX_RESPONSE / (1024 * 1024)
            )));
        }
        Ok(Some(line))
    }

    /// One answer line read as `next` reads it: cleaned, an `error` as a `Fail`.
    pub fn decode(&self, line: &[u8]) -> Result<Response, Fail> {
        let resp = parse(line).map_err(|e| {
            let what = match e {
                ParseError::Version(theirs) => {
                    return Fail::new(format!(
                        "the daemon on {} speaks protocol version {theirs}, this client speaks {VERSION}",
                        self.endpoint
                    ))
                    .hint("use the sup binary that matches the running daemon, or restart the daemon with this one");
                }
                ParseError::Json(msg) => msg,
            };
            self.unreadable(&what)
        })?;
        answer(resp)
    }

    /// An answer that does not read as what it claims to be.
    pub fn unreadable(&self, what: &str) -> Fail {
        Fail::new(format!(
            "the daemon on {} sent an answer this client cannot read: {what}",
            self.endpoint
        ))
        .hint("is another program listening on this socket?")
    }

    /// The daemon this connection reached, for a second connection to the same daemon.
    pub fn endpoint(&self) -> &Endpoint {
        &self.endpoint
    }

    /// A handle that can end this connection from another thread.
    pub fn closer(&self) -> Result<Closer, Fail> {
        match &self.transport {
            Transport::Socket { writer, .. } => writer
                .try_clone()
                .map(Closer::Socket)
                .map_err(|e| Fail::new(format!("{}: {}", self.endpoint, cause(&e)))),
            Transport::Http(http) => Ok(Closer::Http(http.closer())),
        }
    }

    fn read_fail(&self, e: &io::Error) -> Fail {
        match e.kind() {
            // A read timeout shows up as either, depending on the platform.
            io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut => {
                let waited = match self.timeout {
                    Some(d) => format!(" within {}", seconds(d)),
                    None => String::new(),
                };
                Fail::new(format!(
                    "no answer from the daemon on {}{waited} (waiting for: {})",
                    self.endpoint,
                    self.waiting_for
                ))
                .hint("it may be stuck; its event log may say why; --timeout or $SUP_TIMEOUT sets the bound")
            }
            _ => Fail::new(format!(
                "cannot read from the daemon on {}: {}",
                self.endpoint,
                cause(e)
            )),
        }
    }
}

/// An `error` answer becomes a `Fail` carrying the daemon's message and hint. Every string
/// but a job's output is cleaned of control characters first (`client::output::clean_answer`),
/// so whatever prints an answer, over either transport, prints no terminal escapes.
fn answer(mut resp: Response) -> Result<Response, Fail> {
    crate::client::output::clean_answer(&mut resp.body);
    match resp.body {
        ResponseBody::Error { message, hint } => {
            let fail = Fail::new(message);
            Err(match hint {
                Some(h) => fail.hint(h),
                None => fail,
            })
        }
        _ => Ok(resp),
    }
}

/// One answer's JSON as the socket sends it (for the HTTP transport, which gets the same).
pub(super) fn parse_answer(bytes: &[u8]) -> Result<Response, String> {
    parse(bytes).map_err(|e| match e {
        ParseError::Version(theirs) => {
            format!("it speaks protocol version {theirs}, this client speaks {VERSION}")
        }
        ParseError::Json(msg) => msg,
    })
}

/// A blocking connect bounded by `SO_SNDTIMEO`: for a Unix socket, Linux waits that long for
/// room in a full backlog and then fails with `EAGAIN`.
fn connect_within(path: &Path, within: Duration) -> io::Result<UnixStream> {
    use nix::sys::socket::{
        connect, setsockopt, socket, sockopt, AddressFamily, SockFlag, SockType, UnixAddr,
    };
    use nix::sys::time::TimeVal;
    let fd = socket(
        AddressFamily::Unix,
        SockType::Stream,
        SockFlag::SOCK_CLOEXEC,
        None,
    )?;
    let addr = UnixAddr::new(path)?;
    let tv = TimeVal::new(
        within.as_secs() as nix::libc::time_t,
        within.subsec_micros() as nix::libc::suseconds_t,
    );
    setsockopt(&fd, sockopt::SendTimeout, &tv)?;
    connect(std::os::fd::AsRawFd::as_raw_fd(&fd), &addr)?;
    let stream = UnixStream::from(fd);
    // Writes are small and the daemon always reads: no send bound after the connect.
    stream.set_write_timeout(None)?;
    Ok(stream)
}

/// `30s`, `1.5s`, `50ms`.
fn seconds(d: Duration) -> String {
    if d.subsec_millis() == 0 {
        format!("{}s", d.as_secs())
    } else if d.as_secs() == 0 {
        format!("{}ms", d.as_millis())
    } else {
        format!("{:.1}s", d.as_secs_f64())
    }
}

/// The request's command as the protocol names it.
fn command(body: &RequestBody) -> &'static str {
    match body {
        RequestBody::Status { .. } => "status",
        RequestBody::Start { .. } => "start",
        RequestBody::Stop { .. } => "stop",
        RequestBody::Restart { .. } => "restart",
        RequestBody::Signal { .. } => "signal",
        RequestBody::Reload { .. } => "reload",
        RequestBody::Pid { .. } => "pid",
        RequestBody::Tail { .. } => "tail",
        RequestBody::EventLog { .. } => "event_log",
        RequestBody::Clear { .. } => "clear",
        RequestBody::Add { .. } => "add",
        RequestBody::Remove { .. } => "remove",
        RequestBody::Logreopen => "logreopen",
        RequestBody::Shutdown => "shutdown",
        RequestBody::Subscribe { .. } => "subscribe",
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
    /// The fields read first; everything else is skipped without being built.
    #[derive(serde::Deserialize)]
    struct Head {
        v: Option<serde_json::Value>,
        kind: Option<serde_json::Value>,
    }
    /// A status answer, the one that grows with the number of instances, read straight into
    /// the wire types: through the tagged, flattened `Response` serde would buffer every
    /// object first, and through a `Value` build it twice.
    #[derive(serde::Deserialize)]
    struct StatusBody {
        #[serde(default)]
        instances: Vec<crate::control::proto::InstanceStatus>,
        #[serde(default)]
        daemon: Option<crate::control::proto::DaemonInfo>,
    }
    /// Both at once: the one pass a status answer from a daemon of this version needs.
    #[derive(serde::Deserialize)]
    struct Status {
        v: u64,
        kind: StatusKind,
        #[serde(default)]
        instances: Vec<crate::control::proto::InstanceStatus>,
        #[serde(default)]
        daemon: Option<crate::control::proto::DaemonInfo>,
    }
    #[derive(serde::Deserialize)]
    #[serde(rename_all = "lowercase")]
    enum StatusKind {
        Status,
    }
    let json = |e: serde_json::Error| ParseError::Json(e.to_string());
    // Anything else (another answer, another version, a shape error) takes the careful path
    // below, which names the version first.
    if let Ok(Status {
        v,
        kind: StatusKind::Status,
        instances,
        daemon,
    }) = serde_json::from_slice(line)
    {
        if v == u64::from(VERSION) {
            return Ok(Response::new(ResponseBody::Status { instances, daemon }));
        }
    }
    let head: Head = serde_json::from_slice(line).map_err(json)?;
    match &head.v {
        Some(v) if v.as_u64() == Some(u64::from(VERSION)) => {}
        Some(v) => return Err(ParseError::Version(v.to_string())),
        None => return Err(ParseError::Json("no protocol version (`v`) in it".into())),
    }
    if head.kind.as_ref().and_then(serde_json::Value::as_str) == Some("status") {
        let body: StatusBody = serde_json::from_slice(line).map_err(json)?;
        return Ok(Response::new(ResponseBody::Status {
            instances: body.instances,
            daemon: body.daemon,
        }));
    }
    serde_json::from_slice(line).map_err(json)
}

/// An I/O error as the cause part of a message: lowercase, without Rust's `(os error N)`.
/// A first word in capitals stays as it is (`EOF while parsing`, not `eOF`).
pub fn cause(e: &io::Error) -> String {
    let text = match e.raw_os_error() {
        Some(errno) => nix::errno::Errno::from_raw(errno).desc().to_string(),
        None => e.to_string(),
    };
    let mut chars = text.chars();
    let acronym = text.chars().nth(1).is_some_and(char::is_uppercase);
    match chars.next() {
        Some(first) if !acronym => first.to_lowercase().chain(chars).collect(),
        _ => text,
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
        Request::new(RequestBody::Status {
            names: vec![],
            rows: false,
        })
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
        let mut conn = Conn::connect(dir.sock()).expect("connects");
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
        let mut conn = Conn::connect(dir.sock()).expect("connects");
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
        let mut conn = Conn::connect(dir.sock()).expect("connects");
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
        let mut conn = Conn::connect(dir.sock()).expect("connects");
        let fail = conn.request(&status_request(), None).expect_err("garbage");
        assert!(
            fail.message
                .contains("sent an answer this client cannot read"),
            "{}",
            fail.message
        );
    }

    #[test]
    fn answers_reach_commands_without_terminal_escapes() {
        let dir = TempDir::new("conn");
        let _d = fake_daemon(
            &dir.sock(),
            vec![line(ResponseBody::Error {
                message: "web: \x1b]0;pwned\x07failed".into(),
                hint: Some("\u{9b}2J".into()),
            })],
        );
        let mut conn = Conn::connect(dir.sock()).expect("connects");
        let fail = conn.request(&status_request(), None).expect_err("error");
        assert_eq!(fail, Fail::new("web: ?]0;pwned?failed").hint("?2J"));
    }

    #[test]
    fn closing_without_an_answer_is_an_error() {
        let dir = TempDir::new("conn");
        let _d = fake_daemon(&dir.sock(), vec![]);
        let mut conn = Conn::connect(dir.sock()).expect("connects");
        let fail = conn.request(&status_request(), None).expect_err("eof");
        assert!(fail
            .message
            .contains("closed the connection without answering"));
    }

    #[test]
    fn a_silent_daemon_times_out() {
        let dir = TempDir::new("conn");
        let listener = UnixListener::bind(dir.sock()).expect("bind");
        let mut conn = Conn::connect(dir.sock()).expect("connects");
        let fail = conn
            .request(&status_request(), Some(Duration::from_millis(50)))
            .expect_err("timeout");
        assert_eq!(
            fail.message,
            format!(
                "no answer from the daemon on {} within 50ms (waiting for: status)",
                dir.sock().display()
            )
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
        let mut conn = Conn::connect(dir.sock()).expect("connects");
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
        let mut conn = Conn::connect(dir.sock()).expect("connects");
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
        let e = io::Error::other("EOF while parsing a value at line 1 column 2");
        assert_eq!(cause(&e), "EOF while parsing a value at line 1 column 2");
        let e = io::Error::other("Invalid data");
        assert_eq!(cause(&e), "invalid data");
        assert_eq!(cause(&io::Error::other("X")), "x");
    }
}
