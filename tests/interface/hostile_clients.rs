//! The control socket against clients that misbehave on purpose: floods of blank lines,
//! requests that name nothing, a byte at a time, a client that never pauses, and more
//! clients than the daemon has descriptors for. The daemon must keep answering everyone else.

use std::io::{BufRead, BufReader, ErrorKind, Read, Write};
use std::os::unix::net::UnixStream;
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::sandbox::{Sandbox, PATIENCE};

fn one_job() -> Sandbox {
    let mut sb = Sandbox::with_programs(
        "hostile",
        "  job:\n    cmd: [\"sleep\", \"1000\"]\n    starttime: 0.1\n    stoptime: 2\n",
    );
    sb.start();
    sb.wait_state("job", "running");
    sb
}

fn connect(sb: &Sandbox) -> UnixStream {
    let s = UnixStream::connect(sb.socket()).expect("connect");
    s.set_read_timeout(Some(PATIENCE)).expect("timeout");
    s
}

fn read_line(s: &UnixStream) -> String {
    let mut reply = String::new();
    let _ = BufReader::new(s).read_line(&mut reply);
    reply
}

fn ask(sb: &Sandbox, line: &[u8]) -> String {
    let mut s = connect(sb);
    // A refused client may find the connection closed before it writes: the answer is
    // still there to read.
    let _ = s.write_all(line);
    read_line(&s)
}

#[test]
fn hostile_blank_line_flood_then_a_request_on_the_same_connection() {
    let sb = one_job();
    let mut s = connect(&sb);
    let reader = s.try_clone().expect("clone");
    // Written from a thread: the daemon reads it in pieces while we wait for the answer.
    let writer = std::thread::spawn(move || {
        let _ = s.write_all(&vec![b'\n'; 200_000]);
        let _ = s.write_all(b"\r\n \n{\"v\":1,\"cmd\":\"status\"}\n");
    });
    let reply = read_line(&reader);
    assert!(reply.contains("\"kind\":\"status\""), "{reply:?}");
    let _ = writer.join();
    sb.sup_ok(&["status"]);
    assert_eq!(sb.state("job"), "running");
}

#[test]
fn hostile_empty_names_select_nothing_and_all_stays_explicit() {
    let sb = one_job();
    let pid = sb.pid("job");
    for cmd in [
        r#"{"v":1,"cmd":"stop","names":[]}"#,
        r#"{"v":1,"cmd":"start","names":[],"wait":true}"#,
        r#"{"v":1,"cmd":"restart","names":[]}"#,
        r#"{"v":1,"cmd":"signal","signal":"TERM","names":[]}"#,
    ] {
        let reply = ask(&sb, format!("{cmd}\n").as_bytes());
        assert!(reply.contains("\"kind\":\"error\""), "{cmd}: {reply}");
        assert!(reply.contains("selects nothing"), "{cmd}: {reply}");
    }
    assert_eq!(sb.state("job"), "running");
    assert_eq!(sb.pid("job"), pid, "nothing was restarted");
    // Looking still means everything.
    let status = ask(&sb, b"{\"v\":1,\"cmd\":\"status\",\"names\":[]}\n");
    assert!(status.contains("\"name\":\"job\""), "{status}");
    // And `all` on the command line still works.
    sb.sup_ok(&["stop", "all"]);
    assert_eq!(sb.state("job"), "stopped");
}

#[test]
fn hostile_a_dripping_client_is_cut_off_after_the_partial_line_deadline() {
    let sb = one_job();
    let mut s = connect(&sb);
    // The read timeout paces the drip: one byte, then up to 500 ms listening for the close.
    s.set_read_timeout(Some(Duration::from_millis(500)))
        .expect("timeout");
    let first = Instant::now();
    let mut closed = false;
    while first.elapsed() < Duration::from_secs(30) {
        if s.write_all(b"x").is_err() {
            closed = true;
            break;
        }
        let mut buf = [0u8; 64];
        match s.read(&mut buf) {
            Ok(0) => {
                closed = true;
                break;
            }
            Ok(_) => {}
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
            Err(_) => {
                closed = true;
                break;
            }
        }
    }
    let took = first.elapsed();
    assert!(closed, "still connected after {took:?}");
    // The deadline is 5 s from the first byte; the rest is slack for a loaded machine.
    assert!(
        took >= Duration::from_millis(4500),
        "cut off early: {took:?}"
    );
    assert!(took < Duration::from_secs(12), "cut off late: {took:?}");
    sb.sup_ok(&["status"]);
}

