//! Output files of down instances: a stopped, exited, fatal or scheduled (between runs)
//! instance holds no descriptor on its log files, its last output is in them, `tail` and
//! `logreopen` leave them closed, and a start opens them again. A daemon with 64 descriptors
//! runs a hundred jobs and still answers `stop all`.

use std::fs;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use crate::sandbox::{wait_until, Sandbox};

/// The canonical paths of `rels` under the sandbox (what `/proc/PID/fd` links name).
fn canonical(sb: &Sandbox, rels: &[String]) -> Vec<PathBuf> {
    let dir = fs::canonicalize(&sb.dir).unwrap_or_else(|_| sb.dir.clone());
    rels.iter().map(|r| dir.join(r)).collect()
}

/// How many of the daemon's descriptors are open on one of `paths`.
fn fds_on(pid: u32, paths: &[PathBuf]) -> usize {
    let Ok(entries) = fs::read_dir(format!("/proc/{pid}/fd")) else {
        return usize::MAX;
    };
    entries
        .flatten()
        .filter(|e| fs::read_link(e.path()).is_ok_and(|t| paths.contains(&t)))
        .count()
}

/// All of the daemon's descriptors.
fn all_fds(pid: u32) -> usize {
    fs::read_dir(format!("/proc/{pid}/fd")).map_or(usize::MAX, |d| d.count())
}

fn lines(sb: &Sandbox, rel: &str) -> usize {
    sb.read(rel).lines().count()
}

#[test]
fn stopped_instances_close_their_files_and_a_start_opens_them_again() {
    const N: usize = 20;
    let mut sb = Sandbox::with_programs(
        "fds-stop",
        r#"
  w:
    cmd: ["sh", "-c", "echo out-line; echo err-line >&2; exec sleep 60"]
    numprocs: 20
    starttime: 0
    stoptime: 1s
"#,
    );
    sb.start();
    let pid = sb.daemon_pid();
    let rels: Vec<String> = (0..N)
        .flat_map(|i| [format!("logs/w:{i}.out"), format!("logs/w:{i}.err")])
        .collect();
    let files = canonical(&sb, &rels);
    sb.wait_for("every instance to write both lines", || {
        rels.iter().all(|r| lines(&sb, r) == 1)
    });
    sb.wait_for("each file open once", || fds_on(pid, &files) == 2 * N);

    sb.sup_ok(&["stop", "all"]);
    let mut open = 0;
    sb.wait_for(
        "no descriptor left on the files of stopped instances",
        || {
            open = fds_on(pid, &files);
            open == 0
        },
    );
    // Reading the files of a down instance works, and opens nothing in the daemon.
    let tail = sb.sup_ok(&["tail", "w:3"]);
    assert!(tail.contains("out-line"), "{tail}");
    let tail = sb.sup_ok(&["tail", "--stderr", "w:3"]);
    assert!(tail.contains("err-line"), "{tail}");
    // logreopen reopens only the files of instances that are up: none here.
    let said = sb.sup_ok(&["logreopen"]);
    assert!(said.contains(" 0 output files"), "{said}");
    assert_eq!(
        fds_on(pid, &files),
        0,
        "logreopen opened files of down instances"
    );

    sb.sup_ok(&["start", "all"]);
    sb.wait_for("a second line in every file", || {
        rels.iter().all(|r| lines(&sb, r) == 2)
    });
    sb.wait_for("each file open once again", || fds_on(pid, &files) == 2 * N);
}

#[test]
fn exited_fatal_and_scheduled_instances_close_their_files_after_their_last_bytes() {
    let mut sb = Sandbox::with_programs(
        "fds-exit",
        r#"
  once:
    cmd: ["sh", "-c", "echo first; echo err-last >&2; printf 'last words'"]
    autorestart: never
    starttime: 0
  merged:
    cmd: ["sh", "-c", "echo one; echo two >&2; printf 'no newline'"]
    autorestart: never
    starttime: 0
    redirect_stderr: true
  broken:
    cmd: ["sh", "-c", "echo dying; exit 3"]
    starttime: 5
    startretries: 0
  nightly:
    cmd: ["sh", "-c", "echo ran"]
    schedule: every 1h
    first_run: now
"#,
    );
    sb.start();
    let pid = sb.daemon_pid();
    sb.wait_state("once", "exited");
    sb.wait_state("merged", "exited");
    sb.wait_state("broken", "fatal");
    sb.wait_for("the scheduled job to run once", || {
        sb.read("logs/nightly.out") == "ran\n"
    });
    sb.wait_state("nightly", "scheduled");
    let rels: Vec<String> = [
        "logs/once.out",
        "logs/once.err",
        "logs/merged.out",
        "logs/broken.out",
        "logs/broken.err",
        "logs/nightly.out",
        "logs/nightly.err",
    ]
    .map(String::from)
    .to_vec();
    let files = canonical(&sb, &rels);
    let mut open = 0;
    sb.wait_for("no descriptor left on the files of down instances", || {
        open = fds_on(pid, &files);
        open == 0
    });
    assert_eq!(sb.read("logs/once.out"), "first\nlast words");
    assert_eq!(sb.read("logs/once.err"), "err-last\n");
    let merged = sb.read("logs/merged.out");
    for want in ["one\n", "two\n", "no newline"] {
        assert!(merged.contains(want), "{merged:?}");
    }
    assert!(!sb.path("logs/merged.err").exists());
    assert_eq!(sb.read("logs/broken.out"), "dying\n");
    let tail = sb.sup_ok(&["tail", "once"]);
    assert!(tail.contains("last words"), "{tail}");
}

