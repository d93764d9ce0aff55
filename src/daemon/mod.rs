//! The daemon: the only part of sup that makes syscalls while running. `run` does the setup
//! (which may fail with one clear line); `event_loop` then owns the process until shutdown and
//! never exits on an error. The other modules are its hands: spawning, reaping, output
//! capture, the pidfile and the state file.

pub mod cgroup;
pub mod deliver;
pub mod event_loop;
pub(crate) mod http;
mod listen;
mod logs;
mod notify;
mod notifydir;
pub mod output;
pub mod pidfile;
mod pids;
mod probe;
mod procfs;
pub mod reap;
mod sdnotify;
mod sockdiag;
pub mod spawn;
pub mod state;

use std::collections::HashMap;
use std::fs::DirBuilder;
use std::os::unix::fs::DirBuilderExt;
use std::path::Path;

use nix::sys::signal::{SigSet, Signal as NixSignal};
use nix::sys::signalfd::{SfdFlags, SignalFd};

#[cfg(test)]
pub(crate) mod testutil;

use crate::cli::{DaemonArgs, Global};
use crate::fail::Fail;
use crate::paths;

/// How long a shutdown may take with `--init` and no `--grace`.
const DEFAULT_GRACE: std::time::Duration = std::time::Duration::from_secs(10);

/// The signals the loop reads through its signalfd. They are blocked, so they arrive only
/// there; children get an empty mask back before exec. Blocked, they also reach a PID 1,
/// which the kernel would otherwise spare every signal it has no handler for. As a
/// container's init the daemon also takes the signals it forwards (USR1, WINCH) and QUIT,
/// a common container stop signal.
fn loop_signals(init: bool) -> SigSet {
    let mut set = SigSet::empty();
    let mut signals = vec![
        NixSignal::SIGCHLD,
        NixSignal::SIGHUP,
        NixSignal::SIGTERM,
        NixSignal::SIGINT,
        NixSignal::SIGUSR2,
    ];
    if init {
        signals.extend(event_loop::FORWARDED);
        signals.push(NixSignal::SIGQUIT);
    }
    for s in signals {
        set.add(s);
    }
    set
}

/// `--init`, also implied when the daemon is PID 1 (the init of a container's PID namespace,
/// where nobody else reaps orphans or passes signals on), and the shutdown bound it implies.
fn init_mode(args: &DaemonArgs) -> (bool, Option<std::time::Duration>) {
    let init = args.init || std::process::id() == 1;
    (init, args.grace.or(init.then_some(DEFAULT_GRACE)))
}

/// Run the daemon until it shuts down; the exit status it ends with (see `event_loop::Daemon::run`).
pub fn run(global: &Global, args: &DaemonArgs) -> Result<u8, Fail> {
    let (init, grace) = init_mode(args);
    let env = paths::Env::from_process();
    let config_path = paths::config_path(global.config.as_deref(), &env);
    let config = crate::config::load(&config_path).map_err(|errors| {
        let mut text = format!("invalid config {}:", config_path.display());
        for e in &errors {
            text.push_str(&format!("\n  {e}"));
        }
        Fail::new(text).hint("`sup check` prints the same errors")
    })?;
    let socket = paths::socket_path(
        global.socket.as_deref(),
        config.daemon.socket.as_deref(),
        &env,
    );
    let pidfile_path = paths::pidfile_path(
        args.pidfile.as_deref(),
        config.daemon.pidfile.as_deref(),
        &socket,
        &env,
    );
    let logfile = args
        .logfile
        .clone()
        .map(|p| if p.is_absolute() { p } else { env.cwd.join(p) })
        .unwrap_or_else(|| config.daemon.logfile.clone());

    if let Some(dir) = socket.parent() {
        make_private_dir(dir)?;
    }
    let pidfile = pidfile::Pidfile::acquire(&pidfile_path).map_err(|e| Fail::new(e.to_string()))?;
    crate::logging::init(&logfile, config.daemon.loglevel, !args.quiet).map_err(|e| {
        Fail::new(format!(
            "unable to open the event log {}: {e}",
            logfile.display()
        ))
    })?;

    // A predecessor killed outright may have left process groups behind: stop them first,
    // then take over its record of restarts and operator intent.
    let state_path = paths::state_path(&pidfile_path);
    let tag = state::daemon_tag(&state_path);
    let mut restored = HashMap::new();
    if let Some(previous) = state::Journal::load(&state_path) {
        for (name, pgid) in state::cleanup_leftovers(&previous) {
            log::warn!("{name} killed: process group {pgid} left behind by a previous daemon");
        }
        // A retiring instance is recorded for its group only: what a reload removed is not
        // restored.
        for r in previous.instances.into_iter().filter(|r| !r.retiring) {
            restored.insert(r.name.clone(), r);
        }
    }
    // What no recorded group covers: escapees from their groups, and a group spawned in the
    // very turn a predecessor was killed outright, before that turn's record was written.
    let strays = state::kill_tagged(&tag, None, &[], &[]);
    if !strays.is_empty() {
        log::warn!(
            "killed {} process{} left behind by a previous daemon (found by {}): {strays:?}",
            strays.len(),
            if strays.len() == 1 { "" } else { "es" },
            state::DAEMON_VAR
        );
    }
    // Each instance gets a cgroup of its own when the host offers one; what a predecessor
    // on this state file left in its cgroups is killed here too.
    let cgroups = cgroup::Cgroups::setup(&tag);
    spawn::set_daemon_tag(tag);

    let mask = loop_signals(init);
    mask.thread_block()
        .map_err(|e| Fail::new(format!("unable to block signals: {e}")))?;
    let signals = SignalFd::with_flags(&mask, SfdFlags::SFD_NONBLOCK | SfdFlags::SFD_CLOEXEC)
        .map_err(|e| Fail::new(format!("unable to create a signalfd: {e}")))?;
    // Every disposition is what it will be for the daemon's life: children reset only these.
    spawn::note_dispositions();
    if let Err(e) = reap::become_subreaper() {
        log::warn!("orphaned grandchildren will not be reaped by sup: {e}");
    }
    raise_fd_limit();
    let systemd = systemd_link();

    let listener = bind(&socket)?;
    let http = match &config.daemon.http {
        Some(spec) => Some(http::setup(spec).map_err(Fail::new)?),
        None => None,
    };
    // As init, say so and with what grace: what the container's log shows first.
    let mode = match (init, grace) {
        (true, Some(g)) => format!(" init grace={}", crate::core::event::human(g)),
        (false, Some(g)) => format!(" grace={}", crate::core::event::human(g)),
        (_, None) => String::new(),
    };
    log::info!(
        "sup {} started pid={} config={} socket={}{mode}",
        env!("CARGO_PKG_VERSION"),
        std::process::id(),
        config_path.display(),
        socket.display()
    );
    log::info!("{}", cgroups.summary());
    let settings = event_loop::Settings {
        config,
        socket: socket.clone(),
        state_path,
        http,
        cgroups,
        init,
        grace,
        systemd,
    };
    let mut daemon = event_loop::Daemon::new(settings, listener, signals, restored)
        .map_err(|e| Fail::new(format!("unable to start the event loop: {e}")))?;
    let result = daemon.run();
    drop(pidfile);
    result.map_err(|e| Fail::new(format!("the event loop failed: {e}")))
}

