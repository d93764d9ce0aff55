//! The readiness, health and limits keys of a job: `ready`, `ready_timeout`, `watchdog`,
//! `healthcheck`, `depends_on`, `limits`, `max_memory`, `max_cpu` and `for`, and the keys of
//! the `healthcheck:` and `limits:` maps, each declared once as a `keys::Key`.
//!
//! `resolve::job` reads them with the other job keys; the rules that span keys (`watchdog`
//! needs `ready: notify`, and so on) are their checks, and `finish` makes the `HealthSpec`.
//! Whether the programs named in `depends_on` exist, and whether they form a cycle, needs
//! every program: `check_dependencies` does that once the whole config is loaded.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Duration;

use super::keys::{names, read_map, IfAbsent, Job, Key, Map, Value};
use super::logkeys::parse_size;
use super::resolve::{entries, Sink};
use super::spec::{
    AutoRestart, Condition, Dependency, HealthCheck, HealthSpec, Limits, OnUnhealthy, Origin,
    Probe, ProgramSpec, Ready, Watch,
};
use super::values::{self, Bad, Read};
use super::yaml::{Kind, Node};
use crate::config::ConfigError;

/// The readiness, health, dependency and limits keys of a job (part of `keys::JOB`).
pub const KEYS: &[Key<Job>] = &[
    Key {
        name: "ready",
        read: |j, v, sink| {
            if let Some(r) = v.keep(ready(v.node), sink) {
                j.health.spec.ready = r;
            }
        },
        default: IfAbsent::Value("`starttime`", |j| j.health.spec.ready = Ready::Starttime),
        doc: "`starttime`, `notify`, `fd:N` (N ≥ 3) or `health`: when `starting` becomes \
              `running`",
        check: Some(|j, _| {
            let h = &j.health.spec;
            (h.ready == Ready::Health && h.healthcheck.is_none()).then(|| {
                Bad::new("ready: health needs a healthcheck").with_hint(
                    "add `healthcheck: {http: http://127.0.0.1:8080/health}` (or cmd/tcp)",
                )
            })
        }),
    },
    Key {
        name: "ready_timeout",
        read: |j, v, sink| {
            if let Some(d) = v.keep(positive(v.node), sink) {
                j.health.spec.ready_timeout = d;
            }
        },
        default: IfAbsent::Value("`90s`", |j| {
            j.health.spec.ready_timeout = Duration::from_secs(90)
        }),
        doc: "duration: not ready this long after the spawn is a failed start (not with \
              `starttime`)",
        check: Some(|j, _| {
            (j.health.spec.ready == Ready::Starttime).then(|| {
                Bad::new("only applies when ready is notify, fd:N or health")
                    .with_hint("with the default ready: starttime, `starttime` decides")
            })
        }),
    },
    Key {
        name: "watchdog",
        read: |j, v, sink| j.health.spec.watchdog = v.keep(positive(v.node), sink),
        default: IfAbsent::Unset("none"),
        doc: "duration, with `ready: notify`: no `WATCHDOG=1` for this long while running \
              restarts it",
        check: Some(|j, _| {
            let h = &j.health.spec;
            (h.watchdog.is_some() && h.ready != Ready::Notify).then(|| {
                Bad::new("only applies with ready: notify (the pings come on $NOTIFY_SOCKET)")
                    .with_hint("add `ready: notify`, or remove it")
            })
        }),
    },
    Key {
        name: "healthcheck",
        read: |j, v, sink| j.health.spec.healthcheck = healthcheck(v, sink),
        default: IfAbsent::Unset("none"),
        doc: "a map of the `healthcheck:` keys below: one probe and how often it runs",
        check: None,
    },
    Key {
        name: "depends_on",
        read: |j, v, sink| {
            if let Some(d) = v.keep(depends_on(v.node), sink) {
                j.health.spec.depends_on = d;
            }
        },
        default: IfAbsent::Unset("none"),
        doc: "a program name or a list of them (each `started`), or a map of program name to \
              `started`, `healthy` or `completed`: what it must be before this job is spawned",
        check: None,
    },
    Key {
        name: "limits",
        read: |j, v, sink| {
            if let Some(l) = limits(v, sink) {
                j.health.spec.limits = l;
            }
        },
        default: IfAbsent::Unset("inherited"),
        doc: "a map of the `limits:` keys below",
        check: None,
    },
    Key {
        name: "max_memory",
        read: |j, v, sink| j.health.max_memory = v.keep(size(v.node), sink),
        default: IfAbsent::Unset("none"),
        doc: "a size (`500M`): restart when the instance's resident memory (its cgroup's, \
              else the leader's RSS) is above it for `for`",
        check: None,
    },
    Key {
        name: "max_cpu",
        read: |j, v, sink| j.health.max_cpu = v.keep(percent(v.node), sink),
        default: IfAbsent::Unset("none"),
        doc: "a percentage of one CPU (`90%`): restart when the instance's use (its \
              cgroup's, else the leader's) is above it for `for`",
        check: None,
    },
    Key {
        name: "for",
        read: |j, v, sink| {
            if let Some(d) = v.keep(positive(v.node), sink) {
                j.health.sustained = d;
            }
        },
        default: IfAbsent::Value("`60s`", |j| j.health.sustained = Duration::from_secs(60)),
        doc: "duration a `max_memory`/`max_cpu` rule must hold before the restart",
        check: Some(|j, _| {
            let has_rule = j.health.max_memory.is_some() || j.health.max_cpu.is_some();
            (!has_rule).then(|| {
                Bad::new("only applies with max_memory or max_cpu")
                    .with_hint("add `max_memory: 500M` or `max_cpu: 90%`, or remove it")
            })
        }),
    },
];

