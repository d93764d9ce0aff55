//! The client side of the HTTP API (`sup --url`): the same requests and answers as the
//! control socket, carried as `/api/v1/…` requests over a plain HTTP/1.1 connection per
//! request (`Connection: close`). Blocking I/O with a deadline per answer, like the socket's
//! transport; `httparse` reads the response head. Which request goes to which endpoint is
//! `target_of`; the daemon's side is `daemon::http::api`.
//!
//! An answer is the socket's JSON, except `status`, which is the bare array (`sup status
//! --json`), and streams (`tail -f`, `subscribe`), which are Server-Sent Events whose `data`
//! is one socket answer each. A body may come chunked (a reverse proxy re-chunks): `Decoded`
//! takes the framing off below the reader that splits answers and events.

use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{Shutdown, TcpStream, ToSocketAddrs};
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::proto::{InstanceStatus, RequestBody, Response, ResponseBody};
use super::tls_client::Wire;
use crate::fail::Fail;

/// The longest answer read (the same bound as a socket answer line).
const MAX_ANSWER: u64 = 64 * 1024 * 1024;
/// A response head larger than this is not from sup.
const MAX_HEAD: usize = 16 * 1024;
/// The longest chunk-size line of a chunked body (the size and any extensions), and the most
/// its trailers may hold.
const MAX_CHUNK_LINE: u64 = 4096;
/// The most a token file may hold.
const MAX_TOKEN: u64 = 4096;

/// Where a remote daemon is: `http://HOST:PORT[/PREFIX]`, and the token to show it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Url {
    /// As given, for messages.
    pub shown: String,
    /// `HOST:PORT`, for connecting and the `Host` header.
    pub authority: String,
    /// A path the API sits under (a reverse proxy's), without a trailing `/`; usually empty.
    pub prefix: String,
    pub token: Option<String>,
    /// `https://`: speak TLS (`tls_client`), checking the certificate for `host`.
    pub tls: bool,
    /// The host without the port, the name the certificate must carry.
    pub host: String,
    /// `--ca-file`: trust only this PEM file's certificates instead of the built-in roots.
    pub ca_file: Option<std::path::PathBuf>,
}

impl Url {
    /// Parse `--url`/`$SUP_URL`: `http://` or `https://` (daemon.http.tls).
    pub fn parse(text: &str) -> Result<Url, Fail> {
        let hint = "a URL such as http://127.0.0.1:8080 (what daemon.http.listen says)";
        let (tls, rest) = match (text.strip_prefix("https://"), text.strip_prefix("http://")) {
            (Some(rest), _) => (true, rest),
            (None, Some(rest)) => (false, rest),
            (None, None) => {
                return Err(Fail::new(format!("{text}: not an http:// or https:// URL")).hint(hint))
            }
        };
        let (authority, path) = match rest.find('/') {
            Some(i) => (&rest[..i], &rest[i..]),
            None => (rest, ""),
        };
        if authority.is_empty() || authority.contains('@') {
            return Err(Fail::new(format!("{text}: no host in the URL")).hint(hint));
        }
        // A port is needed unless it is 80; `[::1]:8080` keeps its brackets.
        let has_port = match authority.rfind(':') {
            Some(i) => !authority[i..].contains(']'),
            None => false,
        };
        let (authority, host) = if has_port {
            let at = authority.rfind(':').unwrap_or(authority.len());
            (authority.to_string(), authority[..at].to_string())
        } else {
            let port = if tls { 443 } else { 80 };
            (format!("{authority}:{port}"), authority.to_string())
        };
        if path.contains(['?', '#']) {
            return Err(Fail::new(format!("{text}: a URL with a query")).hint(hint));
        }
        Ok(Url {
            shown: text.trim_end_matches('/').to_string(),
            authority,
            prefix: path.trim_end_matches('/').to_string(),
            token: None,
            tls,
            host,
            ca_file: None,
        })
    }

    /// Trust the certificates of `path` (PEM) for an `https://` URL.
    pub fn with_ca_file(mut self, path: &Path) -> Url {
        self.ca_file = Some(path.to_path_buf());
        self
    }

