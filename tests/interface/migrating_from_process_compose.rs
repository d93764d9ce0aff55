//! `sup import process-compose FILE` (README: "Migrating from process-compose"): the real
//! binary translates process-compose's own example configs into YAML that `sup check`
//! accepts, and a daemon started on a translated config keeps a `depends_on` condition and a
//! readiness probe as process-compose would: the dependent is not spawned until the probe
//! passes, and the chain of `process_completed_successfully` runs in its order.

use std::path::Path;

use crate::sandbox::Sandbox;

fn fixture(name: &str) -> String {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fixtures/process-compose")
        .join(name)
        .to_string_lossy()
        .into_owned()
}

/// The YAML on stdout and the notes on stderr; the import must succeed.
fn import(sb: &Sandbox, file: &str) -> (String, String) {
    let out = sb.sup(&["import", "process-compose", file]);
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "import failed:\n{stderr}");
    assert!(!stdout.contains("sup: note"), "{stdout}");
    (stdout, stderr)
}

#[test]
fn process_compose_own_examples_pass_check() {
    let sb = Sandbox::new("pc-examples");
    let (yaml, notes) = import(&sb, &fixture("process-compose.yaml"));
    for said in [
        "process-compose.yaml:46: processes.process1.shutdown.command: not translated",
        "processes._process2.readiness_probe.http_get: not translated",
        "translated 11 programs",
    ] {
        assert!(notes.contains(said), "stderr lacks {said:?}:\n{notes}");
    }
    sb.write("sup.yaml", &yaml);
    assert_eq!(
        sb.sup_ok(&["check"]),
        "ok: 11 programs, 11 instances\n",
        "{yaml}"
    );

    let (yaml, notes) = import(&sb, &fixture("process-compose-chain.yaml"));
    assert!(notes.contains("translated 8 programs"), "{notes}");
    sb.write("sup.yaml", &yaml);
    assert_eq!(
        sb.sup_ok(&["check"]),
        "ok: 8 programs, 8 instances\n",
        "{yaml}"
    );
}

#[test]
fn a_completed_chain_runs_in_its_order() {
    let mut sb = Sandbox::new("pc-chain");
    let (yaml, _) = import(&sb, &fixture("process-compose-chain.yaml"));
    sb.write("sup.yaml", &yaml);
    sb.start();
    sb.wait_state("process1", "exited");
    // Each process was spawned only once the one it waits for had exited 0.
    let log = sb.log();
    let at = |what: &str| {
        log.find(what)
            .unwrap_or_else(|| panic!("no {what:?} in the event log:\n{log}"))
    };
    for i in 1..8 {
        let next = i + 1;
        assert!(
            at(&format!("process{next} exited")) < at(&format!("process{i} spawned")),
            "process{i} spawned before process{next} exited:\n{log}"
        );
    }
    for i in 1..=8 {
        assert_eq!(
            sb.read(&format!("logs/process{i}.out")),
            format!("process{i}\n")
        );
    }
    sb.sup_ok(&["shutdown"]);
    assert_eq!(sb.wait_daemon_exit(), Some(0));
}

const PROBED: &str = r#"version: "0.5"
processes:
  web:
    command: "echo starting; exec sleep 300"
    readiness_probe:
      exec:
        command: "test -f ready"
      period_seconds: 1
      failure_threshold: 100
    availability:
      restart: always
  client:
    command: "echo web is ready > went"
    depends_on:
      web:
        condition: process_healthy
"#;

#[test]
fn a_readiness_probe_holds_a_process_healthy_dependent() {
    let mut sb = Sandbox::new("pc-probe");
    sb.write("process-compose.yaml", PROBED);
    let (yaml, _) = import(&sb, &sb.path("process-compose.yaml").to_string_lossy());
    assert!(yaml.contains("    ready: health\n"), "{yaml}");
    assert!(yaml.contains("      web: healthy\n"), "{yaml}");
    // Used as printed: the probe's `test -f ready` runs where the daemon runs, in the sandbox.
    sb.write("sup.yaml", &yaml);
    sb.start();
    sb.wait_for("web to have a pid", || sb.pid("web").is_some());
    // Not ready: web is starting, and client waits without a process.
    sb.wait_for("client to wait for web", || {
        sb.instance("client")["reason"]
            .as_str()
            .is_some_and(|r| r.contains("waiting for web"))
    });
    assert_eq!(sb.state("web"), "starting");
    assert!(sb.pid("client").is_none());
    assert!(!sb.path("went").exists());
    // The probe passes: web is running, and only then client runs.
    sb.write("ready", "");
    sb.wait_state("web", "running");
    sb.wait_for("client's output", || {
        sb.path("went").exists() && sb.read("went") == "web is ready\n"
    });
    sb.wait_state("client", "exited");
    sb.sup_ok(&["shutdown"]);
    assert_eq!(sb.wait_daemon_exit(), Some(0));
}

#[test]
fn a_file_that_is_not_yaml_fails_naming_file_and_line() {
    let sb = Sandbox::new("pc-bad");
    sb.write("bad.yaml", "processes:\n  a: {command: [\n");
    let out = sb.sup(&[
        "import",
        "process-compose",
        &sb.path("bad.yaml").to_string_lossy(),
    ]);
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(out.stdout.is_empty());
    assert!(stderr.contains("bad.yaml:"), "{stderr}");
    let missing = sb.sup(&[
        "import",
        "process-compose",
        &sb.path("none.yaml").to_string_lossy(),
    ]);
    assert_eq!(missing.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&missing.stderr).contains("none.yaml: unable to read"));
}

#[test]
fn a_note_about_a_name_with_a_newline_stays_on_one_line() {
    let sb = Sandbox::new("pc-newline");
    sb.write(
        "pc.yaml",
        "processes:\n  \"evil\\nFORGED\":\n    command: sleep 1\n    is_daemon: true\n",
    );
    let (yaml, notes) = import(&sb, &sb.path("pc.yaml").to_string_lossy());
    let lines: Vec<&str> = notes.lines().collect();
    assert!(
        lines.iter().any(|l| l.contains("is_daemon")),
        "the note is there: {notes}"
    );
    assert!(
        lines
            .iter()
            .all(|l| l.starts_with("sup: note: ") || l.starts_with("sup: translated")),
        "{notes}"
    );
    assert!(!notes.contains("\nFORGED"), "{notes}");
    sb.write("sup.yaml", &yaml);
    sb.sup_ok(&["check"]);
}