/// The keys of `healthcheck:`: one probe, and how often it runs.
pub const HEALTHCHECK_KEYS: &[&[Key<Check>]] = &[PROBE_KEYS, CHECK_KEYS];

/// One of these, and only one, is the probe.
const PROBE_KEYS: &[Key<Check>] = &[
    Key {
        name: "cmd",
        read: |c, v, sink| {
            if let Some(cmd) = v.keep(values::cmd(v.node), sink) {
                c.probes.push(((v.key.line, v.key.col), Probe::Cmd(cmd)));
            }
        },
        default: IfAbsent::Unset(PROBE_DEFAULT),
        doc: "a command, run like the job's `cmd` (its own process group, the job's env, \
              workingdir and user): exit 0 passes",
        check: None,
    },
    Key {
        name: "http",
        read: |c, v, sink| {
            if let Some(h) = v.keep(http(v.node), sink) {
                c.probes.push(((v.key.line, v.key.col), h));
            }
        },
        default: IfAbsent::Unset(PROBE_DEFAULT),
        doc: "`http://IP:PORT/path` (or `localhost`): a `GET` answered 2xx or 3xx passes",
        check: None,
    },
    Key {
        name: "tcp",
        read: |c, v, sink| {
            if let Some(a) = v.keep(tcp(v.node), sink) {
                c.probes.push(((v.key.line, v.key.col), Probe::Tcp(a)));
            }
        },
        default: IfAbsent::Unset(PROBE_DEFAULT),
        doc: "`IP:PORT` (or `localhost:PORT`): a connect that succeeds passes",
        check: None,
    },
];

/// The README says above the table that one of them is required.
const PROBE_DEFAULT: &str = "none";

const CHECK_KEYS: &[Key<Check>] = &[
    Key {
        name: "interval",
        read: |c, v, sink| {
            if let Some(d) = v.keep(positive(v.node), sink) {
                c.interval = d;
            }
        },
        default: IfAbsent::Value("`10s`", |c| c.interval = Duration::from_secs(10)),
        doc: "duration between checks",
        check: None,
    },
    Key {
        name: "timeout",
        read: |c, v, sink| {
            if let Some(d) = v.keep(positive(v.node), sink) {
                c.timeout = d;
            }
        },
        default: IfAbsent::Value("`5s`", |c| c.timeout = Duration::from_secs(5)),
        doc: "duration: a check still going after it fails",
        check: None,
    },
    Key {
        name: "retries",
        read: |c, v, sink| {
            if let Some(n) = v.keep(values::count(v.node, 1), sink) {
                c.retries = n;
            }
        },
        default: IfAbsent::Value("`3`", |c| c.retries = 3),
        doc: "integer ≥ 1: failures in a row that make the instance `unhealthy`",
        check: None,
    },
    Key {
        name: "start_period",
        read: |c, v, sink| {
            if let Some(d) = v.keep(values::duration(v.node), sink) {
                c.start_period = d;
            }
        },
        default: IfAbsent::Value("`0s`", |c| c.start_period = Duration::ZERO),
        doc: "duration after the spawn in which failures before the first pass do not count",
        check: None,
    },
    Key {
        name: "on_unhealthy",
        read: |c, v, sink| {
            if let Some(o) = v.keep(on_unhealthy_word(v.node), sink) {
                c.on_unhealthy = o;
            }
        },
        default: IfAbsent::Value("`restart`", |c| c.on_unhealthy = OnUnhealthy::Restart),
        doc: "`restart`, `notify` or `none`: what `unhealthy` leads to",
        check: None,
    },
];

