//! How `sup status` reads: one aligned line per instance, and `--json` as the daemon's
//! `InstanceStatus` list, unchanged. Pure functions of the answer, so they are tested without a
//! daemon or a terminal.

use crate::client::output::{paint, Style};
use crate::control::proto::{InstanceStatus, StatusRow};

/// The columns, in order. A field that does not apply leaves its cell empty, and the cell is
/// still padded so that the fields after it line up with the rows that have it.
const COLUMNS: usize = 10;

/// Columns given up, in this order, when a line would not fit the terminal: rss, cpu,
/// last_exit, restarts. Name, state, pid, time, health and the reason always stay.
const DROP_ORDER: [usize; 4] = [8, 7, 4, 3];
const REASON: usize = COLUMNS - 1;

/// One line per instance, columns aligned. Columns empty in every row are left out, and no
/// line ends in spaces. With a terminal `width`, the least useful columns are dropped and the
/// reason is cut (with `…`) until every line fits; a script (no width) gets everything.
/// (The tests' view of `each_line`.)
#[cfg(test)]
pub fn lines(instances: &[InstanceStatus], colour: bool, width: Option<usize>) -> Vec<String> {
    let mut out = Vec::with_capacity(instances.len());
    let rows: Vec<StatusRow> = instances.iter().map(StatusRow::of).collect();
    let _ = each_line::<()>(&rows, colour, width, |line| {
        out.push(line.to_string());
        Ok(())
    });
    out
}

/// The table's lines, handed one at a time to `emit` in one reused buffer (see `lines` for
/// the layout): a table of thousands of
/// instances is written out as it is made instead of being held as a string per line.
pub fn each_line<E>(
    instances: &[StatusRow],
    colour: bool,
    width: Option<usize>,
    emit: impl FnMut(&str) -> Result<(), E>,
) -> Result<(), E> {
    let mut table = Table::with_capacity(instances.len());
    instances.iter().for_each(|row| table.push(row));
    table.each_line(colour, width, emit)
}

/// The table being made: every row's cells written one after another into one string as the
/// rows come (a status of thousands of instances would otherwise allocate a string per cell,
/// or per row), with where each cell ends. Rows can be pushed as they are read, so the
/// answer's rows need not be held at all.
pub struct Table {
    text: String,
    rows: Vec<Cells>,
    /// The widest cell of each column, in characters on screen.
    widths: [usize; COLUMNS],
}

struct Cells {
    /// Where each cell ends in `Table::text`; the first starts where the previous row ended.
    ends: [u32; COLUMNS],
    /// Every cell is ASCII, so its room on screen is its length (nearly always, and a byte
    /// count is far cheaper than a character count).
    ascii: bool,
    style: Style,
}

impl Table {
    pub fn with_capacity(rows: usize) -> Table {
        Table {
            text: String::with_capacity(rows * 72),
            rows: Vec::with_capacity(rows),
            widths: [0; COLUMNS],
        }
    }

    /// Add one instance's row.
    pub fn push(&mut self, s: &StatusRow) {
        let start = self.text.len();
        let ends = write_cells(&mut self.text, s);
        let ascii = self.text[start..].is_ascii();
        let cells = Cells {
            ends,
            ascii,
            style: state_style(s),
        };
        for i in 0..COLUMNS {
            self.widths[i] = self.widths[i].max(self.cell_len(start, &cells, i));
        }
        self.rows.push(cells);
    }

    fn start_of(&self, row: usize) -> usize {
        match row.checked_sub(1) {
            Some(prev) => self.rows[prev].ends[COLUMNS - 1] as usize,
            None => 0,
        }
    }

