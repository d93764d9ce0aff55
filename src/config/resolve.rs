//! From a YAML tree to the model: every job key and `daemon:` setting checked, every default
//! applied, every relative path made absolute against the folder beside the config. A job's
//! keys are declared in `keys::JOB` and read by `keys::read_map`; this file holds the `Sink`,
//! the helpers every map reader shares (unknown keys and their hints) and the `daemon:` map.
//!
//! Finding and reading files, `include:` and duplicate programs are `load`'s business; this
//! file sees one job (or one `daemon:` map) at a time and reports into a `Sink`, so that one
//! run finds every error rather than the first.

use std::path::{Path, PathBuf};

use super::error::ConfigError;
use super::keys;
use super::logkeys;
use super::spec::{DaemonSpec, ProgramSpec};
use super::values::{self, Bad, Read};
use super::yaml::{Kind, Node};

pub const DAEMON_KEYS: &[&str] = &[
    "socket", "pidfile", "logfile", "logdir", "loglevel",
    // ----- notifications -----
    "notify", // ----- the HTTP interface -----
    "http",
];

/// What supervisord and friends call our keys: too far apart for a typo, but worth a hint.
const FOREIGN_NAMES: &[(&str, &str)] = &[
    ("command", "cmd"),
    ("instances", "numprocs"),
    ("restart", "autorestart"),
    ("startsecs", "starttime"),
    ("stopwaitsecs", "stoptime"),
    ("stdout_logfile", "stdout"),
    ("stderr_logfile", "stderr"),
    ("environment", "env"),
    ("directory", "workingdir"),
    ("cwd", "workingdir"),
];

/// Errors collected over a whole load, each with where it sorts (file, line, column).
#[derive(Debug, Default)]
pub struct Sink {
    errors: Vec<((String, usize, usize), ConfigError)>,
    /// Not wrong, but likely to fail later (a `workingdir` that does not exist yet).
    warnings: Vec<((String, usize, usize), ConfigError)>,
}

impl Sink {
    pub fn len(&self) -> usize {
        self.errors.len()
    }

    /// `line` 0 means the whole file: the place is then the file alone.
    pub fn push(&mut self, file: &str, (line, col): (usize, usize), key: &str, bad: Bad) {
        let place = if line == 0 {
            file.to_string()
        } else {
            format!("{file}:{line}:{col}")
        };
        self.push_error(
            (file.to_string(), line, col),
            ConfigError {
                place,
                key: key.to_string(),
                message: bad.message,
                hint: bad.hint,
            },
        );
    }

    /// An error whose place is not a single spot (a program defined twice), sorted at `at`.
    pub fn push_error(&mut self, at: (String, usize, usize), error: ConfigError) {
        self.errors.push((at, error));
    }

    /// Sorted by file, then line, then column; ties keep the order they were found in.
    pub fn into_sorted(mut self) -> Vec<ConfigError> {
        self.errors.sort_by(|a, b| a.0.cmp(&b.0));
        self.errors.into_iter().map(|(_, e)| e).collect()
    }

    /// Every error and every warning, each sorted like `into_sorted`.
    pub fn into_rejected(mut self) -> super::error::Rejected {
        let warnings = self.take_warnings();
        super::error::Rejected {
            errors: self.into_sorted(),
            warnings,
        }
    }

    pub fn warn(&mut self, file: &str, (line, col): (usize, usize), key: &str, bad: Bad) {
        let error = ConfigError {
            place: format!("{file}:{line}:{col}"),
            key: key.to_string(),
            message: bad.message,
            hint: bad.hint,
        };
        self.warnings.push(((file.to_string(), line, col), error));
    }

    pub fn take_warnings(&mut self) -> Vec<ConfigError> {
        let mut warnings = std::mem::take(&mut self.warnings);
        warnings.sort_by(|a, b| a.0.cmp(&b.0));
        warnings.into_iter().map(|(_, e)| e).collect()
    }
}

/// Where a job's errors go and what its relative paths are relative to.
pub struct JobCtx<'a> {
    /// The file as shown in errors.
    pub file: &'a str,
    /// `programs.web`: the key path of the job itself.
    pub prefix: String,
    /// Where to report a key that is missing: the job's name in `programs:`, or the top of a
    /// `.job` file.
    pub at: (usize, usize),
    pub base_dir: &'a Path,
    pub logdir: &'a Path,
}

