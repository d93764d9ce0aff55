//! A child's captured output: moving bytes from the non-blocking read end of its stdout or
//! stderr pipe into its log file, rotating that file, stamping lines, and opening log files.
//!
//! The loop decides when to pump (on readiness, and to EOF once the child has exited), how
//! much per turn, and when a held partial line is due (`Capture::flush_deadline`); this file
//! only moves bytes. The rules it keeps:
//!
//! - The pipe is always drained, even when the file cannot be written, so a child never
//!   blocks on a full pipe because of a full disk. Bytes that cannot be written are counted
//!   and dropped; the first failure of a run is reported once, and so is the recovery.
//! - Rotation (`NAME.out` → `NAME.out.1` …) never drops or duplicates a byte, and happens at
//!   a line boundary whenever one is in reach: a chunk is cut at its last newline before the
//!   limit; a line already begun in the file is finished there (the file passes the limit by
//!   that much). Only a single line longer than the limit is split.
//! - With `timestamps` (or when stdout and stderr share one file) only whole lines are
//!   written; a partial line is held until its newline comes, 64 KiB pile up, the child
//!   closes the pipe, or `HOLD` passes.
//! - A prefixed inherited stream (`stdout: inherit` with `prefix`) is a `LogFile` over the
//!   daemon's own stdout or stderr, shared by every such capture, which writes whole lines
//!   only, each `NAME | line`: a partial line that has to go out is ended with a newline
//!   there, so the lines of two jobs never run into each other. Such a stream is never
//!   rotated, parked or reopened.
//!
//! - A pipe found full (a writer faster than the loop's turns) is grown to `PIPE_GROWN`, so
//!   that the writer blocks less and a turn moves more; reads take 128 KiB at a time, as
//!   `cat` does. One buffer serves every capture.
//!
//! Why read/write and not splice(2): splice refuses a target opened with O_APPEND (EINVAL), and
//! append is what makes several writers (two instances, an operator's `>>`) and truncation
//! by log rotators safe. Clearing O_APPEND while splicing and seeking to the end first works,
//! but splice into a file holds the pipe's lock while it writes the page cache, so the job
//! cannot write to its pipe meanwhile: with the writer on another core, that measured slower
//! than reading and writing (which holds the lock only for the copy out), for no less CPU.

use std::cell::RefCell;
use std::collections::VecDeque;
use std::fs::{DirBuilder, File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::fd::OwnedFd;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::time::{Duration, Instant};

use crate::config::Rotation;

const BUF_SIZE: usize = 128 * 1024;
/// A new pipe's capacity on Linux: a read this big found the pipe full.
const DEFAULT_PIPE: usize = 64 * 1024;
/// What a pipe found full is grown to (`fs.pipe-max-size`'s default).
const PIPE_GROWN: i32 = 1 << 20;
/// At most this many pipes are grown at a time: the kernel charges a pipe's capacity to its
/// owner's quota (`fs.pipe-user-pages-soft`, 64 MiB), and a user past it gets small pipes
/// everywhere, so a thousand busy jobs must not take it all.
const MAX_GROWN: usize = 16;

thread_local! {
    /// One read buffer for every capture: the loop pumps one pipe at a time, so a thousand
    /// captures need not hold 64 KiB each.
    static SCRATCH: std::cell::RefCell<Box<[u8]>> =
        std::cell::RefCell::new(vec![0; BUF_SIZE].into_boxed_slice());
    /// Pipes grown to `PIPE_GROWN` whose captures are alive.
    static GROWN: std::cell::Cell<usize> = const { std::cell::Cell::new(0) };
}
/// How long a partial line is held back waiting for its newline.
pub const HOLD: Duration = Duration::from_secs(1);
/// A partial line this long is written without waiting for the rest.
const MAX_HELD: usize = 64 * 1024;
/// A log file that cannot be opened is tried again at most this often.
const REOPEN_EVERY: Duration = Duration::from_secs(1);

/// Empty the log file at `path` when no descriptor of it is open (its instance is down or
/// never ran): opened as every log file is (no final symlink, regular files only), and not
/// created. `Ok(false)` when it does not exist.
pub fn truncate_path(path: &Path) -> io::Result<bool> {
    match open_regular(OpenOptions::new().write(true), path) {
        Ok(f) => f.set_len(0).map(|()| true),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(e),
    }
}

/// Open (creating it and its missing parent directories) a log file for appending, mode 0640.
/// Close-on-exec, like every file std opens, so no other child inherits it. A final symlink is
/// refused (O_NOFOLLOW): whoever owns the log directory could otherwise point `NAME.out` at any
/// file and have root sup append to it.
pub fn open_log(path: &Path) -> io::Result<File> {
    if let Some(dir) = path.parent() {
        if !dir.as_os_str().is_empty() {
            DirBuilder::new().recursive(true).mode(0o750).create(dir)?;
        }
    }
    open_regular(
        OpenOptions::new().append(true).create(true).mode(0o640),
        path,
    )
}

pub fn nofollow_cloexec() -> i32 {
    nix::fcntl::OFlag::O_NOFOLLOW.bits() | nix::fcntl::OFlag::O_CLOEXEC.bits()
}

/// Open `path` with `options` plus O_NOFOLLOW|O_CLOEXEC|O_NONBLOCK, and keep it only if it is
/// a regular file. Whoever owns the directory could plant a FIFO there: a blocking open would
/// wait for its other end and freeze the daemon's one thread, and a device could be read
/// forever. O_NONBLOCK is cleared again once the file is known to be regular.
pub fn open_regular(options: &mut OpenOptions, path: &Path) -> io::Result<File> {
    use nix::fcntl::{fcntl, FcntlArg, OFlag};
    use std::os::fd::AsRawFd;
    let file = options
        .custom_flags(nofollow_cloexec() | OFlag::O_NONBLOCK.bits())
        .open(path)
        .map_err(|e| match not_regular(path) {
            // A FIFO with no reader fails a non-blocking write open (ENXIO): name the cause.
            Some(kind) if e.raw_os_error() != Some(nix::errno::Errno::ELOOP as i32) => {
                refused_kind(kind)
            }
            _ => symlink_refused(e),
        })?;
    let kind = file.metadata()?.file_type();
    if !kind.is_file() {
        return Err(refused_kind(describe(kind)));
    }
    let flags = OFlag::from_bits_truncate(fcntl(file.as_raw_fd(), FcntlArg::F_GETFL)?);
    fcntl(
        file.as_raw_fd(),
        FcntlArg::F_SETFL(flags - OFlag::O_NONBLOCK),
    )?;
    Ok(file)
}

/// What `path` is when it is there but is neither a regular file, a directory nor a symlink
/// (all of which have errors of their own): the files sup writes must be regular.
pub fn not_regular(path: &Path) -> Option<&'static str> {
    let kind = std::fs::symlink_metadata(path).ok()?.file_type();
    (!kind.is_file() && !kind.is_dir() && !kind.is_symlink()).then(|| describe(kind))
}

