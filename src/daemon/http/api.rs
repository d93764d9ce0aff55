//! The JSON API (`/api/v1/…`) without sockets: which control request an HTTP request is
//! (`route`), and how the control protocol's answers go back as HTTP (`answer`, `sse_event`).
//! The requests themselves are answered by the loop's control path (`Daemon::handle`), the
//! same code the Unix socket's requests take, so names, errors and outcomes are the same.
//!
//! Every body is the socket's answer as it is (`{"v":1,"kind":…}`), except `status`, which is
//! the array `sup status --json` prints. Streams (`tail` with `follow`, `events`) are
//! Server-Sent Events whose `data` is one socket answer each, named by its `kind`.

use serde::Deserialize;

use super::request::Method;
use crate::control::proto::{RequestBody, Response, ResponseBody, SignalTarget};

pub const PREFIX: &str = "/api/v1/";

/// The message the loop's name resolution gives for names that select nothing known: the one
/// control error that is a 404 here.
pub const UNKNOWN_NAME: &str = "no such program or instance";
/// What a request gets while the daemon stops everything: a 503.
pub const SHUTTING_DOWN: &str = "the daemon is shutting down";

/// How the answer to a call goes on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Shape {
    /// One JSON answer, the socket's.
    Json,
    /// A `status` answer as the bare array of instances.
    StatusArray,
    /// Server-Sent Events, one per socket answer, until either side closes.
    Events,
}

/// A control request, and how its answer is shaped.
#[derive(Debug, Clone, PartialEq)]
pub struct Call {
    pub body: RequestBody,
    pub shape: Shape,
}

/// An HTTP request the API refuses before the control path sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    pub status: u16,
    pub message: String,
    /// The methods the path takes, for a 405's `Allow`.
    pub allow: Option<&'static str>,
}

fn refuse(status: u16, message: impl Into<String>) -> Refusal {
    Refusal {
        status,
        message: message.into(),
        allow: None,
    }
}

/// Whether a call needs the daemon to know who asks: everything that changes something, and
/// `tail` (a job's output may hold secrets). With `token_file` the token says so; without
/// one (a loopback listener) the peer must be the daemon's own user or root, as on the
/// control socket. `status`, `pid` and `events`, the state `/metrics` shows anyway, are
/// answered to any local user.
pub fn needs_token(body: &RequestBody) -> bool {
    match body {
        RequestBody::Status { .. } | RequestBody::Pid { .. } | RequestBody::Subscribe { .. } => {
            false
        }
        RequestBody::Start { .. }
        | RequestBody::Stop { .. }
        | RequestBody::Restart { .. }
        | RequestBody::Signal { .. }
        | RequestBody::Reload { .. }
        | RequestBody::Tail { .. }
        | RequestBody::EventLog { .. }
        | RequestBody::Clear { .. }
        | RequestBody::Add { .. }
        | RequestBody::Remove { .. }
        | RequestBody::Logreopen
        | RequestBody::Shutdown => true,
    }
}

/// The body of `start`, `stop` and `restart`; every field may be left out.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ActBody {
    #[serde(default)]
    names: Vec<String>,
    /// Answer when the transitions end, as `sup start` does; `false` answers at once.
    #[serde(default = "yes")]
    wait: bool,
    #[serde(default)]
    rolling: bool,
}

/// The body of `clear`: which instances, unless the path names one.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct NamesBody {
    #[serde(default)]
    names: Vec<String>,
}

fn yes() -> bool {
    true
}

