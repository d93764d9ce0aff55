//! The wire types of the control protocol: one JSON object per line in each direction.
//!
//! Every message carries `v`, the protocol version. A daemon answers a request of another
//! version with an `error` naming both versions, so a mismatched client fails with a clear
//! message rather than a parse error. These are the only types that go on the wire, and
//! `sup status --json` prints `InstanceStatus` as it is.

use std::borrow::Cow;

use serde::{Deserialize, Serialize};

pub const VERSION: u32 = 1;

/// The most a request line may hold; longer ones get an error and the connection is closed.
pub const MAX_REQUEST: usize = 64 * 1024;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Request {
    pub v: u32,
    #[serde(flatten)]
    pub body: RequestBody,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "cmd", rename_all = "snake_case")]
pub enum RequestBody {
    Status {
        #[serde(default)]
        names: Vec<String>,
        /// Answer with `status_rows` (see `StatusRow`) instead of `status`: what the text
        /// table needs, an array per instance. A daemon that predates it ignores the field
        /// and answers `status`, which the client still reads. Left out when false, so other
        /// requests are as they always were.
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        rows: bool,
    },
    Start {
        names: Vec<String>,
        #[serde(default)]
        wait: bool,
    },
    Stop {
        names: Vec<String>,
        #[serde(default)]
        wait: bool,
    },
    Restart {
        names: Vec<String>,
        #[serde(default)]
        wait: bool,
        /// One instance at a time, each waiting until the previous one is running again.
        #[serde(default)]
        rolling: bool,
    },
    Signal {
        signal: String,
        names: Vec<String>,
        /// Whom to signal; absent means each job's `signal_target` (older clients send none).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        target: Option<SignalTarget>,
    },
    Reload {
        #[serde(default)]
        dry_run: bool,
    },
    Pid {
        #[serde(default)]
        name: Option<String>,
    },
    Tail {
        name: String,
        lines: usize,
        #[serde(default)]
        stderr: bool,
        #[serde(default)]
        follow: bool,
    },
    /// The last lines of the daemon's own event log, then (with `follow`) what it appends.
    EventLog {
        lines: usize,
        #[serde(default)]
        follow: bool,
    },
    /// The reload plan for these programs only (`sup add`): answered as `Reload`.
    Add {
        names: Vec<String>,
    },
    /// Stop and drop these programs, gone from the config (`sup remove`): as `Reload`.
    Remove {
        names: Vec<String>,
    },
    /// Truncate the instances' output files (`sup clear`).
    Clear {
        names: Vec<String>,
    },
    Logreopen,
    Shutdown,
    /// Stream a `Status` snapshot, then one `Event` per change of any selected instance,
    /// until the client disconnects (`sup top`).
    Subscribe {
        #[serde(default)]
        names: Vec<String>,
    },
}

/// Who a `signal` request reaches: `"main"` (the leader alone) or `"group"` (its process group).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SignalTarget {
    Main,
    Group,
}

