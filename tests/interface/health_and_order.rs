//! README "Readiness, health and order": `ready: notify` and `fd:N`, watchdogs,
//! health checks by HTTP, TCP and command, `depends_on` order, limits and resource rules.

use std::time::{Duration, Instant};

use crate::sandbox::Sandbox;

/// A free TCP port on 127.0.0.1 (bound, then released).
fn free_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    l.local_addr().expect("addr").port()
}

const NOTIFY: &str = r#"import os, socket, sys, time
delay, watchdog = float(sys.argv[1]), sys.argv[2] == "ping"
time.sleep(delay)
s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
s.sendto(b"READY=1\nSTATUS=up", os.environ["NOTIFY_SOCKET"])
pings = 0
while True:
    time.sleep(0.2)
    pings += 1
    if watchdog or pings < 3:
        s.sendto(b"WATCHDOG=1", os.environ["NOTIFY_SOCKET"])
"#;

#[test]
fn ready_notify_stays_starting_until_ready_1() {
    let mut sb = Sandbox::with_programs(
        "notify",
        r#"
  svc:
    cmd: python3 notify.py 1 ping
    ready: notify
    ready_timeout: 20s
    watchdog: 2s
"#,
    );
    sb.write("notify.py", NOTIFY);
    let t0 = Instant::now();
    sb.start();
    sb.wait_for("svc to have a pid", || sb.pid("svc").is_some());
    assert_eq!(sb.state("svc"), "starting");
    sb.wait_state("svc", "running");
    assert!(
        t0.elapsed() >= Duration::from_millis(900),
        "{:?}",
        t0.elapsed()
    );
    // It keeps pinging: still the same process a while later.
    let pid = sb.pid("svc");
    std::thread::sleep(Duration::from_millis(2500));
    assert_eq!(sb.pid("svc"), pid);
    assert_eq!(sb.instance("svc")["restarts"], 0);
}

#[test]
fn a_missed_watchdog_restarts_with_the_reason_logged() {
    let mut sb = Sandbox::with_programs(
        "watchdog",
        r#"
  hung:
    cmd: python3 notify.py 0 stop
    ready: notify
    watchdog: 1s
    stoptime: 1s
"#,
    );
    sb.write("notify.py", NOTIFY);
    sb.start();
    sb.wait_state("hung", "running");
    sb.wait_for("a watchdog restart", || {
        sb.instance("hung")["restarts"].as_u64() >= Some(1)
    });
    let log = sb.log();
    assert!(
        log.contains("hung unhealthy: watchdog: no WATCHDOG=1 for 1s"),
        "{log}"
    );
}

#[test]
fn ready_fd_3_is_a_newline_on_descriptor_3() {
    let mut sb = Sandbox::with_programs(
        "readyfd",
        r#"
  s6:
    cmd: ["sh", "-c", "sleep 0.5; echo >&3; exec sleep 1000"]
    ready: fd:3
    starttime: 30s
"#,
    );
    sb.start();
    sb.wait_state("s6", "running");
}

