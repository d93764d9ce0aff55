//! cgroups: each instance in a cgroup of its own, a stop that kills the whole cgroup, the
//! limit keys, OOM kills told apart, usage of the whole cgroup, and cleanup. Each test runs
//! in the modes the host offers and says why it skips otherwise (README "cgroups").

use std::path::PathBuf;

use crate::sandbox::{alive, kill, Sandbox};

/// The mode the daemon logged at start (`v2`, `hybrid`, `v1`, `none`) and the whole line.
fn mode(sb: &Sandbox) -> (String, String) {
    let mut line = String::new();
    sb.wait_for("the cgroups line in the event log", || {
        line = sb
            .log()
            .lines()
            .find(|l| l.contains(" cgroups: "))
            .unwrap_or("")
            .to_string();
        !line.is_empty()
    });
    let word = line
        .split(" cgroups: ")
        .nth(1)
        .and_then(|r| r.split_whitespace().next())
        .unwrap_or("")
        .to_string();
    (word, line)
}

/// Start the daemon; `None` (after printing why) when the host gives it no cgroups, or no
/// limits when `limits` is asked for.
fn started(sb: &mut Sandbox, limits: bool) -> Option<String> {
    sb.start();
    let (word, line) = mode(sb);
    if word == "none" {
        eprintln!("skipped: this host offers no cgroups to the daemon: {line}");
        return None;
    }
    if limits && line.contains("limits unavailable") {
        eprintln!("skipped: cgroups without limits on this host: {line}");
        return None;
    }
    Some(line)
}

/// `/proc/PID/cgroup`'s lines as (controllers, path).
fn cgroups_of(pid: u32) -> Vec<(String, String)> {
    std::fs::read_to_string(format!("/proc/{pid}/cgroup"))
        .unwrap_or_default()
        .lines()
        .filter_map(|l| {
            let mut f = l.splitn(3, ':');
            let _ = f.next()?;
            Some((f.next()?.to_string(), f.next()?.to_string()))
        })
        .collect()
}

/// The process's cgroup in the unified hierarchy, else in the first v1 one sup uses.
fn main_cgroup(pid: u32) -> String {
    let all = cgroups_of(pid);
    all.iter()
        .find(|(c, _)| c.is_empty())
        .filter(|(_, p)| p.contains("/sup-"))
        .or_else(|| all.iter().find(|(_, p)| p.contains("/sup-")))
        .map(|(_, p)| p.clone())
        .unwrap_or_default()
}

/// The directories of the process's cgroups sup made (every hierarchy), as paths.
fn cgroup_dirs(pid: u32) -> Vec<PathBuf> {
    let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    let mut out = Vec::new();
    for (ctl, path) in cgroups_of(pid) {
        if !path.contains("/sup-") {
            continue;
        }
        for m in mounts.lines() {
            let Some((left, right)) = m.split_once(" - ") else {
                continue;
            };
            let l: Vec<&str> = left.split(' ').collect();
            let r: Vec<&str> = right.split(' ').collect();
            if l.len() < 5 || r.len() < 3 || l[3] != "/" {
                continue;
            }
            let fits = if ctl.is_empty() {
                r[0] == "cgroup2"
            } else {
                r[0] == "cgroup" && ctl.split(',').all(|c| r[2].split(',').any(|o| o == c))
            };
            if fits {
                out.push(PathBuf::from(format!("{}{path}", l[4])));
                break;
            }
        }
    }
    out
}

/// Wait until `pid` leads a process group of its own (it has called `setsid`).
fn wait_left_group(sb: &Sandbox, pid: u32) {
    sb.wait_for("the escapee to leave the group", || {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
        stat.rsplit_once(')')
            .and_then(|(_, r)| r.split_whitespace().nth(2))
            .is_some_and(|pgrp| pgrp == pid.to_string())
    });
}

/// Kills the escapee if the test fails before the daemon did (it has no `SUP_` tag for
/// the sandbox to find).
struct Reap(Option<u32>);

