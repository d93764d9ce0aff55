//! One reader per kind of value: a YAML node in, a typed value or a `Bad` out. Each `Bad` says
//! what was found and what would be accepted; `resolve` adds the file, position and key path.
//!
//! Readers go by a scalar's text rather than by YAML's guess at its type, so `numprocs: "2"`
//! works and `umask: 022` is octal, as a person reading the file would expect.

use std::path::{Component, Path, PathBuf};
use std::time::Duration;

use super::duration::parse_duration;
use super::signal;
use super::spec::{
    AutoRestart, Catchup, FirstRun, Output, Overlap, Schedule, Signal, SignalTarget,
};
use super::yaml::{Kind, Node};

/// A value that was not accepted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Bad {
    pub message: String,
    pub hint: Option<String>,
    /// Where, when it is not the node that was read (an item inside a list).
    pub at: Option<(usize, usize)>,
}

impl Bad {
    pub fn new(message: impl Into<String>) -> Bad {
        Bad {
            message: message.into(),
            hint: None,
            at: None,
        }
    }

    pub fn with_hint(self, hint: impl Into<String>) -> Bad {
        self.hint(Some(hint.into()))
    }

    fn hint(mut self, hint: Option<String>) -> Bad {
        self.hint = hint;
        self
    }

    fn at(mut self, node: &Node) -> Bad {
        self.at = Some((node.line, node.col));
        self
    }
}

fn expected(what: &str, node: &Node) -> Bad {
    Bad::new(format!("expected {what}, found {}", node.describe()))
}

pub type Read<T> = Result<T, Bad>;

/// `cmd`: a command line split like a POSIX shell splits words (quotes and backslashes
/// honoured, no expansion), or a list of words. Never empty.
pub fn cmd(node: &Node) -> Read<Vec<String>> {
    const WHAT: &str = "a command line or a list of words";
    let words = match &node.kind {
        Kind::Seq(items) => items
            .iter()
            .map(|item| match item.text() {
                Some(t) => Ok(t.to_string()),
                None => Err(expected("a word", item).at(item)),
            })
            .collect::<Result<Vec<_>, _>>()?,
        Kind::Scalar(s) if !s.is_null() => shell_words::split(&s.text).map_err(|_| {
            Bad::new(format!(
                "unbalanced quotes in {:?}: close every ' and \"",
                s.text
            ))
        })?,
        _ => return Err(expected(WHAT, node)),
    };
    if words.is_empty() || words[0].is_empty() {
        return Err(Bad::new(format!(
            "must not be empty: expected {WHAT}, found {}",
            node.describe()
        )));
    }
    Ok(words)
}

/// A non-negative integer of at least `min` that fits a `u32` (`numprocs`, `startretries`).
pub fn count(node: &Node, min: u32) -> Read<u32> {
    let what = format!("an integer of at least {min}");
    let n = node
        .scalar()
        .and_then(|s| s.as_int())
        .ok_or_else(|| expected(&what, node))?;
    if n < i64::from(min) {
        return Err(Bad::new(format!("must be at least {min}, found {n}")));
    }
    u32::try_from(n).map_err(|_| Bad::new(format!("must be at most {}, found {n}", u32::MAX)))
}

/// Instances per program: each costs a slot, names and a line of `status`, so a typo such as
/// `numprocs: 1000000000` must be an error, not an allocation that aborts the daemon.
pub const MAX_NUMPROCS: u32 = 100_000;

pub fn numprocs(node: &Node) -> Read<u32> {
    let n = count(node, 1)?;
    if n > MAX_NUMPROCS {
        return Err(Bad::new(format!(
            "must be at most {MAX_NUMPROCS}, found {n}"
        )));
    }
    Ok(n)
}

/// `cpu_max`: `50%` of one CPU, or a number of CPUs (`1.5`, `2`), as thousandths of a CPU.
/// From 1% (the kernel's smallest quota is 1 ms per 100 ms) to 1000 CPUs.
pub fn cpu_max(node: &Node) -> Read<u32> {
    let what = "a share of one CPU such as 50% or 250%, or a number of CPUs such as 1.5";
    let text = node.text().ok_or_else(|| expected(what, node))?.trim();
    let millis = parse_cpu_max(text).ok_or_else(|| expected(what, node))?;
    if millis < 10 {
        return Err(Bad::new(format!(
            "must be at least 1% of one CPU, found {text}"
        )));
    }
    if millis > 1_000_000 {
        return Err(Bad::new(format!("must be at most 1000 CPUs, found {text}")));
    }
    Ok(millis)
}

