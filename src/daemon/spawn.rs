//! Starting one child as the README promises: its own process group,
//! stdin from /dev/null, stdout/stderr as asked, the daemon's environment plus the `SUP_*`
//! variables and the job's `env`, its working directory, umask and user, no inherited
//! descriptors beyond 0, 1 and 2, default signal dispositions, an empty signal mask, and death
//! with the daemon.
//!
//! Everything that can fail for a reason worth telling (a missing directory, an unknown user,
//! a program not on PATH) is checked before the child is made. The child is made with
//! `clone(CLONE_VM | CLONE_VFORK)`, as posix_spawn does, so a spawn costs the daemon the same
//! at any size (`fork`, which copies its page tables, is the fallback: see `clone_vfork`).
//! An instance with a v2 cgroup is made with `clone3(CLONE_INTO_CGROUP)` instead, so that it
//! is born in its cgroup: joining it by a write to `cgroup.procs` would hold the daemon for
//! an RCU grace period per spawn. With `CLONE_VM | CLONE_VFORK` where it can
//! (`clone3_vfork_into`), else fork-style (`clone3_into`; refused, the write).
//! Between its creation and `exec` the child runs only syscalls on data prepared here (argv,
//! envp and the path, or the PATH candidates, are built first), and reports a failed set-up
//! or `exec` as `(step, errno)`: in the memory it shares with the daemon, read when the
//! clone returns (a vforked child has exec'd or exited by then), or, from a fork-style
//! child, on a close-on-exec pipe.
//!
//! `start` does not wait for a pipe's report: the loop watches the pipe (end of file = the
//! program runs, data = it could not) while it starts the next child. The daemon waits only
//! until the child's `exec` has taken its new memory; loading the program and its libraries
//! runs in parallel, so a thousand children start at once instead of one after another.
//! `spawn` is the same with the wait, for callers that want the answer at once.
//!
//! Reaping is not done here: the loop reaps every child with `waitpid(-1)`.

use std::ffi::{CStr, CString, OsStr};
use std::io;
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use nix::errno::Errno;
use nix::fcntl::{fcntl, FcntlArg, OFlag};
use nix::libc;
use nix::sys::resource::{getrlimit, Resource};
use nix::unistd::{geteuid, getgrouplist, User};

use super::reap::{errno_text, io_text};
use crate::config::ProgramSpec;

/// Where one of the child's output streams goes.
#[derive(Debug, Clone, Copy)]
pub enum Stdio {
    /// /dev/null.
    Null,
    /// A new pipe; `Spawned` carries its read end (non-blocking, close-on-exec) for `Capture`.
    Pipe,
    /// The daemon's own descriptor (1 or 2): the child writes straight to where the daemon's
    /// stdout or stderr goes (`stdout: inherit` without `prefix`).
    Inherit(i32),
}

/// Everything `spawn` needs for one instance.
#[derive(Debug)]
pub struct SpawnRequest<'a> {
    pub spec: &'a ProgramSpec,
    /// The instance name, `web:1` (or `web` when numprocs is 1): `SUP_PROCESS_NAME`.
    pub name: &'a str,
    /// `SUP_PROCESS_NUM`.
    pub num: u32,
    pub stdout: Stdio,
    pub stderr: Stdio,
}

/// A started child. `pid` is also its process group id.
#[derive(Debug)]
pub struct Spawned {
    pub pid: u32,
    /// The read end of the stdout pipe, when `Stdio::Pipe` was asked for.
    pub stdout: Option<OwnedFd>,
    /// The same for stderr.
    pub stderr: Option<OwnedFd>,
    /// Non-blocking: end of file once the program runs, a `(step, errno)` report if it could
    /// not (see `exec_result`). `None` from `spawn`, which already waited for it.
    pub exec_status: Option<OwnedFd>,
    /// What `exec_result` names in its reason.
    pub program: String,
    /// The child's start time in clock ticks since boot (field 22 of `/proc/PID/stat`), when
    /// the clock read around its creation pins it down (see `BootTicks`).
    pub start_ticks: Option<u64>,
}

/// Why a spawn did not happen. `daemon` is true when the daemon's own resources ran out (clone
/// or fork EAGAIN/ENOMEM, descriptors for its pipes): nothing about the job, so it is retried
/// without spending its `startretries`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SpawnError {
    pub reason: String,
    pub daemon: bool,
}

impl From<String> for SpawnError {
    fn from(reason: String) -> SpawnError {
        SpawnError {
            reason,
            daemon: false,
        }
    }
}

/// Errnos that are the daemon's resources running out, not the job's fault.
fn daemon_resource(e: Errno) -> bool {
    matches!(
        e,
        Errno::EAGAIN | Errno::ENOMEM | Errno::EMFILE | Errno::ENFILE
    )
}

/// `daemon_resource` for a std error (an open that ran out of descriptors).
pub(super) fn io_daemon_resource(e: &io::Error) -> bool {
    e.raw_os_error()
        .is_some_and(|n| daemon_resource(Errno::from_raw(n)))
}

/// A failed open in the daemon before the child is made.
fn io_spawn_error(what: &str, e: &io::Error) -> SpawnError {
    SpawnError {
        reason: format!("{what}: {}", io_text(e)),
        daemon: io_daemon_resource(e),
    }
}

/// Which step of the child's set-up failed, as reported on the status pipe.
const STEP_SETUP: i32 = 1;
const STEP_CHDIR: i32 = 2;
const STEP_EXEC: i32 = 3;
const STEP_CGROUP: i32 = 4;

/// What readiness adds to a spawn: `NOTIFY_SOCKET` and friends, and the write end of
/// a pipe the child gets as descriptor `target` (s6's notification-fd), the only descriptor
/// beyond 0, 1 and 2 that survives the exec.
#[derive(Debug, Default)]
pub struct Extras {
    pub env: Vec<(String, String)>,
    pub ready_fd: Option<(OwnedFd, i32)>,
    /// `cgroup.procs` of the instance's cgroups (write-only, close-on-exec): the child
    /// writes `0` to each before anything else, so it and all it starts run inside them.
    /// With `cgroup_dir`, the first is that cgroup's.
    pub cgroup_procs: Vec<OwnedFd>,
    /// The instance's v2 cgroup directory: the child is made in it with
    /// `clone3(CLONE_INTO_CGROUP)` and then skips `cgroup_procs[0]` (see `clone3_into`).
    pub cgroup_dir: Option<OwnedFd>,
}

/// A user switch, resolved before the child is made.
#[derive(Debug, Clone)]
struct Credentials {
    uid: libc::uid_t,
    gid: libc::gid_t,
    groups: Vec<libc::gid_t>,
}

/// What the child does between its creation and exec. Plain data, prepared in the parent, so
/// the child neither allocates nor looks anything up.
#[derive(Debug)]
struct ChildPlan {
    daemon_pid: libc::pid_t,
    umask: Option<libc::mode_t>,
    creds: Option<Credentials>,
    /// Upper bound for the close-on-exec loop when close_range(2) is missing (before 5.11).
    fd_limit: libc::c_int,
    /// The soft RLIMIT_NOFILE the daemon started with, given back to every child: the daemon
    /// raises its own for a thousand pipes, but programs using select(2) break above 1024.
    nofile_soft: Option<libc::rlim_t>,
    /// `limits:`, as (resource, value) pairs; `RLIM_INFINITY` for `unlimited`.
    rlimits: [Option<(RlimitResource, libc::rlim_t)>; 5],
    /// The readiness pipe's write end and the descriptor number the child expects it on.
    ready_fd: Option<(libc::c_int, libc::c_int)>,
    /// The signals to reset to SIG_DFL (`NOT_DEFAULT`).
    not_default: u64,
}

/// This daemon's tag, given to every child as `SUP_DAEMON` (see `state::daemon_tag`).
static DAEMON_TAG: std::sync::OnceLock<String> = std::sync::OnceLock::new();

/// Set the tag every child carries; once, at startup.
pub fn set_daemon_tag(tag: String) {
    let _ = DAEMON_TAG.set(tag);
}

/// The tag set by `set_daemon_tag`.
pub fn daemon_tag() -> Option<&'static str> {
    DAEMON_TAG.get().map(String::as_str)
}

/// The daemon's original soft descriptor limit, recorded before it raises its own.
static CHILD_NOFILE_SOFT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// Record the descriptor limits the daemon started with (before raising its own), so that
/// children get the original soft limit back.
pub fn set_child_nofile(soft: u64, _hard: u64) {
    CHILD_NOFILE_SOFT.store(soft, std::sync::atomic::Ordering::Relaxed);
}

/// Start the instance and wait until its program runs (or could not). The error is one line,
/// subject first, for `spawn failed` events: `/usr/bin/webd: no such file or directory`,
/// `workingdir /x: not a directory`. A child whose exec failed is reaped here.
pub fn spawn(req: &SpawnRequest) -> Result<Spawned, String> {
    let mut child = start(req, Extras::default()).map_err(|e| e.reason)?;
    if let Some(fd) = child.exec_status.take() {
        let _ = fcntl(fd.as_raw_fd(), FcntlArg::F_SETFL(OFlag::empty()));
        if let Some(Err(reason)) = exec_result(&fd, &child.program) {
            let _ = nix::sys::wait::waitpid(nix::unistd::Pid::from_raw(child.pid as i32), None);
            return Err(reason);
        }
    }
    Ok(child)
}

