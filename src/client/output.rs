//! The terminal side of client output: whether to colour, how a coloured word is written, and
//! a sink that treats a reader going away (`sup status | head -1`) as the end rather than as a
//! failure. Formatting of each command's answer lives beside the command.

use std::ffi::OsStr;
use std::io::{self, Write};

use crate::control::client::cause;
use crate::fail::Fail;

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
