//! States and restarts: starting → running, failed starts → backoff → fatal, exit codes,
//! autorestart, restart counts, last_exit, and stop escalation.

use crate::sandbox::{alive, kill, Sandbox};

#[test]
fn seed_scenario_runs_restarts_and_stops_clean() {
    let mut sb = Sandbox::with_programs(
        "seed",
        r#"
  web:
    cmd: "sleep 1000"
    numprocs: 1
    umask: 022
    autostart: true
    autorestart: unexpected
    exitcodes: [0, 2]
    startretries: 3
    starttime: 0.2
    stopsignal: TERM
    stoptime: 2
  vogsphere:
    cmd: "sleep 1000"
    numprocs: 3
    umask: 077
    autorestart: unexpected
    exitcodes: 0
    starttime: 0.2
    stopsignal: USR1
    stoptime: 2
"#,
    );
    sb.start();
    sb.wait_state("web", "running");
    for i in 0..3 {
        sb.wait_state(&format!("vogsphere:{i}"), "running");
    }
    let text = sb.sup_ok(&["status", "web"]);
    assert!(text.contains("web"), "{text}");
    assert!(text.contains("running"), "{text}");
    assert!(text.contains("pid="), "{text}");
    assert!(text.contains("restarts=0"), "{text}");

    // A crash is restarted, counted, and its signal recorded.
    let pid = sb.pid("web").expect("web pid");
    kill(pid, 9);
    sb.wait_for("web to be restarted with a new pid", || {
        let i = sb.instance("web");
        i["state"] == "running" && i["pid"].as_u64() != Some(u64::from(pid))
    });
    let web = sb.instance("web");
    assert_eq!(web["restarts"], 1);
    assert_eq!(web["last_exit"], 137);

    let pids: Vec<u32> = (0..3)
        .filter_map(|i| sb.pid(&format!("vogsphere:{i}")))
        .collect();
    let out = sb.sup_ok(&["stop", "vogsphere"]);
    assert!(out.contains("vogsphere:0: stopped"), "{out}");
    for p in pids {
        assert!(!alive(p), "vogsphere pid {p} outlived its stop");
    }
    assert_eq!(sb.state("vogsphere:1"), "stopped");
}

#[test]
fn fail_fast_backs_off_then_goes_fatal() {
    let mut sb = Sandbox::with_programs(
        "fatal",
        r#"
  crash:
    cmd: ["sh", "-c", "echo boom >&2; exit 3"]
    starttime: 5
    startretries: 2
"#,
    );
    sb.start();
    let fatal = sb.wait_state("crash", "fatal");
    assert_eq!(fatal["last_exit"], 3);
    let reason = fatal["reason"].as_str().unwrap_or("");
    assert!(reason.contains("3 failed starts"), "reason: {reason}");
    let log = sb.log();
    assert_eq!(log.matches("crash spawned").count(), 3, "{log}");
    assert!(log.contains("crash backoff"), "{log}");
    assert!(log.contains("crash fatal"), "{log}");
    assert!(sb.read("logs/crash.err").contains("boom"));
    // `start` on a fatal instance tries again (and fails again, saying why).
    let out = sb.sup(&["start", "crash"]);
    assert_eq!(out.status.code(), Some(1));
}

#[test]
fn an_exec_failure_with_starttime_0_is_a_failed_start_not_a_running_job() {
    // The exec's failure is known before the spawn is reported: the job never counts as
    // running, and a shutdown does not wait out a stoptime for it.
    let mut sb = Sandbox::with_programs(
        "noexec0",
        r#"
  noexec:
    cmd: ./not-executable.sh
    starttime: 0
    startretries: 0
  ghost:
    cmd: no-such-program-anywhere
    starttime: 0
    startretries: 0
"#,
    );
    sb.write("not-executable.sh", "#!/bin/sh\necho hi\n");
    sb.start();
    let noexec = sb.wait_state("noexec", "fatal");
    let reason = noexec["reason"].as_str().unwrap_or("");
    assert!(
        reason.contains("not-executable.sh: permission denied"),
        "{reason}"
    );
    let ghost = sb.wait_state("ghost", "fatal");
    let reason = ghost["reason"].as_str().unwrap_or("");
    assert!(
        reason.contains("no-such-program-anywhere: no such file or directory"),
        "{reason}"
    );
    let log = sb.log();
    assert!(!log.contains(" bug: "), "{log}");
    assert!(!log.contains("noexec running"), "{log}");
}

#[test]
fn a_command_that_cannot_run_is_a_failed_start_with_the_reason() {
    let mut sb = Sandbox::with_programs(
        "noexec",
        r#"
  ghost:
    cmd: /nonexistent/ghostd --serve
    startretries: 0
  lost:
    cmd: "true"
    workingdir: /nonexistent/dir
    startretries: 0
  noexec:
    cmd: ./not-executable.sh
    startretries: 0
"#,
    );
    sb.write("not-executable.sh", "#!/bin/sh\necho hi\n");
    sb.start();
    let noexec = sb.wait_state("noexec", "fatal");
    let reason = noexec["reason"].as_str().unwrap_or("");
    assert!(
        reason.contains("not-executable.sh: permission denied"),
        "{reason}"
    );
    assert!(sb.log().contains("noexec spawn failed"), "{}", sb.log());
    let ghost = sb.wait_state("ghost", "fatal");
    let reason = ghost["reason"].as_str().unwrap_or("");
    assert!(reason.contains("/nonexistent/ghostd"), "{reason}");
    assert!(reason.contains("no such file"), "{reason}");
    let lost = sb.wait_state("lost", "fatal");
    assert!(
        lost["reason"]
            .as_str()
            .unwrap_or("")
            .contains("/nonexistent/dir"),
        "{lost}"
    );
    // The daemon carries on.
    sb.sup_ok(&["status"]);
}

