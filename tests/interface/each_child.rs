//! Each child: process group, stdin, env, descriptors, signal state, umask,
//! working directory, and output capture.

use crate::sandbox::Sandbox;

#[test]
fn the_child_gets_exactly_the_promised_environment() {
    let mut sb = Sandbox::with_programs(
        "child",
        r#"
  probe:
    cmd: ["sh", "-c", "umask > $OUT/umask; pwd > $OUT/cwd; env > $OUT/env; awk '{print $5}' /proc/$$/stat > $OUT/pgid; readlink /proc/$$/fd/0 > $OUT/stdin; echo written > $OUT/done; exec sleep 1000"]
    numprocs: 2
    umask: 027
    workingdir: /tmp
    env:
      ANSWER: 42
      FLAG: true
  fdprobe:
    # Exec'd directly: `ls` opens the directory it lists on the lowest free descriptor, so
    # exactly 0 1 2 3 means nothing but 0, 1 and 2 came from sup.
    cmd: ["ls", "/proc/self/fd"]
    stdout: fds
    autorestart: never
    starttime: 0
  sigs:
    # Exec'd directly, so it sees exactly the signal state sup gave it.
    cmd: ["grep", "-E", "^Sig(Blk|Ign)", "/proc/self/status"]
    stdout: sig
    autorestart: never
    starttime: 0
"#,
    );
    sb.start();
    sb.wait_state("probe:1", "running");
    sb.wait_for("the probe to write its findings", || {
        sb.read("done").contains("written")
    });
    assert_eq!(sb.read("umask").trim(), "0027");
    assert_eq!(sb.read("cwd").trim(), "/tmp");
    let env = sb.read("env");
    assert!(env.contains("ANSWER=42\n"), "{env}");
    assert!(env.contains("FLAG=true\n"), "{env}");
    assert!(env.contains("SUP_PROGRAM=probe\n"), "{env}");
    assert!(env.contains("SUP_PROCESS_NAME=probe:"), "{env}");
    assert!(env.contains("SUP_PROCESS_NUM="), "{env}");
    // Inherited from the daemon's environment.
    assert!(env.contains("SUP_SANDBOX="), "{env}");
    let pid = sb.pid("probe:0").expect("pid");
    let pid1 = sb.pid("probe:1").expect("pid");
    let pgid: u32 = sb.read("pgid").trim().parse().expect("pgid");
    assert!(
        pgid == pid || pgid == pid1,
        "pgid {pgid} is not a leader pid ({pid}, {pid1})"
    );
    sb.wait_state("fdprobe", "exited");
    let mut fds: Vec<u32> = sb
        .read("fds")
        .split_whitespace()
        .filter_map(|f| f.parse().ok())
        .collect();
    fds.sort_unstable();
    assert_eq!(fds, [0, 1, 2, 3], "inherited descriptors");
    sb.wait_state("sigs", "exited");
    let sig = sb.read("sig");
    assert!(sig.contains("SigBlk:\t0000000000000000"), "{sig}");
    assert!(sig.contains("SigIgn:\t0000000000000000"), "{sig}");
    assert_eq!(sb.read("stdin").trim(), "/dev/null");
}

#[test]
fn every_byte_written_just_before_exit_reaches_the_log() {
    let mut sb = Sandbox::with_programs(
        "flood",
        r#"
  flood:
    cmd: ["sh", "-c", "head -c 52428800 /dev/zero | tr '\\0' 'x'; exit 0"]
    autorestart: never
    starttime: 0
"#,
    );
    sb.start();
    sb.wait_state("flood", "exited");
    let len = std::fs::metadata(sb.path("logs/flood.out"))
        .map(|m| m.len())
        .unwrap_or(0);
    assert_eq!(len, 52_428_800);
}

