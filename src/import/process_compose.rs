//! process-compose's `process-compose.yaml` → sup's YAML config. Pure: the file's text, its
//! name as shown and the importing environment in; the YAML text and the notes (what was not
//! translated, or changed meaning, at file:line) out.
//!
//! The text is read by sup's own YAML tree (`config::yaml`: line and column of every node,
//! aliases and merge keys applied, nesting bounded). The translation walks fixed paths of that
//! tree (`processes.NAME.readiness_probe.http_get.port` at most), never the tree itself.
//!
//! process-compose runs `command` through `bash -c` (`shell.shell_command`,
//! `shell.shell_argument`), so a command that needs a shell becomes `cmd: [bash, -c, …]`; one
//! made only of plain words is written as sup's `cmd` string, which sup splits the same way.
//! process-compose's defaults differ from sup's in places, so some keys are always written:
//! `autorestart: never` (its default restart is `no`), `starttime: 0` (it has no start window:
//! a process is started once launched, and one-shot processes are common) and the probe's
//! `timeout` (1 s there, 5 s in sup).

use std::collections::BTreeMap;

use super::supervisord::{sup_name, Note, Translation};
use super::yaml_out::{comment, key as ykey, quote};
use crate::config::signal;
use crate::config::yaml::{self, Kind, Node};

/// Programs one import writes at most (replicas split into programs included).
const MAX_PROGRAMS: usize = 10_000;

fn entries(node: &Node) -> &[(Node, Node)] {
    match &node.kind {
        Kind::Map(e) => e,
        _ => &[],
    }
}

fn get<'a>(map: &'a Node, key: &str) -> Option<&'a Node> {
    entries(map)
        .iter()
        .find(|(k, _)| k.text() == Some(key))
        .map(|(_, v)| v)
}

fn key_text(k: &Node) -> String {
    k.scalar().map(|s| s.text.clone()).unwrap_or_default()
}

/// YAML 1.1 and 1.2 booleans, as Go's yaml decoder takes them into a bool field.
fn boolean(node: &Node) -> Option<bool> {
    match node.text()?.trim().to_ascii_lowercase().as_str() {
        "true" | "yes" | "on" | "y" => Some(true),
        "false" | "no" | "off" | "n" => Some(false),
        _ => None,
    }
}

/// `$$` → `$`; `$NAME`, `${NAME}` and `${NAME:-default}` from `env` (nothing when unset), as
/// process-compose expands the file when it loads it. The names looked up go to `used`.
fn expand_env(s: &str, env: &dyn Fn(&str) -> Option<String>, used: &mut Vec<String>) -> String {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(at) = rest.find('$') {
        out.push_str(&rest[..at]);
        let after = &rest[at + 1..];
        if let Some(r) = after.strip_prefix('$') {
            out.push('$');
            rest = r;
        } else if let Some(inner) = after.strip_prefix('{') {
            match inner.find('}') {
                Some(end) => {
                    let body = &inner[..end];
                    let (name, default) = match body.split_once(":-") {
                        Some((n, d)) => (n, Some(d)),
                        None => (body, None),
                    };
                    used.push(name.to_string());
                    match (env(name).filter(|v| !v.is_empty()), default) {
                        (Some(v), _) => out.push_str(&v),
                        (None, Some(d)) => out.push_str(d),
                        (None, None) => out.push_str(&env(name).unwrap_or_default()),
                    }
                    rest = &inner[end + 1..];
                }
                None => {
                    out.push('$');
                    rest = after;
                }
            }
        } else {
            let len = after
                .char_indices()
                .find(|&(i, c)| {
                    !(c == '_' || c.is_ascii_alphabetic() || (i > 0 && c.is_ascii_digit()))
                })
                .map_or(after.len(), |(i, _)| i);
            if len == 0 {
                out.push('$');
            } else {
                let name = &after[..len];
                used.push(name.to_string());
                out.push_str(&env(name).unwrap_or_default());
            }
            rest = &after[len..];
        }
    }
    out.push_str(rest);
    out
}

/// Only `$$` → `$`: a command's other `$` are left to the shell that runs it.
fn unescape_dollars(s: &str) -> String {
    s.replace("$$", "$")
}

/// The variable a `{{ … }}` names, or a string literal it writes.
enum Tpl<'a> {
    Var(&'a str),
    Literal(String),
}

fn template_part(inner: &str) -> Option<Tpl<'_>> {
    let t = inner.trim_start_matches('-').trim_end_matches('-').trim();
    if let Some(name) = t.strip_prefix('.') {
        let ok = !name.is_empty() && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
        return ok.then_some(Tpl::Var(name));
    }
    for q in ['"', '`'] {
        if let Some(body) = t.strip_prefix(q).and_then(|b| b.strip_suffix(q)) {
            if q == '"' && body.contains('\\') || body.contains(q) {
                return None;
            }
            return Some(Tpl::Literal(body.to_string()));
        }
    }
    None
}

/// Go's text/template as process-compose's values use it: `{{.NAME}}` from `vars` (with
/// `PC_REPLICA_NUM` as `replica`) and `{{"text"}}`. Anything else (`if`, `or`, pipes) is an
/// error: this is no template engine.
fn render(s: &str, vars: &dyn Fn(&str) -> Option<String>, replica: &str) -> Result<String, String> {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(at) = rest.find("{{") {
        out.push_str(&rest[..at]);
        let after = &rest[at + 2..];
        // A string literal may hold `}}`: look for the end after its closing quote.
        let lead = after.len() - after.trim_start_matches(['-', ' ']).len();
        let from = match after[lead..].chars().next() {
            Some(q @ ('"' | '`')) => after[lead + 1..]
                .find(q)
                .map_or(after.len(), |i| lead + 1 + i + 1),
            _ => 0,
        };
        let Some(end) = after[from..].find("}}").map(|i| from + i) else {
            return Err("a `{{` without its `}}`".into());
        };
        let inner = &after[..end];
        match template_part(inner) {
            Some(Tpl::Var("PC_REPLICA_NUM")) => out.push_str(replica),
            Some(Tpl::Var(name)) => match vars(name) {
                Some(v) => out.push_str(&v),
                None => return Err(format!("{{{{{inner}}}}}: no such variable in vars")),
            },
            Some(Tpl::Literal(text)) => out.push_str(&text),
            None => {
                return Err(format!(
                    "{{{{{inner}}}}} is a Go template beyond {{{{.NAME}}}} and {{{{\"text\"}}}}, which the import does not evaluate"
                ))
            }
        }
        rest = &after[end + 2..];
    }
    out.push_str(rest);
    Ok(out)
}

