//! The terminal side of client output: whether to colour, how a coloured word is written, and
//! a sink that treats a reader going away (`sup status | head -1`) as the end rather than as a
//! failure. Formatting of each command's answer lives beside the command. Also the one
//! sanitizer for text that came from the daemon or a server (`clean`), which `Conn::next`
//! applies to every answer and `Fail`'s `Display` to every error, so nothing they print can
//! move the cursor, clear the screen or set the terminal's title.

use std::borrow::Cow;
use std::ffi::OsStr;
use std::io::{self, Write};

use crate::control::client::cause;
use crate::control::proto::{InstanceStatus, Outcome, ResponseBody, StatusRow, Text};
use crate::fail::Fail;

/// What `clean` puts in place of a control character.
pub const REPLACEMENT: char = '?';

/// Whether `c` may reach a terminal as it is: not the C0 controls (ESC among them) but a tab,
/// nor DEL, nor the C1 controls (U+0080..U+009F, which some terminals obey like ESC+letter).
fn printable(c: char, newline: bool) -> bool {
    match c {
        '\t' => true,
        '\n' => newline,
        '\0'..='\x1f' | '\x7f'..='\u{9f}' => false,
        _ => true,
    }
}

fn replace(text: &str, newline: bool) -> Cow<'_, str> {
    if text.chars().all(|c| printable(c, newline)) {
        return Cow::Borrowed(text);
    }
    Cow::Owned(
        text.chars()
            .map(|c| {
                if printable(c, newline) {
                    c
                } else {
                    REPLACEMENT
                }
            })
            .collect(),
    )
}

/// `text` from the daemon or a server, safe for one cell or line of output: every control
/// character but a tab becomes `?`. One character for one, so widths stay as they were.
pub fn clean(text: &str) -> Cow<'_, str> {
    replace(text, false)
}

/// As `clean`, keeping line breaks: for messages and hints, which may span lines.
pub fn clean_lines(text: &str) -> Cow<'_, str> {
    replace(text, true)
}

fn clean_in_place(text: &mut String, newline: bool) {
    let cleaned = if newline {
        clean_lines(text)
    } else {
        clean(text)
    };
    if let Cow::Owned(clean) = cleaned {
        *text = clean;
    }
}

/// A `status_rows` row, cleaned as `clean_answer` cleans an instance of a `status` answer
/// (a string that needs no change stays borrowed).
pub fn clean_row(row: &mut StatusRow) {
    let StatusRow {
        name,
        state,
        exit_reason,
        next_run,
        health,
        reason,
        log_error,
        history,
        // Numbers.
        pid: _,
        restarts: _,
        last_exit: _,
        uptime_s: _,
        next_restart_in: _,
        cpu_percent: _,
        rss_bytes: _,
    } = row;
    let fix = |t: &mut Text| {
        if let Cow::Owned(clean) = clean(&t.0) {
            t.0 = Cow::Owned(clean);
        }
    };
    fix(name);
    fix(state);
    for t in [exit_reason, next_run, health, reason, log_error]
        .into_iter()
        .flatten()
    {
        fix(t);
    }
    if history
        .iter()
        .any(|r| matches!(clean(&r.started), Cow::Owned(_)))
    {
        for run in history.to_mut() {
            clean_in_place(&mut run.started, false);
        }
    }
}

fn clean_instance(i: &mut InstanceStatus) {
    let InstanceStatus {
        name,
        program,
        state,
        next_run,
        reason,
        health,
        log_error,
        exit_reason,
        // Numbers, and a run's start time, which is only ever compared and shown as a time.
        pid: _,
        restarts: _,
        last_exit: _,
        uptime_s: _,
        next_restart_in: _,
        history,
        cpu_percent: _,
        rss_bytes: _,
    } = i;
    for s in [name, program, state] {
        clean_in_place(s, false);
    }
    for s in [next_run, reason, health, log_error, exit_reason]
        .into_iter()
        .flatten()
    {
        clean_in_place(s, false);
    }
    for run in history {
        clean_in_place(&mut run.started, false);
    }
}

fn clean_outcome(o: &mut Outcome) {
    clean_in_place(&mut o.name, false);
    clean_in_place(&mut o.message, true);
}

