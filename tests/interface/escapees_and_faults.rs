//! Processes: what a job leaves behind (orphans, escapees from its process
//! group), the user switch, and the daemon's own resource failures (fork, pipes, disk) seen
//! through fault injection.

use crate::sandbox::{alive, kill, Sandbox};

#[test]
fn an_ordinary_exit_logs_no_signal_warning() {
    let mut sb = Sandbox::with_programs(
        "quiet-exit",
        r#"
  once:
    cmd: ["sh", "-c", "exit 0"]
    autorestart: never
    starttime: 0
"#,
    );
    sb.start();
    sb.wait_state("once", "exited");
    let log = sb.log();
    assert!(log.contains("exited code=0"), "{log}");
    assert!(!log.contains("no such process"), "{log}");
    assert!(!log.contains(" WARN "), "{log}");
}

#[test]
fn a_user_switch_sets_the_users_login_environment() {
    let Some(entry) = passwd_entry("nobody") else {
        eprintln!("skipped: no user nobody on this machine");
        return;
    };
    if !is_root() {
        eprintln!("skipped: switching users needs the daemon to run as root");
        return;
    }
    let mut sb = Sandbox::with_programs(
        "user-env",
        r#"
  plain:
    cmd: env
    user: nobody
    stdout: plainenv
    autorestart: never
    starttime: 0
  explicit:
    cmd: env
    user: nobody
    stdout: explicitenv
    autorestart: never
    starttime: 0
    env:
      HOME: /srv/explicit
"#,
    );
    sb.start();
    sb.wait_state("plain", "exited");
    sb.wait_state("explicit", "exited");
    let env = sb.read("plainenv");
    let (home, shell) = (&entry[5], &entry[6]);
    assert!(env.contains(&format!("\nHOME={home}\n")), "{env}");
    assert!(env.contains("\nUSER=nobody\n"), "{env}");
    assert!(env.contains("\nLOGNAME=nobody\n"), "{env}");
    assert!(env.contains(&format!("\nSHELL={shell}\n")), "{env}");
    let env = sb.read("explicitenv");
    assert!(env.contains("\nHOME=/srv/explicit\n"), "env: wins: {env}");
    assert!(env.contains("\nUSER=nobody\n"), "{env}");
}

/// The fields of `name`'s line in /etc/passwd.
fn passwd_entry(name: &str) -> Option<Vec<String>> {
    let text = std::fs::read_to_string("/etc/passwd").ok()?;
    text.lines()
        .map(|l| l.split(':').map(str::to_string).collect::<Vec<_>>())
        .find(|f| f.len() >= 7 && f[0] == name)
}

fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("Uid:"))
        .and_then(|v| v.split_whitespace().nth(1).map(|e| e == "0"))
        .unwrap_or(false)
}

const ESCAPEE: &str = r#"
  runaway:
    cmd: ["sh", "-c", "setsid sleep 1000 & echo $! > $OUT/escapee; exec sleep 1000"]
    starttime: 0
    stoptime: 1
"#;

fn escapee_pid(sb: &Sandbox) -> u32 {
    sb.wait_for("the escapee's pid", || {
        sb.read("escapee").trim().parse::<u32>().is_ok()
    });
    let pid: u32 = sb.read("escapee").trim().parse().expect("pid");
    sb.wait_for("the escapee to leave its group", || pgrp(pid) == Some(pid));
    pid
}

fn pgrp(pid: u32) -> Option<u32> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    stat.rsplit_once(')')?
        .1
        .split_whitespace()
        .nth(2)?
        .parse()
        .ok()
}

#[test]
fn an_escapee_from_the_group_dies_with_a_stop() {
    let mut sb = Sandbox::with_programs("escape-stop", ESCAPEE);
    sb.start();
    sb.wait_state("runaway", "running");
    let escapee = escapee_pid(&sb);
    sb.sup_ok(&["stop", "runaway"]);
    sb.wait_for("the escapee to be gone", || !alive(escapee));
}

