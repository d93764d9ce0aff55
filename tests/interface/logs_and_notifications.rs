//! The event log and job output: output rotated without losing a byte, timestamps
//! on every line, `logreopen` after an external rotation, a full disk that keeps the job
//! alive, and notifications received by a real SMTP server, a TCP listener and a hook.

use std::fs;
use std::io::{BufRead, BufReader};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::sandbox::{kill, wait_until, Sandbox, PATIENCE};

/// Every file of a rotated log, oldest first.
fn generations(path: &Path) -> Vec<(PathBuf, Vec<u8>)> {
    let mut out = Vec::new();
    for n in (1..1000).rev() {
        let p = PathBuf::from(format!("{}.{n}", path.display()));
        if let Ok(b) = fs::read(&p) {
            out.push((p, b));
        }
    }
    out.push((path.to_path_buf(), fs::read(path).unwrap_or_default()));
    out
}

const WRITER: &str = r#"awk 'BEGIN { for (i = 0; i < 100000; i++) printf "line %06d abcdefghijklmnopqrstuvwxyz\n", i }'
"#;

fn expected_lines() -> Vec<u8> {
    let mut v = Vec::new();
    for i in 0..100_000 {
        v.extend_from_slice(format!("line {i:06} abcdefghijklmnopqrstuvwxyz\n").as_bytes());
    }
    v
}

#[test]
fn rotation_under_a_fast_writer_loses_and_splits_nothing() {
    let mut sb = Sandbox::new("rotate");
    sb.write("writer.sh", WRITER);
    let w = sb.path("writer.sh");
    sb.write(
        "sup.yaml",
        &format!(
            r#"programs:
  many:
    cmd: ["sh", "{w}"]
    autorestart: never
    starttime: 0
    stdout_maxbytes: 100KB
    stdout_backups: 100
  capped:
    cmd: ["sh", "{w}"]
    autorestart: never
    starttime: 0
    stdout_maxbytes: 100000
    stdout_backups: 3
"#,
            w = w.display()
        ),
    );
    sb.start();
    sb.wait_state("many", "exited");
    sb.wait_state("capped", "exited");
    let want = expected_lines();

    let files = generations(&sb.path("logs/many.out"));
    assert!(files.len() > 30, "{} files", files.len());
    let all: Vec<u8> = files.iter().flat_map(|(_, b)| b.clone()).collect();
    assert_eq!(all.len(), want.len(), "total bytes across many.out*");
    assert!(all == want, "the bytes differ from what was written");
    for (p, b) in &files {
        assert!(
            b.len() <= 100 * 1024 + 40,
            "{} has {} bytes",
            p.display(),
            b.len()
        );
        assert_eq!(b.last(), Some(&b'\n'), "{} ends inside a line", p.display());
    }

    let files = generations(&sb.path("logs/capped.out"));
    assert_eq!(files.len(), 4, "three backups and the live file");
    assert!(!sb.path("logs/capped.out.4").exists());
    let kept: Vec<u8> = files.iter().flat_map(|(_, b)| b.clone()).collect();
    assert!(
        want.ends_with(&kept),
        "the kept files are the newest bytes, in order"
    );
}