/// Every string of an answer made safe to print, except a job's own output (`tail`), which is
/// passed on as the job wrote it, as `supervisorctl tail` does.
pub fn clean_answer(body: &mut ResponseBody) {
    match body {
        ResponseBody::Error { message, hint } => {
            clean_in_place(message, true);
            if let Some(h) = hint {
                clean_in_place(h, true);
            }
        }
        ResponseBody::Status { instances, daemon } => {
            instances.iter_mut().for_each(clean_instance);
            if let Some(d) = daemon {
                clean_in_place(&mut d.version, false);
                let groups = std::mem::take(&mut d.groups);
                d.groups = groups
                    .into_iter()
                    .map(|(mut name, mut members)| {
                        clean_in_place(&mut name, false);
                        members.iter_mut().for_each(|m| clean_in_place(m, false));
                        (name, members)
                    })
                    .collect();
            }
        }
        ResponseBody::Event {
            at,
            instance,
            message,
        } => {
            clean_in_place(at, false);
            clean_instance(instance);
            clean_in_place(message, true);
        }
        ResponseBody::Outcomes { outcomes } => outcomes.iter_mut().for_each(clean_outcome),
        ResponseBody::Pids { daemon: _, pids } => {
            pids.iter_mut()
                .for_each(|(name, _)| clean_in_place(name, false));
        }
        ResponseBody::Reload { report } => {
            for list in [
                &mut report.added,
                &mut report.changed,
                &mut report.removed,
                &mut report.unchanged,
                &mut report.groups,
                &mut report.listeners,
            ] {
                list.iter_mut().for_each(|s| clean_in_place(s, false));
            }
            report
                .errors
                .iter_mut()
                .for_each(|s| clean_in_place(s, true));
            report.outcomes.iter_mut().for_each(clean_outcome);
        }
        ResponseBody::Output { data: _ } => {}
        ResponseBody::Done { message } => clean_in_place(message, true),
    }
}

/// Colours are for people: only on a terminal, and never when `NO_COLOR` is set to anything
/// but the empty string (https://no-color.org).
pub fn use_colour(stdout_is_terminal: bool, no_color: Option<&OsStr>) -> bool {
    stdout_is_terminal && no_color.is_none_or(|v| v.is_empty())
}

/// The decision for this process's stdout and environment.
pub fn colour_for_stdout() -> bool {
    use std::io::IsTerminal;
    use_colour(
        io::stdout().is_terminal(),
        std::env::var_os("NO_COLOR").as_deref(),
    )
}

/// The width `status` should fit: the terminal's when stdout is one ($COLUMNS first, as a
/// shell sets it), else none (a pipe or a file gets every column).
pub fn terminal_width() -> Option<usize> {
    use std::io::IsTerminal;
    if !io::stdout().is_terminal() {
        return None;
    }
    if let Some(cols) = std::env::var("COLUMNS").ok().and_then(|c| c.parse().ok()) {
        return Some(cols).filter(|&c| c > 0);
    }
    crossterm::terminal::size()
        .ok()
        .map(|(cols, _)| usize::from(cols))
        .filter(|&c| c > 0)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Style {
    Plain,
    Green,
    Yellow,
    Red,
    Dim,
}

impl Style {
    fn code(self) -> Option<&'static str> {
        match self {
            Style::Plain => None,
            Style::Green => Some("32"),
            Style::Yellow => Some("33"),
            Style::Red => Some("31"),
            Style::Dim => Some("2"),
        }
    }
}

/// `text` in `style` when `colour` is on, else `text` unchanged.
pub fn paint(text: &str, style: Style, colour: bool) -> String {
    match style.code() {
        Some(code) if colour => format!("\x1b[{code}m{text}\x1b[0m"),
        _ => text.to_string(),
    }
}

/// Where a command writes its answer. Once the reader has gone (a broken pipe), further
/// writes are dropped and `closed` says so, so a streaming command can stop.
pub struct Sink<'a> {
    out: &'a mut dyn Write,
    closed: bool,
}