/// Start the instance and return without reading a fork-style child's exec status; watch
/// `exec_status` when there is one. A vforked child's failure is known here: the error, with
/// the child reaped.
///
/// Call it from the daemon's main thread: the parent-death signal fires when the *thread* that
/// made the child ends, not the process.
pub fn start(req: &SpawnRequest, extras: Extras) -> Result<Spawned, SpawnError> {
    let spec = req.spec;
    // Put the readiness descriptor on its number first, so no descriptor made below (pipes,
    // /dev/null, the exec status pipe) can land on it and be clobbered by the child's dup2.
    let ready_fd = match extras.ready_fd {
        Some((fd, target)) => Some(occupy(fd, target)?),
        None => None,
    };
    let (program, _) = spec
        .cmd
        .split_first()
        .ok_or_else(|| "empty command".to_string())?;
    if let Some(dir) = &spec.workingdir {
        check_workingdir(dir)?;
    }
    let (creds, login) = match &spec.user {
        Some(user) => resolve_user(user)?,
        None => (None, Vec::new()),
    };
    let cstr =
        |b: &[u8], what: &str| CString::new(b).map_err(|_| format!("{what} contains a NUL byte"));
    let base = daemon_env();
    let overlay = environment(req, &login, &extras.env)
        .into_iter()
        .map(|(k, v)| {
            let kv = cstr(&key_value(&k, &v), "an environment variable")?;
            Ok((k, v, kv))
        })
        .collect::<Result<Vec<_>, String>>()?;
    let path_var = match overlay.iter().find(|(k, _, _)| k == "PATH") {
        Some((_, v, _)) => Some(v.as_os_str()),
        None => base.path.as_deref(),
    };
    // A child that shares our memory reports a failed exec before the clone returns, so it
    // can search PATH itself, as execvp does: no stat of every PATH directory here. One that
    // may not (fork-style) gets the path found here, so a missing program still fails
    // before any child is made.
    let shared = creds.is_none()
        && !NO_VFORK.load(std::sync::atomic::Ordering::Relaxed)
        && !fork_forced()
        && (cfg!(target_arch = "x86_64") || extras.cgroup_dir.is_none());
    let search = shared && !program.contains('/');
    let paths = match search {
        true => candidates(program, path_var),
        false => {
            let path = resolve_program(program, path_var)?;
            vec![cstr(path.as_os_str().as_bytes(), "the command")?]
        }
    };
    let argv_c: Vec<CString> = spec
        .cmd
        .iter()
        .map(|a| cstr(a.as_bytes(), "an argument"))
        .collect::<Result<_, _>>()?;
    let mut argv: Vec<*const libc::c_char> = argv_c.iter().map(|c| c.as_ptr()).collect();
    argv.push(std::ptr::null());
    let mut envp = merged_env(&base.vars, &overlay);
    envp.push(std::ptr::null());
    let dir_c = match &spec.workingdir {
        Some(d) => Some(cstr(d.as_os_str().as_bytes(), "workingdir")?),
        None => None,
    };
    let null = dev_null().map_err(|e| io_spawn_error("/dev/null", &e))?;
    let (child_out, parent_out) = connect(&req.stdout, "stdout", null)?;
    let (child_err, parent_err) = connect(&req.stderr, "stderr", null)?;
    let plan = ChildPlan {
        daemon_pid: std::process::id() as libc::pid_t,
        umask: spec.umask.map(|m| m as libc::mode_t),
        creds,
        fd_limit: fd_limit(),
        nofile_soft: match CHILD_NOFILE_SOFT.load(std::sync::atomic::Ordering::Relaxed) {
            0 => None,
            n => Some(n as libc::rlim_t),
        },
        rlimits: rlimits(&spec.health.limits),
        ready_fd: ready_fd
            .as_ref()
            .map(|(fd, target)| (fd.as_raw_fd(), *target)),
        not_default: NOT_DEFAULT.load(std::sync::atomic::Ordering::Relaxed),
    };
    let fds = [null.read, child_out.raw(), child_err.raw()];
    let shared = std::sync::atomic::AtomicU64::new(0);
    let cgroup_fds: Vec<libc::c_int> = extras.cgroup_procs.iter().map(|f| f.as_raw_fd()).collect();
    let child = ChildArgs {
        fds,
        report: -1,
        shared: &shared,
        cgroups: &cgroup_fds,
        cgroup_dir: extras.cgroup_dir.as_ref().map(|d| d.as_raw_fd()),
        dir: dir_c.as_deref(),
        paths: &paths,
        search,
        argv: argv.as_ptr(),
        envp: envp.as_ptr(),
        plan: &plan,
    };
    let mut pipe = StatusPipe::default();
    let before = BootTicks::now();
    let made = create_child(&child, &mut pipe);
    let after = BootTicks::now();
    let (pid, how) = made.map_err(|e| SpawnError {
        reason: match pipe.failed {
            Some(_) => format!("exec status pipe: {}", errno_text(e)),
            None => format!("fork failed: {}", errno_text(e)),
        },
        daemon: daemon_resource(e),
    })?;
    // The kernel stamps the child's start inside the clone: when the clock shows the same
    // tick before and after it, that tick is the one `/proc/PID/stat` would show.
    let start_ticks = before.zip(after).and_then(|(b, a)| (b == a).then_some(b.0));
    let status_read = match how {
        // The child shared our memory and has exec'd or exited by now: a failed set-up or
        // exec left its report in `shared` (no pipe needed, none made).
        Created::Vfork => {
            if let Some(reason) = shared_result(&shared, program) {
                // It is exiting (it released our memory in `_exit`): reaped here, so its
                // end is nobody's to feed.
                let _ = nix::sys::wait::waitpid(nix::unistd::Pid::from_raw(pid), None);
                return Err(reason.into());
            }
            None
        }
        Created::Fork => pipe.read,
    };
    if how == Created::Fork {
        // Also from the parent, so the group exists whichever side runs first (signalling the
        // group right after `start` must reach the child). A vforked child has done it
        // itself before the parent resumed.
        // SAFETY: plain syscall on our own child.
        unsafe { libc::setpgid(pid, pid) };
    }
    // The parent's copy of the readiness pipe closes here, so its read end sees EOF once the
    // child closes it.
    drop((child_out, child_err, pipe.write, ready_fd));
    drop((extras.cgroup_procs, extras.cgroup_dir));
    Ok(Spawned {
        pid: pid as u32,
        stdout: parent_out,
        stderr: parent_err,
        exec_status: status_read,
        program: program.clone(),
        start_ticks,
    })
}

/// The exec status pipe of a child that does not share the daemon's memory (fork-style),
/// made only for such a child: a vforked one reports in `ChildArgs::shared`.
#[derive(Default)]
struct StatusPipe {
    /// Non-blocking, close-on-exec; the parent's end.
    read: Option<OwnedFd>,
    /// Close-on-exec; the child's copy closes at its exec.
    write: Option<OwnedFd>,
    /// Making it failed: the spawn fails with this, as "exec status pipe: …".
    failed: Option<Errno>,
}

impl StatusPipe {
    /// The write end for a fork-style child, made at the first call.
    fn write_end(&mut self) -> Result<libc::c_int, Errno> {
        if let Some(w) = &self.write {
            return Ok(w.as_raw_fd());
        }
        // Both ends non-blocking: the child's single 8-byte write into an empty pipe never
        // waits anyway.
        match nix::unistd::pipe2(OFlag::O_CLOEXEC | OFlag::O_NONBLOCK) {
            Ok((r, w)) => {
                let fd = w.as_raw_fd();
                self.read = Some(r);
                self.write = Some(w);
                Ok(fd)
            }
            Err(e) => {
                self.failed = Some(e);
                Err(e)
            }
        }
    }
}

/// A vforked child's report: `(step, errno)` packed by `run_child`'s `fail`, 0 when it
/// exec'd.
fn shared_result(shared: &std::sync::atomic::AtomicU64, program: &str) -> Option<String> {
    let v = shared.load(std::sync::atomic::Ordering::Acquire);
    (v != 0).then(|| report_text((v >> 32) as i32, Errno::from_raw(v as u32 as i32), program))
}

/// The reason for a failed set-up step or exec.
fn report_text(step: i32, errno: Errno, program: &str) -> String {
    match step {
        STEP_CHDIR => format!("workingdir: {}", errno_text(errno)),
        STEP_CGROUP => format!("joining its cgroup: {}", errno_text(errno)),
        _ => format!("{program}: {}", errno_text(errno)),
    }
}

/// `CLOCK_BOOTTIME` in clock ticks, the unit and clock of a process's start time in
/// `/proc/PID/stat` (`nsec_to_clock_t(start_boottime)`). A vDSO call, no syscall.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct BootTicks(u64);

impl BootTicks {
    fn now() -> Option<BootTicks> {
        static NS_PER_TICK: std::sync::OnceLock<Option<u64>> = std::sync::OnceLock::new();
        // SAFETY: sysconf has no preconditions.
        let per = *NS_PER_TICK.get_or_init(|| match unsafe { libc::sysconf(libc::_SC_CLK_TCK) } {
            // Only a tick that divides a second exactly converts as the kernel does.
            hz @ 1.. if 1_000_000_000 % hz == 0 => Some(1_000_000_000 / hz as u64),
            _ => None,
        });
        let per = per?;
        // SAFETY: a plain C struct, for which all zeroes is a valid value.
        let mut ts: libc::timespec = unsafe { std::mem::zeroed() };
        // SAFETY: clock_gettime fills the struct it is given.
        if unsafe { libc::clock_gettime(libc::CLOCK_BOOTTIME, &mut ts) } != 0 {
            return None;
        }
        let ns = (ts.tv_sec as u64)
            .checked_mul(1_000_000_000)?
            .checked_add(ts.tv_nsec as u64)?;
        Some(BootTicks(ns / per))
    }
}

/// What the exec status pipe says: `None` not yet, `Some(Ok)` the program runs (the pipe
/// closed at exec), `Some(Err(reason))` it could not run.
pub fn exec_result(fd: &OwnedFd, program: &str) -> Option<Result<(), String>> {
    let mut buf = [0u8; 8];
    let mut got = 0;
    loop {
        match nix::unistd::read(fd.as_raw_fd(), &mut buf[got..]) {
            Ok(0) => break,
            Ok(n) => {
                got += n;
                if got == buf.len() {
                    break;
                }
            }
            Err(Errno::EINTR) => continue,
            Err(Errno::EAGAIN) => return None,
            Err(e) => return Some(Err(format!("{program}: {}", errno_text(e)))),
        }
    }
    if got < buf.len() {
        return Some(Ok(()));
    }
    let step = i32::from_ne_bytes([buf[0], buf[1], buf[2], buf[3]]);
    let errno = Errno::from_raw(i32::from_ne_bytes([buf[4], buf[5], buf[6], buf[7]]));
    Some(Err(report_text(step, errno, program)))
}

/// The daemon's own environment as every child starts from it, read at this thread's first
/// spawn and kept (the daemon changes its environment only before its first spawn: the
/// `sdnotify` variables): sorted by name, each as a ready `NAME=value` string, so a spawn
/// copies only what it adds.
struct DaemonEnv {
    vars: Vec<(std::ffi::OsString, CString)>,
    path: Option<std::ffi::OsString>,
}

