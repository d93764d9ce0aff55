//! README "Groups": `groups:` names several programs at once wherever a program name goes;
//! a reload that changes only groups restarts nothing.

use crate::sandbox::Sandbox;

const CONFIG: &str = r#"groups:
  web: [api, static]
  batch: [nightly]
programs:
  api: {cmd: sleep 1000, starttime: 0s}
  static: {cmd: sleep 1000, starttime: 0s, numprocs: 2}
  nightly: {cmd: sleep 1000, starttime: 0s}
  db: {cmd: sleep 1000, starttime: 0s}
"#;

#[test]
fn a_group_name_selects_its_programs_for_stop_start_status_and_signal() {
    let mut sb = Sandbox::new("groups");
    sb.write("sup.yaml", CONFIG);
    sb.start();
    for name in ["api", "static:0", "static:1", "nightly", "db"] {
        sb.wait_state(name, "running");
    }
    let db = sb.pid("db");
    let nightly = sb.pid("nightly");

    sb.sup_ok(&["stop", "web"]);
    for name in ["api", "static:0", "static:1"] {
        assert_eq!(sb.state(name), "stopped", "{name}");
    }
    assert_eq!(sb.pid("db"), db);
    assert_eq!(sb.pid("nightly"), nightly);

    let out = sb.sup_ok(&["status", "web", "--json"]);
    let shown: Vec<serde_json::Value> = serde_json::from_str(&out).expect("json");
    let names: Vec<&str> = shown.iter().filter_map(|i| i["name"].as_str()).collect();
    assert_eq!(names, ["api", "static:0", "static:1"]);

    sb.sup_ok(&["start", "web"]);
    for name in ["api", "static:0", "static:1"] {
        assert_eq!(sb.state(name), "running", "{name}");
    }

    // A signal to the group reaches its members only: KILL ends nightly, db stays.
    sb.sup_ok(&["signal", "KILL", "batch"]);
    sb.wait_for("nightly to be respawned", || {
        sb.pid("nightly").is_some_and(|p| Some(p) != nightly)
    });
    assert_eq!(sb.pid("db"), db);

    // tail takes one instance: a group of several is refused with their names.
    let out = sb.sup(&["tail", "web"]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("api, static:0, static:1"), "{err}");
    // A group of one is that instance.
    assert!(sb.sup(&["tail", "batch"]).status.success());

    // supervisorctl's `NAME:*`: a program's or a group's instances, and nothing else.
    sb.sup_ok(&["stop", "static:*"]);
    for name in ["static:0", "static:1"] {
        assert_eq!(sb.state(name), "stopped", "{name}");
    }
    assert_eq!(sb.state("api"), "running");
    sb.sup_ok(&["restart", "web:*"]);
    for name in ["api", "static:0", "static:1"] {
        assert_eq!(sb.state(name), "running", "{name}");
    }
    assert_eq!(sb.pid("db"), db);
    let out = sb.sup(&["stop", "static:0:*"]);
    assert_eq!(out.status.code(), Some(1), "an instance has no instances");
}

#[test]
fn a_reload_that_changes_only_groups_restarts_nobody_and_says_so() {
    let mut sb = Sandbox::new("groupreload");
    sb.write("sup.yaml", CONFIG);
    sb.start();
    for name in ["api", "static:0", "static:1", "nightly", "db"] {
        sb.wait_state(name, "running");
    }
    let before = sb.pids();
    sb.write(
        "sup.yaml",
        &CONFIG
            .replace("web: [api, static]", "web: [api]")
            .replace("batch: [nightly]", "ops: [db, nightly]"),
    );
    let out = sb.sup_ok(&["reload"]);
    assert!(
        out.contains("groups: batch (removed), ops (added), web (changed)"),
        "{out}"
    );
    assert_eq!(sb.pids(), before);
    sb.sup_ok(&["stop", "ops"]);
    assert_eq!(sb.state("db"), "stopped");
    assert_eq!(sb.state("api"), "running");
    let out = sb.sup(&["stop", "batch"]);
    assert_eq!(out.status.code(), Some(1));
}