    /// Read the bearer token from `path` (one word, surrounding white space ignored).
    pub fn with_token_file(mut self, path: &Path) -> Result<Url, Fail> {
        let shown = path.display();
        let file = crate::daemon::http::open_token_file(path).map_err(|e| {
            Fail::new(format!(
                "cannot read the token file {shown}: {}",
                super::client::cause(&e)
            ))
        })?;
        let mut bytes = Vec::new();
        file.take(MAX_TOKEN + 1)
            .read_to_end(&mut bytes)
            .map_err(|e| {
                Fail::new(format!(
                    "cannot read the token file {shown}: {}",
                    super::client::cause(&e)
                ))
            })?;
        let token = String::from_utf8_lossy(bytes.trim_ascii()).into_owned();
        if bytes.len() as u64 > MAX_TOKEN || token.is_empty() || token.contains(char::is_whitespace)
        {
            return Err(
                Fail::new(format!("the token file {shown} does not hold one token"))
                    .hint("a token is one line without spaces, as daemon.http.token_file holds it"),
            );
        }
        self.token = Some(token);
        Ok(self)
    }
}

/// The method, path (under `/api/v1/`) and body of a request.
pub fn target_of(body: &RequestBody) -> (&'static str, String, Option<serde_json::Value>) {
    use serde_json::json;
    let names_query = |names: &[String]| {
        if names.is_empty() {
            String::new()
        } else {
            let list: Vec<String> = names.iter().map(|n| encode(n)).collect();
            format!("?names={}", list.join(","))
        }
    };
    match body {
        // The HTTP API answers with the list (`rows` is for the socket).
        RequestBody::Status { names, rows: _ } => {
            ("GET", format!("status{}", names_query(names)), None)
        }
        RequestBody::Subscribe { names } => ("GET", format!("events{}", names_query(names)), None),
        RequestBody::Start { names, wait } => (
            "POST",
            "start".into(),
            Some(json!({"names": names, "wait": wait})),
        ),
        RequestBody::Stop { names, wait } => (
            "POST",
            "stop".into(),
            Some(json!({"names": names, "wait": wait})),
        ),
        RequestBody::Restart {
            names,
            wait,
            rolling,
        } => (
            "POST",
            "restart".into(),
            Some(json!({"names": names, "wait": wait, "rolling": rolling})),
        ),
        RequestBody::Signal {
            signal,
            names,
            target,
        } => {
            // Only when asked: a daemon from before `target` refuses fields it does not know.
            let mut body = json!({"signal": signal, "names": names});
            if let (Some(t), Some(map)) = (target, body.as_object_mut()) {
                map.insert("target".into(), json!(t));
            }
            ("POST", "signal".into(), Some(body))
        }
        RequestBody::Reload { dry_run } => {
            ("POST", "reload".into(), Some(json!({"dry_run": dry_run})))
        }
        RequestBody::Pid { name: None } => ("GET", "pid".into(), None),
        RequestBody::Pid { name: Some(n) } => ("GET", format!("pid/{}", encode(n)), None),
        RequestBody::Tail {
            name,
            lines,
            stderr,
            follow,
        } => (
            "GET",
            format!(
                "tail/{}?lines={lines}&stream={}{}",
                encode(name),
                if *stderr { "stderr" } else { "stdout" },
                if *follow { "&follow=1" } else { "" }
            ),
            None,
        ),
        RequestBody::EventLog { lines, follow } => (
            "GET",
            format!(
                "tail?events=1&lines={lines}{}",
                if *follow { "&follow=1" } else { "" }
            ),
            None,
        ),
        RequestBody::Add { names } => ("POST", "add".into(), Some(json!({"names": names}))),
        RequestBody::Remove { names } => ("POST", "remove".into(), Some(json!({"names": names}))),
        RequestBody::Clear { names } => ("POST", "clear".into(), Some(json!({"names": names}))),
        RequestBody::Logreopen => ("POST", "logreopen".into(), None),
        RequestBody::Shutdown => ("POST", "shutdown".into(), None),
    }
}

/// Percent-encode everything but unreserved characters (and `:`, common in instance names).
fn encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~:".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// The TCP stream as a reader with one deadline for the whole answer.
#[derive(Debug)]
struct Deadlined {
    stream: Wire,
    deadline: Option<Instant>,
}

impl Read for Deadlined {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if let Some(at) = self.deadline {
            let left = at.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(io::ErrorKind::TimedOut.into());
            }
            self.stream.tcp().set_read_timeout(Some(left))?;
        } else {
            self.stream.tcp().set_read_timeout(None)?;
        }
        self.stream.read(buf)
    }
}

