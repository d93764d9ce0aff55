//! The control socket under abuse (mode 0600, only our uid
//! and root), and the commands that stream or signal: tail, signal, pid.

use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::UnixStream;
use std::process::{Command, Stdio};
use std::time::Duration;

use crate::sandbox::{alive, sup_bin, Sandbox};

fn one_job() -> Sandbox {
    let mut sb = Sandbox::with_programs(
        "sock",
        "  job:\n    cmd: [\"sh\", \"-c\", \"trap 'echo usr1 > $OUT/usr1' USR1; while :; do sleep 0.05; done\"]\n    starttime: 0.1\n",
    );
    sb.start();
    sb.wait_state("job", "running");
    sb
}

fn ask(sb: &Sandbox, line: &[u8]) -> String {
    let mut s = UnixStream::connect(sb.socket()).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    s.write_all(line).expect("write");
    let mut reply = String::new();
    BufReader::new(s).read_line(&mut reply).expect("read");
    reply
}

#[test]
fn the_socket_is_private() {
    let sb = one_job();
    let mode = std::fs::metadata(sb.socket())
        .expect("socket")
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600, "{mode:o}");
}

#[test]
fn garbage_half_requests_and_silence_do_not_hurt_the_daemon() {
    let sb = one_job();
    assert!(ask(&sb, b"hello there\n").contains("not JSON"));
    assert!(ask(&sb, b"{\"v\":1,\"cmd\":\"dance\"}\n").contains("malformed request"));
    let old = ask(&sb, b"{\"v\":99,\"cmd\":\"status\"}\n");
    assert!(old.contains("protocol version 99"), "{old}");
    // Oversized: more than 64 KiB without a newline.
    let mut big = UnixStream::connect(sb.socket()).expect("connect");
    big.set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    let _ = big.write_all(&vec![b'x'; 200 * 1024]);
    let mut reply = String::new();
    let _ = BufReader::new(&big).read_line(&mut reply);
    assert!(reply.contains("too large"), "{reply}");
    // Silent clients and half a request stay connected while others are served.
    let mut silent: Vec<UnixStream> = (0..50)
        .map(|_| UnixStream::connect(sb.socket()).expect("connect"))
        .collect();
    silent[0].write_all(b"{\"v\":1,\"cmd\":").expect("half");
    // A client that never reads: a flood of requests it will not read the answers to.
    let mut deaf = UnixStream::connect(sb.socket()).expect("connect");
    deaf.set_write_timeout(Some(Duration::from_secs(2)))
        .expect("timeout");
    let req = b"{\"v\":1,\"cmd\":\"status\"}\n".repeat(2000);
    for _ in 0..20 {
        if deaf.write_all(&req).is_err() {
            break;
        }
    }
    sb.sup_ok(&["status"]);
    assert_eq!(sb.state("job"), "running");
}

#[test]
fn a_thousand_concurrent_clients_all_get_answers() {
    let sb = one_job();
    let socket = sb.socket();
    let barrier = std::sync::Arc::new(std::sync::Barrier::new(1000));
    let threads: Vec<_> = (0..1000)
        .map(|_| {
            let socket = socket.clone();
            let barrier = barrier.clone();
            std::thread::spawn(move || {
                let mut s = UnixStream::connect(&socket).expect("connect");
                s.set_read_timeout(Some(Duration::from_secs(60)))
                    .expect("timeout");
                barrier.wait();
                s.write_all(b"{\"v\":1,\"cmd\":\"status\"}\n")
                    .expect("write");
                let mut reply = String::new();
                BufReader::new(s).read_line(&mut reply).expect("read");
                reply.contains("\"kind\":\"status\"")
            })
        })
        .collect();
    let answered = threads
        .into_iter()
        .filter_map(|t| t.join().ok())
        .filter(|&ok| ok)
        .count();
    assert_eq!(answered, 1000);
}

