//! The keys of logging and notifications: the log keys of a job (rotation, timestamps, stderr
//! merging), byte sizes (`stdout_maxbytes: 50MB`) and the `daemon.notify` map, so that this
//! feature's keys stay together.

use super::keys::{IfAbsent, Job, Key};
use super::resolve::{entries, keep, key_text, unknown_key, Sink};
use super::spec::{EmailSpec, ListenerSpec, NotifySpec, Output, LISTENER_EVENTS, NOTIFY_EVENTS};
use super::values::{self, Bad, Read};
use super::yaml::Node;

/// The log keys of a job (part of `keys::JOB`).
pub const KEYS: &[Key<Job>] = &[
    Key {
        name: "stdout_maxbytes",
        read: |j, v, sink| {
            if let Some(n) = v.keep(size(v.node), sink) {
                j.logs.stdout.maxbytes = n;
            }
        },
        default: IfAbsent::Value("`50MB`", |j| j.logs.stdout.maxbytes = 50 << 20),
        doc: "size at which stdout's file is rotated: bytes (`1048576`) or `K`/`KB`/`KiB`, \
              `M`/`MB`/`MiB`, `G`/`GB`/`GiB` (all powers of 1024); `0` never rotates",
        check: None,
    },
    Key {
        name: "stdout_backups",
        read: |j, v, sink| {
            if let Some(n) = v.keep(values::count(v.node, 0), sink) {
                j.logs.stdout.backups = n;
            }
        },
        default: IfAbsent::Value("`10`", |j| j.logs.stdout.backups = 10),
        doc: "rotated files kept (`NAME.out.1` … `NAME.out.N`); `0` truncates instead",
        check: None,
    },
    Key {
        name: "stderr_maxbytes",
        read: |j, v, sink| {
            if let Some(n) = v.keep(size(v.node), sink) {
                j.logs.stderr.maxbytes = n;
            }
        },
        default: IfAbsent::Value("`50MB`", |j| j.logs.stderr.maxbytes = 50 << 20),
        doc: "like `stdout_maxbytes`, for stderr's file",
        check: None,
    },
    Key {
        name: "stderr_backups",
        read: |j, v, sink| {
            if let Some(n) = v.keep(values::count(v.node, 0), sink) {
                j.logs.stderr.backups = n;
            }
        },
        default: IfAbsent::Value("`10`", |j| j.logs.stderr.backups = 10),
        doc: "like `stdout_backups` (`NAME.err.1` … `NAME.err.N`)",
        check: None,
    },
    Key {
        name: "timestamps",
        read: |j, v, sink| {
            if let Some(b) = v.keep(values::boolean(v.node), sink) {
                j.logs.timestamps = b;
            }
        },
        default: IfAbsent::Value("`false`", |j| j.logs.timestamps = false),
        doc: "bool: prefix every output line with an RFC 3339 timestamp",
        check: None,
    },
    Key {
        name: "redirect_stderr",
        read: |j, v, sink| {
            if let Some(b) = v.keep(values::boolean(v.node), sink) {
                j.logs.redirect_stderr = b;
            }
        },
        default: IfAbsent::Value("`false`", |j| j.logs.redirect_stderr = false),
        doc: "bool: stderr goes into stdout's file (whole lines, never cut into each other)",
        check: None,
    },
    Key {
        name: "prefix",
        read: |j, v, sink| {
            if let Some(b) = v.keep(values::boolean(v.node), sink) {
                j.logs.prefix = b;
            }
        },
        default: IfAbsent::Value("`false`", |j| j.logs.prefix = false),
        doc: "bool: with `stdout: inherit` or `stderr: inherit`, each line goes out whole, as \
              `NAME | line`",
        check: Some(|j, _| {
            let inherits = [&j.stdout, &j.stderr]
                .iter()
                .any(|o| matches!(o, Some(Output::Inherit)));
            (!inherits).then(|| {
                Bad::new("only applies to an inherited stream")
                    .with_hint("add `stdout: inherit` (or `stderr: inherit`), or remove it")
            })
        }),
    },
];

pub const NOTIFY_KEYS: &[&str] = &[
    "events",
    "email",
    "fatal_state_report_address",
    "hook",
    "listeners",
];
/// The keys of one `daemon.notify.listeners` entry.
pub const LISTENER_KEYS: &[&str] = &["cmd", "events"];
pub const EMAIL_KEYS: &[&str] = &[
    "host",
    "port",
    "starttls",
    "username_env",
    "password_env",
    "from",
    "to",
];

fn expected(what: &str, node: &Node) -> Bad {
    Bad::new(format!("expected {what}, found {}", node.describe()))
}