/// A started daemon whose job `runaway` leaves an escapee with a new session and an empty
/// environment; the escapee's pid, killed when the guard drops. `None` (the test skips) when
/// the host has no cgroups.
fn runaway(name: &str, extra: &str) -> Option<(Sandbox, u32, Reap)> {
    let mut sb = Sandbox::with_programs(
        name,
        &format!(
            "\n  runaway:\n    cmd: [\"sh\", \"-c\", \"env -i setsid sleep 1000 & echo $! > $OUT/escapee; \
             exec sleep 1000\"]\n    starttime: 0\n{extra}"
        ),
    );
    started(&mut sb, false)?;
    sb.wait_state("runaway", "running");
    sb.wait_for("the escapee's pid", || {
        sb.read("escapee").trim().parse::<u32>().is_ok()
    });
    let escapee: u32 = sb.read("escapee").trim().parse().expect("pid");
    Some((sb, escapee, Reap(Some(escapee))))
}

impl Drop for Reap {
    fn drop(&mut self) {
        if let Some(pid) = self.0 {
            if alive(pid) {
                kill(pid, 9);
            }
        }
    }
}

#[test]
fn each_instance_and_what_it_starts_run_in_a_cgroup_of_their_own() {
    let mut sb = Sandbox::with_programs(
        "cg-own",
        r#"
  w:
    cmd: ["sh", "-c", "sleep 1000 & echo $! > $OUT/child.$SUP_PROCESS_NUM; wait"]
    numprocs: 2
    starttime: 0
"#,
    );
    if started(&mut sb, false).is_none() {
        return;
    }
    sb.wait_state("w:0", "running");
    sb.wait_state("w:1", "running");
    let p0 = sb.pid("w:0").expect("pid");
    let p1 = sb.pid("w:1").expect("pid");
    let (c0, c1) = (main_cgroup(p0), main_cgroup(p1));
    assert!(c0.ends_with("/w/w:0"), "{c0}");
    assert!(c1.ends_with("/w/w:1"), "{c1}");
    let daemon = main_cgroup(sb.daemon_pid());
    assert_ne!(daemon, c0, "the daemon is not in its job's cgroup");
    sb.wait_for("the children's pids", || {
        !sb.read("child.0").trim().is_empty() && !sb.read("child.1").trim().is_empty()
    });
    let child: u32 = sb.read("child.0").trim().parse().expect("pid");
    assert_eq!(
        main_cgroup(child),
        c0,
        "a child of the job is in the job's cgroup"
    );
    // Every hierarchy sup uses holds it, not only the first.
    assert!(!cgroup_dirs(p0).is_empty());
}

#[test]
fn an_escapee_with_a_clean_environment_dies_with_the_cgroup_on_stop() {
    // `env -i` removes the tags the sweep looks for, and `setsid` leaves the group: only the
    // cgroup still knows this process belongs to the job.
    let Some((sb, escapee, guard)) = runaway("cg-escape", "    stoptime: 5\n") else {
        return;
    };
    wait_left_group(&sb, escapee);
    let leader = sb.pid("runaway").expect("pid");
    assert_eq!(main_cgroup(escapee), main_cgroup(leader));
    let started = std::time::Instant::now();
    sb.sup_ok(&["stop", "runaway"]);
    assert!(!alive(escapee), "the stop ended with the escapee alive");
    // Killed when the group was found empty, not at the end of stoptime.
    assert!(
        started.elapsed() < std::time::Duration::from_secs(4),
        "{:?}",
        started.elapsed()
    );
    assert!(sb
        .log()
        .contains("left its process group but not its cgroup"));
    drop(guard);
}

#[test]
fn memory_max_gets_a_hog_oom_killed_and_status_says_oom() {
    let mut sb = Sandbox::with_programs(
        "cg-oom",
        r#"
  hog:
    cmd: ["tail", "/dev/zero"]
    memory_max: 32M
    starttime: 0
    autorestart: never
"#,
    );
    if started(&mut sb, true).is_none() {
        return;
    }
    let st = sb.wait_state("hog", "exited");
    assert_eq!(st["last_exit"], 137, "{st}");
    assert_eq!(st["exit_reason"], "oom", "{st}");
    let text = sb.sup_ok(&["status", "hog"]);
    assert!(text.contains("last_exit=137(oom)"), "{text}");
    let log = sb.log();
    assert!(
        log.lines()
            .any(|l| l.contains("WARN hog oom: killed by the kernel's OOM killer (memory_max 32M)")),
        "{log}"
    );
}

