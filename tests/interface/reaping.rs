//! Reaping: every end is seen, however many come at once and whatever the daemon was doing.
//! Each SIGCHLD names its child; ends merged into one pending SIGCHLD are found by the
//! `waitpid(-1)` sweep, which runs less often while it finds nothing.

use std::collections::{BTreeMap, HashSet};
use std::process::Command;
use std::time::{Duration, Instant};

use crate::sandbox::{alive, children, Sandbox};

/// `kill -SIG` to all of `pids` in one command, so their ends come as close together as they
/// can.
fn kill_all(pids: &[u32], sig: &str) {
    let _ = Command::new("kill")
        .arg(format!("-{sig}"))
        .arg("--")
        .args(pids.iter().map(u32::to_string))
        .status();
}

/// Every instance's pid once all are running (waits for that).
fn running_pids(sb: &Sandbox, n: usize) -> BTreeMap<String, u32> {
    let mut pids = BTreeMap::new();
    sb.wait_for(&format!("{n} instances running"), || {
        pids = sb
            .status()
            .into_iter()
            .filter(|i| i["state"] == "running")
            .filter_map(|i| Some((i["name"].as_str()?.to_string(), i["pid"].as_u64()? as u32)))
            .collect();
        pids.len() == n
    });
    pids
}

/// Wait until every instance runs again under a pid other than `before`'s.
fn wait_all_replaced(sb: &Sandbox, before: &BTreeMap<String, u32>) {
    sb.wait_for("every killed instance to run again", || {
        let now = sb.status();
        now.len() == before.len()
            && now.iter().all(|i| {
                let name = i["name"].as_str().unwrap_or("");
                i["state"] == "running"
                    && i["pid"].as_u64().map(|p| p as u32) != before.get(name).copied()
            })
    });
}

/// A sandbox with `n` instances of `sleep 1000`, output discarded.
fn sleepers(tag: &str, n: usize) -> Sandbox {
    Sandbox::with_programs(
        tag,
        &format!(
            r#"
  w:
    cmd: ["sleep", "1000"]
    numprocs: {n}
    starttime: 0
    stdout: discard
    stderr: discard
"#
        ),
    )
}

#[test]
fn many_children_killed_at_once_are_all_restarted() {
    let n = 150;
    let mut sb = sleepers("reap-many", n);
    sb.start();
    let before = running_pids(&sb, n);
    let pids: Vec<u32> = before.values().copied().collect();
    // Ends this close together merge into a few SIGCHLDs: only the sweeps find the rest.
    kill_all(&pids, "KILL");
    wait_all_replaced(&sb, &before);
    assert!(pids.iter().all(|&p| !alive(p)));
}

#[test]
fn jobs_killed_while_the_daemon_is_stopped_are_all_noticed() {
    // A stopped daemon reads no signal: every SIGCHLD after the first merges into the
    // pending one, as when the loop is busy for a long turn.
    let n = 40;
    let mut sb = sleepers("reap-busy", n);
    sb.start();
    let before = running_pids(&sb, n);
    let daemon = sb.daemon_pid();
    kill_all(&[daemon], "STOP");
    let pids: Vec<u32> = before.values().copied().collect();
    for chunk in pids.chunks(10) {
        kill_all(chunk, "KILL");
    }
    // Every victim is a zombie (its end not yet seen) before the daemon goes on.
    let deadline = Instant::now() + Duration::from_secs(10);
    while pids.iter().any(|&p| alive(p)) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(5));
    }
    kill_all(&[daemon], "CONT");
    wait_all_replaced(&sb, &before);
}

#[test]
fn orphans_that_end_together_are_reaped() {
    // Each instance leaves ten orphans (reparented to the daemon, its subreaper) that end at
    // the same moment: their SIGCHLDs merge, and no instance waits for them.
    let mut sb = Sandbox::with_programs(
        "reap-orphans",
        r#"
  forker:
    cmd: ["sh", "-c", "for i in 1 2 3 4 5 6 7 8 9 10; do sh -c 'sleep 1 &'; done; exec sleep 1000"]
    numprocs: 3
    starttime: 0
    stdout: discard
    stderr: discard
"#,
    );
    sb.start();
    let daemon = sb.daemon_pid();
    let leaders: HashSet<u32> = running_pids(&sb, 3).into_values().collect();
    let mut orphans = HashSet::new();
    sb.wait_for("the orphans to be the daemon's children", || {
        for (pid, _) in children(daemon) {
            if !leaders.contains(&pid) {
                orphans.insert(pid);
            }
        }
        orphans.len() >= 20
    });
    sb.wait_for("every orphan to be reaped", || {
        let kids = children(daemon);
        kids.iter().all(|(pid, _)| leaders.contains(pid)) && orphans.iter().all(|&p| !alive(p))
    });
    // Reaping strangers left the jobs alone.
    let after: HashSet<u32> = running_pids(&sb, 3).into_values().collect();
    assert_eq!(after, leaders);
}