/// Words a shell runs the same way sup's `cmd` string splitting does: plain characters in
/// quotes or not, no variable, glob, redirection, operator, escape or builtin.
fn plain_words(cmd: &str) -> Option<Vec<String>> {
    const BUILTINS: &[&str] = &[
        "cd", "export", "source", ".", "exit", "set", "unset", "ulimit", "umask", "exec", "eval",
        "trap", "wait", "read", "alias", "shift", "if", "for", "while", "until", "case",
        "function", "time", "!", "{", "declare", "local", "readonly", "typeset", "builtin",
        "command", "type", "hash", "jobs", "fg", "bg", "[", "[[", "test",
    ];
    let ok = cmd.chars().all(|c| {
        c.is_ascii_alphanumeric()
            || " _-./:=,@%+'\"".contains(c)
            || (!c.is_ascii() && c != '\u{a0}')
    });
    if !ok {
        return None;
    }
    let words = shell_words::split(cmd).ok()?;
    let first = words.first()?;
    if first.is_empty() || first.contains('=') || BUILTINS.contains(&first.as_str()) {
        return None;
    }
    Some(words)
}

/// The template context of a value: its variables, and what `{{.PC_REPLICA_NUM}}` becomes.
type Templating<'a> = Option<(&'a dyn Fn(&str) -> Option<String>, &'a str)>;

/// How a string value is read: expanded from the environment when the file is loaded
/// (`Plain`), or left for the shell that runs it (`Shell`: only `$$` is process-compose's).
#[derive(Clone, Copy, PartialEq)]
enum Field {
    Plain,
    Shell,
}

struct Tr<'a> {
    file: &'a str,
    env: &'a dyn Fn(&str) -> Option<String>,
    /// `disable_env_expansion: false`.
    expand: bool,
    notes: Vec<Note>,
    /// Variables expanded from the importing environment, with the first line that used one.
    env_used: BTreeMap<String, usize>,
    /// Set while the second and later programs of a split process are written: their notes
    /// would repeat the first one's.
    quiet: bool,
}

impl Tr<'_> {
    fn note(&mut self, line: usize, path: &str, message: impl Into<String>) {
        if self.quiet {
            return;
        }
        self.notes.push(Note {
            file: self.file.to_string(),
            line,
            section: String::new(),
            key: path.to_string(),
            message: message.into(),
        });
    }

    fn scalar(&mut self, node: &Node, path: &str, what: &str) -> Option<String> {
        match &node.kind {
            Kind::Scalar(s) if !s.is_null() => Some(s.text.clone()),
            Kind::Scalar(_) => None,
            _ => {
                self.note(
                    node.line,
                    path,
                    format!("not translated: expected {what}, found {}", node.describe()),
                );
                None
            }
        }
    }

    /// A string value as process-compose reads it: the environment, then the template.
    fn string(
        &mut self,
        node: &Node,
        path: &str,
        field: Field,
        tpl: Templating<'_>,
    ) -> Option<String> {
        let raw = self.scalar(node, path, "a string")?;
        let text = match (self.expand, field) {
            (false, _) => raw,
            (true, Field::Shell) => unescape_dollars(&raw),
            (true, Field::Plain) => {
                let mut used = Vec::new();
                let t = expand_env(&raw, self.env, &mut used);
                if !self.quiet {
                    for name in used {
                        self.env_used.entry(name).or_insert(node.line);
                    }
                }
                t
            }
        };
        match tpl {
            None => Some(text),
            Some((vars, replica)) => match render(&text, vars, replica) {
                Ok(t) => Some(t),
                Err(why) => {
                    self.note(node.line, path, format!("not translated: {why}"));
                    None
                }
            },
        }
    }

    fn int(&mut self, node: &Node, path: &str, min: i64, max: i64) -> Option<i64> {
        let text = self.string(node, path, Field::Plain, None)?;
        match text.trim().parse::<i64>() {
            Ok(n) if (min..=max).contains(&n) => Some(n),
            _ => {
                self.note(
                    node.line,
                    path,
                    format!(
                        "not translated: expected an integer from {min} to {max}, found {text:?}"
                    ),
                );
                None
            }
        }
    }

    fn boolean(&mut self, node: &Node, path: &str) -> Option<bool> {
        let b = boolean(node);
        if b.is_none() && !node.is_null() {
            self.note(
                node.line,
                path,
                format!(
                    "not translated: expected true or false, found {}",
                    node.describe()
                ),
            );
        }
        b
    }
}