#[test]
fn a_sigkill_that_is_not_the_oom_killer_is_a_signal() {
    let mut sb = Sandbox::with_programs(
        "cg-notoom",
        r#"
  victim:
    cmd: ["sleep", "1000"]
    memory_max: 64M
    starttime: 0
    autorestart: never
"#,
    );
    if started(&mut sb, true).is_none() {
        return;
    }
    sb.wait_state("victim", "running");
    kill(sb.pid("victim").expect("pid"), 9);
    let st = sb.wait_state("victim", "exited");
    assert_eq!(st["last_exit"], 137, "{st}");
    assert_eq!(st["exit_reason"], "signal", "{st}");
}

#[test]
fn pids_max_contains_a_fork_bomb() {
    let mut sb = Sandbox::with_programs(
        "cg-pids",
        r#"
  bomb:
    cmd: ["sh", "-c", "n=0; while [ $n -lt 50 ]; do sleep 1000 & n=$((n+1)); echo $n > $OUT/forked; done; wait"]
    pids_max: 5
    starttime: 0
    autorestart: never
"#,
    );
    if started(&mut sb, true).is_none() {
        return;
    }
    // The shell and four sleeps are five: the fifth fork fails, the shell gives up, and
    // what it started is killed with its cgroup.
    let st = sb.wait_state("bomb", "exited");
    let forked: u32 = sb.read("forked").trim().parse().unwrap_or(0);
    assert_eq!(forked, 4, "{st}");
    let err = sb.read("logs/bomb.err");
    assert!(err.to_lowercase().contains("fork"), "{err}");
    let daemon = sb.daemon_pid();
    sb.wait_for("the sleeps to be killed", || {
        sb.survivors().iter().all(|&p| p == daemon)
    });
}

#[test]
fn status_shows_the_cpu_and_memory_of_the_whole_cgroup() {
    // The leader sleeps; one worker burns CPU, another holds 64 MB.
    let mut sb = Sandbox::new("cg-usage");
    sb.write(
        "sup.yaml",
        r#"daemon:
  http:
    listen: "127.0.0.1:0"
programs:
  busy:
    cmd: ["sh", "-c", "(while :; do :; done) & (x=$(head -c 64000000 /dev/zero | tr '\\0' a); sleep 1000; echo ${#x}) & exec sleep 1000"]
    starttime: 0
"#,
    );
    let Some(line) = started(&mut sb, false) else {
        return;
    };
    sb.wait_state("busy", "running");
    let leader = sb.pid("busy").expect("pid");
    let mut last = serde_json::Value::Null;
    sb.wait_for("the cgroup's CPU share in status", || {
        last = sb.instance("busy");
        last["cpu_percent"].as_f64().is_some_and(|c| c > 30.0)
    });
    if line.contains("memory") {
        sb.wait_for("the cgroup's memory in status", || {
            last = sb.instance("busy");
            last["rss_bytes"].as_u64().is_some_and(|b| b > 50_000_000)
        });
    } else {
        eprintln!("memory part skipped: no memory controller: {line}");
    }
    // The leader's own figures are far below what status shows.
    let stat = std::fs::read_to_string(format!("/proc/{leader}/stat")).unwrap_or_default();
    let rss_pages: u64 = stat
        .rsplit_once(')')
        .and_then(|(_, r)| r.split_whitespace().nth(21))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    assert!(rss_pages * 4096 < 20_000_000, "{last}");
    // /metrics has the same figures: the cgroup's memory, and CPU seconds beyond the
    // leader's own (which sleeps).
    let metrics = scrape(&sb);
    let value = |series: &str| -> f64 {
        metrics
            .lines()
            .find(|l| l.starts_with(series))
            .and_then(|l| l.rsplit(' ').next())
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("no {series} in {metrics}"))
    };
    assert!(value("sup_instance_cpu_seconds_total{") > 0.05, "{metrics}");
    if line.contains("memory") {
        assert!(
            value("sup_instance_memory_rss_bytes{") > 50_000_000.0,
            "{metrics}"
        );
    }
}