fn describe(kind: std::fs::FileType) -> &'static str {
    use std::os::unix::fs::FileTypeExt;
    if kind.is_fifo() {
        "a FIFO"
    } else if kind.is_socket() {
        "a socket"
    } else if kind.is_char_device() {
        "a character device"
    } else if kind.is_block_device() {
        "a block device"
    } else if kind.is_dir() {
        "a directory"
    } else {
        "not a plain file"
    }
}

/// Worded like `symlink_refused`: the caller names the path.
fn refused_kind(kind: &str) -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidInput,
        format!("it is not a regular file ({kind}), which sup does not open"),
    )
}

/// ELOOP from an O_NOFOLLOW open means the last component is a symlink; say so plainly.
pub fn symlink_refused(e: io::Error) -> io::Error {
    if e.raw_os_error() == Some(nix::errno::Errno::ELOOP as i32) {
        io::Error::new(e.kind(), "it is a symbolic link, which sup does not follow")
    } else {
        e
    }
}

/// A change in a log file's health, for the event log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Trouble {
    /// Writing (or rotating, or reopening) failed; bytes are being dropped from now on.
    Failed { path: PathBuf, error: String },
    /// Writing works again after a failure.
    Recovered { path: PathBuf, dropped: u64 },
}

/// One log file with its rotation state. Shared (`Rc<RefCell<_>>`) by the captures that write
/// to it: stdout and stderr with `redirect_stderr`.
#[derive(Debug)]
pub struct LogFile {
    path: PathBuf,
    file: Option<File>,
    /// Bytes in the current file, as far as we know (read from the file when opened).
    size: u64,
    rotation: Rotation,
    /// The file's last byte is not a newline.
    mid_line: bool,
    /// Bytes lost to write failures over this file's life.
    dropped: u64,
    /// The failure now in force, for `status`.
    error: Option<String>,
    next_open: Option<Instant>,
    news: Vec<Trouble>,
    /// Its instance is down: the file stays closed, except while a capture that outlived the
    /// process (an escapee still holding the pipe) writes to it.
    parked: bool,
    /// The daemon's own stdout or stderr, not a file of ours (see `LogFile::stream`).
    stream: bool,
}

pub type SharedLog = Rc<RefCell<LogFile>>;

impl LogFile {
    /// Open `path` (see `open_log`). An error here is a failed start: the caller reports it.
    pub fn open(path: &Path, rotation: Rotation) -> io::Result<LogFile> {
        let file = open_log(path)?;
        Ok(LogFile::with_file(path, file, rotation))
    }

    /// A file that could not be opened: its output is dropped and counted, the failure is news
    /// for the event log, and opening is retried now and then.
    pub fn refused(path: &Path, rotation: Rotation, error: String, now: Instant) -> LogFile {
        let mut log = LogFile {
            path: path.to_path_buf(),
            file: None,
            size: 0,
            rotation,
            mid_line: false,
            dropped: 0,
            error: None,
            next_open: Some(now + REOPEN_EVERY),
            news: Vec::new(),
            parked: false,
            stream: false,
        };
        log.fail(error);
        log
    }

    /// An already open file, e.g. `/dev/full` in a test.
    pub fn with_file(path: &Path, file: File, rotation: Rotation) -> LogFile {
        let size = file.metadata().map(|m| m.len()).unwrap_or(0);
        LogFile {
            path: path.to_path_buf(),
            file: Some(file),
            size,
            rotation,
            mid_line: false,
            dropped: 0,
            error: None,
            next_open: None,
            news: Vec::new(),
            parked: false,
            stream: false,
        }
    }