/// Where a chunked body is (RFC 9112 section 7.1): a size line, that many bytes, a line end; a
/// zero size ends it, after trailers, which are read and dropped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Chunks {
    Size,
    Data(u64),
    DataEnd,
    Done,
}

/// The body as it arrives after the head: as it is, or with its chunk framing taken off.
#[derive(Debug)]
struct Decoded {
    inner: BufReader<Deadlined>,
    /// `None`: not chunked.
    chunks: Option<Chunks>,
}

impl Read for Decoded {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        loop {
            let Some(at) = self.chunks else {
                return self.inner.read(buf);
            };
            match at {
                Chunks::Done => return Ok(0),
                Chunks::Size => {
                    let line = chunk_line(&mut self.inner)?;
                    let len = chunk_size(&line)?;
                    if len > MAX_ANSWER {
                        return Err(invalid(format!("a chunk larger than {}", size(MAX_ANSWER))));
                    }
                    self.chunks = Some(if len == 0 {
                        skip_trailers(&mut self.inner)?;
                        Chunks::Done
                    } else {
                        Chunks::Data(len)
                    });
                }
                Chunks::Data(left) => {
                    if buf.is_empty() {
                        return Ok(0);
                    }
                    let want = buf.len().min(usize::try_from(left).unwrap_or(usize::MAX));
                    let n = self.inner.read(&mut buf[..want])?;
                    if n == 0 {
                        return Err(invalid("the answer ended inside a chunk"));
                    }
                    let left = left - n as u64;
                    self.chunks = Some(if left == 0 {
                        Chunks::DataEnd
                    } else {
                        Chunks::Data(left)
                    });
                    return Ok(n);
                }
                Chunks::DataEnd => {
                    let line = chunk_line(&mut self.inner)?;
                    if !line.is_empty() {
                        return Err(invalid("a chunk longer than its size"));
                    }
                    self.chunks = Some(Chunks::Size);
                }
            }
        }
    }
}

/// One line of chunk framing, without its line end; bounded, and an error if the body ends.
fn chunk_line(inner: &mut impl BufRead) -> io::Result<Vec<u8>> {
    let mut line = Vec::new();
    inner.take(MAX_CHUNK_LINE).read_until(b'\n', &mut line)?;
    let Some(text) = line.strip_suffix(b"\n") else {
        return Err(invalid(if line.len() as u64 >= MAX_CHUNK_LINE {
            "a chunk size line longer than 4 KiB"
        } else {
            "the answer ended inside its chunk framing"
        }));
    };
    let len = text.strip_suffix(b"\r").unwrap_or(text).len();
    line.truncate(len);
    Ok(line)
}

/// The hex size at the start of a chunk-size line (extensions after `;` ignored), without
/// overflow.
fn chunk_size(line: &[u8]) -> io::Result<u64> {
    let digits = line.split(|&b| b == b';').next().unwrap_or_default();
    let digits = digits.trim_ascii();
    let bad = || invalid("a chunk size that is not a hex number");
    if digits.is_empty() {
        return Err(bad());
    }
    let mut size: u64 = 0;
    for &b in digits {
        let d = char::from(b).to_digit(16).ok_or_else(bad)?;
        size = size
            .checked_mul(16)
            .and_then(|s| s.checked_add(u64::from(d)))
            .ok_or_else(|| invalid("a chunk size too large to hold"))?;
    }
    Ok(size)
}

/// The trailer lines after the last chunk, up to the blank line: read, bounded, dropped.
fn skip_trailers(inner: &mut impl BufRead) -> io::Result<()> {
    let mut taken: u64 = 0;
    loop {
        let line = chunk_line(inner)?;
        if line.is_empty() {
            return Ok(());
        }
        taken += line.len() as u64;
        if taken > MAX_CHUNK_LINE {
            return Err(invalid("trailers longer than 4 KiB"));
        }
    }
}

#[derive(Debug)]
enum Body {
    /// No request sent yet, or the answer was read.
    Done,
    /// The head is still to read.
    Head,
    /// One JSON answer of this length (`None`: to the end of the connection).
    Whole { len: Option<u64>, status: u16 },
    /// Server-Sent Events.
    Events,
}