/// The keys of `limits:`, set in the child before exec.
pub const LIMIT_KEYS: &[&[Key<Limits>]] = &[&[
    Key {
        name: "nofile",
        read: |l, v, sink| l.nofile = v.keep(rlimit(v.node, false), sink),
        default: IfAbsent::Unset("inherited"),
        doc: "a number (RLIMIT_NOFILE), or `unlimited`",
        check: None,
    },
    Key {
        name: "nproc",
        read: |l, v, sink| l.nproc = v.keep(rlimit(v.node, false), sink),
        default: IfAbsent::Unset("inherited"),
        doc: "a number (RLIMIT_NPROC), or `unlimited`",
        check: None,
    },
    Key {
        name: "core",
        read: |l, v, sink| l.core = v.keep(rlimit(v.node, true), sink),
        default: IfAbsent::Unset("inherited"),
        doc: "a size such as `1G` (RLIMIT_CORE), or `unlimited`",
        check: None,
    },
    Key {
        name: "memory",
        read: |l, v, sink| l.memory = v.keep(rlimit(v.node, true), sink),
        default: IfAbsent::Unset("inherited"),
        doc: "a size such as `1G` (RLIMIT_AS), or `unlimited`",
        check: None,
    },
    Key {
        name: "cpu",
        read: |l, v, sink| {
            l.cpu = match v.node.text().map(str::trim) {
                Some("unlimited" | "infinity") => Some(u64::MAX),
                _ => v.keep(positive(v.node), sink).map(|d| d.as_secs().max(1)),
            }
        },
        default: IfAbsent::Unset("inherited"),
        doc: "a duration (RLIMIT_CPU, in whole seconds), or `unlimited`",
        check: None,
    },
]];

/// What the job keys of this file gathered; `finish` turns it into a `HealthSpec`.
#[derive(Debug, Default, PartialEq)]
pub struct Partial {
    spec: HealthSpec,
    max_memory: Option<u64>,
    max_cpu: Option<u32>,
    /// `for`.
    sustained: Duration,
}

/// A `healthcheck:` map as it is read.
#[derive(Debug, Default, PartialEq)]
pub struct Check {
    /// Each probe read, with where its key was written.
    probes: Vec<((usize, usize), Probe)>,
    interval: Duration,
    timeout: Duration,
    retries: u32,
    start_period: Duration,
    on_unhealthy: OnUnhealthy,
}

/// The finished spec, once the job's keys were read and checked.
pub fn finish(into: Partial) -> HealthSpec {
    let mut spec = into.spec;
    if into.max_memory.is_some() || into.max_cpu.is_some() {
        spec.watch = Some(Watch {
            max_memory: into.max_memory,
            max_cpu: into.max_cpu,
            sustained: into.sustained,
        });
    }
    spec
}

/// `a, b or c`.
fn or_list(names: &[&str]) -> String {
    match names.split_last() {
        Some((last, [])) => last.to_string(),
        Some((last, rest)) => format!("{} or {last}", rest.join(", ")),
        None => String::new(),
    }
}

