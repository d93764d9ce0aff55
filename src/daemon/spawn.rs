//! Starting one child as the README promises: its own process group,
//! stdin from /dev/null, stdout/stderr as asked, the daemon's environment plus the `SUP_*`
//! variables and the job's `env`, its working directory, umask and user, no inherited
//! descriptors beyond 0, 1 and 2, default signal dispositions, an empty signal mask, and death
//! with the daemon.
//!
//! Everything that can fail for a reason worth telling (a missing directory, an unknown user,
//! a program not on PATH) is checked before `fork`. Between `fork` and `exec` the child runs
//! only async-signal-safe calls on data prepared here (argv, envp and the resolved path are
//! built first), and reports a failed `exec` as `(step, errno)` on a close-on-exec pipe.
//!
//! `start` does not wait for that report: the loop watches the pipe (end of file = the
//! program runs, data = it could not) while it forks the next child, so a thousand children
//! exec in parallel instead of one after another. `spawn` is the same with the wait, for
//! callers that want the answer at once.
//!
//! Reaping is not done here: the loop reaps every child with `waitpid(-1)`.

use std::ffi::{CString, OsStr};
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
#[derive(Debug)]
pub enum Stdio {
    /// /dev/null.
    Null,
    /// A new pipe; `Spawned` carries its read end (non-blocking, close-on-exec) for `Capture`.
    Pipe,
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
}

/// Why a spawn did not happen. `daemon` is true when the daemon's own resources ran out (fork
/// EAGAIN/ENOMEM, descriptors for its pipes): nothing about the job, so it is retried
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

/// A failed open in the daemon before the fork.
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

/// What readiness adds to a spawn: `NOTIFY_SOCKET` and friends, and the write end of
/// a pipe the child gets as descriptor `target` (s6's notification-fd), the only descriptor
/// beyond 0, 1 and 2 that survives the exec.
#[derive(Debug, Default)]
pub struct Extras {
    pub env: Vec<(String, String)>,
    pub ready_fd: Option<(OwnedFd, i32)>,
}

/// A user switch, resolved before fork.
#[derive(Debug, Clone)]
struct Credentials {
    uid: libc::uid_t,
    gid: libc::gid_t,
    groups: Vec<libc::gid_t>,
}

/// What the child does between fork and exec. Plain data, prepared in the parent, so the child
/// neither allocates nor looks anything up.
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