impl Request {
    pub fn new(body: RequestBody) -> Request {
        Request { v: VERSION, body }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Response {
    pub v: u32,
    #[serde(flatten)]
    pub body: ResponseBody,
}

impl Response {
    pub fn new(body: ResponseBody) -> Response {
        Response { v: VERSION, body }
    }

    pub fn error(message: impl Into<String>) -> Response {
        Response::new(ResponseBody::Error {
            message: message.into(),
            hint: None,
        })
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum ResponseBody {
    /// The request failed as a whole (unknown name, bad signal, malformed request …).
    Error {
        message: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        hint: Option<String>,
    },
    Status {
        instances: Vec<InstanceStatus>,
        #[serde(default)]
        daemon: Option<DaemonInfo>,
    },
    /// One change, streamed to subscribers: the instance as it is now and the log line.
    Event {
        /// RFC 3339.
        at: String,
        instance: InstanceStatus,
        message: String,
    },
    /// Per-instance results of start/stop/restart/signal.
    Outcomes {
        outcomes: Vec<Outcome>,
    },
    /// `pid`: the daemon's own when no name was given, else one entry per instance.
    Pids {
        daemon: Option<u32>,
        pids: Vec<(String, Option<u32>)>,
    },
    Reload {
        report: ReloadReport,
    },
    /// Captured output: the requested tail, then (with `follow`) one message per new chunk.
    Output {
        data: String,
    },
    Done {
        message: String,
    },
}

/// One instance, as `sup status --json` prints it. The first eight fields are the public
/// contract (README, "The CLI"); fields may be added, never changed in meaning.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct InstanceStatus {
    pub name: String,
    pub program: String,
    pub state: String,
    pub pid: Option<u32>,
    pub restarts: u32,
    pub last_exit: Option<i32>,
    pub uptime_s: Option<f64>,
    /// RFC 3339, for scheduled jobs.
    pub next_run: Option<String>,
    /// Seconds until the next automatic start attempt while in `backoff`.
    #[serde(default)]
    pub next_restart_in: Option<f64>,
    /// Why the last start failed, or why the instance is fatal.
    #[serde(default)]
    pub reason: Option<String>,
    /// A scheduled job's last runs, oldest first (at most 10); absent for other jobs.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub history: Vec<RunStatus>,
    /// `healthy`, `unhealthy` or `starting`; null without a health check or a process.
    #[serde(default)]
    pub health: Option<String>,
    /// The leader's CPU use, percent of one CPU; null without a process.
    #[serde(default)]
    pub cpu_percent: Option<f64>,
    /// The leader's resident memory in bytes; null without a process.
    #[serde(default)]
    pub rss_bytes: Option<u64>,
    /// A log file of the instance cannot be written (full or unwritable directory): what
    /// failed and how many bytes were dropped. Cleared once writing works again.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub log_error: Option<String>,
    /// How the run `last_exit` describes ended: `code`, `signal`, or `oom` (the kernel's OOM
    /// killer, in the instance's cgroup); null when there is no `last_exit`.
    #[serde(default)]
    pub exit_reason: Option<String>,
}

/// One ended run of a scheduled job.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunStatus {
    /// RFC 3339.
    pub started: String,
    pub duration_s: f64,
    /// `last_exit` of the run; null when it could not be spawned.
    pub exit: Option<i32>,
}

/// Text from the wire that borrows from the answer's bytes when it holds no escape (nearly
/// always), so reading thousands of rows allocates nothing per string.
#[derive(Debug, Clone, PartialEq)]
pub struct Text<'a>(pub Cow<'a, str>);

impl std::ops::Deref for Text<'_> {
    type Target = str;
    fn deref(&self) -> &str {
        &self.0
    }
}

impl<'a> From<&'a str> for Text<'a> {
    fn from(s: &'a str) -> Text<'a> {
        Text(Cow::Borrowed(s))
    }
}

impl Serialize for Text<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.0)
    }
}

impl<'de: 'a, 'a> Deserialize<'de> for Text<'a> {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Text<'a>, D::Error> {
        struct Visit;
        impl<'de> serde::de::Visitor<'de> for Visit {
            type Value = Text<'de>;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a string")
            }
            fn visit_borrowed_str<E>(self, v: &'de str) -> Result<Text<'de>, E> {
                Ok(Text(Cow::Borrowed(v)))
            }
            fn visit_str<E>(self, v: &str) -> Result<Text<'de>, E> {
                Ok(Text(Cow::Owned(v.to_string())))
            }
            fn visit_string<E>(self, v: String) -> Result<Text<'de>, E> {
                Ok(Text(Cow::Owned(v)))
            }
        }
        d.deserialize_str(Visit)
    }
}