/// One daemon over HTTP: a connection per request.
#[derive(Debug)]
pub struct HttpTransport {
    /// Boxed: a URL is large beside the socket transport it shares an enum with.
    url: Box<Url>,
    connect_within: Duration,
    /// The connection opened by `connect`, for the first request.
    fresh: Option<Wire>,
    /// The head is read from `get_mut().inner` (nothing has gone through the outer buffer
    /// yet), the body through the outer reader, which takes off any chunk framing.
    reader: Option<BufReader<Decoded>>,
    body: Body,
    /// The request was `status`: the answer is the bare array.
    status_array: bool,
    /// The current connection, for `Closer`s on other threads.
    current: Arc<Mutex<Option<TcpStream>>>,
    deadline: Option<Instant>,
    /// The most one Server-Sent Event may take (`MAX_ANSWER`; smaller in tests).
    max_event: u64,
}

impl HttpTransport {
    pub fn connect(url: &Url, within: Duration) -> Result<HttpTransport, Fail> {
        let stream = open(url, within)?;
        Ok(HttpTransport {
            url: Box::new(url.clone()),
            connect_within: within,
            fresh: Some(stream),
            reader: None,
            body: Body::Done,
            status_array: false,
            current: Arc::new(Mutex::new(None)),
            deadline: None,
            max_event: MAX_ANSWER,
        })
    }

    /// A handle on whatever connection is current, for closing it from another thread.
    pub fn closer(&self) -> Arc<Mutex<Option<TcpStream>>> {
        Arc::clone(&self.current)
    }

    pub fn send(&mut self, body: &RequestBody) -> Result<(), Fail> {
        let mut stream = match self.fresh.take() {
            Some(s) => s,
            None => open(&self.url, self.connect_within)?,
        };
        let (method, path, json) = target_of(body);
        let payload = json.map(|v| v.to_string()).unwrap_or_default();
        let auth = self
            .url
            .token
            .as_ref()
            .map_or(String::new(), |t| format!("Authorization: Bearer {t}\r\n"));
        let length = if method == "POST" {
            format!(
                "Content-Type: application/json\r\nContent-Length: {}\r\n",
                payload.len()
            )
        } else {
            String::new()
        };
        let head = format!(
            "{method} {}/api/v1/{path} HTTP/1.1\r\nHost: {}\r\nUser-Agent: sup/{}\r\n\
             Accept: application/json, text/event-stream\r\n{auth}{length}Connection: close\r\n\r\n",
            self.url.prefix,
            self.url.authority,
            env!("CARGO_PKG_VERSION"),
        );
        let mut bytes = head.into_bytes();
        bytes.extend_from_slice(payload.as_bytes());
        stream
            .write_all(&bytes)
            .and_then(|()| stream.flush())
            .map_err(|e| {
                Fail::new(format!(
                    "cannot send to the daemon at {}: {}",
                    self.url.shown,
                    super::client::cause(&e)
                ))
            })?;
        if let Ok(mut current) = self.current.lock() {
            *current = stream.tcp().try_clone().ok();
        }
        self.status_array = matches!(body, RequestBody::Status { .. });
        self.reader = Some(BufReader::new(Decoded {
            inner: BufReader::new(Deadlined {
                stream,
                deadline: self.deadline,
            }),
            chunks: None,
        }));
        self.body = Body::Head;
        Ok(())
    }

    pub fn set_deadline(&mut self, deadline: Option<Instant>) {
        self.deadline = deadline;
        if let Some(r) = self.reader.as_mut() {
            r.get_mut().inner.get_mut().deadline = deadline;
        }
    }