/// `GET /metrics` from a daemon listening on 127.0.0.1:0 (the port from its event log).
fn scrape(sb: &Sandbox) -> String {
    use std::io::{Read, Write};
    let mut port = None;
    sb.wait_for("the HTTP port in the event log", || {
        port = sb
            .log()
            .lines()
            .find_map(|l| l.split("serving HTTP on 127.0.0.1:").nth(1))
            .and_then(|p| p.trim().parse::<u16>().ok());
        port.is_some()
    });
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port.unwrap_or(0))).expect("connect");
    s.set_read_timeout(Some(crate::sandbox::PATIENCE))
        .expect("timeout");
    let _ = s.write_all(b"GET /metrics HTTP/1.1\r\nHost: localhost\r\n\r\n");
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out);
    String::from_utf8_lossy(&out).into_owned()
}

#[test]
fn cgroup_directories_are_removed_after_a_stop_and_at_shutdown() {
    let mut sb = Sandbox::with_programs(
        "cg-clean",
        r#"
  a:
    cmd: ["sleep", "1000"]
    starttime: 0
  b:
    cmd: ["sleep", "1000"]
    starttime: 0
"#,
    );
    if started(&mut sb, false).is_none() {
        return;
    }
    sb.wait_state("a", "running");
    sb.wait_state("b", "running");
    let dirs = cgroup_dirs(sb.pid("a").expect("pid"));
    assert!(!dirs.is_empty());
    assert!(dirs.iter().all(|d| d.is_dir()), "{dirs:?}");
    let subtree: Vec<PathBuf> = dirs
        .iter()
        .filter_map(|d| d.parent()?.parent().map(PathBuf::from))
        .collect();
    sb.sup_ok(&["stop", "a"]);
    sb.wait_for("a's cgroups to be removed", || {
        dirs.iter().all(|d| !d.exists())
    });
    // Its program's directory too, with no instance left in it.
    assert!(dirs.iter().all(|d| d.parent().is_some_and(|p| !p.exists())));
    // A start makes it again.
    sb.sup_ok(&["start", "a"]);
    // A child born in its v2 cgroup may still be joining the v1 ones (before its exec).
    let pid = sb.pid("a").expect("pid");
    let mut again = Vec::new();
    sb.wait_for("a's cgroups again", || {
        again = cgroup_dirs(pid);
        again.len() == dirs.len()
    });
    assert_eq!(again, dirs);
    sb.sup_ok(&["shutdown"]);
    sb.wait_daemon_exit();
    assert!(subtree.iter().all(|d| !d.exists()), "{subtree:?}");
}

#[test]
fn a_limit_the_host_cannot_apply_is_a_warning_not_a_failure() {
    // Only testable where limits are unavailable; elsewhere the limit must be applied.
    let mut sb = Sandbox::with_programs(
        "cg-nolimit",
        r#"
  capped:
    cmd: ["sleep", "1000"]
    cpu_max: 50%
    starttime: 0
"#,
    );
    sb.start();
    let (word, line) = mode(&sb);
    sb.wait_state("capped", "running");
    let pid = sb.pid("capped").expect("pid");
    if word == "none" || line.contains("limits unavailable") {
        assert!(sb.log().contains("capped limits not applied: cpu_max"));
        return;
    }
    // Applied: the quota is half of the 100 ms period.
    let dirs = cgroup_dirs(pid);
    let found = dirs.iter().any(|d| {
        std::fs::read_to_string(d.join("cpu.max")).is_ok_and(|t| t.trim() == "50000 100000")
            || std::fs::read_to_string(d.join("cpu.cfs_quota_us"))
                .is_ok_and(|t| t.trim() == "50000")
    });
    assert!(found, "no cpu quota in {dirs:?}");
    assert!(!sb.log().contains("limits not applied"));
}