thread_local! {
    static DAEMON_ENV: std::cell::OnceCell<std::rc::Rc<DaemonEnv>> = const { std::cell::OnceCell::new() };
}

fn daemon_env() -> std::rc::Rc<DaemonEnv> {
    DAEMON_ENV.with(|cell| {
        cell.get_or_init(|| {
            let sorted: std::collections::BTreeMap<_, _> = std::env::vars_os().collect();
            let path = sorted.get(OsStr::new("PATH")).cloned();
            let vars = sorted
                .into_iter()
                // The OS hands out no NUL inside a variable; one that did could not be passed.
                .filter_map(|(k, v)| Some((k.clone(), CString::new(key_value(&k, &v)).ok()?)))
                .collect();
            std::rc::Rc::new(DaemonEnv { vars, path })
        })
        .clone()
    })
}

fn key_value(k: &OsStr, v: &OsStr) -> Vec<u8> {
    let mut kv = Vec::with_capacity(k.len() + 1 + v.len());
    kv.extend_from_slice(k.as_bytes());
    kv.push(b'=');
    kv.extend_from_slice(v.as_bytes());
    kv
}

/// envp: the daemon's variables and the spawn's own (both sorted by name), the spawn's
/// replacing the daemon's of the same name. The pointers are into `base` and `overlay`.
fn merged_env(
    base: &[(std::ffi::OsString, CString)],
    overlay: &[(std::ffi::OsString, std::ffi::OsString, CString)],
) -> Vec<*const libc::c_char> {
    let mut out = Vec::with_capacity(base.len() + overlay.len() + 1);
    let mut b = base.iter().peekable();
    let mut o = overlay.iter().peekable();
    loop {
        match (b.peek(), o.peek()) {
            (Some((bk, bkv)), Some((ok, _, okv))) => match bk.cmp(ok) {
                std::cmp::Ordering::Less => {
                    out.push(bkv.as_ptr());
                    b.next();
                }
                std::cmp::Ordering::Equal => {
                    out.push(okv.as_ptr());
                    b.next();
                    o.next();
                }
                std::cmp::Ordering::Greater => {
                    out.push(okv.as_ptr());
                    o.next();
                }
            },
            (Some((_, bkv)), None) => {
                out.push(bkv.as_ptr());
                b.next();
            }
            (None, Some((_, _, okv))) => {
                out.push(okv.as_ptr());
                o.next();
            }
            (None, None) => break,
        }
    }
    out
}

/// What the child's environment adds to the daemon's (see `daemon_env`), sorted by name:
/// the user's login variables (with `user:`), then the `SUP_*` variables, then the job's
/// `env`, then what readiness adds (`NOTIFY_SOCKET` …), later ones replacing earlier ones.
fn environment(
    req: &SpawnRequest,
    login: &[(std::ffi::OsString, std::ffi::OsString)],
    extra: &[(String, String)],
) -> Vec<(std::ffi::OsString, std::ffi::OsString)> {
    let mut env: std::collections::BTreeMap<std::ffi::OsString, std::ffi::OsString> =
        std::collections::BTreeMap::new();
    env.extend(login.iter().cloned());
    env.insert("SUP_PROCESS_NAME".into(), req.name.into());
    env.insert("SUP_PROGRAM".into(), req.spec.name.clone().into());
    env.insert("SUP_PROCESS_NUM".into(), req.num.to_string().into());
    for (k, v) in req.spec.env.iter().chain(extra.iter().map(|(k, v)| (k, v))) {
        env.insert(k.into(), v.into());
    }
    // Last, so no `env:` can change them: they find the job's escapees (`state::kill_tagged`).
    if let Some(tag) = DAEMON_TAG.get() {
        env.insert(super::state::DAEMON_VAR.into(), tag.into());
        env.insert(super::state::INSTANCE_VAR.into(), req.name.into());
    }
    env.into_iter().collect()
}

/// The program's path as `execvp` would find it: as written when it has a slash (relative
/// ones resolve in the child's working directory), else the first executable file of that
/// name along the child's `PATH`.
fn resolve_program(program: &str, path: Option<&OsStr>) -> Result<PathBuf, String> {
    if program.contains('/') {
        return Ok(PathBuf::from(program));
    }
    let path = path.unwrap_or(OsStr::new(DEFAULT_PATH));
    let mut denied = false;
    for dir in std::env::split_paths(path) {
        let candidate = dir.join(program);
        if let Ok(meta) = std::fs::metadata(&candidate) {
            use std::os::unix::fs::PermissionsExt;
            if meta.is_file() && meta.permissions().mode() & 0o111 != 0 {
                return Ok(candidate);
            }
            denied = true;
        }
    }
    Err(if denied {
        format!("{program}: permission denied")
    } else {
        format!("{program}: no such file or directory")
    })
}

/// The search path when the child's environment has no `PATH`.
const DEFAULT_PATH: &str = "/usr/local/bin:/usr/bin:/bin";

/// Where the child looks for a program without a slash, in order: each `PATH` directory
/// joined with it (a directory or program with a NUL byte cannot be one).
fn candidates(program: &str, path: Option<&OsStr>) -> Vec<CString> {
    let path = path.unwrap_or(OsStr::new(DEFAULT_PATH));
    std::env::split_paths(path)
        .filter_map(|dir| CString::new(dir.join(program).into_os_string().as_bytes()).ok())
        .collect()
}

/// Everything the child reads between its creation and exec, built by the parent before it.
#[derive(Clone, Copy)]
struct ChildArgs<'a> {
    /// Become the child's 0, 1 and 2.
    fds: [libc::c_int; 3],
    /// The exec status pipe's write end (close-on-exec) for a fork-style child, else -1.
    report: libc::c_int,
    /// Where a child that shares the daemon's memory leaves its `(step, errno)` report
    /// (as posix_spawn does): read once the clone returns, when the child has exec'd or
    /// exited. A fork-style child writes its own copy, which nobody reads.
    shared: &'a std::sync::atomic::AtomicU64,
    /// `cgroup.procs` descriptors to write `0` to, first of all.
    cgroups: &'a [libc::c_int],
    /// The v2 cgroup to be born in (`clone3_into`), whose `cgroup.procs` is `cgroups[0]`.
    cgroup_dir: Option<libc::c_int>,
    dir: Option<&'a CStr>,
    /// The program's path, or with `search` the places to try in order.
    paths: &'a [CString],
    /// Try `paths` as execvp does: on to the next while the program is not there (ENOENT,
    /// ENOTDIR) or may not be run there (EACCES, remembered for the report).
    search: bool,
    /// Null-terminated arrays of pointers into CStrings the parent keeps alive.
    argv: *const *const libc::c_char,
    envp: *const *const libc::c_char,
    plan: &'a ChildPlan,
}

/// How the child was made.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Created {
    /// `clone(CLONE_VM | CLONE_VFORK)`: it has exec'd or exited by now.
    Vfork,
    /// `fork`, the fallback: it may not have run yet.
    Fork,
}

/// Set once `clone(CLONE_VM | CLONE_VFORK)` was refused for good (ENOSYS, EINVAL, EPERM: a
/// seccomp filter or an emulator), so every later spawn forks without asking again.
static NO_VFORK: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// The child's stack size. Its deepest path (the set-up below, glibc's thin syscall wrappers)
/// needs a few KiB; exec runs on the kernel's stack.
const CHILD_STACK: usize = 64 * 1024;

/// Start the child running `child_main(args)`; its pid and how it was made. The errno is the
/// syscall's own, for `SpawnError` (or `pipe`'s, which then records it). A fork-style child
/// reports on `pipe`, made before the first such attempt; a vforked one in `args.shared`.
fn create_child(args: &ChildArgs, pipe: &mut StatusPipe) -> Result<(libc::pid_t, Created), Errno> {
    use std::sync::atomic::Ordering::Relaxed;
    // Every signal blocked, in the parent and so in the child, until the child has put every
    // disposition back to the default (`in_child`): no handler the daemon's process might
    // have (std's SIGSEGV one, a library's) can run in the child, where it would run on the
    // child's stack with the parent's memory and thread-local state. The daemon's own
    // signals are blocked anyway (signalfd) and stay pending, so nothing is lost.
    // Raw, as glibc's posix_spawn does: its pthread_sigmask would leave its own two signals
    // (32, 33) unblocked.
    let all: u64 = !0;
    let mut old: u64 = 0;
    // SAFETY: a mask change of this thread, on locals (8 = sizeof the kernel's sigset_t).
    unsafe {
        libc::syscall(
            libc::SYS_rt_sigprocmask,
            libc::SIG_SETMASK as libc::c_long,
            &all as *const u64,
            &mut old as *mut u64,
            8usize,
        )
    };
    let mut result = Err(Errno::ENOSYS);
    if let Some(dir) = args.cgroup_dir.filter(|_| !NO_CLONE3.load(Relaxed)) {
        // Born in its v2 cgroup: the rest of `args` minus the v2 `cgroup.procs` write.
        let rest = ChildArgs {
            cgroups: args.cgroups.get(1..).unwrap_or(&[]),
            cgroup_dir: None,
            ..*args
        };
        // The daemon's memory shared, as `clone_vfork`, where that path is open to this
        // child; fork-style otherwise, or when only the shared form was refused (ENOSYS
        // means no clone3 at all: asked once).
        let shared = (!NO_VFORK.load(Relaxed) && !fork_forced() && args.plan.creds.is_none())
            .then(|| clone3_vfork_into(&rest, dir).map(|pid| (pid, Created::Vfork)));
        let forked = |pipe: &mut StatusPipe| {
            let report = pipe.write_end()?;
            clone3_into(&ChildArgs { report, ..rest }, dir).map(|pid| (pid, Created::Fork))
        };
        let made = match shared {
            Some(Err(e)) if e != Errno::ENOSYS && !daemon_resource(e) => forked(pipe),
            Some(made) => made,
            None => forked(pipe),
        };
        if pipe.failed.is_some() {
            return finish(made, old);
        }
        match made {
            Ok(made) => result = Ok(made),
            Err(
                e @ (Errno::ENOSYS
                | Errno::E2BIG
                | Errno::EINVAL
                | Errno::EPERM
                | Errno::EOPNOTSUPP),
            ) => {
                // No clone3, or no CLONE_INTO_CGROUP (before 5.7, a seccomp filter, an
                // emulator): every later spawn joins by writing cgroup.procs.
                if !NO_CLONE3.swap(true, Relaxed) {
                    log::debug!(
                        "clone3(CLONE_INTO_CGROUP) refused ({}): children join their cgroup by writing cgroup.procs",
                        errno_text(e)
                    );
                }
            }
            // The daemon's resources (EAGAIN, ENOMEM): a failed spawn, retried.
            Err(e) if daemon_resource(e) => result = Err(e),
            // Something about this cgroup (EBUSY, EACCES, ENOENT): today's path, whose
            // write to cgroup.procs reports it as `joining its cgroup: …`.
            Err(_) => {}
        }
    }
    // A child that switches to the job's user forks: once it is that user, any process of
    // theirs may SIGSTOP it before its exec, and a vforked child holds the daemon until it
    // execs; and a credential change marks the memory it shares (the daemon's) undumpable.
    // A child that stays the daemon's uid can only be stopped by the daemon's uid or root.
    if result.is_err_and(|e| e == Errno::ENOSYS)
        && !NO_VFORK.load(Relaxed)
        && !fork_forced()
        && args.plan.creds.is_none()
    {
        result = clone_vfork(args).map(|pid| (pid, Created::Vfork));
        if let Err(Errno::ENOSYS | Errno::EINVAL | Errno::EPERM) = result {
            NO_VFORK.store(true, Relaxed);
        }
    }
    if let Err(Errno::ENOSYS | Errno::EINVAL | Errno::EPERM) = result {
        result = pipe.write_end().and_then(|report| {
            let args = ChildArgs { report, ..*args };
            // SAFETY: the daemon is single-threaded; the child runs only `run_child`, which
            // keeps to the rules of a CLONE_VM child (see `clone_vfork`) and never returns.
            match unsafe { libc::fork() } {
                // SAFETY: in the child, on the data prepared before the fork.
                0 => unsafe { run_child(&args) },
                -1 => Err(Errno::last()),
                pid => Ok((pid, Created::Fork)),
            }
        });
    }
    finish(result, old)
}

