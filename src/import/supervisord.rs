//! supervisord's sections and keys → sup's YAML config. Pure: the merged sections of every
//! file read (`mod.rs` reads them, includes followed), the importing environment and the host
//! name in; the YAML text and the notes (what was not translated, or changed meaning) out.
//!
//! supervisord's defaults are sup's (autostart, autorestart `unexpected`, exitcodes `0`,
//! startsecs 1, startretries 3, stopsignal TERM, stopwaitsecs 10, 50MB × 10 log files), so
//! only the keys written are translated: the output reads like the input.

use std::collections::{BTreeMap, BTreeSet};

use super::ini::{self, Expansion};
use super::yaml_out::{comment, key as ykey, quote};
use crate::config::{logkeys, signal};

/// One key as read from some file: where it was and its raw (unexpanded) value.
#[derive(Debug, Clone)]
pub struct Item {
    pub key: String,
    pub value: String,
    pub file: usize,
    pub line: usize,
}

/// A section merged over every file that wrote it (configparser merges them; a key written
/// again keeps its last value). `file` is the first file that wrote it: `%(here)s` is its
/// folder, as supervisord takes it.
#[derive(Debug, Clone)]
pub struct Merged {
    pub name: String,
    pub file: usize,
    pub line: usize,
    pub items: Vec<Item>,
}

impl Merged {
    fn get(&self, key: &str) -> Option<&Item> {
        self.items.iter().rev().find(|i| i.key == key)
    }

    /// Each key once, its last value, in the order keys were first written.
    fn keys(&self) -> Vec<&Item> {
        let mut seen = BTreeSet::new();
        let mut out: Vec<&Item> = Vec::new();
        for item in &self.items {
            if seen.insert(item.key.as_str()) {
                if let Some(last) = self.get(&item.key) {
                    out.push(last);
                }
            }
        }
        out
    }
}

/// A file that was read: how it is shown, and its folder (`%(here)s`).
#[derive(Debug, Clone)]
pub struct FileInfo {
    pub shown: String,
    pub dir: String,
}

/// Something a user should know about the translation, at a place in the input.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Note {
    pub file: String,
    pub line: usize,
    /// `program:web`, or empty for the whole file.
    pub section: String,
    pub key: String,
    pub message: String,
}

impl std::fmt::Display for Note {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.line {
            0 => write!(f, "{}: ", self.file)?,
            n => write!(f, "{}:{n}: ", self.file)?,
        }
        if !self.section.is_empty() {
            write!(f, "[{}] ", self.section)?;
        }
        if !self.key.is_empty() {
            write!(f, "{}: ", self.key)?;
        }
        write!(f, "{}", self.message)
    }
}

/// What the translation needs from outside: the importing environment (for `%(ENV_X)s`) and
/// the host name (`%(host_node_name)s`).
pub struct Context<'a> {
    pub env: &'a dyn Fn(&str) -> Option<String>,
    pub host: String,
}

pub struct Translation {
    pub yaml: String,
    pub notes: Vec<Note>,
    pub programs: usize,
}

/// One program as sup will read it: keys in order, each value already YAML.
struct Program {
    name: String,
    /// The `[program:x]` it came from (several programs when its processes were split).
    origin: String,
    keys: Vec<(String, String)>,
}

struct Out<'a> {
    files: &'a [FileInfo],
    ctx: &'a Context<'a>,
    notes: Vec<Note>,
    env_used: BTreeMap<String, (usize, usize)>,
}

impl Out<'_> {
    fn note(&mut self, section: &Merged, item: Option<&Item>, message: impl Into<String>) {
        let (file, line) = item.map_or((section.file, section.line), |i| (i.file, i.line));
        self.notes.push(Note {
            file: self
                .files
                .get(file)
                .map(|f| f.shown.clone())
                .unwrap_or_default(),
            line,
            section: section.name.clone(),
            key: item.map(|i| i.key.clone()).unwrap_or_default(),
            message: message.into(),
        });
    }

    /// `value` with supervisord's expansions for one process of `section`.
    fn expand(
        &mut self,
        section: &Merged,
        item: &Item,
        vars: &BTreeMap<&str, Expansion>,
    ) -> Result<String, String> {
        let here = self
            .files
            .get(item.file.min(section.file))
            .map(|f| f.dir.clone());
        let env = self.ctx.env;
        let host = self.ctx.host.clone();
        let lookup = |name: &str| -> Option<Expansion> {
            if let Some(var) = name.strip_prefix("ENV_") {
                return env(var).map(Expansion::Text);
            }
            match name {
                "here" => here.clone().map(Expansion::Text),
                "host_node_name" => Some(Expansion::Text(host.clone())),
                _ => vars.get(name).cloned(),
            }
        };
        let mut used = Vec::new();
        let r = ini::expand(&item.value, &lookup, &mut |n| used.push(n.to_string()));
        for name in used {
            if let Some(var) = name.strip_prefix("ENV_") {
                self.env_used
                    .entry(var.to_string())
                    .or_insert((item.file, item.line));
            }
        }
        r
    }
}