const WEB: &str = r#"import http.server, os, sys
class H(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        ok = not os.path.exists("sick")
        self.send_response(200 if ok else 503)
        self.end_headers()
        self.wfile.write(b"ok" if ok else b"sick")
    def log_message(self, *a):
        pass
http.server.HTTPServer(("127.0.0.1", int(sys.argv[1])), H).serve_forever()
"#;

#[test]
fn a_failing_http_health_check_restarts_and_says_why() {
    let port = free_port();
    let mut sb = Sandbox::with_programs(
        "http",
        &format!(
            r#"
  web:
    cmd: python3 web.py {port}
    ready: health
    stoptime: 1s
    healthcheck:
      http: http://127.0.0.1:{port}/health
      interval: 300ms
      timeout: 1s
      retries: 2
"#
        ),
    );
    sb.write("web.py", WEB);
    sb.start();
    sb.wait_state("web", "running");
    sb.wait_for("web to be healthy", || {
        sb.instance("web")["health"] == "healthy"
    });
    sb.write("sick", "");
    sb.wait_for("an unhealthy restart", || {
        sb.instance("web")["restarts"].as_u64() >= Some(1)
    });
    let log = sb.log();
    assert!(
        log.contains("web unhealthy: health check failed 2 times in a row, last: HTTP 503"),
        "{log}"
    );
    let _ = std::fs::remove_file(sb.path("sick"));
    sb.wait_for("web healthy again", || {
        sb.instance("web")["health"] == "healthy"
    });
}

#[test]
fn a_tcp_check_on_a_closed_port_fails_in_time_and_status_stays_fast() {
    let port = free_port();
    let mut sb = Sandbox::with_programs(
        "tcp",
        &format!(
            r#"
  db:
    cmd: sleep 1000
    starttime: 0
    healthcheck:
      tcp: 127.0.0.1:{port}
      interval: 200ms
      timeout: 500ms
      retries: 1
      on_unhealthy: none
"#
        ),
    );
    sb.start();
    sb.wait_for("db unhealthy", || {
        sb.instance("db")["health"] == "unhealthy"
    });
    for _ in 0..5 {
        let t = Instant::now();
        sb.sup_ok(&["status"]);
        assert!(
            t.elapsed() < Duration::from_millis(500),
            "{:?}",
            t.elapsed()
        );
    }
    assert_eq!(sb.instance("db")["restarts"], 0, "on_unhealthy: none");
}

#[test]
fn a_hanging_cmd_check_is_killed_at_its_timeout() {
    let mut sb = Sandbox::with_programs(
        "hangcheck",
        r#"
  svc:
    cmd: sleep 1000
    starttime: 0
    healthcheck:
      cmd: ["sh", "-c", "echo $$ >> checks.pids; exec sleep 1000"]
      interval: 5s
      timeout: 500ms
      retries: 1
      on_unhealthy: notify
"#,
    );
    sb.start();
    sb.wait_for("the check to time out", || {
        sb.log()
            .contains("health check failed (1/1): timed out after 500ms")
    });
    let pids = sb.read("checks.pids");
    let pid: u32 = pids
        .lines()
        .next()
        .and_then(|l| l.trim().parse().ok())
        .expect("pid");
    sb.wait_for("the check to be gone", || !crate::sandbox::alive(pid));
    assert!(sb.log().contains("svc unhealthy:"), "{}", sb.log());
}

#[test]
fn a_chain_starts_in_order_and_stops_in_reverse() {
    let mut sb = Sandbox::with_programs(
        "chain",
        r#"
  a:
    cmd: ["sh", "-c", "echo start a >> order; trap 'echo stop a >> order; exit 0' TERM; while :; do sleep 0.05; done"]
    starttime: 300ms
    depends_on: [b]
  b:
    cmd: ["sh", "-c", "echo start b >> order; trap 'echo stop b >> order; exit 0' TERM; while :; do sleep 0.05; done"]
    starttime: 300ms
    depends_on: c
  c:
    cmd: ["sh", "-c", "echo start c >> order; trap 'sleep 0.3; echo stop c >> order; exit 0' TERM; while :; do sleep 0.05; done"]
    starttime: 300ms
"#,
    );
    sb.start();
    sb.wait_state("a", "running");
    assert_eq!(sb.read("order"), "start c\nstart b\nstart a\n");
    sb.sup_ok(&["stop", "all"]);
    assert_eq!(
        sb.read("order"),
        "start c\nstart b\nstart a\nstop a\nstop b\nstop c\n"
    );
}

#[test]
fn a_fatal_dependency_leaves_dependents_waiting_with_the_reason() {
    let mut sb = Sandbox::with_programs(
        "fataldep",
        r#"
  db:
    cmd: ["sh", "-c", "exit 3"]
    startretries: 0
  api:
    cmd: sleep 1000
    depends_on: db
"#,
    );
    sb.start();
    sb.wait_state("db", "fatal");
    sb.wait_for("api's reason to name db", || {
        sb.instance("api")["reason"]
            .as_str()
            .is_some_and(|r| r.contains("waiting for db, which is fatal"))
    });
    assert_eq!(sb.state("api"), "starting");
    assert!(sb.pid("api").is_none());
}

#[test]
fn a_dependency_cycle_is_rejected_by_check() {
    let sb = Sandbox::with_programs(
        "cycle",
        r#"
  a: {cmd: x, depends_on: b}
  b: {cmd: x, depends_on: [c]}
  c: {cmd: x, depends_on: [a]}
  d: {cmd: x, depends_on: [nope]}
"#,
    );
    let out = sb.sup(&["check"]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("dependency cycle: a → b → c → a"), "{err}");
    assert!(
        err.contains("programs.d.depends_on: unknown program \"nope\""),
        "{err}"
    );
}

#[test]
fn limits_nofile_is_seen_by_the_child() {
    let mut sb = Sandbox::with_programs(
        "nofile",
        r#"
  lim:
    cmd: ["sh", "-c", "ulimit -n > nofile; exec sleep 1000"]
    limits: {nofile: 123}
"#,
    );
    sb.start();
    sb.wait_for("the child to write its limit", || {
        sb.path("nofile").exists() && sb.read("nofile").ends_with('\n')
    });
    assert_eq!(sb.read("nofile").trim(), "123");
}

#[test]
fn past_max_memory_is_restarted_with_the_reason() {
    let mut sb = Sandbox::with_programs(
        "maxmem",
        r#"
  hog:
    cmd: ["python3", "-c", "import time; x = bytearray(80 << 20); x[::4096] = b'x' * len(x[::4096]); time.sleep(1000)"]
    starttime: 0
    stoptime: 1s
    max_memory: 40M
    for: 500ms
"#,
    );
    sb.start();
    sb.wait_for("a memory restart", || {
        sb.instance("hog")["restarts"].as_u64() >= Some(1)
    });
    let log = sb.log();
    assert!(log.contains("above max_memory 40M for 500ms"), "{log}");
    assert!(sb.instance("hog")["rss_bytes"].as_u64().is_some() || sb.pid("hog").is_none());
}

#[test]
fn rolling_restart_keeps_one_instance_up() {
    let mut sb = Sandbox::with_programs(
        "rolling",
        r#"
  web:
    cmd: sleep 1000
    numprocs: 3
    starttime: 300ms
"#,
    );
    sb.start();
    for i in 0..3 {
        sb.wait_state(&format!("web:{i}"), "running");
    }
    let before: Vec<Option<u32>> = (0..3).map(|i| sb.pid(&format!("web:{i}"))).collect();
    let out = sb.sup_ok(&["restart", "web", "--rolling"]);
    assert!(out.contains("web:2: restarted"), "{out}");
    // Progress as it happens, in the words of `status`, one instance after the other.
    let at = |line: &str| {
        out.find(line)
            .unwrap_or_else(|| panic!("{line:?} in {out}"))
    };
    assert!(at("web:0: starting") < at("web:0: running"), "{out}");
    assert!(at("web:0: running") < at("web:1: starting"), "{out}");
    assert!(at("web:1: running") < at("web:2: starting"), "{out}");
    assert!(at("web:2: starting") < at("web:2: restarted"), "{out}");
    let after: Vec<Option<u32>> = (0..3).map(|i| sb.pid(&format!("web:{i}"))).collect();
    for i in 0..3 {
        assert_ne!(before[i], after[i], "web:{i} was restarted");
    }
    // One at a time: each spawn comes after the previous one ran for starttime.
    let log = sb.log();
    let spawned: Vec<usize> = (0..3)
        .map(|i| {
            log.rfind(&format!("web:{i} spawned"))
                .expect("a spawn line")
        })
        .collect();
    let running0 = log.rfind("web:0 running").expect("running");
    assert!(spawned[0] < running0 && running0 < spawned[1], "{log}");
}

/// `user:` with `ready: notify`: the job's user can reach its notify socket (a directory of
/// its own, 0700, under directories only the daemon can list), so it becomes ready.
#[test]
fn systemd_notify_as_another_user_becomes_ready() {
    let Some(notify) = on_path("systemd-notify") else {
        println!("skipping: systemd-notify is not on PATH (make test-deps installs systemd)");
        return;
    };
    if !nix::unistd::geteuid().is_root() {
        println!("skipping: switching users needs the daemon to run as root");
        return;
    }
    let Ok(Some(nobody)) = nix::unistd::User::from_name("nobody") else {
        println!("skipping: no user nobody on this machine");
        return;
    };
    let mut sb = Sandbox::with_programs(
        "notify-user",
        &format!(
            r#"
  svc:
    cmd: ["sh", "-c", "{notify} --ready && exec sleep 600"]
    user: nobody
    ready: notify
    ready_timeout: 60s
    stoptime: 2s
"#,
            notify = notify.display()
        ),
    );
    sb.start();
    let running = sb.wait_state("svc", "running");
    assert_eq!(running["restarts"], 0, "{running}");
    let pid = sb.pid("svc").expect("pid");
    // The socket it was given: its own directory, nobody's and closed to everyone else.
    let socket = notify_socket_of(pid);
    let socket = socket.as_path();
    use std::os::unix::fs::MetadataExt;
    let dir = std::fs::metadata(socket.parent().expect("a directory")).expect("stat");
    assert_eq!(dir.uid(), nobody.uid.as_raw(), "{}", socket.display());
    assert_eq!(dir.mode() & 0o777, 0o700, "{}", socket.display());
    let sock = std::fs::symlink_metadata(socket).expect("stat");
    assert_eq!(sock.uid(), nobody.uid.as_raw());
    assert_eq!(sock.mode() & 0o077, 0, "only its owner may send");
    let above =
        std::fs::metadata(socket.parent().and_then(|p| p.parent()).expect("parent")).expect("stat");
    assert_eq!((above.uid(), above.mode() & 0o777), (0, 0o711));
    // Gone with the process.
    sb.sup_ok(&["stop", "svc"]);
    assert!(!socket.exists(), "{} outlived its job", socket.display());
    assert!(!socket.parent().expect("dir").exists());
}

/// The `NOTIFY_SOCKET` a live process was given.
fn notify_socket_of(pid: u32) -> std::path::PathBuf {
    let environ = std::fs::read(format!("/proc/{pid}/environ")).expect("environ");
    String::from_utf8_lossy(&environ)
        .split('\0')
        .find_map(|v| {
            v.strip_prefix("NOTIFY_SOCKET=")
                .map(std::path::PathBuf::from)
        })
        .expect("NOTIFY_SOCKET in the job's environment")
}

/// A daemon killed outright leaves its notify directories; the next one on the same files
/// sweeps them before it makes its own, and a clean shutdown leaves nothing.
#[test]
fn notify_directories_of_a_killed_daemon_are_swept() {
    let mut sb = Sandbox::with_programs(
        "notify-sweep",
        r#"
  svc:
    cmd: python3 notify.py 0 ping
    ready: notify
    ready_timeout: 60s
    stoptime: 2s
"#,
    );
    sb.write("notify.py", NOTIFY);
    sb.start();
    sb.wait_state("svc", "running");
    let socket = notify_socket_of(sb.pid("svc").expect("pid"));
    let tag = socket
        .parent()
        .and_then(|p| p.parent())
        .expect("the daemon's directory")
        .to_path_buf();
    let pid = sb.pid("svc").expect("pid");
    sb.kill_daemon_hard();
    sb.wait_for("the job to die with the daemon", || {
        !crate::sandbox::alive(pid)
    });
    assert!(socket.exists(), "a killed daemon cannot clean up");
    // What a job could have left beside it is swept too (one level, never followed).
    std::fs::create_dir(tag.join("99.99")).expect("mkdir");
    std::fs::write(tag.join("99.99/notify.sock"), "").expect("write");
    sb.start();
    sb.wait_state("svc", "running");
    assert!(
        !tag.join("99.99").exists(),
        "leftovers in {}",
        tag.display()
    );
    let fresh = notify_socket_of(sb.pid("svc").expect("pid"));
    assert_eq!(
        std::fs::read_dir(&tag).expect("list").count(),
        1,
        "only {} is left",
        fresh.display()
    );
    sb.sup_ok(&["shutdown"]);
    sb.wait_daemon_exit();
    assert!(!tag.exists(), "{} outlived a clean shutdown", tag.display());
}

/// `user:` with `ready: fd:N`: the pipe is the job's descriptor, whatever its uid.
#[test]
fn a_readiness_pipe_works_as_another_user() {
    if !nix::unistd::geteuid().is_root() {
        println!("skipping: switching users needs the daemon to run as root");
        return;
    }
    let mut sb = Sandbox::with_programs(
        "fd-user",
        r#"
  svc:
    cmd: ["sh", "-c", "[ $(id -u) != 0 ] && echo ready >&3 && exec sleep 600"]
    user: nobody
    ready: fd:3
    ready_timeout: 60s
    stoptime: 2s
"#,
    );
    sb.start();
    let running = sb.wait_state("svc", "running");
    assert_eq!(running["restarts"], 0, "{running}");
}

/// A real server that speaks sd_notify, run as its own user: Debian's postgres sends READY=1
/// once it accepts connections.
#[test]
fn postgres_as_its_user_becomes_ready_by_notify() {
    if !nix::unistd::geteuid().is_root() {
        println!("skipping postgres: switching users needs the daemon to run as root");
        return;
    }
    let bin = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.path().join("bin"))
        .find(|b| b.join("postgres").is_file() && b.join("initdb").is_file());
    let Some(bin) = bin else {
        println!(
            "skipping postgres: no /usr/lib/postgresql/*/bin/postgres (make test-deps installs \
             Debian's postgresql package where it can)"
        );
        return;
    };
    let Ok(Some(pg)) = nix::unistd::User::from_name("postgres") else {
        println!("skipping postgres: no user postgres on this machine");
        return;
    };
    let mut sb = Sandbox::new("postgres");
    let (data, sock) = (sb.path("pgdata"), sb.path("pgsock"));
    for d in [&data, &sock] {
        std::fs::create_dir(d).expect("mkdir");
        std::os::unix::fs::chown(d, Some(pg.uid.as_raw()), Some(pg.gid.as_raw())).expect("chown");
    }
    use std::os::unix::process::CommandExt;
    let init = std::process::Command::new(bin.join("initdb"))
        .args([
            "-D",
            data.to_str().expect("utf-8"),
            "-A",
            "trust",
            "-U",
            "postgres",
        ])
        .uid(pg.uid.as_raw())
        .gid(pg.gid.as_raw())
        .env("HOME", &data)
        .current_dir(&data)
        .output()
        .expect("run initdb");
    assert!(
        init.status.success(),
        "initdb: {}",
        String::from_utf8_lossy(&init.stderr)
    );
    let port = free_port();
    sb.write(
        "sup.yaml",
        &format!(
            r#"programs:
  db:
    cmd: ["{postgres}", "-D", "{data}", "-k", "{sock}", "-p", "{port}", "-c", "listen_addresses="]
    user: postgres
    ready: notify
    ready_timeout: 60s
    stopsignal: INT
    stoptime: 20s
"#,
            postgres = bin.join("postgres").display(),
            data = data.display(),
            sock = sock.display(),
        ),
    );
    sb.start();
    let t0 = Instant::now();
    let running = sb.wait_state("db", "running");
    println!("postgres ready by notify in {:?}", t0.elapsed());
    assert_eq!(running["restarts"], 0, "{running}");
    // Ready means it takes connections: its socket is there.
    assert!(sock.join(format!(".s.PGSQL.{port}")).exists());
    let log = sb.log();
    assert!(!log.contains("ready_timeout"), "{log}");
    sb.sup_ok(&["stop", "db"]);
}