/// `create_child`'s end: the signal mask the daemon had back, and the result.
fn finish(
    result: Result<(libc::pid_t, Created), Errno>,
    old: u64,
) -> Result<(libc::pid_t, Created), Errno> {
    // SAFETY: as above; the mask the daemon had. A failed clone's errno is read already.
    unsafe {
        libc::syscall(
            libc::SYS_rt_sigprocmask,
            libc::SIG_SETMASK as libc::c_long,
            &old as *const u64,
            std::ptr::null_mut::<u64>(),
            8usize,
        )
    };
    result
}

/// Set once `clone3(CLONE_INTO_CGROUP)` was refused for good (ENOSYS before 5.3, E2BIG or
/// EINVAL before 5.7, EPERM or EOPNOTSUPP from a seccomp filter or an emulator).
static NO_CLONE3: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// `clone3`'s `struct clone_args`, as far as `cgroup` (CLONE_ARGS_SIZE_VER2, 88 bytes).
#[repr(C)]
#[derive(Default)]
struct CloneArgs {
    flags: u64,
    pidfd: u64,
    child_tid: u64,
    parent_tid: u64,
    exit_signal: u64,
    stack: u64,
    stack_size: u64,
    tls: u64,
    set_tid: u64,
    set_tid_size: u64,
    cgroup: u64,
}

const CLONE_INTO_CGROUP: u64 = 0x2_0000_0000;

/// `clone3(CLONE_INTO_CGROUP)` with fork's semantics (no CLONE_VM, no stack of its own,
/// SIGCHLD): the child is born in the v2 cgroup `dir`, so nothing migrates it. A write to a
/// v2 `cgroup.procs` takes the kernel's cgroup threadgroup lock for writing (an RCU grace
/// period, milliseconds) while the vforked child holds the daemon; here the cgroup is chosen
/// inside the clone (a read lock) and the daemon goes on at once. The child continues after
/// the syscall on a copy of the daemon's memory, as after `fork`, and runs `run_child` (the
/// same rules: syscalls and glibc's thin wrappers on data prepared before, no allocation,
/// no locks). glibc's fork handlers do not run (a raw syscall): nothing the child calls
/// needs them, since none takes a lock, allocates or reads glibc's cached thread id. The
/// price is fork's: the daemon's page tables are copied and its memory write-protected,
/// cheaper than the migration it saves at the sizes measured (ARCHITECTURE.md "cgroups").
fn clone3_into(args: &ChildArgs, dir: libc::c_int) -> Result<libc::pid_t, Errno> {
    let mut ca = CloneArgs {
        flags: CLONE_INTO_CGROUP,
        exit_signal: libc::SIGCHLD as u64,
        cgroup: dir as u64,
        ..CloneArgs::default()
    };
    // SAFETY: fork semantics on a struct of the size given; in the child (0) only
    // `run_child`, which never returns, on the data prepared before.
    let r = unsafe {
        libc::syscall(
            libc::SYS_clone3,
            &mut ca as *mut CloneArgs,
            std::mem::size_of::<CloneArgs>(),
        )
    };
    match r {
        // SAFETY: in the child, on its copy of the data prepared before the clone.
        0 => unsafe { run_child(args) },
        -1 => Err(Errno::last()),
        pid => Ok(pid as libc::pid_t),
    }
}

/// `clone3(CLONE_VM | CLONE_VFORK | CLONE_INTO_CGROUP)`: born in its v2 cgroup like
/// `clone3_into`, without fork's copy of the daemon's page tables, like `clone_vfork` (whose
/// rules the child keeps; the same `ChildStack`). glibc has no clone3 wrapper that takes a
/// function, and a raw syscall returns in the child on the new stack with no frame to return
/// to, so the child's side is a few instructions here: call `child_main(args)`, which never
/// returns.
#[cfg(target_arch = "x86_64")]
fn clone3_vfork_into(args: &ChildArgs, dir: libc::c_int) -> Result<libc::pid_t, Errno> {
    let stack = ChildStack::get()?;
    let mut ca = CloneArgs {
        flags: (libc::CLONE_VM | libc::CLONE_VFORK) as u64 | CLONE_INTO_CGROUP,
        exit_signal: libc::SIGCHLD as u64,
        // The child starts at `stack + stack_size`, the mapping's top (16-byte aligned).
        stack: stack.base as u64,
        stack_size: stack.len as u64,
        cgroup: dir as u64,
        ..CloneArgs::default()
    };
    let entry: extern "C" fn(*mut libc::c_void) -> libc::c_int = child_main;
    let ret: i64;
    // SAFETY: the kernel preserves every register but rax, rcx and r11 in the parent, which
    // goes on at `2:` once the child has exec'd or exited (CLONE_VFORK). The child (rax 0)
    // is on `stack` with an aligned top, so `call` leaves the frame the ABI expects, and it
    // never comes back (`ud2` would fault it, not the daemon). `ca`, `args` and `stack`
    // outlive the syscall; no memory is declared untouched, so nothing is cached across it.
    unsafe {
        std::arch::asm!(
            "syscall",
            "test rax, rax",
            "jnz 2f",
            "mov rdi, r12",
            "call r13",
            "ud2",
            "2:",
            inlateout("rax") libc::SYS_clone3 => ret,
            in("rdi") &mut ca as *mut CloneArgs,
            in("rsi") std::mem::size_of::<CloneArgs>(),
            in("r12") args as *const ChildArgs,
            in("r13") entry,
            lateout("rcx") _,
            lateout("r11") _,
            options(nostack),
        );
    }
    if ret < 0 {
        return Err(Errno::from_raw((-ret) as i32));
    }
    Ok(ret as libc::pid_t)
}

#[cfg(not(target_arch = "x86_64"))]
fn clone3_vfork_into(_: &ChildArgs, _: libc::c_int) -> Result<libc::pid_t, Errno> {
    // Not ENOSYS, which would stop clone3 being asked at all: the fork-style form is next.
    Err(Errno::EOPNOTSUPP)
}

/// `clone(CLONE_VM | CLONE_VFORK | SIGCHLD)` on a stack of its own, as glibc's posix_spawn
/// does: the child's pid once it has exec'd (or exited on a failure it reported).
///
/// Why: `fork` copies the daemon's page tables (dup_mmap, copy_page_range) and write-protects
/// its memory, so every spawn and restart costs the daemon time in proportion to its size (its
/// page tables, then a copy-on-write fault per page it touches afterwards). With CLONE_VM the
/// child runs in the daemon's memory: nothing is copied and nothing is write-protected, a
/// constant cost at any N. CLONE_VFORK suspends this thread until the child's exec has replaced
/// its memory (or the child has exited), so the two never run at once in the same memory; the
/// exec status is therefore already in the pipe when this returns on a failure. The price: the
/// loop waits out the child's set-up and the start of its exec (microseconds; a program on a
/// hung network filesystem would stall the daemon, but so does the path lookup before).
///
/// What the child may do, in memory it shares with the daemon (`child_main`, `in_child`):
/// read `ChildArgs` and what it points to (built before and alive until this returns, and
/// not changed meanwhile: this thread is suspended); write only the stack mapped here (the
/// suspended thread's own frames stay untouched) and errno; make raw syscalls
/// or glibc's thin wrappers of one (no cancellation points, nothing that takes a lock or
/// acts on other threads such as glibc's setuid); write `(step, errno)` to the status pipe
/// and `_exit`. No allocation, no panics, no std I/O, no formatting, no locks. errno is
/// this thread's thread-local, which the child shares: harmless, since the parent reads errno
/// after the clone only when clone itself failed (then no child ran). Descriptors, cwd,
/// umask, dispositions, credentials and rlimits are the child's own (no CLONE_FILES,
/// CLONE_FS, CLONE_SIGHAND, CLONE_THREAD): changing them does not touch the daemon. Signals
/// are all blocked (see `create_child`) until the child has reset every disposition.
fn clone_vfork(args: &ChildArgs) -> Result<libc::pid_t, Errno> {
    let stack = ChildStack::get()?;
    // SAFETY: see above; `stack` and `args` outlive the call, and the child never returns
    // from `child_main` (it execs or `_exit`s), so glibc's clone never reaches its exit path.
    let pid = unsafe {
        libc::clone(
            child_main,
            stack.top(),
            libc::CLONE_VM | libc::CLONE_VFORK | libc::SIGCHLD,
            (args as *const ChildArgs).cast_mut().cast(),
        )
    };
    if pid == -1 {
        return Err(Errno::last());
    }
    // The child is done with `stack` (exec'd or exited): the next spawn reuses it.
    Ok(pid)
}