#[test]
fn fast_output_lands_byte_exact_across_rotations_and_a_follower_sees_every_line() {
    // A writer faster than the loop (its pipe grown, reads of 128 KiB): every byte in order
    // across the rotated files, each cut at a newline near the limit; and a `tail -f`
    // attached to another job sees each of its lines.
    let mut sb = Sandbox::new("fastlog");
    sb.write(
        "big.sh",
        r#"awk 'BEGIN { for (i = 0; i < 200000; i++) printf "line %06d abcdefghijklmnopqrstuvwxyz\n", i }'
echo the-end
"#,
    );
    sb.write(
        "talk.sh",
        r#"echo ready
while [ ! -e "$OUT/go" ]; do sleep 0.05; done
i=0; while [ $i -lt 500 ]; do echo "said $i"; i=$((i + 1)); done
exec sleep 1000
"#,
    );
    sb.write(
        "sup.yaml",
        &format!(
            r#"programs:
  big:
    cmd: ["sh", "{big}"]
    autorestart: never
    starttime: 0
    stdout_maxbytes: 1MB
    stdout_backups: 20
  talk:
    cmd: ["sh", "{talk}"]
    starttime: 0
"#,
            big = sb.path("big.sh").display(),
            talk = sb.path("talk.sh").display()
        ),
    );
    sb.start();

    sb.wait_for("the first line", || sb.read("logs/talk.out") == "ready\n");
    let mut follower = Command::new(crate::sandbox::sup_bin())
        .args(["tail", "-f", "-n", "1", "talk", "--socket"])
        .arg(sb.socket())
        .stdout(Stdio::piped())
        .spawn()
        .expect("tail -f");
    let stdout = follower.stdout.take().expect("stdout");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut reader = BufReader::new(stdout);
        let mut line = String::new();
        while reader.read_line(&mut line).is_ok_and(|n| n > 0) {
            if tx.send(std::mem::take(&mut line)).is_err() {
                break;
            }
        }
    });
    // The follower is attached once it has the last line so far.
    let first = rx
        .recv_timeout(PATIENCE)
        .expect("the follower's first line");
    assert_eq!(first, "ready\n");
    sb.write("go", "");
    for i in 0..500 {
        let line = rx.recv_timeout(PATIENCE).expect("a followed line");
        assert_eq!(line, format!("said {i}\n"));
    }
    let _ = follower.kill();
    let _ = follower.wait();

    sb.wait_state("big", "exited");
    let mut want = Vec::new();
    for i in 0..200_000 {
        want.extend_from_slice(format!("line {i:06} abcdefghijklmnopqrstuvwxyz\n").as_bytes());
    }
    want.extend_from_slice(b"the-end\n");
    let files = generations(&sb.path("logs/big.out"));
    assert!(files.len() >= 7, "{} files", files.len());
    let all: Vec<u8> = files.iter().flat_map(|(_, b)| b.clone()).collect();
    assert_eq!(all.len(), want.len(), "total bytes across big.out*");
    assert!(all == want, "the bytes differ from what was written");
    for (p, b) in &files[..files.len() - 1] {
        assert!(
            (1024 * 1024 - 40..=1024 * 1024 + 40).contains(&b.len()),
            "{} has {} bytes",
            p.display(),
            b.len()
        );
        assert_eq!(b.last(), Some(&b'\n'), "{} ends inside a line", p.display());
    }
}

fn is_stamped(line: &str) -> bool {
    line.split_once(' ')
        .is_some_and(|(ts, _)| chrono::DateTime::parse_from_rfc3339(ts).is_ok())
}

#[test]
fn timestamps_on_every_line_with_stderr_merged() {
    let mut sb = Sandbox::with_programs(
        "stamps",
        r#"
  talk:
    cmd: ["sh", "-c", "echo one; echo err-one >&2; printf tw; sleep 0.2; echo o; printf tail"]
    autorestart: never
    starttime: 0
    timestamps: true
    redirect_stderr: true
"#,
    );
    sb.start();
    sb.wait_state("talk", "exited");
    let text = sb.read("logs/talk.out");
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 4, "{text}");
    for l in &lines {
        assert!(is_stamped(l), "no timestamp: {l:?}");
    }
    let bodies: Vec<&str> = lines
        .iter()
        .filter_map(|l| l.split_once(' '))
        .map(|x| x.1)
        .collect();
    assert!(
        bodies.contains(&"one") && bodies.contains(&"err-one"),
        "{text}"
    );
    assert!(
        bodies.contains(&"two"),
        "a line read in two pieces is one line: {text}"
    );
    assert_eq!(bodies.last(), Some(&"tail"), "{text}");
    assert!(
        !sb.path("logs/talk.err").exists(),
        "stderr went into talk.out"
    );
}

