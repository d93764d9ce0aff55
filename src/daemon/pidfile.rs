//! The pidfile: one daemon per pidfile, enforced by an exclusive `flock` held for the daemon's
//! whole life. The lock, not the file's existence, is the truth: a daemon killed outright
//! leaves the file behind, but the kernel drops its lock, and the next daemon takes over.
//!
//! The file holds the pid and a newline, for `sup pid`-style readers and for the message a
//! second daemon prints. Dropping the `Pidfile` removes the file and releases the lock.

use std::fmt;
use std::fs::{DirBuilder, File, OpenOptions};
use std::io::{self, Read};
use std::os::fd::AsRawFd;
use std::os::unix::fs::{DirBuilderExt, FileExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use nix::errno::Errno;
use nix::libc;

use super::reap::io_text;

/// A held pidfile. Keep it alive as long as the daemon runs.
#[derive(Debug)]
pub struct Pidfile {
    path: PathBuf,
    /// Open for the lock's sake: the lock lives as long as this descriptor (close-on-exec, so
    /// no child can keep it alive after the daemon).
    file: File,
}

#[derive(Debug)]
pub enum PidfileError {
    /// Another process holds the lock; its pid when the file already says it.
    HeldBy { pid: Option<u32>, path: PathBuf },
    Io {
        path: PathBuf,
        what: &'static str,
        error: io::Error,
    },
}

impl fmt::Display for PidfileError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PidfileError::HeldBy {
                pid: Some(pid),
                path,
            } => write!(f, "another sup daemon (pid {pid}) holds {}", path.display()),
            PidfileError::HeldBy { pid: None, path } => {
                write!(f, "another sup daemon holds {}", path.display())
            }
            PidfileError::Io { path, what, error } => {
                write!(f, "pidfile {}: {what}: {}", path.display(), io_text(error))
            }
        }
    }
}

impl std::error::Error for PidfileError {}

/// How often to retry when the file is replaced between our open and our lock.
const ATTEMPTS: usize = 5;

impl Pidfile {
    /// Lock the pidfile (creating it, and its directory with mode 0700) and write our pid.
    pub fn acquire(path: &Path) -> Result<Pidfile, PidfileError> {
        let io_err = |what, error| PidfileError::Io {
            path: path.to_path_buf(),
            what,
            error,
        };
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(dir)
                .map_err(|e| io_err("create its directory", e))?;
        }
        for _ in 0..ATTEMPTS {
            // A symlink is refused, never followed to some other file and truncated; so is
            // anything but a regular file.
            let mut file = crate::daemon::output::open_regular(
                OpenOptions::new()
                    .read(true)
                    .write(true)
                    .create(true)
                    // Not truncated before the lock is ours: the holder's pid must stay readable.
                    .truncate(false)
                    .mode(0o644),
                path,
            )
            .map_err(|e| io_err("open", e))?;
            match lock(&file) {
                Ok(()) => {}
                Err(Errno::EWOULDBLOCK) => {
                    return Err(PidfileError::HeldBy {
                        pid: read_pid(&mut file),
                        path: path.to_path_buf(),
                    })
                }
                Err(e) => return Err(io_err("lock", io::Error::from(e))),
            }
            // A daemon that was exiting may have removed the file between our open and our
            // lock; then we hold a lock on a nameless file and a third daemon could lock a new
            // one. Only a lock on the file the path names counts.
            if !same_file(&file, path) {
                continue;
            }
            file.set_len(0).map_err(|e| io_err("truncate", e))?;
            let line = format!("{}\n", std::process::id());
            file.write_all_at(line.as_bytes(), 0)
                .map_err(|e| io_err("write", e))?;
            return Ok(Pidfile {
                path: path.to_path_buf(),
                file,
            });
        }
        Err(io_err(
            "lock",
            io::Error::other("the file kept being replaced"),
        ))
    }
}

impl Drop for Pidfile {
    fn drop(&mut self) {
        // Remove while still locked, and only if the path is still ours, so a successor's
        // file is never deleted. Closing `file` afterwards releases the lock.
        if same_file(&self.file, &self.path) {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

fn lock(file: &File) -> Result<(), Errno> {
    loop {
        // SAFETY: flock on a descriptor we own.
        let r = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
        match Errno::result(r) {
            Ok(_) => return Ok(()),
            Err(Errno::EINTR) => continue,
            Err(e) => return Err(e),
        }
    }
}

fn same_file(file: &File, path: &Path) -> bool {
    match (file.metadata(), std::fs::metadata(path)) {
        (Ok(a), Ok(b)) => a.dev() == b.dev() && a.ino() == b.ino(),
        _ => false,
    }
}

/// The holder's pid, if it has written one yet.
fn read_pid(file: &mut File) -> Option<u32> {
    let mut text = String::new();
    file.read_to_string(&mut text).ok()?;
    text.trim().parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::daemon::testutil::temp_dir;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn a_second_daemon_is_told_who_holds_the_pidfile() {
        let dir = temp_dir("pidfile");
        let path = dir.join("run/sup/sup.pid");
        let held = Pidfile::acquire(&path).expect("first acquire");
        let me = std::process::id();
        assert_eq!(
            std::fs::read_to_string(&path).expect("read"),
            format!("{me}\n")
        );
        let mode = std::fs::metadata(path.parent().expect("dir"))
            .expect("stat dir")
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o700);

        let err = Pidfile::acquire(&path).unwrap_err();
        assert!(
            matches!(&err, PidfileError::HeldBy { pid: Some(p), .. } if *p == me),
            "{err:?}"
        );
        assert_eq!(
            err.to_string(),
            format!("another sup daemon (pid {me}) holds {}", path.display())
        );
        // The refused attempt must not have disturbed the holder's file.
        assert_eq!(
            std::fs::read_to_string(&path).expect("read"),
            format!("{me}\n")
        );

        drop(held);
        assert!(!path.exists(), "dropping removes the file");
        let again = Pidfile::acquire(&path).expect("acquire after release");
        drop(again);
        let _ = std::fs::remove_dir_all(dir);
    }

    #[test]
    fn a_stale_pidfile_without_a_lock_is_taken_over() {
        let dir = temp_dir("stale");
        let path = dir.join("sup.pid");
        std::fs::write(&path, "999999999\nleftover text that is longer\n").expect("write");
        let held = Pidfile::acquire(&path).expect("acquire");
        assert_eq!(
            std::fs::read_to_string(&path).expect("read"),
            format!("{}\n", std::process::id())
        );
        drop(held);
        let _ = std::fs::remove_dir_all(dir);
    }
}
