//! Event listeners (`daemon.notify.listeners`): real listener processes fed JSON lines, killed,
//! deaf, stopped at shutdown and changed by a reload.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::sandbox::{alive, kill, Sandbox};

/// The fixture listener: appends each line it reads to FILE and its pid to FILE.pids.
fn record(sb: &Sandbox, file: &str) -> String {
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("fixtures/listeners/record.sh");
    format!("sh {} {}", script.display(), sb.path(file).display())
}

fn lines(sb: &Sandbox, file: &str) -> Vec<Value> {
    sb.read(file)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l:?}")))
        .collect()
}

fn pids(sb: &Sandbox, file: &str) -> Vec<u32> {
    sb.read(&format!("{file}.pids"))
        .lines()
        .filter_map(|l| l.trim().parse().ok())
        .collect()
}

fn has(sb: &Sandbox, file: &str, event: &str, instance: &str) -> usize {
    lines(sb, file)
        .iter()
        .filter(|v| v["event"] == event && v["instance"] == instance)
        .count()
}

fn crash_config(listeners: &str) -> String {
    format!(
        "daemon:\n  notify:\n    listeners:\n{listeners}programs:\n  crash:\n    \
         cmd: [\"sh\", \"-c\", \"exit 3\"]\n    starttime: 5\n    startretries: 0\n    \
         autostart: false\n"
    )
}

#[test]
fn a_listener_hears_fatal_and_exit_and_is_restarted_after_sigkill() {
    let mut sb = Sandbox::new("listener");
    let cmd = record(&sb, "events.txt");
    sb.write(
        "sup.yaml",
        &crash_config(&format!(
            "      - cmd: \"{cmd}\"\n        events: [fatal, exit, backoff, health]\n"
        )),
    );
    sb.start();
    sb.wait_for("the listener to start", || {
        pids(&sb, "events.txt").len() == 1
    });
    let _ = sb.sup(&["start", "crash"]);
    sb.wait_state("crash", "fatal");
    sb.wait_for("a fatal line", || {
        has(&sb, "events.txt", "fatal", "crash") == 1
    });
    sb.wait_for("an exit line", || {
        has(&sb, "events.txt", "exit", "crash") == 1
    });
    let got = lines(&sb, "events.txt");
    let fatal = got.iter().find(|v| v["event"] == "fatal").expect("fatal");
    assert_eq!(fatal["program"], "crash", "{fatal}");
    assert_eq!(fatal["exit_code"], 3, "{fatal}");
    assert!(
        fatal["at"].is_string() && fatal["host"].is_string(),
        "{fatal}"
    );
    assert!(
        got.iter()
            .all(|v| v["event"] == "fatal" || v["event"] == "exit"),
        "only what it asked for: {got:?}"
    );

    // SIGKILL: logged, restarted, and the new process hears what happens next.
    let first = pids(&sb, "events.txt")[0];
    kill(first, 9);
    sb.wait_for("the listener's restart", || {
        pids(&sb, "events.txt").len() == 2
    });
    let second = pids(&sb, "events.txt")[1];
    assert_ne!(first, second);
    // The new listener can write its pid before the turn that started it flushes the log.
    sb.wait_for("the kill in the event log", || {
        sb.log().contains("listener 0 was killed by signal 9")
    });
    let _ = sb.sup(&["start", "crash"]);
    sb.wait_for("a second fatal line", || {
        has(&sb, "events.txt", "fatal", "crash") == 2
    });
    assert!(alive(second));
}

#[test]
fn a_deaf_listener_costs_dropped_events_not_responsiveness() {
    let (mut sb, port) = crate::http::start(
        "listener-deaf",
        "  notify:\n    listeners:\n      - cmd: \"sleep 3600\"\n        events: [spawned, \
         running, exit, exited, backoff, fatal, stopping, stopped]\n",
        "  flap:\n    cmd: [\"sh\", \"-c\", \"exit 1\"]\n    numprocs: 150\n    starttime: 1\n    \
         startretries: 2\n",
    );
    sb.wait_for("events to be dropped", || {
        sb.log()
            .contains("listener 0 is not reading its stdin: dropping events")
    });
    // The flood goes on; the daemon answers at once all the same.
    for _ in 0..5 {
        let t = Instant::now();
        sb.sup_ok(&["status"]);
        assert!(
            t.elapsed() < Duration::from_secs(5),
            "status took {:?}",
            t.elapsed()
        );
    }
    let (status, metrics) = crate::http::get(port, "/metrics", None);
    assert_eq!(status, 200);
    let dropped: f64 = metrics
        .lines()
        .find_map(|l| l.strip_prefix("sup_listener_events_dropped_total{listener=\"0\"} "))
        .and_then(|n| n.trim().parse().ok())
        .unwrap_or_else(|| panic!("no dropped count:\n{metrics}"));
    assert!(dropped > 0.0, "{metrics}");
    let _ = sb.sup(&["shutdown"]);
    sb.wait_daemon_exit();
    assert!(sb.survivors().is_empty(), "{:?}", sb.survivors());
}