/// `50%` → 500, `12.5%` → 125, `1.5` → 1500, `2` → 2000; `None` for anything else.
pub fn parse_cpu_max(text: &str) -> Option<u32> {
    // Digits with an optional fraction of at most `places` digits, scaled by 10^places.
    fn fixed(s: &str, places: u32) -> Option<u64> {
        let (int, frac) = s.split_once('.').unwrap_or((s, ""));
        if int.is_empty() && frac.is_empty() {
            return None;
        }
        let digits = |d: &str| d.bytes().all(|b| b.is_ascii_digit());
        if !digits(int) || !digits(frac) || frac.len() > places as usize || int.len() > 9 {
            return None;
        }
        let i: u64 = if int.is_empty() { 0 } else { int.parse().ok()? };
        let mut f: u64 = if frac.is_empty() {
            0
        } else {
            frac.parse().ok()?
        };
        for _ in frac.len()..places as usize {
            f *= 10;
        }
        Some(i * 10u64.pow(places) + f)
    }
    let n = match text.strip_suffix('%') {
        Some(pct) => fixed(pct.trim(), 1)?, // tenths of a percent = thousandths of a CPU
        None => fixed(text, 3)?,
    };
    u32::try_from(n).ok()
}

/// `pids_max`: at least 1.
pub fn pids_max(node: &Node) -> Read<u64> {
    let what = "an integer of at least 1";
    let n = node
        .scalar()
        .and_then(|s| s.as_int())
        .ok_or_else(|| expected(what, node))?;
    if n < 1 {
        return Err(Bad::new(format!("must be at least 1, found {n}")));
    }
    Ok(n as u64)
}

pub fn boolean(node: &Node) -> Read<bool> {
    node.scalar()
        .and_then(|s| s.as_bool())
        .ok_or_else(|| expected("true or false", node))
}

/// `always`, `never`, `unexpected`, and the spellings other supervisors use for them.
pub fn autorestart(node: &Node) -> Read<AutoRestart> {
    let what = "always, never or unexpected";
    let s = node.scalar().ok_or_else(|| expected(what, node))?;
    if let Some(b) = s.as_bool() {
        return Ok(if b {
            AutoRestart::Always
        } else {
            AutoRestart::Never
        });
    }
    match s.text.as_str() {
        "always" => Ok(AutoRestart::Always),
        "never" => Ok(AutoRestart::Never),
        "unexpected" | "on-failure" => Ok(AutoRestart::Unexpected),
        _ => Err(expected(what, node)),
    }
}

/// One exit code or a list of them; sorted and without duplicates, so order does not make a
/// reload see a change.
pub fn exitcodes(node: &Node) -> Read<Vec<i32>> {
    let what = "an exit code from 0 to 255 or a list of them";
    let one = |n: &Node| -> Read<i32> {
        let v = n
            .scalar()
            .and_then(|s| s.as_int())
            .ok_or_else(|| expected(what, n).at(n))?;
        if !(0..=255).contains(&v) {
            return Err(Bad::new(format!("exit codes are 0 to 255, found {v}")).at(n));
        }
        Ok(v as i32)
    };
    let mut codes = match &node.kind {
        Kind::Seq(items) if !items.is_empty() => items.iter().map(one).collect::<Read<Vec<_>>>()?,
        Kind::Scalar(s) if !s.is_null() => vec![one(node)?],
        _ => return Err(expected(what, node)),
    };
    codes.sort_unstable();
    codes.dedup();
    Ok(codes)
}

/// A number of seconds (int or float) or a duration string.
pub fn duration(node: &Node) -> Read<Duration> {
    match node.text() {
        Some(t) => parse_duration(t).map_err(Bad::new),
        None => Err(expected(
            "a number of seconds or a duration such as 500ms, 5s, 5m, 1h30m",
            node,
        )),
    }
}

pub fn signal(node: &Node) -> Read<Signal> {
    let what = "a signal name such as TERM, INT, QUIT, HUP, KILL, USR1, or its number";
    let text = node.text().ok_or_else(|| expected(what, node))?;
    signal::parse(text).ok_or_else(|| {
        let upper = text.trim().to_ascii_uppercase();
        let bare = upper.strip_prefix("SIG").unwrap_or(&upper);
        let hint = suggest(bare, signal::names()).map(|s| format!("did you mean {s}?"));
        expected(what, node).hint(hint)
    })
}

/// `stdout`/`stderr`: a path (relative to `base`, `{name}` kept), null/`discard`, or
/// `inherit` (a file of that name is written `./inherit`).
pub fn output(node: &Node, base: &Path) -> Read<Output> {
    if node.is_null() || node.text() == Some("discard") {
        return Ok(Output::Discard);
    }
    if node.text() == Some("inherit") {
        return Ok(Output::Inherit);
    }
    match node.text() {
        Some(t) if !t.is_empty() => Ok(Output::File(absolute(base, t))),
        _ => Err(expected("a file path, null, discard or inherit", node)),
    }
}

/// A path; relative ones are taken from `base` (the folder beside the config).
pub fn path(node: &Node, base: &Path) -> Read<PathBuf> {
    match node.text() {
        Some(t) if !t.is_empty() => Ok(absolute(base, t)),
        _ => Err(expected("a path", node)),
    }
}