/// Report a reader's result at `node` under `key`, keeping the value when it was good.
pub(super) fn keep<T>(
    r: Read<T>,
    node: &Node,
    file: &str,
    key: &str,
    sink: &mut Sink,
) -> Option<T> {
    match r {
        Ok(v) => Some(v),
        Err(bad) => {
            let at = bad.at.unwrap_or((node.line, node.col));
            sink.push(file, at, key, bad);
            None
        }
    }
}

/// The entries of a map, or none for null (`web:` with nothing under it); `None` and an error
/// for anything else.
pub fn entries<'n>(
    node: &'n Node,
    what: &str,
    file: &str,
    key: &str,
    sink: &mut Sink,
) -> Option<&'n [(Node, Node)]> {
    match &node.kind {
        Kind::Map(e) => Some(e),
        Kind::Scalar(s) if s.is_null() => Some(&[]),
        _ => {
            let bad = Bad::new(format!("expected {what}, found {}", node.describe()));
            sink.push(file, (node.line, node.col), key, bad);
            None
        }
    }
}

/// A key's text, or an error for `[a]: 1` and the like.
pub fn key_text<'n>(key: &'n Node, file: &str, parent: &str, sink: &mut Sink) -> Option<&'n str> {
    match key.text() {
        Some(t) => Some(t),
        None => {
            let bad = Bad::new(format!("expected a key name, found {}", key.describe()));
            sink.push(file, (key.line, key.col), parent, bad);
            None
        }
    }
}

/// An unknown key, with the nearest known one as a hint (or the whole list when none is near).
pub fn unknown_key(
    key: &Node,
    name: &str,
    known: &[&str],
    file: &str,
    path: &str,
    sink: &mut Sink,
) {
    let near = FOREIGN_NAMES
        .iter()
        .find(|(foreign, _)| *foreign == name)
        .map(|&(_, ours)| ours)
        .filter(|ours| known.contains(ours))
        .or_else(|| values::suggest(name, known.iter().copied()));
    let hint = match near {
        Some(k) => format!("did you mean {k}?"),
        None => format!("the keys here are {}", known.join(", ")),
    };
    let bad = Bad {
        message: "unknown key".into(),
        hint: Some(hint),
        at: None,
    };
    sink.push(file, (key.line, key.col), path, bad);
}

/// Resolve one job with the job keys of `keys::JOB`. `None` when it had errors (all of them
/// are in `sink`).
pub fn job(name: &str, node: &Node, cx: &JobCtx, sink: &mut Sink) -> Option<ProgramSpec> {
    let before = sink.len();
    let entries = entries(node, "a map of job keys", cx.file, &cx.prefix, sink)?;
    let map = keys::Map {
        file: cx.file,
        prefix: &cx.prefix,
        at: cx.at,
        base_dir: cx.base_dir,
    };
    let mut draft = keys::Job::new(cx.logdir);
    keys::read_map(entries, keys::JOB, &mut draft, &map, sink);
    if sink.len() > before {
        return None;
    }
    draft.finish(name)
}