#[test]
fn the_next_daemon_kills_what_a_killed_one_left_in_its_cgroups() {
    // The escapee has neither the group nor the tags: after `kill -9` of the daemon only its
    // cgroup says whose it is, and the next daemon on the same state file empties it.
    let Some((mut sb, escapee, guard)) = runaway("cg-stale", "") else {
        return;
    };
    // Out of the group first: else the next daemon kills it with the recorded group.
    wait_left_group(&sb, escapee);
    assert!(!cgroup_dirs(escapee).is_empty());
    let leader = sb.pid("runaway").expect("pid");
    sb.kill_daemon_hard();
    // The leader dies with the daemon (parent-death signal); the escapee does not.
    sb.wait_for("the leader to die with the daemon", || !alive(leader));
    assert!(
        alive(escapee),
        "the escapee should have outlived the daemon"
    );
    let _ = std::fs::remove_file(sb.path("escapee"));
    sb.start();
    sb.wait_for("the escapee to be gone", || !alive(escapee));
    assert!(
        sb.log()
            .contains("killed what a previous daemon left in 1 cgroup(s)"),
        "{}",
        sb.log()
    );
    // The new instance got a fresh directory of the same name.
    sb.wait_state("runaway", "running");
    drop(guard);
}

/// The memory limit of the process's cgroup as the kernel reports it, `None` for none.
fn memory_limit(pid: u32) -> Option<Option<u64>> {
    for d in cgroup_dirs(pid) {
        if let Ok(t) = std::fs::read_to_string(d.join("memory.max")) {
            return Some(t.trim().parse().ok());
        }
        if let Ok(t) = std::fs::read_to_string(d.join("memory.limit_in_bytes")) {
            // v1 says "no limit" with a huge number.
            return Some(t.trim().parse().ok().filter(|&n: &u64| n < 1 << 60));
        }
    }
    None
}

#[test]
fn a_reload_that_changes_or_removes_memory_max_rewrites_the_kept_cgroup() {
    let job = |limit: &str| {
        format!("programs:\n  svc:\n    cmd: [\"sleep\", \"1000\"]\n    starttime: 0\n{limit}")
    };
    let mut sb = Sandbox::new("cg-reload");
    sb.write("sup.yaml", &job("    memory_max: 64M\n"));
    if started(&mut sb, true).is_none() {
        return;
    }
    sb.wait_state("svc", "running");
    let first = sb.pid("svc").expect("pid");
    assert_eq!(memory_limit(first), Some(Some(64 << 20)));
    let started_dirs = cgroup_dirs(first);
    for (limit, want) in [("    memory_max: 128M\n", Some(128 << 20)), ("", None)] {
        let before = sb.pid("svc").expect("pid");
        sb.write("sup.yaml", &job(limit));
        sb.sup_ok(&["reload"]);
        sb.wait_for("the restarted process", || {
            sb.pid("svc").is_some_and(|p| p != before) && sb.state("svc") == "running"
        });
        let pid = sb.pid("svc").expect("pid");
        let got = memory_limit(pid);
        match want {
            Some(_) => assert_eq!(got, Some(want), "after {limit:?}"),
            // No limit: a memory cgroup without one (v2), or none at all (a hybrid or v1
            // host joins the memory hierarchy only for memory_max), and the old directory
            // of the memory hierarchy removed.
            None => assert!(matches!(got, None | Some(None)), "after {limit:?}: {got:?}"),
        }
    }
    if !started_dirs.is_empty() {
        let now = cgroup_dirs(sb.pid("svc").expect("pid"));
        for d in &started_dirs {
            if !now.contains(d) {
                assert!(!d.exists(), "{d:?} left behind");
            }
        }
    }
}