/// `starttime`, `notify`, `fd:N` (N ≥ 3) or `health`.
pub fn ready(node: &Node) -> Read<Ready> {
    let what = "starttime, notify, health or fd:N (N at least 3)";
    let text = node.text().ok_or_else(|| expected(what, node))?.trim();
    match text.to_ascii_lowercase().as_str() {
        "starttime" => return Ok(Ready::Starttime),
        "notify" => return Ok(Ready::Notify),
        "health" | "healthcheck" => return Ok(Ready::Health),
        _ => {}
    }
    match text.strip_prefix("fd:").map(|n| n.trim().parse::<i32>()) {
        Some(Ok(n)) if (3..=1023).contains(&n) => Ok(Ready::Fd(n)),
        Some(Ok(n)) => Err(Bad::new(format!(
            "fd:N needs N from 3 to 1023 (0, 1 and 2 are stdin, stdout and stderr), found {n}"
        ))),
        _ => Err(expected(what, node)),
    }
}

fn expected(what: &str, node: &Node) -> Bad {
    Bad::new(format!("expected {what}, found {}", node.describe()))
}

/// A duration longer than zero.
fn positive(node: &Node) -> Read<Duration> {
    let d = values::duration(node)?;
    if d.is_zero() {
        return Err(Bad::new("must be longer than 0s"));
    }
    Ok(d)
}

/// A program name or a list of them (each `started`), or a map of program name to
/// `started`, `healthy` or `completed`; sorted by program, one entry per program.
pub fn depends_on(node: &Node) -> Read<Vec<Dependency>> {
    let what = "a program name, a list of program names, or a map of program name to \
                started, healthy or completed";
    let name = |i: &Node| match i.text() {
        Some(t) if !t.trim().is_empty() => Ok(t.trim().to_string()),
        _ => Err(Bad {
            at: Some((i.line, i.col)),
            ..expected("a program name", i)
        }),
    };
    let mut deps = match &node.kind {
        Kind::Seq(items) => items
            .iter()
            .map(|i| name(i).map(|n| Dependency::started(&n)))
            .collect::<Read<Vec<_>>>()?,
        Kind::Map(entries) => entries
            .iter()
            .map(|(k, v)| {
                let program = name(k)?;
                let condition = condition(v).map_err(|b| Bad {
                    at: Some((v.line, v.col)),
                    ..b
                })?;
                Ok(Dependency { program, condition })
            })
            .collect::<Read<Vec<_>>>()?,
        Kind::Scalar(s) if s.is_null() => Vec::new(),
        Kind::Scalar(s) if !s.text.trim().is_empty() => vec![Dependency::started(s.text.trim())],
        _ => return Err(expected(what, node)),
    };
    deps.sort();
    deps.dedup_by(|a, b| a.program == b.program);
    Ok(deps)
}

fn condition(node: &Node) -> Read<Condition> {
    let what = "started, healthy or completed";
    match node
        .text()
        .map(|t| t.trim().to_ascii_lowercase())
        .as_deref()
    {
        Some("started") => Ok(Condition::Started),
        Some("healthy") => Ok(Condition::Healthy),
        Some("completed") => Ok(Condition::Completed),
        _ => Err(expected(what, node)),
    }
}

/// A size in bytes: `500M`, `2G`, `512k`, `1048576`; K/M/G/T are powers of 1024, with an
/// optional `B` or `iB`.
pub fn size(node: &Node) -> Read<u64> {
    let what = "a size such as 500M, 2G, 512K or a number of bytes";
    let text = node.text().ok_or_else(|| expected(what, node))?;
    parse_size(text)
        .filter(|&n| n > 0)
        .ok_or_else(|| expected(what, node))
}

/// `90%`, `90` or `250%` (more than one CPU).
pub fn percent(node: &Node) -> Read<u32> {
    let what = "a percentage of one CPU such as 90% (200% is two CPUs)";
    let text = node.text().ok_or_else(|| expected(what, node))?.trim();
    let digits = text.strip_suffix('%').unwrap_or(text).trim();
    match digits.parse::<u32>() {
        Ok(n) if n > 0 => Ok(n),
        _ => Err(expected(what, node)),
    }
}

/// An rlimit value: a count, or `unlimited`.
fn rlimit(node: &Node, sized: bool) -> Read<u64> {
    let what = if sized {
        "a size such as 1G, or unlimited"
    } else {
        "a number, or unlimited"
    };
    let text = node.text().ok_or_else(|| expected(what, node))?.trim();
    if matches!(text, "unlimited" | "infinity") {
        return Ok(u64::MAX);
    }
    if sized {
        if text == "0" {
            return Ok(0);
        }
        return parse_size(text).ok_or_else(|| expected(what, node));
    }
    text.parse::<u64>().map_err(|_| expected(what, node))
}