/// The vforked child's stack: 64 KiB mmap'd, with an inaccessible page below it so an
/// overflow faults instead of writing into the daemon's memory. One per thread, mapped at
/// its first spawn and reused by every later one (a vforked child is done with it when the
/// clone returns): no mmap, mprotect and munmap per spawn. The few pages a child touches
/// stay resident.
struct ChildStack {
    base: *mut libc::c_void,
    len: usize,
}

thread_local! {
    static CHILD_STACK_OF_THREAD: std::cell::OnceCell<ChildStack> = const { std::cell::OnceCell::new() };
}

/// What a spawn uses of this thread's `ChildStack`.
#[derive(Clone, Copy)]
struct StackRef {
    base: *mut libc::c_void,
    len: usize,
}

impl StackRef {
    /// The highest address, where the child starts (page-aligned, so 16-byte aligned).
    fn top(&self) -> *mut libc::c_void {
        // SAFETY: one past the end of the mapping.
        unsafe { self.base.cast::<u8>().add(self.len).cast() }
    }
}

impl ChildStack {
    /// This thread's stack, mapped at the first call.
    fn get() -> Result<StackRef, Errno> {
        CHILD_STACK_OF_THREAD.with(|cell| {
            if let Some(s) = cell.get() {
                return Ok(StackRef {
                    base: s.base,
                    len: s.len,
                });
            }
            let s = ChildStack::new()?;
            let r = StackRef {
                base: s.base,
                len: s.len,
            };
            let _ = cell.set(s);
            Ok(r)
        })
    }

    fn new() -> Result<ChildStack, Errno> {
        // SAFETY: sysconf has no preconditions.
        let page = match unsafe { libc::sysconf(libc::_SC_PAGESIZE) } {
            n if n > 0 => n as usize,
            _ => 4096,
        };
        let len = CHILD_STACK + page;
        // SAFETY: a new private anonymous mapping, ours alone.
        let base = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_STACK,
                -1,
                0,
            )
        };
        if base == libc::MAP_FAILED {
            return Err(Errno::last());
        }
        let stack = ChildStack { base, len };
        // SAFETY: the lowest page of the mapping made above (stacks grow down).
        if unsafe { libc::mprotect(base, page, libc::PROT_NONE) } == -1 {
            return Err(Errno::last());
        }
        Ok(stack)
    }
}

impl Drop for ChildStack {
    fn drop(&mut self) {
        // SAFETY: the mapping made in `new`, no longer used by any child.
        unsafe { libc::munmap(self.base, self.len) };
    }
}

#[cfg(not(test))]
fn fork_forced() -> bool {
    false
}