#[test]
fn shutdown_leaves_no_listener_alive_even_one_that_ignores_sigterm() {
    let mut sb = Sandbox::new("listener-stop");
    let cmd = record(&sb, "events.txt");
    sb.write(
        "sup.yaml",
        &crash_config(&format!(
            "      - cmd: \"{cmd}\"\n        events: [stopped]\n      \
             - cmd: [\"sh\", \"-c\", \"trap '' TERM; echo $$ > $OUT/stubborn.pid; \
             while :; do sleep 1; done\"]\n        events: [fatal]\n"
        )),
    );
    sb.start();
    sb.wait_for("both listeners", || {
        pids(&sb, "events.txt").len() == 1 && !sb.read("stubborn.pid").is_empty()
    });
    // Listeners that wait (one reading, one not) cost the daemon no wakeups.
    crate::http::assert_no_wakeups(&sb);
    let recorder = pids(&sb, "events.txt")[0];
    let stubborn: u32 = sb.read("stubborn.pid").trim().parse().expect("pid");
    let t = Instant::now();
    let _ = sb.sup(&["shutdown"]);
    sb.wait_daemon_exit();
    assert!(
        t.elapsed() < Duration::from_secs(15),
        "took {:?}",
        t.elapsed()
    );
    assert!(!alive(recorder) && !alive(stubborn));
    assert!(sb.survivors().is_empty(), "{:?}", sb.survivors());
    assert!(
        sb.log()
            .contains("listener 1 still running 2s after SIGTERM: sending SIGKILL"),
        "{}",
        sb.log()
    );
}

#[test]
fn reload_starts_new_listeners_stops_removed_ones_and_keeps_the_rest() {
    let mut sb = Sandbox::new("listener-reload");
    let a = format!(
        "      - cmd: \"{}\"\n        events: [fatal]\n",
        record(&sb, "a.txt")
    );
    let b = format!(
        "      - cmd: \"{}\"\n        events: [fatal]\n",
        record(&sb, "b.txt")
    );
    sb.write("sup.yaml", &crash_config(&a));
    sb.start();
    sb.wait_for("listener a", || pids(&sb, "a.txt").len() == 1);
    let pa = pids(&sb, "a.txt")[0];

    sb.write("sup.yaml", &crash_config(&format!("{a}{b}")));
    let dry = sb.sup_ok(&["reload", "--dry-run"]);
    assert!(
        dry.contains("listeners: 1: ") && dry.contains("(added)"),
        "{dry}"
    );
    assert!(!dry.contains("daemon settings"), "{dry}");
    assert!(pids(&sb, "b.txt").is_empty(), "a dry run starts nothing");
    sb.sup_ok(&["reload"]);
    sb.wait_for("listener b", || pids(&sb, "b.txt").len() == 1);
    let pb = pids(&sb, "b.txt")[0];
    assert_eq!(pids(&sb, "a.txt"), [pa], "a kept running");
    assert!(
        !sb.log().contains("daemon settings changed"),
        "{}",
        sb.log()
    );
    let _ = sb.sup(&["start", "crash"]);
    sb.wait_for("both hear it", || {
        has(&sb, "a.txt", "fatal", "crash") == 1 && has(&sb, "b.txt", "fatal", "crash") == 1
    });

    sb.write("sup.yaml", &crash_config(&b));
    let dry = sb.sup_ok(&["reload", "--dry-run"]);
    assert!(
        dry.contains("listeners: 0: ") && dry.contains("(removed)"),
        "{dry}"
    );
    assert!(
        !dry.contains("(added)"),
        "b is matched, not added again: {dry}"
    );
    sb.sup_ok(&["reload"]);
    sb.wait_for("listener a to go", || !alive(pa));
    assert!(alive(pb));
    assert!(
        sb.log().contains("listener 0 is no longer configured"),
        "{}",
        sb.log()
    );
    assert!(
        sb.log().contains("listener 1 is now listener 0"),
        "{}",
        sb.log()
    );
    let _ = sb.sup(&["start", "crash"]);
    sb.wait_for("b hears it", || has(&sb, "b.txt", "fatal", "crash") == 2);
    assert_eq!(has(&sb, "a.txt", "fatal", "crash"), 1);
    assert_eq!(pids(&sb, "b.txt"), [pb]);
}