    /// The daemon's own stdout or stderr (`file` a duplicate of its descriptor), named `label`
    /// in reports: never rotated, parked or reopened, since there is no path to open again.
    pub fn stream(label: &str, file: File) -> LogFile {
        let mut log = LogFile::with_file(Path::new(label), file, Rotation::default());
        log.rotation.maxbytes = 0;
        log.size = 0;
        log.stream = true;
        log
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn is_stream(&self) -> bool {
        self.stream
    }

    pub fn shared(self) -> SharedLog {
        Rc::new(RefCell::new(self))
    }

    /// The failure in force, with the bytes dropped so far, or `None` while all is well.
    pub fn error(&self) -> Option<String> {
        self.error
            .as_ref()
            .map(|e| format!("{e} ({} bytes dropped)", self.dropped))
    }

    /// Health changes since the last call.
    pub fn take_news(&mut self) -> Vec<Trouble> {
        std::mem::take(&mut self.news)
    }

    /// Its instance is down: close the file. A later write (from a capture that outlived the
    /// process) opens it again, so no byte is lost; `close_if_parked` closes it after that.
    pub fn park(&mut self) {
        if self.stream {
            return;
        }
        self.parked = true;
        self.file = None;
    }

    pub fn is_parked(&self) -> bool {
        self.parked
    }

    /// A capture writing to a parked file is gone: close the file again.
    pub fn close_if_parked(&mut self) {
        if self.parked {
            self.file = None;
        }
    }

    /// The descriptor is open (not parked, or parked with a late writer).
    #[cfg(test)]
    pub fn is_open(&self) -> bool {
        self.file.is_some()
    }

    /// Close and open the path again: after an external rotation moved the file away.
    pub fn reopen(&mut self, now: Instant) {
        if self.stream {
            return;
        }
        self.file = None;
        self.next_open = None;
        self.ensure_open(now);
    }

    /// `sup clear`: empty the file through the descriptor the daemon holds (never a path
    /// open, which a symlink planted since could redirect), and start its size accounting
    /// again. The descriptor appends, so the next write lands at the new end. A parked file
    /// (its instance is down) is opened as every log file is: no symlink, regular files only,
    /// and not created. `Ok(false)`: there is no file to clear.
    pub fn clear(&mut self) -> io::Result<bool> {
        if self.stream {
            return Err(io::Error::other(
                "it goes to the daemon's own stdout or stderr",
            ));
        }
        match &self.file {
            Some(f) => f.set_len(0)?,
            None => {
                if !truncate_path(&self.path)? {
                    return Ok(false);
                }
            }
        }
        self.size = 0;
        self.mid_line = false;
        Ok(true)
    }

    /// Append `data`, rotating first whenever it would grow past `maxbytes`.
    pub fn write(&mut self, mut data: &[u8], now: Instant) {
        while !data.is_empty() {
            let max = self.rotation.maxbytes;
            if max == 0 || self.size + data.len() as u64 <= max {
                self.put(data, now);
                return;
            }
            let room = usize::try_from(max.saturating_sub(self.size)).unwrap_or(usize::MAX);
            let cut = match data[..room.min(data.len())]
                .iter()
                .rposition(|&b| b == b'\n')
            {
                // The last whole line that fits.
                Some(i) => i + 1,
                None if self.mid_line => {
                    // Finish the line already begun rather than split it, unless that line is
                    // longer than a whole file may be.
                    match data.iter().position(|&b| b == b'\n') {
                        Some(i) if (i as u64) < max => i + 1,
                        _ => room,
                    }
                }
                // The file ends at a line boundary: start a new one for this line.
                None if self.size > 0 => 0,
                // One line longer than the limit: split it.
                None => room,
            };
            if cut > 0 {
                self.put(&data[..cut], now);
                data = &data[cut..];
            }
            if !self.rotate(now) {
                // Rotation failed (reported): keep appending rather than loop or drop.
                self.put(data, now);
                return;
            }
        }
    }

    /// `NAME.out.{N-1}` → `NAME.out.N` … `NAME.out` → `NAME.out.1`, then a fresh `NAME.out`.
    /// With no backups the file is truncated instead.
    fn rotate(&mut self, now: Instant) -> bool {
        self.file = None;
        let numbered = |n: u32| {
            let mut p = self.path.clone().into_os_string();
            p.push(format!(".{n}"));
            PathBuf::from(p)
        };
        let result = if self.rotation.backups == 0 {
            open_regular(OpenOptions::new().write(true).truncate(true), &self.path).map(drop)
        } else {
            let mut r = Ok(());
            for n in (1..self.rotation.backups).rev() {
                match std::fs::rename(numbered(n), numbered(n + 1)) {
                    Err(e) if e.kind() != io::ErrorKind::NotFound => r = Err(e),
                    _ => {}
                }
            }
            r.and(std::fs::rename(&self.path, numbered(1)))
        };
        if let Err(e) = result {
            self.fail(format!("unable to rotate {}: {e}", self.path.display()));
            self.ensure_open(now);
            return false;
        }
        self.ensure_open(now);
        self.size = 0;
        self.mid_line = false;
        true
    }

    fn ensure_open(&mut self, now: Instant) -> bool {
        if self.file.is_some() {
            return true;
        }
        if self.stream {
            return false;
        }
        if self.next_open.is_some_and(|at| now < at) {
            return false;
        }
        match open_log(&self.path) {
            Ok(f) => {
                self.size = f.metadata().map(|m| m.len()).unwrap_or(0);
                self.mid_line = false;
                self.file = Some(f);
                self.next_open = None;
                true
            }
            Err(e) => {
                self.next_open = Some(now + REOPEN_EVERY);
                self.fail(format!("unable to open {}: {e}", self.path.display()));
                false
            }
        }
    }

    fn fail(&mut self, error: String) {
        if self.error.is_none() {
            self.news.push(Trouble::Failed {
                path: self.path.clone(),
                error: error.clone(),
            });
            self.error = Some(error);
        }
    }

    /// Write all of `data` or count what could not be written; never retried, so never
    /// written twice.
    fn put(&mut self, data: &[u8], now: Instant) {
        if !self.ensure_open(now) {
            self.dropped += data.len() as u64;
            return;
        }
        let Some(file) = self.file.as_mut() else {
            return;
        };
        let mut written = 0;
        let mut failure = None;
        while written < data.len() {
            match file.write(&data[written..]) {
                Ok(0) => {
                    failure = Some(io::Error::from(io::ErrorKind::WriteZero));
                    break;
                }
                Ok(n) => written += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    failure = Some(e);
                    break;
                }
            }
        }
        if written > 0 {
            self.size += written as u64;
            self.mid_line = data[written - 1] != b'\n';
        }
        self.dropped += (data.len() - written) as u64;
        match failure {
            Some(e) => self.fail(format!("unable to write {}: {e}", self.path.display())),
            None => {
                if self.error.take().is_some() {
                    self.news.push(Trouble::Recovered {
                        path: self.path.clone(),
                        dropped: self.dropped,
                    });
                }
            }
        }
    }
}

