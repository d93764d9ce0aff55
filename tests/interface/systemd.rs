//! README "Running sup under systemd": `sup daemon` with `$NOTIFY_SOCKET` tells a real
//! receiver, a datagram socket bound by the test as systemd binds its own, `READY=1` once the
//! autostart jobs run, `STATUS=` counts, `RELOADING=1`/`READY=1` around a reload,
//! `STOPPING=1` at shutdown, and `WATCHDOG=1` every half `$WATCHDOG_USEC` (and no wakeup at
//! all without it).

use std::os::unix::net::UnixDatagram;
use std::time::{Duration, Instant};

use crate::sandbox::{alive, kill, Sandbox, PATIENCE};

/// What the test's end of `$NOTIFY_SOCKET` received, in order.
struct Receiver {
    socket: UnixDatagram,
    got: Vec<String>,
}

impl Receiver {
    fn bind(sb: &Sandbox) -> Receiver {
        let path = sb.path("systemd-notify.sock");
        let socket = UnixDatagram::bind(&path).expect("bind the notify socket");
        Receiver::on(socket)
    }

    fn on(socket: UnixDatagram) -> Receiver {
        socket
            .set_read_timeout(Some(Duration::from_millis(20)))
            .expect("read timeout");
        Receiver {
            socket,
            got: Vec::new(),
        }
    }

    /// Read what arrives until `until`; returns how many messages came.
    fn drain_until(&mut self, until: Instant) -> usize {
        let before = self.got.len();
        let mut buf = [0u8; 4096];
        while Instant::now() < until {
            if let Ok(n) = self.socket.recv(&mut buf) {
                self.got
                    .push(String::from_utf8_lossy(&buf[..n]).into_owned());
            }
        }
        self.got.len() - before
    }

    /// Wait for the first message from now on for which `pred` holds, and return it.
    fn wait_for(&mut self, what: &str, pred: impl Fn(&str) -> bool) -> String {
        let deadline = Instant::now() + PATIENCE;
        let mut buf = [0u8; 4096];
        loop {
            assert!(
                Instant::now() < deadline,
                "timed out waiting for {what}; received: {:?}",
                self.got
            );
            if let Ok(n) = self.socket.recv(&mut buf) {
                let msg = String::from_utf8_lossy(&buf[..n]).into_owned();
                self.got.push(msg.clone());
                if pred(&msg) {
                    return msg;
                }
            }
        }
    }

    fn any(&self, pred: impl Fn(&str) -> bool) -> bool {
        self.got.iter().any(|m| pred(m))
    }
}

fn has(line: &'static str) -> impl Fn(&str) -> bool {
    move |m: &str| m.lines().any(|l| l == line)
}

fn status_of(msg: &str) -> Option<&str> {
    msg.lines().find_map(|l| l.strip_prefix("STATUS="))
}

/// A job that says READY=1 on its own notify socket only once the test creates `gate`.
const GATE: &str = r#"import os, socket, time
gate = os.path.join(os.environ["OUT"], "gate")
while not os.path.exists(gate):
    time.sleep(0.05)
s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
s.sendto(b"READY=1", os.environ["NOTIFY_SOCKET"])
time.sleep(1000)
"#;

/// The daemon's voluntary and involuntary context switches: flat while it sleeps in poll.
fn context_switches(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("proc status");
    status
        .lines()
        .filter(|l| l.contains("ctxt_switches:"))
        .filter_map(|l| l.split_whitespace().nth(1)?.parse::<u64>().ok())
        .sum()
}