#[test]
fn a_hundred_jobs_run_and_stop_with_64_descriptors() {
    let mut sb = Sandbox::with_programs(
        "fds-limit",
        r#"
  burst:
    cmd: ["sh", "-c", "echo ran; echo also >&2"]
    numprocs: 100
    autorestart: never
    starttime: 0
  keep:
    cmd: ["sh", "-c", "echo up; exec sleep 60"]
    numprocs: 3
    starttime: 0
    stoptime: 1s
"#,
    );
    sb.wrapper = ["prlimit", "--nofile=64:64", "--"]
        .map(String::from)
        .to_vec();
    sb.start();
    let pid = sb.daemon_pid();
    // About a dozen spawns fit at once; the rest are deferred (not failed: no `startretries`
    // spent) and retried together with a delay that grows to 5 s, so this takes 20 s or so.
    wait_until(
        "all hundred runs to exit with their output written",
        Duration::from_secs(90),
        &mut || {
            // Spawns hold every descriptor but the daemon's reserve: clients are served.
            let out = sb.sup(&["status", "--json"]);
            assert!(
                out.status.success(),
                "{}",
                String::from_utf8_lossy(&out.stderr)
            );
            let st: Vec<serde_json::Value> =
                serde_json::from_slice(&out.stdout).expect("status --json");
            st.iter()
                .filter(|i| i["program"] == "burst")
                .all(|i| i["state"] == "exited")
        },
        || format!("event log:\n{}", sb.log()),
    );
    for i in 0..100 {
        assert_eq!(
            sb.read(&format!("logs/burst:{i}.out")),
            "ran\n",
            "burst:{i}"
        );
        assert_eq!(
            sb.read(&format!("logs/burst:{i}.err")),
            "also\n",
            "burst:{i}"
        );
    }
    sb.wait_state("keep:2", "running");
    assert!(all_fds(pid) < 64, "{} descriptors", all_fds(pid));

    let t0 = Instant::now();
    sb.sup_ok(&["stop", "all"]);
    let took = t0.elapsed();
    assert!(took < Duration::from_secs(20), "stop all took {took:?}");
    for i in 0..3 {
        assert_eq!(sb.state(&format!("keep:{i}")), "stopped");
    }
    let rels: Vec<String> = (0..3)
        .flat_map(|i| [format!("logs/keep:{i}.out"), format!("logs/keep:{i}.err")])
        .collect();
    let files = canonical(&sb, &rels);
    sb.wait_for("the stopped jobs' files closed", || {
        fds_on(pid, &files) == 0
    });
}

#[test]
fn a_hundred_long_running_jobs_with_64_descriptors_leave_the_daemon_controllable() {
    let mut sb = Sandbox::new("fds-held");
    sb.write(
        "sup.yaml",
        r#"daemon:
  loglevel: debug
programs:
  hold:
    cmd: ["sleep", "1000"]
    numprocs: 100
    starttime: 0
    stoptime: 1s
"#,
    );
    sb.wrapper = ["prlimit", "--nofile=64:64", "--"]
        .map(String::from)
        .to_vec();
    sb.start();
    // The jobs' pipes fill the table and the rest wait: some spawn is deferred six times in
    // a row (about 3 s of retries).
    sb.wait_for("a sixth deferral in a row", || {
        sb.log().contains("(attempt 6)")
    });
    for _ in 0..10 {
        let out = sb.sup(&["status", "--json"]);
        assert!(
            out.status.success(),
            "status while the table is full: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let warnings = sb
        .log()
        .lines()
        .filter(|l| l.contains(" WARN ") && l.contains("the daemon's resources"))
        .count();
    assert!(
        warnings <= 100,
        "{warnings} warnings: a retry is not worth one\n{}",
        sb.log()
    );
    let t0 = Instant::now();
    sb.sup_ok(&["stop", "all"]);
    let took = t0.elapsed();
    assert!(took < Duration::from_secs(20), "stop all took {took:?}");
    let out = sb.sup_ok(&["status", "--json"]);
    let st: Vec<serde_json::Value> = serde_json::from_str(&out).expect("status --json");
    assert_eq!(st.len(), 100);
    for i in &st {
        assert_eq!(i["state"], "stopped", "{i}");
    }
    let daemon = sb.daemon_pid();
    sb.wait_for("no job left running", || {
        sb.survivors().iter().all(|&p| p == daemon)
    });
}