    fn cell<'t>(&'t self, start: usize, cells: &Cells, i: usize) -> &'t str {
        let from = if i == 0 {
            start
        } else {
            cells.ends[i - 1] as usize
        };
        &self.text[from..cells.ends[i] as usize]
    }

    fn cell_len(&self, start: usize, cells: &Cells, i: usize) -> usize {
        let cell = self.cell(start, cells, i);
        if cells.ascii {
            cell.len()
        } else {
            cell.chars().count()
        }
    }

    /// The lines, as `each_line` makes them.
    pub fn each_line<E>(
        &self,
        colour: bool,
        width: Option<usize>,
        mut emit: impl FnMut(&str) -> Result<(), E>,
    ) -> Result<(), E> {
        let mut widths = self.widths;
        // The reason is cut to this many characters (ending in `…`) where it is longer.
        let mut keep = usize::MAX;
        if let Some(limit) = width {
            let total = |widths: &[usize; COLUMNS]| {
                let shown: Vec<usize> = widths.iter().copied().filter(|&w| w > 0).collect();
                shown.iter().sum::<usize>() + 2 * shown.len().saturating_sub(1)
            };
            for col in DROP_ORDER {
                if total(&widths) <= limit {
                    break;
                }
                widths[col] = 0;
            }
            let over = total(&widths).saturating_sub(limit);
            if over > 0 && widths[REASON] > 0 {
                keep = widths[REASON].saturating_sub(over).max(2);
                widths[REASON] = keep.min(widths[REASON]);
            }
        }
        let room: usize = widths.iter().map(|w| w + 2).sum::<usize>() + 16;
        let mut line = String::with_capacity(room);
        let mut start = 0;
        for (r, cells) in self.rows.iter().enumerate() {
            debug_assert_eq!(start, self.start_of(r));
            line.clear();
            for (i, &w) in widths.iter().enumerate() {
                if w == 0 {
                    continue;
                }
                if !line.is_empty() {
                    line.push_str("  ");
                }
                let mut cell = self.cell(start, cells, i);
                let mut len = self.cell_len(start, cells, i);
                let cut: String;
                if i == REASON && len > keep {
                    cut = cell.chars().take(keep - 1).chain(['…']).collect();
                    cell = &cut;
                    len = keep;
                }
                // Pad outside the colour codes: they take no room on screen.
                if i == 1 && colour {
                    line.push_str(&paint(cell, cells.style, colour));
                } else {
                    line.push_str(cell);
                }
                line.extend(std::iter::repeat_n(' ', w.saturating_sub(len)));
            }
            line.truncate(line.trim_end().len());
            emit(&line)?;
            start = cells.ends[COLUMNS - 1] as usize;
        }
        Ok(())
    }
}

/// `--json`: the daemon's array on one line, re-encoded from the wire type, so scripts see the
/// contract's fields in the contract's order. (Fields a newer daemon adds are not in
/// `InstanceStatus` and drop out; a version bump is what announces them.)
pub fn json(instances: &[InstanceStatus]) -> Result<String, serde_json::Error> {
    serde_json::to_string(instances)
}

/// `sup status NAME`: the last runs of each scheduled instance, oldest first, under a heading.
pub fn history_lines(instances: &[StatusRow]) -> Vec<String> {
    let mut out = Vec::new();
    for s in instances.iter().filter(|s| !s.history.is_empty()) {
        out.push(format!("{} last runs:", &*s.name));
        for r in s.history.iter() {
            let exit = r
                .exit
                .map_or("not started".to_string(), |c| format!("exit={c}"));
            out.push(format!(
                "  {}  took={}  {exit}",
                r.started,
                human_duration(r.duration_s)
            ));
        }
    }
    out
}

/// One instance's cells, written one after another onto `text`; where each ends.
fn write_cells(text: &mut String, s: &StatusRow) -> [u32; COLUMNS] {
    use std::fmt::Write;
    let mut ends = [0u32; COLUMNS];
    // Each cell is written by its closure; `write!` to a String cannot fail. The text stays
    // far below 4 GiB: an answer is at most 64 MiB.
    let mut cell = |i: usize, text: &mut String, fill: &mut dyn FnMut(&mut String)| {
        fill(text);
        ends[i] = u32::try_from(text.len()).unwrap_or(u32::MAX);
    };
    cell(0, text, &mut |t| t.push_str(&s.name));
    cell(1, text, &mut |t| t.push_str(&s.state));
    cell(2, text, &mut |t| {
        if let Some(p) = s.pid {
            t.push_str("pid=");
            push_uint(t, u64::from(p));
        }
    });
    cell(3, text, &mut |t| {
        t.push_str("restarts=");
        push_uint(t, u64::from(s.restarts));
    });
    cell(4, text, &mut |t| {
        if let Some(c) = s.last_exit {
            t.push_str("last_exit=");
            push_int(t, i64::from(c));
            // An OOM kill is told apart from any other SIGKILL: `last_exit=137(oom)`.
            if s.exit_reason.as_deref() == Some("oom") {
                t.push_str("(oom)");
            }
        }
    });
    // One time column: what is most useful to know about "when" in this state.
    cell(5, text, &mut |t| {
        if let Some(secs) = s.next_restart_in.filter(|_| &*s.state == "backoff") {
            t.push_str("next_start_in=");
            write_duration(t, secs.ceil());
        } else if let Some(secs) = s.uptime_s {
            t.push_str("uptime=");
            write_duration(t, secs);
        } else if let Some(at) = &s.next_run {
            let _ = write!(t, "next_run={}", &**at);
        }
    });
    cell(6, text, &mut |t| {
        if let Some(h) = &s.health {
            let _ = write!(t, "health={}", &**h);
        }
    });
    cell(7, text, &mut |t| {
        if let Some(c) = s.cpu_percent {
            t.push_str("cpu=");
            push_tenths(t, c);
            t.push('%');
        }
    });
    cell(8, text, &mut |t| {
        if let Some(b) = s.rss_bytes {
            t.push_str("rss=");
            write_bytes(t, b);
        }
    });
    // Why it is not running, or that its output cannot be written: whichever applies.
    cell(REASON, text, &mut |t| {
        if let Some(r) = s.reason.as_ref().or(s.log_error.as_ref()) {
            let _ = write!(t, "({})", &**r);
        }
    });
    ends
}