fn on_path(program: &str) -> Option<std::path::PathBuf> {
    std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
        .unwrap_or_default()
        .into_iter()
        .map(|d| d.join(program))
        .find(|p| p.is_file())
}

#[test]
fn a_dependent_of_a_completed_one_shot_starts_after_it_exits_0() {
    let mut sb = Sandbox::with_programs(
        "completed",
        r#"
  migrate:
    cmd: ["sh", "-c", "sleep 0.5; echo migrated >> order; touch migrated; exit 0"]
    starttime: 0s
    autorestart: never
  api:
    cmd: ["sh", "-c", "echo api >> order; touch api-ran; exec sleep 1000"]
    starttime: 0s
    depends_on: {migrate: completed}
"#,
    );
    sb.start();
    sb.wait_state("api", "running");
    // Running from its spawn (starttime 0): its shell may not have written yet.
    sb.wait_for("api's line", || sb.read("order").lines().count() >= 2);
    assert_eq!(sb.read("order"), "migrated\napi\n");
    assert_eq!(sb.state("migrate"), "exited");
    assert_eq!(sb.instance("migrate")["last_exit"], 0);
    // The job's file was written before the dependent's.
    let mtime = |f: &str| {
        std::fs::metadata(sb.path(f))
            .and_then(|m| m.modified())
            .expect("mtime")
    };
    sb.wait_for("api's file", || sb.path("api-ran").exists());
    assert!(mtime("migrated") <= mtime("api-ran"));
}