#[cfg(test)]
thread_local! {
    /// Tests set it to run the fork fallback on their thread.
    static FORCE_FORK: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

#[cfg(test)]
fn fork_forced() -> bool {
    FORCE_FORK.with(|f| f.get())
}

/// The vforked child's entry point, as clone wants it.
extern "C" fn child_main(arg: *mut libc::c_void) -> libc::c_int {
    // SAFETY: `arg` is the `ChildArgs` that `clone_vfork` was given, alive and unchanged
    // until the child has exec'd or exited.
    unsafe { run_child(&*arg.cast_const().cast::<ChildArgs>()) }
}

/// The child, from its creation to exec. Under CLONE_VM it runs in the daemon's memory: see
/// `clone_vfork` for what it may touch.
///
/// # Safety
/// Only in a new child, with `a` and what it points to valid until it has exec'd or exited.
unsafe fn run_child(a: &ChildArgs) -> ! {
    // SAFETY: every call below is a syscall on `a`'s data or on locals.
    unsafe {
        let report = a.report;
        let fail = |step: i32| -> ! {
            let errno = *libc::__errno_location();
            // An atomic store into the daemon's memory (a vforked child), read after the
            // clone returns; in a fork-style child its own copy, unread.
            a.shared.store(
                (step as u32 as u64) << 32 | errno as u32 as u64,
                std::sync::atomic::Ordering::Release,
            );
            if report >= 0 {
                let s = step.to_ne_bytes();
                let e = errno.to_ne_bytes();
                let msg = [s[0], s[1], s[2], s[3], e[0], e[1], e[2], e[3]];
                // Raw: glibc's write is a cancellation point, which touches thread state.
                libc::syscall(
                    libc::SYS_write,
                    report as libc::c_long,
                    msg.as_ptr() as libc::c_long,
                    msg.len() as libc::c_long,
                );
            }
            libc::_exit(127)
        };
        for (target, &fd) in a.fds.iter().enumerate() {
            if libc::dup2(fd, target as libc::c_int) == -1 {
                fail(STEP_SETUP);
            }
        }
        if libc::setpgid(0, 0) == -1 {
            fail(STEP_SETUP);
        }
        // Into its cgroups before anything else can run in it, and while it is still the
        // daemon's uid (a `user:` job could not write cgroup.procs after its switch).
        if !super::cgroup::join_in_child(a.cgroups) {
            fail(STEP_CGROUP);
        }
        // Give up the daemon's controlling terminal, if it has one (`sup daemon` in the
        // foreground): a job, maybe running as another user, must not open /dev/tty to
        // read the operator's keys or push input into the shell with TIOCSTI. Not setsid:
        // after a fork, the parent's setpgid could make the child a group leader first, and
        // then setsid fails. Raw open and close: glibc's are cancellation points.
        let tty = libc::syscall(
            libc::SYS_openat,
            libc::AT_FDCWD as libc::c_long,
            c"/dev/tty".as_ptr() as libc::c_long,
            (libc::O_RDWR | libc::O_NOCTTY | libc::O_CLOEXEC) as libc::c_long,
        );
        if tty >= 0 {
            libc::ioctl(tty as libc::c_int, libc::TIOCNOTTY);
            libc::syscall(libc::SYS_close, tty);
        }
        if let Some(dir) = a.dir {
            if libc::chdir(dir.as_ptr()) == -1 {
                fail(STEP_CHDIR);
            }
        }
        if in_child(a.plan).is_err() {
            fail(STEP_SETUP);
        }
        let mut denied = false;
        for path in a.paths {
            libc::execve(path.as_ptr(), a.argv, a.envp);
            match *libc::__errno_location() {
                libc::ENOENT | libc::ENOTDIR if a.search => {}
                libc::EACCES if a.search => denied = true,
                _ => fail(STEP_EXEC),
            }
        }
        // Searched and not found, as `resolve_program` says it.
        *libc::__errno_location() = if denied { libc::EACCES } else { libc::ENOENT };
        fail(STEP_EXEC)
    }
}

/// A set-up step failed; errno says why.
struct Failed;

/// The signals whose disposition is not SIG_DFL, bit `sig - 1` each (`note_dispositions`);
/// all of them until the daemon records its own.
static NOT_DEFAULT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(u64::MAX);

/// The signals (bit `sig - 1`) whose disposition in this process is not SIG_DFL.
fn not_default_now() -> u64 {
    let mut mask = 0u64;
    for sig in 1..=64 {
        let mut old = [0u64; 8]; // larger than the kernel's `struct sigaction`
                                 // SAFETY: a raw syscall that only reads the disposition into local data.
        let r = unsafe {
            libc::syscall(
                libc::SYS_rt_sigaction,
                sig as libc::c_long,
                std::ptr::null::<u64>(),
                old.as_mut_ptr(),
                8usize,
            )
        };
        // `sa_handler` comes first; SIG_DFL is 0. An error (SIGKILL, SIGSTOP) leaves it 0.
        if r == 0 && old[0] != 0 {
            mask |= 1 << (sig - 1);
        }
    }
    mask
}

/// Record which signals the daemon does not leave at SIG_DFL, once its own are set up (it
/// changes none afterwards): a child resets only those, instead of a syscall per signal
/// between its creation and exec, on a restart's critical path.
pub fn note_dispositions() {
    NOT_DEFAULT.store(not_default_now(), std::sync::atomic::Ordering::Relaxed);
}

/// Every signal in `mask` (bit `sig - 1`) back to its default disposition, in a child before
/// exec (raw syscalls only). Ignored signals survive exec, so this is what keeps a daemon's
/// SIG_IGN (e.g. SIGPIPE) away from its children; done before unblocking, a handler inherited
/// from the daemon never runs. The raw syscall because glibc's wrapper refuses 32 and 33 (its
/// own), which can still be found ignored.
fn default_dispositions(mask: u64) {
    let dfl = [0u64; 8]; // a zeroed kernel `struct sigaction` (larger than any layout) is SIG_DFL
    for sig in 1..=64 {
        if sig != libc::SIGKILL && sig != libc::SIGSTOP && mask & (1 << (sig - 1)) != 0 {
            // SAFETY: a raw syscall on local data, async-signal-safe.
            unsafe {
                libc::syscall(
                    libc::SYS_rt_sigaction,
                    sig as libc::c_long,
                    dfl.as_ptr(),
                    std::ptr::null_mut::<u64>(),
                    8usize, // sizeof the kernel's sigset_t
                );
            }
        }
    }
}

/// For `Command::pre_exec` of a child made with std (a listener, a hook, a sender): as a job,
/// default dispositions and an empty signal mask (std resets the mask and SIGPIPE only, so
/// a SIG_IGN the daemon inherited, nohup's SIGHUP, would pass on), and death with the daemon.
/// `daemon` is the daemon's pid, read before the fork.
pub fn like_a_job(daemon: libc::pid_t) -> std::io::Result<()> {
    reset_signals()?;
    // SAFETY: raw syscalls without pointers, async-signal-safe.
    unsafe {
        if libc::prctl(
            libc::PR_SET_PDEATHSIG,
            libc::SIGKILL as libc::c_ulong,
            0,
            0,
            0,
        ) < 0
        {
            return Err(std::io::Error::last_os_error());
        }
        if libc::getppid() != daemon {
            // The daemon died before the signal was armed.
            libc::_exit(1);
        }
    }
    Ok(())
}

fn reset_signals() -> std::io::Result<()> {
    default_dispositions(u64::MAX);
    let empty = 0u64;
    // SAFETY: a raw syscall on local data, async-signal-safe.
    let r = unsafe {
        libc::syscall(
            libc::SYS_rt_sigprocmask,
            libc::SIG_SETMASK as libc::c_long,
            &empty as *const u64,
            std::ptr::null_mut::<u64>(),
            8usize,
        )
    };
    if r < 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

/// The rest of the child's set-up, after 0/1/2, the process group and the working directory.
/// Same rules as `child_main`: syscalls on pre-built data, nothing else.
fn in_child(plan: &ChildPlan) -> Result<(), Failed> {
    // SAFETY: each call is a raw syscall (or glibc's thin wrapper of one) on local or
    // pre-built data, in the child between its creation and exec.
    unsafe {
        default_dispositions(plan.not_default);
        if let Some(mask) = plan.umask {
            libc::umask(mask);
        }
        if let Some(soft) = plan.nofile_soft {
            let mut lim: libc::rlimit = std::mem::zeroed();
            if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) == 0 && soft < lim.rlim_cur {
                lim.rlim_cur = soft;
                libc::setrlimit(libc::RLIMIT_NOFILE, &lim);
            }
        }
        // `limits:` after the descriptor limit above, so that an explicit `nofile` wins. The
        // hard limit is raised only when the value is above it (root only; else EPERM fails
        // the spawn with a clear reason).
        for (resource, value) in plan.rlimits.iter().flatten() {
            let mut lim: libc::rlimit = std::mem::zeroed();
            if libc::getrlimit(*resource, &mut lim) == 0 {
                lim.rlim_cur = *value;
                if lim.rlim_max != libc::RLIM_INFINITY && (lim.rlim_max < *value) {
                    lim.rlim_max = *value;
                }
                check(libc::setrlimit(*resource, &lim))?;
            }
        }
        if let Some(c) = &plan.creds {
            // Groups, then gid, then uid: after setuid we could no longer change the others.
            // Raw syscalls, which change this process only: glibc's wrappers, in a process
            // with threads, take a lock and signal every other thread to switch too (the
            // daemon's own threads, had it any, under CLONE_VM). 32-bit ids on every 64-bit
            // architecture.
            check_long(libc::syscall(
                libc::SYS_setgroups,
                c.groups.len() as libc::c_long,
                c.groups.as_ptr() as libc::c_long,
            ))?;
            check_long(libc::syscall(libc::SYS_setgid, c.gid as libc::c_long))?;
            check_long(libc::syscall(libc::SYS_setuid, c.uid as libc::c_long))?;
        }
        // After the credential change: changing the euid clears the parent-death signal.
        check(libc::prctl(
            libc::PR_SET_PDEATHSIG,
            libc::SIGKILL as libc::c_ulong,
            0,
            0,
            0,
        ))?;
        if libc::getppid() != plan.daemon_pid {
            // The daemon died before the signal was armed; nobody is left to supervise us.
            libc::_exit(1);
        }
        // An empty mask: every signal unblocked, glibc's internal ones included.
        let empty = 0u64;
        check_long(libc::syscall(
            libc::SYS_rt_sigprocmask,
            libc::SIG_SETMASK as libc::c_long,
            &empty as *const u64,
            std::ptr::null_mut::<u64>(),
            8usize, // sizeof the kernel's sigset_t
        ))?;
        // Close-on-exec rather than close: the exec status pipe (itself close-on-exec) must
        // stay open until exec so a failure can still be reported.
        let r = libc::syscall(
            libc::SYS_close_range,
            3 as libc::c_uint,
            libc::c_uint::MAX,
            libc::CLOSE_RANGE_CLOEXEC,
        );
        if r != 0 {
            for fd in 3..plan.fd_limit {
                let flags = libc::fcntl(fd, libc::F_GETFD);
                if flags >= 0 && flags & libc::FD_CLOEXEC == 0 {
                    libc::fcntl(fd, libc::F_SETFD, flags | libc::FD_CLOEXEC);
                }
            }
        }
        // The readiness descriptor is the one exception: dup2 gives a copy without
        // close-on-exec; when it already has its number, clear the flag instead.
        if let Some((src, target)) = plan.ready_fd {
            if src == target {
                check(libc::fcntl(target, libc::F_SETFD, 0))?;
            } else {
                check(libc::dup2(src, target))?;
            }
        }
    }
    Ok(())
}

fn check(r: libc::c_int) -> Result<(), Failed> {
    check_long(r.into())
}

fn check_long(r: libc::c_long) -> Result<(), Failed> {
    if r == -1 {
        Err(Failed)
    } else {
        Ok(())
    }
}

fn fd_limit() -> libc::c_int {
    // Capped: a soft limit of a billion would make the fallback loop take seconds.
    let soft = getrlimit(Resource::RLIMIT_NOFILE).map_or(1024, |(soft, _)| soft);
    soft.min(65_536) as libc::c_int
}

fn check_workingdir(dir: &Path) -> Result<(), String> {
    match std::fs::metadata(dir) {
        Ok(m) if m.is_dir() => Ok(()),
        Ok(_) => Err(format!("workingdir {}: not a directory", dir.display())),
        Err(e) => Err(format!("workingdir {}: {}", dir.display(), io_text(&e))),
    }
}

/// The login variables of a user's passwd entry, as `su -` and systemd's `User=` set them:
/// a job switched to `nobody` must not keep root's HOME or the daemon's SHELL.
type LoginEnv = Vec<(std::ffi::OsString, std::ffi::OsString)>;

fn login_env(entry: &User) -> LoginEnv {
    vec![
        ("HOME".into(), entry.dir.clone().into_os_string()),
        ("USER".into(), entry.name.clone().into()),
        ("LOGNAME".into(), entry.name.clone().into()),
        ("SHELL".into(), entry.shell.clone().into_os_string()),
    ]
}

/// `user:` as a name or a uid: the credentials (`None` when no switch is needed, it is
/// already us) and the user's login variables.
/// The uid and gid a job runs as when that is not the daemon's (what its readiness socket is
/// handed to); `None` for a job without `user:` or with the daemon's own.
pub fn owner(spec: &ProgramSpec) -> Result<Option<(u32, u32)>, String> {
    let Some(user) = spec.user.as_deref() else {
        return Ok(None);
    };
    Ok(resolve_user(user)?.0.map(|c| (c.uid, c.gid)))
}

fn resolve_user(user: &str) -> Result<(Option<Credentials>, LoginEnv), String> {
    let found = match user.parse::<u32>() {
        Ok(uid) => User::from_uid(uid.into()),
        Err(_) => User::from_name(user),
    };
    let entry = match found {
        Ok(Some(u)) => u,
        Ok(None) => return Err(format!("user {user}: no such user")),
        Err(e) => return Err(format!("user {user}: {}", errno_text(e))),
    };
    let login = login_env(&entry);
    let euid = geteuid();
    if entry.uid == euid {
        return Ok((None, login));
    }
    if !euid.is_root() {
        return Err(format!(
            "user {user}: the daemon must run as root to switch users"
        ));
    }
    let name = std::ffi::CString::new(entry.name.as_bytes())
        .map_err(|_| format!("user {user}: invalid name"))?;
    let groups = getgrouplist(&name, entry.gid)
        .map_err(|e| format!("user {user}: supplementary groups: {}", errno_text(e)))?;
    Ok((
        Some(Credentials {
            uid: entry.uid.as_raw(),
            gid: entry.gid.as_raw(),
            groups: groups.into_iter().map(|g| g.as_raw()).collect(),
        }),
        login,
    ))
}

/// `/dev/null` for reading (every child's stdin) and for writing (`discard`), opened at the
/// first spawn of this thread and kept: three opens and closes fewer per spawn. Close-on-exec
/// in the daemon; the child gets copies (dup2) on 0, 1 and 2.
#[derive(Clone, Copy)]
struct DevNull {
    read: libc::c_int,
    write: libc::c_int,
}

thread_local! {
    static DEV_NULL: std::cell::OnceCell<(OwnedFd, OwnedFd)> = const { std::cell::OnceCell::new() };
}

fn dev_null() -> io::Result<DevNull> {
    DEV_NULL.with(|cell| {
        if let Some((r, w)) = cell.get() {
            return Ok(DevNull {
                read: r.as_raw_fd(),
                write: w.as_raw_fd(),
            });
        }
        let r = OwnedFd::from(std::fs::File::open("/dev/null")?);
        let w = OwnedFd::from(std::fs::OpenOptions::new().write(true).open("/dev/null")?);
        let null = DevNull {
            read: r.as_raw_fd(),
            write: w.as_raw_fd(),
        };
        let _ = cell.set((r, w));
        Ok(null)
    })
}

/// The child's side of one stream: a descriptor made for this spawn, or the kept /dev/null.
enum ChildEnd {
    Owned(OwnedFd),
    Null(libc::c_int),
}

impl ChildEnd {
    fn raw(&self) -> libc::c_int {
        match self {
            ChildEnd::Owned(fd) => fd.as_raw_fd(),
            ChildEnd::Null(fd) => *fd,
        }
    }
}

/// The child's side of one stream, and the parent's read end when it is a pipe.
fn connect(
    how: &Stdio,
    which: &str,
    null: DevNull,
) -> Result<(ChildEnd, Option<OwnedFd>), SpawnError> {
    match how {
        Stdio::Null => Ok((ChildEnd::Null(null.write), None)),
        Stdio::Pipe => {
            let (read, write) = nix::unistd::pipe2(OFlag::O_CLOEXEC).map_err(|e| SpawnError {
                reason: format!("{which}: pipe: {}", errno_text(e)),
                daemon: daemon_resource(e),
            })?;
            // Only our end is non-blocking: a child writing to a full pipe should wait, not
            // fail with EAGAIN.
            fcntl(read.as_raw_fd(), FcntlArg::F_SETFL(OFlag::O_NONBLOCK))
                .map_err(|e: Errno| format!("{which}: pipe: {}", errno_text(e)))?;
            Ok((ChildEnd::Owned(write), Some(read)))
        }
        Stdio::Inherit(fd) => {
            // SAFETY: F_DUPFD_CLOEXEC makes a new descriptor, which we then own; a daemon
            // started with that descriptor closed gets EBADF, a failed start.
            let r = unsafe { libc::fcntl(*fd, libc::F_DUPFD_CLOEXEC, 3) };
            if r == -1 {
                let e = io::Error::last_os_error();
                return Err(io_spawn_error(&format!("{which}: inherit"), &e));
            }
            use std::os::fd::FromRawFd;
            // SAFETY: `r` was just made by fcntl and is owned by nobody else.
            Ok((ChildEnd::Owned(unsafe { OwnedFd::from_raw_fd(r) }), None))
        }
    }
}

/// Put `fd` on descriptor `target` if that number is free in the daemon (keeping it
/// close-on-exec there); when something else holds it, keep `fd` where it is.
fn occupy(fd: OwnedFd, target: i32) -> Result<(OwnedFd, i32), String> {
    use std::os::fd::{AsRawFd, FromRawFd};
    // SAFETY: F_GETFD only asks whether the number is open.
    let free = unsafe { libc::fcntl(target, libc::F_GETFD) } == -1;
    if !free {
        return Ok((fd, target));
    }
    // SAFETY: `target` is free; dup3 makes a new descriptor we then own.
    let r = unsafe { libc::dup3(fd.as_raw_fd(), target, libc::O_CLOEXEC) };
    if r == -1 {
        return Err(format!(
            "ready fd:{target}: {}",
            io_text(&io::Error::last_os_error())
        ));
    }
    // SAFETY: dup3 returned `target`, a descriptor nobody else owns.
    Ok((unsafe { OwnedFd::from_raw_fd(r) }, target))
}

type RlimitResource = libc::__rlimit_resource_t;

fn rlimits(l: &crate::config::Limits) -> [Option<(RlimitResource, libc::rlim_t)>; 5] {
    let v = |x: Option<u64>| {
        x.map(|n| {
            if n == u64::MAX {
                libc::RLIM_INFINITY
            } else {
                n
            }
        })
    };
    [
        v(l.nofile).map(|n| (libc::RLIMIT_NOFILE, n)),
        v(l.nproc).map(|n| (libc::RLIMIT_NPROC, n)),
        v(l.core).map(|n| (libc::RLIMIT_CORE, n)),
        v(l.memory).map(|n| (libc::RLIMIT_AS, n)),
        v(l.cpu).map(|n| (libc::RLIMIT_CPU, n)),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::ExitStatus;
    use crate::daemon::testutil::{spec, temp_dir, wait_exit};
    use std::io::Read;
    use std::os::fd::AsRawFd;

    fn request<'a>(spec: &'a ProgramSpec, stdout: Stdio) -> SpawnRequest<'a> {
        SpawnRequest {
            spec,
            name: "t:3",
            num: 3,
            stdout,
            stderr: Stdio::Null,
        }
    }

    /// Everything the child writes to stdout, read to EOF, and how it ended.
    fn run(spec: &ProgramSpec) -> (String, ExitStatus) {
        let (_, out, st) = run_pid(spec);
        (out, st)
    }

    /// `run`, with the child's pid first.
    fn run_pid(spec: &ProgramSpec) -> (u32, String, ExitStatus) {
        let child = spawn(&request(spec, Stdio::Pipe)).expect("spawn");
        let fd = child.stdout.expect("a pipe");
        let flags = fcntl(fd.as_raw_fd(), FcntlArg::F_GETFL).expect("getfl");
        assert!(flags & libc::O_NONBLOCK != 0, "our end is non-blocking");
        let fdflags = fcntl(fd.as_raw_fd(), FcntlArg::F_GETFD).expect("getfd");
        assert!(fdflags & libc::FD_CLOEXEC != 0, "our end is close-on-exec");
        // Blocking for the test: read to EOF in one go.
        fcntl(fd.as_raw_fd(), FcntlArg::F_SETFL(OFlag::empty())).expect("setfl");
        let mut out = String::new();
        std::fs::File::from(fd)
            .read_to_string(&mut out)
            .expect("read");
        (child.pid, out, wait_exit(child.pid))
    }

    fn sh(script: &str) -> ProgramSpec {
        spec(&["sh", "-c", script])
    }

    fn field<'a>(out: &'a str, key: &str) -> &'a str {
        out.lines()
            .find_map(|l| l.strip_prefix(key))
            .unwrap_or_else(|| panic!("no {key} in {out:?}"))
            .trim()
    }

    #[test]
    fn the_child_gets_its_environment_directory_and_umask() {
        let dir = temp_dir("env");
        let mut s = sh("echo umask=$(umask); echo cwd=$(pwd); \
             echo name=$SUP_PROCESS_NAME; echo prog=$SUP_PROGRAM; echo num=$SUP_PROCESS_NUM; \
             echo foo=$FOO; echo path=${PATH:+set}; echo stdin=$(readlink /proc/$$/fd/0)");
        s.env.insert("FOO".into(), "bar baz".into());
        s.umask = Some(0o027);
        s.workingdir = Some(dir.clone());
        let (out, st) = run(&s);
        assert_eq!(st, ExitStatus::Code(0), "{out}");
        assert_eq!(field(&out, "umask="), "0027");
        assert_eq!(field(&out, "cwd="), dir.to_string_lossy());
        assert_eq!(field(&out, "name="), "t:3");
        assert_eq!(field(&out, "prog="), "t");
        assert_eq!(field(&out, "num="), "3");
        assert_eq!(field(&out, "foo="), "bar baz");
        assert_eq!(
            field(&out, "path="),
            "set",
            "the daemon's environment is kept"
        );
        assert_eq!(field(&out, "stdin="), "/dev/null");
        let _ = std::fs::remove_dir_all(dir);
    }

    #[test]
    fn the_child_leads_its_own_process_group() {
        let child =
            spawn(&request(&sh("cut -d' ' -f5 /proc/$$/stat"), Stdio::Pipe)).expect("spawn");
        let mut out = String::new();
        let fd = child.stdout.expect("a pipe");
        fcntl(fd.as_raw_fd(), FcntlArg::F_SETFL(OFlag::empty())).expect("setfl");
        std::fs::File::from(fd)
            .read_to_string(&mut out)
            .expect("read");
        assert_eq!(wait_exit(child.pid), ExitStatus::Code(0));
        assert_eq!(out.trim(), child.pid.to_string());
    }

    #[test]
    fn only_descriptors_0_1_2_are_inherited() {
        // A descriptor without close-on-exec, as a careless library might leave one.
        // SAFETY: dup of our own stderr; closed below.
        let leaky = unsafe { libc::dup(2) };
        assert!(leaky > 2);
        let (out, st) = run(&sh("ls /proc/$$/fd"));
        // SAFETY: the descriptor dup'ed above.
        unsafe { libc::close(leaky) };
        assert_eq!(st, ExitStatus::Code(0));
        let fds: Vec<&str> = out.split_whitespace().collect();
        assert_eq!(fds, ["0", "1", "2"], "{out}");
    }

    #[test]
    fn signals_start_unblocked_and_at_their_defaults() {
        // Block and ignore in the daemon's manner. The mask is this thread's only; the ignored
        // SIGUSR2 is process-wide, harmless to the other tests (nobody sends it).
        let mut set = nix::sys::signal::SigSet::empty();
        set.add(nix::sys::signal::Signal::SIGUSR1);
        set.add(nix::sys::signal::Signal::SIGTERM);
        let mut old = nix::sys::signal::SigSet::empty();
        nix::sys::signal::pthread_sigmask(
            nix::sys::signal::SigmaskHow::SIG_BLOCK,
            Some(&set),
            Some(&mut old),
        )
        .expect("block");
        // SAFETY: setting SIG_IGN installs no handler.
        unsafe { libc::signal(libc::SIGUSR2, libc::SIG_IGN) };
        // Read by the shell itself, with builtins only: a forked `grep` would catch dash with every
        // signal blocked around its own fork and wait.
        let result = run(&sh(
            "while read -r k v; do case $k in SigBlk:|SigIgn:) echo $k $v;; esac; done </proc/self/status",
        ));
        nix::sys::signal::pthread_sigmask(
            nix::sys::signal::SigmaskHow::SIG_SETMASK,
            Some(&old),
            None,
        )
        .expect("restore");
        let (out, st) = result;
        assert_eq!(st, ExitStatus::Code(0));
        assert_eq!(field(&out, "SigBlk:"), "0000000000000000", "{out}");
        assert_eq!(field(&out, "SigIgn:"), "0000000000000000", "{out}");
    }

    #[test]
    fn the_signals_a_child_resets_are_those_not_at_their_default() {
        // SAFETY: setting SIG_IGN installs no handler; SIGUSR2 is ignored by another test too.
        unsafe { libc::signal(libc::SIGUSR2, libc::SIG_IGN) };
        let mask = not_default_now();
        let bit = |sig: libc::c_int| mask & (1 << (sig - 1)) != 0;
        // Rust's runtime ignores SIGPIPE.
        assert!(bit(libc::SIGPIPE), "{mask:#x}");
        assert!(bit(libc::SIGUSR2), "{mask:#x}");
        assert!(!bit(libc::SIGKILL) && !bit(libc::SIGSTOP), "{mask:#x}");
    }

    #[test]
    fn the_child_dies_with_the_thread_that_spawned_it() {
        let s = spec(&["sleep", "30"]);
        let pid = std::thread::spawn(move || spawn(&request(&s, Stdio::Null)).map(|c| c.pid))
            .join()
            .expect("join")
            .expect("spawn");
        assert_eq!(wait_exit(pid), ExitStatus::Signaled(libc::SIGKILL));
    }

    #[test]
    fn exec_failures_name_the_program_and_the_cause() {
        let err = spawn(&request(&spec(&["/nonexistent/webd"]), Stdio::Pipe)).unwrap_err();
        assert_eq!(err, "/nonexistent/webd: no such file or directory");
        let dir = temp_dir("noexec");
        let script = dir.join("noexec.sh");
        std::fs::write(&script, "#!/bin/sh\n").expect("write");
        let path = script.to_string_lossy().into_owned();
        let err = spawn(&request(&spec(&[&path]), Stdio::Null)).unwrap_err();
        assert_eq!(err, format!("{path}: permission denied"));
        let _ = std::fs::remove_dir_all(dir);
    }

    #[test]
    fn a_bad_workingdir_fails_before_fork() {
        let mut s = spec(&["true"]);
        s.workingdir = Some(PathBuf::from("/nonexistent/dir"));
        let err = spawn(&request(&s, Stdio::Null)).unwrap_err();
        assert_eq!(
            err,
            "workingdir /nonexistent/dir: no such file or directory"
        );
        s.workingdir = Some(PathBuf::from("/etc/passwd"));
        let err = spawn(&request(&s, Stdio::Null)).unwrap_err();
        assert_eq!(err, "workingdir /etc/passwd: not a directory");
    }

    #[test]
    fn an_unknown_user_fails_before_fork() {
        let mut s = spec(&["true"]);
        s.user = Some("no-such-user-sup".into());
        let err = spawn(&request(&s, Stdio::Null)).unwrap_err();
        assert_eq!(err, "user no-such-user-sup: no such user");
    }

    #[test]
    fn switching_user_sets_uid_gid_and_groups() {
        let Ok(Some(nobody)) = User::from_name("nobody") else {
            return;
        };
        let mut s = sh("echo uid=$(id -u); echo gid=$(id -g); echo groups=$(id -G)");
        s.user = Some("nobody".into());
        if !geteuid().is_root() {
            let err = spawn(&request(&s, Stdio::Null)).unwrap_err();
            assert_eq!(
                err,
                "user nobody: the daemon must run as root to switch users"
            );
            return;
        }
        let (out, st) = run(&s);
        assert_eq!(st, ExitStatus::Code(0), "{out}");
        assert_eq!(field(&out, "uid="), nobody.uid.to_string());
        assert_eq!(field(&out, "gid="), nobody.gid.to_string());
        let expected: Vec<String> = getgrouplist(
            &std::ffi::CString::new("nobody").expect("cstring"),
            nobody.gid,
        )
        .expect("groups")
        .iter()
        .map(|g| g.to_string())
        .collect();
        let mut got: Vec<&str> = field(&out, "groups=").split(' ').collect();
        got.sort();
        let mut expected: Vec<&str> = expected.iter().map(String::as_str).collect();
        expected.sort();
        expected.dedup();
        assert_eq!(got, expected);
    }
    /// Run `f` with this thread's spawns made by the fork fallback.
    fn forking<T>(f: impl FnOnce() -> T) -> T {
        FORCE_FORK.with(|x| x.set(true));
        let r = f();
        FORCE_FORK.with(|x| x.set(false));
        r
    }

    /// This thread's minor page faults so far.
    fn minor_faults() -> i64 {
        // SAFETY: getrusage fills the zeroed struct it is given.
        unsafe {
            let mut usage: libc::rusage = std::mem::zeroed();
            assert_eq!(libc::getrusage(libc::RUSAGE_THREAD, &mut usage), 0);
            usage.ru_minflt
        }
    }

    /// The faults this thread takes writing once to every page of a 64 MiB buffer it had
    /// written before one spawn.
    fn write_faults_after_a_spawn() -> i64 {
        const LEN: usize = 64 << 20;
        let mut buf = vec![1u8; LEN];
        let child = spawn(&request(&spec(&["true"]), Stdio::Null)).expect("spawn");
        let before = minor_faults();
        for i in (0..LEN).step_by(4096) {
            // SAFETY: in bounds; volatile so that the writes happen here.
            unsafe { std::ptr::write_volatile(buf.as_mut_ptr().add(i), 2) };
        }
        let faults = minor_faults() - before;
        assert_eq!(wait_exit(child.pid), ExitStatus::Code(0));
        faults
    }

    #[test]
    fn a_spawn_write_protects_none_of_the_daemons_memory() {
        // fork write-protects every private page of the parent, which then faults on its next
        // write to each (do_wp_page): 16384 faults here, or 32 with transparent huge pages.
        // CLONE_VM shares the memory as it is. Counted in a test process of its own: a fork by
        // any other test in this one would write-protect the buffer too.
        let exe = std::env::current_exe().expect("the test binary");
        let out = std::process::Command::new(exe)
            .args([
                "--exact",
                "daemon::spawn::tests::write_faults_probe",
                "--ignored",
                "--nocapture",
                "--test-threads=1",
            ])
            .stderr(std::process::Stdio::inherit())
            .output()
            .expect("run the probe");
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(out.status.success(), "{text}");
        let count = |key: &str| -> i64 {
            text.split(key)
                .nth(1)
                .and_then(|rest| rest.split_whitespace().next())
                .and_then(|n| n.parse().ok())
                .unwrap_or_else(|| panic!("no {key} in {text:?}"))
        };
        let forked = count("probe-forked=");
        assert!(forked >= 32, "the fork fallback took only {forked} faults");
        let vforked = count("probe-vforked=");
        assert!(vforked < 8, "{vforked} faults after a vforked spawn");
    }

    #[test]
    #[ignore = "run in a process of its own by a_spawn_write_protects_none_of_the_daemons_memory"]
    fn write_faults_probe() {
        let forked = forking(write_faults_after_a_spawn);
        let vforked = write_faults_after_a_spawn();
        println!("\nprobe-forked={forked} probe-vforked={vforked}");
    }

    #[test]
    fn a_vforked_child_has_its_group_and_its_exec_result_when_start_returns() {
        // The daemon resumes only after the child's exec took its new memory or the child
        // exited: by then the child leads its own group (set by itself), and a failed exec's
        // (step, errno) is in the memory it shared. No status pipe is made: `start` fails
        // at once, with the child reaped.
        let s = spec(&["/nonexistent/webd"]);
        let err = start(&request(&s, Stdio::Null), Extras::default()).unwrap_err();
        assert_eq!(
            err,
            SpawnError {
                reason: "/nonexistent/webd: no such file or directory".into(),
                daemon: false
            }
        );

        let s = spec(&["sleep", "30"]);
        let child = start(&request(&s, Stdio::Null), Extras::default()).expect("start");
        assert!(child.exec_status.is_none(), "a pipe for a vforked child");
        let pid = child.pid as libc::pid_t;
        // SAFETY: getpgid only reads; kill ends our own child.
        let pgid = unsafe { libc::getpgid(pid) };
        unsafe { libc::kill(pid, libc::SIGKILL) };
        assert_eq!(pgid, pid);
        assert_eq!(wait_exit(child.pid), ExitStatus::Signaled(libc::SIGKILL));
    }

    #[test]
    fn a_vforked_child_searches_path_as_execvp_does() {
        use std::os::unix::fs::PermissionsExt;
        let dir = temp_dir("path-search");
        let (first, second) = (dir.join("a"), dir.join("b"));
        for d in [&first, &second] {
            std::fs::create_dir(d).expect("mkdir");
        }
        // Not executable where it is found first: skipped, and the next one runs.
        std::fs::write(first.join("hello"), "#!/bin/sh\necho wrong\n").expect("write");
        std::fs::write(second.join("hello"), "#!/bin/sh\necho right\n").expect("write");
        std::fs::set_permissions(second.join("hello"), std::fs::Permissions::from_mode(0o755))
            .expect("chmod");
        std::fs::write(first.join("only-here"), "").expect("write");
        let path = format!("{}:/nonexistent:{}", first.display(), second.display());
        let with_path = |cmd: &[&str]| {
            let mut s = spec(cmd);
            s.env.insert("PATH".into(), path.clone());
            s
        };
        let (out, st) = run(&with_path(&["hello"]));
        assert_eq!((out.as_str(), st), ("right\n", ExitStatus::Code(0)));
        let err = spawn(&request(&with_path(&["only-here"]), Stdio::Null)).unwrap_err();
        assert_eq!(err, "only-here: permission denied");
        let err = spawn(&request(&with_path(&["nowhere"]), Stdio::Null)).unwrap_err();
        assert_eq!(err, "nowhere: no such file or directory");
        // The fork fallback finds it before making the child, with the same answers.
        forking(|| {
            let (out, _) = run(&with_path(&["hello"]));
            assert_eq!(out, "right\n");
            let err = spawn(&request(&with_path(&["only-here"]), Stdio::Null)).unwrap_err();
            assert_eq!(err, "only-here: permission denied");
            let err = spawn(&request(&with_path(&["nowhere"]), Stdio::Null)).unwrap_err();
            assert_eq!(err, "nowhere: no such file or directory");
        });
    }

    #[test]
    fn candidates_are_each_path_directory_in_order() {
        let got = candidates("sh", Some(OsStr::new("/a:/b/c::/d")));
        let got: Vec<&str> = got.iter().map(|c| c.to_str().unwrap_or("?")).collect();
        assert_eq!(got, ["/a/sh", "/b/c/sh", "sh", "/d/sh"]);
        assert_eq!(candidates("sh", None).len(), 3);
    }

    #[test]
    fn the_start_time_read_from_the_clock_is_the_one_proc_shows() {
        let s = spec(&["sleep", "30"]);
        let mut pinned = 0;
        for _ in 0..20 {
            let child = start(&request(&s, Stdio::Null), Extras::default()).expect("start");
            let proc = crate::daemon::state::proc_start_ticks(child.pid);
            // SAFETY: kill ends our own child.
            unsafe { libc::kill(child.pid as libc::pid_t, libc::SIGKILL) };
            assert_eq!(wait_exit(child.pid), ExitStatus::Signaled(libc::SIGKILL));
            if let Some(ticks) = child.start_ticks {
                assert_eq!(Some(ticks), proc);
                pinned += 1;
            }
        }
        // A clone straddles a tick boundary rarely (it takes microseconds of a 10 ms tick).
        assert!(
            pinned >= 10,
            "only {pinned} of 20 start times pinned by the clock"
        );
    }

    #[test]
    fn the_fork_fallback_keeps_the_same_promises() {
        forking(|| {
            let (pid, out, st) = run_pid(&sh("echo pgid=$(cut -d' ' -f5 /proc/$$/stat); \
                 while read -r k v; do case $k in SigBlk:|SigIgn:) echo $k $v;; esac; done \
                 </proc/self/status"));
            assert_eq!(st, ExitStatus::Code(0), "{out}");
            assert_eq!(field(&out, "pgid="), pid.to_string());
            assert_eq!(field(&out, "SigBlk:"), "0000000000000000", "{out}");
            assert_eq!(field(&out, "SigIgn:"), "0000000000000000", "{out}");
            let err = spawn(&request(&spec(&["/nonexistent/webd"]), Stdio::Null)).unwrap_err();
            assert_eq!(err, "/nonexistent/webd: no such file or directory");
        });
    }
}