#[test]
fn discard_and_stderr_files_and_name_placeholders() {
    let mut sb = Sandbox::with_programs(
        "outputs",
        r#"
  talk:
    cmd: ["sh", "-c", "echo out-$SUP_PROCESS_NUM; echo err-$SUP_PROCESS_NUM >&2; exec sleep 1000"]
    numprocs: 2
    stdout: out/{name}.log
    stderr: discard
"#,
    );
    sb.start();
    sb.wait_state("talk:1", "running");
    sb.wait_for("both outputs", || {
        sb.read("out/talk:0.log").contains("out-0") && sb.read("out/talk:1.log").contains("out-1")
    });
    assert!(!sb.path("logs/talk:0.err").exists());
}

/// The variables of a running process, from `/proc/PID/environ`.
fn environ(pid: u32) -> Vec<String> {
    std::fs::read(format!("/proc/{pid}/environ"))
        .unwrap_or_default()
        .split(|&b| b == 0)
        .map(|v| String::from_utf8_lossy(v).into_owned())
        .collect()
}

#[test]
fn env_file_is_read_at_each_load_and_env_wins() {
    let mut sb = Sandbox::with_programs(
        "env-file",
        "  web:\n    cmd: \"sleep 1000\"\n    env_file: conf/web.env\n    env:\n      WINS: from-env\n    starttime: 0.1\n  other:\n    cmd: \"sleep 1000\"\n    starttime: 0.1\n",
    );
    sb.write(
        "conf/web.env",
        "# web's settings\nexport GREETING=\"hello\\tthere\"\nRAW='$HOME $(id)'\nWINS=from-file\nPLAIN=a b # comment\n",
    );
    sb.start();
    sb.wait_state("web", "running");
    let pid = sb.pid("web").expect("pid");
    let env = environ(pid);
    for want in [
        "GREETING=hello\tthere",
        "RAW=$HOME $(id)",
        "WINS=from-env",
        "PLAIN=a b",
    ] {
        assert!(env.iter().any(|v| v == want), "{want:?} not in {env:?}");
    }
    let other = sb.pid("other").expect("pid");

    // A changed file is a changed program: reload restarts it, and only it.
    sb.write("conf/web.env", "GREETING=changed\n");
    let report = sb.sup_ok(&["reload"]);
    assert!(report.contains("web"), "{report}");
    sb.wait_for("web restarted", || {
        sb.pid("web").is_some_and(|p| p != pid) && sb.state("web") == "running"
    });
    let env = environ(sb.pid("web").expect("pid"));
    assert!(env.iter().any(|v| v == "GREETING=changed"), "{env:?}");
    assert!(!env.iter().any(|v| v.starts_with("RAW=")), "{env:?}");
    assert_eq!(sb.pid("other"), Some(other));

    // An unchanged file changes nothing.
    let report = sb.sup_ok(&["reload", "--json"]);
    let v: serde_json::Value = serde_json::from_str(report.trim()).expect("json");
    assert_eq!(v["changed"], serde_json::json!([]), "{report}");

    // A bad line is an error at the file's line; the old config stays in force.
    sb.write("conf/web.env", "OK=1\nnot a line\n");
    let bad = sb.sup(&["reload"]);
    assert_eq!(bad.status.code(), Some(1));
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&bad.stdout),
        String::from_utf8_lossy(&bad.stderr)
    );
    assert!(said.contains("web.env:2:"), "{said}");
    assert!(said.contains("KEY=value"), "{said}");
    let check = sb.sup(&["check"]);
    assert_eq!(check.status.code(), Some(1));

    // A missing file and a FIFO are errors, not a hang.
    std::fs::remove_file(sb.path("conf/web.env")).expect("remove");
    assert!(nix_mkfifo(&sb.path("conf/web.env")));
    let fifo = sb.sup(&["check"]);
    assert_eq!(fifo.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&fifo.stderr).contains("not a regular file"),
        "{fifo:?}"
    );
    assert_eq!(sb.pid("other"), Some(other));
}

fn nix_mkfifo(path: &std::path::Path) -> bool {
    std::process::Command::new("mkfifo")
        .arg(path)
        .status()
        .is_ok_and(|s| s.success())
}