/// A program as it will be written.
struct Program {
    name: String,
    /// The process it came from (several programs when its replicas were split).
    origin: String,
    comment: Option<String>,
    /// Lines under the program's name, indented.
    lines: Vec<String>,
    /// (process name as written, sup condition, line) resolved once every program is known.
    deps: Vec<(String, &'static str, usize)>,
    namespace: Option<(String, usize)>,
    /// `autorestart: always`: it never completes, in sup's sense.
    always: bool,
}

/// The shell process-compose runs commands with.
struct Shell {
    command: String,
    argument: String,
}

const TOP_NOT_NEEDED: &[(&str, &str)] = &[
    ("version", "not needed: sup's config has no version"),
    (
        "log_length",
        "not needed: the lines process-compose keeps for its TUI; `sup tail -n N` reads the job's files",
    ),
    (
        "is_strict",
        "not needed: sup always refuses unknown keys (`sup check`)",
    ),
    (
        "is_tui_disabled",
        "not needed: `sup daemon` has no TUI (`sup top` is a client)",
    ),
    (
        "log_format",
        "not translated: sup's event log has one format",
    ),
    (
        "extends",
        "not translated: the file it extends is not read; import it too and merge the programs",
    ),
    (
        "env_cmds",
        "not translated: sup runs no command when it loads its config; set the values in env or env_file",
    ),
    (
        "ordered_shutdown",
        "not needed: sup always stops dependents before what they depend on",
    ),
];

/// Translate a process-compose file. `Err((line, message))` when the text is not YAML or not a
/// map with `processes:`; anything else that cannot be translated is a note.
pub fn translate(
    text: &str,
    file: &str,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Translation, (usize, String)> {
    let (root, errors) = yaml::parse(text);
    let Some(root) = root else {
        let (line, msg) = errors
            .first()
            .map_or((0, "an empty file".to_string()), |e| {
                (e.line, format!("{}:{}", e.col, e.message))
            });
        return Err((line, msg));
    };
    if !matches!(root.kind, Kind::Map(_)) {
        return Err((root.line, "expected a map with processes:".into()));
    }
    let mut tr = Tr {
        file,
        env,
        expand: get(&root, "disable_env_expansion").and_then(boolean) != Some(true),
        notes: Vec::new(),
        env_used: BTreeMap::new(),
        quiet: false,
    };
    for e in &errors {
        let path = e.path.join(".");
        tr.note(
            e.line,
            &path,
            format!("{} (process-compose refuses this file)", e.message),
        );
    }
    let mut daemon: Vec<String> = Vec::new();
    let mut shell = Shell {
        command: "bash".into(),
        argument: "-c".into(),
    };
    let mut global_env: Vec<(String, String, usize)> = Vec::new();
    let mut global_vars: BTreeMap<String, String> = BTreeMap::new();
    let mut processes: Option<&Node> = None;
    for (k, v) in entries(&root) {
        let name = key_text(k);
        match name.as_str() {
            "processes" => processes = Some(v),
            "disable_env_expansion" => {}
            "environment" => global_env = env_list(&mut tr, v, "environment"),
            "vars" => global_vars = vars_map(&mut tr, v, "vars"),
            "shell" => {
                for (sk, sv) in entries(v) {
                    let sname = key_text(sk);
                    let path = format!("shell.{sname}");
                    match sname.as_str() {
                        "shell_command" => {
                            if let Some(t) = tr.string(sv, &path, Field::Plain, None) {
                                shell.command = t;
                            }
                        }
                        "shell_argument" => {
                            if let Some(t) = tr.string(sv, &path, Field::Plain, None) {
                                shell.argument = t;
                            }
                        }
                        "elevated_shell_command" | "elevated_shell_argument" => tr.note(
                            sk.line,
                            &path,
                            "not translated: sup runs nothing through sudo (a job's user: needs the daemon to be root)",
                        ),
                        _ => tr.note(sk.line, &path, "unknown key: not translated"),
                    }
                }
            }
            "log_level" => {
                let level = v.text().map(|t| t.trim().to_ascii_lowercase());
                let to = match level.as_deref() {
                    Some("trace") => Some("trace"),
                    Some("debug") => Some("debug"),
                    Some("info") => Some("info"),
                    Some("warn" | "warning") => Some("warn"),
                    Some("error" | "fatal" | "panic") => Some("error"),
                    _ => None,
                };
                match to {
                    Some(l) => daemon.push(format!("  loglevel: {l}\n")),
                    None => tr.note(
                        v.line,
                        "log_level",
                        format!("not translated: unknown level {}", v.describe()),
                    ),
                }
            }
            "log_location" => tr.note(
                k.line,
                "log_location",
                "not translated: process-compose writes every process's output into this one file; sup writes each job's own files (under daemon.logdir, or the job's stdout)",
            ),
            "log_configuration" => tr.note(
                k.line,
                "log_configuration",
                "not translated: it shapes process-compose's one combined log; sup's job files hold the lines as written (rotation is per job: stdout_maxbytes, stdout_backups)",
            ),
            other => match TOP_NOT_NEEDED.iter().find(|(n, _)| *n == other) {
                Some((_, why)) => tr.note(k.line, other, *why),
                None => tr.note(k.line, other, "unknown key: not translated"),
            },
        }
    }
    let mut programs: Vec<Program> = Vec::new();
    let mut taken: BTreeMap<String, usize> = BTreeMap::new();
    match processes {
        None => tr.note(0, "processes", "no processes: nothing to translate"),
        Some(p) if !matches!(p.kind, Kind::Map(_)) && !p.is_null() => tr.note(
            p.line,
            "processes",
            format!(
                "not translated: expected a map of processes, found {}",
                p.describe()
            ),
        ),
        Some(p) => {
            for (k, v) in entries(p) {
                if programs.len() >= MAX_PROGRAMS {
                    tr.note(
                        k.line,
                        "processes",
                        format!("more than {MAX_PROGRAMS} programs: the rest are left out"),
                    );
                    break;
                }
                let ctx = Global {
                    env: &global_env,
                    vars: &global_vars,
                    shell: &shell,
                };
                process(&mut tr, k, v, &ctx, &mut programs, &mut taken);
            }
        }
    }

    // Dependencies: a process's name stands for every program it became.
    let mut became: BTreeMap<String, Vec<(String, bool)>> = BTreeMap::new();
    for p in &programs {
        became
            .entry(p.origin.clone())
            .or_default()
            .push((p.name.clone(), p.always));
    }
    let mut dep_lines: Vec<Vec<String>> = Vec::new();
    for p in &programs {
        let mut deps: BTreeMap<String, &str> = BTreeMap::new();
        for (target, cond, line) in &p.deps {
            match became.get(target) {
                Some(names) => {
                    let mut said = false;
                    for (n, always) in names {
                        let cond = if *cond == "completed" && *always {
                            if !said {
                                tr.note(
                                    *line,
                                    &format!("processes.{}.depends_on.{target}", p.origin),
                                    format!("translated as started: {target} restarts always, and a sup job that always restarts never completes"),
                                );
                                said = true;
                            }
                            "started"
                        } else {
                            cond
                        };
                        deps.insert(n.clone(), cond);
                    }
                }
                None => {
                    tr.quiet = false;
                    tr.note(
                        *line,
                        &format!("processes.{}.depends_on.{target}", p.origin),
                        format!("{target:?} is no process here (or was left out): not translated"),
                    );
                }
            }
        }
        dep_lines.push(
            deps.into_iter()
                .map(|(n, c)| format!("      {}: {c}\n", ykey(&n)))
                .collect(),
        );
    }
    tr.quiet = false;

    // Namespaces become groups.
    let mut groups: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let mut group_line: BTreeMap<String, usize> = BTreeMap::new();
    for p in &programs {
        if let Some((ns, line)) = &p.namespace {
            groups.entry(ns.clone()).or_default().push(p.name.clone());
            group_line.entry(ns.clone()).or_insert(*line);
        }
    }
    groups.retain(|g, _| {
        let clash = g == "all" || taken.contains_key(g);
        if clash {
            let line = group_line.get(g).copied().unwrap_or(0);
            tr.note(line, "namespace", format!("{g:?} is also a program's name (or `all`), and a sup name means one thing: not translated as a group"));
        }
        !clash
    });
    for (g, line) in &group_line {
        if groups.contains_key(g) && sup_name(g) != *g {
            tr.note(
                *line,
                "namespace",
                format!("{g:?} is not a sup name: the group is {}", sup_name(g)),
            );
        }
    }

    for (name, line) in std::mem::take(&mut tr.env_used) {
        tr.note(
            line,
            "",
            format!("${name} expanded from this environment, as process-compose expands it when it loads the file"),
        );
    }

    let mut y = String::new();
    y.push_str("# Translated from process-compose's config by `sup import process-compose`.\n");
    y.push_str(&format!("# Source: {}\n", comment(file)));
    y.push_str("# What was not translated is listed on stderr.\n");
    if !daemon.is_empty() {
        y.push_str("daemon:\n");
        for l in &daemon {
            y.push_str(l);
        }
    }
    if !groups.is_empty() {
        y.push_str("groups:\n");
        for (g, names) in &groups {
            let list: Vec<String> = names.iter().map(|n| quote(n)).collect();
            y.push_str(&format!(
                "  {}: [{}]\n",
                ykey(&sup_name(g)),
                list.join(", ")
            ));
        }
    }
    if programs.is_empty() {
        y.push_str("programs: {}\n");
    } else {
        y.push_str("programs:\n");
        for (p, deps) in programs.iter().zip(&dep_lines) {
            if let Some(c) = &p.comment {
                y.push_str(&format!("  # {}\n", comment(c)));
            }
            y.push_str(&format!("  {}:\n", ykey(&p.name)));
            for l in &p.lines {
                y.push_str(l);
            }
            if !deps.is_empty() {
                y.push_str("    depends_on:\n");
                for l in deps {
                    y.push_str(l);
                }
            }
        }
    }
    // In the file's order; notes on the same line keep theirs.
    tr.notes.sort_by_key(|n| n.line);
    Ok(Translation {
        yaml: y,
        notes: tr.notes,
        programs: programs.len(),
    })
}

struct Global<'a> {
    env: &'a [(String, String, usize)],
    vars: &'a BTreeMap<String, String>,
    shell: &'a Shell,
}

fn valid_env_name(k: &str) -> bool {
    !k.is_empty()
        && k.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
        && !k.starts_with(|c: char| c.is_ascii_digit())
}

/// `environment: ["K=V", …]`: (name, value, line) in order.
fn env_list(tr: &mut Tr, node: &Node, path: &str) -> Vec<(String, String, usize)> {
    let mut out = Vec::new();
    let items = match &node.kind {
        Kind::Seq(items) => items,
        Kind::Scalar(s) if s.is_null() => return out,
        _ => {
            tr.note(
                node.line,
                path,
                format!(
                    "not translated: expected a list of K=V, found {}",
                    node.describe()
                ),
            );
            return out;
        }
    };
    for item in items {
        let Some(text) = tr.string(item, path, Field::Plain, None) else {
            continue;
        };
        match text.split_once('=') {
            Some((k, v)) if valid_env_name(k) => {
                out.push((k.to_string(), v.to_string(), item.line))
            }
            _ => tr.note(
                item.line,
                path,
                format!("{text:?} is not NAME=value with a name sup accepts: left out"),
            ),
        }
    }
    out
}

fn vars_map(tr: &mut Tr, node: &Node, path: &str) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    if !matches!(node.kind, Kind::Map(_)) && !node.is_null() {
        tr.note(
            node.line,
            path,
            format!("not translated: expected a map, found {}", node.describe()),
        );
    }
    for (k, v) in entries(node) {
        let name = key_text(k);
        match v.scalar() {
            Some(s) => {
                out.insert(name, s.text.clone());
            }
            None => tr.note(
                v.line,
                &format!("{path}.{name}"),
                "not translated: only scalar variables are used by {{.NAME}}",
            ),
        }
    }
    out
}

