//! When the daemon dies, plus the daemon as a process: pidfile, zombies,
//! idle cost.

use crate::sandbox::{alive, kill, Sandbox};

#[test]
fn a_second_daemon_is_refused_naming_the_first() {
    let mut sb = Sandbox::with_programs("second", "  a:\n    cmd: sleep 1000\n");
    sb.start();
    let out = sb.run_second_daemon();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains(&sb.daemon_pid().to_string()), "{err}");
    sb.sup_ok(&["status"]);
}

#[test]
fn kill_9_of_the_daemon_leaves_nothing_and_the_next_one_cleans_up() {
    let mut sb = Sandbox::with_programs(
        "orphans",
        r#"
  plain:
    cmd: "sleep 1000"
    starttime: 0
  family:
    cmd: ["sh", "-c", "sleep 1000 & echo $! > $OUT/grandchild; wait"]
    starttime: 0
  parked:
    cmd: "sleep 1000"
    starttime: 0
"#,
    );
    sb.start();
    sb.wait_state("plain", "running");
    sb.wait_state("family", "running");
    sb.wait_state("parked", "running");
    sb.sup_ok(&["stop", "parked"]);
    sb.wait_for("grandchild pid", || {
        !sb.read("grandchild").trim().is_empty()
    });
    let grandchild: u32 = sb.read("grandchild").trim().parse().expect("pid");
    let plain = sb.pid("plain").expect("pid");
    let family = sb.pid("family").expect("pid");

    kill(sb.daemon_pid(), 9);
    sb.kill_daemon_hard();
    // Direct children die with the daemon (parent-death signal).
    sb.wait_for("children to die with the daemon", || {
        !alive(plain) && !alive(family)
    });
    // The grandchild escaped the parent-death signal; the next daemon kills its group.
    sb.start();
    sb.wait_for("the leftover grandchild to be killed", || {
        !alive(grandchild)
    });
    assert!(
        sb.log().contains("left behind by a previous daemon"),
        "{}",
        sb.log()
    );
    // Operator intent survives: `parked` was stopped and stays stopped.
    sb.wait_state("plain", "running");
    assert_eq!(sb.state("parked"), "stopped");
}