/// Fork the instance and return without waiting for its `exec`; watch `exec_status`.
///
/// Call it from the daemon's main thread: the parent-death signal fires when the *thread* that
/// forked ends, not the process.
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
    let env = environment(req, &login, &extras.env);
    let path = resolve_program(program, &env)?;
    let cstr =
        |b: &[u8], what: &str| CString::new(b).map_err(|_| format!("{what} contains a NUL byte"));
    let path_c = cstr(path.as_os_str().as_bytes(), "the command")?;
    let argv_c: Vec<CString> = spec
        .cmd
        .iter()
        .map(|a| cstr(a.as_bytes(), "an argument"))
        .collect::<Result<_, _>>()?;
    let envp_c: Vec<CString> = env
        .iter()
        .map(|(k, v)| {
            let mut kv = k.as_bytes().to_vec();
            kv.push(b'=');
            kv.extend_from_slice(v.as_bytes());
            cstr(&kv, "an environment variable")
        })
        .collect::<Result<_, _>>()?;
    let mut argv: Vec<*const libc::c_char> = argv_c.iter().map(|c| c.as_ptr()).collect();
    argv.push(std::ptr::null());
    let mut envp: Vec<*const libc::c_char> = envp_c.iter().map(|c| c.as_ptr()).collect();
    envp.push(std::ptr::null());
    let dir_c = match &spec.workingdir {
        Some(d) => Some(cstr(d.as_os_str().as_bytes(), "workingdir")?),
        None => None,
    };
    let stdin = std::fs::File::open("/dev/null").map_err(|e| io_spawn_error("/dev/null", &e))?;
    let (child_out, parent_out) = connect(&req.stdout, "stdout")?;
    let (child_err, parent_err) = connect(&req.stderr, "stderr")?;
    let (status_read, status_write) =
        nix::unistd::pipe2(OFlag::O_CLOEXEC).map_err(|e| SpawnError {
            reason: format!("exec status pipe: {}", errno_text(e)),
            daemon: daemon_resource(e),
        })?;
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
    };
    let fds = [
        stdin.as_raw_fd(),
        child_out.as_raw_fd(),
        child_err.as_raw_fd(),
    ];
    let report = status_write.as_raw_fd();

    // SAFETY: the daemon is single-threaded, so the child may run anything until exec; it
    // still keeps to async-signal-safe syscalls on the data prepared above and never returns.
    let pid = unsafe { libc::fork() };
    if pid == 0 {
        // SAFETY: in the child; every pointer refers to memory prepared before the fork.
        unsafe {
            let fail = |step: i32| -> ! {
                let errno = *libc::__errno_location();
                let msg = [step.to_ne_bytes(), errno.to_ne_bytes()].concat();
                libc::write(report, msg.as_ptr().cast(), msg.len());
                libc::_exit(127)
            };
            for (target, &fd) in fds.iter().enumerate() {
                if libc::dup2(fd, target as libc::c_int) == -1 {
                    fail(STEP_SETUP);
                }
            }
            if libc::setpgid(0, 0) == -1 {
                fail(STEP_SETUP);
            }
            // Give up the daemon's controlling terminal, if it has one (`sup daemon` in the
            // foreground): a job, maybe running as another user, must not open /dev/tty to
            // read the operator's keys or push input into the shell with TIOCSTI. Not setsid:
            // the parent's setpgid below could make the child a group leader first, and then
            // setsid fails.
            let tty = libc::open(
                c"/dev/tty".as_ptr(),
                libc::O_RDWR | libc::O_NOCTTY | libc::O_CLOEXEC,
            );
            if tty >= 0 {
                libc::ioctl(tty, libc::TIOCNOTTY);
                libc::close(tty);
            }
            if let Some(dir) = &dir_c {
                if libc::chdir(dir.as_ptr()) == -1 {
                    fail(STEP_CHDIR);
                }
            }
            if in_child(&plan).is_err() {
                fail(STEP_SETUP);
            }
            libc::execve(path_c.as_ptr(), argv.as_ptr(), envp.as_ptr());
            fail(STEP_EXEC)
        }
    }
    if pid < 0 {
        let e = Errno::last();
        return Err(SpawnError {
            reason: format!("fork failed: {}", errno_text(e)),
            daemon: daemon_resource(e),
        });
    }
    // Also from the parent, so the group exists whichever side runs first (signalling the
    // group right after `start` must reach the child).
    // SAFETY: plain syscall on our own child.
    unsafe { libc::setpgid(pid, pid) };
    // The parent's copy of the readiness pipe closes here, so its read end sees EOF once the
    // child closes it.
    drop((stdin, child_out, child_err, status_write, ready_fd));
    fcntl(
        status_read.as_raw_fd(),
        FcntlArg::F_SETFL(OFlag::O_NONBLOCK),
    )
    .map_err(|e: Errno| format!("exec status pipe: {}", errno_text(e)))?;
    Ok(Spawned {
        pid: pid as u32,
        stdout: parent_out,
        stderr: parent_err,
        exec_status: Some(status_read),
        program: program.clone(),
    })
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
    Some(Err(match step {
        STEP_CHDIR => format!("workingdir: {}", errno_text(errno)),
        _ => format!("{program}: {}", errno_text(errno)),
    }))
}