/// process-compose's replica names: `web-0` … `web-9`, `web-00` … for 10 and more.
fn replica_name(name: &str, n: i64, replicas: i64) -> String {
    // `1 + int(log10(replicas))`: the digits of the count.
    let width = replicas.max(1).to_string().len();
    format!("{name}-{n:0width$}")
}

const PROCESS_KEYS: &[&str] = &[
    "command",
    "entrypoint",
    "working_dir",
    "environment",
    "availability",
    "depends_on",
    "readiness_probe",
    "liveness_probe",
    "shutdown",
    "replicas",
    "log_location",
    "log_configuration",
    "disabled",
    "namespace",
    "is_daemon",
    "is_foreground",
    "vars",
    "description",
];

const PROCESS_NOT_TRANSLATED: &[(&str, &str)] = &[
    ("is_tty", "not translated: sup gives a job no terminal (its output goes to files)"),
    ("is_elevated", "not translated: sup runs nothing through sudo; with the daemon as root, `user:` picks a job's user"),
    ("disable_ansi_colors", "not translated: sup writes the output as the process wrote it"),
    ("ready_log_line", "not translated: sup has no readiness on a log line (ready: notify, fd:N or health instead)"),
    ("launch_timeout_seconds", "not translated: sup spawns at once; ready_timeout bounds readiness"),
    ("watch", "not translated: sup does not restart a job when files change"),
    ("schedule", "not translated: write sup's own schedule (`every 5m`, a cron expression) by hand"),
];

