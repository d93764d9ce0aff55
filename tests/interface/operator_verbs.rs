//! The operator's verbs beside start/stop: `sup tail --events` (the daemon's event log) and
//! `sup clear` (empty a job's output files while it runs), with a real daemon and real jobs.

use std::io::{BufRead, BufReader};
use std::os::unix::fs::MetadataExt;
use std::process::{Command, Stdio};
use std::time::Duration;

use crate::sandbox::{sup_bin, Sandbox};

#[test]
fn tail_events_shows_the_event_log_and_follows_it() {
    let mut sb = Sandbox::with_programs(
        "tail-events",
        "  web:\n    cmd: \"sleep 1000\"\n    starttime: 0.1\n  idle:\n    cmd: \"sleep 1000\"\n    autostart: false\n",
    );
    sb.start();
    sb.wait_state("web", "running");
    let out = sb.sup_ok(&["tail", "--events", "-n", "100"]);
    assert!(out.contains(" started"), "{out}");
    assert!(out.contains("web spawned"), "{out}");
    // The last lines are the log's last lines.
    let two = sb.sup_ok(&["tail", "--events", "-n", "2"]);
    assert_eq!(two.lines().count(), 2, "{two}");
    assert!(sb.log().ends_with(&two), "{two:?} is not the log's end");

    let mut follower = Command::new(sup_bin())
        .args(["tail", "--events", "-f", "-n", "0", "--socket"])
        .arg(sb.socket())
        .stdout(Stdio::piped())
        .spawn()
        .expect("tail --events -f");
    let stdout = follower.stdout.take().expect("stdout");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    // The follower is attached once the daemon has it: start the idle job until its spawn
    // is seen (a start sent before the follower attached would not be in a `-n 0` tail).
    let mut seen = Vec::new();
    sb.wait_for("the follower to see idle spawned", || {
        sb.sup_ok(&["restart", "idle"]);
        while let Ok(line) = rx.recv_timeout(Duration::from_millis(200)) {
            seen.push(line);
        }
        seen.iter().any(|l| l.contains("idle spawned"))
    });
    // Each followed line is a whole event-log line.
    assert!(
        seen.iter()
            .all(|l| l.split(' ').count() >= 3 && l.as_bytes()[4] == b'-'),
        "{seen:?}"
    );
    let _ = follower.kill();
    let _ = follower.wait();

    let json = sb.sup_ok(&["tail", "--events", "-n", "1", "--json"]);
    let v: serde_json::Value = serde_json::from_str(json.trim()).expect("one JSON line");
    assert_eq!(v["stream"], "events");
    assert!(v["time"].is_string(), "{json}");

    // A name and --events together is a usage error.
    assert_eq!(sb.sup(&["tail", "--events", "web"]).status.code(), Some(2));
}

#[test]
fn clear_empties_a_running_jobs_output_through_its_descriptor() {
    let mut sb = Sandbox::with_programs(
        "clear",
        "  chatty:\n    cmd: [\"sh\", \"-c\", \"i=0; while :; do i=$((i+1)); echo line$i; echo err$i >&2; sleep 0.02; done\"]\n    starttime: 0.1\n  quiet:\n    cmd: \"sleep 1000\"\n    stdout: discard\n    stderr: discard\n",
    );
    sb.start();
    sb.wait_state("chatty", "running");
    let pid = sb.pid("chatty");
    let out = sb.path("logs/chatty.out");
    let ino = std::fs::metadata(&out).expect("stdout file").ino();
    sb.wait_for("some output", || sb.read("logs/chatty.out").len() > 400);
    let before = sb.read("logs/chatty.out").len();

    let said = sb.sup_ok(&["clear", "chatty"]);
    assert!(
        said.contains("chatty") && said.contains("cleared"),
        "{said}"
    );
    let after = sb.read("logs/chatty.out");
    assert!(after.len() < before, "{} then {}", before, after.len());
    assert!(!after.contains("line1\n"), "the old start is still there");
    // The job kept running and writing; what it writes lands at the new start of the file,
    // with no hole of zeros where the old end was, in the same file.
    assert_eq!(sb.pid("chatty"), pid);
    sb.wait_for("output after the clear", || {
        sb.read("logs/chatty.out").len() > 30
    });
    let now = std::fs::read(&out).expect("read");
    assert_ne!(now[0], 0, "a hole of zeros before the new output");
    assert!(
        now.starts_with(b"line"),
        "{:?}",
        String::from_utf8_lossy(&now)
    );
    assert_eq!(std::fs::metadata(&out).expect("stdout file").ino(), ino);
    assert!(sb.log().contains("chatty cleared"), "{}", sb.log());

    // `all`, with JSON outcomes; a job with no files is fine and says so.
    let json = sb.sup_ok(&["clear", "all", "--json"]);
    let v: serde_json::Value = serde_json::from_str(json.trim()).expect("JSON");
    let outcomes = v["outcomes"].as_array().expect("outcomes");
    assert_eq!(outcomes.len(), 2, "{json}");
    assert!(outcomes.iter().all(|o| o["ok"] == true), "{json}");
    assert_eq!(sb.sup(&["clear", "nope"]).status.code(), Some(1));
}

#[test]
fn clear_of_a_stopped_job_does_not_follow_a_planted_symlink() {
    let mut sb = Sandbox::with_programs(
        "clear-link",
        "  once:\n    cmd: \"echo hello\"\n    autorestart: never\n    starttime: 0\n",
    );
    sb.start();
    sb.wait_for("its output", || sb.read("logs/once.out") == "hello\n");
    sb.wait_state("once", "exited");
    // Down: the daemon holds no descriptor, so clear opens the path, and must not follow this.
    sb.write("victim", "precious\n");
    let out = sb.path("logs/once.out");
    std::fs::remove_file(&out).expect("remove");
    std::os::unix::fs::symlink(sb.path("victim"), &out).expect("symlink");
    let res = sb.sup(&["clear", "once"]);
    assert_eq!(res.status.code(), Some(1), "{res:?}");
    let said = String::from_utf8_lossy(&res.stdout);
    assert!(
        said.contains("once") && said.contains("symbolic link"),
        "{res:?}"
    );
    assert_eq!(sb.read("victim"), "precious\n");

    // A regular file of a down job is emptied.
    std::fs::remove_file(&out).expect("remove");
    sb.write("logs/once.out", "old\n");
    sb.sup_ok(&["clear", "once"]);
    assert_eq!(sb.read("logs/once.out"), "");
}
