//! The client side of the HTTP API (`sup --url`): the same requests and answers as the
//! control socket, carried as `/api/v1/…` requests over a plain HTTP/1.1 connection per
//! request (`Connection: close`). Blocking I/O with a deadline per answer, like the socket's
//! transport; `httparse` reads the response head. Which request goes to which endpoint is
//! `target_of`; the daemon's side is `daemon::http::api`.
//!
//! An answer is the socket's JSON, except `status`, which is the bare array (`sup status
//! --json`), and streams (`tail -f`, `subscribe`), which are Server-Sent Events whose `data`
//! is one socket answer each.

use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{Shutdown, TcpStream, ToSocketAddrs};
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::proto::{InstanceStatus, RequestBody, Response, ResponseBody};
use crate::fail::Fail;

/// The longest answer read (the same bound as a socket answer line).
const MAX_ANSWER: u64 = 64 * 1024 * 1024;
/// A response head larger than this is not from sup.
const MAX_HEAD: usize = 16 * 1024;
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
}

impl Url {
    /// Parse `--url`/`$SUP_URL`. An `https` URL is refused until TLS is built in.
    pub fn parse(text: &str) -> Result<Url, Fail> {
        let hint = "a URL such as http://127.0.0.1:8080 (what daemon.http.listen says)";
        if let Some(_rest) = text.strip_prefix("https://") {
            return Err(
                Fail::new(format!("{text}: https needs TLS support: not built"))
                    .hint("use an http:// URL, or reach the daemon through its socket"),
            );
        }
        let Some(rest) = text.strip_prefix("http://") else {
            return Err(Fail::new(format!("{text}: not an http:// URL")).hint(hint));
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
        let authority = if has_port {
            authority.to_string()
        } else {
            format!("{authority}:80")
        };
        if path.contains(['?', '#']) {
            return Err(Fail::new(format!("{text}: a URL with a query")).hint(hint));
        }
        Ok(Url {
            shown: text.trim_end_matches('/').to_string(),
            authority,
            prefix: path.trim_end_matches('/').to_string(),
            token: None,
        })
    }

    /// Read the bearer token from `path` (one word, surrounding white space ignored).
    pub fn with_token_file(mut self, path: &Path) -> Result<Url, Fail> {
        let shown = path.display();
        let file = std::fs::File::open(path).map_err(|e| {
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
        RequestBody::Status { names } => ("GET", format!("status{}", names_query(names)), None),
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
    stream: TcpStream,
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
        } else {
            self.stream.set_read_timeout(None)?;
        }
        self.stream.read(buf)
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
    url: Url,
    connect_within: Duration,
    /// The connection opened by `connect`, for the first request.
    fresh: Option<TcpStream>,
    reader: Option<BufReader<Deadlined>>,
    body: Body,
    /// The request was `status`: the answer is the bare array.
    status_array: bool,
    /// The current connection, for `Closer`s on other threads.
    current: Arc<Mutex<Option<TcpStream>>>,
    deadline: Option<Instant>,
}

impl HttpTransport {
    pub fn connect(url: &Url, within: Duration) -> Result<HttpTransport, Fail> {
        let stream = open(url, within)?;
        Ok(HttpTransport {
            url: url.clone(),
            connect_within: within,
            fresh: Some(stream),
            reader: None,
            body: Body::Done,
            status_array: false,
            current: Arc::new(Mutex::new(None)),
            deadline: None,
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
            *current = stream.try_clone().ok();
        }
        self.status_array = matches!(body, RequestBody::Status { .. });
        self.reader = Some(BufReader::new(Deadlined {
            stream,
            deadline: self.deadline,
        }));
        self.body = Body::Head;
        Ok(())
    }

    pub fn set_deadline(&mut self, deadline: Option<Instant>) {
        self.deadline = deadline;
        if let Some(r) = self.reader.as_mut() {
            r.get_mut().deadline = deadline;
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
                let limit = len.unwrap_or(MAX_ANSWER).min(MAX_ANSWER);
                reader.take(limit).read_to_end(&mut bytes)?;
                self.reader = None;
                Ok(Some(self.decode(status, &bytes)?))
            }
            Body::Events => loop {
                let mut data = Vec::new();
                let mut line = Vec::new();
                loop {
                    line.clear();
                    let n = reader.take(MAX_ANSWER).read_until(b'\n', &mut line)?;
                    if n == 0 {
                        self.body = Body::Done;
                        return Ok(None);
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
            let n = reader.take(MAX_HEAD as u64).read_until(b'\n', &mut line)?;
            if n == 0 {
                if head.is_empty() {
                    self.body = Body::Done;
                    self.reader = None;
                    return Ok(());
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
        self.body = if events && status == 200 {
            Body::Events
        } else {
            Body::Whole {
                len: header("content-length").and_then(|l| l.parse().ok()),
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

fn open(url: &Url, within: Duration) -> Result<TcpStream, Fail> {
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
                return Ok(s);
            }
            Err(e) => last = e,
        }
    }
    Err(fail(&last))
}

#[cfg(test)]
mod tests {
    use super::*;

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
        let tls = Url::parse("https://host:1").expect_err("no TLS");
        assert!(
            tls.message.ends_with("https needs TLS support: not built"),
            "{}",
            tls.message
        );
        assert!(Url::parse("host:1").is_err());
        assert!(Url::parse("http://").is_err());
    }

    #[test]
    fn requests_map_to_endpoints() {
        let (m, p, b) = target_of(&RequestBody::Status {
            names: vec!["web:1".into(), "a b".into()],
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