#[test]
fn another_uid_is_refused_even_when_the_mode_would_allow_it() {
    let sb = one_job();
    let as_nobody = |sock: &std::path::Path| {
        Command::new("setpriv")
            .args([
                "--reuid=65534",
                "--regid=65534",
                "--clear-groups",
                sup_bin(),
                "status",
                "--socket",
            ])
            .arg(sock)
            .output()
    };
    let Ok(out) = as_nobody(&sb.socket()) else {
        eprintln!("skipped: setpriv is not available");
        return;
    };
    if !nix_is_root() {
        eprintln!("skipped: switching uid needs root");
        return;
    }
    assert_eq!(out.status.code(), Some(1));
    // Open the directory and the socket to everyone: the daemon must still refuse.
    let _ = std::fs::set_permissions(&sb.dir, std::fs::Permissions::from_mode(0o755));
    std::fs::set_permissions(sb.socket(), std::fs::Permissions::from_mode(0o666)).expect("chmod");
    let out = as_nobody(&sb.socket()).expect("run");
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("permission denied: uid 65534"), "{err}");
}

fn nix_is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .unwrap_or_default()
        .lines()
        .any(|l| l.starts_with("Uid:") && l.split_whitespace().nth(1) == Some("0"))
}

#[test]
fn signal_reaches_the_child_and_pid_names_it() {
    let sb = one_job();
    let out = sb.sup_ok(&["signal", "USR1", "job"]);
    assert!(out.contains("job"), "{out}");
    sb.wait_for("the child to see USR1", || sb.read("usr1").contains("usr1"));
    let pid = sb.sup_ok(&["pid", "job"]);
    assert_eq!(
        pid.trim().parse::<u64>().ok(),
        sb.instance("job")["pid"].as_u64()
    );
    let daemon = sb.sup_ok(&["pid"]);
    assert_eq!(daemon.trim(), sb.daemon_pid().to_string());
    let bad = sb.sup(&["signal", "NOPE", "job"]);
    assert_eq!(bad.status.code(), Some(1));
}

/// A master that retires its own workers on HUP (gunicorn, nginx): the leader is `sh` with a
/// HUP trap, its worker records a HUP in a file of its own and ticks while it lives.
pub const LEADER: &str = r#"trap 'echo hup >> "$OUT/$SUP_PROCESS_NAME.leader"' HUP
sh "$OUT/worker.sh" &
while :; do sleep 0.1; done
"#;
pub const WORKER: &str = r#"trap 'echo hup >> "$OUT/$SUP_PROCESS_NAME.worker"' HUP
echo $$ > "$OUT/$SUP_PROCESS_NAME.wpid"
while :; do echo t >> "$OUT/$SUP_PROCESS_NAME.ticks"; sleep 0.1; done
"#;

/// How many HUPs the leader and the worker of `name` have recorded.
pub fn hups(sb: &Sandbox, name: &str) -> (usize, usize) {
    let count = |ext: &str| sb.read(&format!("{name}.{ext}")).lines().count();
    (count("leader"), count("worker"))
}

/// `--main`: the leader alone. Seen once it recorded the HUP and its worker then ticked
/// twice more (a HUP that reached the worker would have run its trap before those ticks).
fn signal_main(sb: &Sandbox, args: &[&str], name: &str) {
    expect_main(sb, name, &format!("{args:?}"), || {
        sb.sup_ok(args);
    });
}

/// What `send` sends reaches `name`'s leader and not its worker (see `signal_main`).
pub fn expect_main(sb: &Sandbox, name: &str, what: &str, send: impl FnOnce()) {
    let (leader, worker) = hups(sb, name);
    send();
    sb.wait_for("the leader's trap", || hups(sb, name).0 == leader + 1);
    let ticks = sb.read(&format!("{name}.ticks")).lines().count();
    sb.wait_for("two more ticks of the worker", || {
        sb.read(&format!("{name}.ticks")).lines().count() >= ticks + 2
    });
    assert_eq!(
        hups(sb, name),
        (leader + 1, worker),
        "{what} reached the worker"
    );
}

/// The whole group: both traps.
fn signal_group(sb: &Sandbox, args: &[&str], name: &str) {
    expect_group(sb, name, || {
        sb.sup_ok(args);
    });
}