#[test]
fn what_only_the_journal_recorded_survives_kill_9() {
    let mut sb = Sandbox::with_programs(
        "journal",
        r#"
  crashy:
    cmd: "sleep 1000"
    starttime: 0
  parked:
    cmd: "sleep 1000"
    starttime: 0
"#,
    );
    sb.start();
    sb.wait_state("crashy", "running");
    sb.wait_state("parked", "running");
    let first = sb.pid("crashy").expect("pid");
    kill(first, 9);
    sb.wait_for("crashy to run again", || {
        sb.pid("crashy").is_some_and(|p| p != first) && sb.state("crashy") == "running"
    });
    sb.sup_ok(&["stop", "parked"]);
    // Both changes came after the snapshot the daemon wrote at start: lines of the journal.
    let snapshot = sb.read("sup.state");
    assert!(snapshot.contains("\"want_up\":true"), "{snapshot}");
    assert!(!snapshot.contains("\"want_up\":false"), "{snapshot}");
    assert!(!snapshot.contains("\"restarts\":1"), "{snapshot}");
    let journal = sb.read("sup.state.journal");
    assert!(journal.contains("\"want_up\":false"), "{journal}");
    assert!(journal.contains("\"restarts\":1"), "{journal}");

    kill(sb.daemon_pid(), 9);
    sb.kill_daemon_hard();
    // And a line cut short, as a daemon killed in the middle of a write leaves it.
    let mut j = std::fs::OpenOptions::new()
        .append(true)
        .open(sb.path("sup.state.journal"))
        .expect("journal");
    std::io::Write::write_all(&mut j, br#"{"name":"parked","want_up":tr"#).expect("append");
    drop(j);
    sb.start();
    let st = sb.wait_state("crashy", "running");
    assert_eq!(st["restarts"], 1, "{st}");
    assert_eq!(sb.state("parked"), "stopped");
    // The new daemon started from a fresh snapshot, with what it restored.
    assert!(sb.read("sup.state").contains("\"want_up\":false"));
}

#[test]
fn a_program_a_reload_removed_is_forgotten_by_the_next_daemon() {
    let keep = "  keep:\n    cmd: sleep 1000\n    starttime: 0\n";
    let gone = "  gone:\n    cmd: sleep 1000\n    starttime: 0\n";
    let mut sb = Sandbox::with_programs("forgotten", &format!("{keep}{gone}"));
    sb.start();
    sb.wait_state("gone", "running");
    sb.sup_ok(&["stop", "gone"]);
    sb.write("sup.yaml", &format!("programs:\n{keep}"));
    sb.sup_ok(&["reload"]);
    // Retired (its record moved to the retiring key), then freed: both keys have a tombstone.
    sb.wait_for("the retired instance's tombstone", || {
        sb.read("sup.state.journal")
            .contains(r#"{"removed":"gone","retiring":true}"#)
    });
    let journal = sb.read("sup.state.journal");
    assert!(journal.contains(r#"{"removed":"gone"}"#), "{journal}");
    // The program comes back in the config the next daemon reads.
    sb.write("sup.yaml", &format!("programs:\n{keep}{gone}"));
    kill(sb.daemon_pid(), 9);
    sb.kill_daemon_hard();
    sb.start();
    // Nothing of the old `gone` is restored, not even the stop: it starts like a new program.
    sb.wait_state("gone", "running");
    sb.wait_state("keep", "running");
}

#[test]
fn no_zombies_after_200_quick_exits() {
    // 200 instances that exit at once, each orphaning a grandchild the daemon adopts as
    // subreaper: every one of the 400 processes must be reaped.
    let mut sb = Sandbox::with_programs(
        "zombies",
        r#"
  blip:
    cmd: ["sh", "-c", "sleep 0.05 & exit 0"]
    numprocs: 200
    autorestart: never
    starttime: 0
    stdout: discard
    stderr: discard
"#,
    );
    sb.start();
    sb.wait_for("200 exits", || {
        sb.status()
            .iter()
            .filter(|i| i["state"] == "exited")
            .count()
            == 200
    });
    let daemon = sb.daemon_pid();
    sb.wait_for("every orphan reaped", || zombie_children(daemon).is_empty());
    // Children of the daemon that still live would be orphans that escaped reaping.
    let log = sb.log();
    assert_eq!(
        log.matches("exited code=0 (expected)").count(),
        200,
        "{log}"
    );
}

fn zombie_children(parent: u32) -> Vec<u32> {
    let mut found = Vec::new();
    for e in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Ok(pid) = e.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
        let Some((_, rest)) = stat.rsplit_once(')') else {
            continue;
        };
        let f: Vec<&str> = rest.split_whitespace().collect();
        if f.first() == Some(&"Z") && f.get(1) == Some(&parent.to_string().as_str()) {
            found.push(pid);
        }
    }
    found
}

fn switches(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .filter(|l| {
            l.starts_with("voluntary_ctxt_switches") || l.starts_with("nonvoluntary_ctxt_switches")
        })
        .filter_map(|l| l.split_whitespace().nth(1)?.parse::<u64>().ok())
        .sum()
}

#[test]
fn an_idle_daemon_with_100_jobs_makes_no_wakeups() {
    let mut sb = Sandbox::with_programs(
        "idle",
        "  idle:\n    cmd: sleep 100000\n    numprocs: 100\n    starttime: 0.2\n",
    );
    sb.start();
    sb.wait_for("100 running", || {
        sb.status()
            .iter()
            .filter(|i| i["state"] == "running")
            .count()
            == 100
    });
    let pid = sb.daemon_pid();
    // Settled: the last client's hang-up is behind it once its count of context switches
    // stops moving for half a second.
    let mut last = switches(pid);
    sb.wait_for("the daemon to settle", || {
        std::thread::sleep(std::time::Duration::from_millis(500));
        let now = switches(pid);
        std::mem::replace(&mut last, now) == now
    });
    // The measurement itself: a fixed window, not a wait for a condition.
    let before = switches(pid);
    std::thread::sleep(std::time::Duration::from_secs(3));
    let after = switches(pid);
    // A tick of any period under 3 s would show here.
    assert_eq!(after - before, 0, "{} wakeups in 3 s", after - before);
}
