//! The client subcommands: exit statuses and messages of the client commands.

use crate::sandbox::{alive, Sandbox};

#[test]
fn start_stop_restart_report_per_instance_and_are_idempotent() {
    let mut sb = Sandbox::with_programs(
        "cmds",
        r#"
  svc:
    cmd: "sleep 1000"
    numprocs: 2
    starttime: 0.1
  idle:
    cmd: "sleep 1000"
    autostart: false
    starttime: 0.1
"#,
    );
    sb.start();
    sb.wait_state("svc:1", "running");
    assert_eq!(sb.state("idle"), "stopped");

    let out = sb.sup_ok(&["start", "svc:0"]);
    assert!(out.contains("already running"), "{out}");
    let out = sb.sup_ok(&["stop", "idle"]);
    assert!(out.contains("not running"), "{out}");

    let out = sb.sup_ok(&["start", "idle"]);
    assert!(out.contains("idle: started"), "{out}");
    assert_eq!(sb.state("idle"), "running");

    let before = sb.pid("svc:1").expect("pid");
    let out = sb.sup_ok(&["restart", "svc:1"]);
    assert!(out.contains("svc:1: restarted"), "{out}");
    let after = sb.pid("svc:1").expect("pid");
    assert_ne!(before, after);
    assert!(!alive(before));
    // An operator's restart is not counted.
    assert_eq!(sb.instance("svc:1")["restarts"], 0);

    let out = sb.sup_ok(&["stop", "all"]);
    assert_eq!(out.matches(": stopped").count(), 3, "{out}");
}