#[test]
fn ready_1_comes_once_every_autostart_job_runs_with_status_counts() {
    let mut sb = Sandbox::with_programs(
        "sd-ready",
        r#"
  plain:
    cmd: sleep 1000
    numprocs: 2
    starttime: 200ms
  gated:
    cmd: python3 gate.py
    ready: notify
    ready_timeout: 60s
  manual:
    cmd: sleep 1000
    autostart: false
"#,
    );
    sb.write("gate.py", GATE);
    let mut rx = Receiver::bind(&sb);
    let notify = sb.path("systemd-notify.sock");
    sb.start_with_env(&[("NOTIFY_SOCKET", notify.to_str().expect("utf-8 path"))]);
    let daemon = sb.daemon_pid();

    // The plain jobs are up, the gated one is not ready: counts, but no READY=1.
    let msg = rx.wait_for("STATUS with both plain instances running", |m| {
        status_of(m).is_some_and(|s| s.starts_with("2 running"))
    });
    assert_eq!(
        status_of(&msg),
        Some("2 running, 0 backoff, 0 fatal, 1 starting, 1 stopped"),
        "{msg}"
    );
    assert_eq!(sb.state("gated"), "starting");
    rx.drain_until(Instant::now() + Duration::from_millis(500));
    assert!(!rx.any(has("READY=1")), "READY=1 too early: {:?}", rx.got);
    assert!(
        rx.got[0].lines().any(|l| l == format!("MAINPID={daemon}")),
        "the first message names the daemon: {:?}",
        rx.got
    );
    assert_eq!(
        rx.got.iter().filter(|m| m.contains("MAINPID=")).count(),
        1,
        "{:?}",
        rx.got
    );

    // Children do not inherit the daemon's NOTIFY_SOCKET; a notify job has its own.
    let plain = sb.pid("plain:0").expect("plain:0 pid");
    let environ = std::fs::read(format!("/proc/{plain}/environ")).expect("environ");
    assert!(
        !String::from_utf8_lossy(&environ).contains("NOTIFY_SOCKET="),
        "plain:0 inherited NOTIFY_SOCKET"
    );
    let gated = sb.pid("gated").expect("gated pid");
    let environ = std::fs::read(format!("/proc/{gated}/environ")).expect("environ");
    assert!(
        !String::from_utf8_lossy(&environ).contains(&format!("NOTIFY_SOCKET={}", notify.display())),
        "gated got the daemon's NOTIFY_SOCKET instead of its own"
    );

    sb.write("gate", "");
    let ready = rx.wait_for("READY=1", has("READY=1"));
    // At READY=1 every autostart instance runs, as processes that exist.
    for name in ["plain:0", "plain:1", "gated"] {
        assert_eq!(sb.state(name), "running", "{name}");
        let pid = sb.pid(name).expect("pid");
        assert!(alive(pid), "{name} pid {pid} not in /proc");
    }
    assert_eq!(
        status_of(&ready),
        Some("3 running, 0 backoff, 0 fatal, 1 stopped"),
        "{ready}"
    );

    // A change of counts is told; a turn that changes nothing tells nothing.
    sb.sup_ok(&["start", "manual"]);
    let msg = rx.wait_for("STATUS with manual running", |m| {
        status_of(m).is_some_and(|s| s.starts_with("4 running"))
    });
    assert_eq!(status_of(&msg), Some("4 running, 0 backoff, 0 fatal"));
    sb.sup_ok(&["status"]);
    assert_eq!(
        rx.drain_until(Instant::now() + Duration::from_millis(300)),
        0,
        "{:?}",
        rx.got
    );
    assert_eq!(rx.got.iter().filter(|m| has("READY=1")(m)).count(), 1);
}