/// `base/text`, without `.` components, so that `./logs` and `logs` resolve to the same path
/// and a reload does not see a change. `..` is kept: removing it is only right without symlinks.
pub fn absolute(base: &Path, text: &str) -> PathBuf {
    let joined = base.join(text);
    joined
        .components()
        .filter(|c| !matches!(c, Component::CurDir))
        .collect()
}

/// Environment variable names as a shell accepts them, so a child can always read them back.
pub fn env_name(key: &Node) -> Read<String> {
    let what = "a variable name of letters, digits and _, not starting with a digit";
    let text = key.text().ok_or_else(|| expected(what, key))?;
    let mut chars = text.chars();
    let first_ok = chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_');
    if first_ok && chars.all(|c| c.is_ascii_alphanumeric() || c == '_') {
        Ok(text.to_string())
    } else {
        Err(expected(what, key))
    }
}

/// An env value: numbers and bools become strings exactly as written (`042` stays `042`).
pub fn env_value(node: &Node) -> Read<String> {
    match node.text() {
        Some(t) => Ok(t.to_string()),
        None => Err(expected(
            "a string, number or bool (write \"\" for empty)",
            node,
        )),
    }
}

/// `env`: every entry is read; the first bad one is reported by `resolve` entry by entry, so
/// this only checks the shape.
pub fn env_entries(node: &Node) -> Read<&[(Node, Node)]> {
    match &node.kind {
        Kind::Map(entries) => Ok(entries),
        Kind::Scalar(s) if s.is_null() => Ok(&[]),
        _ => Err(expected("a map of NAME: value", node)),
    }
}

/// Octal permission bits: `022`, `"022"`, `77`, `0o077`, `"0022"`. YAML would read a bare
/// `022` as decimal 22; the raw text is what the user meant.
pub fn umask(node: &Node) -> Read<u32> {
    let what = "octal digits such as 022, 077 or 0o027";
    let text = node.text().ok_or_else(|| expected(what, node))?.trim();
    let digits = text
        .strip_prefix("0o")
        .or_else(|| text.strip_prefix("0O"))
        .unwrap_or(text);
    if digits.is_empty() || !digits.bytes().all(|b| (b'0'..=b'7').contains(&b)) {
        return Err(expected(what, node));
    }
    let trimmed = digits.trim_start_matches('0');
    let value = if trimmed.is_empty() {
        Some(0)
    } else if trimmed.len() > 3 {
        None
    } else {
        u32::from_str_radix(trimmed, 8).ok()
    };
    match value {
        Some(v) if v <= 0o777 => Ok(v),
        _ => Err(Bad::new(format!(
            "must be at most 777 (octal), found {}",
            node.describe()
        ))),
    }
}

/// A user name or a uid; which one exists is checked when the child starts.
pub fn user(node: &Node) -> Read<String> {
    let what = "a user name or a uid";
    let s = node
        .scalar()
        .filter(|s| !s.is_null())
        .ok_or_else(|| expected(what, node))?;
    let t = s.text.trim();
    if t.is_empty() || t.starts_with('-') || t.chars().any(char::is_whitespace) {
        return Err(expected(what, node));
    }
    Ok(t.to_string())
}

/// A user name must be in the user database now: a typo found by `sup check` beats a job that
/// goes fatal at its first spawn. A bare uid needs no entry.
pub fn known_user(name: String) -> Read<String> {
    if name.parse::<u32>().is_ok() {
        return Ok(name);
    }
    match nix::unistd::User::from_name(&name) {
        Ok(Some(_)) => Ok(name),
        Ok(None) => Err(Bad {
            message: format!("no such user {name:?}"),
            hint: Some("create the user first, or give a numeric uid".into()),
            at: None,
        }),
        Err(e) => Err(Bad {
            message: format!("unable to look up user {name:?}: {}", e.desc()),
            hint: None,
            at: None,
        }),
    }
}

/// A warning, not an error: the directory may be created (a mount, a deploy) before the job
/// is started.
pub fn existing_dir(path: &Path) -> Result<(), Bad> {
    match std::fs::metadata(path) {
        Ok(m) if m.is_dir() => Ok(()),
        Ok(_) => Err(Bad::new(format!("{} is not a directory", path.display()))),
        Err(e) => Err(Bad {
            message: format!("{}: {}", path.display(), super::load::io_reason(&e)),
            hint: Some("the job fails to start until it exists".into()),
            at: None,
        }),
    }
}

const CRON_ALIASES: &[&str] = &[
    "@hourly",
    "@daily",
    "@midnight",
    "@weekly",
    "@monthly",
    "@yearly",
    "@annually",
];