#[test]
fn a_one_shot_that_exits_3_leaves_its_dependent_waiting_with_the_reason() {
    let mut sb = Sandbox::with_programs(
        "failedmigrate",
        r#"
  migrate:
    cmd: ["sh", "-c", "test -f fixed || exit 3; exit 0"]
    starttime: 0s
    autorestart: never
  api:
    cmd: ["sh", "-c", "touch api-ran; exec sleep 1000"]
    starttime: 0s
    depends_on: {migrate: completed}
"#,
    );
    sb.start();
    let want = "waiting for migrate: completed, but it exited 3 and will not restart";
    sb.wait_for("api's reason to name the failed migrate", || {
        sb.instance("api")["reason"]
            .as_str()
            .is_some_and(|r| r.contains(want))
    });
    assert_eq!(sb.state("migrate"), "exited");
    assert_eq!(sb.state("api"), "starting");
    assert!(sb.pid("api").is_none());
    assert!(!sb.path("api-ran").exists());
    let out = sb.sup_ok(&["status", "api"]);
    assert!(out.contains(want), "{out}");

    // Once migrate is fixed and run again, its exit releases api (event-driven, no poll).
    sb.write("fixed", "");
    let _ = sb.sup(&["start", "--no-wait", "migrate"]);
    sb.wait_state("api", "running");
    sb.wait_for("api's file", || sb.path("api-ran").exists());
}