#[test]
fn an_escapee_from_the_group_dies_with_a_shutdown() {
    let mut sb = Sandbox::with_programs("escape-shutdown", ESCAPEE);
    sb.start();
    sb.wait_state("runaway", "running");
    let escapee = escapee_pid(&sb);
    sb.sup_ok(&["shutdown"]);
    sb.wait_daemon_exit();
    sb.wait_for("the escapee to be gone", || !alive(escapee));
}

#[test]
fn a_group_spawned_just_before_kill_9_is_cleaned_up_by_the_next_daemon() {
    // Spawned just before the kill: the escapee left the group, so only the tag in its
    // environment leads the next daemon to it.
    let mut sb = Sandbox::with_programs(
        "just-spawned",
        r#"
  family:
    cmd: ["sh", "-c", "sleep 1000 & echo $! > $OUT/child; setsid sleep 1000 & echo $! > $OUT/escapee; wait"]
    autostart: false
    starttime: 0
"#,
    );
    sb.start();
    // A daemon that has written its state file once already (its snapshot at start).
    sb.wait_for("the first state file", || sb.path("sup.state").exists());
    let _ = std::fs::remove_file(sb.path("child"));
    sb.sup_ok(&["start", "--no-wait", "family"]);
    sb.wait_for("the job's children", || {
        sb.read("child").trim().parse::<u32>().is_ok()
            && sb.read("escapee").trim().parse::<u32>().is_ok()
    });
    kill(sb.daemon_pid(), 9);
    sb.kill_daemon_hard();
    let child: u32 = sb.read("child").trim().parse().expect("pid");
    let escapee: u32 = sb.read("escapee").trim().parse().expect("pid");
    sb.start();
    sb.wait_for("the old group's members to be gone", || {
        !alive(child) && !alive(escapee)
    });
}