#[test]
fn unknown_names_and_missing_daemons_exit_1() {
    let mut sb = Sandbox::with_programs("unknown", "  a:\n    cmd: sleep 1000\n");
    let out = sb.sup(&["status"]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("no daemon is listening on"), "{err}");
    assert!(err.contains(&sb.socket().display().to_string()), "{err}");

    sb.start();
    let out = sb.sup(&["status", "nope"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("nope"));
    let out = sb.sup(&["stop", "nope"]);
    assert_eq!(out.status.code(), Some(1));
    let out = sb.sup(&["frobnicate"]);
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn status_json_is_sorted_by_program_then_instance_number() {
    let mut sb = Sandbox::with_programs(
        "order",
        "  w:\n    cmd: sleep 1000\n    numprocs: 11\n  a:\n    cmd: sleep 1000\n",
    );
    sb.start();
    let names: Vec<String> = sb
        .status()
        .iter()
        .map(|i| i["name"].as_str().unwrap_or("").to_string())
        .collect();
    let mut expected = vec!["a".to_string()];
    expected.extend((0..11).map(|i| format!("w:{i}")));
    assert_eq!(names, expected);
    let first = &sb.status()[0];
    for key in [
        "name",
        "program",
        "state",
        "pid",
        "restarts",
        "last_exit",
        "uptime_s",
        "next_run",
    ] {
        assert!(first.get(key).is_some(), "missing {key} in {first}");
    }
}

#[test]
fn shutdown_stops_everything_and_the_daemon_exits_0() {
    let mut sb = Sandbox::with_programs(
        "shutdown",
        "  s:\n    cmd: sleep 1000\n    numprocs: 3\n    starttime: 0\n",
    );
    sb.start();
    sb.wait_state("s:2", "running");
    let pids: Vec<u32> = (0..3).filter_map(|i| sb.pid(&format!("s:{i}"))).collect();
    sb.sup_ok(&["shutdown"]);
    assert_eq!(sb.wait_daemon_exit(), Some(0));
    for p in pids {
        assert!(!alive(p));
    }
    assert!(sb.log().contains("shutdown"));
    let out = sb.sup(&["shutdown"]);
    assert_eq!(out.status.code(), Some(1));
}

#[test]
fn sigterm_stops_every_job_and_exits_0() {
    let mut sb = Sandbox::with_programs("sigterm", "  s:\n    cmd: sleep 1000\n    starttime: 0\n");
    sb.start();
    let pid = sb.wait_state("s", "running")["pid"].as_u64().expect("pid") as u32;
    crate::sandbox::kill(sb.daemon_pid(), 15);
    assert_eq!(sb.wait_daemon_exit(), Some(0));
    assert!(!alive(pid));
}

#[test]
fn two_hundred_instances_all_reach_running() {
    let mut sb = Sandbox::with_programs(
        "many",
        "  many:\n    cmd: sleep 1000\n    numprocs: 200\n    starttime: 0.5\n",
    );
    sb.start();
    sb.wait_for("200 running", || {
        sb.status()
            .iter()
            .filter(|i| i["state"] == "running")
            .count()
            == 200
    });
}

#[test]
fn a_client_whose_config_has_errors_says_so_instead_of_only_no_daemon() {
    let mut sb = Sandbox::with_programs("badcfg", "  a:\n    cmd: sleep 1000\n");
    sb.start();
    sb.write(
        "sup.yaml",
        "daemon:\n  socket: sup.sock\nprograms:\n  a:\n    cmd: sleep 1000\n    numproc: 2\n",
    );
    // --socket still reaches the daemon whatever the config says.
    let out = sb.sup(&["status"]);
    assert!(out.status.success(), "{out:?}");

    let out = std::process::Command::new(crate::sandbox::sup_bin())
        .args(["status", "-c"])
        .arg(sb.path("sup.yaml"))
        .current_dir(&sb.dir)
        .env_remove("SUP_SOCKET")
        .env("XDG_RUNTIME_DIR", sb.path("runtime"))
        .output()
        .expect("run sup");
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("no daemon is listening on"), "{err}");
    assert!(err.contains("has 1 error"), "{err}");
    assert!(
        err.contains("sup.yaml:6:5: programs.a.numproc: unknown key"),
        "{err}"
    );
    assert!(err.contains("hint: did you mean numprocs?"), "{err}");
}

#[test]
fn json_forms_for_scripts() {
    let mut sb = Sandbox::with_programs(
        "json",
        "  svc:\n    cmd: \"sleep 1000\"\n    numprocs: 2\n    starttime: 0.1\n",
    );
    sb.start();
    sb.wait_state("svc:1", "running");
    let parse = |out: String| -> serde_json::Value {
        serde_json::from_str(out.trim()).unwrap_or_else(|e| panic!("{e}: {out}"))
    };

    let pids = parse(sb.sup_ok(&["pid", "svc", "--json"]));
    let first = &pids["instances"][0];
    assert_eq!(first["name"], "svc:0");
    assert_eq!(first["pid"].as_u64(), sb.pid("svc:0").map(u64::from));

    let stopped = parse(sb.sup_ok(&["stop", "svc:0", "--json"]));
    assert_eq!(
        stopped,
        serde_json::json!({"outcomes": [{"name": "svc:0", "ok": true, "message": "stopped"}]})
    );

    let out = sb.sup(&["pid", "svc:0", "--json"]);
    assert_eq!(out.status.code(), Some(1));
    let doc = parse(String::from_utf8_lossy(&out.stdout).into_owned());
    assert_eq!(doc["instances"][0]["pid"], serde_json::Value::Null);

    let reload = parse(sb.sup_ok(&["reload", "--dry-run", "--json"]));
    assert_eq!(reload["unchanged"], serde_json::json!(["svc"]));
    assert_eq!(reload["dry_run"], true);

    sb.write(
        "sup.yaml",
        "programs:\n  svc:\n    cmd: 5\n    numproc: 2\n",
    );
    let out = sb.sup(&["check", "--json"]);
    assert_eq!(out.status.code(), Some(1));
    let doc = parse(String::from_utf8_lossy(&out.stdout).into_owned());
    assert_eq!(doc["ok"], false);
    let err = &doc["errors"][0];
    assert_eq!(err["line"], 4);
    assert_eq!(err["column"], 5);
    assert_eq!(err["key"], "programs.svc.numproc");
    assert_eq!(err["hint"], "did you mean numprocs?");
}

/// `start`, `restart` and `tail` with `--json`, each of the shape the README's table gives:
/// one document with `outcomes` (name, ok, message), and one object per output line with
/// `stream`, `time` (the job's own timestamp with `timestamps: true`, else null) and `line`.
#[test]
fn json_of_start_restart_and_tail() {
    let mut sb = Sandbox::with_programs(
        "jsonmore",
        r#"
  talk:
    cmd: ["sh", "-c", "echo one; echo two; echo oops >&2; exec sleep 1000"]
    starttime: 0.1
    timestamps: true
  plain:
    cmd: ["sh", "-c", "echo hello; exec sleep 1000"]
    starttime: 0.1
    autostart: false
  broken:
    cmd: ["sh", "-c", "exit 3"]
    starttime: 0.5
    startretries: 0
    autostart: false
"#,
    );
    sb.start();
    sb.wait_state("talk", "running");
    let parse = |text: &str| -> serde_json::Value {
        serde_json::from_str(text.trim()).unwrap_or_else(|e| panic!("{e}: {text}"))
    };

    let started = parse(&sb.sup_ok(&["start", "plain", "--json"]));
    assert_eq!(
        started,
        serde_json::json!({"outcomes": [{"name": "plain", "ok": true, "message": "started"}]})
    );
    let before = sb.pid("plain");
    let restarted = parse(&sb.sup_ok(&["restart", "plain", "--json"]));
    assert_eq!(
        restarted,
        serde_json::json!({"outcomes": [{"name": "plain", "ok": true, "message": "restarted"}]})
    );
    assert_ne!(sb.pid("plain"), before, "restart gave a new process");

    // A start that fails: exit 1, and the outcome says why, still as one JSON document.
    let out = sb.sup(&["start", "broken", "--json"]);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let doc = parse(&String::from_utf8_lossy(&out.stdout));
    let outcome = &doc["outcomes"][0];
    assert_eq!(outcome["name"], "broken");
    assert_eq!(outcome["ok"], false);
    assert!(
        outcome["message"].as_str().is_some_and(|m| !m.is_empty()),
        "{doc}"
    );

    // tail: every line a JSON object; the timestamped job's lines carry their time.
    let mut lines = Vec::new();
    sb.wait_for("talk's two lines in its log", || {
        let text = sb.sup_ok(&["tail", "talk", "--json"]);
        lines = text.lines().map(&parse).collect();
        lines.len() >= 2
    });
    let texts: Vec<_> = lines.iter().map(|l| l["line"].clone()).collect();
    assert_eq!(texts, [serde_json::json!("one"), serde_json::json!("two")]);
    for l in &lines {
        assert_eq!(l["stream"], "stdout", "{l}");
        let time = l["time"].as_str().unwrap_or_else(|| panic!("no time: {l}"));
        assert!(
            time.len() >= 20 && time.as_bytes()[10] == b'T',
            "RFC 3339: {time}"
        );
        assert_eq!(l.as_object().map(|o| o.len()), Some(3), "{l}");
    }
    let mut errs = Vec::new();
    sb.wait_for("talk's stderr line", || {
        let text = sb.sup_ok(&["tail", "talk", "--stderr", "--json"]);
        errs = text.lines().map(&parse).collect();
        !errs.is_empty()
    });
    assert_eq!(errs[0]["stream"], "stderr");
    assert_eq!(errs[0]["line"], "oops");
    assert!(errs[0]["time"].is_string(), "{}", errs[0]);
    // Without timestamps the client cannot know when a line was written: null.
    let mut plain = Vec::new();
    sb.wait_for("plain's line", || {
        let text = sb.sup_ok(&["tail", "plain", "--json"]);
        plain = text.lines().map(&parse).collect();
        !plain.is_empty()
    });
    assert_eq!(
        plain[0],
        serde_json::json!({"stream": "stdout", "time": null, "line": "hello"})
    );
}