/// One instance as the text table reads it, in a `status_rows` answer: an array of these
/// fields in this order, each meaning what the `InstanceStatus` field of that name means
/// (`program` is left out, the table does not show it). Internal to the sup CLI, not a
/// contract: `status --json` and the HTTP API keep `InstanceStatus`. A change of layout is a
/// new request field, so that a client never misreads a row.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct StatusRow<'a> {
    #[serde(borrow)]
    pub name: Text<'a>,
    #[serde(borrow)]
    pub state: Text<'a>,
    pub pid: Option<u32>,
    pub restarts: u32,
    pub last_exit: Option<i32>,
    #[serde(borrow)]
    pub exit_reason: Option<Text<'a>>,
    pub uptime_s: Option<f64>,
    pub next_restart_in: Option<f64>,
    #[serde(borrow)]
    pub next_run: Option<Text<'a>>,
    #[serde(borrow)]
    pub health: Option<Text<'a>>,
    pub cpu_percent: Option<f64>,
    pub rss_bytes: Option<u64>,
    #[serde(borrow)]
    pub reason: Option<Text<'a>>,
    #[serde(borrow)]
    pub log_error: Option<Text<'a>>,
    pub history: Cow<'a, [RunStatus]>,
}

impl Serialize for StatusRow<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeTuple;
        let mut t = s.serialize_tuple(15)?;
        t.serialize_element(&self.name)?;
        t.serialize_element(&self.state)?;
        t.serialize_element(&self.pid)?;
        t.serialize_element(&self.restarts)?;
        t.serialize_element(&self.last_exit)?;
        t.serialize_element(&self.exit_reason)?;
        t.serialize_element(&self.uptime_s)?;
        t.serialize_element(&self.next_restart_in)?;
        t.serialize_element(&self.next_run)?;
        t.serialize_element(&self.health)?;
        t.serialize_element(&self.cpu_percent)?;
        t.serialize_element(&self.rss_bytes)?;
        t.serialize_element(&self.reason)?;
        t.serialize_element(&self.log_error)?;
        t.serialize_element(&self.history)?;
        t.end()
    }
}

