//! One declaration per key. Each key a map of the config accepts is a `Key`: its name, how its
//! value is read, what a job gets without it, its README text, and the rule it has with other
//! keys. Reading a map (`read_map`), the unknown-key errors and their "did you mean" hints, and
//! the README's key tables all come from these tables (a test holds the README to them).
//!
//! A job's keys are `JOB`: the general and scheduling keys here, the readiness, health and
//! limits keys in `health`, the log keys in `logkeys`. Each is read into a `Job` draft, which
//! becomes the `ProgramSpec`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::health;
use super::logkeys;
use super::resolve::{keep, key_text, unknown_key, Sink};
use super::spec::{
    AutoRestart, CgroupLimits, LogSpec, Output, ProgramSpec, Schedule, ScheduleOptions, Signal,
    SignalTarget,
};
use super::values::{self, Bad, Read};
use super::yaml::Node;

/// One key of a map.
pub struct Key<D: 'static> {
    pub name: &'static str,
    /// Reads the value written under the key into the draft; errors go to the sink.
    pub read: fn(&mut D, &Value, &mut Sink),
    /// What the draft gets when the key is not written.
    pub default: IfAbsent<D>,
    /// The README's description of the value (only the README test reads it).
    #[cfg_attr(not(test), allow(dead_code))]
    pub doc: &'static str,
    /// A rule with other keys, checked once the whole map is read, when the key was written;
    /// an error is reported at the key.
    pub check: Option<fn(&D, &Written) -> Option<Bad>>,
}

/// A key's default. The text is the README's default cell (only the README test reads it).
#[cfg_attr(not(test), allow(dead_code))]
pub enum IfAbsent<D: 'static> {
    /// The key must be written: the message when it is not (the README says `required`).
    Required(&'static str),
    /// This value, as the README writes it in backquotes (a test reads that text through the
    /// key and expects what `set` gives).
    Value(&'static str, fn(&mut D)),
    /// A value that depends on other keys or on the daemon's settings.
    Computed(&'static str, fn(&mut D)),
    /// Nothing is set; the text says what happens then.
    Unset(&'static str),
}

#[cfg(test)]
impl<D> IfAbsent<D> {
    /// The README's default cell.
    pub fn text(&self) -> &'static str {
        match self {
            IfAbsent::Required(_) => "required",
            IfAbsent::Value(t, _) | IfAbsent::Computed(t, _) | IfAbsent::Unset(t) => t,
        }
    }
}

/// One value being read: where it is and what relative paths start from.
pub struct Value<'a> {
    /// The key as written.
    pub key: &'a Node,
    pub node: &'a Node,
    /// The file as shown in errors.
    pub file: &'a str,
    /// The key path for errors: `programs.web.numprocs`.
    pub path: &'a str,
    pub base_dir: &'a Path,
}

impl Value<'_> {
    /// A reader's result, reported at the value when it is an error.
    pub fn keep<T>(&self, r: Read<T>, sink: &mut Sink) -> Option<T> {
        keep(r, self.node, self.file, self.path, sink)
    }
}

/// A map being read with a table of keys.
pub struct Map<'a> {
    pub file: &'a str,
    /// The key path of the map itself: `programs.web`.
    pub prefix: &'a str,
    /// Where a required key that is missing is reported.
    pub at: (usize, usize),
    pub base_dir: &'a Path,
}