/// What `send` sends reaches both `name`'s leader and its worker.
pub fn expect_group(sb: &Sandbox, name: &str, send: impl FnOnce()) {
    let (leader, worker) = hups(sb, name);
    send();
    sb.wait_for("both traps", || hups(sb, name) == (leader + 1, worker + 1));
}

#[test]
fn signal_main_reaches_the_leader_only_and_signal_target_sets_the_default() {
    let mut sb = Sandbox::with_programs(
        "signal-main",
        r#"
  web:
    cmd: sh leader.sh
    starttime: 0.1
    stoptime: 2s
  master:
    cmd: sh leader.sh
    signal_target: main
    starttime: 0.1
    stoptime: 2s
"#,
    );
    sb.write("leader.sh", LEADER);
    sb.write("worker.sh", WORKER);
    sb.start();
    let mut workers = Vec::new();
    for name in ["web", "master"] {
        sb.wait_state(name, "running");
        sb.wait_for("the worker's pid", || {
            sb.read(&format!("{name}.wpid"))
                .trim()
                .parse::<u32>()
                .is_ok()
        });
        let pid: u32 = sb
            .read(&format!("{name}.wpid"))
            .trim()
            .parse()
            .expect("pid");
        workers.push(pid);
    }

    // The default is still the process group.
    signal_group(&sb, &["signal", "HUP", "web"], "web");
    // --main, before or after the names: the leader only, the worker lives on.
    signal_main(&sb, &["signal", "--main", "HUP", "web"], "web");
    signal_main(&sb, &["signal", "HUP", "web", "--main"], "web");
    assert!(alive(workers[0]));
    let out = sb.sup_ok(&["signal", "--main", "HUP", "web", "--json"]);
    let json: serde_json::Value = serde_json::from_str(&out).expect("json");
    let pid = sb.pid("web").expect("pid");
    assert_eq!(json["outcomes"][0]["ok"], true, "{out}");
    assert_eq!(
        json["outcomes"][0]["message"],
        format!("sent SIGHUP to the leader (pid {pid}) only"),
        "{out}"
    );
    sb.wait_for("the leader's trap", || hups(&sb, "web").0 == 4);

    // signal_target: main makes the leader the default; --group overrides it.
    signal_main(&sb, &["signal", "HUP", "master"], "master");
    signal_group(&sb, &["signal", "HUP", "master", "--group"], "master");
    assert!(
        sb.sup(&["signal", "HUP", "master", "--group", "--main"])
            .status
            .code()
            == Some(2)
    );
    assert!(sb
        .log()
        .contains("master signalled: sent SIGHUP to its leader, pid"));

    // Stopping still signals the group: nothing is left of either.
    sb.sup_ok(&["stop", "web", "master"]);
    for pid in workers {
        assert!(!alive(pid), "worker {pid} outlived its stop");
    }
}

#[test]
fn tail_shows_the_last_lines_and_follows_new_ones() {
    let mut sb = Sandbox::with_programs(
        "tail",
        "  talk:\n    cmd: [\"sh\", \"-c\", \"for i in 1 2 3 4 5 6 7 8 9 10 11 12; do echo line$i; done; while [ ! -e $OUT/more ]; do sleep 0.05; done; echo after-attach; exec sleep 1000\"]\n    starttime: 0.1\n",
    );
    sb.start();
    sb.wait_for("12 lines", || sb.read("logs/talk.out").contains("line12"));
    let out = sb.sup_ok(&["tail", "-n", "3", "talk"]);
    assert_eq!(out, "line10\nline11\nline12\n");
    let out = sb.sup_ok(&["tail", "talk"]);
    assert_eq!(out.lines().count(), 10);

    let mut follower = Command::new(sup_bin())
        .args(["tail", "-f", "-n", "1", "talk", "--socket"])
        .arg(sb.socket())
        .stdout(Stdio::piped())
        .spawn()
        .expect("tail -f");
    let mut stdout = follower.stdout.take().expect("stdout");
    let mut first = [0u8; 7];
    stdout.read_exact(&mut first).expect("first line");
    assert_eq!(&first, b"line12\n");
    sb.write("more", "");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut rest = String::new();
        let mut reader = BufReader::new(stdout);
        let _ = reader.read_line(&mut rest);
        let _ = tx.send(rest);
    });
    let line = rx
        .recv_timeout(Duration::from_secs(30))
        .expect("followed line");
    assert_eq!(line, "after-attach\n");
    let _ = follower.kill();
    let _ = follower.wait();
    sb.sup_ok(&["status"]);
}

