//! `Sandbox`: a fresh directory, a config written inline, the real `sup daemon` started on
//! it, and helpers that wait by polling a condition until a deadline (never a bare sleep).
//! On drop it stops the daemon and fails the test if any process it started is still alive.

#![allow(dead_code)]

use std::fs;
use std::path::PathBuf;
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use serde_json::Value;

/// Generous: the suite must pass on a loaded 2-core machine.
pub const PATIENCE: Duration = Duration::from_secs(30);

static COUNTER: AtomicUsize = AtomicUsize::new(0);

pub fn sup_bin() -> &'static str {
    env!("CARGO_BIN_EXE_sup")
}

pub struct Sandbox {
    pub dir: PathBuf,
    pub tag: String,
    /// The config that `-c` names, relative to `dir`: `sup.yaml` unless a test says otherwise.
    pub config: String,
    /// A command the daemon is run under (`prlimit --nofile=64:64 --`), or empty.
    pub wrapper: Vec<String>,
    /// More arguments for `sup daemon` (`--grace 2s`).
    pub daemon_args: Vec<String>,
    daemon: Option<Child>,
}

impl Sandbox {
    pub fn new(name: &str) -> Sandbox {
        let n = COUNTER.fetch_add(1, Ordering::SeqCst);
        let tag = format!("{name}-{}-{n}", std::process::id());
        let dir = std::env::temp_dir().join(format!("sup-it-{tag}"));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).expect("create sandbox dir");
        Sandbox {
            dir,
            tag,
            config: "sup.yaml".to_string(),
            wrapper: Vec::new(),
            daemon_args: Vec::new(),
            daemon: None,
        }
    }

    /// A sandbox with `sup.yaml` holding `programs:` followed by `programs` (indented YAML).
    pub fn with_programs(name: &str, programs: &str) -> Sandbox {
        let sb = Sandbox::new(name);
        sb.write("sup.yaml", &format!("programs:\n{programs}"));
        sb
    }

    pub fn path(&self, rel: &str) -> PathBuf {
        self.dir.join(rel)
    }

    pub fn write(&self, rel: &str, content: &str) {
        let p = self.path(rel);
        if let Some(parent) = p.parent() {
            fs::create_dir_all(parent).expect("create dir");
        }
        fs::write(&p, content).expect("write file");
    }

    pub fn read(&self, rel: &str) -> String {
        fs::read_to_string(self.path(rel)).unwrap_or_default()
    }

    pub fn socket(&self) -> PathBuf {
        self.path("sup.sock")
    }

    pub fn pidfile(&self) -> PathBuf {
        self.path("sup.pid")
    }

    /// `sup daemon` on this sandbox's files, not yet started, under `wrapper` if one is set
    /// (`prlimit …` execs the daemon: the pid stays the daemon's).
    pub fn daemon_command(&self) -> Command {
        let cmd = match self.wrapper.split_first() {
            Some((first, rest)) => {
                let mut c = Command::new(first);
                c.args(rest).arg(sup_bin());
                c
            }
            None => Command::new(sup_bin()),
        };
        self.daemon_command_after(cmd)
    }

    /// The daemon's arguments and environment appended to `cmd`: `sup` itself, or a wrapper
    /// such as `strace … sup` whose arguments end with the binary.
    pub fn daemon_command_after(&self, mut cmd: Command) -> Command {
        cmd.arg("daemon")
            .arg("-c")
            .arg(self.path(&self.config))
            .arg("--socket")
            .arg(self.socket())
            .arg("--pidfile")
            .arg(self.pidfile())
            .env("SUP_SANDBOX", &self.tag)
            .args(&self.daemon_args)
            .env("OUT", &self.dir)
            // A test run under a service manager must not make every daemon speak to it.
            .env_remove("NOTIFY_SOCKET")
            .env_remove("WATCHDOG_USEC")
            .env_remove("WATCHDOG_PID")
            .current_dir(&self.dir)
            .stdin(Stdio::null());
        cmd
    }

    /// Start the daemon and wait until it answers `status`.
    pub fn start(&mut self) {
        self.start_with_env(&[]);
    }

    /// `start`, with these variables added to the daemon's environment.
    pub fn start_with_env(&mut self, vars: &[(&str, &str)]) {
        let out = fs::File::create(self.path("daemon.out")).expect("daemon.out");
        let err = out.try_clone().expect("clone");
        self.start_to(out, err, vars);
    }

    /// `start`, with the daemon's stdout in `daemon.stdout` and its stderr in `daemon.out`.
    pub fn start_split(&mut self) {
        let out = fs::File::create(self.path("daemon.stdout")).expect("daemon.stdout");
        let err = fs::File::create(self.path("daemon.out")).expect("daemon.out");
        self.start_to(out, err, &[]);
    }

    fn start_to(&mut self, out: fs::File, err: fs::File, vars: &[(&str, &str)]) {
        let mut cmd = self.daemon_command();
        cmd.envs(vars.iter().copied());
        let child = cmd
            .stdout(out)
            .stderr(err)
            .spawn()
            .expect("spawn sup daemon");
        let mut child = child;
        let mut early = None;
        self.wait_for("the daemon to answer status", || {
            if let Ok(Some(status)) = child.try_wait() {
                early = Some(status);
                return true;
            }
            self.sup(&["status"]).status.success()
        });
        if let Some(status) = early {
            panic!(
                "sup daemon exited early with {status}:\n{}",
                self.read("daemon.out")
            );
        }
        self.daemon = Some(child);
    }

    /// Run a second daemon on the same files and return its output (it should refuse).
    pub fn run_second_daemon(&self) -> Output {
        self.daemon_command().output().expect("run second daemon")
    }

    pub fn daemon_pid(&self) -> u32 {
        self.daemon
            .as_ref()
            .map(|c| c.id())
            .expect("daemon running")
    }

    /// Wait for the daemon to exit on its own; returns its exit code.
    pub fn wait_daemon_exit(&mut self) -> Option<i32> {
        let mut child = self.daemon.take()?;
        let deadline = Instant::now() + PATIENCE;
        loop {
            if let Ok(Some(s)) = child.try_wait() {
                return s.code();
            }
            assert!(Instant::now() < deadline, "daemon did not exit in time");
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Forget the daemon without stopping it (after it was killed outright by the test).
    pub fn kill_daemon_hard(&mut self) {
        if let Some(mut c) = self.daemon.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    pub fn sup(&self, args: &[&str]) -> Output {
        Command::new(sup_bin())
            .args(args)
            .arg("--socket")
            .arg(self.socket())
            .arg("-c")
            .arg(self.path(&self.config))
            .current_dir(&self.dir)
            .env_remove("NO_COLOR")
            .env_remove("SUP_URL")
            .env_remove("SUP_TOKEN_FILE")
            .output()
            .expect("run sup")
    }

    /// Run `sup ARGS`, assert it succeeded, return stdout.
    pub fn sup_ok(&self, args: &[&str]) -> String {
        let out = self.sup(args);
        assert!(
            out.status.success(),
            "sup {args:?} failed ({}):\nstdout: {}\nstderr: {}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    pub fn status(&self) -> Vec<Value> {
        let text = self.sup_ok(&["status", "--json"]);
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("bad JSON {e}: {text}"))
    }

    pub fn instance(&self, name: &str) -> Value {
        self.status()
            .into_iter()
            .find(|i| i["name"] == name)
            .unwrap_or_else(|| panic!("no instance {name} in status"))
    }

    /// Every instance's pid by name, to show that something left them alone.
    pub fn pids(&self) -> std::collections::BTreeMap<String, Option<u64>> {
        self.status()
            .into_iter()
            .map(|i| {
                (
                    i["name"].as_str().unwrap_or("").to_string(),
                    i["pid"].as_u64(),
                )
            })
            .collect()
    }

    pub fn state(&self, name: &str) -> String {
        self.instance(name)["state"]
            .as_str()
            .unwrap_or("")
            .to_string()
    }

    pub fn pid(&self, name: &str) -> Option<u32> {
        self.instance(name)["pid"].as_u64().map(|p| p as u32)
    }

    pub fn wait_state(&self, name: &str, state: &str) -> Value {
        let mut last = Value::Null;
        self.wait_for(&format!("{name} to be {state}"), || {
            last = self.instance(name);
            last["state"] == state
        });
        last
    }

    /// Poll `cond` until it holds; panic after `PATIENCE` with what was awaited.
    pub fn wait_for(&self, what: &str, mut cond: impl FnMut() -> bool) {
        wait_until(what, PATIENCE, &mut cond, || {
            format!(
                "event log:\n{}\ndaemon output:\n{}",
                self.log(),
                self.read("daemon.out")
            )
        });
    }

    pub fn log(&self) -> String {
        self.read("logs/sup.log")
    }

    /// Pids of live processes started under this sandbox (found by their environment).
    pub fn survivors(&self) -> Vec<u32> {
        survivors_tagged(&self.tag)
    }
}

pub fn wait_until(
    what: &str,
    patience: Duration,
    cond: &mut dyn FnMut() -> bool,
    context: impl Fn() -> String,
) {
    let deadline = Instant::now() + patience;
    let mut pause = Duration::from_millis(5);
    while !cond() {
        if Instant::now() > deadline {
            panic!("timed out waiting for {what}\n{}", context());
        }
        std::thread::sleep(pause);
        pause = (pause * 2).min(Duration::from_millis(100));
    }
}

/// Live (non-zombie) processes whose environment carries `SUP_SANDBOX=tag`.
pub fn survivors_tagged(tag: &str) -> Vec<u32> {
    let needle = format!("SUP_SANDBOX={tag}\0");
    let mut found = Vec::new();
    let Ok(entries) = fs::read_dir("/proc") else {
        return found;
    };
    for e in entries.flatten() {
        let Ok(pid) = e.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        if pid == std::process::id() {
            continue;
        }
        let Ok(env) = fs::read(format!("/proc/{pid}/environ")) else {
            continue;
        };
        if !String::from_utf8_lossy(&env).contains(&needle) {
            continue;
        }
        let stat = fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
        let state = stat
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().next())
            .unwrap_or("");
        if state != "Z" && !state.is_empty() {
            found.push(pid);
        }
    }
    found
}

pub fn alive(pid: u32) -> bool {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let state = stat
        .rsplit_once(')')
        .and_then(|(_, rest)| rest.split_whitespace().next())
        .unwrap_or("");
    !state.is_empty() && state != "Z"
}

pub fn kill(pid: u32, sig: i32) {
    unsafe_kill(pid as i32, sig);
}

fn unsafe_kill(pid: i32, sig: i32) {
    // std has no kill(2); the test shells out rather than take a libc dependency.
    let _ = Command::new("kill")
        .arg(format!("-{sig}"))
        .arg("--")
        .arg(pid.to_string())
        .status();
}

impl Drop for Sandbox {
    fn drop(&mut self) {
        if let Some(mut child) = self.daemon.take() {
            kill(child.id(), 15);
            let deadline = Instant::now() + PATIENCE;
            while !matches!(child.try_wait(), Ok(Some(_))) && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(10));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
        // Give the kernel a moment to finish killing groups, then insist.
        let mut left = Vec::new();
        let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            wait_until(
                "sandbox processes to end",
                Duration::from_secs(5),
                &mut || {
                    left = self.survivors();
                    left.is_empty()
                },
                String::new,
            );
        }));
        for &pid in &left {
            kill(pid, 9);
        }
        if !left.is_empty() && !std::thread::panicking() {
            panic!("processes outlived the sandbox {}: {left:?}", self.tag);
        }
        if !std::thread::panicking() {
            let _ = fs::remove_dir_all(&self.dir);
        }
    }
}

/// One field of /proc/PID/stat after the command name: 0 is the state, 1 the parent.
fn stat_field(pid: u32, n: usize) -> Option<String> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let (_, rest) = stat.rsplit_once(')')?;
    rest.split_whitespace().nth(n).map(str::to_string)
}

/// The pids of `parent`'s children (as this namespace sees them), with their state letter.
pub fn children(parent: u32) -> Vec<(u32, String)> {
    let Ok(entries) = fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(|&pid| stat_field(pid, 1).as_deref() == Some(&parent.to_string()))
        .filter_map(|pid| Some((pid, stat_field(pid, 0)?)))
        .collect()
}