/// The keys written in a map, with where each key was written.
#[derive(Debug, Default)]
pub struct Written(BTreeMap<&'static str, (usize, usize)>);

impl Written {
    pub fn has(&self, name: &str) -> bool {
        self.0.contains_key(name)
    }
}

/// The names of a table's keys, in order.
pub fn names<D>(groups: &[&'static [Key<D>]]) -> Vec<&'static str> {
    groups
        .iter()
        .flat_map(|g| g.iter())
        .map(|k| k.name)
        .collect()
}

/// Read a map's entries with `groups` (one table, in parts): every key written is read into
/// `draft` and an unknown one is reported with a hint. Then each key not written gets its
/// default (a required one is reported at `map.at`), and each key written has its check.
pub fn read_map<D>(
    entries: &[(Node, Node)],
    groups: &[&'static [Key<D>]],
    draft: &mut D,
    map: &Map,
    sink: &mut Sink,
) -> Written {
    let keys = || groups.iter().flat_map(|g| g.iter());
    let mut written = Written::default();
    for (k, v) in entries {
        let Some(name) = key_text(k, map.file, map.prefix, sink) else {
            continue;
        };
        let path = format!("{}.{name}", map.prefix);
        let Some(key) = keys().find(|key| key.name == name) else {
            unknown_key(k, name, &names(groups), map.file, &path, sink);
            continue;
        };
        written.0.insert(key.name, (k.line, k.col));
        let value = Value {
            key: k,
            node: v,
            file: map.file,
            path: &path,
            base_dir: map.base_dir,
        };
        (key.read)(draft, &value, sink);
    }
    for key in keys().filter(|key| !written.has(key.name)) {
        match key.default {
            IfAbsent::Required(message) => {
                sink.push(map.file, map.at, map.prefix, Bad::new(message));
            }
            IfAbsent::Value(_, set) | IfAbsent::Computed(_, set) => set(draft),
            IfAbsent::Unset(_) => {}
        }
    }
    for key in keys() {
        let (Some(check), Some(&at)) = (key.check, written.0.get(key.name)) else {
            continue;
        };
        if let Some(bad) = check(draft, &written) {
            let path = format!("{}.{}", map.prefix, key.name);
            sink.push(map.file, at, &path, bad);
        }
    }
    written
}

/// Every key a job accepts, in the order unknown-key hints list them.
pub const JOB: &[&[Key<Job>]] = &[GENERAL, SCHEDULED, health::KEYS, logkeys::KEYS, CGROUP];

/// A job as it is read: each key's value, or its default once the map is read.
#[derive(Debug, PartialEq)]
pub struct Job {
    /// Where default output files go (`daemon.logdir`).
    pub logdir: PathBuf,
    pub cmd: Option<Vec<String>>,
    pub numprocs: Option<u32>,
    pub autostart: Option<bool>,
    pub autorestart: Option<AutoRestart>,
    pub exitcodes: Option<Vec<i32>>,
    pub startretries: Option<u32>,
    pub starttime: Option<Duration>,
    pub stopsignal: Option<Signal>,
    pub stoptime: Option<Duration>,
    pub signal_target: Option<SignalTarget>,
    pub stdout: Option<Output>,
    pub stderr: Option<Output>,
    pub env: BTreeMap<String, String>,
    /// What `env_file` holds; `env` wins over it in `finish`.
    pub env_file: BTreeMap<String, String>,
    pub workingdir: Option<PathBuf>,
    pub umask: Option<u32>,
    pub user: Option<String>,
    pub schedule: Option<Schedule>,
    pub timezone: Option<String>,
    pub sched: ScheduleOptions,
    pub health: health::Partial,
    pub logs: LogSpec,
    pub cgroup: CgroupLimits,
    pub critical: Option<bool>,
}

impl Job {
    pub fn new(logdir: &Path) -> Job {
        Job {
            logdir: logdir.to_path_buf(),
            cmd: None,
            numprocs: None,
            autostart: None,
            autorestart: None,
            exitcodes: None,
            startretries: None,
            starttime: None,
            stopsignal: None,
            stoptime: None,
            signal_target: None,
            stdout: None,
            stderr: None,
            env: BTreeMap::new(),
            env_file: BTreeMap::new(),
            workingdir: None,
            umask: None,
            user: None,
            schedule: None,
            timezone: None,
            sched: ScheduleOptions::default(),
            health: health::Partial::default(),
            logs: LogSpec::default(),
            cgroup: CgroupLimits::default(),
            critical: None,
        }
    }

    /// The program, once `read_map` gave every key its value or default (`None` only if a
    /// key was left without either, which the tests rule out).
    pub fn finish(self, name: &str) -> Option<ProgramSpec> {
        Some(ProgramSpec {
            name: name.to_string(),
            cmd: self.cmd?,
            numprocs: self.numprocs?,
            autostart: self.autostart?,
            autorestart: self.autorestart?,
            exitcodes: self.exitcodes?,
            startretries: self.startretries?,
            starttime: self.starttime?,
            stopsignal: self.stopsignal?,
            stoptime: self.stoptime?,
            signal_target: self.signal_target?,
            stdout: self.stdout?,
            stderr: self.stderr?,
            env: {
                let mut env = self.env_file;
                env.extend(self.env);
                env
            },
            workingdir: self.workingdir,
            umask: self.umask,
            user: self.user,
            schedule: self.schedule,
            timezone: self.timezone,
            sched: self.sched,
            health: health::finish(self.health),
            logs: self.logs,
            cgroup: self.cgroup,
            critical: self.critical?,
        })
    }
}

fn env(j: &mut Job, v: &Value, sink: &mut Sink) {
    let Some(vars) = v.keep(values::env_entries(v.node), sink) else {
        return;
    };
    for (ek, ev) in vars {
        let Some(var) = keep(values::env_name(ek), ek, v.file, v.path, sink) else {
            continue;
        };
        let var_path = format!("{}.{var}", v.path);
        if let Some(value) = keep(values::env_value(ev), ev, v.file, &var_path, sink) {
            j.env.insert(var, value);
        }
    }
}

/// The most an `env_file` may hold: it is read at every load, on the daemon's thread.
const MAX_ENV_FILE: u64 = 1 << 20;

/// `env_file: PATH`: read now (at every load, so `sup reload` sees a changed file as a changed
/// `env`), as a regular file of at most `MAX_ENV_FILE` bytes; a FIFO is refused without
/// blocking the open. Each bad line is an error at `PATH:LINE`.
fn env_file(j: &mut Job, v: &Value, sink: &mut Sink) {
    let Some(path) = v.keep(values::path(v.node, v.base_dir), sink) else {
        return;
    };
    let at = (v.node.line, v.node.col);
    let text = match read_env_file(&path) {
        Ok(t) => t,
        Err(why) => {
            let bad = Bad::new(format!("unable to read {}: {why}", path.display()));
            sink.push(v.file, at, v.path, bad);
            return;
        }
    };
    let (vars, errors) = super::dotenv::parse(&text);
    let shown = path.display().to_string();
    for (line, message) in errors {
        sink.push(&shown, (line, 1), v.path, Bad::new(message));
    }
    j.env_file.extend(vars);
}

fn read_env_file(path: &Path) -> Result<String, String> {
    use std::io::Read;
    use std::os::unix::fs::OpenOptionsExt;
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(nix::fcntl::OFlag::O_NONBLOCK.bits())
        .open(path)
        .map_err(|e| super::load::io_reason(&e))?;
    let meta = file.metadata().map_err(|e| super::load::io_reason(&e))?;
    if !meta.is_file() {
        return Err("not a regular file".into());
    }
    let mut bytes = Vec::new();
    file.take(MAX_ENV_FILE + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| super::load::io_reason(&e))?;
    if bytes.len() as u64 > MAX_ENV_FILE {
        return Err(format!("longer than {} KiB", MAX_ENV_FILE >> 10));
    }
    String::from_utf8(bytes).map_err(|_| "not UTF-8 text".into())
}

fn workingdir(j: &mut Job, v: &Value, sink: &mut Sink) {
    j.workingdir = v.keep(values::path(v.node, v.base_dir), sink);
    if let Some(Err(bad)) = j.workingdir.as_deref().map(values::existing_dir) {
        sink.warn(v.file, (v.node.line, v.node.col), v.path, bad);
    }
}

/// The keys of every job.
pub const GENERAL: &[Key<Job>] = &[
    Key {
        name: "cmd",
        read: |j, v, sink| j.cmd = v.keep(values::cmd(v.node), sink),
        default: IfAbsent::Required(
            "missing cmd: the command to run, as a string or a list of words",
        ),
        doc: "a string split like a POSIX shell splits words (quotes honoured, no expansion), \
              or a list of strings; never empty",
        check: None,
    },
    Key {
        name: "numprocs",
        read: |j, v, sink| j.numprocs = v.keep(values::numprocs(v.node), sink),
        default: IfAbsent::Value("`1`", |j| j.numprocs = Some(1)),
        doc: "integer from 1 to 100000; instances are `NAME:0` … `NAME:N-1`, or just `NAME` \
              when 1",
        check: None,
    },
    Key {
        name: "autostart",
        read: |j, v, sink| j.autostart = v.keep(values::boolean(v.node), sink),
        default: IfAbsent::Value("`true`", |j| j.autostart = Some(true)),
        doc: "bool",
        check: None,
    },
    Key {
        name: "autorestart",
        read: |j, v, sink| j.autorestart = v.keep(values::autorestart(v.node), sink),
        // A scheduled job runs once per tick; keeping it alive would defeat the schedule.
        default: IfAbsent::Computed("`unexpected` (`never` for scheduled jobs)", |j| {
            j.autorestart = Some(if j.schedule.is_some() {
                AutoRestart::Never
            } else {
                AutoRestart::Unexpected
            })
        }),
        doc: "`always`, `never`, `unexpected` (also `true`, `false`, `on-failure`)",
        check: None,
    },
    Key {
        name: "exitcodes",
        read: |j, v, sink| j.exitcodes = v.keep(values::exitcodes(v.node), sink),
        default: IfAbsent::Value("`[0]`", |j| j.exitcodes = Some(vec![0])),
        doc: "an integer or a list of integers (0–255): the expected exit codes",
        check: None,
    },
    Key {
        name: "startretries",
        read: |j, v, sink| j.startretries = v.keep(values::count(v.node, 0), sink),
        default: IfAbsent::Value("`3`", |j| j.startretries = Some(3)),
        doc: "integer ≥ 0: failed starts allowed before `fatal`",
        check: None,
    },
    Key {
        name: "starttime",
        read: |j, v, sink| j.starttime = v.keep(values::duration(v.node), sink),
        default: IfAbsent::Value("`1s`", |j| j.starttime = Some(Duration::from_secs(1))),
        doc: "duration it must stay up to count as started",
        check: None,
    },
    Key {
        name: "stopsignal",
        read: |j, v, sink| j.stopsignal = v.keep(values::signal(v.node), sink),
        default: IfAbsent::Value("`TERM`", |j| j.stopsignal = Some(Signal(15))),
        doc: "signal name with or without `SIG` (`TERM`, `SIGUSR1`, `INT`, …) or number",
        check: None,
    },
    Key {
        name: "stoptime",
        read: |j, v, sink| j.stoptime = v.keep(values::duration(v.node), sink),
        default: IfAbsent::Value("`10s`", |j| j.stoptime = Some(Duration::from_secs(10))),
        doc: "duration between `stopsignal` and `SIGKILL`",
        check: None,
    },
    Key {
        name: "signal_target",
        read: |j, v, sink| j.signal_target = v.keep(values::signal_target(v.node), sink),
        default: IfAbsent::Value("`group`", |j| j.signal_target = Some(SignalTarget::Group)),
        doc: "`group` or `main`: whom `sup signal` reaches unless it says `--main` or `--group` \
              (the leader alone, for a master that retires its own workers); stopping always \
              signals the group",
        check: None,
    },
    Key {
        name: "critical",
        read: |j, v, sink| j.critical = v.keep(values::boolean(v.node), sink),
        default: IfAbsent::Value("`false`", |j| j.critical = Some(false)),
        doc: "bool: when it ends for good (exits and is not restarted, or goes `fatal`) the \
              daemon stops every job and exits with its exit code (128 + the signal when \
              killed, 1 when fatal without one)",
        check: None,
    },
    Key {
        name: "stdout",
        read: |j, v, sink| j.stdout = v.keep(values::output(v.node, v.base_dir), sink),
        default: IfAbsent::Computed("`<logdir>/{name}.out`", |j| {
            j.stdout = Some(Output::File(j.logdir.join("{name}.out")))
        }),
        doc: "a file (appended, created 0640; `{name}` is the instance name), \
              `null`/`discard`, or `inherit`: the daemon's own stdout",
        check: None,
    },
    Key {
        name: "stderr",
        read: |j, v, sink| j.stderr = v.keep(values::output(v.node, v.base_dir), sink),
        default: IfAbsent::Computed("`<logdir>/{name}.err`", |j| {
            j.stderr = Some(Output::File(j.logdir.join("{name}.err")))
        }),
        doc: "like `stdout`; `inherit` is the daemon's own stderr",
        check: None,
    },
    Key {
        name: "env",
        read: env,
        default: IfAbsent::Unset("none"),
        doc: "map added to the daemon's environment; numbers and bools become strings",
        check: None,
    },
    Key {
        name: "env_file",
        read: env_file,
        default: IfAbsent::Unset("none"),
        doc: "a dotenv file (relative to the config's folder), read at each load: \
              `KEY=value`, `export KEY=value`, `'…'` as written, `\"…\"` with `\\n` `\\t` \
              `\\\"` `\\\\` `\\$` escapes, `#` comments; nothing is expanded; `env` wins",
        check: None,
    },
    Key {
        name: "workingdir",
        read: workingdir,
        default: IfAbsent::Unset("the daemon's"),
        doc: "directory to run in",
        check: None,
    },
    Key {
        name: "umask",
        read: |j, v, sink| j.umask = v.keep(values::umask(v.node), sink),
        default: IfAbsent::Unset("inherited"),
        doc: "octal digits, quoted or not: `022`, `\"022\"`, `77`, `0o077` all read as octal",
        check: None,
    },
    Key {
        name: "user",
        read: |j, v, sink| j.user = v.keep(values::user(v.node).and_then(values::known_user), sink),
        default: IfAbsent::Unset("the daemon's"),
        doc: "user name or uid (the daemon must be root); HOME, USER, LOGNAME and SHELL come \
              from its passwd entry (`env` still wins)",
        check: None,
    },
    Key {
        name: "schedule",
        read: |j, v, sink| j.schedule = v.keep(values::schedule(v.node), sink),
        default: IfAbsent::Unset("none"),
        doc: "`every DURATION`, a 5-field cron expression, or `@hourly`, `@daily`, `@weekly`, \
              `@monthly`, `@yearly`",
        check: None,
    },
    Key {
        name: "timezone",
        read: |j, v, sink| j.timezone = v.keep(values::timezone(v.node), sink),
        default: IfAbsent::Unset("the daemon's"),
        doc: "IANA zone for cron schedules (`Europe/Paris`)",
        check: None,
    },
];

/// The cgroup limits of each instance (README "cgroups"): applied where the host has the
/// controller, a warning in the event log where it has not.
pub const CGROUP: &[Key<Job>] = &[
    Key {
        name: "memory_max",
        read: |j, v, sink| j.cgroup.memory_max = v.keep(health::size(v.node), sink),
        default: IfAbsent::Unset("none"),
        doc: "a size (`256M`): the cgroup's memory limit; above it the kernel's OOM killer \
              ends the job (`oom` in status)",
        check: None,
    },
    Key {
        name: "cpu_max",
        read: |j, v, sink| j.cgroup.cpu_max = v.keep(values::cpu_max(v.node), sink),
        default: IfAbsent::Unset("none"),
        doc: "`50%` of one CPU or `1.5` CPUs: the cgroup's CPU quota per 100 ms",
        check: None,
    },
    Key {
        name: "pids_max",
        read: |j, v, sink| j.cgroup.pids_max = v.keep(values::pids_max(v.node), sink),
        default: IfAbsent::Unset("none"),
        doc: "an integer ≥ 1: at most this many processes and threads in the cgroup",
        check: None,
    },
];

/// The keys that only mean something with `schedule`.
pub const SCHEDULED: &[Key<Job>] = &[
    Key {
        name: "jitter",
        read: |j, v, sink| {
            if let Some(d) = v.keep(values::duration(v.node), sink) {
                j.sched.jitter = d;
            }
        },
        default: IfAbsent::Value("`0`", |j| j.sched.jitter = Duration::ZERO),
        doc: "duration: each tick is delayed by a random amount up to it (shorter than an \
              `every` interval)",
        // As long as the interval, ticks could swap order.
        check: Some(|j, written| {
            needs_schedule(j, written).or_else(|| match &j.schedule {
                Some(Schedule::Every(every)) if j.sched.jitter >= *every => {
                    Some(Bad::new(format!(
                        "must be shorter than the interval ({}), found {}",
                        crate::core::event::human(*every),
                        crate::core::event::human(j.sched.jitter)
                    )))
                }
                _ => None,
            })
        }),
    },
    Key {
        name: "first_run",
        read: |j, v, sink| {
            if let Some(f) = v.keep(values::first_run(v.node), sink) {
                j.sched.first_run = f;
            }
        },
        default: IfAbsent::Value("`after-interval`", |j| {
            j.sched.first_run = super::spec::FirstRun::AfterInterval
        }),
        doc: "`now` (a tick at start-up) or `after-interval`",
        check: Some(needs_schedule),
    },
    Key {
        name: "overlap",
        read: |j, v, sink| {
            if let Some(o) = v.keep(values::overlap(v.node), sink) {
                j.sched.overlap = o;
            }
        },
        default: IfAbsent::Value("`skip`", |j| j.sched.overlap = super::spec::Overlap::Skip),
        doc: "`skip`, `queue` or `kill`: what a tick does while the previous run is still going",
        check: Some(needs_schedule),
    },
    Key {
        name: "catchup",
        read: |j, v, sink| {
            if let Some(c) = v.keep(values::catchup(v.node), sink) {
                j.sched.catchup = c;
            }
        },
        default: IfAbsent::Value("`none`", |j| j.sched.catchup = super::spec::Catchup::None),
        doc: "`none` or `once`: whether a cron tick missed while sup was down runs once at \
              start-up",
        check: Some(needs_schedule),
    },
];

/// A scheduling option without a schedule is a mistake worth a message.
fn needs_schedule(_: &Job, written: &Written) -> Option<Bad> {
    (!written.has("schedule")).then(|| {
        Bad::new("only applies to a job with schedule")
            .with_hint("add `schedule: every 5m` (or a cron expression), or remove it")
    })
}

#[cfg(test)]
pub mod tests {
    use super::*;
    use crate::config::yaml;

    /// A table's `Value` defaults against their README text: the text, read as the value of
    /// the key, gives what the default sets. `fresh` makes an empty draft.
    pub fn value_defaults_read_as_written<D: PartialEq + std::fmt::Debug>(
        groups: &[&'static [Key<D>]],
        fresh: impl Fn() -> D,
    ) -> usize {
        let mut checked = 0;
        for key in groups.iter().flat_map(|g| g.iter()) {
            let IfAbsent::Value(text, set) = key.default else {
                continue;
            };
            let written = text
                .strip_prefix('`')
                .and_then(|t| t.strip_suffix('`'))
                .filter(|t| !t.contains('`'));
            let Some(written) = written else {
                panic!(
                    "{}: a Value default is one backquoted value, not {text:?}",
                    key.name
                );
            };
            let (node, errors) = yaml::parse(written);
            assert!(errors.is_empty(), "{}: {errors:?}", key.name);
            let node = node.expect("a value");
            let mut read = fresh();
            let mut sink = Sink::default();
            let value = Value {
                key: &node,
                node: &node,
                file: "t",
                path: key.name,
                base_dir: Path::new("/"),
            };
            (key.read)(&mut read, &value, &mut sink);
            assert_eq!(sink.len(), 0, "{}: {text} does not read", key.name);
            let mut defaulted = fresh();
            set(&mut defaulted);
            assert_eq!(read, defaulted, "{}: the default is not {text}", key.name);
            checked += 1;
        }
        checked
    }

    #[test]
    fn job_defaults_are_what_the_readme_says() {
        let n = value_defaults_read_as_written(JOB, || Job::new(Path::new("/logs")));
        assert!(n >= 15, "only {n} defaults checked");
    }

    #[test]
    fn names_are_unique() {
        let mut all = names(JOB);
        let n = all.len();
        all.sort();
        all.dedup();
        assert_eq!(all.len(), n);
    }
}
