//! The resolved configuration model: every default applied, every path absolute.
//!
//! Two `ProgramSpec`s compare equal exactly when a reload must leave the program alone, so
//! nothing here records where a value came from (that lives in `Config::origins`, which is
//! excluded from comparison). Validation and defaulting live in `config::resolve`; this file
//! only holds the shapes.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

/// A signal by number. The core never touches `nix`, so signals travel as their numbers and
/// `config::signal` maps names both ways.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Signal(pub i32);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AutoRestart {
    Always,
    Never,
    Unexpected,
}

/// Where one output stream of a child goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Output {
    Discard,
    /// The daemon's own stdout (for `stdout`) or stderr (for `stderr`): `inherit`.
    Inherit,
    /// An absolute path; `{name}` still in it, replaced per instance by `Output::path_for`.
    File(PathBuf),
}

impl Output {
    /// The file for one instance, with `{name}` replaced by the instance name.
    pub fn path_for(&self, instance: &str) -> Option<PathBuf> {
        match self {
            Output::Discard | Output::Inherit => None,
            Output::File(p) => Some(PathBuf::from(
                p.to_string_lossy().replace("{name}", instance),
            )),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Schedule {
    /// `every 5m`: a fixed rate.
    Every(Duration),
    /// A 5-field cron expression or an `@hourly`-style alias, as written (trimmed, single spaces).
    Cron(String),
}

/// When an interval schedule's first tick comes: `now` (at start-up) or one interval later.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum FirstRun {
    Now,
    #[default]
    AfterInterval,
}

/// Who `sup signal` reaches when it does not say (`--main`, `--group`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SignalTarget {
    /// The whole process group: the leader and everything it started.
    #[default]
    Group,
    /// The leader only, for a master that manages its workers itself (gunicorn, nginx, php-fpm).
    Main,
}

/// What a tick does when the previous run is still going.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Overlap {
    /// Log `skipped` and wait for the next tick.
    #[default]
    Skip,
    /// Run once more as soon as the current run ends (ticks meanwhile collapse into one).
    Queue,
    /// Stop the current run (stopsignal, then SIGKILL after stoptime) and start a new one.
    Kill,
}

/// Whether a tick missed while the daemon was down (or the clock jumped past it) runs once.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Catchup {
    #[default]
    None,
    Once,
}

/// The keys that only matter with `schedule`, grouped so they compare and default together.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ScheduleOptions {
    /// Each tick is offset by a random amount in `[0, jitter]`.
    pub jitter: Duration,
    pub first_run: FirstRun,
    pub overlap: Overlap,
    pub catchup: Catchup,
}

/// When `starting` becomes `running`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Ready {
    /// It stayed up `starttime`.
    #[default]
    Starttime,
    /// `READY=1` on the datagram socket in `$NOTIFY_SOCKET` (sd_notify).
    Notify,
    /// A newline on this descriptor (s6's notification-fd); always 3 or more.
    Fd(i32),
    /// The first passing health check.
    Health,
}

/// What a health check probes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Probe {
    /// A command, run like `cmd` (own process group, the job's env, workingdir and user);
    /// exit 0 passes.
    Cmd(Vec<String>),
    /// `GET` over HTTP/1.0; a 2xx or 3xx status passes. The host is an IP address (or
    /// `localhost`), so that nothing in the loop waits for DNS.
    Http {
        addr: std::net::SocketAddr,
        host: String,
        path: String,
    },
    /// A TCP connect that succeeds passes.
    Tcp(std::net::SocketAddr),
}

/// What happens after `retries` consecutive failures.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum OnUnhealthy {
    #[default]
    Restart,
    /// Logged (and shown in status) only.
    Notify,
    /// Shown in status only.
    None,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HealthCheck {
    pub probe: Probe,
    pub interval: Duration,
    pub timeout: Duration,
    pub retries: u32,
    pub start_period: Duration,
    pub on_unhealthy: OnUnhealthy,
}

/// rlimits set in the child before exec (soft and hard alike). `None` leaves the inherited one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Limits {
    pub nofile: Option<u64>,
    pub nproc: Option<u64>,
    pub core: Option<u64>,
    /// RLIMIT_AS, in bytes.
    pub memory: Option<u64>,
    /// RLIMIT_CPU, in seconds.
    pub cpu: Option<u64>,
}

/// `max_memory` / `max_cpu` sustained for `for`: the instance is restarted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Watch {
    pub max_memory: Option<u64>,
    /// Percent of one CPU (200 = two CPUs busy).
    pub max_cpu: Option<u32>,
    pub sustained: Duration,
}

/// What a dependency must be for a dependent to be spawned (`depends_on: {db: healthy}`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Condition {
    /// Every instance is `running` (the plain list form).
    Started,
    /// `running`, and its health check passing (without a check, the same as `started`).
    Healthy,
    /// Every instance exited with an expected code and is not restarted: a one-shot job.
    Completed,
}

impl Condition {
    pub fn as_str(self) -> &'static str {
        match self {
            Condition::Started => "started",
            Condition::Healthy => "healthy",
            Condition::Completed => "completed",
        }
    }
}