/// How an instance's state should strike the eye; `status` and `top` each turn it into their
/// own colours, so the rule lives once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tone {
    Good,
    Busy,
    Bad,
    Quiet,
    Waiting,
    Plain,
}

pub fn tone(s: &InstanceStatus) -> Tone {
    tone_of(&s.state, s.reason.is_some(), s.last_exit)
}

fn tone_of(state: &str, reason: bool, last_exit: Option<i32>) -> Tone {
    match state {
        "running" => Tone::Good,
        "starting" | "stopping" | "backoff" => Tone::Busy,
        "fatal" => Tone::Bad,
        // The client does not know `exitcodes`; a non-zero code or a stated reason is the
        // best sign it has that the exit was not the expected one.
        "exited" if reason || last_exit.is_some_and(|c| c != 0) => Tone::Bad,
        "scheduled" => Tone::Waiting,
        "stopped" => Tone::Quiet,
        _ => Tone::Plain,
    }
}

fn state_style(s: &StatusRow) -> Style {
    match tone_of(&s.state, s.reason.is_some(), s.last_exit) {
        Tone::Good => Style::Green,
        Tone::Busy => Style::Yellow,
        Tone::Bad => Style::Red,
        Tone::Quiet => Style::Dim,
        Tone::Waiting | Tone::Plain => Style::Plain,
    }
}

/// `812K`, `12.3M`, `1.1G`: memory as `ps` and `top` show it (powers of 1024).
pub fn human_bytes(bytes: u64) -> String {
    let mut out = String::new();
    write_bytes(&mut out, bytes);
    out
}

fn write_bytes(out: &mut String, bytes: u64) {
    // As `{:.0}K`, `{:.1}M`, `{:.1}G` of the f64 quotient write it (ties to even), in
    // integers: the quotient of a power of two is exact, so its rounding can be done exactly.
    if bytes < 1 << 20 {
        push_ratio(out, bytes, 10, false);
        out.push('K');
    } else if bytes < 1 << 30 {
        push_ratio(out, bytes, 20, true);
        out.push('M');
    } else if bytes < 1 << 53 {
        push_ratio(out, bytes, 30, true);
        out.push('G');
    } else {
        // Past 2^53 bytes are no longer exact as an f64: as the formatter has it.
        use std::fmt::Write;
        let _ = write!(out, "{:.1}G", bytes as f64 / (1u64 << 30) as f64);
    }
}

/// `n / 2^shift` rounded to tenths (`tenths`) or to a whole number, ties to even, as
/// `{:.1}`/`{:.0}` write the exact quotient.
fn push_ratio(out: &mut String, n: u64, shift: u32, tenths: bool) {
    let scaled = u128::from(n) * if tenths { 10 } else { 1 };
    let mut q = scaled >> shift;
    let rest = scaled & ((1u128 << shift) - 1);
    let half = 1u128 << (shift - 1);
    if rest > half || (rest == half && q & 1 == 1) {
        q += 1;
    }
    // Below 2^53 * 10 / 2: fits.
    let q = u64::try_from(q).unwrap_or(u64::MAX);
    if tenths {
        push_uint(out, q / 10);
        out.push('.');
        push_uint(out, q % 10);
    } else {
        push_uint(out, q);
    }
}