/// What one `pump` did.
#[derive(Debug)]
pub struct Pump {
    /// Bytes read from the pipe (written, held or, on a write failure, dropped).
    pub bytes: usize,
    /// The write end is closed everywhere: the child and everything it started are done with
    /// it. Drop the capture (deregistering its fd first). Held bytes were written.
    pub eof: bool,
    /// The budget ran out before the pipe was empty: pump again soon (mio is edge-triggered, so
    /// no new event will come for the bytes already waiting).
    pub more: bool,
    /// Health changes of the log file, each to be logged once.
    pub troubles: Vec<Trouble>,
}

/// One stream of one child being copied to its file.
#[derive(Debug)]
pub struct Capture {
    fd: File,
    sink: SharedLog,
    /// Only whole lines are written (timestamps, or a file shared by two streams).
    whole_lines: bool,
    timestamps: bool,
    /// The next byte written starts a line (and gets a timestamp).
    line_start: bool,
    /// A partial line held back, and since when.
    held: Vec<u8>,
    held_since: Option<Instant>,
    out: Vec<u8>,
    tail: Option<Tail>,
    recent: Option<Rc<RefCell<Tail>>>,
    /// `NAME | ` before every line (a prefixed inherited stream); a partial line written
    /// without its newline gets one, so the next writer starts on a line of its own.
    prefix: Option<String>,
    /// Growing the pipe was tried (not again); `holds_growth`: it worked, and counts in
    /// `GROWN` until the capture is dropped.
    grown: bool,
    holds_growth: bool,
}

impl Drop for Capture {
    fn drop(&mut self) {
        if self.holds_growth {
            GROWN.with(|g| g.set(g.get().saturating_sub(1)));
        }
    }
}

impl Capture {
    /// `fd` is the read end from `spawn` (already non-blocking); `sink` its log file.
    pub fn new(fd: OwnedFd, sink: SharedLog) -> Capture {
        Capture {
            fd: File::from(fd),
            sink,
            whole_lines: false,
            timestamps: false,
            line_start: true,
            held: Vec::new(),
            held_since: None,
            out: Vec::new(),
            tail: None,
            recent: None,
            prefix: None,
            grown: false,
            holds_growth: false,
        }
    }

    /// The pipe was found full: a writer faster than the loop's turns. Let it hold up to
    /// `PIPE_GROWN` so that it waits less and each turn moves more, unless `MAX_GROWN`
    /// pipes are grown already. The kernel refuses past the owner's pipe quota, and then the
    /// pipe stays as it is.
    fn grow_pipe(&mut self) {
        if std::mem::replace(&mut self.grown, true) || GROWN.with(|g| g.get()) >= MAX_GROWN {
            return;
        }
        use nix::fcntl::{fcntl, FcntlArg};
        use std::os::fd::AsRawFd;
        if fcntl(self.fd.as_raw_fd(), FcntlArg::F_SETPIPE_SZ(PIPE_GROWN)).is_ok() {
            self.holds_growth = true;
            GROWN.with(|g| g.set(g.get() + 1));
        }
    }

    /// Start every line with `NAME | ` and end every write with a newline (see `prefix`).
    pub fn prefix(mut self, instance: Option<&str>) -> Capture {
        if let Some(name) = instance {
            self.prefix = Some(format!("{name} | "));
            self.whole_lines = true;
        }
        self
    }

    /// What starts a line: the prefix, then the timestamp.
    fn head(&self) -> String {
        let mut head = self.prefix.clone().unwrap_or_default();
        if self.timestamps {
            head.push_str(&stamp());
        }
        head
    }

    /// Prefix every line with an RFC 3339 timestamp.
    pub fn timestamps(mut self, on: bool) -> Capture {
        self.timestamps = on;
        self.whole_lines |= on;
        self
    }

    /// Write whole lines only, so that two streams sharing a file do not cut into each
    /// other's lines.
    pub fn whole_lines(mut self, on: bool) -> Capture {
        self.whole_lines |= on;
        self
    }

    /// Also feed the newest bytes into `recent`, which outlives the capture (the last lines
    /// of output in a notification).
    pub fn recent(mut self, recent: Rc<RefCell<Tail>>) -> Capture {
        self.recent = Some(recent);
        self
    }

    /// Also keep the last `cap` bytes in memory, for showing recent output without reading the
    /// file back (a later `tail -f`).
    #[allow(dead_code)]
    pub fn keep_tail(&mut self, cap: usize) {
        self.tail = Some(Tail::new(cap));
    }

    /// The last bytes seen, oldest first, if `keep_tail` was asked for.
    #[allow(dead_code)]
    pub fn tail(&self) -> Option<(&[u8], &[u8])> {
        self.tail.as_ref().map(|t| t.bytes.as_slices())
    }

    /// The capture is being dropped: a parked file it kept open is closed.
    pub fn release_sink(&self) {
        if let Ok(mut sink) = self.sink.try_borrow_mut() {
            sink.close_if_parked();
        }
    }