#[allow(clippy::too_many_lines)]
fn process(
    tr: &mut Tr,
    k: &Node,
    v: &Node,
    g: &Global,
    programs: &mut Vec<Program>,
    taken: &mut BTreeMap<String, usize>,
) {
    tr.quiet = false;
    let name = key_text(k);
    let at = |key: &str| format!("processes.{name}.{key}");
    if !matches!(v.kind, Kind::Map(_)) {
        tr.note(
            k.line,
            &format!("processes.{name}"),
            format!("not translated: expected a map, found {}", v.describe()),
        );
        return;
    }
    for (pk, _) in entries(v) {
        let key = key_text(pk);
        if PROCESS_KEYS.contains(&key.as_str()) {
            continue;
        }
        match PROCESS_NOT_TRANSLATED.iter().find(|(n, _)| *n == key) {
            Some((_, why)) => tr.note(pk.line, &at(&key), *why),
            None => tr.note(pk.line, &at(&key), "unknown key: not translated"),
        }
    }
    if get(v, "is_foreground").and_then(boolean) == Some(true) {
        tr.note(
            k.line,
            &at("is_foreground"),
            "a foreground process needs a terminal and is started by hand in process-compose's TUI: left out",
        );
        return;
    }
    let replicas = match get(v, "replicas") {
        None => 1,
        Some(n) => match tr.int(n, &at("replicas"), 0, 100_000) {
            Some(0) | None => 1,
            Some(r) => r,
        },
    };
    let mut local_vars = g.vars.clone();
    if let Some(pv) = get(v, "vars") {
        local_vars.extend(vars_map(tr, pv, &at("vars")));
    }
    let vars = |n: &str| local_vars.get(n).cloned();

    // Split replicas into programs when their values other than the command differ.
    let per_replica = |key: &str| {
        get(v, key).is_some_and(|n| {
            let mut stack = vec![n];
            let mut found = false;
            // Bounded by the tree's own depth limit; a loop, not a recursion.
            while let Some(n) = stack.pop() {
                match &n.kind {
                    Kind::Scalar(s) => found |= s.text.contains("PC_REPLICA_NUM"),
                    Kind::Seq(items) => stack.extend(items.iter()),
                    Kind::Map(e) => stack.extend(e.iter().map(|(_, v)| v)),
                }
            }
            found
        })
    };
    let split = replicas > 1
        && (get(v, "log_location").is_some()
            || per_replica("working_dir")
            || per_replica("readiness_probe")
            || per_replica("liveness_probe"));
    let sname = sup_name(&name);
    if sname != name {
        tr.note(
            k.line,
            &format!("processes.{name}"),
            format!("{name:?} is not a sup name ([A-Za-z0-9_.-]+): translated as {sname}"),
        );
    }
    let emitted: Vec<(String, Option<i64>)> = if split {
        tr.note(
            get(v, "replicas").map_or(k.line, |n| n.line),
            &at("replicas"),
            format!(
                "its replicas differ in more than the command (log_location, working_dir or a probe): translated as {replicas} programs, {} … {}",
                replica_name(&sname, 0, replicas),
                replica_name(&sname, replicas - 1, replicas)
            ),
        );
        (0..replicas)
            .map(|n| (replica_name(&sname, n, replicas), Some(n)))
            .collect()
    } else {
        vec![(sname.clone(), None)]
    };
    let line_of = |key: &str| get(v, key).map_or(k.line, |n| n.line);
    for (pname, num) in emitted {
        if let Some(&line) = taken.get(&pname) {
            tr.note(
                k.line,
                &format!("processes.{name}"),
                format!("{pname} is already a program (from line {line}): left out"),
            );
            continue;
        }
        // What `{{.PC_REPLICA_NUM}}` becomes: the number, or the shell's view of sup's.
        let replica_text: String = match num {
            Some(n) => n.to_string(),
            None if replicas > 1 => "${SUP_PROCESS_NUM}".into(),
            None => "0".into(),
        };
        let tpl: Templating<'_> = Some((&vars, replica_text.as_str()));
        let mut lines: Vec<String> = Vec::new();
        let mut push = |k: &str, val: String| lines.push(format!("    {k}: {val}\n"));

        // The command.
        let command = get(v, "command")
            .and_then(|c| tr.string(c, &at("command"), Field::Shell, tpl))
            .filter(|c| !c.trim().is_empty());
        if let Some(cmd) = &command {
            let refs_env = cmd.replace("${SUP_PROCESS_NUM}", "").contains('$');
            if tr.expand && refs_env {
                tr.note(
                    line_of("command"),
                    &at("command"),
                    "its $VARIABLES are expanded by the shell when the job starts, from the job's env (the daemon's environment and env:); process-compose expanded them from its own environment and .env when it loaded the file",
                );
            }
            if replicas > 1 && num.is_none() && cmd.contains("${SUP_PROCESS_NUM}") {
                tr.note(
                    line_of("command"),
                    &at("command"),
                    "{{.PC_REPLICA_NUM}} is written as ${SUP_PROCESS_NUM}: sup numbers the instances 0 … N-1 in that variable, as process-compose numbers its replicas",
                );
            }
            match plain_words(cmd) {
                Some(_) if !cmd.contains("${SUP_PROCESS_NUM}") => push("cmd", quote(cmd)),
                _ => push(
                    "cmd",
                    format!(
                        "[{}, {}, {}]",
                        quote(&g.shell.command),
                        quote(&g.shell.argument),
                        quote(cmd)
                    ),
                ),
            }
            if get(v, "entrypoint").is_some() {
                tr.note(
                    line_of("entrypoint"),
                    &at("entrypoint"),
                    "ignored, as process-compose ignores it beside command",
                );
            }
        } else if let Some(ep) = get(v, "entrypoint") {
            let words: Vec<String> = match &ep.kind {
                Kind::Seq(items) => items
                    .iter()
                    .filter_map(|i| tr.string(i, &at("entrypoint"), Field::Plain, None))
                    .collect(),
                _ => Vec::new(),
            };
            if words.is_empty() || words[0].is_empty() {
                tr.note(
                    ep.line,
                    &at("entrypoint"),
                    "not a list of words: the process is left out",
                );
                continue;
            }
            let list: Vec<String> = words.iter().map(|w| quote(w)).collect();
            push("cmd", format!("[{}]", list.join(", ")));
        } else {
            tr.note(
                k.line,
                &format!("processes.{name}"),
                if get(v, "command").is_some_and(|c| !c.is_null()) {
                    "its command is empty or not translated: the process is left out"
                } else {
                    "no command: the process is left out"
                },
            );
            return;
        }
        if replicas > 1 && !split {
            push("numprocs", replicas.to_string());
        }

        // Start and restart.
        if get(v, "disabled").and_then(|d| tr.boolean(d, &at("disabled"))) == Some(true) {
            push("autostart", "false".into());
        }
        let mut autorestart = "never";
        let mut critical = false;
        if let Some(a) = get(v, "availability") {
            for (ak, av) in entries(a) {
                let akey = key_text(ak);
                let path = at(&format!("availability.{akey}"));
                match akey.as_str() {
                    "restart" => match av.text().map(str::trim) {
                        Some("always") => autorestart = "always",
                        Some("on_failure") => autorestart = "unexpected",
                        Some("no") | None => autorestart = "never",
                        Some("exit_on_failure") => {
                            autorestart = "never";
                            tr.note(av.line, &path, "translated as autorestart: never; sup has no \"end the daemon on a failure only\": `critical: true` ends it whenever the job ends for good, exit 0 included");
                        }
                        Some(other) => tr.note(av.line, &path, format!("{other:?} is none of always, on_failure, exit_on_failure and no, so process-compose does not restart it either: autorestart: never")),
                    },
                    "exit_on_end" => {
                        if tr.boolean(av, &path) == Some(true) {
                            critical = true;
                        }
                    }
                    "max_restarts" => {
                        if tr.int(av, &path, 0, i64::MAX) != Some(0) {
                            tr.note(av.line, &path, "not translated: sup restarts a job without a cap (startretries counts failed spawns only, with starttime 0)");
                        }
                    }
                    "backoff_seconds" => tr.note(av.line, &path, "not translated: sup's wait after a crash is its own: none the first time, then 1 s, 2 s … up to 60 s while runs last less than 10 s"),
                    _ => tr.note(ak.line, &path, "unknown key: not translated"),
                }
            }
        }
        push("autorestart", autorestart.into());
        push("starttime", "0".into());
        if critical {
            push("critical", "true".into());
        }

        // Stopping.
        if let Some(s) = get(v, "shutdown") {
            for (sk, sv) in entries(s) {
                let skey = key_text(sk);
                let path = at(&format!("shutdown.{skey}"));
                match skey.as_str() {
                    "signal" => match sv.text().and_then(|t| signal::parse(t.trim())) {
                        Some(sig) => push(
                            "stopsignal",
                            signal::name(sig).trim_start_matches("SIG").to_string(),
                        ),
                        None => tr.note(sv.line, &path, format!("not translated: unknown signal {}", sv.describe())),
                    },
                    "timeout_seconds" => {
                        if let Some(n) = tr.int(sv, &path, 0, 1_000_000) {
                            push("stoptime", n.to_string());
                        }
                    }
                    "command" => tr.note(sk.line, &path, "not translated: sup stops a job with its stopsignal, then SIGKILL after stoptime; it runs no stop command"),
                    "parent_only" => {
                        if tr.boolean(sv, &path) == Some(true) {
                            tr.note(sv.line, &path, "not translated: sup's stop always signals the whole process group (signal_target: main applies to `sup signal` only)");
                        }
                    }
                    _ => tr.note(sk.line, &path, "unknown key: not translated"),
                }
            }
        }
        if get(v, "is_daemon").and_then(|d| tr.boolean(d, &at("is_daemon"))) == Some(true) {
            tr.note(line_of("is_daemon"), &at("is_daemon"), "not translated: sup supervises the process it starts, so a command that forks into the background and exits looks ended; run the program in the foreground (docker run without -d, a server's foreground flag)");
        }

        // Where and with what.
        if let Some(wd) =
            get(v, "working_dir").and_then(|w| tr.string(w, &at("working_dir"), Field::Plain, tpl))
        {
            if !wd.is_empty() {
                if !wd.starts_with('/') {
                    tr.note(line_of("working_dir"), &at("working_dir"), "a relative path: sup resolves it beside the new config, process-compose from the folder it runs in");
                }
                push("workingdir", quote(&wd));
            }
        }
        if let Some(log) = get(v, "log_location")
            .and_then(|l| tr.string(l, &at("log_location"), Field::Plain, tpl))
        {
            if !log.is_empty() {
                let log = match num {
                    Some(n) if !log.contains("{PC_REPLICA_NUM}") => format!("{log}.{n}"),
                    Some(n) => log.replace("{PC_REPLICA_NUM}", &n.to_string()),
                    None => log,
                };
                if !log.starts_with('/') {
                    tr.note(line_of("log_location"), &at("log_location"), "a relative path: sup resolves it beside the new config, process-compose from the folder it runs in");
                }
                push("stdout", quote(&log));
                push("redirect_stderr", "true".into());
                if let Some(lc) = get(v, "log_configuration") {
                    log_configuration(tr, lc, &at("log_configuration"), &mut push);
                }
            }
        } else if get(v, "log_configuration").is_some() {
            tr.note(
                line_of("log_configuration"),
                &at("log_configuration"),
                "not translated: without log_location it shapes process-compose's combined log",
            );
        }
        let mut env: Vec<(String, String)> = vec![("PC_PROC_NAME".into(), name.clone())];
        if replicas == 1 || num.is_some() {
            env.push(("PC_REPLICA_NUM".into(), num.unwrap_or(0).to_string()));
        } else {
            tr.note(line_of("replicas"), &at("replicas"), format!("translated as numprocs: {replicas}; instances are {sname}:0 … {sname}:{} (process-compose: {} …), and PC_REPLICA_NUM is not in their env: sup gives each one SUP_PROCESS_NUM", replicas - 1, replica_name(&sname, 0, replicas)));
        }
        let local_env = get(v, "environment")
            .map(|e| env_list(tr, e, &at("environment")))
            .unwrap_or_default();
        for (ek, ev, _) in g.env.iter().chain(&local_env) {
            env.retain(|(e, _)| e != ek);
            env.push((ek.clone(), ev.clone()));
        }
        let mut block = String::from("    env:\n");
        for (ek, ev) in &env {
            block.push_str(&format!("      {}: {}\n", ykey(ek), quote(ev)));
        }
        lines.push(block);

        // Health and readiness.
        let ready = get(v, "readiness_probe").filter(|p| !p.is_null());
        let live = get(v, "liveness_probe").filter(|p| !p.is_null());
        if let (Some(_), Some(l)) = (ready, live) {
            tr.note(l.line, &at("liveness_probe"), "not translated: a sup job has one healthcheck, here the readiness probe's (it restarts the job when it fails, as a liveness probe would)");
        }
        let probe = ready
            .map(|p| (p, "readiness_probe"))
            .or(live.map(|p| (p, "liveness_probe")));
        if let Some((p, key)) = probe {
            if let Some(check) = health(tr, p, &at(key), g.shell, tpl) {
                if key == "readiness_probe" {
                    lines.push("    ready: health\n".into());
                    lines.push(format!("    ready_timeout: {}\n", check.give_up));
                }
                lines.push(check.block);
                if autorestart == "never" && !tr.quiet {
                    tr.note(p.line, &at(key), "process-compose stops a process whose probe keeps failing, and with restart no leaves it stopped; sup restarts it (healthcheck.on_unhealthy: restart)");
                }
            }
        }

        // Order.
        let mut deps = Vec::new();
        if let Some(d) = get(v, "depends_on") {
            if !matches!(d.kind, Kind::Map(_)) && !d.is_null() {
                tr.note(
                    d.line,
                    &at("depends_on"),
                    format!(
                        "not translated: expected a map of process to condition, found {}",
                        d.describe()
                    ),
                );
            }
            for (dk, dv) in entries(d) {
                let target = key_text(dk);
                let path = at(&format!("depends_on.{target}"));
                let cond_node = get(dv, "condition").unwrap_or(dv);
                for (ck, _) in entries(dv) {
                    if ck.text() != Some("condition") {
                        tr.note(
                            ck.line,
                            &format!("{path}.{}", key_text(ck)),
                            "unknown key: not translated",
                        );
                    }
                }
                let word = cond_node.text().map(str::trim).unwrap_or("process_started");
                let cond = match word {
                    "process_started" => "started",
                    "process_healthy" => "healthy",
                    "process_completed_successfully" => "completed",
                    "process_completed" => {
                        tr.note(cond_node.line, &path, "translated as completed, which in sup means an exit with a code in the dependency's exitcodes ([0]); process_completed accepts any code: list the others in its exitcodes if they will do");
                        "completed"
                    }
                    "process_log_ready" => {
                        tr.note(
                            cond_node.line,
                            &path,
                            "translated as started: sup has no readiness on a log line",
                        );
                        "started"
                    }
                    other => {
                        tr.note(
                            cond_node.line,
                            &path,
                            format!("not translated: unknown condition {other:?}"),
                        );
                        continue;
                    }
                };
                deps.push((target, cond, dk.line));
            }
        }
        let namespace = get(v, "namespace").and_then(|n| {
            let t = tr.string(n, &at("namespace"), Field::Plain, None)?;
            (!t.trim().is_empty()).then(|| (t.trim().to_string(), n.line))
        });
        let comment =
            get(v, "description").and_then(|d| tr.string(d, &at("description"), Field::Plain, tpl));
        taken.insert(pname.clone(), k.line);
        programs.push(Program {
            name: pname,
            origin: name.clone(),
            comment,
            lines,
            deps,
            namespace,
            always: autorestart == "always",
        });
        tr.quiet = true;
    }
    tr.quiet = false;
}