/// `every DURATION`, a 5-field cron expression, or an `@daily`-style alias.
pub fn schedule(node: &Node) -> Read<Schedule> {
    let what = "every DURATION, a 5-field cron expression, or @hourly, @daily, @weekly, \
                @monthly or @yearly";
    let text = node.text().ok_or_else(|| expected(what, node))?.trim();
    if let Some(rest) = text.strip_prefix("every") {
        if rest.starts_with(char::is_whitespace) {
            let d = parse_duration(rest).map_err(|m| Bad::new(format!("every: {m}")))?;
            if d.is_zero() {
                return Err(Bad::new("every: must be longer than 0s"));
            }
            return Ok(Schedule::Every(d));
        }
    }
    if text.starts_with('@') {
        let lower = text.to_ascii_lowercase();
        if !CRON_ALIASES.contains(&lower.as_str()) {
            let hint =
                suggest(&lower, CRON_ALIASES.iter().copied()).map(|s| format!("did you mean {s}?"));
            return Err(expected(what, node).hint(hint));
        }
        // croner does not know @midnight; it is the same as @daily.
        let alias = if lower == "@midnight" {
            "@daily".to_string()
        } else {
            lower
        };
        return Ok(Schedule::Cron(alias));
    }
    let fields: Vec<&str> = text.split_whitespace().collect();
    if fields.len() != 5 {
        return Err(expected(what, node).hint(Some(
            "cron fields are: minute hour day-of-month month day-of-week".into(),
        )));
    }
    let normalized = fields.join(" ");
    let cron = croner::Cron::new(&normalized).parse().map_err(|e| {
        Bad::new(format!(
            "invalid cron expression {normalized:?}: {}",
            cron_reason(&e)
        ))
    })?;
    if !ever_matches(&cron) {
        return Err(Bad::new(format!(
            "cron expression {normalized:?} never matches: no month has that day"
        )));
    }
    Ok(Schedule::Cron(normalized))
}

/// Whether the pattern matches at all (`0 0 31 2 *` does not). croner looks for a match up to
/// the year 5000, a walk that held the loop for seconds each time such a job was armed; from
/// 4990 on, the ten years it looks at hold every day of every month, 29 February included.
fn ever_matches(cron: &croner::Cron) -> bool {
    use chrono::TimeZone;
    chrono::Utc
        .with_ymd_and_hms(4990, 1, 1, 0, 0, 0)
        .single()
        .is_some_and(|from| cron.find_next_occurrence(&from, true).is_ok())
}

/// croner's message without its prefix, capital and period, to fit our one-line style.
fn cron_reason(e: &croner::errors::CronError) -> String {
    use croner::errors::CronError as E;
    let raw = match e {
        E::InvalidPattern(m) | E::IllegalCharacters(m) | E::ComponentError(m) => m.clone(),
        other => other.to_string(),
    };
    let trimmed = raw.trim().trim_end_matches('.');
    let mut chars = trimmed.chars();
    match chars.next() {
        Some(c) => c.to_lowercase().chain(chars).collect(),
        None => "not accepted".into(),
    }
}

/// A zone is checked against the IANA database compiled into sup (chrono-tz), so the answer
/// is the same on every host, with or without /usr/share/zoneinfo, and the scheduler can
/// always load a zone the check accepted.
pub fn timezone(node: &Node) -> Read<String> {
    let what = "a time zone name such as UTC or Europe/Paris";
    let t = node
        .text()
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .ok_or_else(|| expected(what, node))?;
    // Zone names are made of these characters whatever the system; checking them first keeps
    // the answer the same with or without a zoneinfo folder, and keeps `..` out of the lookup.
    let plausible = !t.starts_with('/')
        && t.split('/').all(|part| {
            !part.is_empty()
                && part != "."
                && part != ".."
                && part
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '+' | '.'))
        });
    if !plausible {
        return Err(Bad::new(format!("expected {what}, found {t:?}")));
    }
    if t.parse::<chrono_tz::Tz>().is_err() {
        return Err(
            Bad::new(format!("unknown time zone {t:?}: expected {what}")).hint(Some(
                "the names are those of the IANA time zone database, such as \
                 America/New_York or Asia/Tokyo"
                    .into(),
            )),
        );
    }
    Ok(t.to_string())
}

/// One word out of a fixed list, compared without case; `what` lists them for the error.
fn word<T: Copy>(node: &Node, what: &str, words: &[(&str, T)]) -> Read<T> {
    let text = node.text().ok_or_else(|| expected(what, node))?;
    let lower = text.trim().to_ascii_lowercase();
    match words.iter().find(|(w, _)| *w == lower) {
        Some(&(_, v)) => Ok(v),
        None => {
            let hint = suggest(&lower, words.iter().map(|(w, _)| *w))
                .map(|s| format!("did you mean {s}?"));
            Err(expected(what, node).hint(hint))
        }
    }
}