    /// The read end, to register with the poller (`mio::unix::SourceFd`).
    pub fn fd(&self) -> std::os::fd::BorrowedFd<'_> {
        std::os::fd::AsFd::as_fd(&self.fd)
    }

    /// When the held partial line must be written even without its newline.
    pub fn flush_deadline(&self) -> Option<Instant> {
        self.held_since.map(|t| t + HOLD)
    }

    /// Write the held partial line if its deadline has passed. Returns health changes.
    pub fn flush_if_due(&mut self, now: Instant) -> Vec<Trouble> {
        if self.flush_deadline().is_some_and(|at| at <= now) {
            self.flush_held(now);
        }
        self.sink.borrow_mut().take_news()
    }

    /// Write the held partial line now.
    pub fn flush_held(&mut self, now: Instant) {
        if self.held.is_empty() {
            self.held_since = None;
            return;
        }
        let held = std::mem::take(&mut self.held);
        self.out.clear();
        if self.line_start {
            let head = self.head();
            self.out.extend_from_slice(head.as_bytes());
        }
        self.out.extend_from_slice(&held);
        self.line_start = false;
        if self.prefix.is_some() {
            // The stream is shared: the rest of the line comes as a line of its own.
            self.out.push(b'\n');
            self.line_start = true;
        }
        self.sink.borrow_mut().write(&self.out, now);
        self.held = held;
        self.held.clear();
        self.held_since = None;
    }

    /// Read what the pipe holds, up to `budget` bytes, and append it to the file. Stops at
    /// `WouldBlock`, EOF or the budget. An `Err` is a read error on the pipe (not expected for a
    /// pipe; treat it like EOF and drop the capture).
    pub fn pump(&mut self, budget: usize, now: Instant) -> io::Result<Pump> {
        let mut out = Pump {
            bytes: 0,
            eof: false,
            more: false,
            troubles: Vec::new(),
        };
        let result = self.pump_into(budget, &mut out, now);
        if out.eof || result.is_err() {
            self.flush_held(now);
        }
        out.troubles = self.sink.borrow_mut().take_news();
        result.map(|()| out)
    }

    fn pump_into(&mut self, budget: usize, out: &mut Pump, now: Instant) -> io::Result<()> {
        SCRATCH.with(|scratch| {
            let mut buf = scratch.borrow_mut();
            while out.bytes < budget {
                let want = (budget - out.bytes).min(buf.len());
                let n = match self.fd.read(&mut buf[..want]) {
                    Ok(0) => {
                        out.eof = true;
                        return Ok(());
                    }
                    Ok(n) => n,
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(()),
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                    Err(e) => return Err(e),
                };
                if n >= DEFAULT_PIPE {
                    self.grow_pipe();
                }
                out.bytes += n;
                self.take(&buf[..n], now);
            }
            out.more = true;
            Ok(())
        })
    }

    /// Move a chunk just read on: to the file, or held.
    fn take(&mut self, chunk: &[u8], now: Instant) {
        if let Some(t) = &mut self.tail {
            t.push(chunk);
        }
        if let Some(r) = &self.recent {
            r.borrow_mut().push(chunk);
        }
        if !self.whole_lines {
            self.sink.borrow_mut().write(chunk, now);
            return;
        }
        let Some(last_nl) = chunk.iter().rposition(|&b| b == b'\n') else {
            self.held.extend_from_slice(chunk);
            self.held_since.get_or_insert(now);
            if self.held.len() >= MAX_HELD {
                self.flush_held(now);
            }
            return;
        };
        let (lines, rest) = chunk.split_at(last_nl + 1);
        self.out.clear();
        let stamp = self.head();
        // The held part and the new bytes form whole lines; a line gets the stamp where it
        // starts, so a held part that was already written (after `HOLD`) gets none again.
        let mut line_start = self.line_start;
        if !self.held.is_empty() {
            if line_start {
                self.out.extend_from_slice(stamp.as_bytes());
            }
            self.out.extend_from_slice(&self.held);
            self.held.clear();
            line_start = false;
        }
        for line in lines.split_inclusive(|&b| b == b'\n') {
            if line_start {
                self.out.extend_from_slice(stamp.as_bytes());
            }
            self.out.extend_from_slice(line);
            line_start = true;
        }
        self.line_start = true;
        self.sink.borrow_mut().write(&self.out, now);
        self.held_since = None;
        if !rest.is_empty() {
            self.held.extend_from_slice(rest);
            self.held_since = Some(now);
        }
    }
}

/// `2026-11-22T07:41:45.123+01:00 `: the event log's clock, as a line prefix.
fn stamp() -> String {
    let mut s = crate::logging::timestamp();
    s.push(' ');
    s
}

/// A bounded byte queue holding the most recent output.
#[derive(Debug)]
pub struct Tail {
    cap: usize,
    bytes: VecDeque<u8>,
}

impl Tail {
    pub fn new(cap: usize) -> Tail {
        Tail {
            cap,
            // Grown as output comes: an instance that writes nothing costs nothing.
            bytes: VecDeque::new(),
        }
    }

    pub fn push(&mut self, chunk: &[u8]) {
        let chunk = &chunk[chunk.len().saturating_sub(self.cap)..];
        let excess = (self.bytes.len() + chunk.len()).saturating_sub(self.cap);
        self.bytes.drain(..excess);
        self.bytes.extend(chunk);
    }

    /// The last `n` lines, as text.
    pub fn last_lines(&self, n: usize) -> String {
        let (a, b) = self.bytes.as_slices();
        let text = String::from_utf8_lossy(&[a, b].concat()).into_owned();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(n)..].join("\n")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::ExitStatus;
    use crate::daemon::spawn::{spawn, SpawnRequest, Stdio};
    use crate::daemon::testutil::{spec, temp_dir, wait_exit, Deadline};
    use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
    use std::time::Duration;

    /// Pump until EOF, waiting for readiness with poll; returns the number of pumps that hit
    /// the budget.
    fn pump_to_eof(cap: &mut Capture, budget: usize) -> usize {
        let deadline = Deadline::after(Duration::from_secs(20));
        let mut budget_hits = 0;
        loop {
            let p = cap.pump(budget, Instant::now()).expect("pump");
            assert!(p.troubles.is_empty(), "{:?}", p.troubles);
            if p.eof {
                return budget_hits;
            }
            if p.more {
                budget_hits += 1;
                continue;
            }
            assert!(!deadline.passed(), "no EOF in time");
            let mut fds = [PollFd::new(cap.fd(), PollFlags::POLLIN)];
            let _ = poll(&mut fds, PollTimeout::from(100u16));
        }
    }

