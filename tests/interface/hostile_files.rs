//! Files a user or another account can make hostile: a config nested deep enough to overflow a
//! recursive reader, symlinks planted where sup writes, a socket directory or state file that
//! someone else controls, and the fds held for instances that are down.

use crate::sandbox::{kill, wait_until, Sandbox, PATIENCE};

#[test]
fn a_deeply_nested_config_fails_reload_and_sighup_and_keeps_every_job() {
    let mut sb = Sandbox::with_programs(
        "deep",
        "  a:\n    cmd: sleep 1000\n    starttime: 0.1\n  b:\n    cmd: sleep 1000\n    starttime: 0.1\n",
    );
    sb.start();
    sb.wait_state("a", "running");
    sb.wait_state("b", "running");
    let before = sb.pids();
    sb.write("sup.yaml", &format!("{}x\n", "- ".repeat(30_000)));

    let out = sb.sup(&["reload"]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("sup.yaml:1:129: lists and maps nest deeper than 64 levels"),
        "{err}"
    );
    assert_eq!(sb.pids(), before);

    kill(sb.daemon_pid(), 1);
    sb.wait_for("the failed SIGHUP reload in the log", || {
        sb.log().matches("reload failed").count() >= 2
    });
    assert!(
        sb.log().contains("nest deeper than 64 levels"),
        "{}",
        sb.log()
    );
    assert_eq!(sb.pids(), before);
    assert!(sb.sup(&["status"]).status.success());
}

const VICTIM: &str = "root:secret:1:0:99999:7:::\n";

#[test]
fn output_files_that_are_symlinks_are_refused_and_the_job_still_runs() {
    let mut sb = Sandbox::with_programs(
        "symout",
        "  v:\n    cmd: sh -c 'echo to-out; echo to-err >&2; exec sleep 1000'\n    starttime: 0.1\n    stdout: out/v.out\n    stderr: out/v.err\n    stdout_maxbytes: 10\n    stdout_backups: 0\n",
    );
    sb.write("victim", VICTIM);
    sb.write("out/.keep", "");
    std::os::unix::fs::symlink(sb.path("victim"), sb.path("out/v.out")).expect("symlink");
    std::os::unix::fs::symlink(sb.path("victim"), sb.path("out/v.err")).expect("symlink");
    sb.start();
    sb.wait_state("v", "running");
    sb.wait_for("the refusal in the event log", || {
        sb.log().contains("symbolic link")
    });
    assert!(sb.log().contains("out/v.out"), "{}", sb.log());
    assert_eq!(sb.read("victim"), VICTIM);
    assert!(sb.sup(&["status"]).status.success());
}

#[test]
fn a_pidfile_or_event_log_that_is_a_symlink_is_refused_and_left_alone() {
    let sb = Sandbox::with_programs("sympid", "  a:\n    cmd: sleep 1000\n");
    sb.write("victim", VICTIM);
    std::os::unix::fs::symlink(sb.path("victim"), sb.pidfile()).expect("symlink");
    let err = refused_start(&sb);
    assert!(err.contains("symbolic link"), "{err}");
    assert_eq!(sb.read("victim"), VICTIM);

    std::fs::remove_file(sb.pidfile()).expect("rm");
    sb.write("logs/.keep", "");
    std::os::unix::fs::symlink(sb.path("victim"), sb.path("logs/sup.log")).expect("symlink");
    let err = refused_start(&sb);
    assert!(err.contains("symbolic link"), "{err}");
    assert_eq!(sb.read("victim"), VICTIM);
}

/// Start a daemon that should refuse to start, and return its stderr. One that does start is
/// killed at the deadline rather than left to hang the test.
fn refused_start(sb: &Sandbox) -> String {
    let err = std::fs::File::create(sb.path("refused.err")).expect("refused.err");
    let mut child = sb
        .daemon_command()
        .stdout(std::process::Stdio::null())
        .stderr(err)
        .spawn()
        .expect("spawn sup daemon");
    let mut status = None;
    let mut exited = || {
        status = child.try_wait().ok().flatten();
        status.is_some()
    };
    let started = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        wait_until(
            "the daemon to refuse to start",
            PATIENCE,
            &mut exited,
            String::new,
        )
    }));
    if started.is_err() {
        kill(child.id(), 15);
        let _ = child.wait();
        panic!("the daemon started: {}", sb.read("refused.err"));
    }
    assert!(status.is_some_and(|s| !s.success()));
    sb.read("refused.err")
}