#[test]
fn without_cgroups_a_limit_is_a_warning_and_the_tag_sweep_still_catches_escapees() {
    // Mode none, made here: every cgroup mount read-only in a mount namespace of the
    // daemon's own (root only; skipped elsewhere).
    let usable = std::process::Command::new("unshare")
        .args(["-m", "true"])
        .stderr(std::process::Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !usable {
        eprintln!("skipped: unshare -m is not permitted here");
        return;
    }
    let mut sb = Sandbox::with_programs(
        "cg-none",
        r#"
  runaway:
    cmd: ["sh", "-c", "setsid sleep 1000 & echo $! > $OUT/escapee; exec sleep 1000"]
    memory_max: 64M
    starttime: 0
"#,
    );
    let script = "for m in $(grep -E ' - cgroup2? ' /proc/self/mountinfo | cut -d' ' -f5); do \
                  mount -o remount,bind,ro \"$m\" || exit 1; done; exec \"$@\"";
    sb.wrapper = ["unshare", "-m", "sh", "-c", script, "sh"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    sb.start();
    let (word, line) = mode(&sb);
    assert_eq!(word, "none", "{line}");
    assert!(
        line.contains("stop uses process groups and the environment-tag sweep"),
        "{line}"
    );
    sb.wait_state("runaway", "running");
    sb.wait_for("the warning", || {
        sb.log()
            .contains("WARN runaway limits not applied: memory_max (cgroups: none")
    });
    sb.wait_for("the escapee's pid", || {
        sb.read("escapee").trim().parse::<u32>().is_ok()
    });
    let escapee: u32 = sb.read("escapee").trim().parse().expect("pid");
    let guard = Reap(Some(escapee));
    wait_left_group(&sb, escapee);
    assert!(
        !std::fs::read_to_string(format!("/proc/{escapee}/cgroup"))
            .unwrap_or_default()
            .contains("/sup-"),
        "no cgroup of sup's in mode none"
    );
    sb.sup_ok(&["stop", "runaway"]);
    sb.wait_for("the escapee to be gone", || !alive(escapee));
    assert!(sb
        .log()
        .contains("that had left the process group of runaway"));
    drop(guard);
}

/// The mount point of the cgroup2 hierarchy, if one is mounted.
fn unified_mount() -> Option<String> {
    let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    mounts.lines().find_map(|m| {
        let (left, right) = m.split_once(" - ")?;
        let l: Vec<&str> = left.split(' ').collect();
        (right.starts_with("cgroup2 ") && l.len() > 4).then(|| l[4].to_string())
    })
}

#[test]
fn a_child_is_in_its_cgroups_when_its_program_starts() {
    // The program itself reads where it is: no later step may have put it there.
    let mut sb = Sandbox::with_programs(
        "cg-born",
        r#"
  probe:
    cmd: ["cat", "/proc/self/cgroup"]
    starttime: 0
    autorestart: never
"#,
    );
    let Some(line) = started(&mut sb, false) else {
        return;
    };
    sb.wait_state("probe", "exited");
    let out = sb.read("logs/probe.out");
    let ours: Vec<&str> = out.lines().filter(|l| l.contains("/sup-")).collect();
    assert!(!ours.is_empty(), "{out}");
    assert!(
        ours.iter().all(|l| l.ends_with("/probe/probe")),
        "every cgroup of sup's is the instance's: {out}"
    );
    if line.contains("cgroups: v2") || line.contains("cgroups: hybrid") {
        let v2 = out.lines().find(|l| l.starts_with("0::")).unwrap_or("");
        assert!(
            v2.contains("/sup-") && v2.ends_with("/probe/probe"),
            "{out}"
        );
    }
}

/// Lines of a `strace -f -y` log that write to the `cgroup.procs` of an instance `inst` in the
/// hierarchy mounted at `under`.
fn procs_writes<'a>(trace: &'a str, under: &str, inst: &str) -> Vec<&'a str> {
    trace
        .lines()
        .filter(|l| l.contains("write(") && l.contains(&format!("<{under}/")))
        .filter(|l| l.contains(&format!("/{inst}/cgroup.procs>")))
        .collect()
}