/// A byte count: bare bytes (`1048576`) or a number with a unit, `K`/`KB`/`KiB`, `M`/`MB`/
/// `MiB`, `G`/`GB`/`GiB`, all powers of 1024 as supervisord reads them. `0` is allowed.
pub fn size(node: &Node) -> Read<u64> {
    const WHAT: &str = "a size such as 50MB, 10M, 1GiB or a number of bytes";
    let text = node.text().ok_or_else(|| expected(WHAT, node))?;
    parse_size(text).ok_or_else(|| expected(WHAT, node))
}

/// Every byte size in the config, read one way: the `parse-size` crate with 1024-based units
/// (`K`, `KB` and `KiB` alike, as supervisord reads them), fractions allowed (`1.5G`). The
/// error a user sees is still ours, saying what the key accepts.
pub fn parse_size(text: &str) -> Option<u64> {
    // parse-size 1.1 overflows (a panic with overflow checks, a wrong value without) once the
    // digits of the number, integer and fraction together, pass what a u64 holds; found by
    // fuzzing. Nineteen significant digits cannot overflow, and no real size needs more.
    let t = text.trim();
    let mantissa = t.split(['e', 'E']).next().unwrap_or("");
    let digits = mantissa
        .bytes()
        .filter(|&b| b != b'.' && b != b'_')
        .skip_while(|&b| !b.is_ascii_digit() || b == b'0')
        .filter(u8::is_ascii_digit)
        .count();
    if digits > 19 {
        return None;
    }
    parse_size::Config::new()
        .with_binary()
        .parse_size(text.trim())
        .ok()
}

fn string(node: &Node) -> Read<String> {
    match node.text() {
        Some(t) if !t.is_empty() && !node.is_null() => Ok(t.to_string()),
        _ => Err(expected("a string", node)),
    }
}

fn strings(node: &Node, what: &str) -> Read<Vec<String>> {
    match &node.kind {
        super::yaml::Kind::Seq(items) if !items.is_empty() => items
            .iter()
            .map(|i| string(i).map_err(|_| Bad::new(format!("expected {what}")).at_node(i)))
            .collect(),
        super::yaml::Kind::Scalar(_) => Ok(vec![string(node)?]),
        _ => Err(expected(&format!("{what} or a list of them"), node)),
    }
}

trait AtNode {
    fn at_node(self, node: &Node) -> Bad;
}

impl AtNode for Bad {
    fn at_node(mut self, node: &Node) -> Bad {
        self.at = Some((node.line, node.col));
        self
    }
}

fn events(node: &Node) -> Read<Vec<String>> {
    events_of(node, NOTIFY_EVENTS, &[])
}

/// Event names from `names` (and `more`), sorted, each once.
fn events_of(node: &Node, names: &[&str], more: &[&str]) -> Read<Vec<String>> {
    let mut out = Vec::new();
    for (i, e) in strings(node, "an event name")?.into_iter().enumerate() {
        if !names.contains(&e.as_str()) && !more.contains(&e.as_str()) {
            let all: Vec<&str> = names.iter().chain(more).copied().collect();
            let mut bad = Bad::new(format!("expected one of {}, found {e:?}", all.join(", ")));
            if let super::yaml::Kind::Seq(items) = &node.kind {
                if let Some(item) = items.get(i) {
                    bad = bad.at_node(item);
                }
            }
            return Err(bad);
        }
        out.push(e);
    }
    out.sort();
    out.dedup();
    Ok(out)
}

fn address(node: &Node) -> Read<String> {
    let what = "an address such as 127.0.0.1:8080 or host:port";
    let t = string(node).map_err(|_| expected(what, node))?;
    match t.rsplit_once(':') {
        Some((host, port)) if !host.is_empty() && port.parse::<u16>().is_ok() => Ok(t),
        _ => Err(expected(what, node)),
    }
}

fn port(node: &Node) -> Read<u16> {
    node.scalar()
        .and_then(|s| s.as_int())
        .and_then(|n| u16::try_from(n).ok())
        .filter(|&n| n > 0)
        .ok_or_else(|| expected("a port number from 1 to 65535", node))
}