/// One entry of `depends_on`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Dependency {
    pub program: String,
    pub condition: Condition,
}

impl Dependency {
    pub fn started(program: &str) -> Dependency {
        Dependency {
            program: program.to_string(),
            condition: Condition::Started,
        }
    }
}

/// The keys of readiness, health, dependencies, limits.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HealthSpec {
    pub ready: Ready,
    /// Not ready this long after the spawn (with `ready` other than `starttime`) is a failed
    /// start, like systemd's TimeoutStartSec.
    pub ready_timeout: Duration,
    /// With `ready: notify`: no `WATCHDOG=1` for this long while running restarts it.
    pub watchdog: Option<Duration>,
    pub healthcheck: Option<HealthCheck>,
    /// Sorted by program, one entry per program.
    pub depends_on: Vec<Dependency>,
    pub limits: Limits,
    pub watch: Option<Watch>,
}

impl Default for HealthSpec {
    fn default() -> HealthSpec {
        HealthSpec {
            ready: Ready::Starttime,
            ready_timeout: Duration::from_secs(90),
            watchdog: None,
            healthcheck: None,
            depends_on: Vec::new(),
            limits: Limits::default(),
            watch: None,
        }
    }
}

/// One program, fully resolved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProgramSpec {
    pub name: String,
    pub cmd: Vec<String>,
    pub numprocs: u32,
    pub autostart: bool,
    pub autorestart: AutoRestart,
    /// Sorted, without duplicates, so that `[2, 0]` and `[0, 2]` compare equal.
    pub exitcodes: Vec<i32>,
    pub startretries: u32,
    pub starttime: Duration,
    pub stopsignal: Signal,
    pub stoptime: Duration,
    /// Who `sup signal` reaches by default. Stopping always signals the group.
    pub signal_target: SignalTarget,
    pub stdout: Output,
    pub stderr: Output,
    pub env: BTreeMap<String, String>,
    /// Absolute.
    pub workingdir: Option<PathBuf>,
    pub umask: Option<u32>,
    /// A user name or a numeric uid, resolved when the child is spawned (a missing user is a
    /// failed start, not a config error, as with supervisord).
    pub user: Option<String>,
    pub schedule: Option<Schedule>,
    pub timezone: Option<String>,
    pub sched: ScheduleOptions,
    /// Readiness, health checks, dependencies and limits, grouped so that they
    /// default together.
    pub health: HealthSpec,
    /// Rotation, timestamps and stderr merging of the captured output.
    pub logs: LogSpec,
    /// `memory_max`, `cpu_max`, `pids_max`: written to the instance's cgroup.
    pub cgroup: CgroupLimits,
    /// Its end (an exit it is not restarted after, or `fatal`) ends the daemon, which exits
    /// with its code.
    pub critical: bool,
}

/// The cgroup limit keys of a job; each `None` when not written.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CgroupLimits {
    /// Bytes: v2 `memory.max`, v1 `memory.limit_in_bytes`.
    pub memory_max: Option<u64>,
    /// Thousandths of a CPU (`50%` is 500, `1.5` is 1500): v2 `cpu.max`, v1 CFS quota.
    pub cpu_max: Option<u32>,
    /// v2 and v1 `pids.max`.
    pub pids_max: Option<u64>,
}

/// When one captured stream's file is rotated: `NAME.out` → `NAME.out.1` … `NAME.out.N`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rotation {
    /// Rotate before the file would grow past this; 0 never rotates.
    pub maxbytes: u64,
    /// Rotated files kept; 0 truncates instead.
    pub backups: u32,
}

impl Default for Rotation {
    fn default() -> Rotation {
        Rotation {
            maxbytes: 50 * 1024 * 1024,
            backups: 10,
        }
    }
}

/// The log keys of a job (`stdout_maxbytes`, `timestamps`, `redirect_stderr` …), resolved.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct LogSpec {
    pub stdout: Rotation,
    pub stderr: Rotation,
    /// Prefix every line with an RFC 3339 timestamp.
    pub timestamps: bool,
    /// stderr goes into stdout's file.
    pub redirect_stderr: bool,
    /// An inherited stream (`stdout: inherit`) goes through the daemon, each line prefixed
    /// with the instance name.
    pub prefix: bool,
}

#[cfg(test)]
impl ProgramSpec {
    /// A program with every default a config would give it and output discarded: the one
    /// starting point for tests, which then set the fields they are about.
    pub fn for_tests(name: &str, cmd: &[&str]) -> ProgramSpec {
        ProgramSpec {
            name: name.into(),
            cmd: cmd.iter().map(|s| s.to_string()).collect(),
            numprocs: 1,
            autostart: true,
            autorestart: AutoRestart::Unexpected,
            exitcodes: vec![0],
            startretries: 3,
            starttime: Duration::from_secs(1),
            stopsignal: Signal(15),
            stoptime: Duration::from_secs(10),
            signal_target: SignalTarget::Group,
            stdout: Output::Discard,
            stderr: Output::Discard,
            env: BTreeMap::new(),
            workingdir: None,
            umask: None,
            user: None,
            schedule: None,
            timezone: None,
            sched: Default::default(),
            health: Default::default(),
            logs: Default::default(),
            cgroup: Default::default(),
            critical: false,
        }
    }
}

