//! The HTTP interface (`daemon.http`): the endpoints, the token, and clients that misbehave.
//! Each daemon listens on `127.0.0.1:0` and the test reads the port it got from the event log,
//! so no two tests race for a port.

use std::io::{ErrorKind, Read, Write};
use std::net::TcpStream;
use std::process::Command;
use std::time::{Duration, Instant};

use crate::sandbox::{Sandbox, PATIENCE};

/// A sandbox whose daemon serves HTTP (with `http_extra` under `daemon.http`), started.
pub(crate) fn start(name: &str, http_extra: &str, programs: &str) -> (Sandbox, u16) {
    let mut sb = Sandbox::new(name);
    sb.write(
        "sup.yaml",
        &format!(
            "daemon:\n  http:\n    listen: \"127.0.0.1:0\"\n{http_extra}programs:\n{programs}"
        ),
    );
    sb.start();
    let port = serving_port(&sb);
    (sb, port)
}

/// The port a started daemon listens on for HTTP, from its event log (it binds port 0).
pub(crate) fn serving_port(sb: &Sandbox) -> u16 {
    let mut port = None;
    sb.wait_for("the HTTP port in the event log", || {
        port = sb
            .log()
            .lines()
            .find_map(|l| l.split("serving HTTP on 127.0.0.1:").nth(1))
            .and_then(|p| p.trim().parse().ok());
        port.is_some()
    });
    port.unwrap_or(0)
}

pub(crate) fn connect(port: u16) -> TcpStream {
    let s = TcpStream::connect(("127.0.0.1", port)).expect("connect");
    s.set_read_timeout(Some(PATIENCE)).expect("timeout");
    s
}

/// Send `raw` and read the whole answer (the daemon closes after it).
pub(crate) fn exchange(port: u16, raw: &[u8]) -> String {
    let mut s = connect(port);
    let _ = s.write_all(raw);
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out);
    String::from_utf8_lossy(&out).into_owned()
}

pub(crate) fn get(port: u16, path: &str, token: Option<&str>) -> (u16, String) {
    let auth = token.map_or(String::new(), |t| format!("Authorization: Bearer {t}\r\n"));
    let answer = exchange(
        port,
        format!("GET {path} HTTP/1.1\r\nHost: localhost\r\n{auth}\r\n").as_bytes(),
    );
    let status = answer
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let body = answer
        .split_once("\r\n\r\n")
        .map_or(String::new(), |(_, b)| b.to_string());
    (status, body)
}

/// The value of the sample `name{labels}` in a scrape.
fn sample(metrics: &str, series: &str) -> Option<f64> {
    metrics.lines().find_map(|l| {
        l.strip_prefix(series)?
            .strip_prefix(' ')?
            .trim()
            .parse()
            .ok()
    })
}

fn promtool() -> Option<std::path::PathBuf> {
    std::env::var_os("PATH")?
        .to_str()?
        .split(':')
        .map(|d| std::path::Path::new(d).join("promtool"))
        .find(|p| p.is_file())
}