fn boolean(text: &str) -> Option<bool> {
    match text.trim().to_ascii_lowercase().as_str() {
        "true" | "yes" | "on" | "1" => Some(true),
        "false" | "no" | "off" | "0" => Some(false),
        _ => None,
    }
}

fn integer(text: &str) -> Option<i64> {
    text.trim().parse().ok()
}

/// supervisord's `byte_size`: a number with an optional `KB`, `MB` or `GB` (powers of 1024).
fn byte_size(text: &str) -> Option<u64> {
    let t = text.trim().to_ascii_lowercase();
    for (suffix, mult) in [("kb", 1u64 << 10), ("mb", 1 << 20), ("gb", 1 << 30)] {
        if let Some(n) = t.strip_suffix(suffix) {
            return n.trim().parse::<u64>().ok()?.checked_mul(mult);
        }
    }
    t.parse().ok()
}

/// A sup name from a supervisord one: characters outside `[A-Za-z0-9_.-]` become `_`.
pub(super) fn sup_name(name: &str) -> String {
    let cleaned: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "_.-".contains(c) {
                c
            } else {
                '_'
            }
        })
        .collect();
    if cleaned.is_empty() {
        "_".into()
    } else {
        cleaned
    }
}

/// What in a command's words a shell would have done, in order of appearance. supervisord
/// runs the command without a shell too, so these reach the program as arguments; a command
/// that is itself `sh -c …` is left alone.
fn shell_features(words: &[String]) -> Vec<&'static str> {
    let shell = words.first().is_some_and(|w| {
        let base = w.rsplit('/').next().unwrap_or(w);
        matches!(base, "sh" | "bash" | "dash" | "zsh" | "ksh" | "ash")
    });
    if shell && words.iter().any(|w| w == "-c") {
        return Vec::new();
    }
    let mut found = Vec::new();
    for w in words {
        let what = match w.as_str() {
            "|" => Some("a pipe"),
            "&&" => Some("`&&`"),
            "||" => Some("`||`"),
            ";" => Some("`;`"),
            "&" => Some("`&`"),
            _ if w.starts_with('>') || w.starts_with('<') || w.starts_with("2>") => {
                Some("a redirection")
            }
            _ if w.contains('$') => Some("a `$` variable"),
            _ if w.contains('`') => Some("backquotes"),
            _ if w.starts_with('~') => Some("`~`"),
            _ if w.contains('*') => Some("a glob"),
            _ => None,
        };
        if let Some(what) = what {
            if !found.contains(&what) {
                found.push(what);
            }
        }
    }
    found
}

const PROGRAM_KEYS_NOT_NEEDED: &[(&str, &str)] = &[
    (
        "stdout_capture_maxbytes",
        "feeds supervisord's event listeners, which sup does not have",
    ),
    (
        "stderr_capture_maxbytes",
        "feeds supervisord's event listeners, which sup does not have",
    ),
    (
        "stdout_events_enabled",
        "feeds supervisord's event listeners, which sup does not have (daemon.notify covers state changes)",
    ),
    (
        "stderr_events_enabled",
        "feeds supervisord's event listeners, which sup does not have (daemon.notify covers state changes)",
    ),
    (
        "serverurl",
        "sup's jobs find the daemon's socket as every client does ($SUP_SOCKET or the default)",
    ),
];