#[test]
fn a_long_status_reads_usage_in_slices_then_sleeps() {
    // More instances than one answer reads /proc for: the first answer has some figures, a
    // sweep over the next turns reads the rest, and then the daemon sleeps again.
    let n = 150;
    let mut sb = Sandbox::with_programs(
        "usage-sweep",
        &format!(
            "  many:\n    cmd: [\"sh\", \"-c\", \"echo $$ >> $OUT/pids; exec sleep 1000\"]\n    numprocs: {n}\n    starttime: 0\n"
        ),
    );
    sb.start();
    let started = || {
        std::fs::read_to_string(sb.path("pids"))
            .map(|t| t.lines().count())
            .unwrap_or(0)
    };
    sb.wait_for("every instance to start", || started() == n);
    // Starting, the sandbox asked for status already: new processes have no figures yet.
    sb.sup_ok(&["restart", "many"]);
    sb.wait_for("every instance to start again", || started() == 2 * n);
    let with_rss = |list: &[serde_json::Value]| {
        list.iter()
            .filter(|i| i["rss_bytes"].as_u64().is_some_and(|b| b > 0))
            .count()
    };
    let first = with_rss(&sb.status());
    assert!(
        first > 0 && first < n,
        "{first} of {n} read in the first answer"
    );

    let daemon = sb.daemon_pid();
    let reads = || {
        std::fs::read_to_string(format!("/proc/{daemon}/io"))
            .unwrap_or_default()
            .lines()
            .find_map(|l| l.strip_prefix("syscr:")?.trim().parse::<u64>().ok())
            .unwrap_or(0)
    };
    let mut last = reads();
    sb.wait_for("the sweep to end", || {
        std::thread::sleep(Duration::from_millis(200));
        let now = reads();
        std::mem::replace(&mut last, now) == now
    });
    assert_eq!(with_rss(&sb.status()), n, "the sweep read the rest");
    crate::http::assert_no_wakeups(&sb);
}

#[test]
fn the_table_asks_for_rows_and_older_requests_still_get_the_list() {
    let sb = one_job();
    // What `sup status` sends: one array per instance, in the order of `InstanceStatus`'s
    // fields that the table shows.
    let reply = ask(
        &sb,
        b"{\"v\":1,\"cmd\":\"status\",\"names\":[],\"rows\":true}\n",
    );
    let v: serde_json::Value = serde_json::from_str(&reply).expect("one JSON line");
    assert_eq!(v["v"], 1, "{reply}");
    assert_eq!(v["kind"], "status_rows", "{reply}");
    let row = &v["rows"][0];
    assert_eq!(row.as_array().map(Vec::len), Some(15), "{reply}");
    let list = sb.status();
    assert_eq!(row[0], list[0]["name"]);
    assert_eq!(row[1], "running");
    assert_eq!(row[2], list[0]["pid"]);
    assert_eq!(row[3], list[0]["restarts"]);
    // A request without the field (any client before it) gets the list, as ever.
    let old = ask(&sb, b"{\"v\":1,\"cmd\":\"status\"}\n");
    let old: serde_json::Value = serde_json::from_str(&old).expect("one JSON line");
    assert_eq!(old["kind"], "status");
    assert_eq!(old["instances"][0]["name"], "job");
    // Names are checked as for the list.
    let unknown = ask(
        &sb,
        b"{\"v\":1,\"cmd\":\"status\",\"names\":[\"nope\"],\"rows\":true}\n",
    );
    assert!(
        unknown.contains("\"kind\":\"error\"") && unknown.contains("nope"),
        "{unknown}"
    );
    // And the table reads the rows.
    let text = sb.sup_ok(&["status"]);
    assert!(text.starts_with("job  running  pid="), "{text}");
}