#[test]
fn healthy_waits_for_the_first_passing_check_and_started_does_not() {
    let mut sb = Sandbox::with_programs(
        "healthydep",
        r#"
  db:
    cmd: sleep 1000
    starttime: 0s
    healthcheck:
      cmd: ["test", "-f", "ready"]
      interval: 200ms
      start_period: 60s
  api:
    cmd: ["sh", "-c", "touch api-ran; exec sleep 1000"]
    starttime: 0s
    depends_on: {db: healthy}
  web:
    cmd: sleep 1000
    starttime: 0s
    depends_on: {db: started}
"#,
    );
    sb.start();
    sb.wait_state("db", "running");
    sb.wait_state("web", "running");
    sb.wait_for("api to wait for db's check", || {
        sb.instance("api")["reason"]
            .as_str()
            .is_some_and(|r| r.contains("waiting for db: healthy (health check starting)"))
    });
    // A few failed checks later it still waits.
    let db = sb.pid("db");
    std::thread::sleep(Duration::from_millis(600));
    assert!(sb.pid("api").is_none());
    assert!(!sb.path("api-ran").exists());
    assert_eq!(sb.pid("db"), db);

    sb.write("ready", "");
    sb.wait_state("api", "running");
    assert_eq!(sb.instance("db")["health"], "healthy");
    // With `starttime: 0s` running means spawned: the shell may not have run yet.
    sb.wait_for("api's first command", || sb.path("api-ran").exists());
}

