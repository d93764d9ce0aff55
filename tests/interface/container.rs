//! Running sup as a container's init: the daemon is PID 1 of a fresh PID namespace
//! (`unshare --pid --fork --mount-proc`), so `--init` is implied. Orphans are reaped, a
//! shutdown is bounded by `--grace`, a critical job's exit is the daemon's, `stdout: inherit`
//! reaches the daemon's own stdout. Everything is observed from outside the namespace, in
//! the host's /proc.

use std::collections::HashMap;
use std::fs;
use std::process::Command;
use std::time::{Duration, Instant};

use crate::sandbox::{alive, children, kill, Sandbox, PATIENCE};

/// The namespace's init runs under this; `--kill-child` takes the namespace down with
/// `unshare` if a failing test leaves it behind.
const UNSHARE: [&str; 6] = [
    "unshare",
    "--pid",
    "--fork",
    "--mount-proc",
    "--kill-child",
    "--",
];

/// Why the tests cannot make a PID namespace here, if they cannot.
fn no_namespaces() -> Option<String> {
    match Command::new(UNSHARE[0])
        .args(&UNSHARE[1..])
        .arg("true")
        .output()
    {
        Ok(out) if out.status.success() => None,
        Ok(out) => Some(format!(
            "unshare cannot make a PID namespace: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        )),
        Err(e) => Some(format!("unshare is not available: {e}")),
    }
}

/// A sandbox whose daemon will be PID 1 of its own PID namespace, or `None` (with the reason
/// printed) where namespaces cannot be made.
fn in_namespace(name: &str, programs: &str) -> Option<Sandbox> {
    if let Some(why) = no_namespaces() {
        eprintln!("skipped: {why}");
        return None;
    }
    let mut sb = Sandbox::with_programs(name, programs);
    sb.wrapper = UNSHARE.iter().map(|s| s.to_string()).collect();
    Some(sb)
}

fn comm(pid: u32) -> String {
    fs::read_to_string(format!("/proc/{pid}/comm"))
        .unwrap_or_default()
        .trim()
        .to_string()
}

/// The host pid of the daemon: `unshare`'s one child, which is PID 1 inside.
fn sup_pid(sb: &Sandbox) -> u32 {
    let unshare = sb.daemon_pid();
    let mut found = None;
    sb.wait_for("the daemon under unshare", || {
        found = children(unshare)
            .into_iter()
            .map(|(pid, _)| pid)
            .find(|&pid| comm(pid) == "sup");
        found.is_some()
    });
    let pid = found.unwrap_or_default();
    let status = fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let nspid = status
        .lines()
        .find_map(|l| l.strip_prefix("NSpid:"))
        .unwrap_or("");
    assert_eq!(
        nspid.split_whitespace().last(),
        Some("1"),
        "the daemon is not PID 1 of its namespace: {status}"
    );
    pid
}

/// Wait for the daemon to exit; its status and how long that took from `since`.
fn exit_of(sb: &mut Sandbox, since: Instant) -> (Option<i32>, Duration) {
    let code = sb.wait_daemon_exit();
    (code, since.elapsed())
}

#[test]
fn orphans_of_a_double_forking_job_are_reaped_and_never_stay_zombies() {
    // Each round, a shell starts a sleep in the background and exits at once: the sleep is
    // orphaned, reparented to the namespace's init (sup), and must be reaped when it ends.
    let Some(mut sb) = in_namespace(
        "ns-orphans",
        r#"
  forker:
    cmd: ["sh", "-c", "while :; do sh -c 'sleep 0.3 &'; sleep 0.05; done"]
    stdout: inherit
"#,
    ) else {
        return;
    };
    sb.start();
    let sup = sup_pid(&sb);
    sb.wait_state("forker", "running");
    let leader = sb.pid("forker");
    // A zombie is fine for as long as reaping takes; one still there after this is a leak.
    let limit = Duration::from_secs(1);
    let mut zombie_since: HashMap<u32, Instant> = HashMap::new();
    let mut orphans_seen = std::collections::HashSet::new();
    let watch = Instant::now();
    while watch.elapsed() < Duration::from_secs(3) {
        let now = Instant::now();
        let kids = children(sup);
        for (pid, state) in &kids {
            if comm(*pid) == "sleep" {
                orphans_seen.insert(*pid);
            }
            if state == "Z" {
                let since = *zombie_since.entry(*pid).or_insert(now);
                assert!(
                    now - since < limit,
                    "pid {pid} ({}) has been a zombie child of sup for {:?}",
                    comm(*pid),
                    now - since
                );
            }
        }
        zombie_since.retain(|pid, _| kids.iter().any(|(p, s)| p == pid && s == "Z"));
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(
        orphans_seen.len() >= 5,
        "the job left too few orphans to prove anything: {orphans_seen:?}"
    );
    // Reaping what is no job's leaves the job alone: same leader, still running, and the
    // event log names no stranger.
    assert_eq!(sb.pid("forker"), leader);
    assert_eq!(sb.state("forker"), "running");
    let log = sb.log();
    assert!(!log.contains("WARN") && !log.contains("ERROR"), "{log}");
    kill(sup, 15);
    let (code, _) = exit_of(&mut sb, Instant::now());
    assert_eq!(code, Some(0), "{}", sb.log());
}

#[test]
fn sigterm_stops_every_job_and_a_job_ignoring_it_is_killed_at_the_grace() {
    let Some(mut sb) = in_namespace(
        "ns-grace",
        r#"
  polite:
    cmd: sleep 1000
  stubborn:
    cmd: ["sh", "-c", "trap '' TERM; while :; do sleep 0.1; done"]
    stoptime: 60s
"#,
    ) else {
        return;
    };
    sb.daemon_args = vec!["--grace".into(), "2s".into()];
    sb.start();
    let sup = sup_pid(&sb);
    sb.wait_state("stubborn", "running");
    sb.wait_state("polite", "running");
    let jobs: Vec<u32> = children(sup).into_iter().map(|(p, _)| p).collect();
    assert_eq!(jobs.len(), 2, "{jobs:?}");
    let asked = Instant::now();
    kill(sup, 15);
    let (code, took) = exit_of(&mut sb, asked);
    let log = sb.log();
    // The stoptime of 60s would keep it much longer: the grace cut it short.
    assert!(
        took >= Duration::from_secs(2),
        "exited after {took:?}:\n{log}"
    );
    assert!(
        took < Duration::from_secs(12),
        "exited after {took:?}:\n{log}"
    );
    assert_eq!(
        code,
        Some(137),
        "a shutdown that had to kill exits 137:\n{log}"
    );
    assert!(log.contains("polite exited code=143"), "{log}");
    assert!(
        log.contains("stubborn killed: SIGKILL to its group at the end of the grace"),
        "{log}"
    );
    assert!(log.contains("status=137"), "{log}");
    for pid in jobs {
        assert!(!alive(pid), "job {pid} outlived the daemon");
    }
}

#[test]
fn a_clean_shutdown_as_pid_1_exits_0_and_usr1_reaches_the_jobs() {
    let Some(mut sb) = in_namespace(
        "ns-clean",
        r#"
  listener:
    cmd: ["sh", "-c", "trap 'echo usr1 >> $OUT/usr1' USR1; trap 'exit 0' TERM; while :; do sleep 0.05; done"]
"#,
    ) else {
        return;
    };
    sb.start();
    let sup = sup_pid(&sb);
    sb.wait_state("listener", "running");
    // PID 1 implies --init, and --init a grace of 10s.
    assert!(sb.log().contains(" started pid=1 "), "{}", sb.log());
    assert!(sb.log().contains(" init grace=10s"), "{}", sb.log());
    // As init, the daemon passes USR1 on to the job's group (and is not killed by it).
    kill(sup, 10);
    sb.wait_for("the job to receive USR1", || {
        sb.read("usr1").contains("usr1")
    });
    assert!(alive(sup));
    let asked = Instant::now();
    kill(sup, 15);
    let (code, took) = exit_of(&mut sb, asked);
    assert_eq!(code, Some(0), "{}", sb.log());
    assert!(took < PATIENCE);
    assert!(
        sb.log().contains("every job stopped, exiting status=0"),
        "{}",
        sb.log()
    );
}

#[test]
fn a_critical_job_exiting_3_makes_the_daemon_exit_3() {
    let Some(mut sb) = in_namespace(
        "ns-critical",
        r#"
  main:
    cmd: ["sh", "-c", "sleep 1; exit 3"]
    critical: true
    autorestart: never
    starttime: 0
  sidecar:
    cmd: sleep 1000
"#,
    ) else {
        return;
    };
    sb.start();
    sup_pid(&sb);
    let (code, _) = exit_of(&mut sb, Instant::now());
    let log = sb.log();
    assert_eq!(code, Some(3), "{log}");
    assert!(log.contains("main is critical and exited"), "{log}");
    assert!(log.contains("sidecar stopped"), "{log}");
}

#[test]
fn a_critical_job_that_goes_fatal_makes_the_daemon_exit_1() {
    // Outside a namespace too: `critical` is not tied to --init.
    let mut sb = Sandbox::with_programs(
        "critical-fatal",
        r#"
  main:
    cmd: ["sh", "-c", "exit 0"]
    critical: true
    autorestart: always
    startretries: 1
  sidecar:
    cmd: sleep 1000
"#,
    );
    sb.start();
    let code = sb.wait_daemon_exit();
    let log = sb.log();
    assert_eq!(code, Some(1), "{log}");
    assert!(log.contains("main is critical and fatal"), "{log}");
}

#[test]
fn inherited_output_reaches_the_daemons_stdout_whole_lines_and_prefixed_when_asked() {
    // Two prefixed writers each send every line in two pieces: the daemon's stdout must still
    // hold each line whole, with its writer's name.
    let Some(mut sb) = in_namespace(
        "ns-inherit",
        r#"
  raw:
    cmd: ["sh", "-c", "echo raw says hello; echo raw complains >&2; exec sleep 1000"]
    stdout: inherit
    stderr: inherit
  pre:
    numprocs: 2
    cmd: ["sh", "-c", "for i in 1 2 3 4 5 6 7 8 9 10; do printf 'begin-%s-' $i; sleep 0.01; printf 'end\\n'; done; exec sleep 1000"]
    stdout: inherit
    prefix: true
"#,
    ) else {
        return;
    };
    sb.start_split();
    let sup = sup_pid(&sb);
    let lines = |sb: &Sandbox| -> Vec<String> {
        sb.read("daemon.stdout")
            .lines()
            .map(str::to_string)
            .collect()
    };
    sb.wait_for("every prefixed line on the daemon's stdout", || {
        lines(&sb).iter().filter(|l| l.starts_with("pre:")).count() >= 20
    });
    sb.wait_for("the raw line", || {
        lines(&sb).iter().any(|l| l == "raw says hello")
    });
    for l in lines(&sb) {
        if l == "raw says hello" {
            continue;
        }
        let (name, rest) = l
            .split_once(" | ")
            .unwrap_or_else(|| panic!("a line without its prefix: {l:?}"));
        assert!(name == "pre:0" || name == "pre:1", "{l:?}");
        assert!(
            rest.starts_with("begin-") && rest.ends_with("-end") && !rest.contains(" | "),
            "a line cut into: {l:?}"
        );
    }
    for n in ["pre:0", "pre:1"] {
        for i in 1..=10 {
            let want = format!("{n} | begin-{i}-end");
            assert!(lines(&sb).contains(&want), "missing {want:?}");
        }
    }
    // stderr: inherit is the daemon's stderr, not its stdout; nothing is tailed from a file.
    sb.wait_for("raw's stderr line", || {
        sb.read("daemon.out").contains("raw complains")
    });
    assert!(!sb.read("daemon.stdout").contains("raw complains"));
    assert!(!sb.path("logs/raw.out").exists());
    let tail = sb.sup(&["tail", "raw"]);
    assert!(!tail.status.success());
    assert!(
        String::from_utf8_lossy(&tail.stderr).contains("inherit"),
        "{tail:?}"
    );
    kill(sup, 15);
    let (code, _) = exit_of(&mut sb, Instant::now());
    assert_eq!(code, Some(0), "{}", sb.log());
}