impl<'a> StatusRow<'a> {
    /// The row of an instance from a `status` answer (a daemon without `rows`), borrowed.
    pub fn of(s: &'a InstanceStatus) -> StatusRow<'a> {
        let text = |o: &'a Option<String>| o.as_deref().map(Text::from);
        StatusRow {
            name: Text::from(s.name.as_str()),
            state: Text::from(s.state.as_str()),
            pid: s.pid,
            restarts: s.restarts,
            last_exit: s.last_exit,
            exit_reason: text(&s.exit_reason),
            uptime_s: s.uptime_s,
            next_restart_in: s.next_restart_in,
            next_run: text(&s.next_run),
            health: text(&s.health),
            cpu_percent: s.cpu_percent,
            rss_bytes: s.rss_bytes,
            reason: text(&s.reason),
            log_error: text(&s.log_error),
            history: Cow::Borrowed(&s.history),
        }
    }

    /// The full `InstanceStatus`, given what the row leaves out.
    pub fn into_status(self, program: String) -> InstanceStatus {
        let owned = |t: Option<Text>| t.map(|t| t.0.into_owned());
        InstanceStatus {
            name: self.name.0.into_owned(),
            program,
            state: self.state.0.into_owned(),
            pid: self.pid,
            restarts: self.restarts,
            last_exit: self.last_exit,
            uptime_s: self.uptime_s,
            next_run: owned(self.next_run),
            next_restart_in: self.next_restart_in,
            reason: owned(self.reason),
            history: self.history.into_owned(),
            health: owned(self.health),
            cpu_percent: self.cpu_percent,
            rss_bytes: self.rss_bytes,
            log_error: owned(self.log_error),
            exit_reason: owned(self.exit_reason),
        }
    }
}

/// The kind of a `status_rows` answer: `{"v":1,"kind":"status_rows","rows":[ROW,…]}`, one
/// line like every answer. Written by `RowsWriter` (no `ResponseBody` variant: the daemon
/// encodes rows as it makes them, without a list of them in between).
pub const ROWS_KIND: &str = "status_rows";

/// A `status_rows` answer as the client reads it: each row handed over as it is read, its
/// strings borrowed from the line, so no list of rows is ever held.
pub struct StatusRows;

impl StatusRows {
    /// Hand each row of `line` to `each`, when `line` is a `status_rows` answer of this
    /// protocol version; `None` for anything else (an error, a `status` from an older
    /// daemon), which the caller reads as any other answer. An error means a `status_rows`
    /// answer that does not read (some rows may have been handed over).
    pub fn each<'a>(
        line: &'a [u8],
        each: impl FnMut(StatusRow<'a>),
    ) -> Option<Result<(), serde_json::Error>> {
        // The version and the kind come first on the wire (`RowsWriter`): anything else is
        // not worth a full parse.
        let head = format!(r#"{{"v":{VERSION},"kind":"{ROWS_KIND}","#);
        if !line.starts_with(head.as_bytes()) {
            return None;
        }
        let mut de = serde_json::Deserializer::from_slice(line);
        Some(
            serde::Deserializer::deserialize_map(&mut de, RowsAnswer(each)).and_then(|()| de.end()),
        )
    }
}

/// The answer object: `v` and `kind` checked, `rows` read one row at a time.
struct RowsAnswer<F>(F);

impl<'de, F: FnMut(StatusRow<'de>)> serde::de::Visitor<'de> for RowsAnswer<F> {
    type Value = ();

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("a status_rows answer")
    }

    fn visit_map<A: serde::de::MapAccess<'de>>(mut self, mut map: A) -> Result<(), A::Error> {
        use serde::de::Error;
        while let Some(key) = map.next_key::<Text<'de>>()? {
            match &*key {
                "v" if map.next_value::<u32>()? == VERSION => {}
                "kind" if &*map.next_value::<Text<'de>>()? == ROWS_KIND => {}
                "v" | "kind" => return Err(A::Error::custom("not a status_rows answer")),
                "rows" => map.next_value_seed(Rows(&mut self.0))?,
                _ => {
                    map.next_value::<serde::de::IgnoredAny>()?;
                }
            }
        }
        Ok(())
    }
}

/// The `rows` array, each element handed to the function as soon as it is read.
struct Rows<'f, F>(&'f mut F);

impl<'de, F: FnMut(StatusRow<'de>)> serde::de::DeserializeSeed<'de> for Rows<'_, F> {
    type Value = ();

    fn deserialize<D: serde::Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_seq(self)
    }
}

impl<'de, F: FnMut(StatusRow<'de>)> serde::de::Visitor<'de> for Rows<'_, F> {
    type Value = ();

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("an array of status rows")
    }

    fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        while let Some(row) = seq.next_element::<StatusRow<'de>>()? {
            (self.0)(row);
        }
        Ok(())
    }
}

/// Writes a `status_rows` answer line into a buffer, one row at a time.
pub struct RowsWriter<'a> {
    out: &'a mut Vec<u8>,
    first: bool,
}