/// Translate every section. Never fails: what cannot be translated becomes a note.
pub fn translate(sections: &[Merged], files: &[FileInfo], ctx: &Context) -> Translation {
    let mut out = Out {
        files,
        ctx,
        notes: Vec::new(),
        env_used: BTreeMap::new(),
    };
    let mut daemon: Vec<(String, String)> = Vec::new();
    let mut daemon_comments: Vec<String> = Vec::new();
    // `daemon.notify.listeners` entries: the quoted command and the event names.
    let mut listeners: Vec<(String, Vec<&'static str>)> = Vec::new();
    let mut shared_env: Vec<(String, String)> = Vec::new();
    let mut shared_umask: Option<String> = None;

    // [supervisord] first: its environment and umask go into every program.
    for s in sections.iter().filter(|s| s.name == "supervisord") {
        for item in s.keys() {
            let value = match out.expand(s, item, &BTreeMap::new()) {
                Ok(v) => v,
                Err(why) => {
                    out.note(s, Some(item), format!("not translated: {why}"));
                    continue;
                }
            };
            match item.key.as_str() {
                "logfile" => {
                    if value.eq_ignore_ascii_case("NONE") || value.is_empty() {
                        out.note(s, Some(item), "not translated: sup always writes its event log");
                    } else {
                        daemon.push(("logfile".into(), quote(&value)));
                    }
                }
                "childlogdir" => daemon.push(("logdir".into(), quote(&value))),
                "loglevel" => {
                    let level = match value.to_ascii_lowercase().as_str() {
                        "critical" | "error" => Some("error"),
                        "warn" => Some("warn"),
                        "info" => Some("info"),
                        "debug" => Some("debug"),
                        "trace" | "blather" => Some("trace"),
                        _ => None,
                    };
                    match level {
                        Some(l) => daemon.push(("loglevel".into(), l.into())),
                        None => out.note(s, Some(item), format!("not translated: unknown level {value:?}")),
                    }
                }
                "environment" => match ini::environment(&value) {
                    Ok((pairs, odd)) => {
                        if !odd.is_empty() {
                            out.note(s, Some(item), format!("supervisord skips {odd:?} between pairs (a value with a space needs quotes); translated as it reads them"));
                        }
                        out.note(s, Some(item), "translated into every program's env (sup's env is per job)");
                        shared_env = pairs;
                    }
                    Err(why) => out.note(s, Some(item), format!("not translated: {why}")),
                },
                "umask" => {
                    if value.chars().all(|c| c.is_digit(8)) && !value.is_empty() {
                        out.note(s, Some(item), "translated into the umask of every program that has none (sup's jobs otherwise inherit the daemon's)");
                        shared_umask = Some(value);
                    } else {
                        out.note(s, Some(item), format!("not translated: {value:?} is not octal"));
                    }
                }
                "logfile_maxbytes" | "logfile_backups" => out.note(s, Some(item), "not translated: sup's event log is not rotated by sup; use logrotate and `sup logreopen`"),
                "pidfile" => out.note(s, Some(item), "not translated: sup's pidfile and state file live beside its socket (daemon.pidfile can move them)"),
                "nodaemon" | "silent" => out.note(s, Some(item), "not needed: `sup daemon` always runs in the foreground (run it from systemd or as a container's init)"),
                "minfds" | "minprocs" => out.note(s, Some(item), "not translated: set a job's limits (nofile, nproc), or the service's LimitNOFILE"),
                "user" => out.note(s, Some(item), "not translated: run `sup daemon` as that user (a job's user: needs the daemon to be root)"),
                "directory" => out.note(s, Some(item), "not translated: sup does not change its own directory; a job's workingdir sets where it runs"),
                "identifier" | "nocleanup" | "strip_ansi" => out.note(s, Some(item), "not translated: sup has no such setting"),
                _ => out.note(s, Some(item), "unknown key: not translated"),
            }
        }
    }

    let mut groups: Vec<(String, Vec<String>, &Merged)> = Vec::new();
    let mut programs: Vec<Program> = Vec::new();
    let mut taken: BTreeMap<String, (usize, usize)> = BTreeMap::new();
    let mut no_group_signal: Vec<String> = Vec::new();

    for s in sections {
        let (kind, name) = s.name.split_once(':').unwrap_or((s.name.as_str(), ""));
        match kind {
            "supervisord" | "include" => {}
            "program" => translate_program(
                s,
                name,
                &shared_env,
                shared_umask.as_deref(),
                &mut out,
                &mut programs,
                &mut taken,
                &mut no_group_signal,
            ),
            "group" => {
                let members: Vec<String> = s
                    .get("programs")
                    .map(|i| {
                        i.value
                            .split(',')
                            .map(|p| p.trim().to_string())
                            .filter(|p| !p.is_empty())
                            .collect()
                    })
                    .unwrap_or_default();
                if members.is_empty() {
                    out.note(s, None, "a group without programs=: nothing to translate");
                }
                for item in s.keys() {
                    match item.key.as_str() {
                        "programs" => {}
                        "priority" => out.note(s, Some(item), "not translated: sup has no start order; depends_on makes a program wait for another to run"),
                        _ => out.note(s, Some(item), "unknown key: not translated"),
                    }
                }
                groups.push((sup_name(name), members, s));
            }
            "unix_http_server" => out.note(s, None, "not needed: sup's control socket is daemon.socket (mode 0600; only the daemon's user and root are served)"),
            "supervisorctl" => out.note(s, None, "not needed: `sup` itself is the client (`sup status`, `sup shell`; `sup --url` over daemon.http)"),
            "rpcinterface" => out.note(s, None, "not needed: sup's clients speak its control socket's JSON protocol, not XML-RPC"),
            "ctlplugin" => out.note(s, None, "not translated: sup has no client plugins"),
            "inet_http_server" => inet_http_server(s, &mut out, &mut daemon, &mut daemon_comments),
            "eventlistener" => listeners.extend(translate_eventlistener(s, name, &mut out)),
            "fcgi-program" => out.note(s, None, "not translated: sup does not hold a listening socket for its children; run the FastCGI server with its own socket as a program"),
            _ => out.note(s, None, "unknown section: not translated"),
        }
    }

    // Group members: the programs their sections became. supervisord renamed the processes
    // group:x; sup's group is only a name for its programs.
    let mut group_lines: Vec<(String, Vec<String>)> = Vec::new();
    for (gname, members, s) in &groups {
        let mut names: Vec<String> = Vec::new();
        for m in members {
            let found: Vec<String> = programs
                .iter()
                .filter(|p| p.origin == *m)
                .map(|p| p.name.clone())
                .collect();
            if found.is_empty() {
                out.note(
                    s,
                    s.get("programs"),
                    format!("{m:?} is no [program:{m}] here"),
                );
            }
            for f in found {
                if !names.contains(&f) {
                    names.push(f);
                }
            }
        }
        if gname == "all" || programs.iter().any(|p| p.name == *gname) {
            out.note(s, None, format!("not translated: {gname:?} is also a program's name (or `all`), and a sup name means one thing"));
            continue;
        } else if group_lines.iter().any(|(g, _)| g == gname) {
            out.note(
                s,
                None,
                format!("not translated: a group {gname:?} is translated already"),
            );
            continue;
        } else {
            out.note(s, None, format!("translated as groups.{gname}: `sup stop {gname}` acts on its programs; supervisord named the processes {gname}:NAME, sup keeps NAME"));
        }
        group_lines.push((gname.clone(), names));
    }

    if !no_group_signal.is_empty() {
        out.notes.push(Note {
            file: files.first().map(|f| f.shown.clone()).unwrap_or_default(),
            line: 0,
            section: String::new(),
            key: String::new(),
            message: format!(
                "stopasgroup/killasgroup false (supervisord's default) for {}: sup always signals the whole process group, so children of these programs are stopped with them",
                no_group_signal.join(", ")
            ),
        });
    }
    for (var, (file, line)) in std::mem::take(&mut out.env_used) {
        out.notes.push(Note {
            file: files.get(file).map(|f| f.shown.clone()).unwrap_or_default(),
            line,
            section: String::new(),
            key: String::new(),
            message: format!(
                "%(ENV_{var})s expanded from this environment, as supervisord expands it when it starts"
            ),
        });
    }

    // The YAML.
    let mut y = String::new();
    y.push_str("# Translated from supervisord's config by `sup import supervisord`.\n");
    if let Some(f) = files.first() {
        y.push_str(&format!("# Source: {}\n", comment(&f.shown)));
    }
    y.push_str("# What was not translated is listed on stderr.\n");
    if !daemon.is_empty() || !daemon_comments.is_empty() || !listeners.is_empty() {
        y.push_str("daemon:\n");
        for (k, v) in &daemon {
            if k == "http" {
                y.push_str(&format!("  http:\n    listen: {v}\n"));
            } else {
                y.push_str(&format!("  {k}: {v}\n"));
            }
        }
        if !listeners.is_empty() {
            y.push_str("  notify:\n    listeners:\n");
            for (cmd, events) in &listeners {
                y.push_str(&format!(
                    "      - cmd: {cmd}\n        events: [{}]\n",
                    events.join(", ")
                ));
            }
        }
        for c in &daemon_comments {
            y.push_str(&format!("  # {}\n", comment(c)));
        }
    }
    if !group_lines.is_empty() {
        y.push_str("groups:\n");
        for (g, names) in &group_lines {
            let list: Vec<String> = names.iter().map(|n| quote(n)).collect();
            y.push_str(&format!("  {}: [{}]\n", ykey(g), list.join(", ")));
        }
    }
    if programs.is_empty() {
        y.push_str("programs: {}\n");
    } else {
        y.push_str("programs:\n");
        for p in &programs {
            y.push_str(&format!("  {}:\n", ykey(&p.name)));
            for (k, v) in &p.keys {
                if k == "env" {
                    y.push_str("    env:\n");
                    y.push_str(v);
                } else {
                    y.push_str(&format!("    {k}: {v}\n"));
                }
            }
        }
    }
    Translation {
        yaml: y,
        notes: out.notes,
        programs: programs.len(),
    }
}

fn inet_http_server(
    s: &Merged,
    out: &mut Out,
    daemon: &mut Vec<(String, String)>,
    comments: &mut Vec<String>,
) {
    for item in s.keys() {
        match item.key.as_str() {
            "port" => {
                let v = item.value.trim();
                let (host, port) = v.rsplit_once(':').unwrap_or(("", v));
                let Ok(port) = port.parse::<u16>() else {
                    out.note(s, Some(item), format!("not translated: {v:?} is not HOST:PORT"));
                    continue;
                };
                let loopback = match host {
                    "127.0.0.1" | "localhost" => Some(format!("127.0.0.1:{port}")),
                    "::1" | "[::1]" => Some(format!("[::1]:{port}")),
                    _ => None,
                };
                match loopback {
                    Some(addr) => {
                        daemon.push(("http".into(), quote(&addr)));
                        out.note(s, Some(item), format!("translated as daemon.http.listen {addr}: sup serves its JSON API (/api/v1/, for `sup --url`), /metrics, /healthz and /readyz there, not XML-RPC"));
                    }
                    None => {
                        let addr = if host.is_empty() || host == "*" {
                            format!("0.0.0.0:{port}")
                        } else {
                            format!("{host}:{port}")
                        };
                        comments.push(format!("http: {{listen: \"{addr}\", token_file: FILE}}  # off loopback sup needs a token file"));
                        out.note(s, Some(item), format!("not translated: {addr} is not loopback, where sup's HTTP interface needs daemon.http.token_file; written as a comment"));
                    }
                }
            }
            "username" | "password" => out.note(s, Some(item), "not translated: sup's HTTP interface takes a bearer token (daemon.http.token_file)"),
            _ => out.note(s, Some(item), "unknown key: not translated"),
        }
    }
}

/// sup's listener event names for one of supervisord's event types (a parent type stands for
/// its children); `None` when sup has no such event.
fn listener_events(kind: &str) -> Option<&'static [&'static str]> {
    const STATES: &[&str] = &[
        "spawned", "running", "backoff", "stopping", "exit", "stopped", "fatal",
    ];
    Some(match kind {
        "PROCESS_STATE_STARTING" => &["spawned"],
        "PROCESS_STATE_RUNNING" => &["running"],
        "PROCESS_STATE_BACKOFF" => &["backoff"],
        "PROCESS_STATE_STOPPING" => &["stopping"],
        "PROCESS_STATE_EXITED" => &["exit"],
        "PROCESS_STATE_STOPPED" => &["stopped"],
        "PROCESS_STATE_FATAL" => &["fatal"],
        "PROCESS_STATE" | "EVENT" => STATES,
        _ => return None,
    })
}