/// `first_run`: `now` or `after-interval` (`after_interval` too, as YAML keys are spelled).
pub fn first_run(node: &Node) -> Read<FirstRun> {
    word(
        node,
        "now or after-interval",
        &[
            ("now", FirstRun::Now),
            ("after-interval", FirstRun::AfterInterval),
            ("after_interval", FirstRun::AfterInterval),
        ],
    )
}

/// `overlap`: what a tick does while the previous run is still going.
pub fn overlap(node: &Node) -> Read<Overlap> {
    word(
        node,
        "skip, queue or kill",
        &[
            ("skip", Overlap::Skip),
            ("queue", Overlap::Queue),
            ("kill", Overlap::Kill),
        ],
    )
}

/// `signal_target`: `group` or `main`.
pub fn signal_target(node: &Node) -> Read<SignalTarget> {
    word(
        node,
        "group or main",
        &[("group", SignalTarget::Group), ("main", SignalTarget::Main)],
    )
}

/// `catchup`: `none` or `once`.
pub fn catchup(node: &Node) -> Read<Catchup> {
    word(
        node,
        "none or once",
        &[("none", Catchup::None), ("once", Catchup::Once)],
    )
}

pub fn loglevel(node: &Node) -> Read<log::LevelFilter> {
    let what = "error, warn, info, debug or trace";
    let text = node.text().ok_or_else(|| expected(what, node))?;
    match text.trim().to_ascii_lowercase().as_str() {
        "error" => Ok(log::LevelFilter::Error),
        "warn" | "warning" => Ok(log::LevelFilter::Warn),
        "info" => Ok(log::LevelFilter::Info),
        "debug" => Ok(log::LevelFilter::Debug),
        "trace" => Ok(log::LevelFilter::Trace),
        _ => Err(expected(what, node)),
    }
}

/// The closest candidate by edit distance, if it is close enough to be a typo: at most one
/// edit for short words, about a third of the word for longer ones.
pub fn suggest<'a>(word: &str, candidates: impl IntoIterator<Item = &'a str>) -> Option<&'a str> {
    let limit = (word.chars().count() / 3).max(1);
    candidates
        .into_iter()
        .map(|c| {
            (
                edit_distance(&word.to_ascii_lowercase(), &c.to_ascii_lowercase()),
                c,
            )
        })
        .filter(|&(d, _)| d <= limit)
        .min_by_key(|&(d, _)| d)
        .map(|(_, c)| c)
}