fn limits(v: &Value, sink: &mut Sink) -> Option<Limits> {
    let before = sink.len();
    let what = format!("a map of {}", names(LIMIT_KEYS).join(", "));
    let found = entries(v.node, &what, v.file, v.path, sink)?;
    let mut l = Limits::default();
    let map = Map {
        file: v.file,
        prefix: v.path,
        at: (v.node.line, v.node.col),
        base_dir: v.base_dir,
    };
    read_map(found, LIMIT_KEYS, &mut l, &map, sink);
    (sink.len() == before).then_some(l)
}

fn healthcheck(v: &Value, sink: &mut Sink) -> Option<HealthCheck> {
    let before = sink.len();
    let probe_names = names(&[PROBE_KEYS]);
    let what = format!("a map with {}", or_list(&probe_names));
    let found = entries(v.node, &what, v.file, v.path, sink)?;
    let mut c = Check::default();
    let map = Map {
        file: v.file,
        prefix: v.path,
        at: (v.node.line, v.node.col),
        base_dir: v.base_dir,
    };
    let written = read_map(found, HEALTHCHECK_KEYS, &mut c, &map, sink);
    let given = probe_names.iter().filter(|n| written.has(n)).count();
    if given == 0 {
        let bad = Bad::new(format!(
            "missing the probe: one of {}",
            or_list(&probe_names)
        ))
        .with_hint("e.g. `http: http://127.0.0.1:8080/health`");
        sink.push(v.file, (v.node.line, v.node.col), v.path, bad);
    } else if given > 1 {
        if let Some((at, _)) = c.probes.get(1) {
            let bad = Bad::new(format!(
                "a healthcheck has one probe: {}, not several",
                or_list(&probe_names)
            ));
            sink.push(v.file, *at, v.path, bad);
        }
    }
    if sink.len() > before {
        return None;
    }
    let (_, probe) = c.probes.into_iter().next()?;
    Some(HealthCheck {
        probe,
        interval: c.interval,
        timeout: c.timeout,
        retries: c.retries,
        start_period: c.start_period,
        on_unhealthy: c.on_unhealthy,
    })
}

fn on_unhealthy_word(node: &Node) -> Read<OnUnhealthy> {
    let what = "restart, notify or none";
    match node
        .text()
        .map(|t| t.trim().to_ascii_lowercase())
        .as_deref()
    {
        Some("restart") => Ok(OnUnhealthy::Restart),
        Some("notify") => Ok(OnUnhealthy::Notify),
        Some("none") => Ok(OnUnhealthy::None),
        _ => Err(expected(what, node)),
    }
}

/// `HOST:PORT` with HOST an IP address (IPv6 in brackets) or `localhost`.
fn host_port(text: &str, default_port: Option<u16>) -> Option<(SocketAddr, String)> {
    let (host, port) = if let Some(rest) = text.strip_prefix('[') {
        let (h, after) = rest.split_once(']')?;
        (h, after.strip_prefix(':'))
    } else {
        match text.rsplit_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (text, None),
        }
    };
    let port = match port {
        Some(p) => p.parse::<u16>().ok()?,
        None => default_port?,
    };
    let ip: IpAddr = if host.eq_ignore_ascii_case("localhost") {
        IpAddr::V4(Ipv4Addr::LOCALHOST)
    } else {
        host.parse().ok()?
    };
    Some((SocketAddr::new(ip, port), host.to_string()))
}