/// An empty body: the same defaults as `{}`.
impl Default for ActBody {
    fn default() -> ActBody {
        ActBody {
            names: Vec::new(),
            wait: true,
            rolling: false,
        }
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct SignalBody {
    signal: String,
    #[serde(default)]
    names: Vec<String>,
    /// `"main"` or `"group"`, as on the socket; absent, each job's `signal_target`.
    #[serde(default)]
    target: Option<SignalTarget>,
    /// `true` is `"target": "main"` (the CLI's `--main`).
    #[serde(default)]
    main: bool,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct ReloadBody {
    #[serde(default)]
    dry_run: bool,
}

/// The control request an API request is. `path` and `query` are as sent (percent-encoded).
pub fn route(method: Method, path: &str, query: &str, body: &[u8]) -> Result<Call, Refusal> {
    let Some(rest) = path.strip_prefix(PREFIX) else {
        return Err(refuse(404, format!("no such endpoint: {path}")));
    };
    let (endpoint, name) = match rest.split_once('/') {
        Some((e, n)) => (e, Some(decode(n).ok_or_else(|| bad_escape(path))?)),
        None => (rest, None),
    };
    if name
        .as_deref()
        .is_some_and(|n| n.is_empty() || n.contains('/'))
    {
        return Err(refuse(404, format!("no such endpoint: {path}")));
    }
    let query = Query::parse(query)?;
    let reads = |m: Method| -> Result<(), Refusal> {
        match m {
            Method::Get => Ok(()),
            _ => Err(Refusal {
                status: 405,
                message: format!("{path} takes GET"),
                allow: Some("GET"),
            }),
        }
    };
    let writes = |m: Method| -> Result<(), Refusal> {
        match m {
            Method::Post => Ok(()),
            _ => Err(Refusal {
                status: 405,
                message: format!("{path} changes things: it takes POST"),
                allow: Some("POST"),
            }),
        }
    };
    let listed = |name: Option<String>| -> Vec<String> {
        match name {
            Some(n) => vec![n],
            None => query.names.clone(),
        }
    };
    let json = |body| Call {
        body,
        shape: Shape::Json,
    };
    match (endpoint, name.is_some()) {
        ("status", _) => {
            reads(method)?;
            Ok(Call {
                body: RequestBody::Status {
                    names: listed(name),
                    rows: false,
                },
                shape: Shape::StatusArray,
            })
        }
        ("events", false) => {
            reads(method)?;
            Ok(Call {
                body: RequestBody::Subscribe {
                    names: query.names.clone(),
                },
                shape: Shape::Events,
            })
        }
        ("pid", _) => {
            reads(method)?;
            Ok(json(RequestBody::Pid { name }))
        }
        ("tail", false) if query.events => {
            reads(method)?;
            let follow = query.follow;
            Ok(Call {
                body: RequestBody::EventLog {
                    lines: query.lines.unwrap_or(10),
                    follow,
                },
                shape: if follow { Shape::Events } else { Shape::Json },
            })
        }
        ("tail", true) => {
            reads(method)?;
            let Some(name) = name else {
                return Err(refuse(404, format!("no such endpoint: {path}")));
            };
            let follow = query.follow;
            Ok(Call {
                body: RequestBody::Tail {
                    name,
                    lines: query.lines.unwrap_or(10),
                    stderr: query.stderr,
                    follow,
                },
                shape: if follow { Shape::Events } else { Shape::Json },
            })
        }
        ("start" | "stop" | "restart", _) => {
            writes(method)?;
            let b: ActBody = parse_body(body)?;
            let names = with_path_name(name, b.names)?;
            let wait = b.wait;
            Ok(json(match endpoint {
                "start" => RequestBody::Start { names, wait },
                "stop" => RequestBody::Stop { names, wait },
                _ => RequestBody::Restart {
                    names,
                    wait,
                    rolling: b.rolling,
                },
            }))
        }
        ("signal", _) => {
            writes(method)?;
            let b: SignalBody = parse_body(body)?;
            let names = with_path_name(name, b.names)?;
            let target = match (b.main, b.target) {
                (true, Some(SignalTarget::Group)) => {
                    return Err(refuse(
                        400,
                        "\"main\": true and \"target\": \"group\" contradict each other",
                    ))
                }
                (true, _) => Some(SignalTarget::Main),
                (false, target) => target,
            };
            Ok(json(RequestBody::Signal {
                signal: b.signal,
                names,
                target,
            }))
        }
        ("clear", _) => {
            writes(method)?;
            let b: NamesBody = parse_body(body)?;
            let names = with_path_name(name, b.names)?;
            Ok(json(RequestBody::Clear { names }))
        }
        ("add" | "remove", _) => {
            writes(method)?;
            let b: NamesBody = parse_body(body)?;
            let names = with_path_name(name, b.names)?;
            Ok(json(if endpoint == "add" {
                RequestBody::Add { names }
            } else {
                RequestBody::Remove { names }
            }))
        }
        ("reload", false) => {
            writes(method)?;
            let b: ReloadBody = parse_body(body)?;
            Ok(json(RequestBody::Reload { dry_run: b.dry_run }))
        }
        ("logreopen", false) => {
            writes(method)?;
            parse_body::<Empty>(body)?;
            Ok(json(RequestBody::Logreopen))
        }
        ("shutdown", false) => {
            writes(method)?;
            parse_body::<Empty>(body)?;
            Ok(json(RequestBody::Shutdown))
        }
        _ => Err(refuse(404, format!("no such endpoint: {path}"))),
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct Empty {}

/// An empty body is `{}`; anything else must be one JSON object of the endpoint's fields.
fn parse_body<T: Default + for<'de> Deserialize<'de>>(body: &[u8]) -> Result<T, Refusal> {
    if body.trim_ascii().is_empty() {
        return Ok(T::default());
    }
    serde_json::from_slice(body).map_err(|e| {
        refuse(
            400,
            format!("the request body is not what this endpoint takes: {e}"),
        )
    })
}

fn with_path_name(name: Option<String>, names: Vec<String>) -> Result<Vec<String>, Refusal> {
    match (name, names.is_empty()) {
        (Some(n), true) => Ok(vec![n]),
        (None, _) => Ok(names),
        (Some(_), false) => Err(refuse(
            400,
            "name the instances in the path or in the body's `names`, not both",
        )),
    }
}

fn bad_escape(what: &str) -> Refusal {
    refuse(400, format!("{what}: a bad percent escape or not UTF-8"))
}

/// What the query string may say.
#[derive(Debug, Default)]
struct Query {
    /// `names=a,b` (or `names=a&names=b`).
    names: Vec<String>,
    lines: Option<usize>,
    stderr: bool,
    follow: bool,
    /// `tail?events=1`: the daemon's event log rather than a job's output.
    events: bool,
}

impl Query {
    fn parse(query: &str) -> Result<Query, Refusal> {
        let mut q = Query::default();
        for pair in query.split('&').filter(|p| !p.is_empty()) {
            let (key, raw) = pair.split_once('=').unwrap_or((pair, ""));
            let value = decode(raw).ok_or_else(|| bad_escape(key))?;
            match key {
                "names" | "name" => q.names.extend(
                    value
                        .split(',')
                        .filter(|n| !n.is_empty())
                        .map(str::to_string),
                ),
                "lines" | "n" => {
                    q.lines = Some(value.parse().map_err(|_| {
                        refuse(400, format!("lines: expected a count, found {value:?}"))
                    })?)
                }
                "stream" => {
                    q.stderr = match value.as_str() {
                        "stdout" => false,
                        "stderr" => true,
                        other => {
                            return Err(refuse(
                                400,
                                format!("stream: expected stdout or stderr, found {other:?}"),
                            ))
                        }
                    }
                }
                "follow" => q.follow = flag("follow", &value)?,
                "events" => q.events = flag("events", &value)?,
                // Other parameters (a cache-buster, say) are ignored, as HTTP servers do.
                _ => {}
            }
        }
        Ok(q)
    }
}

/// A yes/no query parameter: `follow=1`, `events`, `follow=0`.
fn flag(key: &str, value: &str) -> Result<bool, Refusal> {
    match value {
        "" | "1" | "true" | "yes" => Ok(true),
        "0" | "false" | "no" => Ok(false),
        other => Err(refuse(
            400,
            format!("{key}: expected 1 or 0, found {other:?}"),
        )),
    }
}

/// Percent-decoding; `None` for a bad escape or bytes that are not UTF-8.
pub fn decode(s: &str) -> Option<String> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            let hex = b.get(i + 1..i + 3)?;
            let hex = std::str::from_utf8(hex).ok()?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

/// The HTTP status of a control answer: errors the caller can fix are 4xx, an unknown name
/// 404, a daemon shutting down 503; the rest of the errors are the request's fault (400).
pub fn status_of(resp: &Response) -> u16 {
    match &resp.body {
        ResponseBody::Error { message, .. } if message.starts_with(UNKNOWN_NAME) => 404,
        ResponseBody::Error { message, .. } if message == SHUTTING_DOWN => 503,
        ResponseBody::Error { message, .. } if message.contains("unable to read") => 500,
        ResponseBody::Error { .. } => 400,
        _ => 200,
    }
}

/// The whole HTTP response for one control answer.
pub fn answer(resp: &Response, shape: Shape) -> Vec<u8> {
    let status = status_of(resp);
    let mut body = match (&resp.body, shape) {
        (ResponseBody::Status { instances, .. }, Shape::StatusArray) => {
            serde_json::to_vec(instances)
        }
        _ => serde_json::to_vec(resp),
    }
    .unwrap_or_else(|e| format!("{{\"v\":1,\"kind\":\"error\",\"message\":\"{e}\"}}").into_bytes());
    body.push(b'\n');
    super::request::response(status, "application/json", "", &body, false)
}

/// A refusal as the socket's error answer, with its status.
pub fn refusal(r: &Refusal) -> Vec<u8> {
    let extra = match (r.status, r.allow) {
        (401, _) => "WWW-Authenticate: Bearer\r\n".to_string(),
        (_, Some(allow)) => format!("Allow: {allow}\r\n"),
        _ => String::new(),
    };
    let mut body = serde_json::to_vec(&Response::error(r.message.clone())).unwrap_or_default();
    body.push(b'\n');
    super::request::response(r.status, "application/json", &extra, &body, false)
}

/// The head of a stream: no length, the connection closes at its end.
pub fn sse_head() -> Vec<u8> {
    b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nCache-Control: no-store\r\n\
      X-Accel-Buffering: no\r\nConnection: close\r\n\r\n"
        .to_vec()
}

/// One event: `event: KIND` and one `data:` line with the socket's answer (JSON has no raw
/// newlines, so one line always holds it).
pub fn sse_event(resp: &Response) -> Vec<u8> {
    let kind = match &resp.body {
        ResponseBody::Error { .. } => "error",
        ResponseBody::Status { .. } => "status",
        ResponseBody::Event { .. } => "event",
        ResponseBody::Outcomes { .. } => "outcomes",
        ResponseBody::Pids { .. } => "pids",
        ResponseBody::Reload { .. } => "reload",
        ResponseBody::Output { .. } => "output",
        ResponseBody::Done { .. } => "done",
    };
    let json = serde_json::to_string(resp).unwrap_or_default();
    format!("event: {kind}\ndata: {json}\n\n").into_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn call(method: Method, target: &str, body: &str) -> Result<Call, Refusal> {
        let (path, query) = target.split_once('?').unwrap_or((target, ""));
        route(method, path, query, body.as_bytes())
    }

    #[test]
    fn a_signal_takes_a_target_or_main() {
        let target = |body: &str| match call(Method::Post, "/api/v1/signal/web", body) {
            Ok(Call {
                body: RequestBody::Signal { target, .. },
                ..
            }) => Ok(target),
            Ok(other) => panic!("{other:?}"),
            Err(r) => Err(r.status),
        };
        assert_eq!(target(r#"{"signal":"HUP"}"#), Ok(None));
        assert_eq!(
            target(r#"{"signal":"HUP","target":"main"}"#),
            Ok(Some(SignalTarget::Main))
        );
        assert_eq!(
            target(r#"{"signal":"HUP","target":"group"}"#),
            Ok(Some(SignalTarget::Group))
        );
        assert_eq!(
            target(r#"{"signal":"HUP","main":true}"#),
            Ok(Some(SignalTarget::Main))
        );
        assert_eq!(
            target(r#"{"signal":"HUP","main":true,"target":"group"}"#),
            Err(400)
        );
        assert_eq!(target(r#"{"signal":"HUP","target":"leader"}"#), Err(400));
    }

    #[test]
    fn reads_are_gets_and_take_names_in_the_path_or_the_query() {
        let c = call(Method::Get, "/api/v1/status", "").expect("routes");
        assert_eq!(c.shape, Shape::StatusArray);
        assert_eq!(
            c.body,
            RequestBody::Status {
                names: vec![],
                rows: false
            }
        );
        let c = call(Method::Get, "/api/v1/status/web%3A1", "").expect("routes");
        assert_eq!(
            c.body,
            RequestBody::Status {
                names: vec!["web:1".into()],
                rows: false
            }
        );
        let c = call(Method::Get, "/api/v1/events?names=a,b", "").expect("routes");
        assert_eq!(c.shape, Shape::Events);
        let c = call(Method::Get, "/api/v1/tail?events=1&lines=4&follow=1", "").expect("routes");
        assert_eq!(
            c.body,
            RequestBody::EventLog {
                lines: 4,
                follow: true
            }
        );
        assert_eq!(c.shape, Shape::Events);
        let c = call(Method::Post, "/api/v1/clear/web", "").expect("routes");
        assert_eq!(
            c.body,
            RequestBody::Clear {
                names: vec!["web".into()]
            }
        );
        assert!(call(Method::Get, "/api/v1/clear/web", "").is_err());
        assert!(call(Method::Get, "/api/v1/tail?events=maybe", "").is_err());
        let c = call(
            Method::Get,
            "/api/v1/tail/web?lines=3&stream=stderr&follow=1",
            "",
        )
        .expect("routes");
        assert_eq!(
            c.body,
            RequestBody::Tail {
                name: "web".into(),
                lines: 3,
                stderr: true,
                follow: true
            }
        );
        assert_eq!(c.shape, Shape::Events);
        let c = call(Method::Get, "/api/v1/tail/web", "").expect("routes");
        assert_eq!(c.shape, Shape::Json);
        assert_eq!(
            call(Method::Post, "/api/v1/status", "").map_err(|r| r.status),
            Err(405)
        );
        assert_eq!(
            call(Method::Get, "/api/v1/nope", "").map_err(|r| r.status),
            Err(404)
        );
        assert_eq!(
            call(Method::Get, "/api/v1/tail", "").map_err(|r| r.status),
            Err(404)
        );
        assert_eq!(
            call(Method::Get, "/api/v1/status/a%zz", "").map_err(|r| r.status),
            Err(400)
        );
        let bad = call(Method::Get, "/api/v1/tail/web?stream=both", "");
        assert_eq!(bad.map_err(|r| r.status), Err(400));
    }

    #[test]
    fn changes_are_posts_with_json_bodies() {
        let c = call(
            Method::Post,
            "/api/v1/stop",
            r#"{"names":["web"],"wait":false}"#,
        )
        .expect("routes");
        assert_eq!(
            c.body,
            RequestBody::Stop {
                names: vec!["web".into()],
                wait: false
            }
        );
        let c = call(Method::Post, "/api/v1/restart/web", "").expect("routes");
        assert_eq!(
            c.body,
            RequestBody::Restart {
                names: vec!["web".into()],
                wait: true,
                rolling: false
            }
        );
        let c = call(Method::Post, "/api/v1/reload", r#"{"dry_run":true}"#).expect("routes");
        assert_eq!(c.body, RequestBody::Reload { dry_run: true });
        let get = call(Method::Get, "/api/v1/stop/web", "").expect_err("a GET");
        assert_eq!((get.status, get.allow), (405, Some("POST")));
        for body in ["{", "[1]", r#"{"nmaes":["web"]}"#, r#"{"names":"web"}"#] {
            let r = call(Method::Post, "/api/v1/start", body).expect_err(body);
            assert_eq!(r.status, 400, "{body}");
        }
        let both = call(Method::Post, "/api/v1/stop/web", r#"{"names":["db"]}"#);
        assert_eq!(both.map_err(|r| r.status), Err(400));
        let missing = call(Method::Post, "/api/v1/signal", "{}");
        assert_eq!(missing.map_err(|r| r.status), Err(400));
    }

    #[test]
    fn answers_keep_the_socket_shapes() {
        let unknown = Response::error(format!("{UNKNOWN_NAME}: nope"));
        let a = String::from_utf8(answer(&unknown, Shape::Json)).expect("utf-8");
        assert!(a.starts_with("HTTP/1.1 404 "), "{a}");
        assert!(
            a.ends_with(
                "{\"v\":1,\"kind\":\"error\",\"message\":\"no such program or instance: nope\"}\n"
            ),
            "{a}"
        );
        let status = Response::new(ResponseBody::Status {
            instances: vec![],
            daemon: None,
        });
        let a = String::from_utf8(answer(&status, Shape::StatusArray)).expect("utf-8");
        assert!(a.ends_with("\r\n\r\n[]\n"), "{a}");
        let e = String::from_utf8(sse_event(&Response::new(ResponseBody::Output {
            data: "a\nb\n".into(),
        })))
        .expect("utf-8");
        assert_eq!(
            e,
            "event: output\ndata: {\"v\":1,\"kind\":\"output\",\"data\":\"a\\nb\\n\"}\n\n"
        );
        assert_eq!(decode("a%2Cb%3a1"), Some("a,b:1".into()));
        assert_eq!(decode("%ff"), None);
        assert_eq!(decode("%4"), None);
    }
}