    /// The next answer: `Ok(None)` at the end of the answer or stream.
    pub fn next(&mut self) -> Result<Option<Response>, io::Error> {
        if matches!(self.body, Body::Head) {
            self.read_head()?;
        }
        let Some(reader) = self.reader.as_mut() else {
            return Ok(None);
        };
        match self.body {
            Body::Done | Body::Head => Ok(None),
            Body::Whole { len, status } => {
                self.body = Body::Done;
                let mut bytes = Vec::new();
                // One byte past the bound tells an answer that is too long from one that fits.
                let limit = len.unwrap_or(MAX_ANSWER + 1).min(MAX_ANSWER + 1);
                reader.take(limit).read_to_end(&mut bytes)?;
                self.reader = None;
                if bytes.len() as u64 > MAX_ANSWER {
                    return Err(invalid(format!(
                        "an answer longer than {}",
                        size(MAX_ANSWER)
                    )));
                }
                Ok(Some(self.decode(status, &bytes)?))
            }
            Body::Events => loop {
                let mut data = Vec::new();
                let mut line = Vec::new();
                // Every byte of the event so far, its field names and line ends too: a server
                // that never sends the blank line ending an event cannot grow `data` forever.
                let mut taken: u64 = 0;
                loop {
                    line.clear();
                    let room = self.max_event.saturating_sub(taken) + 1;
                    let n = reader.take(room).read_until(b'\n', &mut line)?;
                    if n == 0 {
                        self.body = Body::Done;
                        return Ok(None);
                    }
                    taken += n as u64;
                    if taken > self.max_event {
                        self.body = Body::Done;
                        self.reader = None;
                        return Err(invalid(format!(
                            "an event longer than {} (no blank line ends it)",
                            size(self.max_event)
                        )));
                    }
                    let text = line.strip_suffix(b"\n").unwrap_or(&line);
                    let text = text.strip_suffix(b"\r").unwrap_or(text);
                    if text.is_empty() {
                        break;
                    }
                    if let Some(d) = text.strip_prefix(b"data:") {
                        if !data.is_empty() {
                            data.push(b'\n');
                        }
                        data.extend_from_slice(d.strip_prefix(b" ").unwrap_or(d));
                    }
                    // `event:`, `id:` and comments: the data names its kind itself.
                }
                if data.is_empty() {
                    continue;
                }
                return super::client::parse_answer(&data)
                    .map(Some)
                    .map_err(invalid);
            },
        }
    }

    fn read_head(&mut self) -> io::Result<()> {
        let Some(reader) = self.reader.as_mut() else {
            return Ok(());
        };
        let mut head = Vec::new();
        loop {
            let mut line = Vec::new();
            let n = reader
                .get_mut()
                .inner
                .by_ref()
                .take(MAX_HEAD as u64)
                .read_until(b'\n', &mut line)?;
            if n == 0 {
                if head.is_empty() {
                    self.body = Body::Done;
                    self.reader = None;
                    return Ok(());
                }
                // 0x15 0x03: a TLS alert, the answer of an HTTPS listener to plain HTTP.
                if !self.url.tls && head.starts_with(&[0x15, 0x03]) {
                    return Err(invalid(
                        "the daemon speaks HTTPS here (daemon.http.tls): use an https:// URL",
                    ));
                }
                return Err(invalid("the answer ended inside its head"));
            }
            head.extend_from_slice(&line);
            if line == b"\r\n" || line == b"\n" {
                break;
            }
            if head.len() > MAX_HEAD {
                return Err(invalid("a response head larger than 16 KiB"));
            }
        }
        let mut headers = [httparse::EMPTY_HEADER; 32];
        let mut resp = httparse::Response::new(&mut headers);
        match resp.parse(&head) {
            Ok(httparse::Status::Complete(_)) => {}
            Ok(httparse::Status::Partial) | Err(_) => return Err(invalid("not an HTTP answer")),
        }
        let status = resp.code.unwrap_or(0);
        let header = |name: &str| {
            resp.headers
                .iter()
                .find(|h| h.name.eq_ignore_ascii_case(name))
                .map(|h| String::from_utf8_lossy(h.value).trim().to_string())
        };
        let events = header("content-type").is_some_and(|t| t.starts_with("text/event-stream"));
        // A reverse proxy may re-chunk what the daemon sent with a length; then the length,
        // if still there, is not the body's (RFC 9112 section 6.3).
        let chunked = match header("transfer-encoding") {
            None => false,
            Some(te) if te.eq_ignore_ascii_case("chunked") => true,
            Some(te) => {
                return Err(invalid(format!(
                    "a transfer coding this client cannot read: {te}"
                )))
            }
        };
        if let Some(r) = self.reader.as_mut() {
            r.get_mut().chunks = chunked.then_some(Chunks::Size);
        }
        self.body = if events && status == 200 {
            Body::Events
        } else {
            Body::Whole {
                len: if chunked {
                    None
                } else {
                    header("content-length").and_then(|l| l.parse().ok())
                },
                status,
            }
        };
        Ok(())
    }