/// `sup daemon` for `sb` under `strace` with `faults` (`-e` expressions such as `inject=…`, or
/// options such as `-P PATH`), or `None`
/// when strace is missing or may not trace here. Only the daemon is traced (no `-f`): the
/// faults are the daemon's, not its jobs'.
pub(crate) fn daemon_under_strace(sb: &Sandbox, faults: &[&str]) -> Option<std::process::Child> {
    let usable = std::process::Command::new("strace")
        .args(["-qq", "-e", "trace=none", "true"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !usable {
        eprintln!("skipped: strace is missing or may not trace processes here");
        return None;
    }
    let out = std::fs::File::create(sb.path("daemon.out")).expect("daemon.out");
    let err = out.try_clone().expect("clone");
    let mut cmd = std::process::Command::new("strace");
    cmd.args(["-qq", "-o"]).arg(sb.path("strace.out"));
    for f in faults {
        // A plain option (`-P PATH`) as it is; anything else is an `-e` expression.
        if f.starts_with('-') {
            cmd.arg(f);
        } else {
            cmd.args(["-e", f]);
        }
    }
    cmd.arg(crate::sandbox::sup_bin());
    let child = sb
        .daemon_command_after(cmd)
        .stdout(out)
        .stderr(err)
        .spawn()
        .expect("spawn strace");
    sb.wait_for("the daemon to answer status", || {
        sb.sup(&["status"]).status.success()
    });
    Some(child)
}

pub(crate) fn shutdown(sb: &Sandbox, mut traced: std::process::Child) {
    sb.sup_ok(&["shutdown"]);
    sb.wait_for("the traced daemon to exit", || {
        matches!(traced.try_wait(), Ok(Some(_)))
    });
}

#[test]
fn a_transient_fork_failure_is_retried_without_spending_startretries() {
    let sb = Sandbox::with_programs(
        "fork-eagain",
        r#"
  web:
    cmd: sleep 1000
    starttime: 0
    startretries: 3
"#,
    );
    // glibc's fork is clone(2); clone3 too in case a libc uses it. Five failures: one more
    // than startretries allows failed starts.
    let Some(traced) = daemon_under_strace(
        &sb,
        &[
            "trace=clone,clone3,fork,vfork",
            "inject=clone,clone3:error=EAGAIN:when=1..5",
        ],
    ) else {
        return;
    };
    let st = sb.wait_state("web", "running");
    assert_eq!(st["restarts"], 0, "{st}");
    let log = sb.log();
    // Five deferrals in a row, one warning: the retries after the first are debug lines.
    assert_eq!(
        log.matches(" WARN web fork failed: try again (the daemon's resources); retrying in ")
            .count(),
        1,
        "{log}"
    );
    assert_eq!(
        sb.read("strace.out")
            .matches("EAGAIN (Resource temporarily unavailable) (INJECTED)")
            .count(),
        5,
        "five forks failed"
    );
    assert!(!log.contains("fatal"), "{log}");
    shutdown(&sb, traced);
}

/// The CPU the daemon uses over a 2 s window (a measurement, not a wait): a daemon that spins
/// on a fault it had uses 200.
fn daemon_ticks_in_2s(sb: &Sandbox) -> u64 {
    let daemon: u32 = sb.read("sup.pid").trim().parse().expect("daemon pid");
    let before = cpu_ticks(daemon);
    std::thread::sleep(std::time::Duration::from_secs(2));
    cpu_ticks(daemon) - before
}

/// utime + stime of `pid`, in clock ticks.
fn cpu_ticks(pid: u32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let Some((_, rest)) = stat.rsplit_once(')') else {
        return 0;
    };
    let f: Vec<&str> = rest.split_whitespace().collect();
    // After comm: field 14 (utime) is index 11, field 15 (stime) index 12.
    let get = |i: usize| f.get(i).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
    get(11) + get(12)
}

#[test]
fn running_out_of_descriptors_for_a_pipe_is_retried_and_the_daemon_stays_quiet() {
    let sb = Sandbox::with_programs(
        "pipe-emfile",
        r#"
  web:
    cmd: ["sh", "-c", "echo hello; exec sleep 1000"]
    starttime: 0
    startretries: 1
"#,
    );
    let Some(traced) =
        daemon_under_strace(&sb, &["trace=pipe2", "inject=pipe2:error=EMFILE:when=1..3"])
    else {
        return;
    };
    let st = sb.wait_state("web", "running");
    assert_eq!(st["restarts"], 0, "{st}");
    let log = sb.log();
    assert!(
        log.contains(
            " WARN web stdout: pipe: too many open files (the daemon's resources); retrying in "
        ),
        "{log}"
    );
    assert!(!log.contains("fatal"), "{log}");
    sb.wait_for("the job's output", || {
        sb.read("logs/web.out").contains("hello")
    });
    // Recovered and idle: no spinning on the failure it had.
    let used = daemon_ticks_in_2s(&sb);
    assert!(
        used <= 5,
        "the daemon used {used} ticks of CPU in 2 s while idle"
    );
    shutdown(&sb, traced);
}

#[test]
fn a_full_disk_under_an_output_file_is_survived_without_spinning() {
    failing_writes_are_survived_without_spinning("ENOSPC");
}

#[test]
fn an_io_error_under_an_output_file_is_survived_without_spinning() {
    failing_writes_are_survived_without_spinning("EIO");
}

fn failing_writes_are_survived_without_spinning(errno: &str) {
    let sb = Sandbox::with_programs(
        &format!("write-{}", errno.to_lowercase()),
        r#"
  talk:
    cmd: ["sh", "-c", "i=0; while :; do i=$((i+1)); echo line $i; sleep 0.02; done"]
    starttime: 0
"#,
    );
    // Every write the daemon makes fails for a while: output files, and the event log too.
    let inject = format!("inject=write:error={errno}:when=3..40");
    let Some(traced) = daemon_under_strace(&sb, &["trace=write", &inject]) else {
        return;
    };
    sb.wait_state("talk", "running");
    let lines = |sb: &Sandbox| sb.read("logs/talk.out").lines().count();
    sb.wait_for("output to reach its file again", || lines(&sb) > 20);
    let at = lines(&sb);
    let used = daemon_ticks_in_2s(&sb);
    // About 100 lines in 2 s: a little CPU, never a spin.
    assert!(used <= 20, "the daemon used {used} ticks of CPU in 2 s");
    assert!(lines(&sb) > at, "output keeps flowing");
    let st = sb.wait_state("talk", "running");
    assert_eq!(st["restarts"], 0, "{st}");
    assert!(
        sb.read("strace.out").contains(errno) && sb.read("strace.out").contains("INJECTED"),
        "the fault was injected"
    );
    shutdown(&sb, traced);
}

#[test]
fn a_restart_kills_the_old_escapee_and_keeps_the_new_process() {
    let mut sb = Sandbox::with_programs("escape-restart", ESCAPEE);
    sb.start();
    sb.wait_state("runaway", "running");
    let escapee = escapee_pid(&sb);
    let _ = std::fs::remove_file(sb.path("escapee"));
    sb.sup_ok(&["restart", "runaway"]);
    sb.wait_for("the old escapee to be gone", || !alive(escapee));
    let st = sb.wait_state("runaway", "running");
    let pid = st["pid"].as_u64().expect("pid") as u32;
    let fresh = escapee_pid(&sb);
    assert!(alive(pid) && alive(fresh), "the new run is left alone");
}

#[test]
fn failed_accepts_are_answered_or_retried_and_the_daemon_stays_quiet() {
    let sb = Sandbox::with_programs(
        "accept-emfile",
        "  web:\n    cmd: sleep 1000\n    starttime: 0\n",
    );
    // The first accept4 calls fail as if the fd table were full (the first one is the
    // harness's own status probe, answered once the listener is retried).
    let Some(traced) = daemon_under_strace(
        &sb,
        &["trace=accept4", "inject=accept4:error=EMFILE:when=2..4"],
    ) else {
        return;
    };
    // Every client gets an answer, an error or the status, never silence.
    for _ in 0..4 {
        let out = sb.sup(&["--timeout", "10s", "status"]);
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(
            out.status.success() || text.contains("out of file descriptors"),
            "{text}"
        );
    }
    sb.wait_state("web", "running");
    let used = daemon_ticks_in_2s(&sb);
    assert!(
        used <= 5,
        "the daemon used {used} ticks of CPU in 2 s while idle"
    );
    assert!(
        sb.read("strace.out").contains("INJECTED"),
        "the fault was injected"
    );
    shutdown(&sb, traced);
}

#[test]
/// A log file sup may not open fails that start (as supervisord does: the job's output has
/// nowhere to go), with the reason; backoff retries it, and the job runs once it opens.
fn an_output_file_that_cannot_be_opened_fails_the_start_and_is_retried() {
    let sb = Sandbox::with_programs(
        "openat-eacces",
        r#"
  web:
    cmd: ["sh", "-c", "while :; do echo hello; sleep 0.2; done"]
    starttime: 0
"#,
    );
    sb.write("logs/.keep", "");
    // Only calls on the job's output file are traced, so only its opens fail.
    let out_file = sb.path("logs/web.out");
    let p = format!("-P{}", out_file.display());
    let Some(traced) = daemon_under_strace(
        &sb,
        &[
            &p,
            "trace=openat,open",
            "inject=openat,open:error=EACCES:when=1..2",
        ],
    ) else {
        return;
    };
    sb.wait_for("the output file to be opened on a retry", || {
        sb.read("logs/web.out").contains("hello")
    });
    let st = sb.wait_state("web", "running");
    assert_eq!(st["restarts"], 2, "{st}");
    assert!(
        sb.log().contains("unable to open its stdout log")
            && sb.log().contains("Permission denied"),
        "{}",
        sb.log()
    );
    let used = daemon_ticks_in_2s(&sb);
    assert!(used <= 10, "the daemon used {used} ticks of CPU in 2 s");
    shutdown(&sb, traced);
}

/// `sup daemon` run in the foreground of a terminal: a job (maybe another user's) must not get
/// that terminal as its own, or it could read the operator's keys or push commands into the
/// shell with TIOCSTI.
#[test]
fn a_job_has_no_controlling_terminal_even_when_the_daemon_has_one() {
    let mut sb = Sandbox::with_programs(
        "notty",
        r#"
  probe:
    cmd: ["sh", "-c", "if (exec 3<>/dev/tty) 2>/dev/null; then echo has-a-tty; else echo no-tty; fi; exec sleep 1000"]
    starttime: 0
"#,
    );
    // script(1) gives the daemon a pseudo-terminal as its controlling terminal.
    sb.wrapper = ["sh", "-c", "exec script -qec \"$0 $*\" /dev/null"]
        .map(String::from)
        .to_vec();
    sb.start();
    sb.wait_for("the probe's answer", || {
        !sb.read("logs/probe.out").is_empty()
    });
    assert_eq!(sb.read("logs/probe.out"), "no-tty\n");
    // SIGTERM to script(1) reaches the daemon only through the shell it runs, and a shell that
    // does not exec leaves the daemon a SIGHUP (a reload) instead: stop it through its socket.
    sb.sup_ok(&["shutdown"]);
    sb.wait_daemon_exit();
}

/// A job that floods its notify socket gets a bounded share of each turn: the daemon keeps
/// answering and its memory stays small.
#[test]
fn a_job_flooding_its_notify_socket_does_not_starve_the_daemon() {
    let mut sb = Sandbox::with_programs(
        "notify-flood",
        r#"
  flood:
    cmd:
      - python3
      - -c
      - |
        import os, socket
        s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        s.connect(os.environ["NOTIFY_SOCKET"])
        s.send(b"READY=1")
        for _ in range(6):
            if os.fork() == 0:
                break
        msg = b"STATUS=" + b"x" * 100
        while True:
            try:
                s.send(msg)
            except OSError:
                pass
    ready: notify
    ready_timeout: 10s
"#,
    );
    sb.start();
    sb.wait_state("flood", "running");
    let daemon: u32 = sb.read("sup.pid").trim().parse().expect("daemon pid");
    let mut slowest = std::time::Duration::ZERO;
    for _ in 0..5 {
        let asked = std::time::Instant::now();
        let out = sb.sup(&["--timeout", "10s", "status"]);
        slowest = slowest.max(asked.elapsed());
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    eprintln!("slowest status under the flood: {slowest:?}");
    assert!(slowest < std::time::Duration::from_secs(2), "{slowest:?}");
    let status = std::fs::read_to_string(format!("/proc/{daemon}/status")).unwrap_or_default();
    let rss_kib: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or(0);
    assert!(rss_kib < 100 * 1024, "the daemon's RSS is {rss_kib} KiB");
    sb.sup_ok(&["stop", "flood"]);
}

/// A job stopped with SIGSTOP gets SIGCONT after its stopsignal, so it handles the signal
/// instead of waiting out `stoptime` for SIGKILL.
#[test]
fn a_stopped_job_is_woken_to_handle_its_stopsignal() {
    let mut sb = Sandbox::with_programs(
        "sigstop",
        r#"
  frozen:
    cmd: ["sh", "-c", "trap 'echo handled; exit 0' TERM; kill -STOP $$; while :; do sleep 0.1; done"]
    starttime: 0
    stoptime: 60s
"#,
    );
    sb.start();
    sb.wait_state("frozen", "running");
    let pid = sb.pid("frozen").expect("pid");
    sb.wait_for("the job to stop itself", || {
        std::fs::read_to_string(format!("/proc/{pid}/stat"))
            .is_ok_and(|s| s.rsplit_once(") ").is_some_and(|(_, r)| r.starts_with('T')))
    });
    let asked = std::time::Instant::now();
    sb.sup_ok(&["stop", "frozen"]);
    assert!(
        asked.elapsed() < std::time::Duration::from_secs(30),
        "{:?}",
        asked.elapsed()
    );
    sb.wait_for("the handler's output", || {
        sb.read("logs/frozen.out").contains("handled")
    });
}
