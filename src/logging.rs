//! The event log: `RFC3339-timestamp LEVEL message`, one line per event, to `daemon.logfile`
//! and (in the foreground, unless `--quiet`) to stderr.
//!
//! A small `log::Log` of our own rather than simplelog: simplelog always brackets the level
//! (`[INFO]`), and the README promises the line as `TIMESTAMP LEVEL message`. Lines are buffered
//! and written once per loop turn (`log::logger().flush()`), so a burst of 1000 spawns costs a
//! handful of writes, not thousands.
//!
//! `reopen` (for `sup logreopen` and SIGUSR2) reaches the sink through a static handle, since
//! the `log` facade hands out only `&dyn Log`.

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};

use log::{LevelFilter, Log, Metadata, Record};

struct Sink {
    file: Option<File>,
    path: PathBuf,
    stderr: bool,
    buf: Vec<u8>,
    /// Set once a write failed, so a full disk is reported once, not once per line.
    failing: bool,
}

pub struct EventLog {
    level: LevelFilter,
    sink: Arc<Mutex<Sink>>,
}

/// Lines the event log has taken since the start, for `/metrics`.
static LINES: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// How many lines the event log has taken since the start.
pub fn lines() -> u64 {
    LINES.load(std::sync::atomic::Ordering::Relaxed)
}

/// The installed logger's sink, for `reopen`.
static SINK: OnceLock<Arc<Mutex<Sink>>> = OnceLock::new();

fn open(path: &Path) -> io::Result<File> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    crate::daemon::output::open_regular(
        OpenOptions::new().create(true).append(true).mode(0o640),
        path,
    )
}

/// Install the event log as the process's logger. Fails (during setup only) when the file
/// cannot be opened.
pub fn init(path: &Path, level: LevelFilter, stderr: bool) -> io::Result<()> {
    let file = open(path)?;
    let sink = Arc::new(Mutex::new(Sink {
        file: Some(file),
        path: path.to_path_buf(),
        stderr,
        buf: Vec::with_capacity(16 * 1024),
        failing: false,
    }));
    let _ = SINK.set(sink.clone());
    let logger = EventLog { level, sink };
    log::set_max_level(level);
    log::set_boxed_logger(Box::new(logger)).map_err(|e| io::Error::other(e.to_string()))
}

/// Write what is buffered, then close the event log and open its path again (after an
/// external logrotate moved it). The error names the file; the old file is kept then.
pub fn reopen() -> Result<(), String> {
    let Some(sink) = SINK.get() else {
        return Ok(());
    };
    let Ok(mut sink) = sink.lock() else {
        return Err("the event log is unusable".into());
    };
    sink.write_out();
    match open(&sink.path) {
        Ok(file) => {
            sink.file = Some(file);
            sink.failing = false;
            Ok(())
        }
        Err(e) => Err(format!(
            "unable to reopen the event log {}: {e}",
            sink.path.display()
        )),
    }
}

/// The event log's file, for `sup tail --events`; `None` when no event log was installed
/// (then it goes nowhere but stderr).
pub fn path() -> Option<PathBuf> {
    let sink = SINK.get()?;
    let sink = sink.lock().ok()?;
    Some(sink.path.clone())
}

/// `2026-11-22T07:41:45.123+01:00`: local time with its offset, millisecond precision.
pub fn timestamp() -> String {
    chrono::Local::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, false)
}

/// Give back the buffer a burst of lines grew (up to twice the flush threshold), once it is
/// written out; the next line starts a small one.
pub fn shrink() {
    if let Some(sink) = SINK.get() {
        if let Ok(mut sink) = sink.lock() {
            if sink.buf.is_empty() {
                sink.buf = Vec::new();
            }
        }
    }
}

impl Log for EventLog {
    fn enabled(&self, metadata: &Metadata) -> bool {
        metadata.level() <= self.level
    }

    fn log(&self, record: &Record) {
        if !self.enabled(record.metadata()) {
            return;
        }
        let Ok(mut sink) = self.sink.lock() else {
            return;
        };
        let line = format!("{} {} {}\n", timestamp(), record.level(), record.args());
        LINES.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        sink.buf.extend_from_slice(line.as_bytes());
        if sink.buf.len() > 64 * 1024 {
            sink.write_out();
        }
    }

    fn flush(&self) {
        if let Ok(mut sink) = self.sink.lock() {
            sink.write_out();
        }
    }
}

impl Sink {
    fn write_out(&mut self) {
        if self.buf.is_empty() {
            return;
        }
        if self.stderr {
            let _ = io::stderr().write_all(&self.buf);
        }
        if let Some(file) = &mut self.file {
            match file.write_all(&self.buf) {
                Ok(()) => self.failing = false,
                Err(e) if !self.failing => {
                    self.failing = true;
                    let _ = writeln!(
                        io::stderr(),
                        "sup: error: unable to write the event log {}: {e}",
                        self.path.display()
                    );
                }
                Err(_) => {}
            }
        }
        self.buf.clear();
    }
}