    /// A whole answer's body: the socket's JSON (the array for `status`), or for an answer
    /// that is not sup's, an error naming the HTTP status.
    fn decode(&self, status: u16, bytes: &[u8]) -> io::Result<Response> {
        if status == 200 && self.status_array {
            if let Ok(instances) = serde_json::from_slice::<Vec<InstanceStatus>>(bytes) {
                return Ok(Response::new(ResponseBody::Status {
                    instances,
                    daemon: None,
                }));
            }
        }
        match super::client::parse_answer(bytes) {
            Ok(Response {
                v,
                body: ResponseBody::Error { message, hint },
            }) if status == 401 => Ok(Response {
                v,
                body: ResponseBody::Error {
                    message: format!("{}: {message}", self.url.shown),
                    hint: hint.or_else(|| {
                        Some("pass the daemon's token with --token-file or $SUP_TOKEN_FILE".into())
                    }),
                },
            }),
            Ok(r) => Ok(r),
            Err(_) if status != 200 => {
                let text = String::from_utf8_lossy(bytes);
                let first = text.lines().next().unwrap_or("").trim();
                Ok(Response::new(ResponseBody::Error {
                    message: format!("{} answered {status} {first}", self.url.shown),
                    hint: Some("is this the URL of a sup daemon's HTTP listener?".into()),
                }))
            }
            Err(e) => Err(invalid(e)),
        }
    }
}

/// `64 MiB`, `512 KiB`, `100 bytes`: a limit as messages state it.
fn size(bytes: u64) -> String {
    if bytes >= 1024 * 1024 && bytes % (1024 * 1024) == 0 {
        format!("{} MiB", bytes / (1024 * 1024))
    } else if bytes >= 1024 && bytes % 1024 == 0 {
        format!("{} KiB", bytes / 1024)
    } else {
        format!("{bytes} bytes")
    }
}

fn invalid(e: impl ToString) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, e.to_string())
}

/// Shut the current connection, waking a read blocked on it.
pub fn close(current: &Arc<Mutex<Option<TcpStream>>>) {
    if let Ok(c) = current.lock() {
        if let Some(s) = c.as_ref() {
            let _ = s.shutdown(Shutdown::Both);
        }
    }
}