#[test]
fn bad_conditions_are_config_errors() {
    let sb = Sandbox::with_programs(
        "badcond",
        r#"
  db: {cmd: x, autorestart: always}
  api: {cmd: x, depends_on: {db: ready}}
  web: {cmd: x, depends_on: {db: completed}}
"#,
    );
    let out = sb.sup(&["check"]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("programs.api.depends_on: expected started, healthy or completed"),
        "{err}"
    );
    assert!(
        err.contains("db: completed can never be met: it has autorestart: always"),
        "{err}"
    );
}

#[test]
fn completed_of_a_job_with_a_starttime_is_a_warning_naming_the_fix() {
    let sb = Sandbox::with_programs(
        "condwarn",
        r#"
  migrate: {cmd: x, autorestart: never}
  api: {cmd: x, depends_on: {migrate: completed}}
  web: {cmd: x, depends_on: {api: completed}, starttime: 0s}
  api2: {cmd: x, starttime: 0s, autorestart: never}
  ok: {cmd: x, depends_on: {api2: completed}}
"#,
    );
    let out = sb.sup(&["check"]);
    assert_eq!(out.status.code(), Some(0));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(
            "sup.yaml:4:30: programs.api.depends_on: migrate: completed: an exit within its \
             starttime (1s) is a failed start"
        ),
        "{err}"
    );
    assert!(err.contains("give migrate `starttime: 0s`"), "{err}");
    assert!(!err.contains("api2"), "{err}");
}
