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