#[test]
fn bad_groups_are_config_errors_with_their_place() {
    let sb = Sandbox::new("badgroups");
    sb.write(
        "sup.yaml",
        r#"groups:
  web: [api, nope]
  api: [api]
  "bad name": [api]
  twice: [api, api]
programs:
  api: {cmd: x}
"#,
    );
    let out = sb.sup(&["check"]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    for want in [
        "sup.yaml:2:14: groups.web: unknown program \"nope\" in group \"web\"",
        "sup.yaml:3:3: groups: group \"api\" has the name of a program",
        "sup.yaml:4:3: groups: invalid group name \"bad name\"",
        "sup.yaml:5:16: groups.twice: duplicate program \"api\" in group \"twice\"",
    ] {
        assert!(err.contains(want), "{want}\n{err}");
    }
}

#[test]
fn a_subscription_to_a_group_gets_its_members_events_only() {
    use std::io::{BufRead, BufReader, Write};
    use std::os::unix::net::UnixStream;
    use std::time::Duration;

    let mut sb = Sandbox::new("groupsub");
    sb.write("sup.yaml", CONFIG);
    sb.start();
    for name in ["api", "static:0", "static:1", "nightly", "db"] {
        sb.wait_state(name, "running");
    }
    let mut s = UnixStream::connect(sb.socket()).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(20)))
        .expect("timeout");
    s.write_all(b"{\"v\":1,\"cmd\":\"subscribe\",\"names\":[\"web\"]}\n")
        .expect("send");
    let mut r = BufReader::new(s);
    let mut line = String::new();
    r.read_line(&mut line).expect("snapshot");
    let snap: serde_json::Value = serde_json::from_str(&line).expect("json");
    let names: Vec<&str> = snap["instances"]
        .as_array()
        .expect("instances")
        .iter()
        .filter_map(|i| i["name"].as_str())
        .collect();
    assert_eq!(names, ["api", "static:0", "static:1"]);
    assert_eq!(snap["daemon"]["groups"]["web"][1], "static");

    // db is not in the group: its stop is not sent; api's is.
    sb.sup_ok(&["stop", "db"]);
    sb.sup_ok(&["stop", "api"]);
    line.clear();
    r.read_line(&mut line).expect("an event");
    let ev: serde_json::Value = serde_json::from_str(&line).expect("json");
    assert_eq!(ev["kind"], "event");
    assert_eq!(ev["instance"]["name"], "api", "{line}");
}

#[test]
fn a_group_in_depends_on_stands_for_its_programs() {
    let mut sb = Sandbox::new("groupdeps");
    sb.write(
        "sup.yaml",
        r#"groups:
  backends: [db, cache]
programs:
  db: {cmd: sleep 1000, starttime: 0s, autostart: false}
  cache: {cmd: sleep 1000, starttime: 0s}
  front: {cmd: sleep 1000, starttime: 0s, depends_on: {backends: started}}
"#,
    );
    sb.start();
    sb.wait_state("cache", "running");
    sb.wait_for("front to wait for db", || {
        sb.instance("front")["reason"]
            .as_str()
            .is_some_and(|r| r.contains("waiting for db (stopped)"))
    });
    assert!(sb.pid("front").is_none());
    sb.sup_ok(&["start", "backends"]);
    sb.wait_state("front", "running");

    // Through a group, a cycle is still a cycle.
    let sb = Sandbox::new("groupcycle");
    sb.write(
        "sup.yaml",
        "groups:\n  both: [a, b]\nprograms:\n  a: {cmd: x, depends_on: both}\n  b: {cmd: x}\n",
    );
    let out = sb.sup(&["check"]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("dependency cycle: a → a"), "{err}");
}