fn log_configuration(tr: &mut Tr, lc: &Node, path: &str, push: &mut dyn FnMut(&str, String)) {
    for (lk, lv) in entries(lc) {
        let key = key_text(lk);
        let p = format!("{path}.{key}");
        match key.as_str() {
            "rotation" => {
                for (rk, rv) in entries(lv) {
                    let rkey = key_text(rk);
                    let rp = format!("{p}.{rkey}");
                    match rkey.as_str() {
                        "max_size_mb" => {
                            if let Some(n) = tr.int(rv, &rp, 0, 1 << 20) {
                                push("stdout_maxbytes", quote(&format!("{n}MB")));
                            }
                        }
                        "max_backups" => {
                            if let Some(n) = tr.int(rv, &rp, 0, 100_000) {
                                push("stdout_backups", n.to_string());
                            }
                        }
                        "max_age_days" | "compress" => tr.note(rk.line, &rp, "not translated: sup keeps stdout_backups rotated files, uncompressed, whatever their age"),
                        _ => tr.note(rk.line, &rp, "unknown key: not translated"),
                    }
                }
            }
            "add_timestamp" => {
                if tr.boolean(lv, &p) == Some(true) {
                    push("timestamps", "true".into());
                    tr.note(lk.line, &p, "translated as timestamps: true (an RFC 3339 time before each line; timestamp_format is not followed)");
                }
            }
            _ => tr.note(lk.line, &p, "not translated: sup writes each line as the process wrote it, with no JSON or fields around it"),
        }
    }
}