#[test]
fn on_v2_a_child_is_born_in_its_cgroup_instead_of_joining_it() {
    let sb = Sandbox::with_programs(
        "cg-clone3",
        r#"
  born:
    cmd: ["sleep", "1000"]
    starttime: 0
"#,
    );
    // Every process followed (-f) and descriptors named (-y): who writes which cgroup.procs.
    let Some(traced) = crate::escapees_and_faults::daemon_under_strace(
        &sb,
        &["-f", "-y", "trace=clone,clone3,write"],
    ) else {
        return;
    };
    let (word, line) = mode(&sb);
    let Some(unified) = unified_mount().filter(|_| word == "v2" || word == "hybrid") else {
        eprintln!("skipped: no v2 cgroup for the daemon here: {line}");
        crate::escapees_and_faults::shutdown(&sb, traced);
        return;
    };
    sb.wait_state("born", "running");
    let pid = sb.pid("born").expect("pid");
    assert!(main_cgroup(pid).ends_with("/born/born"));
    let trace = sb.read("strace.out");
    assert!(
        trace
            .lines()
            .any(|l| l.contains("clone3(") && l.contains("CLONE_INTO_CGROUP")),
        "{trace}"
    );
    assert_eq!(
        procs_writes(&trace, &unified, "born/born"),
        Vec::<&str>::new()
    );
    // A crash that left nothing in the cgroup does not kill it, so the restart is born in
    // it too (a killed cgroup would make the next spawn join by a write).
    crate::sandbox::kill(pid, 9);
    sb.wait_for("a restart", || sb.pid("born").is_some_and(|p| p != pid));
    let trace = sb.read("strace.out");
    let born = trace
        .lines()
        .filter(|l| l.contains("clone3(") && l.contains("CLONE_INTO_CGROUP"))
        .count();
    assert!(born >= 2, "{born} clone3 calls:\n{trace}");
    assert_eq!(
        procs_writes(&trace, &unified, "born/born"),
        Vec::<&str>::new()
    );
    let trace = sb.read("strace.out");
    if word == "hybrid" {
        // Without a limit no v1 hierarchy is joined: no write to any cgroup.procs.
        assert!(
            !trace
                .lines()
                .any(|l| l.contains("write(") && l.contains("/born/born/cgroup.procs>")),
            "{trace}"
        );
    }
    crate::escapees_and_faults::shutdown(&sb, traced);
}

#[test]
fn without_clone3_a_child_joins_its_cgroup_by_writing_cgroup_procs() {
    let sb = Sandbox::new("cg-noclone3");
    sb.write(
        "sup.yaml",
        r#"daemon:
  loglevel: debug
programs:
  w:
    cmd: ["sleep", "1000"]
    numprocs: 2
    starttime: 0
"#,
    );
    // As on a kernel before 5.3: clone3 does not exist.
    let Some(traced) = crate::escapees_and_faults::daemon_under_strace(
        &sb,
        &[
            "-y",
            "trace=clone,clone3,write",
            "inject=clone3:error=ENOSYS",
        ],
    ) else {
        return;
    };
    let (word, line) = mode(&sb);
    if word != "v2" && word != "hybrid" {
        eprintln!("skipped: no v2 cgroup for the daemon here: {line}");
        crate::escapees_and_faults::shutdown(&sb, traced);
        return;
    }
    sb.wait_state("w:0", "running");
    sb.wait_state("w:1", "running");
    for name in ["w:0", "w:1"] {
        let pid = sb.pid(name).expect("pid");
        let v2 = cgroups_of(pid)
            .into_iter()
            .find(|(c, _)| c.is_empty())
            .map(|(_, p)| p)
            .unwrap_or_default();
        assert!(v2.ends_with(&format!("/w/{name}")), "{v2}");
    }
    let trace = sb.read("strace.out");
    // Refused once, remembered: the second spawn does not ask again.
    assert_eq!(trace.matches("clone3(").count(), 1, "{trace}");
    assert!(trace.contains("ENOSYS"), "{trace}");
    let log = sb.log();
    assert_eq!(
        log.matches("clone3(CLONE_INTO_CGROUP) refused").count(),
        1,
        "{log}"
    );
    crate::escapees_and_faults::shutdown(&sb, traced);
}

#[test]
fn a_restart_after_its_cgroup_was_killed_runs_in_the_same_cgroup() {
    // The first run exits before starttime: its group and cgroup are killed. Linux (6.18)
    // SIGKILLs a child clone3 makes in a cgroup killed before, so the next run must still
    // get into that cgroup without dying at birth.
    let mut sb = Sandbox::with_programs(
        "cg-rekill",
        r#"
  again:
    cmd: ["sh", "-c", "if [ -e $OUT/ran ]; then exec sleep 1000; fi; touch $OUT/ran; exit 1"]
    starttime: 1
    startretries: 3
"#,
    );
    if started(&mut sb, false).is_none() {
        return;
    }
    let st = sb.wait_state("again", "running");
    assert_eq!(st["restarts"], 1, "{st}");
    let pid = sb.pid("again").expect("pid");
    assert!(
        main_cgroup(pid).ends_with("/again/again"),
        "{}",
        main_cgroup(pid)
    );
    assert!(!sb.log().contains("signal=SIGKILL"), "{}", sb.log());
}