#[test]
fn logreopen_and_sigusr2_follow_a_moved_file() {
    let mut sb = Sandbox::with_programs(
        "reopen",
        r#"
  tick:
    cmd: ["sh", "-c", "while true; do echo tick; sleep 0.05; done"]
"#,
    );
    sb.start();
    let out = sb.path("logs/tick.out");
    sb.wait_for("tick.out to fill", || {
        sb.read("logs/tick.out").contains("tick")
    });
    fs::rename(&out, sb.path("logs/tick.out.old")).expect("mv");
    fs::rename(sb.path("logs/sup.log"), sb.path("logs/sup.log.old")).expect("mv");
    let said = sb.sup_ok(&["logreopen"]);
    assert!(said.contains("reopened"), "{said}");
    sb.wait_for("a new tick.out", || {
        sb.read("logs/tick.out").contains("tick")
    });
    assert!(
        sb.log().contains("logreopen"),
        "the new event log is written"
    );

    fs::rename(&out, sb.path("logs/tick.out.old2")).expect("mv");
    kill(sb.daemon_pid(), 12);
    sb.wait_for("tick.out after SIGUSR2", || {
        sb.read("logs/tick.out").contains("tick")
    });
}

#[test]
fn a_full_disk_keeps_the_job_alive_and_writing_resumes() {
    let sb0 = Sandbox::new("fulldisk");
    let mnt = sb0.path("small");
    fs::create_dir_all(&mnt).expect("mkdir");
    let mounted = Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=1m", "tmpfs"])
        .arg(&mnt)
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !mounted {
        eprintln!("skipped: mounting a tmpfs is not allowed here");
        return;
    }
    struct Unmount(PathBuf);
    impl Drop for Unmount {
        fn drop(&mut self) {
            let _ = Command::new("umount").arg("-l").arg(&self.0).status();
        }
    }
    let _unmount = Unmount(mnt.clone());
    let mut sb = sb0;
    sb.write(
        "sup.yaml",
        &format!(
            r#"programs:
  flood:
    cmd: ["sh", "-c", "head -c 3000000 /dev/zero | tr '\\0' x; echo; while true; do echo alive; sleep 0.05; done"]
    stdout: {}/{{name}}.out
    stdout_maxbytes: 0
"#,
            mnt.display()
        ),
    );
    sb.start();
    let mut seen = serde_json::Value::Null;
    sb.wait_for("log_error in status", || {
        seen = sb.instance("flood");
        seen["log_error"].is_string()
    });
    let err = seen["log_error"].as_str().unwrap_or("");
    assert!(
        err.contains("flood.out") && err.contains("dropped"),
        "{err}"
    );
    sb.wait_for("the failure in the event log", || {
        sb.log().contains("dropping its output")
    });
    sb.wait_state("flood", "running");
    let reported = sb.log().matches("dropping its output").count();
    assert_eq!(reported, 1, "reported once:\n{}", sb.log());

    // Make room: the job's next lines land again, and status says all is well.
    fs::write(mnt.join("flood.out"), b"").expect("truncate");
    sb.wait_for("writing to resume", || {
        sb.log().contains("writing") && sb.instance("flood")["log_error"].is_null()
    });
    sb.wait_for("new lines", || {
        fs::read_to_string(mnt.join("flood.out")).is_ok_and(|t| t.contains("alive"))
    });
    assert_eq!(sb.state("flood"), "running");
    sb.sup_ok(&["stop", "flood"]);
}

