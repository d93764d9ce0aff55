//! Reload: unchanged programs keep their pids, changed ones restart, removed
//! ones stop and disappear, added ones start; an invalid config changes nothing.

use crate::sandbox::{alive, kill, Sandbox};

fn wait_all_running(sb: &Sandbox) {
    sb.wait_for("every instance running", || {
        sb.status().iter().all(|i| i["state"] == "running")
    });
}

const BASE: &str = r#"programs:
  keep:
    cmd: sleep 1000
    starttime: 0.1
  change:
    cmd: sleep 1000
    starttime: 0.1
  drop:
    cmd: sleep 1000
    starttime: 0.1
  scale:
    cmd: sleep 1000
    numprocs: 2
    starttime: 0.1
"#;

#[test]
fn each_kind_of_change_touches_only_what_changed() {
    let mut sb = Sandbox::new("reload");
    sb.write("sup.yaml", BASE);
    sb.start();
    wait_all_running(&sb);
    let before = sb.pids();
    let dropped = before["drop"].expect("pid") as u32;

    // Comments, key order and spelled-out defaults are not changes.
    sb.write(
        "sup.yaml",
        r#"# a comment
programs:
  keep:
    starttime: 0.1
    cmd: ["sleep", "1000"]
    autorestart: unexpected
    numprocs: 1
  change:
    cmd: sleep 2000
    starttime: 0.1
  scale:
    cmd: sleep 1000
    numprocs: 4
    starttime: 0.1
  fresh:
    cmd: sleep 1000
    starttime: 0.1
"#,
    );
    let out = sb.sup_ok(&["reload"]);
    assert!(out.contains("added: fresh"), "{out}");
    assert!(out.contains("change"), "{out}");
    assert!(out.contains("removed: drop"), "{out}");
    wait_all_running(&sb);
    let after = sb.pids();
    assert_eq!(
        after["keep"], before["keep"],
        "unchanged program kept its pid"
    );
    assert_ne!(
        after["change"], before["change"],
        "changed program restarted"
    );
    assert_eq!(after["scale:0"], before["scale:0"]);
    assert_eq!(after["scale:1"], before["scale:1"]);
    assert!(after.contains_key("scale:3") && after["scale:3"].is_some());
    assert!(!after.contains_key("drop"), "removed program left status");
    assert!(!alive(dropped), "removed program's process survived");
    assert!(after["fresh"].is_some());
    // The changed program runs its new definition.
    let pid = after["change"].expect("pid");
    let cmdline = std::fs::read_to_string(format!("/proc/{pid}/cmdline")).unwrap_or_default();
    assert!(cmdline.contains("2000"), "{cmdline:?}");
    assert!(sb.log().contains("reload: added fresh"), "{}", sb.log());

    // Scaling down stops only the extra instances.
    let kept = sb.pids();
    sb.write(
        "sup.yaml",
        "programs:\n  keep:\n    cmd: sleep 1000\n    starttime: 0.1\n  scale:\n    cmd: sleep 1000\n    numprocs: 2\n    starttime: 0.1\n",
    );
    sb.sup_ok(&["reload"]);
    let now = sb.pids();
    assert_eq!(now.len(), 3, "{now:?}");
    assert_eq!(now["scale:0"], kept["scale:0"]);
    assert_eq!(now["scale:1"], kept["scale:1"]);
    assert_eq!(now["keep"], kept["keep"]);
}

#[test]
fn numprocs_between_one_and_more_renames_and_restarts() {
    let mut sb = Sandbox::new("rename");
    sb.write(
        "sup.yaml",
        "programs:\n  w:\n    cmd: sleep 1000\n    starttime: 0.1\n",
    );
    sb.start();
    let old = sb.wait_state("w", "running")["pid"].as_u64().expect("pid") as u32;
    sb.write(
        "sup.yaml",
        "programs:\n  w:\n    cmd: sleep 1000\n    starttime: 0.1\n    numprocs: 2\n",
    );
    sb.sup_ok(&["reload"]);
    sb.wait_state("w:0", "running");
    sb.wait_state("w:1", "running");
    assert!(!alive(old));
    assert!(sb.status().iter().all(|i| i["name"] != "w"));
}