fn at_least_one(tr: &mut Tr, v: &Node, path: &str) -> Option<i64> {
    tr.int(v, path, 0, 1_000_000).filter(|n| *n >= 1)
}

struct Check {
    block: String,
    /// `ready_timeout`: process-compose gives up after `failure_threshold` failed probes.
    give_up: u64,
}

fn health(tr: &mut Tr, p: &Node, path: &str, shell: &Shell, tpl: Templating<'_>) -> Option<Check> {
    let mut initial = 0i64;
    let mut period = 10i64;
    let mut timeout = 1i64;
    let mut failures = 3i64;
    let mut probe: Option<String> = None;
    let mut kinds = 0;
    for (k, v) in entries(p) {
        let key = key_text(k);
        let kp = format!("{path}.{key}");
        match key.as_str() {
            "initial_delay_seconds" => initial = tr.int(v, &kp, 0, 1_000_000).unwrap_or(initial),
            // Below 1, process-compose takes its default, as here.
            "period_seconds" => period = at_least_one(tr, v, &kp).unwrap_or(period),
            "timeout_seconds" => timeout = at_least_one(tr, v, &kp).unwrap_or(timeout),
            "failure_threshold" => failures = at_least_one(tr, v, &kp).unwrap_or(failures),
            "success_threshold" => {
                if tr.int(v, &kp, 0, 1_000_000).is_some_and(|n| n > 1) {
                    tr.note(v.line, &kp, "not translated: one passing check is enough in sup (process-compose does not follow it either)");
                }
            }
            "exec" => {
                kinds += 1;
                for (ek, ev) in entries(v) {
                    let ekey = key_text(ek);
                    let ep = format!("{kp}.{ekey}");
                    match ekey.as_str() {
                        "command" => {
                            if let Some(cmd) = tr.string(ev, &ep, Field::Shell, tpl) {
                                probe = Some(match plain_words(&cmd) {
                                    Some(_) if !cmd.contains("${SUP_PROCESS_NUM}") => {
                                        format!("cmd: {}", quote(&cmd))
                                    }
                                    _ => format!(
                                        "cmd: [{}, {}, {}]",
                                        quote(&shell.command),
                                        quote(&shell.argument),
                                        quote(&cmd)
                                    ),
                                });
                            }
                        }
                        "working_dir" => tr.note(
                            ek.line,
                            &ep,
                            "not translated: sup runs a check in the job's workingdir",
                        ),
                        _ => tr.note(ek.line, &ep, "unknown key: not translated"),
                    }
                }
            }
            "http_get" => {
                kinds += 1;
                probe = http_get(tr, v, &kp, tpl).map(|url| format!("http: {}", quote(&url)));
            }
            _ => tr.note(k.line, &kp, "unknown key: not translated"),
        }
    }
    if kinds > 1 {
        tr.note(
            p.line,
            path,
            "exec and http_get are exclusive: the last one written is kept",
        );
    }
    let Some(probe) = probe else {
        if kinds == 0 {
            tr.note(p.line, path, "neither exec nor http_get: not translated");
        }
        return None;
    };
    let mut block = format!("    healthcheck:\n      {probe}\n      interval: {period}\n      timeout: {timeout}\n      retries: {failures}\n");
    if initial > 0 && path.ends_with("liveness_probe") {
        block.push_str(&format!("      start_period: {initial}\n"));
    }
    let give_up = (initial + period * failures + timeout).max(1) as u64;
    Some(Check { block, give_up })
}