impl<'a> RowsWriter<'a> {
    pub fn new(out: &'a mut Vec<u8>) -> RowsWriter<'a> {
        out.extend_from_slice(
            format!(r#"{{"v":{VERSION},"kind":"{ROWS_KIND}","rows":["#).as_bytes(),
        );
        RowsWriter { out, first: true }
    }

    pub fn push(&mut self, row: &StatusRow) -> Result<(), serde_json::Error> {
        let before = self.out.len();
        if !self.first {
            self.out.push(b',');
        }
        if let Err(e) = serde_json::to_writer(&mut *self.out, row) {
            self.out.truncate(before);
            return Err(e);
        }
        self.first = false;
        Ok(())
    }

    /// Close the answer; the line's newline is the connection's to add.
    pub fn finish(self) {
        self.out.extend_from_slice(b"]}");
    }
}

/// About the daemon itself, for dashboards.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DaemonInfo {
    pub pid: u32,
    pub version: String,
    pub uptime_s: f64,
    /// The config's `groups:` (group name → programs), for completion and `top`'s filter;
    /// absent from a daemon without groups (or of a version before them).
    #[serde(default, skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub groups: std::collections::BTreeMap<String, Vec<String>>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Outcome {
    pub name: String,
    pub ok: bool,
    /// `started`, `already running`, `stopped`, `not running`, or what went wrong.
    pub message: String,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ReloadReport {
    pub added: Vec<String>,
    pub changed: Vec<String>,
    pub removed: Vec<String>,
    pub unchanged: Vec<String>,
    /// Groups added, changed or removed: `web (added)`. A group change restarts nothing.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub groups: Vec<String>,
    /// Event listeners added or removed: `0: logger --json (added)`. An unchanged one keeps
    /// running.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub listeners: Vec<String>,
    /// Other `daemon:` settings differ from the running ones: they wait for a daemon restart.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub daemon_changed: bool,
    /// Set when the new config was invalid and nothing changed: every error, one per entry.
    #[serde(default)]
    pub errors: Vec<String>,
    #[serde(default)]
    pub dry_run: bool,
    /// How each instance the reload started, restarted or stopped ended up: a job it added
    /// that cannot start is a failed reload for whoever asked.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub outcomes: Vec<Outcome>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_is_one_flat_object() {
        let r = Request::new(RequestBody::Stop {
            names: vec!["web".into()],
            wait: true,
        });
        let text = serde_json::to_string(&r).expect("serializes");
        assert_eq!(text, r#"{"v":1,"cmd":"stop","names":["web"],"wait":true}"#);
        assert_eq!(serde_json::from_str::<Request>(&text).ok(), Some(r));
    }

    #[test]
    fn a_signal_request_without_a_target_means_the_jobs_default() {
        let old = r#"{"v":1,"cmd":"signal","signal":"HUP","names":["web"]}"#;
        let r: Request = serde_json::from_str(old).expect("parses");
        assert_eq!(
            r.body,
            RequestBody::Signal {
                signal: "HUP".into(),
                names: vec!["web".into()],
                target: None
            }
        );
        assert_eq!(serde_json::to_string(&r).expect("serializes"), old);
        let main = r#"{"v":1,"cmd":"signal","signal":"HUP","names":["web"],"target":"main"}"#;
        let r: Request = serde_json::from_str(main).expect("parses");
        assert!(matches!(
            r.body,
            RequestBody::Signal {
                target: Some(SignalTarget::Main),
                ..
            }
        ));
        assert_eq!(serde_json::to_string(&r).expect("serializes"), main);
        let bad = r#"{"v":1,"cmd":"signal","signal":"HUP","names":["web"],"target":"all"}"#;
        assert!(serde_json::from_str::<Request>(bad).is_err());
    }

    #[test]
    fn a_status_request_asks_for_rows_only_when_told() {
        let plain = Request::new(RequestBody::Status {
            names: vec![],
            rows: false,
        });
        let text = serde_json::to_string(&plain).expect("serializes");
        assert_eq!(text, r#"{"v":1,"cmd":"status","names":[]}"#);
        let rows = Request::new(RequestBody::Status {
            names: vec!["web".into()],
            rows: true,
        });
        let text = serde_json::to_string(&rows).expect("serializes");
        assert_eq!(
            text,
            r#"{"v":1,"cmd":"status","names":["web"],"rows":true}"#
        );
        assert_eq!(serde_json::from_str::<Request>(&text).ok(), Some(rows));
        // What every client before rows sends.
        let old: Request = serde_json::from_str(r#"{"v":1,"cmd":"status"}"#).expect("parses");
        assert_eq!(
            old.body,
            RequestBody::Status {
                names: vec![],
                rows: false
            }
        );
    }

    fn instance(name: &str) -> InstanceStatus {
        InstanceStatus {
            name: name.into(),
            program: "web".into(),
            state: "running".into(),
            pid: Some(4312),
            restarts: 1,
            last_exit: Some(0),
            uptime_s: Some(192.4),
            next_run: None,
            next_restart_in: None,
            reason: None,
            history: Vec::new(),
            health: Some("healthy".into()),
            cpu_percent: Some(0.1),
            rss_bytes: Some(1 << 20),
            log_error: None,
            exit_reason: Some("code".into()),
        }
    }

    fn rows_line(rows: &[StatusRow]) -> Vec<u8> {
        let mut line = Vec::new();
        let mut w = RowsWriter::new(&mut line);
        for r in rows {
            w.push(r).expect("encodes");
        }
        w.finish();
        line
    }

    #[test]
    fn status_rows_are_arrays_read_back_as_they_were_written() {
        let web = instance("web:0");
        let mut odd = instance("web:1");
        odd.reason = Some("said \"no\" \u{1b}[2J — twice".into());
        odd.next_run = Some("2026-05-01T12:00:00+00:00".into());
        odd.history = vec![RunStatus {
            started: "2026-05-01T11:00:00+00:00".into(),
            duration_s: 1.25,
            exit: Some(3),
        }];
        let line = rows_line(&[StatusRow::of(&web), StatusRow::of(&odd)]);
        let text = std::str::from_utf8(&line).expect("utf-8");
        assert!(text.starts_with(concat!(
            r#"{"v":1,"kind":"status_rows","rows":[["web:0","running",4312,1,0,"code",192.4,"#,
            r#"null,null,"healthy",0.1,1048576,null,null,[]],["web:1","#
        )));
        assert!(text.ends_with("]]}") && !text.contains('\n'), "{text}");
        let mut got = Vec::new();
        let read = StatusRows::each(&line, |r| got.push(r));
        assert!(matches!(read, Some(Ok(()))), "{read:?}");
        assert_eq!(got, [StatusRow::of(&web), StatusRow::of(&odd)]);
        // Strings without escapes are read in place; an escaped one is a copy.
        assert!(matches!(got[0].name.0, Cow::Borrowed(_)));
        assert!(matches!(
            got[1].reason.as_ref().map(|t| &t.0),
            Some(Cow::Owned(_))
        ));
        assert_eq!(
            got.pop().expect("two").into_status("web".into()),
            odd,
            "a row and its program are the whole instance"
        );
    }

    #[test]
    fn other_answers_are_not_rows() {
        let status = serde_json::to_vec(&Response::new(ResponseBody::Status {
            instances: vec![instance("a")],
            daemon: None,
        }))
        .expect("encodes");
        let error = serde_json::to_vec(&Response::error("unknown name: x")).expect("encodes");
        for line in [&status, &error] {
            assert!(StatusRows::each(line, |_| panic!("no rows")).is_none());
        }
        let other_version = br#"{"v":2,"kind":"status_rows","rows":[]}"#;
        assert!(StatusRows::each(other_version, |_| {}).is_none());
        let cut = br#"{"v":1,"kind":"status_rows","rows":[["a","running",1"#;
        assert!(matches!(StatusRows::each(cut, |_| {}), Some(Err(_))));
        let empty = br#"{"v":1,"kind":"status_rows","rows":[]}"#;
        assert!(matches!(StatusRows::each(empty, |_| {}), Some(Ok(()))));
    }

    #[test]
    fn status_json_keeps_the_contract_field_order() {
        let s = InstanceStatus {
            health: None,
            cpu_percent: None,
            rss_bytes: None,
            exit_reason: None,
            ..instance("web:0")
        };
        let text = serde_json::to_string(&s).expect("serializes");
        assert!(text.starts_with(
            r#"{"name":"web:0","program":"web","state":"running","pid":4312,"restarts":1,"last_exit":0,"uptime_s":192.4,"next_run":null"#
        ));
    }
}