/// `daemon.notify`.
pub fn notify(node: &Node, file: &str, sink: &mut Sink) -> Option<NotifySpec> {
    let before = sink.len();
    let mut spec = NotifySpec::default();
    let found = entries(
        node,
        "a map of notification settings",
        file,
        "daemon.notify",
        sink,
    )?;
    for (k, v) in found {
        let Some(key) = key_text(k, file, "daemon.notify", sink) else {
            continue;
        };
        let path = format!("daemon.notify.{key}");
        let p = path.as_str();
        match key {
            "events" => {
                if let Some(e) = keep(events(v), v, file, p, sink) {
                    spec.events = e;
                }
            }
            "email" => spec.email = email(v, file, sink),
            "fatal_state_report_address" => spec.report = keep(address(v), v, file, p, sink),
            "hook" => spec.hook = keep(values::cmd(v), v, file, p, sink),
            "listeners" => spec.listeners = listeners(v, file, sink),
            _ => unknown_key(k, key, NOTIFY_KEYS, file, p, sink),
        }
    }
    (sink.len() == before).then_some(spec)
}

/// `daemon.notify.listeners`: a list of `{cmd, events}` maps, both keys required.
fn listeners(node: &Node, file: &str, sink: &mut Sink) -> Vec<ListenerSpec> {
    const AT: &str = "daemon.notify.listeners";
    let items = match &node.kind {
        super::yaml::Kind::Seq(items) => items,
        _ => {
            let bad = expected("a list of listeners (each a map with cmd and events)", node);
            sink.push(file, (node.line, node.col), AT, bad);
            return Vec::new();
        }
    };
    let mut out = Vec::new();
    for (i, item) in items.iter().enumerate() {
        let at = format!("{AT}[{i}]");
        let Some(found) = entries(item, "a map with cmd and events", file, &at, sink) else {
            continue;
        };
        let before = sink.len();
        let (mut cmd, mut events) = (None, None);
        for (k, v) in found {
            let Some(key) = key_text(k, file, &at, sink) else {
                continue;
            };
            let path = format!("{at}.{key}");
            let p = path.as_str();
            match key {
                "cmd" => cmd = keep(values::cmd(v), v, file, p, sink),
                "events" => {
                    events = keep(
                        events_of(v, NOTIFY_EVENTS, LISTENER_EVENTS),
                        v,
                        file,
                        p,
                        sink,
                    )
                }
                _ => unknown_key(k, key, LISTENER_KEYS, file, p, sink),
            }
        }
        for name in LISTENER_KEYS {
            let given = found.iter().any(|(k, _)| k.text() == Some(name));
            if !given {
                let bad = Bad::new(format!("missing {name}")).with_hint(
                    "each listener is a map of cmd (a command line) and events (a list of \
                     event names)",
                );
                sink.push(file, (item.line, item.col), &at, bad);
            }
        }
        if let (Some(cmd), Some(events), true) = (cmd, events, sink.len() == before) {
            out.push(ListenerSpec { cmd, events });
        }
    }
    out
}