/// Each autorestart mode × an expected and an unexpected exit from `running`.
#[test]
fn autorestart_modes_against_expected_and_unexpected_exits() {
    let mut programs = String::new();
    for mode in ["always", "never", "unexpected"] {
        for (kind, code) in [("ok", 0), ("bad", 7)] {
            // Runs until told to exit through a file, so the exit comes from `running`.
            programs.push_str(&format!(
                "  {mode}-{kind}:\n    cmd: [\"sh\", \"-c\", \"while [ ! -e $OUT/go-{mode}-{kind} ]; do sleep 0.05; done; rm -f $OUT/go-{mode}-{kind}; exit {code}\"]\n    autorestart: {mode}\n    starttime: 0.1\n"
            ));
        }
    }
    let mut sb = Sandbox::with_programs("autorestart", &programs);
    sb.start();
    for mode in ["always", "never", "unexpected"] {
        for kind in ["ok", "bad"] {
            let name = format!("{mode}-{kind}");
            sb.wait_state(&name, "running");
            let pid = sb.pid(&name);
            sb.write(&format!("go-{name}"), "");
            let restarted = matches!((mode, kind), ("always", _) | ("unexpected", "bad"));
            if restarted {
                sb.wait_for(&format!("{name} restarted"), || {
                    let i = sb.instance(&name);
                    i["restarts"] == 1
                        && i["state"] == "running"
                        && i["pid"].as_u64() != pid.map(u64::from)
                });
            } else {
                let i = sb.wait_state(&name, "exited");
                assert_eq!(i["restarts"], 0, "{name}");
            }
            let expect_code = if kind == "ok" { 0 } else { 7 };
            assert_eq!(sb.instance(&name)["last_exit"], expect_code, "{name}");
        }
    }
    let log = sb.log();
    assert!(
        log.contains("never-bad exited code=7 (unexpected)"),
        "{log}"
    );
    assert!(log.contains("never-ok exited code=0 (expected)"), "{log}");
}

#[test]
fn stop_sends_the_custom_stopsignal_to_the_child() {
    let mut sb = Sandbox::with_programs(
        "stopsignal",
        r#"
  polite:
    cmd: ["sh", "-c", "trap 'echo got-usr1 > $OUT/signal; exit 0' USR1; while :; do sleep 0.05; done"]
    stopsignal: USR1
    starttime: 0.1
"#,
    );
    sb.start();
    sb.wait_state("polite", "running");
    let out = sb.sup_ok(&["stop", "polite"]);
    assert!(out.contains("polite: stopped"), "{out}");
    assert_eq!(sb.read("signal").trim(), "got-usr1");
    assert!(sb.log().contains("polite stopping: sent SIGUSR1"));
}

#[test]
fn a_child_ignoring_term_is_killed_with_its_grandchild() {
    let mut sb = Sandbox::with_programs(
        "escalate",
        r#"
  stubborn:
    cmd: ["sh", "-c", "trap '' TERM; sleep 1000 & echo $! > $OUT/grandchild; while :; do sleep 0.05; done"]
    stoptime: 0.5
    starttime: 0.1
"#,
    );
    sb.start();
    sb.wait_state("stubborn", "running");
    sb.wait_for("the grandchild pid", || {
        !sb.read("grandchild").trim().is_empty()
    });
    let grandchild: u32 = sb.read("grandchild").trim().parse().expect("pid");
    let leader = sb.pid("stubborn").expect("pid");
    sb.sup_ok(&["stop", "stubborn"]);
    assert!(!alive(leader), "leader survived");
    assert!(!alive(grandchild), "grandchild survived");
    let log = sb.log();
    assert!(log.contains("stubborn killed"), "{log}");
    assert!(log.contains("stubborn stopped"), "{log}");
}

#[test]
fn kill_9_gives_last_exit_137_and_a_stable_run_restarts_at_once() {
    let mut sb = Sandbox::with_programs(
        "kill9",
        r#"
  victim:
    cmd: "sleep 1000"
    starttime: 0
"#,
    );
    sb.start();
    sb.wait_state("victim", "running");
    let pid = sb.pid("victim").expect("pid");
    kill(pid, 9);
    sb.wait_for("a new victim", || {
        let i = sb.instance("victim");
        i["pid"].as_u64().is_some_and(|p| p != u64::from(pid))
    });
    let i = sb.instance("victim");
    assert_eq!(i["last_exit"], 137);
    assert_eq!(i["restarts"], 1);
    // A second crash soon after is a crash loop: it backs off and says when it will retry.
    let pid2 = sb.pid("victim").expect("pid");
    kill(pid2, 9);
    let b = sb.wait_state("victim", "backoff");
    assert!(
        b["next_restart_in"]
            .as_f64()
            .is_some_and(|s| s > 0.0 && s <= 1.0),
        "{b}"
    );
    sb.wait_for("victim back after backoff", || {
        sb.instance("victim")["restarts"] == 2
    });
}