#[test]
fn the_event_log_names_the_daemon_start_and_shutdown_with_version_and_config() {
    let mut sb = Sandbox::with_programs(
        "eventlog",
        r#"
  web:
    cmd: ["sleep", "1000"]
    starttime: 0
"#,
    );
    sb.start();
    sb.wait_state("web", "running");
    sb.sup_ok(&["shutdown"]);
    assert_eq!(sb.wait_daemon_exit(), Some(0));
    let log = sb.log();
    let config = sb.path("sup.yaml");
    let version = env!("CARGO_PKG_VERSION");
    let started = format!("INFO sup {version} started pid=");
    let shutdown = format!("INFO sup {version} shutdown:");
    for (word, at) in [
        (&started, &format!("config={}", config.display())),
        (&shutdown, &format!("config={}", config.display())),
    ] {
        let line = log
            .lines()
            .find(|l| l.contains(word.as_str()))
            .unwrap_or_else(|| panic!("no {word:?} in\n{log}"));
        assert!(line.contains(at.as_str()), "{line}");
        assert!(is_stamped(line), "{line}");
    }
    for word in [
        "web spawned pid=",
        "web running",
        "web stopping",
        "web stopped",
    ] {
        assert!(log.contains(word), "no {word:?} in\n{log}");
    }
}

/// A real SMTP server (Python's aiosmtpd) storing mail in a Maildir; killed on drop.
struct Smtp {
    child: Child,
    port: u16,
    maildir: PathBuf,
}