/// `promtool check metrics` passes on a scrape (skipped, saying so, without promtool).
fn promtool_check(sb: &Sandbox, metrics: &str) {
    let Some(tool) = promtool() else {
        println!("skipping promtool check metrics: promtool is not on PATH (make test-deps)");
        return;
    };
    let path = sb.path("metrics.txt");
    std::fs::write(&path, metrics).expect("write metrics");
    let out = Command::new(tool)
        .args(["check", "metrics"])
        .stdin(std::fs::File::open(&path).expect("open"))
        .output()
        .expect("run promtool");
    assert!(
        out.status.success(),
        "promtool check metrics: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

const TWO_WEB: &str =
    "  web:\n    cmd: sleep 1000\n    numprocs: 2\n    starttime: 0.1\n    stoptime: 2\n";

#[test]
fn http_healthz_metrics_and_the_errors() {
    let (sb, port) = start("http-basic", "", TWO_WEB);
    sb.wait_state("web:0", "running");
    sb.wait_state("web:1", "running");
    assert_eq!(get(port, "/healthz", None), (200, "ok\n".into()));

    let (status, metrics) = get(port, "/metrics", None);
    assert_eq!(status, 200, "{metrics}");
    for series in [
        "sup_instance_state{program=\"web\",instance=\"web:0\",state=\"running\"}",
        "sup_instance_restarts_total{program=\"web\",instance=\"web:1\"}",
        "sup_instance_start_time_seconds{program=\"web\",instance=\"web:0\"}",
        "sup_instance_cpu_seconds_total{program=\"web\",instance=\"web:0\"}",
        "sup_instance_memory_rss_bytes{program=\"web\",instance=\"web:0\"}",
        "sup_program_desired_instances{program=\"web\"}",
        "sup_program_running_instances{program=\"web\"}",
        "sup_daemon_open_fds",
        "sup_daemon_memory_rss_bytes",
    ] {
        assert!(
            sample(&metrics, series).is_some(),
            "{series} missing:\n{metrics}"
        );
    }
    assert_eq!(
        sample(&metrics, "sup_program_running_instances{program=\"web\"}"),
        Some(2.0)
    );
    let stopped = "sup_instance_state{program=\"web\",instance=\"web:0\",state=\"stopped\"}";
    assert_eq!(sample(&metrics, stopped), Some(0.0));
    let version = format!(
        "sup_build_info{{version=\"{}\"}}",
        env!("CARGO_PKG_VERSION")
    );
    assert_eq!(sample(&metrics, &version), Some(1.0), "{metrics}");
    // The process start, as unix time, is within the last few minutes.
    let start = sample(
        &metrics,
        "sup_instance_start_time_seconds{program=\"web\",instance=\"web:0\"}",
    );
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_secs_f64();
    assert!(
        start.is_some_and(|s| s <= now + 1.0 && s > now - 300.0),
        "{start:?} vs {now}"
    );

    promtool_check(&sb, &metrics);

    let head = exchange(port, b"HEAD /healthz HTTP/1.1\r\n\r\n");
    assert!(
        head.starts_with("HTTP/1.1 200 OK\r\n") && head.ends_with("\r\n\r\n"),
        "{head:?}"
    );
    assert!(head.contains("Connection: close\r\n"), "{head:?}");
    assert_eq!(get(port, "/nothing-here", None).0, 404);
    let post = exchange(port, b"POST /metrics HTTP/1.1\r\nContent-Length: 0\r\n\r\n");
    assert!(post.starts_with("HTTP/1.1 405 "), "{post:?}");
    let bad = exchange(port, b"NOT HTTP AT ALL\r\n\r\n");
    assert!(bad.starts_with("HTTP/1.1 400 "), "{bad:?}");
    assert_eq!(get(port, "/healthz", None).0, 200);
}

#[test]
fn http_restarts_in_metrics_match_status() {
    let (sb, port) = start(
        "http-restarts",
        "",
        "  job:\n    cmd: sleep 1000\n    starttime: 0.1\n    autorestart: always\n    stoptime: 2\n",
    );
    sb.wait_state("job", "running");
    let pid = sb.pid("job").expect("pid");
    crate::sandbox::kill(pid, 9);
    sb.wait_for("a restart", || {
        let i = sb.instance("job");
        i["state"] == "running"
            && i["restarts"].as_u64().unwrap_or(0) >= 1
            && sb.pid("job") != Some(pid)
    });
    let restarts = sb.instance("job")["restarts"].as_f64();
    let (_, metrics) = get(port, "/metrics", None);
    let series = "sup_instance_restarts_total{program=\"job\",instance=\"job\"}";
    assert_eq!(sample(&metrics, series), restarts, "{metrics}");
    assert!(restarts >= Some(1.0));
    // The process that was killed ended with SIGKILL: 128 + 9.
    let exit = sample(
        &metrics,
        "sup_instance_last_exit_code{program=\"job\",instance=\"job\"}",
    );
    assert_eq!(exit, Some(137.0), "{metrics}");
}

#[test]
fn http_readyz_is_503_in_backoff_and_200_once_all_run() {
    let (sb, port) = start(
        "http-ready",
        "",
        "  web:\n    cmd: sleep 1000\n    starttime: 0.1\n    stoptime: 2\n  \
         late:\n    cmd: [sh, -c, \"test -e \\\"$OUT/go\\\" || exit 1; exec sleep 1000\"]\n    \
         starttime: 0.1\n    startretries: 100\n    stoptime: 2\n  \
         manual:\n    cmd: sleep 1000\n    autostart: false\n",
    );
    sb.wait_state("web", "running");
    // `late` fails until `go` exists: between tries it is in backoff, and /readyz says so.
    let mut seen = (0, String::new());
    sb.wait_for("/readyz to report late in backoff", || {
        seen = get(port, "/readyz", None);
        seen.1.contains("\"state\":\"backoff\"")
    });
    let (status, body) = seen;
    assert_eq!(status, 503, "{body}");
    let report: serde_json::Value = serde_json::from_str(&body).expect("JSON body");
    assert_eq!(
        report["not_ready"],
        serde_json::json!([{"instance": "late", "program": "late", "state": "backoff"}]),
        "{body}"
    );
    assert_eq!(report["ready"], false);
    sb.write("go", "");
    sb.wait_state("late", "running");
    sb.wait_state("web", "running");
    let (status, body) = get(port, "/readyz", None);
    assert_eq!(status, 200, "{body}");
}

#[test]
fn http_token_guards_everything_but_healthz() {
    let sb0 = Sandbox::new("http-token-file");
    sb0.write("token", "s3cret-token\n");
    let token_file = sb0.path("token");
    let (sb, port) = start(
        "http-token",
        &format!("    token_file: {}\n", token_file.display()),
        TWO_WEB,
    );
    assert_eq!(get(port, "/healthz", None).0, 200);
    for _ in 0..5 {
        assert_eq!(get(port, "/metrics", None).0, 401);
    }
    assert_eq!(get(port, "/metrics", Some("s3cret")).0, 401);
    assert_eq!(get(port, "/readyz", Some("wrong-token!")).0, 401);
    assert_eq!(get(port, "/nothing", None).0, 401);
    let (status, body) = get(port, "/metrics", Some("s3cret-token"));
    assert_eq!(status, 200);
    assert!(body.contains("sup_build_info"), "{body}");
    // Eight refusals in well under a second or two are not eight lines in the log.
    sb.wait_for("a refusal logged", || sb.log().contains("http: refused"));
    let logged = sb.log().matches("http: refused").count();
    assert!(
        (1..8).contains(&logged),
        "{logged} refusals logged:\n{}",
        sb.log()
    );
    drop(sb);

    // A token file that cannot be read, or says nothing, stops the start and is named.
    for (what, content) in [("missing", None), ("empty", Some(" \n"))] {
        let sb = Sandbox::new("http-token-bad");
        if let Some(c) = content {
            sb.write("token", c);
        }
        sb.write(
            "sup.yaml",
            &format!(
                "daemon:\n  http:\n    listen: \"127.0.0.1:0\"\n    token_file: {}\nprograms:\n{TWO_WEB}",
                sb.path("token").display()
            ),
        );
        let out = sb.run_second_daemon();
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{what}: {err}");
        assert!(
            err.contains(&sb.path("token").display().to_string()),
            "{what}: {err}"
        );
    }
}

#[test]
fn http_a_public_address_without_a_token_file_is_a_config_error() {
    let sb = Sandbox::new("http-check");
    sb.write(
        "sup.yaml",
        "daemon:\n  http:\n    listen: [\"127.0.0.1:9273\", \"0.0.0.0:9273\"]\nprograms:\n  web:\n    cmd: sleep 1\n",
    );
    let out = sb.sup(&["check"]);
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!out.status.success(), "{text}");
    assert!(
        text.contains("sup.yaml:3:32: daemon.http.listen: 0.0.0.0:9273 is not a loopback address"),
        "{text}"
    );
}

#[test]
fn http_a_client_dripping_its_head_is_cut_off_at_the_deadline() {
    let (sb, port) = start("http-drip", "", TWO_WEB);
    let mut s = connect(port);
    let mut reader = s.try_clone().expect("clone");
    let began = Instant::now();
    let writer = std::thread::spawn(move || {
        let head = b"GET /healthz HTTP/1.1\r\nX-Slow: "
            .iter()
            .chain(std::iter::repeat(&b'a'));
        for b in head.take(600) {
            if s.write_all(std::slice::from_ref(b)).is_err() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    });
    let mut got = Vec::new();
    let closed = reader.read_to_end(&mut got);
    let took = began.elapsed();
    assert!(
        closed.is_ok()
            || closed
                .as_ref()
                .is_err_and(|e| e.kind() == ErrorKind::ConnectionReset),
        "{closed:?}"
    );
    assert!(got.is_empty(), "{:?}", String::from_utf8_lossy(&got));
    assert!(
        took >= Duration::from_millis(4500) && took < Duration::from_secs(11),
        "{took:?}"
    );
    let _ = writer.join();
    assert_eq!(get(port, "/healthz", None).0, 200);
    sb.sup_ok(&["status"]);
}

#[test]
fn http_a_100_kib_head_is_refused_and_the_daemon_keeps_serving() {
    let (sb, port) = start("http-big", "", TWO_WEB);
    let mut s = connect(port);
    let reader = s.try_clone().expect("clone");
    let writer = std::thread::spawn(move || {
        let mut raw = b"GET /metrics HTTP/1.1\r\nX-Big: ".to_vec();
        raw.extend(std::iter::repeat_n(b'a', 100 * 1024));
        raw.extend_from_slice(b"\r\n\r\n");
        let _ = s.write_all(&raw);
    });
    let mut got = Vec::new();
    let _ = (&reader).read_to_end(&mut got);
    let answer = String::from_utf8_lossy(&got);
    assert!(
        answer.starts_with("HTTP/1.1 431 ") || answer.starts_with("HTTP/1.1 400 "),
        "{answer:?}"
    );
    let _ = writer.join();
    assert_eq!(get(port, "/healthz", None).0, 200);
    sb.sup_ok(&["status"]);
}

#[test]
fn http_idle_connections_past_the_limit_make_room_and_healthz_still_answers() {
    let (sb, port) = start("http-many", "", TWO_WEB);
    sb.wait_state("web:0", "running");
    let pid = sb.pid("web:0");
    let mut idle: Vec<TcpStream> = (0..200).map(|_| connect(port)).collect();
    assert_eq!(get(port, "/healthz", None), (200, "ok\n".into()));
    // Past the limit (256 at once) the oldest connection still without a request is closed
    // to make room: clients holding slots cannot keep a probe out.
    idle.extend((0..80).map(|_| connect(port)));
    assert_eq!(get(port, "/healthz", None), (200, "ok\n".into()));
    let mut first = idle[0].try_clone().expect("clone");
    let mut got = Vec::new();
    let _ = first.read_to_end(&mut got);
    assert!(
        got.is_empty(),
        "the oldest idle connection is closed without an answer"
    );
    drop(idle);
    sb.wait_for("/healthz to answer 200 again", || {
        get(port, "/healthz", None).0 == 200
    });
    // The daemon stayed up and its job was left alone.
    assert_eq!(sb.state("web:0"), "running");
    assert_eq!(sb.pid("web:0"), pid);
}

#[test]
fn http_an_idle_daemon_serving_http_makes_no_wakeups() {
    let (sb, _port) = start("http-idle", "", TWO_WEB);
    sb.wait_state("web:1", "running");
    assert_no_wakeups(&sb);
}

/// Once it has settled, the daemon sleeps for 3 s without one voluntary context switch.
pub(crate) fn assert_no_wakeups(sb: &Sandbox) {
    let pid = sb.daemon_pid();
    let switches = || {
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
        status
            .lines()
            .filter(|l| l.contains("voluntary_ctxt_switches"))
            .filter_map(|l| l.split_whitespace().nth(1)?.parse::<u64>().ok())
            .sum::<u64>()
    };
    let mut last = switches();
    sb.wait_for("the daemon to settle", || {
        std::thread::sleep(Duration::from_millis(500));
        let now = switches();
        std::mem::replace(&mut last, now) == now
    });
    let before = switches();
    std::thread::sleep(Duration::from_secs(3));
    let after = switches();
    assert_eq!(after - before, 0, "{} wakeups in 3 s", after - before);
}

#[test]
fn http_clients_cannot_take_the_descriptors_a_restart_needs() {
    let mut sb = Sandbox::new("http-nofile");
    sb.write(
        "sup.yaml",
        "daemon:\n  http:\n    listen: \"127.0.0.1:0\"\nprograms:\n  web:\n    cmd: sleep 1000\n    numprocs: 3\n    starttime: 0\n",
    );
    sb.wrapper = ["prlimit", "--nofile=64:64", "--"]
        .map(String::from)
        .to_vec();
    sb.start();
    let port = serving_port(&sb);
    sb.wait_state("web:2", "running");
    let old = sb.pid("web:0").expect("web:0 runs");
    // Far more idle connections than the descriptors left: the daemon keeps at most a
    // quarter of its 64 for HTTP, closing the oldest idle ones to make room.
    let idle: Vec<TcpStream> = (0..60)
        .filter_map(|_| TcpStream::connect(("127.0.0.1", port)).ok())
        .collect();
    let t0 = Instant::now();
    let _ = Command::new("kill").args(["-9", &old.to_string()]).status();
    sb.wait_for("web:0 to run again", || {
        sb.state("web:0") == "running" && sb.pid("web:0").is_some_and(|p| p != old)
    });
    // Idle connections are closed after 10 s anyway: the restart must not have waited for it.
    assert!(
        t0.elapsed() < Duration::from_secs(8),
        "the restart took {:?}",
        t0.elapsed()
    );
    assert_eq!(get(port, "/healthz", None), (200, "ok\n".into()));
    drop(idle);
}

/// A real Prometheus server (`make test-deps` installs it) on a loopback port, scraping one
/// target every second, killed when dropped.
struct Prometheus {
    child: std::process::Child,
    port: u16,
}

impl Prometheus {
    /// `None` (the test then says why it skips) when the `prometheus` program is not on PATH.
    fn scrape(sb: &Sandbox, target_port: u16) -> Option<Prometheus> {
        let program = std::env::var_os("PATH")?
            .to_str()?
            .split(':')
            .map(|d| std::path::Path::new(d).join("prometheus"))
            .find(|p| p.is_file())?;
        // `honor_labels`: our `instance` label names a job's instance, and Prometheus would
        // otherwise rename it `exported_instance` to make room for the target's.
        sb.write(
            "prometheus.yml",
            &format!(
                "global:\n  scrape_interval: 1s\nscrape_configs:\n  - job_name: sup\n    \
                 honor_labels: true\n    static_configs:\n      - targets: [\"127.0.0.1:{target_port}\"]\n"
            ),
        );
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .expect("a free port");
        let child = Command::new(program)
            .arg(format!(
                "--config.file={}",
                sb.path("prometheus.yml").display()
            ))
            .arg(format!("--storage.tsdb.path={}", sb.path("tsdb").display()))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .stdout(std::process::Stdio::null())
            .stderr(std::fs::File::create(sb.path("prometheus.log")).expect("log"))
            .spawn()
            .expect("start prometheus");
        Some(Prometheus { child, port })
    }

    /// The value of an instant query's only sample, if it has exactly one.
    fn query(&self, promql: &str) -> Option<f64> {
        let mut s = TcpStream::connect(("127.0.0.1", self.port)).ok()?;
        s.set_read_timeout(Some(PATIENCE)).ok()?;
        let q: String = promql
            .bytes()
            .map(|b| match b {
                b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'_' => (b as char).to_string(),
                _ => format!("%{b:02X}"),
            })
            .collect();
        write!(
            s,
            "GET /api/v1/query?query={q} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"
        )
        .ok()?;
        let mut out = Vec::new();
        s.read_to_end(&mut out).ok()?;
        let text = String::from_utf8_lossy(&out);
        let (_, body) = text.split_once("\r\n\r\n")?;
        let v: serde_json::Value = serde_json::from_str(body).ok()?;
        let result = v["data"]["result"].as_array()?;
        if result.len() != 1 {
            return None;
        }
        result[0]["value"][1].as_str()?.parse().ok()
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn http_a_real_prometheus_server_scrapes_the_restarts_status_shows() {
    let (sb, port) = start(
        "http-prometheus",
        "",
        "  job:\n    cmd: sleep 1000\n    starttime: 0.1\n    autorestart: always\n    stoptime: 2\n",
    );
    sb.wait_state("job", "running");
    for _ in 0..2 {
        let pid = sb.pid("job").expect("pid");
        crate::sandbox::kill(pid, 9);
        sb.wait_for("a restart", || {
            sb.instance("job")["state"] == "running" && sb.pid("job").is_some_and(|p| p != pid)
        });
    }
    let restarts = sb.instance("job")["restarts"].as_f64();
    assert!(restarts >= Some(2.0), "{restarts:?}");
    let Some(prom) = Prometheus::scrape(&sb, port) else {
        println!("skipping the Prometheus scrape: prometheus is not on PATH (make test-deps)");
        return;
    };
    let mut seen = (None, None);
    let deadline = Instant::now() + PATIENCE * 4;
    while Instant::now() < deadline {
        seen = (
            prom.query("up{job=\"sup\"}"),
            prom.query("sup_instance_restarts_total{program=\"job\",instance=\"job\"}"),
        );
        if seen.0 == Some(1.0) && seen.1 == restarts {
            break;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    let log = std::fs::read_to_string(sb.path("prometheus.log")).unwrap_or_default();
    assert_eq!(
        seen.0,
        Some(1.0),
        "the target is not up; prometheus said:\n{log}"
    );
    assert_eq!(seen.1, restarts, "prometheus said:\n{log}");
    // A one-hot state series reaches the server too.
    assert_eq!(
        prom.query("sup_instance_state{instance=\"job\",state=\"running\"}"),
        Some(1.0)
    );
}

#[test]
fn http_readyz_without_the_token_gives_the_verdict_and_no_names() {
    let sb0 = Sandbox::new("http-readyz-token-file");
    sb0.write("token", "s3cret-token\n");
    let (sb, port) = start(
        "http-readyz-token",
        &format!("    token_file: {}\n", sb0.path("token").display()),
        "  web:\n    cmd: sleep 1000\n    starttime: 0.1\n    stoptime: 2\n  \
         late:\n    cmd: [\"sh\", \"-c\", \"test -e go || exit 1; exec sleep 1000\"]\n    \
         starttime: 0.1\n    startretries: 1000\n    stoptime: 2\n",
    );
    sb.wait_state("web", "running");
    // What a Kubernetes probe sends: no Authorization header.
    sb.wait_for("/readyz 503 without names", || {
        get(port, "/readyz", None) == (503, "{\"ready\":false}\n".to_string())
    });
    let (status, body) = get(port, "/readyz", Some("s3cret-token"));
    assert_eq!(status, 503);
    assert!(body.contains("\"late\""), "{body}");
    // A wrong token is still refused, and logged.
    assert_eq!(get(port, "/readyz", Some("wrong-token!")).0, 401);
    sb.write("go", "");
    sb.wait_for("/readyz 200 without a token", || {
        get(port, "/readyz", None) == (200, "{\"ready\":true}\n".to_string())
    });
}

#[test]
fn http_metrics_count_scheduled_runs_health_and_the_daemon_itself() {
    let (sb, port) = start(
        "http-metrics-more",
        "",
        "  tick:\n    cmd: [\"sh\", \"-c\", \"exit 0\"]\n    schedule: every 1s\n    starttime: 0\n  \
         bad:\n    cmd: [\"sh\", \"-c\", \"exit 3\"]\n    schedule: every 1s\n    starttime: 0\n  \
         web:\n    cmd: sleep 1000\n    starttime: 0.1\n    stoptime: 2\n    \
         healthcheck: {cmd: \"true\", interval: 1s}\n",
    );
    let labels = |p: &str| format!("program=\"{p}\",instance=\"{p}\"");
    let mut metrics = String::new();
    sb.wait_for(
        "two runs of each scheduled job and a passing health check",
        || {
            metrics = get(port, "/metrics", None).1;
            let ok = sample(
                &metrics,
                &format!(
                    "sup_schedule_runs_total{{{},result=\"ok\"}}",
                    labels("tick")
                ),
            );
            let failed = sample(
                &metrics,
                &format!(
                    "sup_schedule_runs_total{{{},result=\"failed\"}}",
                    labels("bad")
                ),
            );
            let healthy = sample(
                &metrics,
                &format!("sup_instance_healthy{{{}}}", labels("web")),
            );
            ok >= Some(2.0) && failed >= Some(2.0) && healthy == Some(1.0)
        },
    );
    // A job that only fails has no ok run, and one that only succeeds no failed one.
    assert_eq!(
        sample(
            &metrics,
            &format!("sup_schedule_runs_total{{{},result=\"ok\"}}", labels("bad"))
        ),
        Some(0.0),
        "{metrics}"
    );
    assert_eq!(
        sample(
            &metrics,
            &format!(
                "sup_schedule_runs_total{{{},result=\"failed\"}}",
                labels("tick")
            )
        ),
        Some(0.0)
    );
    // The next run is in the future, within the period (and a little slack for a busy host).
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_secs_f64();
    let next = sample(
        &metrics,
        &format!(
            "sup_schedule_next_run_timestamp_seconds{{{}}}",
            labels("tick")
        ),
    );
    assert!(
        next.is_some_and(|t| t > now - 2.0 && t < now + 5.0),
        "{next:?} vs {now}"
    );
    // Only jobs with a health check have the series.
    assert!(
        !metrics.contains("sup_instance_healthy{program=\"tick\""),
        "{metrics}"
    );
    // The daemon's own counters move: the schedules wake the loop every second.
    let wakeups = |m: &str| sample(m, "sup_daemon_loop_wakeups_total").unwrap_or(0.0);
    let lines = sample(&metrics, "sup_daemon_event_log_lines_total").unwrap_or(0.0);
    assert!(lines >= 4.0, "{metrics}");
    let mut later = String::new();
    sb.wait_for("more loop wakeups", || {
        later = get(port, "/metrics", None).1;
        wakeups(&later) > wakeups(&metrics)
    });
    assert_eq!(
        sample(&later, "sup_daemon_notifications_total{result=\"failed\"}"),
        Some(0.0)
    );
    promtool_check(&sb, &later);
}