#[test]
fn a_health_change_reaches_the_listener() {
    let mut sb = Sandbox::new("listener-health");
    let cmd = record(&sb, "events.txt");
    sb.write(
        "sup.yaml",
        &format!(
            "daemon:\n  notify:\n    listeners:\n      - cmd: \"{cmd}\"\n        events: [health]\n\
             programs:\n  web:\n    cmd: [\"sleep\", \"3600\"]\n    healthcheck:\n      \
             cmd: [\"test\", \"-e\", \"{}\"]\n      interval: 200ms\n      retries: 1\n      \
             timeout: 2s\n      on_unhealthy: notify\n",
            sb.path("up").display()
        ),
    );
    sb.write("up", "");
    sb.start();
    sb.wait_for("healthy", || {
        lines(&sb, "events.txt")
            .iter()
            .any(|v| v["event"] == "health" && v["message"] == "web healthy")
    });
    std::fs::remove_file(sb.path("up")).expect("rm");
    sb.wait_for("unhealthy", || {
        lines(&sb, "events.txt").iter().any(|v| {
            v["event"] == "health"
                && v["message"]
                    .as_str()
                    .is_some_and(|m| m.starts_with("web unhealthy"))
        })
    });
}

#[test]
fn hostile_listeners_hold_up_nothing_and_leave_nothing_behind() {
    let mut sb = Sandbox::new("listener-hostile");
    sb.write(
        "sup.yaml",
        "daemon:\n  notify:\n    listeners:\n\
         \x20     - cmd: \"sleep 3600\"\n        events: [spawned, exit]\n\
         \x20     - cmd: [\"sh\", \"-c\", \"exec 0<&-; sleep 3600\"]\n        events: [spawned]\n\
         \x20     - cmd: [\"sh\", \"-c\", \"setsid sleep 3601 & sleep 1; exit 0\"]\n        events: [spawned]\n\
         \x20     - cmd: \"true\"\n        events: [spawned]\n\
         \x20     - cmd: \"/no/such/listener\"\n        events: [spawned]\n\
         \x20     - cmd: [\"sh\", \"-c\", \"yes\"]\n        events: [spawned]\n\
         programs:\n  flap:\n    cmd: [\"sh\", \"-c\", \"exit 1\"]\n    numprocs: 20\n    \
         starttime: 1\n    startretries: 2\n",
    );
    sb.start();
    sb.wait_for("the escapee of listener 2 to be killed at its end", || {
        sb.log()
            .contains("listener 2: killed 1 process(es) that had left its group")
    });
    sb.wait_for("backoff for the listeners that end at once", || {
        let log = sb.log();
        log.contains("listener 3 exited with code 0; restarting it in")
            && log.contains("listener 4 could not start")
            && log.contains("listener 1 closed its stdin")
    });
    let t = Instant::now();
    sb.sup_ok(&["status"]);
    assert!(t.elapsed() < Duration::from_secs(5), "{:?}", t.elapsed());
    let _ = sb.sup(&["shutdown"]);
    sb.wait_daemon_exit();
    // A listener that does not trap SIGTERM dies of it: its mask is not the daemon's.
    assert!(
        sb.log()
            .contains("listener 0 stopped (was killed by signal 15)"),
        "{}",
        sb.log()
    );
    assert!(sb.survivors().is_empty(), "{:?}", sb.survivors());
}

#[test]
fn a_listener_dies_with_a_killed_daemon() {
    let mut sb = Sandbox::new("listener-orphan");
    sb.write(
        "sup.yaml",
        &crash_config(
            "      - cmd: [\"sh\", \"-c\", \"echo $$ > $OUT/deaf.pid; exec sleep 100000\"]\n        \
             events: [fatal]\n",
        ),
    );
    sb.start();
    sb.wait_for("the listener", || sb.read("deaf.pid").ends_with('\n'));
    let deaf: u32 = sb.read("deaf.pid").trim().parse().expect("pid");
    // It never reads stdin, so only the parent-death signal can end it.
    sb.kill_daemon_hard();
    sb.wait_for("the listener to die with the daemon", || !alive(deaf));
}
