//! The wire types of the control protocol: one JSON object per line in each direction.
//!
//! Every message carries `v`, the protocol version. A daemon answers a request of another
//! version with an `error` naming both versions, so a mismatched client fails with a clear
//! message rather than a parse error. These are the only types that go on the wire, and
//! `sup status --json` prints `InstanceStatus` as it is.

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
    fn status_json_keeps_the_contract_field_order() {
        let s = InstanceStatus {
            name: "web:0".into(),
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
            health: None,
            cpu_percent: None,
            rss_bytes: None,
            log_error: None,
            exit_reason: None,
        };
        let text = serde_json::to_string(&s).expect("serializes");
        assert!(text.starts_with(
            r#"{"name":"web:0","program":"web","state":"running","pid":4312,"restarts":1,"last_exit":0,"uptime_s":192.4,"next_run":null"#
        ));
    }
}