    #[test]
    fn every_byte_of_a_5mb_write_reaches_the_file() {
        let dir = temp_dir("pump");
        let s = spec(&["head", "-c", "5000000", "/dev/urandom"]);
        let req = SpawnRequest {
            spec: &s,
            name: "t",
            num: 0,
            stdout: Stdio::Pipe,
            stderr: Stdio::Null,
        };
        let child = spawn(&req).expect("spawn");
        let path = dir.join("logs/deep/t.out");
        let file = LogFile::open(&path, Rotation::default()).expect("open log");
        let mut cap = Capture::new(child.stdout.expect("a pipe"), file.shared());
        cap.keep_tail(1000);
        let hits = pump_to_eof(&mut cap, 16 * 1024);
        assert_eq!(wait_exit(child.pid), ExitStatus::Code(0));
        assert!(
            hits > 0,
            "a 16 KiB budget must run out on a full 64 KiB pipe"
        );
        let written = std::fs::read(&path).expect("read log");
        assert_eq!(written.len(), 5_000_000);
        let (a, b) = cap.tail().expect("tail kept");
        assert_eq!([a, b].concat(), written[written.len() - 1000..]);
        let mode = std::fs::metadata(&path)
            .map(|m| m.permissions())
            .expect("stat");
        assert_eq!(
            std::os::unix::fs::PermissionsExt::mode(&mode) & 0o777,
            0o640
        );
        let _ = std::fs::remove_dir_all(dir);
    }

    #[test]
    fn a_full_pipe_is_grown_and_only_so_many_at_a_time() {
        use nix::fcntl::{fcntl, FcntlArg};
        use std::os::fd::AsRawFd;
        let dir = temp_dir("grow");
        let sink = LogFile::open(&dir.join("t.out"), Rotation::default())
            .expect("open")
            .shared();
        let before = GROWN.with(|g| g.get());
        let mut caps = Vec::new();
        let mut writers = Vec::new();
        for _ in 0..MAX_GROWN + 2 {
            let (r, w) = nix::unistd::pipe2(nix::fcntl::OFlag::O_NONBLOCK).expect("pipe");
            let mut w = File::from(w);
            w.write_all(&vec![b'x'; DEFAULT_PIPE])
                .expect("fill the pipe");
            let mut cap = Capture::new(r, sink.clone());
            cap.pump(usize::MAX, Instant::now()).expect("pump");
            caps.push(cap);
            writers.push(w);
        }
        let sizes: Vec<i32> = caps
            .iter()
            .map(|c| fcntl(c.fd.as_raw_fd(), FcntlArg::F_GETPIPE_SZ).expect("size"))
            .collect();
        let grown = sizes.iter().filter(|&&n| n == PIPE_GROWN).count();
        // Other tests on this thread may hold some; the cap holds for all of them.
        assert_eq!(grown, MAX_GROWN - before, "{sizes:?}");
        assert_eq!(GROWN.with(|g| g.get()), MAX_GROWN);
        drop(caps);
        assert_eq!(
            GROWN.with(|g| g.get()),
            before,
            "released with their captures"
        );
        let _ = std::fs::remove_dir_all(dir);
    }

    #[test]
    fn a_fast_writer_through_a_grown_pipe_rotates_at_newlines_and_loses_nothing() {
        let dir = temp_dir("fast-rot");
        // 50-byte lines, rotated near 200 010 bytes.
        let line = "0123456789012345678901234567890123456789012345678";
        let cmd = format!("yes {line} | head -c 3000000");
        let s = spec(&["sh", "-c", &cmd]);
        let req = SpawnRequest {
            spec: &s,
            name: "t",
            num: 0,
            stdout: Stdio::Pipe,
            stderr: Stdio::Null,
        };
        let child = spawn(&req).expect("spawn");
        let path = dir.join("t.out");
        let sink = LogFile::open(&path, rotation(200_010, 100))
            .expect("open")
            .shared();
        let mut cap = Capture::new(child.stdout.expect("a pipe"), sink.clone());
        pump_to_eof(&mut cap, 1 << 20);
        assert!(cap.grown, "the full pipe was grown");
        assert_eq!(wait_exit(child.pid), ExitStatus::Code(0));
        let files = generations(&path);
        assert!(files.len() >= 14, "{} files", files.len());
        let want = format!("{line}\n").repeat(60_000).into_bytes();
        assert!(
            files.concat() == want,
            "the bytes differ from what was written"
        );
        for f in &files[..files.len() - 1] {
            // Cut at the last newline before the limit, or after the line begun there.
            assert!((200_000..=200_050).contains(&f.len()), "{} bytes", f.len());
            assert_eq!(f.last(), Some(&b'\n'), "a line was split across files");
        }
        let _ = std::fs::remove_dir_all(dir);
    }