fn http(node: &Node) -> Read<Probe> {
    let what = "an URL such as http://127.0.0.1:8080/health (an IP address or localhost)";
    let text = node.text().ok_or_else(|| expected(what, node))?.trim();
    let Some(rest) = text.strip_prefix("http://") else {
        let hint = if text.starts_with("https://") {
            "https is not supported: probe the plain HTTP port"
        } else {
            "start it with http://"
        };
        return Err(expected(what, node).with_hint(hint));
    };
    let (authority, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    match host_port(authority, Some(80)) {
        Some((addr, host)) => Ok(Probe::Http {
            addr,
            host: if authority.contains(':') && !authority.ends_with(']') {
                authority.to_string()
            } else {
                host
            },
            path: path.to_string(),
        }),
        None => Err(expected(what, node)
            .with_hint("names other than localhost are not resolved: no DNS in the loop")),
    }
}

fn tcp(node: &Node) -> Read<SocketAddr> {
    let what = "HOST:PORT such as 127.0.0.1:5432 (an IP address or localhost)";
    let text = node.text().ok_or_else(|| expected(what, node))?.trim();
    host_port(text, None)
        .map(|(a, _)| a)
        .ok_or_else(|| expected(what, node))
}

/// Where a job wrote `depends_on` and each name in it, so that an unknown name or a cycle is
/// reported on the line to edit rather than on the program's first line.
#[derive(Debug, Default)]
pub struct DepPlaces {
    key: (usize, usize),
    names: BTreeMap<String, (usize, usize)>,
}

impl DepPlaces {
    pub fn of(job: &Node) -> Option<DepPlaces> {
        let Kind::Map(entries) = &job.kind else {
            return None;
        };
        let (k, v) = entries
            .iter()
            .find(|(k, _)| k.text() == Some("depends_on"))?;
        let keys: Vec<&Node>;
        let items = match &v.kind {
            Kind::Seq(items) => &items[..],
            Kind::Map(entries) => {
                keys = entries.iter().map(|(k, _)| k).collect();
                return Some(DepPlaces {
                    key: (k.line, k.col),
                    names: keys
                        .iter()
                        .filter_map(|k| Some((k.text()?.trim().to_string(), (k.line, k.col))))
                        .collect(),
                });
            }
            _ => std::slice::from_ref(v),
        };
        let mut names = BTreeMap::new();
        for item in items {
            if let Some(t) = item.text() {
                names
                    .entry(t.trim().to_string())
                    .or_insert((item.line, item.col));
            }
        }
        Some(DepPlaces {
            key: (k.line, k.col),
            names,
        })
    }
}

/// Every `depends_on` names a program, and no program depends on itself through others.
pub fn check_dependencies(
    programs: &BTreeMap<String, ProgramSpec>,
    origins: &BTreeMap<String, Origin>,
    places: &BTreeMap<String, DepPlaces>,
    sink: &mut Sink,
) {
    // The entry naming `dep` when known, else the `depends_on` key, else the program.
    let place = |name: &str, dep: Option<&str>| {
        let file = origins.get(name).map_or(String::new(), |o| o.file.clone());
        let written = places
            .get(name)
            .map(|p| dep.and_then(|d| p.names.get(d).copied()).unwrap_or(p.key));
        match (written, origins.get(name)) {
            (Some((line, col)), _) => (file, line, col),
            (None, Some(o)) => (file, o.line, o.col),
            (None, None) => (file, 0, 0),
        }
    };
    let push = |sink: &mut Sink, at: (String, usize, usize), name: &str, message, hint| {
        let shown = if at.1 == 0 {
            at.0.clone()
        } else {
            format!("{}:{}:{}", at.0, at.1, at.2)
        };
        sink.push_error(
            at,
            ConfigError {
                place: shown,
                key: format!("programs.{name}.depends_on"),
                message,
                hint,
            },
        );
    };
    for (name, spec) in programs {
        for dep in &spec.health.depends_on {
            let Some(target) = programs.get(&dep.program) else {
                let dep = &dep.program;
                let hint = values::suggest(dep, programs.keys().map(String::as_str))
                    .map(|s| format!("did you mean {s}?"));
                let at = place(name, Some(dep));
                push(sink, at, name, format!("unknown program {dep:?}"), hint);
                continue;
            };
            // A one-shot job that exits within `starttime` has failed to start, so it would
            // never complete: likely a forgotten `starttime: 0s`.
            if dep.condition == Condition::Completed
                && target.schedule.is_none()
                && !target.starttime.is_zero()
            {
                let (file, line, col) = place(name, Some(&dep.program));
                let bad = Bad::new(format!(
                    "{}: completed: an exit within its starttime ({}) is a failed start, \
                     not a completion",
                    dep.program,
                    crate::core::event::human(target.starttime)
                ))
                .with_hint(format!(
                    "give {} `starttime: 0s` if it is a one-shot job",
                    dep.program
                ));
                sink.warn(
                    &file,
                    (line, col),
                    &format!("programs.{name}.depends_on"),
                    bad,
                );
            }
            // `completed` of a job that is always restarted can never be met.
            if dep.condition == Condition::Completed
                && target.autorestart == AutoRestart::Always
                && target.schedule.is_none()
            {
                let at = place(name, Some(&dep.program));
                push(
                    sink,
                    at,
                    name,
                    format!(
                        "{}: completed can never be met: it has autorestart: always",
                        dep.program
                    ),
                    Some(format!(
                        "give {} `autorestart: unexpected` (or `never`), or depend on it as \
                         started",
                        dep.program
                    )),
                );
            }
        }
    }
    if let Some(cycle) = find_cycle(programs) {
        let first = cycle[0].clone();
        let at = place(&first, cycle.get(1).map(String::as_str));
        push(
            sink,
            at,
            &first,
            format!("dependency cycle: {}", cycle.join(" → ")),
            Some("remove one of these depends_on entries".into()),
        );
    }
}

/// The first cycle found, as a path that ends where it starts (`a → b → a`).
fn find_cycle(programs: &BTreeMap<String, ProgramSpec>) -> Option<Vec<String>> {
    #[derive(Clone, Copy, PartialEq)]
    enum Mark {
        New,
        Open,
        Done,
    }
    let mut marks: BTreeMap<&str, Mark> =
        programs.keys().map(|k| (k.as_str(), Mark::New)).collect();
    // Depth-first, iteratively: each frame is a program and the index of its next dependency.
    for start in programs.keys() {
        if marks.get(start.as_str()) != Some(&Mark::New) {
            continue;
        }
        let mut stack: Vec<(&str, usize)> = vec![(start, 0)];
        marks.insert(start, Mark::Open);
        while let Some(&mut (node, ref mut next)) = stack.last_mut() {
            let deps = programs
                .get(node)
                .map_or(&[][..], |s| &s.health.depends_on[..]);
            if let Some(dep) = deps.get(*next).map(|d| &d.program) {
                *next += 1;
                match marks.get(dep.as_str()) {
                    Some(Mark::New) => {
                        marks.insert(dep, Mark::Open);
                        stack.push((dep, 0));
                    }
                    Some(Mark::Open) => {
                        let from = stack.iter().position(|(n, _)| *n == dep)?;
                        let mut cycle: Vec<String> =
                            stack[from..].iter().map(|(n, _)| n.to_string()).collect();
                        cycle.push(dep.clone());
                        return Some(cycle);
                    }
                    Some(Mark::Done) | None => {}
                }
            } else {
                marks.insert(node, Mark::Done);
                stack.pop();
            }
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::yaml;

    fn node(src: &str) -> Node {
        let (root, errors) = yaml::parse(src);
        assert!(errors.is_empty(), "{errors:?}");
        root.expect("a node")
    }

    #[test]
    fn healthcheck_defaults_are_what_the_readme_says() {
        let n = crate::config::keys::tests::value_defaults_read_as_written(
            HEALTHCHECK_KEYS,
            Check::default,
        );
        assert_eq!(n, 5);
    }

    #[test]
    fn ready_words_and_descriptors() {
        assert_eq!(ready(&node("starttime")), Ok(Ready::Starttime));
        assert_eq!(ready(&node("notify")), Ok(Ready::Notify));
        assert_eq!(ready(&node("health")), Ok(Ready::Health));
        assert_eq!(ready(&node("fd:3")), Ok(Ready::Fd(3)));
        assert!(ready(&node("fd:2")).is_err());
        assert!(ready(&node("soon")).is_err());
    }

    #[test]
    fn sizes_and_percents() {
        assert_eq!(parse_size("500M"), Some(500 << 20));
        assert_eq!(parse_size("2GiB"), Some(2 << 30));
        assert_eq!(parse_size("512kb"), Some(512 << 10));
        assert_eq!(parse_size("1048576"), Some(1 << 20));
        assert_eq!(parse_size("lots"), None);
        assert_eq!(parse_size("-1M"), None);
        assert_eq!(parse_size("1.5G"), Some(3 << 29));
        assert_eq!(parse_size(" 50MB "), Some(50 << 20));
        // Found by fuzzing: just past u64::MAX, then a digit that rounds up.
        assert_eq!(parse_size("184467440737095516159"), None);
        assert_eq!(parse_size("18446744073709551615"), None);
        assert_eq!(
            parse_size("1000000000000000000"),
            Some(1_000_000_000_000_000_000)
        );
        assert_eq!(parse_size("99999999999999999999999999K"), None);
        assert_eq!(
            parse_size("18446744073709551615.99999999999999999999"),
            None
        );
        assert_eq!(
            parse_size("1844674407370955161.59999999999999999999999K"),
            None
        );
        assert_eq!(
            parse_size("0.99999999999999999999999999999999999999999"),
            None
        );
        assert_eq!(percent(&node("90%")), Ok(90));
        assert_eq!(percent(&node("250")), Ok(250));
        assert!(percent(&node("0%")).is_err());
    }

    #[test]
    fn http_and_tcp_targets() {
        let p = http(&node("http://127.0.0.1:8080/health")).expect("valid");
        assert_eq!(
            p,
            Probe::Http {
                addr: "127.0.0.1:8080".parse().expect("addr"),
                host: "127.0.0.1:8080".into(),
                path: "/health".into()
            }
        );
        let p = http(&node("http://localhost")).expect("valid");
        assert!(matches!(p, Probe::Http { addr, ref path, .. }
            if addr.port() == 80 && path == "/"));
        assert!(http(&node("https://127.0.0.1/")).is_err());
        assert!(http(&node("http://example.com/")).is_err());
        assert_eq!(
            tcp(&node("'[::1]:5432'")),
            Ok("[::1]:5432".parse().expect("addr"))
        );
        assert!(tcp(&node("127.0.0.1")).is_err());
    }

    #[test]
    fn depends_on_reads_one_or_many() {
        assert_eq!(depends_on(&node("db")), Ok(vec![Dependency::started("db")]));
        assert_eq!(
            depends_on(&node("[cache, db, cache]")),
            Ok(vec![
                Dependency::started("cache"),
                Dependency::started("db")
            ])
        );
        assert!(depends_on(&node("{a: 1}")).is_err());
    }

    #[test]
    fn depends_on_as_a_map_names_the_condition() {
        let d = |program: &str, condition| Dependency {
            program: program.to_string(),
            condition,
        };
        assert_eq!(
            depends_on(&node("{migrate: completed, db: healthy, cache: started}")),
            Ok(vec![
                d("cache", Condition::Started),
                d("db", Condition::Healthy),
                d("migrate", Condition::Completed)
            ])
        );
        let bad = depends_on(&node("{db: ready}")).expect_err("not a condition");
        assert_eq!(bad.at, Some((1, 6)));
        assert!(
            bad.message.contains("started, healthy or completed"),
            "{bad:?}"
        );
    }

    fn programs(deps: &[(&str, &[&str])]) -> BTreeMap<String, ProgramSpec> {
        deps.iter()
            .map(|(name, d)| {
                let mut s = crate::daemon::testutil::spec(&["true"]);
                s.name = name.to_string();
                s.health.depends_on = d.iter().map(|x| Dependency::started(x)).collect();
                (name.to_string(), s)
            })
            .collect()
    }

    #[test]
    fn cycles_are_found_and_named() {
        let p = programs(&[("a", &["b"]), ("b", &["c"]), ("c", &[])]);
        assert_eq!(find_cycle(&p), None);
        let p = programs(&[("a", &["b"]), ("b", &["c"]), ("c", &["a"])]);
        assert_eq!(
            find_cycle(&p).map(|c| c.join(" → ")),
            Some("a → b → c → a".to_string())
        );
        let p = programs(&[("a", &["a"])]);
        assert_eq!(find_cycle(&p).map(|c| c.join(" → ")), Some("a → a".into()));
        // A diamond is not a cycle.
        let p = programs(&[("a", &["b", "c"]), ("b", &["d"]), ("c", &["d"]), ("d", &[])]);
        assert_eq!(find_cycle(&p), None);
    }
}