#[test]
fn reload_is_reloading_1_then_ready_1_and_sigterm_is_stopping_1() {
    let mut sb = Sandbox::with_programs(
        "sd-reload",
        r#"
  web:
    cmd: sleep 1000
    starttime: 100ms
"#,
    );
    let mut rx = Receiver::bind(&sb);
    let notify = sb.path("systemd-notify.sock");
    sb.start_with_env(&[("NOTIFY_SOCKET", notify.to_str().expect("utf-8 path"))]);
    rx.wait_for("READY=1", has("READY=1"));

    // `sup reload`: RELOADING=1 (with the monotonic clock) first, READY=1 once the added
    // program runs.
    sb.write(
        "sup.yaml",
        "programs:\n  web:\n    cmd: sleep 1000\n    starttime: 100ms\n  \
         api:\n    cmd: sleep 1000\n    starttime: 300ms\n",
    );
    let start = rx.got.len();
    sb.sup_ok(&["reload"]);
    rx.wait_for("READY=1 after the reload", has("READY=1"));
    let since: Vec<&String> = rx.got[start..].iter().collect();
    let reloading = since
        .iter()
        .position(|m| has("RELOADING=1")(m))
        .unwrap_or_else(|| panic!("no RELOADING=1: {since:?}"));
    let usec = since[reloading]
        .lines()
        .find_map(|l| l.strip_prefix("MONOTONIC_USEC="))
        .and_then(|v| v.parse::<u64>().ok());
    assert!(usec.is_some_and(|u| u > 0), "{since:?}");
    let ready = since
        .iter()
        .rposition(|m| has("READY=1")(m))
        .expect("READY=1");
    assert!(reloading < ready, "{since:?}");
    // READY=1 comes in the turn api starts running, with the counts that turn changed.
    assert_eq!(
        status_of(since[ready]),
        Some("2 running, 0 backoff, 0 fatal"),
        "{since:?}"
    );
    assert_eq!(sb.state("api"), "running");

    // SIGHUP, as `systemctl reload` with `kill -HUP` would send it.
    let start = rx.got.len();
    kill(sb.daemon_pid(), 1);
    rx.wait_for("READY=1 after SIGHUP", has("READY=1"));
    assert!(
        rx.got[start..].iter().any(|m| has("RELOADING=1")(m)),
        "{:?}",
        &rx.got[start..]
    );

    // SIGTERM: STOPPING=1, and never READY=1 again.
    let start = rx.got.len();
    kill(sb.daemon_pid(), 15);
    assert_eq!(sb.wait_daemon_exit(), Some(0));
    rx.drain_until(Instant::now() + Duration::from_millis(100));
    let after = &rx.got[start..];
    let stopping = after
        .iter()
        .position(|m| has("STOPPING=1")(m))
        .unwrap_or_else(|| panic!("no STOPPING=1: {after:?}"));
    assert!(
        !after[stopping..].iter().any(|m| has("READY=1")(m)),
        "{after:?}"
    );
}

#[test]
fn watchdog_1_every_half_watchdog_usec_and_no_wakeup_without_it() {
    // With WATCHDOG_USEC=200000: a ping every 100 ms, and the daemon wakes for each.
    let mut sb = Sandbox::with_programs("sd-watchdog", "  web:\n    cmd: sleep 1000\n");
    let mut rx = Receiver::bind(&sb);
    let notify = sb.path("systemd-notify.sock");
    sb.start_with_env(&[
        ("NOTIFY_SOCKET", notify.to_str().expect("utf-8 path")),
        ("WATCHDOG_USEC", "200000"),
    ]);
    rx.wait_for("READY=1", has("READY=1"));
    let pid = sb.daemon_pid();
    let t0 = Instant::now();
    let switches = context_switches(pid);
    let first = rx.got.len();
    for i in 0..5 {
        rx.wait_for(&format!("WATCHDOG=1 number {i}"), has("WATCHDOG=1"));
    }
    let pings = rx.got[first..]
        .iter()
        .filter(|m| has("WATCHDOG=1")(m))
        .count();
    assert!(pings >= 5, "{:?}", rx.got);
    // Five pings at 100 ms intervals take about 400 ms at the least: not a tight loop.
    assert!(
        t0.elapsed() >= Duration::from_millis(350),
        "{:?}",
        t0.elapsed()
    );
    assert!(
        context_switches(pid) > switches,
        "a daemon with a watchdog wakes up"
    );
    drop(sb);

    // Without WATCHDOG_USEC no ping, and an idle daemon does not wake at all.
    let mut sb = Sandbox::with_programs("sd-idle", "  web:\n    cmd: sleep 1000\n");
    let mut rx = Receiver::bind(&sb);
    let notify = sb.path("systemd-notify.sock");
    sb.start_with_env(&[("NOTIFY_SOCKET", notify.to_str().expect("utf-8 path"))]);
    rx.wait_for("READY=1", has("READY=1"));
    let pid = sb.daemon_pid();
    // Let the status client that `start` used and the last transitions finish.
    rx.drain_until(Instant::now() + Duration::from_millis(200));
    let before = context_switches(pid);
    let until = Instant::now() + Duration::from_millis(1200);
    while Instant::now() < until {
        rx.drain_until(Instant::now() + Duration::from_millis(100));
        assert_eq!(
            context_switches(pid),
            before,
            "the idle daemon woke up; received {:?}",
            rx.got
        );
    }
    assert!(!rx.any(has("WATCHDOG=1")), "{:?}", rx.got);

    // A watchdog meant for another process (WATCHDOG_PID) is not ours to feed.
    drop(sb);
    let mut sb = Sandbox::with_programs("sd-otherpid", "  web:\n    cmd: sleep 1000\n");
    let mut rx = Receiver::bind(&sb);
    let notify = sb.path("systemd-notify.sock");
    sb.start_with_env(&[
        ("NOTIFY_SOCKET", notify.to_str().expect("utf-8 path")),
        ("WATCHDOG_USEC", "200000"),
        ("WATCHDOG_PID", "1"),
    ]);
    rx.wait_for("READY=1", has("READY=1"));
    rx.drain_until(Instant::now() + Duration::from_millis(500));
    assert!(!rx.any(has("WATCHDOG=1")), "{:?}", rx.got);
}

