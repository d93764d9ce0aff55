//! A child's captured output: moving bytes from the non-blocking read end of its stdout or
//! stderr pipe into its log file, and opening those log files.
//!
//! The loop decides when to pump (on readiness, and to EOF once the child has exited) and how
//! much per turn; this file only moves bytes. The rule it keeps: the pipe is always drained,
//! even when the file cannot be written, so a child never blocks on a full pipe because of a
//! full disk.
//!
//! Why read/write and not splice(2): splice refuses a target opened with O_APPEND (EINVAL), and
//! append is what makes several writers (stdout and stderr to one file, two instances, an
//! operator's `>>`) and truncation by log rotators safe. One 64 KiB buffer per capture is cheap.

use std::collections::VecDeque;
use std::fs::{DirBuilder, File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::fd::OwnedFd;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::Path;

const BUF_SIZE: usize = 64 * 1024;

/// Open (creating it and its missing parent directories) a log file for appending, mode 0640.
/// Close-on-exec, like every file std opens, so no other child inherits it.
pub fn open_log(path: &Path) -> io::Result<File> {
    if let Some(dir) = path.parent() {
        if !dir.as_os_str().is_empty() {
            DirBuilder::new().recursive(true).mode(0o750).create(dir)?;
        }
    }
    OpenOptions::new()
        .append(true)
        .create(true)
        .mode(0o640)
        .open(path)
}

/// What one `pump` did.
#[derive(Debug)]
pub struct Pump {
    /// Bytes read from the pipe (written or, on a write failure, dropped).
    pub bytes: usize,
    /// The write end is closed everywhere: the child and everything it started are done with
    /// it. Drop the capture (deregistering its fd first).
    pub eof: bool,
    /// The budget ran out before the pipe was empty: pump again soon (mio is edge-triggered, so
    /// no new event will come for the bytes already waiting).
    pub more: bool,
    /// The first write failure after a run of good writes; later failures in the same run are
    /// only counted in `Capture::dropped`. Log it once.
    pub write_error: Option<io::Error>,
}

/// One stream of one child being copied to its file.
#[derive(Debug)]
pub struct Capture {
    fd: File,
    file: File,
    buf: Box<[u8]>,
    /// Bytes read but not written because the file refused them, over the capture's life.
    dropped: u64,
    /// A write failure was reported and no write has succeeded since.
    failing: bool,
    tail: Option<Tail>,
}

impl Capture {
    /// `fd` is the read end from `spawn` (already non-blocking); `file` comes from `open_log`.
    pub fn new(fd: OwnedFd, file: File) -> Capture {
        Capture {
            fd: File::from(fd),
            file,
            buf: vec![0; BUF_SIZE].into_boxed_slice(),
            dropped: 0,
            failing: false,
            tail: None,
        }
    }

    /// Also keep the last `cap` bytes in memory, for showing recent output without reading the
    /// file back (a later `tail -f`).
    pub fn keep_tail(&mut self, cap: usize) {
        self.tail = Some(Tail::new(cap));
    }

    /// The last bytes seen, oldest first, if `keep_tail` was asked for.
    pub fn tail(&self) -> Option<(&[u8], &[u8])> {
        self.tail.as_ref().map(|t| t.bytes.as_slices())
    }

    /// Bytes lost to write failures so far.
    pub fn dropped(&self) -> u64 {
        self.dropped
    }

    /// The read end, to register with the poller (`mio::unix::SourceFd`).
    pub fn fd(&self) -> std::os::fd::BorrowedFd<'_> {
        std::os::fd::AsFd::as_fd(&self.fd)
    }

    /// Read what the pipe holds, up to `budget` bytes, and append it to the file. Stops at
    /// `WouldBlock`, EOF or the budget. An `Err` is a read error on the pipe (not expected for a
    /// pipe; treat it like EOF and drop the capture).
    pub fn pump(&mut self, budget: usize) -> io::Result<Pump> {
        let mut out = Pump {
            bytes: 0,
            eof: false,
            more: false,
            write_error: None,
        };
        while out.bytes < budget {
            let want = (budget - out.bytes).min(self.buf.len());
            let n = match self.fd.read(&mut self.buf[..want]) {
                Ok(0) => {
                    out.eof = true;
                    return Ok(out);
                }
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(out),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            };
            out.bytes += n;
            let chunk = &self.buf[..n];
            if let Some(t) = &mut self.tail {
                t.push(chunk);
            }
            match self.file.write_all(chunk) {
                Ok(()) => self.failing = false,
                Err(e) => {
                    // write_all may have written a prefix; the count is an upper bound.
                    self.dropped += n as u64;
                    if !self.failing {
                        self.failing = true;
                        out.write_error = Some(e);
                    }
                }
            }
        }
        out.more = true;
        Ok(out)
    }
}

/// A bounded byte queue holding the most recent output.
#[derive(Debug)]
struct Tail {
    cap: usize,
    bytes: VecDeque<u8>,
}

impl Tail {
    fn new(cap: usize) -> Tail {
        Tail {
            cap,
            bytes: VecDeque::with_capacity(cap),
        }
    }

    fn push(&mut self, chunk: &[u8]) {
        let chunk = &chunk[chunk.len().saturating_sub(self.cap)..];
        let excess = (self.bytes.len() + chunk.len()).saturating_sub(self.cap);
        self.bytes.drain(..excess);
        self.bytes.extend(chunk);
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
            let p = cap.pump(budget).expect("pump");
            assert!(p.write_error.is_none(), "{:?}", p.write_error);
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
        let file = open_log(&path).expect("open log");
        let mut cap = Capture::new(child.stdout.expect("a pipe"), file);
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
        let mut cap = Capture::new(child.stdout.expect("a pipe"), full);
        let deadline = Deadline::after(Duration::from_secs(20));
        let mut errors = 0;
        loop {
            let p = cap.pump(usize::MAX).expect("pump");
            errors += usize::from(p.write_error.is_some());
            if p.eof {
                break;
            }
            assert!(!deadline.passed(), "no EOF in time");
            let mut fds = [PollFd::new(cap.fd(), PollFlags::POLLIN)];
            let _ = poll(&mut fds, PollTimeout::from(100u16));
        }
        assert_eq!(wait_exit(child.pid), ExitStatus::Code(0));
        assert_eq!(errors, 1);
        assert_eq!(cap.dropped(), 300_000);
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
}