impl Drop for Smtp {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

/// The first python that imports aiosmtpd: the venv `make test-deps` makes when the system
/// python3 cannot have it (pip refuses an externally managed Python), else `python3`.
fn aiosmtpd_python() -> Option<PathBuf> {
    let venv = Path::new(env!("CARGO_MANIFEST_DIR")).join(".venv-test/bin/python");
    [venv, PathBuf::from("python3")].into_iter().find(|py| {
        Command::new(py)
            .args(["-c", "import aiosmtpd"])
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    })
}

fn smtp_server(dir: &Path) -> Option<Smtp> {
    let Some(python) = aiosmtpd_python() else {
        eprintln!("skipped: no python with aiosmtpd (`make test-deps` installs it)");
        return None;
    };
    let port = free_port();
    let maildir = dir.join("maildir");
    let child = Command::new(python)
        .args(["-m", "aiosmtpd", "-n", "-l"])
        .arg(format!("127.0.0.1:{port}"))
        .args(["-c", "aiosmtpd.handlers.Mailbox"])
        .arg(&maildir)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start aiosmtpd");
    let smtp = Smtp {
        child,
        port,
        maildir,
    };
    wait_until(
        "aiosmtpd to listen",
        PATIENCE,
        &mut || std::net::TcpStream::connect(("127.0.0.1", port)).is_ok(),
        String::new,
    );
    Some(smtp)
}

fn mails(maildir: &Path) -> Vec<String> {
    let Ok(entries) = fs::read_dir(maildir.join("new")) else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter_map(|e| fs::read_to_string(e.path()).ok())
        .collect()
}

#[test]
fn a_fatal_job_reaches_mail_report_and_hook() {
    let sb0 = Sandbox::new("notify");
    let Some(smtp) = smtp_server(&sb0.dir) else {
        return;
    };
    let report = TcpListener::bind("127.0.0.1:0").expect("bind");
    let report_addr = report.local_addr().expect("addr");
    let mut sb = sb0;
    sb.write(
        "hook.sh",
        "#!/bin/sh\nprintf '%s %s %s %s\\n' \"$SUP_EVENT\" \"$SUP_PROCESS_NAME\" \"$SUP_PROGRAM\" \"$SUP_EXIT_CODE\" >> \"$OUT/hook.txt\"\n\
         exec grep '^SigBlk' /proc/self/status > \"$OUT/hook-mask.txt\"\n",
    );
    let hook = sb.path("hook.sh");
    Command::new("chmod")
        .arg("+x")
        .arg(&hook)
        .status()
        .expect("chmod");
    sb.write(
        "sup.yaml",
        &format!(
            r#"daemon:
  notify:
    events: [fatal]
    email:
      host: 127.0.0.1
      port: {port}
      starttls: false
      from: sup@example.org
      to: [ops@example.org]
    fatal_state_report_address: "{report_addr}"
    hook: {hook}
programs:
  crash:
    cmd: ["sh", "-c", "echo last-words-of-crash; exit 3"]
    starttime: 5
    startretries: 0
"#,
            port = smtp.port,
            hook = hook.display()
        ),
    );
    sb.start();
    sb.wait_state("crash", "fatal");

    // The report: one JSON line.
    report.set_nonblocking(false).expect("blocking");
    let (conn, _) = report.accept().expect("the report connects");
    conn.set_read_timeout(Some(PATIENCE)).expect("timeout");
    let mut line = String::new();
    BufReader::new(conn).read_line(&mut line).expect("a line");
    let v: serde_json::Value = serde_json::from_str(&line).expect("JSON");
    assert_eq!(v["event"], "fatal", "{line}");
    assert_eq!(v["instance"], "crash");
    assert_eq!(v["exit_code"], 3);

    // The hook.
    sb.wait_for("the hook to run", || sb.read("hook.txt").contains("fatal"));
    assert_eq!(sb.read("hook.txt").trim(), "fatal crash crash 3");
    // Not the daemon's mask, which blocks SIGTERM for its signalfd: a hook can be stopped.
    // grep is exec'd by the hook's shell, so it has the mask the hook began with; the shell's
    // own, read while it waits for a child, is full for a moment (dash blocks every signal
    // around its sigsuspend).
    sb.wait_for("the hook's mask", || {
        sb.read("hook-mask.txt").ends_with('\n')
    });
    assert_eq!(sb.read("hook-mask.txt").trim(), "SigBlk:\t0000000000000000");

    // The mail.
    let mut got = Vec::new();
    sb.wait_for("the mail to arrive", || {
        got = mails(&smtp.maildir);
        !got.is_empty()
    });
    let mail = &got[0];
    let host = fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default();
    assert!(
        mail.contains(&format!("Subject: sup: crash fatal on {}", host.trim())),
        "{mail}"
    );
    assert!(mail.contains("last-words-of-crash"), "{mail}");
    assert!(mail.contains("last exit: 3"), "{mail}");
    sb.wait_for("the event log lines", || {
        let log = sb.log();
        log.contains("crash notification sent: email fatal")
            && log.contains("crash notification sent: report fatal")
            && log.contains("crash notification sent: hook fatal")
    });
}

#[test]
fn a_dead_smtp_server_delays_nothing_but_the_mail() {
    // One server that never answers (a listener nobody accepts from) and one closed port.
    let silent = TcpListener::bind("127.0.0.1:0").expect("bind");
    let silent_port = silent.local_addr().expect("addr").port();
    let closed_port = free_port();
    let mut sb = Sandbox::new("deadsmtp");
    sb.write(
        "sup.yaml",
        &format!(
            r#"daemon:
  notify:
    events: [fatal]
    email:
      host: 127.0.0.1
      port: {silent_port}
      starttls: false
      from: sup@example.org
      to: [ops@example.org]
    fatal_state_report_address: "127.0.0.1:{closed_port}"
programs:
  crash:
    cmd: ["sh", "-c", "exit 3"]
    starttime: 5
    startretries: 0
  web:
    cmd: ["sleep", "1000"]
"#
        ),
    );
    sb.start();
    sb.wait_state("crash", "fatal");
    // While the mail hangs on the silent server, the daemon answers at once.
    for _ in 0..10 {
        let t = Instant::now();
        sb.sup_ok(&["status"]);
        assert!(
            t.elapsed() < Duration::from_secs(2),
            "status took {:?}",
            t.elapsed()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    // The closed port fails fast, is retried, then given up on, in the event log.
    sb.wait_for("the report to be given up", || {
        sb.log().contains("crash notification failed: report fatal")
    });
    assert!(sb.log().contains("try 1 of 3 failed"), "{}", sb.log());
    assert!(
        !sb.log().contains("notification sent: email"),
        "{}",
        sb.log()
    );
    drop(silent);
}