/// The `daemon:` map (or its absence). Always returns settings: with errors, the defaults fill
/// in so that programs can still be checked against a logdir.
pub fn daemon(node: Option<&Node>, file: &str, base_dir: &Path, sink: &mut Sink) -> DaemonSpec {
    let mut socket = None;
    let mut pidfile = None;
    let mut logfile = None;
    let mut logdir: Option<PathBuf> = None;
    let mut loglevel = None;
    let mut notify = None;
    let mut http = None;
    let found = node.and_then(|n| entries(n, "a map of daemon settings", file, "daemon", sink));
    for (k, v) in found.unwrap_or(&[]) {
        let Some(key) = key_text(k, file, "daemon", sink) else {
            continue;
        };
        let path = format!("daemon.{key}");
        let p = path.as_str();
        match key {
            "socket" => socket = keep(values::path(v, base_dir), v, file, p, sink),
            "pidfile" => pidfile = keep(values::path(v, base_dir), v, file, p, sink),
            "logfile" => logfile = keep(values::path(v, base_dir), v, file, p, sink),
            "logdir" => logdir = keep(values::path(v, base_dir), v, file, p, sink),
            "loglevel" => loglevel = keep(values::loglevel(v), v, file, p, sink),
            // ----- notifications -----
            "notify" => notify = logkeys::notify(v, file, sink),
            // ----- the HTTP interface -----
            "http" => http = super::httpkeys::http(v, file, base_dir, sink),
            _ => unknown_key(k, key, DAEMON_KEYS, file, p, sink),
        }
    }
    let logdir = logdir.unwrap_or_else(|| base_dir.join("logs"));
    DaemonSpec {
        socket,
        pidfile,
        logfile: logfile.unwrap_or_else(|| logdir.join("sup.log")),
        logdir,
        loglevel: loglevel.unwrap_or(log::LevelFilter::Info),
        notify: notify.unwrap_or_default(),
        http,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::spec::{AutoRestart, Output, Schedule, ScheduleOptions, Signal};
    use crate::config::yaml;
    use std::time::Duration;

    const BASE: &str = "/srv/app";

    fn run(src: &str) -> (Option<ProgramSpec>, Vec<String>) {
        let (root, errors) = yaml::parse(src);
        assert!(errors.is_empty(), "{errors:?}");
        let root = root.unwrap_or(Node {
            line: 1,
            col: 1,
            kind: Kind::Map(Vec::new()),
        });
        let mut sink = Sink::default();
        let base = Path::new(BASE);
        let logdir = base.join("logs");
        let cx = JobCtx {
            file: "web.job",
            prefix: "programs.web".into(),
            at: (1, 1),
            base_dir: base,
            logdir: &logdir,
        };
        let spec = job("web", &root, &cx, &mut sink);
        let errors = sink.into_sorted().iter().map(|e| e.to_string()).collect();
        (spec, errors)
    }

    fn ok(src: &str) -> ProgramSpec {
        let (spec, errors) = run(src);
        assert!(errors.is_empty(), "{errors:?}");
        spec.expect("a spec")
    }

    #[test]
    fn defaults() {
        let p = ok("cmd: sleep 1\n");
        assert_eq!(p.cmd, ["sleep", "1"]);
        assert_eq!(p.numprocs, 1);
        assert!(p.autostart);
        assert_eq!(p.autorestart, AutoRestart::Unexpected);
        assert_eq!(p.exitcodes, [0]);
        assert_eq!(p.startretries, 3);
        assert_eq!(p.starttime, Duration::from_secs(1));
        assert_eq!(p.stopsignal, Signal(15));
        assert_eq!(p.stoptime, Duration::from_secs(10));
        assert_eq!(p.stdout, Output::File("/srv/app/logs/{name}.out".into()));
        assert_eq!(p.stderr, Output::File("/srv/app/logs/{name}.err".into()));
        assert!(p.env.is_empty());
        assert_eq!(p.workingdir, None);
        assert_eq!(p.umask, None);
        assert_eq!(p.user, None);
        assert_eq!(p.schedule, None);
        assert_eq!(p.timezone, None);
    }

    #[test]
    fn every_key_set() {
        let p = ok(
            "cmd: [a, b c]\nnumprocs: 2\nautostart: false\nautorestart: always\n\
             exitcodes: [1, 0]\nstartretries: 0\nstarttime: 500ms\nstopsignal: USR1\n\
             stoptime: 2\nstdout: out/{name}.log\nstderr: ~\nenv: {A: 1, B: true}\n\
             workingdir: ./work\numask: 027\nuser: nobody\nschedule: every 5m\ntimezone: UTC\n",
        );
        assert_eq!(p.cmd, ["a", "b c"]);
        assert_eq!(p.numprocs, 2);
        assert!(!p.autostart);
        assert_eq!(p.autorestart, AutoRestart::Always);
        assert_eq!(p.exitcodes, [0, 1]);
        assert_eq!(p.startretries, 0);
        assert_eq!(p.starttime, Duration::from_millis(500));
        assert_eq!(p.stopsignal, Signal(10));
        assert_eq!(p.stoptime, Duration::from_secs(2));
        assert_eq!(p.stdout, Output::File("/srv/app/out/{name}.log".into()));
        assert_eq!(p.stderr, Output::Discard);
        assert_eq!(p.env["A"], "1");
        assert_eq!(p.env["B"], "true");
        assert_eq!(p.workingdir, Some(PathBuf::from("/srv/app/work")));
        assert_eq!(p.umask, Some(0o27));
        assert_eq!(p.user.as_deref(), Some("nobody"));
        assert_eq!(p.schedule, Some(Schedule::Every(Duration::from_secs(300))));
    }

    #[test]
    fn a_schedule_turns_autorestart_off_unless_asked() {
        assert_eq!(
            ok("cmd: x\nschedule: '@hourly'\n").autorestart,
            AutoRestart::Never
        );
        assert_eq!(
            ok("cmd: x\nschedule: '@hourly'\nautorestart: always\n").autorestart,
            AutoRestart::Always
        );
    }

    #[test]
    fn signal_target_defaults_to_the_group_and_names_its_words() {
        use crate::config::SignalTarget;
        assert_eq!(ok("cmd: x\n").signal_target, SignalTarget::Group);
        assert_eq!(
            ok("cmd: x\nsignal_target: main\n").signal_target,
            SignalTarget::Main
        );
        let (spec, errors) = run("cmd: x\nsignal_target: leader\n");
        assert!(spec.is_none());
        assert_eq!(
            errors,
            ["web.job:2:16: programs.web.signal_target: expected group or main, found \"leader\""]
        );
        let (_, errors) = run("cmd: x\nsignal_targets: main\n");
        assert!(errors[0].contains("signal_target"), "{errors:?}");
    }

    // --- scheduled jobs ---

    #[test]
    fn schedule_options_default_and_set() {
        let p = ok("cmd: x\nschedule: every 1m\n");
        assert_eq!(p.sched, ScheduleOptions::default());
        assert_eq!(p.sched.overlap, crate::config::Overlap::Skip);
        assert_eq!(p.sched.first_run, crate::config::FirstRun::AfterInterval);
        assert_eq!(p.sched.catchup, crate::config::Catchup::None);
        let p = ok(
            "cmd: x\nschedule: every 1m\njitter: 10s\nfirst_run: now\noverlap: kill\n\
             catchup: once\n",
        );
        assert_eq!(p.sched.jitter, Duration::from_secs(10));
        assert_eq!(p.sched.first_run, crate::config::FirstRun::Now);
        assert_eq!(p.sched.overlap, crate::config::Overlap::Kill);
        assert_eq!(p.sched.catchup, crate::config::Catchup::Once);
    }

    #[test]
    fn schedule_options_are_checked() {
        let (spec, errors) = run(
            "cmd: x\nschedule: every 1m\njitter: soon\nfirst_run: later\noverlap: stack\n\
             catchup: all\n",
        );
        assert!(spec.is_none());
        assert_eq!(errors.len(), 4, "{errors:?}");
        assert!(errors[0].starts_with("web.job:3:9: programs.web.jitter: expected"));
        assert_eq!(
            errors[1],
            "web.job:4:12: programs.web.first_run: expected now or after-interval, found \"later\""
        );
        assert_eq!(
            errors[2],
            "web.job:5:10: programs.web.overlap: expected skip, queue or kill, found \"stack\""
        );
        assert_eq!(
            errors[3],
            "web.job:6:10: programs.web.catchup: expected none or once, found \"all\""
        );
    }

    #[test]
    fn schedule_options_need_a_schedule_and_jitter_fits_the_interval() {
        let (_, errors) = run("cmd: x\noverlap: queue\n");
        assert_eq!(
            errors,
            [
                "web.job:2:1: programs.web.overlap: only applies to a job with schedule\n  \
              hint: add `schedule: every 5m` (or a cron expression), or remove it"
            ]
        );
        let (_, errors) = run("cmd: x\nschedule: every 10s\njitter: 10s\n");
        assert_eq!(
            errors,
            ["web.job:3:1: programs.web.jitter: must be shorter than the interval (10s), found 10s"]
        );
        // A cron schedule takes any jitter.
        ok("cmd: x\nschedule: '@hourly'\njitter: 2h\n");
    }

    // --- end of scheduled jobs ---

    #[test]
    fn critical_inherit_and_prefix() {
        let p = ok("cmd: x\n");
        assert!(!p.critical && !p.logs.prefix);
        let p = ok("cmd: x\ncritical: true\nstdout: inherit\nstderr: inherit\nprefix: true\n");
        assert!(p.critical && p.logs.prefix);
        assert_eq!((p.stdout, p.stderr), (Output::Inherit, Output::Inherit));
        ok("cmd: x\nstderr: inherit\nprefix: true\n");
        let (_, errors) = run("cmd: x\nprefix: true\n");
        assert_eq!(
            errors,
            [
                "web.job:2:1: programs.web.prefix: only applies to an inherited stream\n  \
              hint: add `stdout: inherit` (or `stderr: inherit`), or remove it"
            ]
        );
        let (_, errors) = run("cmd: x\ncritical: maybe\n");
        assert_eq!(errors.len(), 1, "{errors:?}");
    }

    // --- readiness, health, dependencies and limits ---

    #[test]
    fn health_keys_default_and_set() {
        let p = ok("cmd: x\n");
        assert_eq!(p.health, crate::config::spec::HealthSpec::default());
        assert_eq!(p.health.ready_timeout, Duration::from_secs(90));
        let p = ok(
            "cmd: x\nready: notify\nready_timeout: 5s\nwatchdog: 30s\ndepends_on: [db, cache]\n\
             healthcheck:\n  http: http://127.0.0.1:8080/health\n  interval: 2s\n  timeout: 1s\n  \
             retries: 2\n  start_period: 10s\n  on_unhealthy: notify\n\
             limits: {nofile: 1024, nproc: 64, core: 0, memory: 1G, cpu: 1m}\n\
             max_memory: 500M\nmax_cpu: 90%\nfor: 10s\n",
        );
        let h = &p.health;
        assert_eq!(h.ready, crate::config::Ready::Notify);
        assert_eq!(h.ready_timeout, Duration::from_secs(5));
        assert_eq!(h.watchdog, Some(Duration::from_secs(30)));
        let deps: Vec<&str> = h.depends_on.iter().map(|d| d.program.as_str()).collect();
        assert_eq!(deps, ["cache", "db"]);
        let c = h.healthcheck.as_ref().expect("a healthcheck");
        assert!(matches!(&c.probe, crate::config::Probe::Http { path, .. } if path == "/health"));
        assert_eq!(c.interval, Duration::from_secs(2));
        assert_eq!(c.timeout, Duration::from_secs(1));
        assert_eq!(c.retries, 2);
        assert_eq!(c.start_period, Duration::from_secs(10));
        assert_eq!(c.on_unhealthy, crate::config::OnUnhealthy::Notify);
        assert_eq!(h.limits.nofile, Some(1024));
        assert_eq!(h.limits.nproc, Some(64));
        assert_eq!(h.limits.core, Some(0));
        assert_eq!(h.limits.memory, Some(1 << 30));
        assert_eq!(h.limits.cpu, Some(60));
        let w = h.watch.expect("a watch rule");
        assert_eq!(w.max_memory, Some(500 << 20));
        assert_eq!(w.max_cpu, Some(90));
        assert_eq!(w.sustained, Duration::from_secs(10));
        let c = ok("cmd: x\nhealthcheck: {cmd: [check, -q]}\n")
            .health
            .healthcheck;
        let c = c.expect("a healthcheck");
        assert_eq!(
            c.probe,
            crate::config::Probe::Cmd(vec!["check".into(), "-q".into()])
        );
        assert_eq!(
            (c.interval, c.timeout, c.retries),
            (Duration::from_secs(10), Duration::from_secs(5), 3)
        );
        assert_eq!(c.on_unhealthy, crate::config::OnUnhealthy::Restart);
        assert_eq!(
            ok("cmd: x\nready: fd:4\n").health.ready,
            crate::config::Ready::Fd(4)
        );
    }

    #[test]
    fn health_keys_are_checked() {
        let (spec, errors) = run(
            "cmd: x\nready: soon\nwatchdog: 30s\nhealthcheck: {interval: 1s}\n\
             limits: {nofile: many, stack: 1}\nmax_cpu: lots\nfor: 5s\n",
        );
        assert!(spec.is_none());
        assert_eq!(errors.len(), 7, "{errors:#?}");
        assert!(
            errors[0].starts_with("web.job:2:8: programs.web.ready: expected starttime, notify")
        );
        assert!(errors[1]
            .starts_with("web.job:3:1: programs.web.watchdog: only applies with ready: notify"));
        assert!(errors[2].starts_with("web.job:4:15: programs.web.healthcheck: missing the probe"));
        assert!(
            errors[3].starts_with("web.job:5:18: programs.web.limits.nofile: expected a number")
        );
        assert!(errors[4].starts_with("web.job:5:24: programs.web.limits.stack: unknown key"));
        assert!(errors[5].starts_with("web.job:6:10: programs.web.max_cpu: expected a percentage"));
        assert!(
            errors[6].starts_with("web.job:7:1: programs.web.for: only applies with max_memory")
        );
        let (_, errors) = run("cmd: x\nready: health\n");
        assert!(
            errors[0].contains("ready: health needs a healthcheck"),
            "{errors:?}"
        );
        let (_, errors) = run("cmd: x\nhealthcheck: {tcp: '127.0.0.1:1', cmd: true}\n");
        assert!(errors[0].contains("one probe"), "{errors:?}");
    }

    // --- end of readiness, health, dependencies and limits ---

    #[test]
    fn every_error_in_a_job_is_reported_in_order() {
        let (spec, errors) =
            run("numprocs: 0\nstopsignal: NOPE\nnumproc: 2\nenv:\n  1X: a\n  OK: [1]\n");
        assert!(spec.is_none());
        assert_eq!(
            errors,
            [
                "web.job:1:1: programs.web: missing cmd: the command to run, as a string or a \
                 list of words",
                "web.job:1:11: programs.web.numprocs: must be at least 1, found 0",
                "web.job:2:13: programs.web.stopsignal: expected a signal name such as TERM, \
                 INT, QUIT, HUP, KILL, USR1, or its number, found \"NOPE\"",
                "web.job:3:1: programs.web.numproc: unknown key\n  hint: did you mean numprocs?",
                "web.job:5:3: programs.web.env: expected a variable name of letters, digits \
                 and _, not starting with a digit, found \"1X\"",
                "web.job:6:7: programs.web.env.OK: expected a string, number or bool (write \
                 \"\" for empty), found a list",
            ]
        );
    }

    #[test]
    fn foreign_key_names_get_our_name_as_a_hint() {
        let (_, errors) = run("cmd: x\ncommand: y\nbanana: 1\n");
        assert_eq!(
            errors,
            [
                "web.job:2:1: programs.web.command: unknown key\n  hint: did you mean cmd?",
                format!(
                    "web.job:3:1: programs.web.banana: unknown key\n  hint: the keys here are {}",
                    keys::names(keys::JOB).join(", ")
                )
                .as_str(),
            ]
        );
    }

    #[test]
    fn a_job_that_is_not_a_map() {
        let (spec, errors) = run("[a, b]\n");
        assert!(spec.is_none());
        assert_eq!(
            errors,
            ["web.job:1:1: programs.web: expected a map of job keys, found a list"]
        );
    }

    #[test]
    fn daemon_defaults_and_settings() {
        let base = Path::new(BASE);
        let mut sink = Sink::default();
        let d = daemon(None, "sup.yaml", base, &mut sink);
        assert_eq!(d.logdir, PathBuf::from("/srv/app/logs"));
        assert_eq!(d.logfile, PathBuf::from("/srv/app/logs/sup.log"));
        assert_eq!(d.socket, None);
        assert_eq!(d.pidfile, None);
        assert_eq!(d.loglevel, log::LevelFilter::Info);

        let (root, _) = yaml::parse(
            "socket: run/sup.sock\npidfile: /run/sup.pid\nlogdir: /var/log/sup\nloglevel: debug\n",
        );
        let d = daemon(root.as_ref(), "sup.yaml", base, &mut sink);
        assert_eq!(d.socket, Some(PathBuf::from("/srv/app/run/sup.sock")));
        assert_eq!(d.pidfile, Some(PathBuf::from("/run/sup.pid")));
        assert_eq!(d.logfile, PathBuf::from("/var/log/sup/sup.log"));
        assert_eq!(d.loglevel, log::LevelFilter::Debug);

        let (root, _) = yaml::parse("logfile: ev.log\nloglevel: loud\nsockett: x\n");
        let d = daemon(root.as_ref(), "sup.yaml", base, &mut sink);
        assert_eq!(d.logfile, PathBuf::from("/srv/app/ev.log"));
        let errors: Vec<String> = sink.into_sorted().iter().map(|e| e.to_string()).collect();
        assert_eq!(
            errors,
            [
                "sup.yaml:2:11: daemon.loglevel: expected error, warn, info, debug or trace, \
                 found \"loud\"",
                "sup.yaml:3:1: daemon.sockett: unknown key\n  hint: did you mean socket?",
            ]
        );
    }

    #[test]
    fn daemon_http() {
        let base = Path::new(BASE);
        let read = |src: &str| {
            let (root, _) = yaml::parse(src);
            let mut sink = Sink::default();
            let d = daemon(root.as_ref(), "sup.yaml", base, &mut sink);
            let errors: Vec<String> = sink.into_sorted().iter().map(|e| e.to_string()).collect();
            (d.http, errors)
        };
        let (http, errors) = read("logdir: x\n");
        assert_eq!((http, errors.len()), (None, 0));

        let (http, errors) = read("http:\n  listen: \"127.0.0.1:9273\"\n");
        assert!(errors.is_empty(), "{errors:?}");
        let http = http.expect("http");
        assert_eq!(http.listen, ["127.0.0.1:9273".parse().expect("addr")]);
        assert_eq!(http.token_file, None);

        let (http, errors) =
            read("http:\n  listen: [\"[::1]:9273\", 0.0.0.0:80]\n  token_file: etc/token\n");
        assert!(errors.is_empty(), "{errors:?}");
        let http = http.expect("http");
        assert_eq!(http.listen.len(), 2);
        assert_eq!(http.token_file, Some(PathBuf::from("/srv/app/etc/token")));

        let (http, errors) = read("http:\n  listen: [127.0.0.1:1, 0.0.0.0:9273]\n");
        assert_eq!(http, None);
        assert_eq!(
            errors,
            [
                "sup.yaml:2:25: daemon.http.listen: 0.0.0.0:9273 is not a loopback address: a \
              `token_file` is required to listen on it\n  hint: set daemon.http.token_file, or \
              listen on 127.0.0.1 or [::1]"
            ]
        );

        let (_, errors) = read("http:\n  listen: localhost:80\n  tokenfile: x\n");
        assert_eq!(errors.len(), 2, "{errors:?}");
        assert!(errors[0].starts_with("sup.yaml:2:11: daemon.http.listen: expected an IP"));
        assert!(errors[1].contains("did you mean token_file?"), "{errors:?}");

        // tls: both files, relative to the config; each required; no other key.
        let (http, errors) =
            read("http:\n  listen: 127.0.0.1:1\n  tls: {cert: c.pem, key: /etc/k.pem}\n");
        assert!(errors.is_empty(), "{errors:?}");
        let tls = http.and_then(|h| h.tls).expect("tls");
        assert_eq!(
            (tls.cert, tls.key),
            (PathBuf::from("/srv/app/c.pem"), PathBuf::from("/etc/k.pem"))
        );
        let (http, errors) = read("http:\n  listen: 127.0.0.1:1\n  tls:\n    cert: c.pem\n");
        assert_eq!(http, None);
        assert_eq!(errors.len(), 1, "{errors:?}");
        assert!(
            errors[0].starts_with("sup.yaml:4:5: daemon.http.tls: `key` is required"),
            "{errors:?}"
        );
        let (_, errors) =
            read("http:\n  listen: 127.0.0.1:1\n  tls: {cert: c, key: k, certs: x}\n");
        assert!(
            errors
                .iter()
                .any(|e| e.contains("daemon.http.tls.certs: unknown key")),
            "{errors:?}"
        );

        let (root, _) = yaml::parse("http:\n  listen: 0.0.0.0:1\n  token_file: /nonexistent/t\n");
        let mut sink = Sink::default();
        let d = daemon(root.as_ref(), "sup.yaml", base, &mut sink);
        assert!(d.http.is_some());
        let warnings: Vec<String> = sink.take_warnings().iter().map(|e| e.to_string()).collect();
        assert_eq!(warnings.len(), 1, "{warnings:?}");
        assert!(
            warnings[0].starts_with(
                "sup.yaml:3:15: daemon.http.token_file: /nonexistent/t cannot be read: "
            ),
            "{warnings:?}"
        );

        let (_, errors) = read("http:\n  token_file: /t\n");
        assert!(errors[0].contains("`listen` is required"), "{errors:?}");
    }
}