/// `[eventlistener:x]` as a `daemon.notify.listeners` entry: its command and the events sup
/// has. supervisord's READY/RESULT protocol is not sup's (plain JSON lines), which a note says.
fn translate_eventlistener(
    s: &Merged,
    name: &str,
    out: &mut Out,
) -> Option<(String, Vec<&'static str>)> {
    let mut vars: BTreeMap<&str, Expansion> = BTreeMap::new();
    vars.insert("program_name", Expansion::Text(name.to_string()));
    vars.insert("group_name", Expansion::Text(name.to_string()));
    vars.insert("process_num", Expansion::Number(0));
    vars.insert("numprocs", Expansion::Number(1));
    let mut cmd = None;
    let mut events: Vec<&'static str> = Vec::new();
    for item in s.keys() {
        let it = Some(item);
        match item.key.as_str() {
            "command" => match out.expand(s, item, &vars) {
                Ok(v) if shell_words::split(v.trim()).is_ok_and(|w| !w.is_empty()) => {
                    cmd = Some(quote(v.trim()))
                }
                Ok(_) => out.note(
                    s,
                    it,
                    "unbalanced quotes or an empty command: the listener is left out",
                ),
                Err(why) => out.note(s, it, format!("{why}: the listener is left out")),
            },
            "events" => {
                for kind in item
                    .value
                    .split(',')
                    .map(str::trim)
                    .filter(|k| !k.is_empty())
                {
                    match listener_events(kind) {
                        Some(names) => {
                            for n in names {
                                if !events.contains(n) {
                                    events.push(n);
                                }
                            }
                        }
                        None => out.note(s, it, format!("{kind}: not translated: sup's listeners hear state changes (and health), not this event type")),
                    }
                }
            }
            "numprocs" if integer(item.value.trim()) != Some(1) => {
                out.note(s, it, "not translated: sup runs one process per listener")
            }
            "process_name" | "numprocs" => {}
            _ => out.note(
                s,
                it,
                "not translated: a sup listener has only cmd and events",
            ),
        }
    }
    let Some(cmd) = cmd else {
        out.note(s, None, "no usable command=: the listener is left out");
        return None;
    };
    if events.is_empty() {
        out.note(
            s,
            None,
            "none of its events= are sup's: the listener is left out",
        );
        return None;
    }
    out.note(s, None, "translated as a daemon.notify.listeners entry; supervisord's READY/RESULT handshake is not sup's: sup writes one JSON line per event on the listener's stdin and wants no answer, so the listener program needs adapting");
    Some((cmd, events))
}