/// `x` as `{x:.1}` writes it. A figure already rounded to tenths (the daemon rounds
/// `cpu_percent` so) is the f64 nearest to its tenths, `k / 10.0`, so those digits are its
/// exact rounding and are written from `k`; anything else goes through the formatter.
fn push_tenths(out: &mut String, x: f64) {
    let k = (x * 10.0).round();
    if x.is_sign_positive() && k < 1e15 && k / 10.0 == x {
        // A whole number below 1e15: exact as an integer.
        let k = k as u64;
        push_uint(out, k / 10);
        out.push('.');
        push_uint(out, k % 10);
    } else {
        use std::fmt::Write;
        let _ = write!(out, "{x:.1}");
    }
}

/// Seconds in the two largest units that matter: `45s`, `3m12s`, `2h5m`, `3d4h`. A zero
/// second part is left out (`3m`, not `3m0s`).
pub fn human_duration(secs: f64) -> String {
    let mut out = String::new();
    write_duration(&mut out, secs);
    out
}

fn write_duration(out: &mut String, secs: f64) {
    // Negative or NaN would only come from a confused peer; show it as no time at all.
    let total = if secs.is_finite() && secs > 0.0 {
        secs as u64
    } else {
        0
    };
    let (d, h, m, s) = (
        total / 86_400,
        total % 86_400 / 3600,
        total % 3600 / 60,
        total % 60,
    );
    let (big, bu, small, su) = if d > 0 {
        (d, "d", h, "h")
    } else if h > 0 {
        (h, "h", m, "m")
    } else if m > 0 {
        (m, "m", s, "s")
    } else {
        (s, "s", 0, "")
    };
    push_uint(out, big);
    out.push_str(bu);
    if small != 0 {
        push_uint(out, small);
        out.push_str(su);
    }
}

/// `n` in decimal, as `{n}` writes it, without the formatting machinery: a table of
/// thousands of rows writes several numbers a row.
fn push_int(out: &mut String, n: i64) {
    if n < 0 {
        out.push('-');
    }
    push_uint(out, n.unsigned_abs());
}