/// The service manager's notification socket, when `$NOTIFY_SOCKET` names one, and the
/// watchdog interval it asks for. The variables are removed from the environment either way,
/// before the first spawn: children must not speak for the daemon (a job with `ready: notify`
/// gets a socket of its own).
fn systemd_link() -> Option<(sdnotify::Link, Option<std::time::Duration>)> {
    let socket = std::env::var_os("NOTIFY_SOCKET");
    let usec = std::env::var_os("WATCHDOG_USEC");
    let pid = std::env::var_os("WATCHDOG_PID");
    for var in sdnotify::VARS {
        // The daemon has no other thread: nothing reads the environment meanwhile.
        std::env::remove_var(var);
    }
    let socket = socket.filter(|s| !s.is_empty())?;
    let target = match sdnotify::target(&socket) {
        Ok(t) => t,
        Err(e) => {
            log::warn!("sd_notify: {e}; systemd is not told anything");
            return None;
        }
    };
    let link = match sdnotify::Link::new(&target) {
        Ok(l) => l,
        Err(e) => {
            log::warn!(
                "sd_notify: unable to make a socket for NOTIFY_SOCKET={}: {e}; systemd is not \
                 told anything",
                socket.to_string_lossy()
            );
            return None;
        }
    };
    let watchdog = sdnotify::watchdog_interval(usec.as_deref(), pid.as_deref(), std::process::id());
    log::info!(
        "sd_notify: telling {} READY, RELOADING, STOPPING and STATUS{}",
        link.shown(),
        watchdog.map_or(String::new(), |w| format!(
            ", and WATCHDOG=1 every {}ms",
            w.as_millis()
        ))
    );
    Some((link, watchdog))
}

/// The socket's directory, created 0700 when sup creates it. One that exists must be ours: a
/// directory another user made (`/tmp/sup-$UID` planted with mode 0777) could hold a forged
/// state file or socket, so it is refused rather than trusted. A root-owned sticky directory
/// such as `/tmp` itself is fine: nobody else can replace what we put there.
fn make_private_dir(dir: &Path) -> Result<(), Fail> {
    if std::fs::symlink_metadata(dir).is_err() {
        match DirBuilder::new().recursive(true).mode(0o700).create(dir) {
            Ok(()) => {}
            // Someone made it first: it is judged like any other existing directory.
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
            Err(e) => {
                return Err(Fail::new(format!(
                    "unable to create {}: {e}",
                    dir.display()
                )))
            }
        }
    }
    let meta = std::fs::symlink_metadata(dir)
        .map_err(|e| Fail::new(format!("unable to inspect {}: {e}", dir.display())))?;
    trusted_dir(&meta, nix::unistd::geteuid().as_raw()).map_err(|why| {
        Fail::new(format!(
            "refusing the socket directory {}: {why}",
            dir.display()
        ))
        .hint(
            "remove it and let sup create it, give it to this user with mode 0700, or pass \
             --socket in a directory of this user's",
        )
    })
}