    #[test]
    fn two_writers_a_shell_append_and_a_truncation_all_land_where_append_puts_them() {
        let dir = temp_dir("append");
        let path = dir.join("t.out");
        let pipe = || nix::unistd::pipe2(nix::fcntl::OFlag::O_NONBLOCK).expect("pipe");
        // Two instances whose stdout is the same path, each with a descriptor of its own.
        let ((ra, wa), (rb, wb)) = (pipe(), pipe());
        let open = || {
            LogFile::open(&path, Rotation::default())
                .expect("open")
                .shared()
        };
        let (sa, sb) = (open(), open());
        let mut a = Capture::new(ra, sa.clone());
        let mut b = Capture::new(rb, sb.clone());
        let (mut wa, mut wb) = (File::from(wa), File::from(wb));
        let t = Instant::now();
        let read = || std::fs::read_to_string(&path).expect("read");
        wa.write_all(b"a1\n").expect("write");
        a.pump(usize::MAX, t).expect("pump");
        wb.write_all(b"b1\n").expect("write");
        b.pump(usize::MAX, t).expect("pump");
        wa.write_all(b"a2\n").expect("write");
        a.pump(usize::MAX, t).expect("pump");
        assert_eq!(read(), "a1\nb1\na2\n");
        // An operator's `>>`, then a write through the descriptor.
        let mut op = OpenOptions::new().append(true).open(&path).expect("open");
        op.write_all(b"op\n").expect("write");
        sa.borrow_mut().write(b"direct\n", t);
        assert_eq!(read(), "a1\nb1\na2\nop\ndirect\n");
        // A rotator's truncation (copytruncate): the next write starts at the new end.
        op.set_len(0).expect("truncate");
        wa.write_all(b"a3\n").expect("write");
        a.pump(usize::MAX, t).expect("pump");
        assert_eq!(read(), "a3\n", "no hole where the old bytes were");
        drop((wa, wb));
        assert!(a.pump(usize::MAX, t).expect("pump").eof);
        assert!(b.pump(usize::MAX, t).expect("pump").eof);
        let _ = std::fs::remove_dir_all(dir);
    }

    #[test]
    fn a_failing_file_still_drains_the_pipe_and_reports_once() {
        // /dev/full refuses every write with ENOSPC.
        let full = OpenOptions::new().append(true).open("/dev/full");
        let Ok(full) = full else { return };
        let s = spec(&["head", "-c", "300000", "/dev/zero"]);
        let req = SpawnRequest {
            spec: &s,
            name: "t",
            num: 0,
            stdout: Stdio::Pipe,
            stderr: Stdio::Null,
        };
        let child = spawn(&req).expect("spawn");
        let full = LogFile::with_file(Path::new("/dev/full"), full, Rotation::default());
        let mut cap = Capture::new(child.stdout.expect("a pipe"), full.shared());
        let deadline = Deadline::after(Duration::from_secs(20));
        let mut errors = 0;
        loop {
            let p = cap.pump(usize::MAX, Instant::now()).expect("pump");
            errors += p.troubles.len();
            if p.eof {
                break;
            }
            assert!(!deadline.passed(), "no EOF in time");
            let mut fds = [PollFd::new(cap.fd(), PollFlags::POLLIN)];
            let _ = poll(&mut fds, PollTimeout::from(100u16));
        }
        assert_eq!(wait_exit(child.pid), ExitStatus::Code(0));
        assert_eq!(errors, 1);
        assert_eq!(cap.sink.borrow().dropped, 300_000);
    }

    #[test]
    fn the_tail_keeps_only_the_newest_bytes() {
        let mut t = Tail::new(4);
        t.push(b"ab");
        t.push(b"cde");
        assert_eq!(t.bytes.iter().copied().collect::<Vec<_>>(), b"bcde");
        t.push(b"0123456");
        assert_eq!(t.bytes.iter().copied().collect::<Vec<_>>(), b"3456");
    }

    fn rotation(maxbytes: u64, backups: u32) -> Rotation {
        Rotation { maxbytes, backups }
    }

    /// Every file of a rotated log, oldest first.
    fn generations(path: &Path) -> Vec<Vec<u8>> {
        let mut out = Vec::new();
        for n in (1..1000).rev() {
            let p = PathBuf::from(format!("{}.{n}", path.display()));
            if let Ok(b) = std::fs::read(&p) {
                out.push(b);
            }
        }
        out.push(std::fs::read(path).unwrap_or_default());
        out
    }

    #[test]
    fn rotation_cuts_at_the_last_newline_before_the_limit() {
        let dir = temp_dir("rot-lines");
        let path = dir.join("t.out");
        let mut log = LogFile::open(&path, rotation(100, 500)).expect("open");
        let mut all = Vec::new();
        // Lines of varying length written in chunks that cut lines anywhere.
        let mut text = Vec::new();
        for i in 0..500 {
            text.extend_from_slice(format!("line {i} {}\n", "x".repeat(i % 37)).as_bytes());
        }
        for chunk in text.chunks(61) {
            log.write(chunk, Instant::now());
            all.extend_from_slice(chunk);
        }
        let files = generations(&path);
        assert!(files.len() > 10);
        assert_eq!(files.concat(), all, "no byte lost or doubled");
        for f in &files[..files.len() - 1] {
            // At most the limit, plus the rest of a line already begun when it was reached.
            assert!(f.len() <= 100 + 50, "{} bytes", f.len());
            assert_eq!(f.last(), Some(&b'\n'), "a line was split across files");
        }
        let _ = std::fs::remove_dir_all(dir);
    }

    #[test]
    fn a_line_longer_than_the_limit_is_split_and_backups_are_capped() {
        let dir = temp_dir("rot-long");
        let path = dir.join("t.out");
        let mut log = LogFile::open(&path, rotation(10, 2)).expect("open");
        log.write(b"ab\n", Instant::now());
        log.write(b"0123456789012345678901234\n", Instant::now());
        log.write(b"z\n", Instant::now());
        let files = generations(&path);
        assert_eq!(
            files,
            [
                b"0123456789".to_vec(),
                b"0123456789".to_vec(),
                b"01234\nz\n".to_vec()
            ],
            "the oldest file fell off; the long line was split at the limit"
        );
        assert!(!PathBuf::from(format!("{}.3", path.display())).exists());
        let _ = std::fs::remove_dir_all(dir);
    }