/// The child's environment: the daemon's, then the user's login variables (with `user:`),
/// then the `SUP_*` variables, then the job's `env`, then what readiness adds
/// (`NOTIFY_SOCKET` …), later ones replacing earlier ones.
fn environment(
    req: &SpawnRequest,
    login: &[(std::ffi::OsString, std::ffi::OsString)],
    extra: &[(String, String)],
) -> Vec<(std::ffi::OsString, std::ffi::OsString)> {
    let mut env: std::collections::BTreeMap<std::ffi::OsString, std::ffi::OsString> =
        std::env::vars_os().collect();
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
fn resolve_program(
    program: &str,
    env: &[(std::ffi::OsString, std::ffi::OsString)],
) -> Result<PathBuf, String> {
    if program.contains('/') {
        return Ok(PathBuf::from(program));
    }
    let path = env
        .iter()
        .find(|(k, _)| k == "PATH")
        .map(|(_, v)| v.clone())
        .unwrap_or_else(|| "/usr/local/bin:/usr/bin:/bin".into());
    let mut denied = false;
    for dir in std::env::split_paths(OsStr::new(&path)) {
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

/// Runs in the child after fork (std has already set up 0/1/2, chdir and the process group).
/// Only async-signal-safe calls: no allocation, no locks.
fn in_child(plan: &ChildPlan) -> io::Result<()> {
    // SAFETY: each call is a plain syscall (or glibc's thin wrapper of one) on local or
    // pre-built data; this is the single-threaded child between fork and exec.
    unsafe {
        // Default dispositions first, so that unblocking below can never run a handler
        // inherited from the daemon. Ignored signals survive exec, so this is what keeps a
        // daemon's SIG_IGN (e.g. SIGPIPE) away from the jobs. The raw syscall because glibc's
        // wrapper refuses 32 and 33 (its own), which can still be found ignored.
        let dfl = [0u64; 8]; // a zeroed kernel `struct sigaction` (larger than any layout) is SIG_DFL
        for sig in 1..=64 {
            if sig != libc::SIGKILL && sig != libc::SIGSTOP {
                libc::syscall(
                    libc::SYS_rt_sigaction,
                    sig,
                    dfl.as_ptr(),
                    std::ptr::null_mut::<u64>(),
                    8usize, // sizeof the kernel's sigset_t
                );
            }
        }
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
            check(libc::setgroups(c.groups.len(), c.groups.as_ptr()))?;
            check(libc::setgid(c.gid))?;
            check(libc::setuid(c.uid))?;
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
        let mut empty: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut empty);
        check(libc::pthread_sigmask(
            libc::SIG_SETMASK,
            &empty,
            std::ptr::null_mut(),
        ))?;
        // Close-on-exec rather than close: std's exec-error pipe (itself close-on-exec) must
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

fn check(r: libc::c_int) -> io::Result<()> {
    if r == -1 {
        Err(io::Error::last_os_error())
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

/// The child's side of one stream, and the parent's read end when it is a pipe.
fn connect(how: &Stdio, which: &str) -> Result<(OwnedFd, Option<OwnedFd>), SpawnError> {
    match how {
        Stdio::Null => {
            let null = std::fs::OpenOptions::new()
                .write(true)
                .open("/dev/null")
                .map_err(|e| io_spawn_error(&format!("{which}: /dev/null"), &e))?;
            Ok((OwnedFd::from(null), None))
        }
        Stdio::Pipe => {
            let (read, write) = nix::unistd::pipe2(OFlag::O_CLOEXEC).map_err(|e| SpawnError {
                reason: format!("{which}: pipe: {}", errno_text(e)),
                daemon: daemon_resource(e),
            })?;
            // Only our end is non-blocking: a child writing to a full pipe should wait, not
            // fail with EAGAIN.
            fcntl(read.as_raw_fd(), FcntlArg::F_SETFL(OFlag::O_NONBLOCK))
                .map_err(|e: Errno| format!("{which}: pipe: {}", errno_text(e)))?;
            Ok((write, Some(read)))
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
        (out, wait_exit(child.pid))
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
}