#[test]
fn an_invalid_config_changes_nothing() {
    let mut sb = Sandbox::new("badreload");
    sb.write("sup.yaml", BASE);
    sb.start();
    wait_all_running(&sb);
    let before = sb.pids();
    sb.write(
        "sup.yaml",
        "programs:\n  keep:\n    cmd: sleep 1000\n    numproc: 2\n  other:\n    cmd: \"\"\n",
    );
    let out = sb.sup(&["reload"]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("numproc"), "{err}");
    assert!(err.contains("did you mean numprocs"), "{err}");
    assert!(err.contains("sup.yaml:4:5"), "{err}");
    assert!(err.contains("cmd"), "{err}");
    assert_eq!(sb.pids(), before);
    // SIGHUP with the same bad file logs the errors and keeps running too.
    kill(sb.daemon_pid(), 1);
    sb.wait_for("the failed reload in the log", || {
        sb.log().matches("reload failed").count() >= 2
    });
    assert_eq!(sb.pids(), before);
}

#[test]
fn sighup_reloads() {
    let mut sb = Sandbox::new("sighup");
    sb.write(
        "sup.yaml",
        "programs:\n  a:\n    cmd: sleep 1000\n    starttime: 0.1\n",
    );
    sb.start();
    let a = sb.wait_state("a", "running")["pid"].clone();
    sb.write(
        "sup.yaml",
        "programs:\n  a:\n    cmd: sleep 1000\n    starttime: 0.1\n  b:\n    cmd: sleep 1000\n    starttime: 0.1\n",
    );
    kill(sb.daemon_pid(), 1);
    sb.wait_for("b to appear", || {
        sb.status().iter().any(|i| i["name"] == "b")
    });
    sb.wait_state("b", "running");
    assert_eq!(sb.instance("a")["pid"], a);
}

#[test]
fn dry_run_prints_the_plan_and_changes_nothing() {
    let mut sb = Sandbox::new("dryrun");
    sb.write("sup.yaml", BASE);
    sb.start();
    wait_all_running(&sb);
    let before = sb.pids();
    sb.write(
        "sup.yaml",
        "programs:\n  keep:\n    cmd: sleep 1000\n    starttime: 0.1\n",
    );
    let out = sb.sup_ok(&["reload", "--dry-run"]);
    assert!(out.contains("removed: change, drop, scale"), "{out}");
    assert!(out.to_lowercase().contains("dry run"), "{out}");
    assert_eq!(sb.pids(), before);
}

#[test]
fn reload_while_jobs_start_and_stop_leaves_every_instance_right() {
    let mut sb = Sandbox::new("churn");
    sb.write(
        "sup.yaml",
        r#"programs:
  slowstart:
    cmd: sleep 1000
    starttime: 3
  stubborn:
    cmd: ["sh", "-c", "trap '' TERM; while :; do sleep 0.05; done"]
    starttime: 0.1
    stoptime: 2
  steady:
    cmd: sleep 1000
    starttime: 0.1
"#,
    );
    sb.start();
    sb.wait_state("stubborn", "running");
    sb.wait_state("steady", "running");
    let steady = sb.pid("steady");
    assert_eq!(sb.state("slowstart"), "starting");
    // Mid-stop: it ignores TERM, so it stays `stopping` for its 2 s stoptime.
    sb.sup_ok(&["stop", "--no-wait", "stubborn"]);
    assert_eq!(sb.state("stubborn"), "stopping");
    let stubborn_pid = sb.instance("stubborn")["pid"].as_u64();
    sb.write(
        "sup.yaml",
        r#"programs:
  slowstart:
    cmd: sleep 1001
    starttime: 0.2
  stubborn:
    cmd: ["sh", "-c", "trap '' TERM; while :; do sleep 0.05; done"]
    starttime: 0.1
    stoptime: 1
  steady:
    cmd: sleep 1000
    starttime: 0.1
"#,
    );
    sb.sup_ok(&["reload"]);
    // The one mid-start restarts with its new definition and runs.
    let slow = sb.wait_state("slowstart", "running");
    let pid = slow["pid"].as_u64().expect("pid");
    let cmdline = std::fs::read_to_string(format!("/proc/{pid}/cmdline")).unwrap_or_default();
    assert!(cmdline.contains("1001"), "{cmdline:?}");
    // The one mid-stop was being stopped by an operator: it ends stopped, not restarted.
    sb.wait_state("stubborn", "stopped");
    if let Some(p) = stubborn_pid {
        assert!(!alive(p as u32));
    }
    assert_eq!(sb.pid("steady"), steady);
    assert_eq!(sb.status().len(), 3);
}