/// Why a directory's owner or mode make it unfit to hold the socket and the state file.
fn trusted_dir(meta: &std::fs::Metadata, euid: u32) -> Result<(), String> {
    use std::os::unix::fs::MetadataExt;
    if meta.file_type().is_symlink() {
        return Err("it is a symbolic link".into());
    }
    if !meta.is_dir() {
        return Err("it is not a directory".into());
    }
    let (owner, mode) = (meta.uid(), meta.mode() & 0o7777);
    if owner != euid && owner != 0 {
        return Err(format!(
            "it is owned by uid {owner} (mode {mode:04o}), not by this daemon's uid {euid}"
        ));
    }
    let shared = mode & 0o022 != 0;
    let sticky_root = owner == 0 && mode & 0o1000 != 0;
    if shared && !sticky_root {
        return Err(format!(
            "its mode {mode:04o} lets {} write in it",
            if mode & 0o002 != 0 {
                "every user"
            } else {
                "its group"
            }
        ));
    }
    Ok(())
}

/// Bind the control socket with mode 0600 from the start (umask around bind, so there is no
/// window where it is open to others), replacing a stale one but never a live one.
fn bind(socket: &Path) -> Result<mio::net::UnixListener, Fail> {
    if socket.exists() {
        if std::os::unix::net::UnixStream::connect(socket).is_ok() {
            return Err(Fail::new(format!(
                "another daemon is listening on {}",
                socket.display()
            ))
            .hint("stop it with `sup shutdown`, or pass another --socket"));
        }
        let _ = std::fs::remove_file(socket);
    }
    let old = nix::sys::stat::umask(nix::sys::stat::Mode::from_bits_truncate(0o177));
    let result = mio::net::UnixListener::bind(socket);
    nix::sys::stat::umask(old);
    result.map_err(|e| Fail::new(format!("unable to listen on {}: {e}", socket.display())))
}

/// Each instance holds up to two pipe ends and each client a socket: lift the soft limit to
/// the hard one so a thousand jobs fit. Children get the original limit back (spawn).
fn raise_fd_limit() {
    use nix::sys::resource::{getrlimit, setrlimit, Resource};
    if let Ok((soft, hard)) = getrlimit(Resource::RLIMIT_NOFILE) {
        spawn::set_child_nofile(soft, hard);
        if soft < hard {
            let _ = setrlimit(Resource::RLIMIT_NOFILE, hard, hard);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;
    use std::time::Duration;

    #[test]
    fn init_implies_a_grace_and_grace_alone_does_not_imply_init() {
        let args = |init: bool, grace: Option<u64>| DaemonArgs {
            pidfile: None,
            logfile: None,
            quiet: false,
            init,
            grace: grace.map(Duration::from_secs),
        };
        // The test runner is not PID 1, so only the flag turns init on here.
        assert_eq!(init_mode(&args(false, None)), (false, None));
        assert_eq!(init_mode(&args(true, None)), (true, Some(DEFAULT_GRACE)));
        assert_eq!(
            init_mode(&args(true, Some(3))),
            (true, Some(Duration::from_secs(3)))
        );
        assert_eq!(
            init_mode(&args(false, Some(3))),
            (false, Some(Duration::from_secs(3)))
        );
        assert!(loop_signals(true).contains(NixSignal::SIGUSR1));
        assert!(!loop_signals(false).contains(NixSignal::SIGUSR1));
        assert!(loop_signals(false).contains(NixSignal::SIGUSR2));
    }

    #[test]
    fn a_directory_is_trusted_only_when_ours_and_not_writable_by_others() {
        let dir = std::env::temp_dir().join(format!("sup-trust-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir(&dir).expect("mkdir");
        let me = nix::unistd::geteuid().as_raw();
        let check = |mode: u32, euid: u32| {
            std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(mode)).expect("chmod");
            trusted_dir(&std::fs::symlink_metadata(&dir).expect("stat"), euid)
        };
        assert_eq!(check(0o700, me), Ok(()));
        assert_eq!(check(0o755, me), Ok(()));
        assert!(check(0o777, me).unwrap_err().contains("every user"));
        assert!(check(0o770, me).unwrap_err().contains("its group"));
        if me != 0 {
            assert!(check(0o700, me + 1).unwrap_err().contains("owned by uid"));
        }
        let _ = std::fs::remove_dir_all(&dir);
        let tmp = std::fs::symlink_metadata("/tmp").expect("/tmp");
        if std::os::unix::fs::MetadataExt::uid(&tmp) == 0 {
            assert_eq!(trusted_dir(&tmp, me), Ok(()), "root's sticky /tmp");
        }
    }
}