/// `http_get` → `http://IP:PORT/path`. `None` (with a note) when sup cannot probe it.
fn http_get(tr: &mut Tr, h: &Node, path: &str, tpl: Templating<'_>) -> Option<String> {
    let mut host = "127.0.0.1".to_string();
    let mut scheme = "http".to_string();
    let mut url_path = "/".to_string();
    let mut port: Option<String> = None;
    for (k, v) in entries(h) {
        let key = key_text(k);
        let kp = format!("{path}.{key}");
        match key.as_str() {
            "host" => {
                host = tr
                    .string(v, &kp, Field::Plain, tpl)
                    .filter(|t| !t.trim().is_empty())
                    .unwrap_or(host)
            }
            "scheme" => {
                scheme = tr
                    .string(v, &kp, Field::Plain, tpl)
                    .filter(|t| !t.trim().is_empty())
                    .unwrap_or(scheme)
            }
            "path" => {
                url_path = tr
                    .string(v, &kp, Field::Plain, tpl)
                    .filter(|t| !t.trim().is_empty())
                    .unwrap_or(url_path)
            }
            "port" | "num_port" => port = tr.string(v, &kp, Field::Plain, tpl),
            "headers" => tr.note(
                k.line,
                &kp,
                "not translated: sup's HTTP check sends no headers of its own",
            ),
            "status_code" => tr.note(
                k.line,
                &kp,
                "not translated: sup's HTTP check passes on any 2xx or 3xx answer",
            ),
            _ => tr.note(k.line, &kp, "unknown key: not translated"),
        }
    }
    if !scheme.eq_ignore_ascii_case("http") {
        tr.note(h.line, path, format!("not translated: sup's HTTP check speaks plain HTTP, not {scheme}; the probe is left out"));
        return None;
    }
    let host = host.trim().to_string();
    let is_ip = host.parse::<std::net::IpAddr>().is_ok() || host.eq_ignore_ascii_case("localhost");
    if !is_ip {
        tr.note(h.line, path, format!("not translated: sup's HTTP check needs an IP address or localhost (it resolves no names), found {host:?}; the probe is left out"));
        return None;
    }
    let host = if host.contains(':') {
        format!("[{host}]")
    } else {
        host
    };
    let port = match port.as_deref().map(str::trim) {
        None | Some("") => 80,
        Some(p) => {
            match p.parse::<u16>() {
                Ok(n) if n > 0 => n,
                _ => {
                    tr.note(h.line, path, format!("not translated: port {p:?} is not from 1 to 65535; the probe is left out"));
                    return None;
                }
            }
        }
    };
    let url_path = if url_path.starts_with('/') {
        url_path
    } else {
        format!("/{url_path}")
    };
    Some(format!("http://{host}:{port}{url_path}"))
}

#[cfg(test)]
mod unit {
    use super::*;

    fn no_env(_: &str) -> Option<String> {
        None
    }

    #[test]
    fn environment_expansion_follows_process_compose() {
        let env = |n: &str| (n == "A").then(|| "x".to_string());
        let mut used = Vec::new();
        assert_eq!(
            expand_env("$A ${A} ${B:-d} $B $$A $ 1$", &env, &mut used),
            "x x d  $A $ 1$"
        );
        assert_eq!(used, ["A", "A", "B", "B"]);
        assert_eq!(unescape_dollars("a $$B $C"), "a $B $C");
    }

    #[test]
    fn templates_are_only_variables_and_literals() {
        let vars = |n: &str| (n == "OK").then(|| "yes".to_string());
        assert_eq!(
            render("a {{.OK}} {{ .PC_REPLICA_NUM }} {{\"{{.X}}\"}}", &vars, "3").as_deref(),
            Ok("a yes 3 {{.X}}")
        );
        assert!(render("{{if .OK}}x{{end}}", &vars, "0").is_err());
        assert!(render("{{.NOPE}}", &vars, "0").is_err());
        assert!(render("{{.OK", &vars, "0").is_err());
    }

    #[test]
    fn plain_commands_stay_strings_and_the_rest_go_through_the_shell() {
        assert!(plain_words("python3 -m http.server 8080").is_some());
        assert!(plain_words("echo 'a b' \"c\"").is_some());
        for shell in [
            "a | b",
            "a && b",
            "echo $HOME",
            "X=1 prog",
            "cd /tmp",
            "a > f",
            "ls *",
            "a\nb",
            "echo \\x",
        ] {
            assert!(plain_words(shell).is_none(), "{shell}");
        }
    }

    #[test]
    fn replica_names_are_padded_as_process_compose_pads_them() {
        assert_eq!(replica_name("w", 0, 2), "w-0");
        assert_eq!(replica_name("w", 3, 12), "w-03");
        assert_eq!(replica_name("w", 9, 10), "w-09");
    }

    #[test]
    fn not_yaml_is_an_error_with_its_line() {
        let Err((line, _)) = translate("processes:\n  a: [\n", "f.yaml", &no_env) else {
            panic!("translated");
        };
        assert!(line >= 2);
    }
}