/// Edit distance where swapping two neighbours counts as one edit (optimal string alignment),
/// since `TREM` for `TERM` is the typo people make. Words here are short, so a full table is fine.
fn edit_distance(a: &str, b: &str) -> usize {
    let a: Vec<char> = a.chars().collect();
    let b: Vec<char> = b.chars().collect();
    let mut d = vec![vec![0usize; b.len() + 1]; a.len() + 1];
    for (i, row) in d.iter_mut().enumerate() {
        row[0] = i;
    }
    for (j, cell) in d[0].iter_mut().enumerate() {
        *cell = j;
    }
    for i in 1..=a.len() {
        for j in 1..=b.len() {
            let cost = usize::from(a[i - 1] != b[j - 1]);
            let mut best = (d[i - 1][j] + 1)
                .min(d[i][j - 1] + 1)
                .min(d[i - 1][j - 1] + cost);
            if i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] {
                best = best.min(d[i - 2][j - 2] + 1);
            }
            d[i][j] = best;
        }
    }
    d[a.len()][b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::yaml;
    use proptest::prelude::*;

    /// The node for `v: <src>`.
    fn node(src: &str) -> Node {
        let (root, errors) = yaml::parse(&format!("v: {src}\n"));
        assert!(errors.is_empty(), "{errors:?}");
        match root.map(|r| r.kind) {
            Some(Kind::Map(mut e)) => e.remove(0).1,
            other => panic!("{other:?}"),
        }
    }

    fn msg<T: std::fmt::Debug>(r: Read<T>) -> String {
        r.expect_err("should be rejected").message
    }

    #[test]
    fn cmd_accepts_a_line_or_a_list() {
        assert_eq!(cmd(&node("sleep 5")).unwrap(), ["sleep", "5"]);
        assert_eq!(
            cmd(&node(r#"'sh -c "echo a  b" x\ y'"#)).unwrap(),
            ["sh", "-c", "echo a  b", "x y"]
        );
        assert_eq!(cmd(&node("[sleep, 5]")).unwrap(), ["sleep", "5"]);
        assert_eq!(cmd(&node("'$HOME/x *'")).unwrap(), ["$HOME/x", "*"]);
    }

    #[test]
    fn cmd_rejects_empty_and_odd_values() {
        assert_eq!(
            msg(cmd(&node("\"\""))),
            "must not be empty: expected a command line or a list of words, found \"\""
        );
        assert_eq!(
            msg(cmd(&node("[]"))),
            "must not be empty: expected a command line or a list of words, found a list"
        );
        assert_eq!(
            msg(cmd(&node("~"))),
            "expected a command line or a list of words, found null"
        );
        assert_eq!(
            msg(cmd(&node("{a: 1}"))),
            "expected a command line or a list of words, found a map"
        );
        assert_eq!(
            msg(cmd(&node("\"echo 'a\""))),
            "unbalanced quotes in \"echo 'a\": close every ' and \""
        );
        let bad = cmd(&node("[echo, [a]]")).unwrap_err();
        assert_eq!(bad.message, "expected a word, found a list");
        assert_eq!(bad.at, Some((1, 11)));
    }

    #[test]
    fn numprocs_has_a_ceiling() {
        assert_eq!(numprocs(&node("100000")), Ok(100_000));
        assert_eq!(
            msg(numprocs(&node("1000000000"))),
            "must be at most 100000, found 1000000000"
        );
        assert_eq!(msg(numprocs(&node("0"))), "must be at least 1, found 0");
    }

    #[test]
    fn count_has_a_floor() {
        assert_eq!(count(&node("3"), 1), Ok(3));
        assert_eq!(count(&node("\"3\""), 1), Ok(3));
        assert_eq!(count(&node("0"), 0), Ok(0));
        assert_eq!(msg(count(&node("0"), 1)), "must be at least 1, found 0");
        assert_eq!(msg(count(&node("-1"), 0)), "must be at least 0, found -1");
        assert_eq!(
            msg(count(&node("two"), 1)),
            "expected an integer of at least 1, found \"two\""
        );
        assert_eq!(
            msg(count(&node("1.5"), 1)),
            "expected an integer of at least 1, found 1.5"
        );
        assert_eq!(
            msg(count(&node("99999999999"), 1)),
            "must be at most 4294967295, found 99999999999"
        );
    }

    #[test]
    fn booleans() {
        assert_eq!(boolean(&node("true")), Ok(true));
        assert_eq!(boolean(&node("False")), Ok(false));
        assert_eq!(
            msg(boolean(&node("yes"))),
            "expected true or false, found \"yes\""
        );
    }

    #[test]
    fn autorestart_words_and_aliases() {
        use AutoRestart::*;
        for (src, want) in [
            ("always", Always),
            ("never", Never),
            ("unexpected", Unexpected),
            ("true", Always),
            ("false", Never),
            ("on-failure", Unexpected),
        ] {
            assert_eq!(autorestart(&node(src)), Ok(want), "{src}");
        }
        assert_eq!(
            msg(autorestart(&node("sometimes"))),
            "expected always, never or unexpected, found \"sometimes\""
        );
    }

    #[test]
    fn exitcodes_one_or_many_sorted() {
        assert_eq!(exitcodes(&node("0")), Ok(vec![0]));
        assert_eq!(exitcodes(&node("[2, 0, 2]")), Ok(vec![0, 2]));
        let bad = exitcodes(&node("[0, 256]")).unwrap_err();
        assert_eq!(bad.message, "exit codes are 0 to 255, found 256");
        assert_eq!(bad.at, Some((1, 8)));
        assert_eq!(
            msg(exitcodes(&node("[]"))),
            "expected an exit code from 0 to 255 or a list of them, found a list"
        );
        assert_eq!(
            msg(exitcodes(&node("ok"))),
            "expected an exit code from 0 to 255 or a list of them, found \"ok\""
        );
    }

    #[test]
    fn durations_from_numbers_and_strings() {
        assert_eq!(duration(&node("5")), Ok(Duration::from_secs(5)));
        assert_eq!(duration(&node("0.5")), Ok(Duration::from_millis(500)));
        assert_eq!(duration(&node("1m30s")), Ok(Duration::from_secs(90)));
        assert_eq!(
            msg(duration(&node("soon"))),
            "expected a number of seconds or a duration such as 500ms, 5s, 5m, 1h30m, \
             found \"soon\""
        );
        assert_eq!(
            msg(duration(&node("[1]"))),
            "expected a number of seconds or a duration such as 500ms, 5s, 5m, 1h30m, \
             found a list"
        );
    }

    #[test]
    fn signals_by_name_or_number_with_a_suggestion() {
        assert_eq!(signal(&node("TERM")), Ok(Signal(15)));
        assert_eq!(signal(&node("SIGUSR1")), Ok(Signal(10)));
        assert_eq!(signal(&node("9")), Ok(Signal(9)));
        let bad = signal(&node("TREM")).unwrap_err();
        assert_eq!(
            bad.message,
            "expected a signal name such as TERM, INT, QUIT, HUP, KILL, USR1, or its number, \
             found \"TREM\""
        );
        assert_eq!(bad.hint.as_deref(), Some("did you mean TERM?"));
        assert_eq!(signal(&node("BANANA")).unwrap_err().hint, None);
    }

    #[test]
    fn outputs() {
        let base = Path::new("/srv/app");
        assert_eq!(output(&node("~"), base), Ok(Output::Discard));
        assert_eq!(output(&node("discard"), base), Ok(Output::Discard));
        assert_eq!(output(&node("inherit"), base), Ok(Output::Inherit));
        assert_eq!(
            output(&node("./inherit"), base),
            Ok(Output::File("/srv/app/inherit".into()))
        );
        assert_eq!(
            output(&node("./logs/{name}.out"), base),
            Ok(Output::File("/srv/app/logs/{name}.out".into()))
        );
        assert_eq!(
            output(&node("/tmp/x"), base),
            Ok(Output::File("/tmp/x".into()))
        );
        assert_eq!(
            msg(output(&node("\"\""), base)),
            "expected a file path, null, discard or inherit, found \"\""
        );
    }

    #[test]
    fn env_names_and_values() {
        let ok = |s: &str| env_name(&node(s));
        assert_eq!(ok("PATH_2"), Ok("PATH_2".into()));
        assert_eq!(ok("_x"), Ok("_x".into()));
        assert_eq!(
            msg(ok("2X")),
            "expected a variable name of letters, digits and _, not starting with a digit, \
             found \"2X\""
        );
        assert!(ok("A-B").is_err());
        assert_eq!(env_value(&node("true")), Ok("true".into()));
        assert_eq!(env_value(&node("042")), Ok("042".into()));
        assert_eq!(env_value(&node("1.50")), Ok("1.50".into()));
        assert_eq!(
            msg(env_value(&node("~"))),
            "expected a string, number or bool (write \"\" for empty), found null"
        );
        assert_eq!(
            msg(env_entries(&node("[a]"))),
            "expected a map of NAME: value, found a list"
        );
    }

    #[test]
    fn umask_is_always_octal() {
        for src in ["022", "22", "\"0022\"", "0o022", "\"0o22\"", "'022'"] {
            assert_eq!(umask(&node(src)), Ok(0o22), "{src}");
        }
        for src in ["77", "077", "0o077"] {
            assert_eq!(umask(&node(src)), Ok(0o77), "{src}");
        }
        assert_eq!(umask(&node("0")), Ok(0));
        assert_eq!(umask(&node("777")), Ok(0o777));
        assert_eq!(
            msg(umask(&node("8"))),
            "expected octal digits such as 022, 077 or 0o027, found 8"
        );
        assert!(umask(&node("029")).is_err());
        assert!(umask(&node("0x1f")).is_err());
        assert!(umask(&node("-022")).is_err());
        assert_eq!(
            msg(umask(&node("1000"))),
            "must be at most 777 (octal), found 1000"
        );
    }

    #[test]
    fn users() {
        assert_eq!(user(&node("www-data")), Ok("www-data".into()));
        assert_eq!(user(&node("33")), Ok("33".into()));
        assert_eq!(
            msg(user(&node("\"\""))),
            "expected a user name or a uid, found \"\""
        );
        assert!(user(&node("-1")).is_err());
    }

    #[test]
    fn schedules() {
        assert_eq!(
            schedule(&node("every 5m")),
            Ok(Schedule::Every(Duration::from_secs(300)))
        );
        assert_eq!(
            schedule(&node("every 1h30m")),
            Ok(Schedule::Every(Duration::from_secs(5400)))
        );
        assert_eq!(
            schedule(&node("\"*/5   * * * 1-5\"")),
            Ok(Schedule::Cron("*/5 * * * 1-5".into()))
        );
        assert_eq!(
            schedule(&node("\"@Daily\"")),
            Ok(Schedule::Cron("@daily".into()))
        );
        assert_eq!(
            schedule(&node("\"@midnight\"")),
            Ok(Schedule::Cron("@daily".into()))
        );
        assert_eq!(
            msg(schedule(&node("every 0s"))),
            "every: must be longer than 0s"
        );
        assert!(msg(schedule(&node("every soon"))).starts_with("every: expected"));
        assert_eq!(
            msg(schedule(&node("\"0 25 * * *\""))),
            "invalid cron expression \"0 25 * * *\": number out of bounds"
        );
        assert_eq!(
            msg(schedule(&node("\"0 0 31 2 *\""))),
            "cron expression \"0 0 31 2 *\" never matches: no month has that day"
        );
        assert_eq!(
            msg(schedule(&node("\"0 0 31 4,6,9,11 *\""))),
            "cron expression \"0 0 31 4,6,9,11 *\" never matches: no month has that day"
        );
        for rare in ["0 0 29 2 *", "0 0 31 1-12/2 *", "0 0 31 2 1", "0 0 L 2 *"] {
            assert!(schedule(&node(&format!("{rare:?}"))).is_ok(), "{rare}");
        }
        let six = schedule(&node("\"0 0 * * * *\"")).unwrap_err();
        assert!(six.message.starts_with("expected every DURATION"));
        assert!(six.hint.is_some());
        let typo = schedule(&node("\"@dayly\"")).unwrap_err();
        assert_eq!(typo.hint.as_deref(), Some("did you mean @daily?"));
    }

    #[test]
    fn timezones() {
        assert_eq!(
            msg(timezone(&node("Mars Time"))),
            "expected a time zone name such as UTC or Europe/Paris, found \"Mars Time\""
        );
        assert_eq!(timezone(&node("UTC")), Ok("UTC".into()));
        assert_eq!(
            timezone(&node("America/New_York")),
            Ok("America/New_York".into())
        );
        assert_eq!(
            msg(timezone(&node("Mars/Olympus"))),
            "unknown time zone \"Mars/Olympus\": expected a time zone name such as UTC or \
             Europe/Paris"
        );
        assert!(timezone(&node("../../etc/passwd")).is_err());
        assert!(timezone(&node("/etc/localtime")).is_err());
    }

    #[test]
    fn schedule_options() {
        assert_eq!(first_run(&node("now")), Ok(FirstRun::Now));
        assert_eq!(
            first_run(&node("after-interval")),
            Ok(FirstRun::AfterInterval)
        );
        assert_eq!(
            first_run(&node("After_Interval")),
            Ok(FirstRun::AfterInterval)
        );
        assert_eq!(
            msg(first_run(&node("later"))),
            "expected now or after-interval, found \"later\""
        );
        assert_eq!(overlap(&node("skip")), Ok(Overlap::Skip));
        assert_eq!(overlap(&node("QUEUE")), Ok(Overlap::Queue));
        assert_eq!(overlap(&node("kill")), Ok(Overlap::Kill));
        let typo = overlap(&node("qeue")).unwrap_err();
        assert_eq!(typo.message, "expected skip, queue or kill, found \"qeue\"");
        assert_eq!(typo.hint.as_deref(), Some("did you mean queue?"));
        assert_eq!(
            msg(overlap(&node("[skip]"))),
            "expected skip, queue or kill, found a list"
        );
        assert_eq!(catchup(&node("none")), Ok(Catchup::None));
        assert_eq!(catchup(&node("once")), Ok(Catchup::Once));
        assert_eq!(
            msg(catchup(&node("true"))),
            "expected none or once, found true"
        );
    }

    #[test]
    fn loglevels() {
        assert_eq!(loglevel(&node("debug")), Ok(log::LevelFilter::Debug));
        assert_eq!(loglevel(&node("WARN")), Ok(log::LevelFilter::Warn));
        assert_eq!(
            msg(loglevel(&node("loud"))),
            "expected error, warn, info, debug or trace, found \"loud\""
        );
    }

    #[test]
    fn suggestions_are_close_words_only() {
        let keys = ["numprocs", "cmd", "stopsignal", "workingdir"];
        assert_eq!(suggest("numproc", keys), Some("numprocs"));
        assert_eq!(suggest("working_dir", keys), Some("workingdir"));
        assert_eq!(suggest("cdm", keys), Some("cmd"));
        assert_eq!(suggest("xyz", keys), None);
        assert_eq!(suggest("banana", keys), None);
        assert_eq!(edit_distance("kitten", "sitting"), 3);
        assert_eq!(edit_distance("TREM", "TERM"), 1);
    }

    proptest! {
        /// Whatever words a user means, writing them with shell quoting and reading them back
        /// gives the same words.
        #[test]
        fn cmd_split_undoes_shell_quoting(words in prop::collection::vec("[^\\x00]{1,12}", 1..6)) {
            let line = shell_words::join(&words);
            let n = Node {
                line: 1,
                col: 1,
                kind: Kind::Scalar(yaml::Scalar { text: line, quoted: true }),
            };
            prop_assert_eq!(cmd(&n).unwrap(), words);
        }
    }

    #[test]
    fn cpu_max_is_a_share_or_a_number_of_cpus() {
        assert_eq!(parse_cpu_max("50%"), Some(500));
        assert_eq!(parse_cpu_max("12.5%"), Some(125));
        assert_eq!(parse_cpu_max("250%"), Some(2500));
        assert_eq!(parse_cpu_max("1.5"), Some(1500));
        assert_eq!(parse_cpu_max("2"), Some(2000));
        assert_eq!(parse_cpu_max("0.25"), Some(250));
        assert_eq!(parse_cpu_max(".5"), Some(500));
        assert_eq!(parse_cpu_max("1.2345"), None, "finer than a thousandth");
        assert_eq!(parse_cpu_max("half"), None);
        assert_eq!(parse_cpu_max("-1"), None);
        assert_eq!(parse_cpu_max("%"), None);
        assert_eq!(parse_cpu_max("."), None);
        assert_eq!(parse_cpu_max("99999999999"), None);
    }
}