impl ProgramSpec {
    /// Instance names: `NAME` when `numprocs` is 1, else `NAME:0` … `NAME:N-1`.
    pub fn instance_names(&self) -> Vec<String> {
        if self.numprocs == 1 {
            vec![self.name.clone()]
        } else {
            (0..self.numprocs)
                .map(|i| format!("{}:{}", self.name, i))
                .collect()
        }
    }
}

/// `daemon:` settings, resolved. `None` means "not set in the config": the path rules in
/// `paths` decide then.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DaemonSpec {
    pub socket: Option<PathBuf>,
    pub pidfile: Option<PathBuf>,
    /// Absolute; defaults to `<logdir>/sup.log`.
    pub logfile: PathBuf,
    /// Absolute; defaults to `logs/` beside the config.
    pub logdir: PathBuf,
    pub loglevel: log::LevelFilter,
    /// `daemon.notify`: who hears about which events.
    pub notify: NotifySpec,
    /// `daemon.http`: the HTTP interface; `None` serves no HTTP at all.
    pub http: Option<HttpSpec>,
}

/// `daemon.http`, resolved: at least one address, and a token file whenever an address is not
/// loopback.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpSpec {
    pub listen: Vec<std::net::SocketAddr>,
    /// Absolute. When set, every endpoint but `/healthz` wants `Authorization: Bearer <token>`.
    pub token_file: Option<PathBuf>,
    /// `tls`: serve HTTPS on every listen address.
    pub tls: Option<TlsSpec>,
}

/// `daemon.http.tls`: the certificate chain and its private key, PEM files (absolute).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsSpec {
    pub cert: PathBuf,
    pub key: PathBuf,
}

/// The event kinds a notification can be asked for (`daemon.notify.events`).
pub const NOTIFY_EVENTS: &[&str] = &[
    "spawned",
    "spawn-failed",
    "running",
    "exited",
    "exited-unexpectedly",
    "backoff",
    "fatal",
    "stopping",
    "killed",
    "stopped",
    "skipped",
    "unhealthy",
    "waiting",
];

/// `daemon.notify`, resolved. With no channel set, nothing is sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NotifySpec {
    /// Names from `NOTIFY_EVENTS`, sorted.
    pub events: Vec<String>,
    pub email: Option<EmailSpec>,
    /// `fatal_state_report_address`: `host:port` that gets one JSON line per event.
    pub report: Option<String>,
    /// A command (split like `cmd`) run once per event.
    pub hook: Option<Vec<String>>,
    /// `listeners`: long-running children fed one JSON line per event on stdin.
    pub listeners: Vec<ListenerSpec>,
}

/// The event kinds a listener can ask for: every `NOTIFY_EVENTS` name, `exit` (every exit
/// the daemon did not ask for) and `health` (a health check's status turning healthy or
/// unhealthy).
pub const LISTENER_EVENTS: &[&str] = &["exit", "health"];

/// One entry of `daemon.notify.listeners`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListenerSpec {
    /// Split like a job's `cmd`.
    pub cmd: Vec<String>,
    /// Names from `NOTIFY_EVENTS` and `LISTENER_EVENTS`, sorted.
    pub events: Vec<String>,
}

impl Default for NotifySpec {
    fn default() -> NotifySpec {
        let mut events: Vec<String> = ["fatal", "exited-unexpectedly", "backoff"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        events.sort();
        NotifySpec {
            events,
            email: None,
            report: None,
            hook: None,
            listeners: Vec::new(),
        }
    }
}

/// `daemon.notify.email`: SMTP through lettre. Credentials are named, not written: the
/// sender reads the variables from its environment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EmailSpec {
    pub host: String,
    pub port: u16,
    pub starttls: bool,
    pub username_env: Option<String>,
    pub password_env: Option<String>,
    pub from: String,
    pub to: Vec<String>,
}

/// Where something was defined, for error messages naming both places of a duplicate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Origin {
    /// As the user would recognise it (relative to the working directory when possible).
    pub file: String,
    pub line: usize,
    pub col: usize,
}

impl std::fmt::Display for Origin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}:{}", self.file, self.line, self.col)
    }
}

/// A whole configuration, valid by construction.
#[derive(Debug, Clone)]
pub struct Config {
    /// The file or directory that was loaded, absolute.
    pub source: PathBuf,
    /// The folder "beside the config": relative paths in it resolve against this.
    pub base_dir: PathBuf,
    pub daemon: DaemonSpec,
    pub programs: BTreeMap<String, ProgramSpec>,
    /// `groups:`: group name → its programs, in the order written. Not part of any program's
    /// spec, so a reload that changes only groups restarts nothing.
    pub groups: BTreeMap<String, Vec<String>>,
    /// Where each program was defined. Not part of any comparison.
    pub origins: BTreeMap<String, Origin>,
    /// What `sup check` points out without refusing the config.
    pub warnings: Vec<super::ConfigError>,
}

impl Config {
    pub fn instance_count(&self) -> usize {
        self.programs.values().map(|p| p.numprocs as usize).sum()
    }
}