#[test]
fn an_unchanged_scheduled_job_keeps_its_phase_across_a_reload() {
    let mut sb = Sandbox::new("schedphase");
    let tick = "  tick:\n    cmd: \"true\"\n    schedule: every 1h\n";
    sb.write("sup.yaml", &format!("programs:\n{tick}"));
    sb.start();
    let before = sb.wait_state("tick", "scheduled")["next_run"].clone();
    assert!(before.is_string(), "{before}");
    sb.write(
        "sup.yaml",
        &format!("programs:\n{tick}  other:\n    cmd: sleep 1000\n    starttime: 0.1\n"),
    );
    sb.sup_ok(&["reload"]);
    assert_eq!(sb.instance("tick")["next_run"], before);
    // A changed schedule re-arms it.
    sb.write(
        "sup.yaml",
        "programs:\n  tick:\n    cmd: \"true\"\n    schedule: every 2h\n",
    );
    sb.sup_ok(&["reload"]);
    assert_ne!(sb.instance("tick")["next_run"], before);
}

/// A schedule changed by a reload is armed and runs: not merely a different `next_run`.
#[test]
fn a_reloaded_schedule_runs_on_its_new_period() {
    let mut sb = Sandbox::new("schedrearm");
    let runs = sb.path("runs");
    let job = |every: &str| {
        format!(
            "programs:\n  tick:\n    cmd: [\"sh\", \"-c\", \"echo ran >> {}\"]\n    schedule: every {every}\n",
            runs.display()
        )
    };
    sb.write("sup.yaml", &job("1h"));
    sb.start();
    sb.wait_state("tick", "scheduled");
    sb.write("sup.yaml", &job("1s"));
    sb.sup_ok(&["reload"]);
    let next = sb.instance("tick")["next_run"].clone();
    assert!(next.is_string(), "armed again: {next}");
    sb.wait_for("two runs on the new schedule", || {
        sb.read("runs").lines().count() >= 2
    });
}