#[test]
fn an_abstract_notify_socket_works_and_a_dead_one_is_not_fatal() {
    use std::os::linux::net::SocketAddrExt;
    use std::os::unix::net::SocketAddr;
    let mut sb = Sandbox::with_programs("sd-abstract", "  web:\n    cmd: sleep 1000\n");
    let name = format!("sup-test-{}", sb.tag);
    let addr = SocketAddr::from_abstract_name(name.as_bytes()).expect("abstract address");
    let mut rx = Receiver::on(UnixDatagram::bind_addr(&addr).expect("bind abstract"));
    sb.start_with_env(&[("NOTIFY_SOCKET", &format!("@{name}"))]);
    rx.wait_for("READY=1", has("READY=1"));
    let mainpid = format!("MAINPID={}", sb.daemon_pid());
    assert!(rx.got[0].lines().any(|l| l == mainpid), "{:?}", rx.got);
    drop(sb);

    // Nobody listening: logged once, the daemon carries on.
    let mut sb = Sandbox::with_programs("sd-refused", "  web:\n    cmd: sleep 1000\n");
    let notify = sb.path("nobody.sock");
    sb.start_with_env(&[("NOTIFY_SOCKET", notify.to_str().expect("utf-8 path"))]);
    sb.wait_state("web", "running");
    sb.sup_ok(&["restart", "web"]);
    let log = sb.log();
    assert_eq!(log.matches("sd_notify: unable to send").count(), 1, "{log}");
    assert!(log.contains(" WARN "), "{log}");
}

/// A job that cannot start, and one held back waiting for it, do not hold READY=1 back.
#[test]
fn ready_1_does_not_wait_for_a_job_that_cannot_start() {
    let mut sb = Sandbox::with_programs(
        "sd-fatal",
        r#"
  db:
    cmd: "false"
    startretries: 0
  web:
    cmd: sleep 1000
    depends_on: [db]
"#,
    );
    let mut rx = Receiver::bind(&sb);
    let notify = sb.path("systemd-notify.sock");
    sb.start_with_env(&[("NOTIFY_SOCKET", notify.to_str().expect("utf-8 path"))]);
    let ready = rx.wait_for("READY=1", has("READY=1"));
    assert_eq!(sb.state("db"), "fatal");
    assert_eq!(sb.state("web"), "starting", "held back by db");
    assert!(
        ready.contains("STATUS=0 running, 0 backoff, 1 fatal, 1 starting\n"),
        "{:?}",
        rx.got
    );
}