impl<'a> Sink<'a> {
    pub fn new(out: &'a mut dyn Write) -> Sink<'a> {
        Sink { out, closed: false }
    }

    pub fn closed(&self) -> bool {
        self.closed
    }

    /// `text` and a newline, left in the writer's buffer: a thousand status lines are one
    /// write, not a thousand. `raw` (and the end of the command) flushes.
    pub fn line(&mut self, text: &str) -> Result<(), Fail> {
        if self.closed {
            return Ok(());
        }
        let written = self
            .out
            .write_all(text.as_bytes())
            .and_then(|()| self.out.write_all(b"\n"));
        self.check(written)
    }

    fn check(&mut self, result: io::Result<()>) -> Result<(), Fail> {
        match result {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == io::ErrorKind::BrokenPipe => {
                self.closed = true;
                Ok(())
            }
            Err(e) => Err(Fail::new(format!("cannot write to stdout: {}", cause(&e)))),
        }
    }

    /// `text` as it is, flushed at once: streamed output should appear as it arrives.
    pub fn raw(&mut self, text: &str) -> Result<(), Fail> {
        if self.closed {
            return Ok(());
        }
        let written = self
            .out
            .write_all(text.as_bytes())
            .and_then(|()| self.out.flush());
        self.check(written)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_characters_are_replaced() {
        assert!(matches!(clean("web:0 running\tok"), Cow::Borrowed(_)));
        assert_eq!(clean("\x1b]0;pwned\x07\x1b[2Jweb"), "?]0;pwned??[2Jweb");
        assert_eq!(clean("a\u{9b}31mb\x7fc\0d\re\nf"), "a?31mb?c?d?e?f");
        // Not the printable neighbours of the ranges, nor other text.
        assert_eq!(clean(" ~\u{a0}é→"), " ~\u{a0}é→");
        assert_eq!(clean_lines("one\ntwo\x1b[2J\r\n"), "one\ntwo?[2J?\n");
        // One character for one: a table's widths do not move.
        let hostile = "x\x1b\u{85}y";
        assert_eq!(clean(hostile).chars().count(), hostile.chars().count());
    }

    #[test]
    fn answers_are_cleaned_but_not_a_jobs_output() {
        let mut body: ResponseBody = serde_json::from_str(
            r#"{"kind":"status","instances":[{"name":"\u001b]0;pwned\u0007web","program":"web",
            "state":"running\u001b[31m","pid":1,"restarts":0,"last_exit":null,"uptime_s":1.0,
            "next_run":null,"reason":"\u001b[2J","health":"\u009b1m","exit_reason":"\u007f"}]}"#,
        )
        .expect("parses");
        clean_answer(&mut body);
        let ResponseBody::Status { instances, .. } = &body else {
            panic!("{body:?}");
        };
        let i = &instances[0];
        assert_eq!(
            (i.name.as_str(), i.state.as_str()),
            ("?]0;pwned?web", "running?[31m")
        );
        assert_eq!(i.reason.as_deref(), Some("?[2J"));
        assert_eq!(i.health.as_deref(), Some("?1m"));
        assert_eq!(i.exit_reason.as_deref(), Some("?"));

        let mut body = ResponseBody::Error {
            message: "bad\x1b[2J\nsecond line".into(),
            hint: Some("\x1b]0;t\x07".into()),
        };
        clean_answer(&mut body);
        assert_eq!(
            body,
            ResponseBody::Error {
                message: "bad?[2J\nsecond line".into(),
                hint: Some("?]0;t?".into()),
            }
        );
        let mut body = ResponseBody::Outcomes {
            outcomes: vec![Outcome {
                name: "web".into(),
                ok: false,
                message: "exited: \x1b[2J".into(),
            }],
        };
        clean_answer(&mut body);
        let ResponseBody::Outcomes { outcomes } = &body else {
            panic!("{body:?}");
        };
        assert_eq!(outcomes[0].message, "exited: ?[2J");

        let raw = ResponseBody::Output {
            data: "\x1b[31mred\x1b[0m\r\n".into(),
        };
        let mut body = raw.clone();
        clean_answer(&mut body);
        assert_eq!(body, raw);
    }

    #[test]
    fn colour_only_on_a_terminal_without_no_color() {
        assert!(use_colour(true, None));
        assert!(use_colour(true, Some(OsStr::new(""))));
        assert!(!use_colour(true, Some(OsStr::new("1"))));
        assert!(!use_colour(false, None));
    }

    #[test]
    fn paint_is_a_no_op_without_colour() {
        assert_eq!(paint("running", Style::Green, false), "running");
        assert_eq!(
            paint("running", Style::Green, true),
            "\x1b[32mrunning\x1b[0m"
        );
        assert_eq!(paint("exited", Style::Plain, true), "exited");
    }

    struct Gone;

    impl Write for Gone {
        fn write(&mut self, _: &[u8]) -> io::Result<usize> {
            Err(io::ErrorKind::BrokenPipe.into())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn a_reader_going_away_ends_output_quietly() {
        let mut gone = Gone;
        let mut sink = Sink::new(&mut gone);
        assert_eq!(sink.line("web running"), Ok(()));
        assert!(sink.closed());
    }
}