#[test]
fn a_reload_whose_new_job_cannot_start_exits_1_and_says_so() {
    let mut sb = Sandbox::new("reloadfatal");
    sb.write(
        "sup.yaml",
        "programs:\n  keep:\n    cmd: sleep 1000\n    starttime: 0.1\n",
    );
    sb.start();
    sb.wait_state("keep", "running");
    sb.write(
        "sup.yaml",
        "programs:\n  keep:\n    cmd: sleep 1000\n    starttime: 0.1\n  \
         broken:\n    cmd: \"sh -c 'exit 3'\"\n    starttime: 0.5\n    startretries: 0\n",
    );
    let out = sb.sup(&["reload"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(String::from_utf8_lossy(&out.stdout).contains("added: broken"));
    assert!(err.contains("sup: error: broken: "), "{err}");
    assert!(!err.contains("nothing changed"), "{err}");
    // The config is in force: the new job is known, the old one untouched.
    assert_eq!(sb.state("keep"), "running");
    assert_eq!(sb.state("broken"), "fatal");
}

/// `reload --json` exits as the text form does: 1 when a job the reload added goes fatal,
/// with that instance's outcome in the document (and the config in force all the same).
#[test]
fn reload_json_exits_1_with_the_outcome_of_an_added_job_that_fails() {
    let mut sb = Sandbox::new("reloadfatal-json");
    sb.write(
        "sup.yaml",
        "programs:\n  keep:\n    cmd: sleep 1000\n    starttime: 0.1\n",
    );
    sb.start();
    sb.wait_state("keep", "running");
    // Nothing to report is an empty `outcomes` list, and exit 0.
    let out = sb.sup_ok(&["reload", "--json"]);
    let doc: serde_json::Value =
        serde_json::from_str(out.trim()).unwrap_or_else(|e| panic!("{e}: {out}"));
    assert_eq!(doc["outcomes"], serde_json::json!([]), "{doc}");
    assert_eq!(doc["unchanged"], serde_json::json!(["keep"]), "{doc}");

    sb.write(
        "sup.yaml",
        "programs:\n  keep:\n    cmd: sleep 1000\n    starttime: 0.1\n  \
         broken:\n    cmd: \"sh -c 'exit 3'\"\n    starttime: 0.5\n    startretries: 0\n",
    );
    let out = sb.sup(&["reload", "--json"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{text}");
    let doc: serde_json::Value =
        serde_json::from_str(text.trim()).unwrap_or_else(|e| panic!("{e}: {text}"));
    assert_eq!(doc["added"], serde_json::json!(["broken"]), "{doc}");
    assert_eq!(doc["errors"], serde_json::json!([]), "{doc}");
    assert_eq!(doc["dry_run"], false);
    let outcomes = doc["outcomes"].as_array().expect("outcomes");
    let broken = outcomes
        .iter()
        .find(|o| o["name"] == "broken")
        .unwrap_or_else(|| panic!("no outcome for broken: {doc}"));
    assert_eq!(broken["ok"], false, "{doc}");
    assert!(
        broken["message"].as_str().is_some_and(|m| !m.is_empty()),
        "{doc}"
    );
    assert_eq!(sb.state("keep"), "running");
    assert_eq!(sb.state("broken"), "fatal");
}

/// The daemon's descriptors open on a file under the sandbox whose name starts with `prefix`.
fn files_open(sb: &Sandbox, prefix: &str) -> Vec<std::path::PathBuf> {
    let dir = format!("/proc/{}/fd", sb.daemon_pid());
    std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| std::fs::read_link(e.path()).ok())
        .filter(|p| p.starts_with(&sb.dir))
        .filter(|p| {
            p.file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with(prefix))
        })
        .collect()
}

#[test]
fn a_removed_program_leaves_no_log_file_open() {
    let program = |name: &str| {
        format!(
            "  {name}:\n    cmd: [\"sh\", \"-c\", \"echo up; exec sleep 1000\"]\n    numprocs: 2\n    starttime: 0.1\n    stoptime: 1\n"
        )
    };
    let mut sb = Sandbox::with_programs("reload-files", &(program("keep") + &program("gone")));
    sb.start();
    wait_all_running(&sb);
    sb.wait_for("gone's log files open", || {
        files_open(&sb, "gone").len() >= 2
    });

    sb.write("sup.yaml", &format!("programs:\n{}", program("keep")));
    sb.sup_ok(&["reload"]);
    sb.wait_for("gone's log files closed", || {
        files_open(&sb, "gone").is_empty()
    });
    assert!(files_open(&sb, "keep").len() >= 2, "keep's files stay open");

    // A name that comes back gets its files again, and they close again when it goes.
    sb.write(
        "sup.yaml",
        &format!("programs:\n{}{}", program("keep"), program("gone")),
    );
    sb.sup_ok(&["reload"]);
    wait_all_running(&sb);
    sb.wait_for("gone's log files open again", || {
        files_open(&sb, "gone").len() >= 2
    });
    sb.write("sup.yaml", &format!("programs:\n{}", program("keep")));
    sb.sup_ok(&["reload"]);
    sb.wait_for("gone's log files closed again", || {
        files_open(&sb, "gone").is_empty()
    });
}

#[test]
fn an_abandoned_rolling_restart_does_not_answer_for_later_reloads() {
    let config = |n: u32| {
        format!(
            "programs:\n  r:\n    cmd: [\"sh\", \"-c\", \"test -e $OUT/broken && exit 1; exec sleep 1000\"]\n    numprocs: {n}\n    starttime: 0.3\n    startretries: 0\n    stoptime: 1\n"
        )
    };
    let mut sb = Sandbox::new("reload-rolling");
    sb.write("sup.yaml", &config(3));
    sb.start();
    wait_all_running(&sb);
    // r:0 cannot start again, so the rolling restart stops there and gives up r:1 and r:2.
    sb.write("broken", "");
    let out = sb.sup(&["restart", "r", "--rolling"]);
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        said.contains("the rolling restart stopped at r:0"),
        "{said}"
    );
    std::fs::remove_file(sb.path("broken")).expect("remove broken");

    // The reload stopping r:2 and the one adding r:2 back (in the freed slot) are answered
    // by what happens to r:2 now, not by the rolling restart it was dropped from.
    sb.write("sup.yaml", &config(2));
    sb.sup_ok(&["reload"]);
    sb.wait_for("r:2 gone", || {
        sb.status().iter().all(|i| i["name"] != "r:2")
    });
    sb.write("sup.yaml", &config(3));
    let out = sb.sup(&["reload"]);
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    sb.wait_state("r:2", "running");
}

/// `sup add` and `sup remove`: one program's part of a reload, the others' changes pending.
#[test]
fn add_and_remove_apply_one_programs_change_only() {
    let mut sb = Sandbox::new("add-remove");
    sb.write("sup.yaml", BASE);
    sb.start();
    wait_all_running(&sb);
    let before = sb.pids();
    // Every kind of change is pending at once.
    sb.write(
        "sup.yaml",
        "programs:\n  keep:\n    cmd: sleep 1000\n    starttime: 0.1\n  change:\n    cmd: sleep 2000\n    starttime: 0.1\n  scale:\n    cmd: sleep 1000\n    numprocs: 3\n    starttime: 0.1\n  fresh:\n    cmd: sleep 1000\n    starttime: 0.1\n  other:\n    cmd: sleep 1000\n    starttime: 0.1\n",
    );

    // add: the new program starts; nothing else moves.
    let out = sb.sup_ok(&["add", "fresh"]);
    assert!(out.contains("added: fresh"), "{out}");
    sb.wait_state("fresh", "running");
    let now = sb.pids();
    assert!(!now.contains_key("other"), "{now:?}");
    assert!(!now.contains_key("scale:2"), "{now:?}");
    for name in ["keep", "change", "drop", "scale:0", "scale:1"] {
        assert_eq!(now[name], before[name], "{name} moved");
    }
    // add on a changed program restarts it with its new definition.
    let out = sb.sup_ok(&["add", "change", "--json"]);
    let v: serde_json::Value = serde_json::from_str(out.trim()).expect("json");
    assert_eq!(v["changed"], serde_json::json!(["change"]), "{out}");
    sb.wait_state("change", "running");
    let pid = sb.pid("change").expect("pid");
    assert_ne!(Some(u64::from(pid)), before["change"]);
    let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
    assert!(
        String::from_utf8_lossy(&cmdline).contains("2000"),
        "{cmdline:?}"
    );
    assert_eq!(sb.pids()["drop"], before["drop"], "drop went too early");

    // remove refuses what the config still has, and what is not running; nothing changes.
    let still = sb.sup(&["remove", "keep"]);
    assert_eq!(still.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&still.stderr).contains("still in the config"),
        "{still:?}"
    );
    assert_eq!(sb.sup(&["remove", "nope"]).status.code(), Some(1));
    assert_eq!(sb.sup(&["add", "drop"]).status.code(), Some(1));
    let dropped = before["drop"].expect("pid") as u32;
    assert!(alive(dropped));

    // remove: the program that left the config stops and leaves status.
    let out = sb.sup_ok(&["remove", "drop"]);
    assert!(out.contains("removed: drop"), "{out}");
    sb.wait_for("drop's process to end", || !alive(dropped));
    let now = sb.pids();
    assert!(!now.contains_key("drop"), "{now:?}");
    assert!(!now.contains_key("other"), "{now:?}");
    assert_eq!(now["keep"], before["keep"]);

    // A full reload then applies only what is still pending.
    let out = sb.sup_ok(&["reload", "--json"]);
    let v: serde_json::Value = serde_json::from_str(out.trim()).expect("json");
    assert_eq!(v["added"], serde_json::json!(["other"]), "{out}");
    assert_eq!(
        v["changed"],
        serde_json::json!(["scale (numprocs 2 → 3)"]),
        "{out}"
    );
    assert_eq!(v["removed"], serde_json::json!([]), "{out}");
    wait_all_running(&sb);
}