/// Another user who makes the socket directory first (`/tmp/sup-$UID` with mode 0777) could
/// plant a state file naming the victim's processes: the daemon refuses the directory, naming
/// its owner and mode, and kills nothing.
#[test]
fn a_socket_directory_others_can_write_or_own_is_refused() {
    use std::os::unix::fs::PermissionsExt;
    let sb = Sandbox::with_programs("sockdir", "  a:\n    cmd: sleep 1000\n");
    let chmod = |mode| {
        std::fs::set_permissions(&sb.dir, std::fs::Permissions::from_mode(mode)).expect("chmod")
    };
    chmod(0o777);
    let err = refused_start(&sb);
    chmod(0o755);
    assert!(err.contains("refusing the socket directory"), "{err}");
    assert!(
        err.contains("mode 0777 lets every user write in it"),
        "{err}"
    );

    if nix::unistd::geteuid().is_root() {
        let nobody = nix::unistd::Uid::from_raw(65534);
        nix::unistd::chown(&sb.dir, Some(nobody), None).expect("chown");
        let err = refused_start(&sb);
        nix::unistd::chown(&sb.dir, Some(nix::unistd::Uid::from_raw(0)), None).expect("chown");
        assert!(err.contains("owned by uid 65534"), "{err}");
    }
    // Put right, the same directory is used.
    let mut sb = sb;
    sb.start();
    sb.wait_state("a", "running");
}

/// Replace `rel` in the sandbox by a FIFO, as a job owning the log directory could.
fn plant_fifo(sb: &Sandbox, rel: &str) {
    let _ = std::fs::remove_file(sb.path(rel));
    nix::unistd::mkfifo(
        &sb.path(rel),
        nix::sys::stat::Mode::from_bits_truncate(0o600),
    )
    .expect("mkfifo");
}

/// `status` with a short client deadline: a frozen daemon fails it instead of hanging the test.
fn answers_status(sb: &Sandbox) -> bool {
    sb.sup(&["--timeout", "5s", "status"]).status.success()
}

/// `sup --timeout 5s tail NAME`, which must fail naming the refusal.
fn refused_tail(sb: &Sandbox, name: &str) -> String {
    let out = sb.sup(&["--timeout", "5s", "tail", name]);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn an_output_file_that_is_a_fifo_is_refused_and_the_job_still_runs() {
    let mut sb = Sandbox::with_programs(
        "fifoout",
        "  v:\n    cmd: sh -c 'echo to-out; exec sleep 1000'\n    starttime: 0.1\n    stdout: out/v.out\n",
    );
    sb.write("out/.keep", "");
    plant_fifo(&sb, "out/v.out");
    sb.start();
    sb.wait_state("v", "running");
    sb.wait_for("the refusal in the event log", || {
        sb.log().contains("not a regular file (a FIFO)")
    });
    assert!(sb.log().contains("out/v.out"), "{}", sb.log());
    assert!(answers_status(&sb));
}

#[test]
fn tail_of_a_file_replaced_by_a_fifo_fails_and_the_daemon_keeps_answering() {
    let mut sb = Sandbox::with_programs(
        "fifotail",
        "  t:\n    cmd: sh -c 'echo hello; exec sleep 1000'\n    starttime: 0.1\n    stdout: out/t.out\n",
    );
    sb.start();
    sb.wait_state("t", "running");
    sb.wait_for("the job's output", || {
        sb.read("out/t.out").contains("hello")
    });
    plant_fifo(&sb, "out/t.out");
    let err = refused_tail(&sb, "t");
    assert!(err.contains("not a regular file (a FIFO)"), "{err}");
    assert!(answers_status(&sb));
}

#[test]
fn tail_of_a_symlink_to_dev_zero_fails_and_the_daemon_keeps_answering() {
    let mut sb = Sandbox::with_programs(
        "zerotail",
        "  z:\n    cmd: sh -c 'echo hello; exec sleep 1000'\n    starttime: 0.1\n    stdout: out/z.out\n",
    );
    sb.start();
    sb.wait_state("z", "running");
    sb.wait_for("the job's output", || {
        sb.read("out/z.out").contains("hello")
    });
    std::fs::remove_file(sb.path("out/z.out")).expect("rm");
    std::os::unix::fs::symlink("/dev/zero", sb.path("out/z.out")).expect("symlink");
    let err = refused_tail(&sb, "z");
    assert!(err.contains("symbolic link"), "{err}");
    assert!(answers_status(&sb));
}

#[test]
fn logreopen_onto_a_fifo_fails_and_the_daemon_keeps_answering() {
    let mut sb = Sandbox::with_programs("fifolog", "  a:\n    cmd: sleep 1000\n");
    sb.start();
    plant_fifo(&sb, "logs/sup.log");
    let out = sb.sup(&["--timeout", "5s", "logreopen"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("not a regular file (a FIFO)"), "{err}");
    assert!(answers_status(&sb));
    // The FIFO is not read here: without a writer that would block the test.
    drop(sb);

    // At start, a FIFO at the event log or the pidfile is refused rather than waited on.
    let sb = Sandbox::with_programs("fifostart", "  a:\n    cmd: sleep 1000\n");
    sb.write("logs/.keep", "");
    plant_fifo(&sb, "logs/sup.log");
    let err = refused_start(&sb);
    assert!(err.contains("not a regular file (a FIFO)"), "{err}");
    std::fs::remove_file(sb.path("logs/sup.log")).expect("rm");
    nix::unistd::mkfifo(
        &sb.pidfile(),
        nix::sys::stat::Mode::from_bits_truncate(0o600),
    )
    .expect("mkfifo");
    let err = refused_start(&sb);
    assert!(err.contains("not a regular file (a FIFO)"), "{err}");
}