fn email(node: &Node, file: &str, sink: &mut Sink) -> Option<EmailSpec> {
    const AT: &str = "daemon.notify.email";
    let found = entries(node, "a map of email settings", file, AT, sink)?;
    let before = sink.len();
    let mut host = None;
    let mut port_ = None;
    let mut starttls = None;
    let mut username_env = None;
    let mut password_env = None;
    let mut from = None;
    let mut to = None;
    for (k, v) in found {
        let Some(key) = key_text(k, file, AT, sink) else {
            continue;
        };
        let path = format!("{AT}.{key}");
        let p = path.as_str();
        match key {
            "host" => host = keep(string(v), v, file, p, sink),
            "port" => port_ = keep(port(v), v, file, p, sink),
            "starttls" => starttls = keep(values::boolean(v), v, file, p, sink),
            "username_env" => username_env = keep(values::env_name(v), v, file, p, sink),
            "password_env" => password_env = keep(values::env_name(v), v, file, p, sink),
            "from" => from = keep(string(v), v, file, p, sink),
            "to" => to = keep(strings(v, "an email address"), v, file, p, sink),
            _ => unknown_key(k, key, EMAIL_KEYS, file, p, sink),
        }
    }
    for (name, missing) in [
        ("host", host.is_none()),
        ("from", from.is_none()),
        ("to", to.is_none()),
    ] {
        let given = found.iter().any(|(k, _)| k.text() == Some(name));
        if missing && !given {
            let bad = Bad::new(format!("missing {name}"));
            sink.push(file, (node.line, node.col), AT, bad);
        }
    }
    if sink.len() > before {
        return None;
    }
    let starttls = starttls.unwrap_or(true);
    Some(EmailSpec {
        host: host?,
        port: port_.unwrap_or(if starttls { 587 } else { 25 }),
        starttls,
        username_env,
        password_env,
        from: from?,
        to: to?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::yaml;

    #[test]
    fn sizes() {
        assert_eq!(parse_size("0"), Some(0));
        assert_eq!(parse_size("1234"), Some(1234));
        assert_eq!(parse_size("50MB"), Some(50 << 20));
        assert_eq!(parse_size("10M"), Some(10 << 20));
        assert_eq!(parse_size("1GiB"), Some(1 << 30));
        assert_eq!(parse_size("4 kb"), Some(4096));
        assert_eq!(parse_size("MB"), None);
        assert_eq!(parse_size("5 parsecs"), None);
        assert_eq!(parse_size("-1"), None);
        assert_eq!(parse_size("99999999999999999999G"), None);
    }

    fn run(src: &str) -> (Option<NotifySpec>, Vec<String>) {
        let (root, errors) = yaml::parse(src);
        assert!(errors.is_empty(), "{errors:?}");
        let root = root.expect("a document");
        let mut sink = Sink::default();
        let spec = notify(&root, "sup.yaml", &mut sink);
        let errors = sink.into_sorted().iter().map(|e| e.to_string()).collect();
        (spec, errors)
    }

    #[test]
    fn every_notify_setting_reads_back() {
        let (spec, errors) = run("events: [fatal, backoff]\n\
             email:\n  host: smtp.example.org\n  port: 587\n  starttls: true\n\
             \x20 username_env: SUP_SMTP_USER\n  password_env: SUP_SMTP_PASSWORD\n\
             \x20 from: sup@example.org\n  to: [ops@example.org]\n\
             fatal_state_report_address: \"127.0.0.1:8080\"\n\
             hook: /usr/local/bin/on-sup-event\n");
        assert!(errors.is_empty(), "{errors:?}");
        let spec = spec.expect("a spec");
        assert_eq!(spec.events, ["backoff", "fatal"]);
        let email = spec.email.expect("email");
        assert_eq!(email.host, "smtp.example.org");
        assert_eq!(email.port, 587);
        assert!(email.starttls);
        assert_eq!(email.username_env.as_deref(), Some("SUP_SMTP_USER"));
        assert_eq!(email.to, ["ops@example.org"]);
        assert_eq!(spec.report.as_deref(), Some("127.0.0.1:8080"));
        assert_eq!(
            spec.hook.as_deref(),
            Some(&["/usr/local/bin/on-sup-event".to_string()][..])
        );
    }

    #[test]
    fn bad_values_name_their_keys() {
        let (spec, errors) = run("events: [fatal, exploded]\n\
             email:\n  host: x\n  port: 70000\n\
             fatal_state_report_address: nowhere\nhok: x\n");
        assert!(spec.is_none());
        assert_eq!(errors.len(), 6, "{errors:?}");
        assert!(errors[0].contains("daemon.notify.events"), "{errors:?}");
        assert!(errors[0].contains("\"exploded\""), "{errors:?}");
        assert!(
            errors.iter().any(|e| e.contains("missing from")),
            "{errors:?}"
        );
        assert!(
            errors.iter().any(|e| e.contains("email.port")),
            "{errors:?}"
        );
        assert!(
            errors.iter().any(|e| e.contains("did you mean hook?")),
            "{errors:?}"
        );
    }

    #[test]
    fn listeners_read_back_and_bad_entries_name_their_keys() {
        let (spec, errors) = run("listeners:\n\
             \x20 - cmd: \"/usr/local/bin/alert-relay --flag\"\n\
             \x20   events: [fatal, exit, backoff, health]\n");
        assert!(errors.is_empty(), "{errors:?}");
        let l = &spec.expect("a spec").listeners;
        assert_eq!(l.len(), 1);
        assert_eq!(l[0].cmd, ["/usr/local/bin/alert-relay", "--flag"]);
        assert_eq!(l[0].events, ["backoff", "exit", "fatal", "health"]);

        let (spec, errors) = run("listeners:\n\
             \x20 - cmd: relay\n    events: [fatal, exploded]\n\
             \x20 - events: [exit]\n    cmnd: relay\n\
             \x20 - relay\n");
        assert!(spec.is_none());
        assert_eq!(errors.len(), 4, "{errors:?}");
        assert!(
            errors[0].contains("sup.yaml:3:21: daemon.notify.listeners[0].events")
                && errors[0].contains("exit, health, found \"exploded\""),
            "{errors:?}"
        );
        assert!(
            errors
                .iter()
                .any(|e| e.contains("listeners[1]") && e.contains("missing cmd")),
            "{errors:?}"
        );
        assert!(
            errors.iter().any(|e| e.contains("did you mean cmd?")),
            "{errors:?}"
        );
        assert!(
            errors
                .iter()
                .any(|e| e.contains("listeners[2]") && e.contains("expected a map")),
            "{errors:?}"
        );
        let (_, errors) = run("listeners: relay\n");
        assert!(
            errors[0].contains("expected a list of listeners"),
            "{errors:?}"
        );
    }
}