fn open(url: &Url, within: Duration) -> Result<Wire, Fail> {
    let fail = |e: &io::Error| {
        let f = Fail::new(format!(
            "no daemon is listening at {}: {}",
            url.shown,
            super::client::cause(e)
        ));
        f.hint("check the URL against daemon.http.listen, or leave out --url and $SUP_URL to use the socket")
    };
    let addrs = url.authority.to_socket_addrs().map_err(|e| {
        Fail::new(format!(
            "{}: cannot resolve the host: {}",
            url.shown,
            super::client::cause(&e)
        ))
    })?;
    let mut last = io::Error::from(io::ErrorKind::AddrNotAvailable);
    for addr in addrs {
        match TcpStream::connect_timeout(&addr, within.max(Duration::from_millis(1))) {
            Ok(s) => {
                let _ = s.set_nodelay(true);
                if !url.tls {
                    return Ok(Wire::Plain(s));
                }
                let config = super::tls_client::client_config(url.ca_file.as_deref())?;
                return super::tls_client::handshake(s, &url.host, config, within, &url.shown);
            }
            Err(e) => last = e,
        }
    }
    Err(fail(&last))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::TcpListener;

    /// A server on a loopback port that reads one request head and hands the connection to
    /// `answer`; the URL to reach it.
    fn fake_server(answer: impl FnOnce(TcpStream) + Send + 'static) -> Url {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let port = listener.local_addr().expect("address").port();
        std::thread::spawn(move || {
            let Ok((stream, _)) = listener.accept() else {
                return;
            };
            let mut reader = BufReader::new(stream.try_clone().expect("clone"));
            let mut line = String::new();
            while reader.read_line(&mut line).is_ok_and(|n| n > 0) {
                if line == "\r\n" {
                    break;
                }
                line.clear();
            }
            answer(stream);
        });
        Url::parse(&format!("http://127.0.0.1:{port}")).expect("parses")
    }

    /// Every answer of a `tail -f` from `url` until the server ends the stream.
    fn follow_to_the_end(url: &Url) -> Vec<ResponseBody> {
        let mut http = HttpTransport::connect(url, Duration::from_secs(5)).expect("connects");
        http.send(&tail_follow()).expect("sends");
        http.set_deadline(Some(Instant::now() + Duration::from_secs(20)));
        let mut got = Vec::new();
        while let Some(r) = http.next().expect("reads") {
            got.push(r.body);
        }
        got
    }

    fn tail_follow() -> RequestBody {
        RequestBody::Tail {
            name: "web".into(),
            lines: 10,
            stderr: false,
            follow: true,
        }
    }

    #[test]
    fn an_event_without_end_is_cut_at_the_limit() {
        let url = fake_server(|mut s| {
            let _ = s.write_all(b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n\r\n");
            let lines =
                b"data: AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA\n"
                    .repeat(100);
            // Until the client hangs up.
            while s.write_all(&lines).is_ok() {}
        });
        let mut http = HttpTransport::connect(&url, Duration::from_secs(5)).expect("connects");
        http.max_event = 64 * 1024;
        http.send(&tail_follow()).expect("sends");
        http.set_deadline(Some(Instant::now() + Duration::from_secs(20)));
        let e = http.next().expect_err("too long");
        assert_eq!(e.kind(), io::ErrorKind::InvalidData);
        assert_eq!(
            e.to_string(),
            "an event longer than 64 KiB (no blank line ends it)"
        );
        // One line without an end is held to the same bound.
        let url = fake_server(|mut s| {
            let _ =
                s.write_all(b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n\r\ndata: ");
            let bytes = [b'A'; 8192];
            while s.write_all(&bytes).is_ok() {}
        });
        let mut http = HttpTransport::connect(&url, Duration::from_secs(5)).expect("connects");
        http.max_event = 64 * 1024;
        http.send(&tail_follow()).expect("sends");
        http.set_deadline(Some(Instant::now() + Duration::from_secs(20)));
        let e = http.next().expect_err("too long");
        assert!(
            e.to_string().starts_with("an event longer than 64 KiB"),
            "{e}"
        );
    }

    /// What a server sends for `status`, head and body as given.
    fn status_from(answer: &'static [u8]) -> io::Result<Option<Response>> {
        let url = fake_server(move |mut s| {
            let _ = s.write_all(answer);
        });
        let mut http = HttpTransport::connect(&url, Duration::from_secs(5)).expect("connects");
        http.send(&RequestBody::Status {
            names: vec![],
            rows: false,
        })
        .expect("sends");
        http.set_deadline(Some(Instant::now() + Duration::from_secs(20)));
        http.next()
    }

    #[test]
    fn chunked_answers_are_decoded() {
        let empty = ResponseBody::Status {
            instances: vec![],
            daemon: None,
        };
        // As a proxy re-chunks: the length it kept is ignored, chunks in pieces, an
        // extension, upper-case hex, a trailer.
        let got = status_from(
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nContent-Length: 1\r\n\r\n\
              1;name=value\r\n[\r\n0000A\r\n          \r\n1\n]\n0\r\nX-Trailer: yes\r\n\r\n",
        )
        .expect("reads");
        assert_eq!(got.map(|r| r.body), Some(empty.clone()));
        let got = status_from(
            b"HTTP/1.1 200 OK\r\ntransfer-encoding: Chunked\r\n\r\n2\r\n[]\r\n0\r\n\r\n",
        )
        .expect("reads");
        assert_eq!(got.map(|r| r.body), Some(empty));
    }

    #[test]
    fn broken_chunking_is_an_error_not_a_hang() {
        let head = "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n";
        let cases: [(&'static str, &str); 7] = [
            ("FFFFFFFFFFFFFFFFF\r\n", "a chunk size too large to hold"),
            ("5000000\r\n", "a chunk larger than 64 MiB"),
            (
                "zz\r\n[]\r\n0\r\n\r\n",
                "a chunk size that is not a hex number",
            ),
            ("\r\n", "a chunk size that is not a hex number"),
            ("2\r\n[]xx\r\n0\r\n\r\n", "a chunk longer than its size"),
            ("9\r\n[]", "the answer ended inside a chunk"),
            (
                "2\r\n[]\r\n0\r\n",
                "the answer ended inside its chunk framing",
            ),
        ];
        for (body, want) in cases {
            let answer: &'static [u8] = format!("{head}{body}").leak().as_bytes();
            let e = status_from(answer).expect_err(body);
            assert_eq!(e.to_string(), want, "{body:?}");
        }
        let long: &'static [u8] = format!("{head}1;{}\r\n", "x".repeat(5000))
            .leak()
            .as_bytes();
        let e = status_from(long).expect_err("long size line");
        assert_eq!(e.to_string(), "a chunk size line longer than 4 KiB");
        let e =
            status_from(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\n[]").expect_err("gzip");
        assert_eq!(
            e.to_string(),
            "a transfer coding this client cannot read: gzip"
        );
    }

    #[test]
    fn chunked_events_are_decoded() {
        let url = fake_server(|mut s| {
            let _ = s.write_all(
                b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n\r\n",
            );
            let stream = "data: {\"v\":1,\"kind\":\"output\",\"data\":\"one\"}\n\n\
                          data: {\"v\":1,\"kind\":\"output\",\"data\":\"two\"}\n\n";
            // Chunks that cut lines and events anywhere.
            for piece in stream.as_bytes().chunks(7) {
                let _ = s.write_all(format!("{:x}\r\n", piece.len()).as_bytes());
                let _ = s.write_all(piece);
                let _ = s.write_all(b"\r\n");
            }
            let _ = s.write_all(b"0\r\n\r\n");
        });
        assert_eq!(
            follow_to_the_end(&url),
            ["one", "two"].map(|d| ResponseBody::Output { data: d.into() })
        );
    }

    #[test]
    fn events_under_the_limit_are_read() {
        let url = fake_server(|mut s| {
            let event = |data: &str| {
                let line = format!(r#"{{"v":1,"kind":"output","data":"{data}"}}"#);
                format!("event: output\ndata: {line}\n\n")
            };
            let body = format!(
                "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n\r\n{}: a comment\n\n{}",
                event("one"),
                event("two")
            );
            let _ = s.write_all(body.as_bytes());
        });
        assert_eq!(
            follow_to_the_end(&url),
            ["one", "two"].map(|d| ResponseBody::Output { data: d.into() })
        );
    }

    #[test]
    fn urls() {
        let u = Url::parse("http://127.0.0.1:8080/").expect("parses");
        assert_eq!(
            (u.authority.as_str(), u.prefix.as_str()),
            ("127.0.0.1:8080", "")
        );
        assert_eq!(u.shown, "http://127.0.0.1:8080");
        let u = Url::parse("http://host/sup").expect("parses");
        assert_eq!(
            (u.authority.as_str(), u.prefix.as_str()),
            ("host:80", "/sup")
        );
        let u = Url::parse("http://[::1]").expect("parses");
        assert_eq!(u.authority, "[::1]:80");
        let u = Url::parse("https://host:1").expect("parses");
        assert_eq!(
            (u.tls, u.authority.as_str(), u.host.as_str()),
            (true, "host:1", "host")
        );
        let u = Url::parse("https://[::1]/x").expect("parses");
        assert_eq!(
            (u.tls, u.authority.as_str(), u.host.as_str()),
            (true, "[::1]:443", "[::1]")
        );
        assert!(!Url::parse("http://h").expect("parses").tls);
        assert!(Url::parse("host:1").is_err());
        assert!(Url::parse("http://").is_err());
    }

    #[test]
    fn requests_map_to_endpoints() {
        let (m, p, b) = target_of(&RequestBody::Status {
            names: vec!["web:1".into(), "a b".into()],
            rows: false,
        });
        assert_eq!(
            (m, p.as_str(), b),
            ("GET", "status?names=web:1,a%20b", None)
        );
        let (m, p, b) = target_of(&RequestBody::Stop {
            names: vec!["web".into()],
            wait: true,
        });
        assert_eq!((m, p.as_str()), ("POST", "stop"));
        assert_eq!(
            b.map(|v| v.to_string()).as_deref(),
            Some(r#"{"names":["web"],"wait":true}"#)
        );
        let (_, p, _) = target_of(&RequestBody::Tail {
            name: "web".into(),
            lines: 5,
            stderr: true,
            follow: true,
        });
        assert_eq!(p, "tail/web?lines=5&stream=stderr&follow=1");
    }
}