#[test]
fn hostile_a_client_that_never_pauses_does_not_starve_the_others() {
    let sb = one_job();
    let s = connect(&sb);
    let stop = Arc::new(AtomicBool::new(false));
    // The flooder reads its answers (it is fast, not rude) and writes requests without pause.
    let mut w = s.try_clone().expect("clone");
    let stop_w = stop.clone();
    let writer = std::thread::spawn(move || {
        let batch = b"{\"v\":1,\"cmd\":\"status\"}\n".repeat(4000);
        let started = Instant::now();
        while !stop_w.load(Ordering::Relaxed) && started.elapsed() < Duration::from_secs(60) {
            if let Err(e) = w.write_all(&batch) {
                return Some(e.to_string());
            }
        }
        None
    });
    let ender = s.try_clone().expect("clone");
    let mut r = s;
    let stop_r = stop.clone();
    let reader = std::thread::spawn(move || {
        let mut buf = vec![0u8; 1 << 16];
        let mut total = 0usize;
        while !stop_r.load(Ordering::Relaxed) {
            match r.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => total += n,
            }
        }
        total
    });
    // Let the flood get going.
    let started = Instant::now();
    while started.elapsed() < Duration::from_millis(300) {
        std::thread::yield_now();
    }
    let t = Instant::now();
    let reply = ask(&sb, b"{\"v\":1,\"cmd\":\"status\"}\n");
    let took = t.elapsed();
    stop.store(true, Ordering::Relaxed);
    // Unblocks the writer, which the daemon holds back once answers go unread.
    let _ = ender.shutdown(std::net::Shutdown::Both);
    assert!(reply.contains("\"kind\":\"status\""), "{reply:?}");
    assert!(took < Duration::from_secs(10), "answered after {took:?}");
    let _ = writer.join();
    let _ = reader.join();
}

/// How many descriptors a process has open.
fn open_fds(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .map(|d| d.count())
        .unwrap_or(0)
}

#[test]
fn hostile_out_of_descriptors_answers_with_an_error_and_recovers() {
    let sb = one_job();
    let pid = sb.daemon_pid();
    let limit = open_fds(pid) + 8;
    let set = Command::new("prlimit")
        .arg(format!("--pid={pid}"))
        .arg(format!("--nofile={limit}:{limit}"))
        .status();
    if !set.is_ok_and(|s| s.success()) {
        eprintln!("skipped: prlimit cannot lower the daemon's descriptor limit");
        return;
    }
    // Silent clients until the daemon has no descriptor left for another.
    let mut held = Vec::new();
    let mut refused = None;
    for _ in 0..200 {
        let mut s = connect(&sb);
        s.set_read_timeout(Some(Duration::from_millis(200)))
            .expect("timeout");
        let mut buf = [0u8; 512];
        match s.read(&mut buf) {
            Ok(n) if n > 0 => {
                refused = Some(String::from_utf8_lossy(&buf[..n]).into_owned());
                break;
            }
            _ => held.push(s),
        }
    }
    let refused = refused.expect("a client is refused once descriptors run out");
    assert!(refused.contains("out of file descriptors"), "{refused}");
    // A new client asking for status is answered at once, with the error.
    let t = Instant::now();
    let reply = ask(&sb, b"{\"v\":1,\"cmd\":\"status\"}\n");
    assert!(reply.contains("out of file descriptors"), "{reply}");
    assert!(t.elapsed() < Duration::from_secs(10), "{:?}", t.elapsed());
    drop(held);
    sb.wait_for("status to work again", || {
        ask(&sb, b"{\"v\":1,\"cmd\":\"status\"}\n").contains("\"kind\":\"status\"")
    });
    sb.sup_ok(&["status"]);
}

#[test]
fn hostile_a_silent_daemon_is_given_up_on_within_the_timeout() {
    let sb = Sandbox::new("silent");
    // Something listening that accepts and never answers.
    let listener = std::os::unix::net::UnixListener::bind(sb.socket()).expect("bind");
    for (flag, env) in [(Some("1s"), None), (None, Some("1s"))] {
        let mut cmd = Command::new(crate::sandbox::sup_bin());
        cmd.arg("status").arg("--socket").arg(sb.socket());
        if let Some(f) = flag {
            cmd.args(["--timeout", f]);
        }
        match env {
            Some(e) => cmd.env("SUP_TIMEOUT", e),
            None => cmd.env_remove("SUP_TIMEOUT"),
        };
        let t = Instant::now();
        let out = cmd.output().expect("run sup");
        let took = t.elapsed();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{err}");
        assert!(
            err.contains(&format!(
                "no answer from the daemon on {} within 1s (waiting for: status)",
                sb.socket().display()
            )),
            "{err}"
        );
        assert!(took < Duration::from_secs(15), "gave up after {took:?}");
    }
    drop(listener);
}
