//! Helpers for the daemon's tests: deadlines instead of sleeps, waiting for one specific child
//! (other tests reap theirs in parallel threads, so never `waitpid(-1)`), private temp dirs, and
//! a minimal program spec.

use std::path::PathBuf;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use nix::libc;

use crate::config::ProgramSpec;
use crate::core::ExitStatus;

pub struct Deadline(Instant);

impl Deadline {
    pub fn after(d: Duration) -> Deadline {
        Deadline(Instant::now() + d)
    }

    pub fn passed(&self) -> bool {
        Instant::now() >= self.0
    }
}

/// Poll `cond` every millisecond until it holds or `limit` passes; returns whether it held.
pub fn eventually(limit: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let deadline = Deadline::after(limit);
    loop {
        if cond() {
            return true;
        }
        if deadline.passed() {
            return false;
        }
        std::thread::sleep(Duration::from_millis(1));
    }
}

/// Wait (with a deadline) for this one child to end and return how it ended. A child still
/// running after 20 s is killed and the test fails.
pub fn wait_exit(pid: u32) -> ExitStatus {
    assert!(pid > 1, "no child to wait for");
    let mut got = None;
    let ended = eventually(Duration::from_secs(20), || {
        let mut status = 0;
        // SAFETY: waits for one specific child of ours.
        let r = unsafe { libc::waitpid(pid as libc::pid_t, &mut status, libc::WNOHANG) };
        if r == pid as libc::pid_t {
            got = super::reap::decode(status);
        }
        got.is_some()
    });
    if !ended {
        // SAFETY: our own child, not yet reaped.
        unsafe { libc::kill(pid as libc::pid_t, libc::SIGKILL) };
        panic!("child {pid} did not exit in time");
    }
    got.unwrap_or(ExitStatus::Code(-1))
}

/// A fresh, empty directory of this test's own under the system temp dir.
pub fn temp_dir(name: &str) -> PathBuf {
    static SEQ: AtomicU32 = AtomicU32::new(0);
    let dir = std::env::temp_dir().join(format!(
        "sup-test-{}-{}-{name}",
        std::process::id(),
        SEQ.fetch_add(1, Ordering::Relaxed)
    ));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("create temp dir");
    dir
}

pub fn spec(cmd: &[&str]) -> ProgramSpec {
    ProgramSpec::for_tests("t", cmd)
}