fn push_uint(out: &mut String, n: u64) {
    let mut buf = [0u8; 20];
    let mut at = buf.len();
    let mut rest = n;
    loop {
        at -= 1;
        buf[at] = b'0' + (rest % 10) as u8;
        rest /= 10;
        if rest == 0 {
            break;
        }
    }
    // Only ASCII digits were written.
    out.push_str(std::str::from_utf8(&buf[at..]).unwrap_or_default());
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    pub(crate) fn inst(name: &str, state: &str) -> InstanceStatus {
        InstanceStatus {
            name: name.into(),
            program: name.split(':').next().unwrap_or(name).into(),
            state: state.into(),
            pid: None,
            restarts: 0,
            last_exit: None,
            uptime_s: None,
            next_run: None,
            next_restart_in: None,
            reason: None,
            history: Vec::new(),
            health: None,
            cpu_percent: None,
            rss_bytes: None,
            log_error: None,
            exit_reason: None,
        }
    }

    pub(crate) fn sample() -> Vec<InstanceStatus> {
        let mut api = inst("api", "backoff");
        api.restarts = 3;
        api.last_exit = Some(1);
        api.next_restart_in = Some(3.2);
        api.reason = Some("exited with 1 after 0.2s".into());
        let mut db = inst("db", "fatal");
        db.restarts = 3;
        db.reason = Some("spawn failed: /usr/bin/dbd: no such file or directory".into());
        let mut web0 = inst("web:0", "running");
        web0.pid = Some(4312);
        web0.restarts = 1;
        web0.last_exit = Some(0);
        web0.uptime_s = Some(192.4);
        let mut web1 = inst("web:1", "running");
        web1.pid = Some(98);
        web1.uptime_s = Some(7530.0);
        let worker = inst("worker", "stopped");
        vec![api, db, web0, web1, worker]
    }

    #[test]
    fn an_oom_kill_is_marked_on_last_exit() {
        let mut s = inst("hog", "exited");
        s.last_exit = Some(137);
        s.exit_reason = Some("oom".into());
        let mut other = inst("victim", "exited");
        other.last_exit = Some(137);
        other.exit_reason = Some("signal".into());
        let out = lines(&[s, other], false, None);
        assert!(out[0].contains("last_exit=137(oom)"), "{out:?}");
        assert!(
            out[1].contains("last_exit=137") && !out[1].contains("(oom)"),
            "{out:?}"
        );
    }

    #[test]
    fn a_narrow_terminal_drops_rss_then_cpu_then_cuts_the_reason() {
        let mut s = inst("web:0", "backoff");
        s.restarts = 3;
        s.last_exit = Some(1);
        s.cpu_percent = Some(1.5);
        s.rss_bytes = Some(2 << 20);
        s.reason = Some("exited with status 1 too quickly after the start".into());
        let wide = lines(std::slice::from_ref(&s), false, None);
        assert!(
            wide[0].contains("rss=2.0M") && wide[0].contains("cpu=1.5%"),
            "{wide:?}"
        );
        let fits = lines(
            std::slice::from_ref(&s),
            false,
            Some(wide[0].chars().count()),
        );
        assert_eq!(fits, wide);
        let narrow = lines(std::slice::from_ref(&s), false, Some(60));
        assert!(narrow[0].chars().count() <= 60, "{narrow:?}");
        assert!(
            !narrow[0].contains("rss=") && !narrow[0].contains("cpu="),
            "{narrow:?}"
        );
        assert!(narrow[0].starts_with("web:0  backoff"), "{narrow:?}");
        assert!(narrow[0].ends_with('…'), "{narrow:?}");
    }

    #[test]
    fn columns_line_up_and_missing_fields_leave_room() {
        let got = lines(&sample(), false, None);
        let want = [
            "api     backoff            restarts=3  last_exit=1  next_start_in=4s  (exited with 1 after 0.2s)",
            "db      fatal              restarts=3                                 (spawn failed: /usr/bin/dbd: no such file or directory)",
            "web:0   running  pid=4312  restarts=1  last_exit=0  uptime=3m12s",
            "web:1   running  pid=98    restarts=0               uptime=2h5m",
            "worker  stopped            restarts=0",
        ];
        assert_eq!(got, want);
    }

    #[test]
    fn health_cpu_and_memory_show_when_the_daemon_reports_them() {
        let mut a = inst("api", "running");
        a.pid = Some(7);
        a.health = Some("healthy".into());
        a.cpu_percent = Some(12.34);
        a.rss_bytes = Some(5 * 1024 * 1024 + 300 * 1024);
        let got = lines(&[a, inst("b", "stopped")], false, None);
        assert_eq!(
            got,
            [
                "api  running  pid=7  restarts=0  health=healthy  cpu=12.3%  rss=5.3M",
                "b    stopped         restarts=0",
            ]
        );
        assert_eq!(human_bytes(812 * 1024), "812K");
        assert_eq!(human_bytes(3 * 1024 * 1024 * 1024), "3.0G");
    }

    #[test]
    fn columns_nobody_has_take_no_room() {
        let got = lines(&[inst("a", "stopped"), inst("bb", "stopped")], false, None);
        assert_eq!(got, ["a   stopped  restarts=0", "bb  stopped  restarts=0"]);
    }

    #[test]
    fn states_are_coloured_only_when_asked_and_padding_stays_outside() {
        let got = lines(&sample(), true, None);
        assert!(
            got[0].starts_with("api     \x1b[33mbackoff\x1b[0m  "),
            "{:?}",
            got[0]
        );
        assert!(got[1].contains("\x1b[31mfatal\x1b[0m    "), "{:?}", got[1]);
        assert!(got[2].contains("\x1b[32mrunning\x1b[0m  pid=4312"));
        assert_eq!(
            got[4],
            "worker  \x1b[2mstopped\x1b[0m            restarts=0"
        );
        assert!(lines(&sample(), false, None)
            .iter()
            .all(|l| !l.contains('\x1b')));
    }

    #[test]
    fn named_status_lists_a_scheduled_jobs_last_runs() {
        let mut s = sample().remove(0);
        assert!(history_lines(&[StatusRow::of(&s)]).is_empty());
        s.history = vec![
            crate::control::proto::RunStatus {
                started: "2026-05-01T12:00:00+00:00".into(),
                duration_s: 1.25,
                exit: Some(0),
            },
            crate::control::proto::RunStatus {
                started: "2026-05-01T12:05:00+00:00".into(),
                duration_s: 0.0,
                exit: None,
            },
        ];
        let lines = history_lines(&[StatusRow::of(&s)]);
        assert_eq!(lines.len(), 3);
        assert_eq!(lines[0], format!("{} last runs:", s.name));
        assert!(lines[1].starts_with("  2026-05-01T12:00:00+00:00  took="));
        assert!(lines[1].ends_with("exit=0"));
        assert!(lines[2].ends_with("not started"));
    }

    #[test]
    fn a_scheduled_job_shows_its_next_run() {
        let mut s = inst("backup", "scheduled");
        s.last_exit = Some(0);
        s.next_run = Some("2025-01-01T03:00:00+00:00".into());
        assert_eq!(
            lines(&[s], false, None),
            ["backup  scheduled  restarts=0  last_exit=0  next_run=2025-01-01T03:00:00+00:00"]
        );
    }

    #[test]
    fn sizes_and_tenths_are_written_as_the_formatter_writes_them() {
        const K: f64 = 1024.0;
        let old = |bytes: u64| {
            let b = bytes as f64;
            if b < K * K {
                format!("{:.0}K", b / K)
            } else if b < K * K * K {
                format!("{:.1}M", b / (K * K))
            } else {
                format!("{:.1}G", b / (K * K * K))
            }
        };
        let mut sizes: Vec<u64> = (0..5000u64).map(|i| i * 97).collect();
        // Ties (x.5 of a unit, x.x5 of a tenth) and the edges between units.
        sizes.extend([
            512,
            1536,
            2560,
            1 << 19,
            5 << 18,
            7 << 18,
            15 << 18,
            25 << 18,
        ]);
        sizes.extend([
            (1 << 20) - 1,
            1 << 20,
            (1 << 30) - 1,
            1 << 30,
            (1 << 53) - 1,
        ]);
        sizes.extend([
            1 << 53,
            u64::MAX,
            1_798_144,
            1_851_392,
            123_456_789,
            98_765_432_109,
        ]);
        let mut x = 1u64;
        for _ in 0..200 {
            x = x
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            sizes.push(x >> (x % 40));
        }
        for b in sizes {
            assert_eq!(human_bytes(b), old(b), "{b}");
        }
        let mut figures: Vec<f64> = (0..3000).map(|i| f64::from(i) / 10.0).collect();
        figures.extend([
            0.05, 0.15, 0.25, 1.25, 12.34, 99.95, 1e14, 1e16, 1e300, 0.0, -0.0,
        ]);
        figures.extend([
            -1.5,
            f64::NAN,
            f64::INFINITY,
            f64::MIN_POSITIVE,
            2.675,
            1.0 / 3.0,
        ]);
        for c in figures {
            let mut s = String::new();
            push_tenths(&mut s, c);
            assert_eq!(s, format!("{c:.1}"), "{c}");
        }
    }

    #[test]
    fn numbers_are_written_as_display_writes_them() {
        for n in [
            0,
            7,
            -1,
            137,
            -255,
            4312,
            i64::from(i32::MIN),
            i64::MAX,
            i64::MIN,
        ] {
            let mut s = String::new();
            push_int(&mut s, n);
            assert_eq!(s, n.to_string());
        }
        let mut s = String::new();
        push_uint(&mut s, u64::MAX);
        assert_eq!(s, u64::MAX.to_string());
    }

    #[test]
    fn durations_read_like_people_say_them() {
        let cases = [
            (0.0, "0s"),
            (0.7, "0s"),
            (45.0, "45s"),
            (60.0, "1m"),
            (192.4, "3m12s"),
            (3600.0, "1h"),
            (7530.0, "2h5m"),
            (86_400.0 * 3.0 + 4.0 * 3600.0 + 59.0, "3d4h"),
            (-5.0, "0s"),
            (f64::NAN, "0s"),
        ];
        for (secs, want) in cases {
            assert_eq!(human_duration(secs), want, "{secs}");
        }
    }

    #[test]
    fn json_is_the_daemon_array_verbatim() {
        let mut web = inst("web:0", "running");
        web.pid = Some(4312);
        web.restarts = 1;
        web.last_exit = Some(0);
        web.uptime_s = Some(192.4);
        let text = json(&[web, inst("w:10", "stopped")]).expect("encodes");
        assert_eq!(
            text,
            concat!(
                r#"[{"name":"web:0","program":"web","state":"running","pid":4312,"restarts":1,"#,
                r#""last_exit":0,"uptime_s":192.4,"next_run":null,"next_restart_in":null,"reason":null,"health":null,"cpu_percent":null,"rss_bytes":null,"exit_reason":null},"#,
                r#"{"name":"w:10","program":"w","state":"stopped","pid":null,"restarts":0,"#,
                r#""last_exit":null,"uptime_s":null,"next_run":null,"next_restart_in":null,"reason":null,"health":null,"cpu_percent":null,"rss_bytes":null,"exit_reason":null}]"#
            )
        );
        assert!(!text.contains('\n'));
    }
}