    #[test]
    fn a_line_begun_before_the_limit_is_finished_in_the_same_file() {
        let dir = temp_dir("rot-finish");
        let path = dir.join("t.out");
        let mut log = LogFile::open(&path, rotation(10, 5)).expect("open");
        log.write(b"abcdefgh", Instant::now());
        log.write(b"ij\nkl\n", Instant::now());
        assert_eq!(
            generations(&path),
            [b"abcdefghij\n".to_vec(), b"kl\n".to_vec()]
        );
        let _ = std::fs::remove_dir_all(dir);
    }

    #[test]
    fn zero_backups_truncate_and_zero_maxbytes_never_rotates() {
        let dir = temp_dir("rot-zero");
        let path = dir.join("t.out");
        let mut log = LogFile::open(&path, rotation(4, 0)).expect("open");
        log.write(b"aa\nbb\ncc\n", Instant::now());
        assert_eq!(std::fs::read(&path).expect("read"), b"cc\n");
        let path2 = dir.join("u.out");
        let mut log = LogFile::open(&path2, rotation(0, 3)).expect("open");
        log.write(&[b'x'; 10_000], Instant::now());
        assert_eq!(generations(&path2), [vec![b'x'; 10_000]]);
        let _ = std::fs::remove_dir_all(dir);
    }

    #[test]
    fn a_parked_file_is_closed_and_a_late_writer_loses_nothing() {
        let dir = temp_dir("park");
        let path = dir.join("t.out");
        let (r, w) = nix::unistd::pipe2(nix::fcntl::OFlag::O_NONBLOCK).expect("pipe");
        let sink = LogFile::open(&path, Rotation::default())
            .expect("open")
            .shared();
        let mut cap = Capture::new(r, sink.clone()).whole_lines(true);
        let mut w = File::from(w);
        w.write_all(b"before\n").expect("write");
        cap.pump(usize::MAX, Instant::now()).expect("pump");
        sink.borrow_mut().park();
        assert!(!sink.borrow().is_open(), "parking closes the file");
        // An escapee still holding the pipe writes after its instance went down.
        w.write_all(b"late\npartial").expect("write");
        drop(w);
        let p = cap.pump(usize::MAX, Instant::now()).expect("pump");
        assert!(p.eof && p.troubles.is_empty(), "{p:?}");
        assert!(sink.borrow().is_open(), "a late write opens it again");
        cap.release_sink();
        assert!(
            !sink.borrow().is_open(),
            "closed again once its writer is gone"
        );
        assert_eq!(
            std::fs::read(&path).expect("read"),
            b"before\nlate\npartial"
        );
        let _ = std::fs::remove_dir_all(dir);
    }

    #[test]
    fn timestamps_stamp_every_line_once_even_across_reads() {
        let dir = temp_dir("stamps");
        let path = dir.join("t.out");
        let (r, w) = nix::unistd::pipe2(nix::fcntl::OFlag::O_NONBLOCK).expect("pipe");
        let sink = LogFile::open(&path, Rotation::default())
            .expect("open")
            .shared();
        let mut cap = Capture::new(r, sink).timestamps(true);
        let mut w = File::from(w);
        w.write_all(b"one\ntw").expect("write");
        cap.pump(usize::MAX, Instant::now()).expect("pump");
        assert_eq!(
            std::fs::read_to_string(&path)
                .expect("read")
                .lines()
                .count(),
            1
        );
        assert!(cap.flush_deadline().is_some(), "a partial line is held");
        w.write_all(b"o\nthree").expect("write");
        drop(w);
        let p = cap.pump(usize::MAX, Instant::now()).expect("pump");
        assert!(p.eof);
        let text = std::fs::read_to_string(&path).expect("read");
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 3, "{text}");
        for (line, want) in lines.iter().zip(["one", "two", "three"]) {
            let (ts, rest) = line.split_once(' ').expect("a stamp");
            assert!(chrono::DateTime::parse_from_rfc3339(ts).is_ok(), "{line}");
            assert_eq!(rest, want);
        }
        let _ = std::fs::remove_dir_all(dir);
    }

    #[test]
    fn prefixed_writers_sharing_a_stream_never_cut_into_each_others_lines() {
        let dir = temp_dir("prefix");
        let path = dir.join("stream");
        let file = open_log(&path).expect("open");
        let sink = LogFile::stream("<test stream>", file).shared();
        let pipe = || nix::unistd::pipe2(nix::fcntl::OFlag::O_NONBLOCK).expect("pipe");
        let ((ra, wa), (rb, wb)) = (pipe(), pipe());
        let mut a = Capture::new(ra, sink.clone()).prefix(Some("a:0"));
        let mut b = Capture::new(rb, sink.clone()).prefix(Some("b"));
        let (mut wa, mut wb) = (File::from(wa), File::from(wb));
        let t0 = Instant::now();
        wa.write_all(b"one\nhalf").expect("write");
        a.pump(usize::MAX, t0).expect("pump");
        wb.write_all(b"bee\n").expect("write");
        b.pump(usize::MAX, t0).expect("pump");
        // The held half goes out after HOLD as a line of its own; its rest starts another.
        a.flush_if_due(t0 + HOLD);
        wa.write_all(b"-rest\n").expect("write");
        a.pump(usize::MAX, t0 + HOLD).expect("pump");
        // A stream is never parked or reopened: it has no path to open again.
        sink.borrow_mut().park();
        sink.borrow_mut().reopen(t0);
        wb.write_all(b"last\n").expect("write");
        b.pump(usize::MAX, t0 + HOLD).expect("pump");
        assert_eq!(
            std::fs::read_to_string(&path).expect("read"),
            "a:0 | one\nb | bee\na:0 | half\na:0 | -rest\nb | last\n"
        );
        let _ = std::fs::remove_dir_all(dir);
    }
}