#[allow(clippy::too_many_arguments)]
fn translate_program(
    s: &Merged,
    name: &str,
    shared_env: &[(String, String)],
    shared_umask: Option<&str>,
    out: &mut Out,
    programs: &mut Vec<Program>,
    taken: &mut BTreeMap<String, (usize, usize)>,
    no_group_signal: &mut Vec<String>,
) {
    let raw = |k: &str| s.get(k).map(|i| i.value.trim().to_string());
    let numprocs = match raw("numprocs").map(|v| integer(&v)) {
        None => 1,
        Some(Some(n)) if (1..=100_000).contains(&n) => n,
        Some(_) => {
            out.note(
                s,
                s.get("numprocs"),
                "not translated: expected an integer from 1 to 100000; the program is left out",
            );
            return;
        }
    };
    let start = match raw("numprocs_start").map(|v| integer(&v)) {
        None => 0,
        // Bounded so that `start + numprocs` cannot overflow.
        Some(Some(n)) if (0..=i64::from(u32::MAX)).contains(&n) => n,
        Some(_) => {
            out.note(
                s,
                s.get("numprocs_start"),
                "not translated: expected an integer from 0 to 4294967295; the program is left out",
            );
            return;
        }
    };
    if s.get("command").is_none() {
        out.note(s, None, "no command=: the program is left out");
        return;
    }

    // Every key expanded for every process: if the processes differ in more than their name,
    // they become one program each.
    let mut per_process: Vec<(String, Vec<(Item, String)>)> = Vec::new();
    let mut failed = false;
    for num in start..start + numprocs {
        let mut vars: BTreeMap<&str, Expansion> = BTreeMap::new();
        vars.insert("program_name", Expansion::Text(name.to_string()));
        vars.insert("group_name", Expansion::Text(name.to_string()));
        vars.insert("process_num", Expansion::Number(num));
        vars.insert("numprocs", Expansion::Number(numprocs));
        let mut values = Vec::new();
        for item in s.keys() {
            match out.expand(s, item, &vars) {
                Ok(v) => values.push((item.clone(), v)),
                Err(why) => {
                    if num == start {
                        let keep = item.key != "command";
                        out.note(
                            s,
                            Some(item),
                            if keep {
                                format!("{why}: supervisord would refuse this; kept as written")
                            } else {
                                format!(
                                    "{why}: supervisord would refuse this; the program is left out"
                                )
                            },
                        );
                        failed |= !keep;
                    }
                    values.push((item.clone(), item.value.clone()));
                }
            }
        }
        let pname_item = Item {
            key: "process_name".into(),
            value: "%(program_name)s".into(),
            file: s.file,
            line: s.line,
        };
        let pname_item = s.get("process_name").cloned().unwrap_or(pname_item);
        let pname = out
            .expand(s, &pname_item, &vars)
            .unwrap_or_else(|_| name.to_string());
        per_process.push((pname, values));
    }
    if failed {
        return;
    }
    let Some((first_name, first_values)) = per_process.first().cloned() else {
        return;
    };
    let differ = per_process.iter().any(|(_, v)| {
        v.iter()
            .zip(&first_values)
            .any(|((i, a), (_, b))| i.key != "process_name" && a != b)
    });

    // (sup name, numprocs, every key with its expanded value) per program written.
    type Emitted = (String, u32, Vec<(Item, String)>);
    let emitted: Vec<Emitted> = if differ && numprocs > 1 {
        let last = per_process.last().map(|p| p.0.clone()).unwrap_or_default();
        out.note(
            s,
            None,
            format!(
                "its processes differ by %(process_num)s in more than their names: translated as {numprocs} programs, {} … {} (sup gives one program's instances the same command, with SUP_PROCESS_NUM in their env)",
                sup_name(&first_name),
                sup_name(&last)
            ),
        );
        per_process
            .into_iter()
            .map(|(n, v)| (sup_name(&n), 1, v))
            .collect()
    } else {
        let sname = sup_name(name);
        if numprocs > 1 {
            let last = per_process.last().map(|p| p.0.clone()).unwrap_or_default();
            out.note(
                s,
                s.get("process_name").or(s.get("numprocs")),
                format!(
                    "instances are named {sname}:0 … {sname}:{} (supervisord: {first_name} … {last}); each gets SUP_PROCESS_NUM 0 … {} in its env",
                    numprocs - 1,
                    numprocs - 1
                ),
            );
        } else if first_name != name {
            out.note(
                s,
                s.get("process_name"),
                format!("the process is named {sname} (supervisord: {first_name})"),
            );
        }
        if start != 0 && numprocs > 1 {
            out.note(
                s,
                s.get("numprocs_start"),
                "sup numbers instances from 0; supervisord's process_num started here",
            );
        }
        vec![(sname, numprocs as u32, first_values)]
    };

    // The programs after the first of a split one repeat its notes: say them once.
    let mut again = false;
    for (pname, n, values) in emitted {
        if let Some(&(f, l)) = taken.get(&pname) {
            out.note(
                s,
                None,
                format!(
                    "{pname} is already a program (from {}:{l}); this one is left out",
                    out.files.get(f).map(|x| x.shown.as_str()).unwrap_or("")
                ),
            );
            continue;
        }
        if sup_name(name) != name && !again {
            out.note(
                s,
                None,
                format!("{name:?} is not a sup name ([A-Za-z0-9_.-]+): translated as {pname}"),
            );
        }
        taken.insert(pname.clone(), (s.file, s.line));
        let mut keys: Vec<(String, String)> = Vec::new();
        let mut env: Vec<(String, String)> = shared_env.to_vec();
        let mut umask_set = false;
        let mut group_signal = false;
        for (item, value) in &values {
            let it = Some(item);
            let v = value.trim();
            match item.key.as_str() {
                "command" => {
                    let Ok(words) = shell_words::split(v) else {
                        out.note(s, it, "unbalanced quotes: supervisord would refuse this command too; the program is left out");
                        taken.remove(&pname);
                        return;
                    };
                    let features = shell_features(&words);
                    if !features.is_empty() && !again {
                        out.note(s, it, format!("uses {} but, as with supervisord, no shell runs it: passed through as arguments (wrap it in `sh -c '…'` if it needs a shell)", features.join(", ")));
                    }
                    keys.push(("cmd".into(), quote(v)));
                }
                "process_name" | "numprocs_start" => {}
                "numprocs" => {
                    if n > 1 {
                        keys.push(("numprocs".into(), n.to_string()));
                    }
                }
                "priority" => {
                    if integer(v) != Some(999) && !again {
                        out.note(s, it, "not translated: sup starts programs in parallel, with no start order; depends_on makes a program wait until another runs");
                    }
                }
                "autostart" => match boolean(v) {
                    Some(b) => keys.push(("autostart".into(), b.to_string())),
                    None => out.note(s, it, format!("not translated: {v:?} is not a boolean")),
                },
                "autorestart" => {
                    let policy = match v.to_ascii_lowercase().as_str() {
                        "unexpected" => Some("unexpected"),
                        x => boolean(x).map(|b| if b { "always" } else { "never" }),
                    };
                    match policy {
                        Some(p) => keys.push(("autorestart".into(), p.into())),
                        None => out.note(
                            s,
                            it,
                            format!(
                                "not translated: expected true, false or unexpected, found {v:?}"
                            ),
                        ),
                    }
                }
                "exitcodes" => {
                    let codes: Option<Vec<i64>> = v
                        .split(',')
                        .map(|c| integer(c).filter(|n| (0..=255).contains(n)))
                        .collect();
                    match codes {
                        Some(c) if !c.is_empty() => {
                            let list: Vec<String> = c.iter().map(i64::to_string).collect();
                            keys.push(("exitcodes".into(), format!("[{}]", list.join(", "))));
                        }
                        _ => out.note(s, it, format!("not translated: expected codes 0–255 separated by commas, found {v:?}")),
                    }
                }
                "startsecs" | "stopwaitsecs" | "startretries" => {
                    let to = match item.key.as_str() {
                        "startsecs" => "starttime",
                        "stopwaitsecs" => "stoptime",
                        _ => "startretries",
                    };
                    match integer(v).filter(|n| *n >= 0) {
                        Some(n) => keys.push((to.into(), n.to_string())),
                        None => out.note(
                            s,
                            it,
                            format!("not translated: expected an integer ≥ 0, found {v:?}"),
                        ),
                    }
                }
                "stopsignal" => match signal::parse(v) {
                    Some(sig) => keys.push((
                        "stopsignal".into(),
                        signal::name(sig).trim_start_matches("SIG").to_string(),
                    )),
                    None => out.note(s, it, format!("not translated: unknown signal {v:?}")),
                },
                "stopasgroup" | "killasgroup" => {
                    if boolean(v) == Some(true) {
                        group_signal = true;
                    }
                }
                "user" => {
                    if !v.is_empty() {
                        keys.push(("user".into(), quote(v)));
                    }
                }
                "directory" => {
                    if !v.is_empty() {
                        keys.push(("workingdir".into(), quote(v)));
                    }
                }
                "umask" => {
                    if !v.is_empty() && v.chars().all(|c| c.is_digit(8)) {
                        keys.push(("umask".into(), quote(v)));
                        umask_set = true;
                    } else {
                        out.note(s, it, format!("not translated: {v:?} is not octal"));
                    }
                }
                "environment" => match ini::environment(value) {
                    Ok((pairs, odd)) => {
                        if !odd.is_empty() && !again {
                            out.note(s, it, format!("supervisord skips {odd:?} between pairs (a value with a space needs quotes); translated as it reads them"));
                        }
                        for (k, val) in pairs {
                            env.retain(|(e, _)| *e != k);
                            env.push((k, val));
                        }
                    }
                    Err(why) => out.note(s, it, format!("not translated: {why}")),
                },
                "redirect_stderr" => match boolean(v) {
                    Some(b) => keys.push(("redirect_stderr".into(), b.to_string())),
                    None => out.note(s, it, format!("not translated: {v:?} is not a boolean")),
                },
                "stdout_logfile" | "stderr_logfile" => {
                    let to = if item.key == "stdout_logfile" {
                        "stdout"
                    } else {
                        "stderr"
                    };
                    if to == "stderr"
                        && values
                            .iter()
                            .any(|(i, v)| i.key == "redirect_stderr" && boolean(v) == Some(true))
                    {
                        if !again {
                            out.note(
                                s,
                                it,
                                "ignored, as supervisord ignores it with redirect_stderr=true",
                            );
                        }
                        continue;
                    }
                    match v.to_ascii_uppercase().as_str() {
                        "AUTO" => {}
                        "NONE" | "" => keys.push((to.into(), "discard".into())),
                        "SYSLOG" => out.note(s, it, "not translated: sup writes job output to files; sup's default file is used"),
                        _ => {
                            if !v.starts_with('/') && !again {
                                out.note(s, it, "a relative path: sup resolves it beside the new config, supervisord from its working directory");
                            }
                            keys.push((to.into(), quote(v)));
                        }
                    }
                }
                "stdout_logfile_maxbytes" | "stderr_logfile_maxbytes" => {
                    let to = if item.key.starts_with("stdout") {
                        "stdout_maxbytes"
                    } else {
                        "stderr_maxbytes"
                    };
                    match byte_size(v) {
                        Some(b) if logkeys::parse_size(v) == Some(b) => {
                            keys.push((to.into(), quote(v)))
                        }
                        Some(b) => keys.push((to.into(), b.to_string())),
                        None => out.note(
                            s,
                            it,
                            format!("not translated: {v:?} is not a size such as 50MB"),
                        ),
                    }
                }
                "stdout_logfile_backups" | "stderr_logfile_backups" => {
                    let to = if item.key.starts_with("stdout") {
                        "stdout_backups"
                    } else {
                        "stderr_backups"
                    };
                    match integer(v).filter(|n| *n >= 0) {
                        Some(n) => keys.push((to.into(), n.to_string())),
                        None => out.note(
                            s,
                            it,
                            format!("not translated: expected an integer ≥ 0, found {v:?}"),
                        ),
                    }
                }
                "stdout_syslog" | "stderr_syslog" => {
                    if boolean(v) == Some(true) && !again {
                        out.note(
                            s,
                            it,
                            "not translated: sup writes job output to its files only",
                        );
                    }
                }
                other => {
                    if again {
                        continue;
                    }
                    match PROGRAM_KEYS_NOT_NEEDED.iter().find(|(k, _)| *k == other) {
                        Some((_, why)) => out.note(s, it, format!("not translated: {why}")),
                        None => out.note(s, it, "unknown key: not translated"),
                    }
                }
            }
        }
        if !umask_set {
            if let Some(u) = shared_umask {
                keys.push(("umask".into(), quote(u)));
            }
        }
        if !env.is_empty() {
            let mut block = String::new();
            for (k, val) in &env {
                if !k.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
                    || k.starts_with(|c: char| c.is_ascii_digit())
                {
                    if !again {
                        out.note(
                            s,
                            s.get("environment"),
                            format!("{k:?} is not a variable name sup accepts: left out"),
                        );
                    }
                    continue;
                }
                block.push_str(&format!("      {}: {}\n", ykey(k), quote(val)));
            }
            if !block.is_empty() {
                keys.push(("env".into(), block));
            }
        }
        if !group_signal && !again {
            no_group_signal.push(sup_name(name));
        }
        again = true;
        programs.push(Program {
            name: pname,
            origin: name.to_string(),
            keys,
        });
    }
}
