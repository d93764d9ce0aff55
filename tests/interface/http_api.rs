//! The JSON API (`/api/v1/…`) and the remote CLI (`sup --url`): the control protocol over
//! HTTP, checked against the socket's answers and the jobs' observed effects.

use std::io::{BufRead, BufReader, Read, Write};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::http::{connect, exchange, get, start};

/// The token every test daemon that takes changes is given (without one, the API refuses
/// changes and `tail`), and the header that carries it.
const TOKEN: &str = "t0ken";
const AUTH: &str = "Authorization: Bearer t0ken\r\n";

/// A daemon serving HTTP with `TOKEN`; the first sandbox holds the token file (it must
/// exist before the daemon's config names it) and lives as long as the test.
fn start_with_token(name: &str, programs: &str) -> (Sandbox, Sandbox, u16) {
    let holder = Sandbox::new(&format!("{name}-token-file"));
    holder.write("token", &format!("{TOKEN}\n"));
    let (sb, port) = start(
        name,
        &format!("    token_file: {}\n", holder.path("token").display()),
        programs,
    );
    (holder, sb, port)
}
use crate::sandbox::{alive, kill, sup_bin, Sandbox, PATIENCE};

/// Send a request with `body` (a `Content-Length` one) and read the whole answer.
fn request(port: u16, method: &str, path: &str, body: &str, extra: &str) -> (u16, String, String) {
    // A POST says it is JSON, as every API client must (cross-site forms cannot).
    let json = if method == "POST" {
        "Content-Type: application/json\r\n"
    } else {
        ""
    };
    let raw = format!(
        "{method} {path} HTTP/1.1\r\nHost: localhost\r\n{json}{extra}Content-Length: {}\r\n\r\n{body}",
        body.len()
    );
    let answer = exchange(port, raw.as_bytes());
    let status = answer
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let (head, body) = answer.split_once("\r\n\r\n").unwrap_or((&answer, ""));
    (status, head.to_string(), body.to_string())
}

fn post(port: u16, path: &str, body: &str) -> (u16, Value) {
    let (status, _, text) = request(port, "POST", path, body, AUTH);
    let json = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{e}: {text:?}"));
    (status, json)
}

fn get_json(port: u16, path: &str) -> (u16, Value) {
    let (status, text) = get(port, path, Some(TOKEN));
    let json = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{e}: {text:?}"));
    (status, json)
}

/// The instances without the fields that move between two looks (uptime, usage).
fn steady(status: &Value) -> Value {
    let mut v = status.clone();
    if let Some(list) = v.as_array_mut() {
        for i in list {
            if let Some(o) = i.as_object_mut() {
                for volatile in ["uptime_s", "cpu_percent", "rss_bytes"] {
                    o.remove(volatile);
                }
            }
        }
    }
    v
}

/// `sup ARGS` against the daemon's HTTP API, with `env` added.
fn remote(sb: &Sandbox, url: &str, args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut cmd = Command::new(sup_bin());
    cmd.arg("--url")
        .arg(url)
        .args(args)
        .current_dir(&sb.dir)
        .env_remove("SUP_URL")
        .env_remove("SUP_TOKEN_FILE")
        .env_remove("SUP_SOCKET")
        // A config the remote CLI must not need: a socket that does not exist.
        .env("SUP_CONFIG", sb.path("nonexistent.yaml"));
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.output().expect("run sup")
}

fn text(out: &Output) -> (Option<i32>, String, String) {
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// An SSE stream opened with `GET path`; `next_event` reads one `data:` line's JSON.
struct Events {
    reader: BufReader<std::net::TcpStream>,
}

impl Events {
    fn open(port: u16, path: &str) -> Events {
        let mut s = connect(port);
        s.write_all(format!("GET {path} HTTP/1.1\r\nHost: localhost\r\n{AUTH}\r\n").as_bytes())
            .expect("send");
        let mut reader = BufReader::new(s);
        let mut head = String::new();
        loop {
            let mut line = String::new();
            if reader.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
                break;
            }
            head.push_str(&line);
        }
        assert!(head.starts_with("HTTP/1.1 200"), "{head}");
        assert!(head.contains("Content-Type: text/event-stream"), "{head}");
        Events { reader }
    }

    /// The next event's name and data, or `None` at the end of the stream.
    fn next_event(&mut self) -> Option<(String, Value)> {
        let (mut name, mut data) = (String::new(), None);
        loop {
            let mut line = String::new();
            if self.reader.read_line(&mut line).ok()? == 0 {
                return None;
            }
            let line = line.trim_end_matches('\n');
            if line.is_empty() {
                if let Some(d) = data.take() {
                    return Some((name, d));
                }
                continue;
            }
            if let Some(n) = line.strip_prefix("event: ") {
                name = n.to_string();
            } else if let Some(d) = line.strip_prefix("data: ") {
                data = Some(serde_json::from_str(d).expect("one JSON answer per event"));
            }
        }
    }
}

const TWO_JOBS: &str =
    "  web:\n    cmd: \"sleep 1000\"\n  idle:\n    cmd: \"sleep 1000\"\n    autostart: false\n";

#[test]
fn api_status_is_the_array_sup_status_json_prints() {
    let (sb, port) = start("api-status", "", TWO_JOBS);
    sb.wait_state("web", "running");
    let (status, api) = get_json(port, "/api/v1/status");
    assert_eq!(status, 200);
    let cli: Value = serde_json::from_str(&sb.sup_ok(&["status", "--json"])).expect("JSON");
    assert_eq!(steady(&api), steady(&cli));
    assert_eq!(api.as_array().map(Vec::len), Some(2));

    let (status, one) = get_json(port, "/api/v1/status/web");
    assert_eq!(status, 200);
    assert_eq!(one[0]["name"], "web");
    assert_eq!(one.as_array().map(Vec::len), Some(1));

    // An unknown name: the socket's error, as a 404.
    let (status, err) = get_json(port, "/api/v1/status/nope");
    assert_eq!(status, 404);
    assert_eq!(err["kind"], "error");
    let socket = sb.sup(&["status", "nope"]);
    let said = String::from_utf8_lossy(&socket.stderr);
    let message = err["message"].as_str().unwrap_or("?");
    assert!(
        said.contains(&format!("sup: error: {message}")),
        "{said} vs {message}"
    );
}

#[test]
fn api_start_stop_restart_wait_for_the_processes() {
    let (_t, sb, port) = start_with_token("api-act", TWO_JOBS);
    let first = sb.wait_state("web", "running")["pid"]
        .as_u64()
        .expect("a pid") as u32;

    let (status, answer) = post(port, "/api/v1/stop", r#"{"names":["web"],"wait":true}"#);
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["kind"], "outcomes");
    assert_eq!(answer["outcomes"][0]["message"], "stopped");
    assert!(!alive(first), "the stop waited until pid {first} was gone");

    let (status, answer) = post(port, "/api/v1/start/web", "");
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["outcomes"][0]["message"], "started");
    let second = sb.pid("web").expect("running again");
    assert!(alive(second));
    assert_ne!(second, first);

    let (status, answer) = post(
        port,
        "/api/v1/restart",
        r#"{"names":["web"],"rolling":true}"#,
    );
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["outcomes"][0]["message"], "restarted");
    let third = sb.pid("web").expect("running again");
    assert!(alive(third) && !alive(second) && third != second);

    // Start on two names, one of them already running: the socket's per-name outcomes.
    let (_, answer) = post(port, "/api/v1/start", r#"{"names":["web","idle"]}"#);
    let mut messages: Vec<(&str, &str)> = answer["outcomes"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|o| Some((o["name"].as_str()?, o["message"].as_str()?)))
                .collect()
        })
        .unwrap_or_default();
    messages.sort();
    assert_eq!(messages, [("idle", "started"), ("web", "already running")]);
    assert!(sb.pid("idle").is_some_and(alive));

    // A GET does not stop anything.
    let (status, head, body) = request(port, "GET", "/api/v1/stop/web", "", AUTH);
    assert_eq!(status, 405, "{head}");
    assert!(head.contains("Allow: POST"), "{head}");
    assert!(body.contains("\"kind\":\"error\""), "{body}");
    assert_eq!(sb.pid("web"), Some(third));
}

#[test]
fn api_signal_reaches_the_job() {
    let (_t, sb, port) = start_with_token(
        "api-signal",
        "  trap:\n    cmd: \"sh -c 'trap \\\"echo got > usr1\\\" USR1; while :; do sleep 0.1; done'\"\n",
    );
    sb.wait_state("trap", "running");
    let (status, answer) = post(
        port,
        "/api/v1/signal",
        r#"{"signal":"USR1","names":["trap"]}"#,
    );
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["outcomes"][0]["ok"], true);
    sb.wait_for("the job's USR1 trap to write its file", || {
        sb.path("usr1").exists()
    });
    let (status, answer) = post(port, "/api/v1/signal/trap", r#"{"signal":"NOPE"}"#);
    assert_eq!(status, 400, "{answer}");
    assert!(answer["message"]
        .as_str()
        .is_some_and(|m| m.contains("unknown signal")));
}

/// `"target": "main"` (or `"main": true`) reaches the leader alone, as `sup signal --main`
/// does; absent, the job's `signal_target`; `sup --url … signal --main` sends it.
#[test]
fn api_signal_main_reaches_the_leader_only() {
    use crate::control_socket::{expect_group, expect_main, LEADER, WORKER};
    let (t, sb, port) = start_with_token(
        "api-signal-main",
        // The daemon starts before the scripts can be written in its sandbox: wait for them.
        "  web:\n    cmd: [\"sh\", \"-c\", \"until [ -e ready ]; do sleep 0.05; done; exec sh leader.sh\"]\n    starttime: 0.1\n    stoptime: 2s\n",
    );
    sb.write("leader.sh", LEADER);
    sb.write("worker.sh", WORKER);
    sb.write("ready", "");
    sb.wait_state("web", "running");
    sb.wait_for("the worker", || sb.path("web.ticks").exists());
    let hup = |body: &str| {
        let (status, answer) = post(port, "/api/v1/signal", body);
        assert_eq!(status, 200, "{answer}");
        assert_eq!(answer["outcomes"][0]["ok"], true, "{answer}");
    };
    expect_group(&sb, "web", || hup(r#"{"signal":"HUP","names":["web"]}"#));
    expect_main(&sb, "web", "target main", || {
        hup(r#"{"signal":"HUP","names":["web"],"target":"main"}"#)
    });
    expect_main(&sb, "web", "main: true", || {
        hup(r#"{"signal":"HUP","names":["web"],"main":true}"#)
    });
    expect_group(&sb, "web", || {
        hup(r#"{"signal":"HUP","names":["web"],"target":"group"}"#)
    });
    let (status, answer) = post(
        port,
        "/api/v1/signal/web",
        r#"{"signal":"HUP","main":true,"target":"group"}"#,
    );
    assert_eq!(status, 400, "{answer}");
    // The remote CLI.
    let url = format!("http://127.0.0.1:{port}");
    let token = t.path("token").display().to_string();
    expect_main(&sb, "web", "sup --url signal --main", || {
        let out = remote(
            &sb,
            &url,
            &["signal", "--main", "HUP", "web"],
            &[("SUP_TOKEN_FILE", &token)],
        );
        assert_eq!(out.status.code(), Some(0), "{:?}", text(&out));
    });
}

#[test]
fn api_reload_dry_run_changes_nothing() {
    let (_t, sb, port) = start_with_token("api-reload", TWO_JOBS);
    sb.wait_state("web", "running");
    let before = sb.pid("web");
    let config = sb.read("sup.yaml");
    sb.write(
        "sup.yaml",
        &format!("{config}  extra:\n    cmd: \"sleep 1000\"\n"),
    );
    let (status, answer) = post(port, "/api/v1/reload", r#"{"dry_run":true}"#);
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["kind"], "reload");
    assert_eq!(answer["report"]["dry_run"], true);
    assert_eq!(answer["report"]["added"], serde_json::json!(["extra"]));
    let (_, list) = get_json(port, "/api/v1/status");
    assert_eq!(
        list.as_array().map(Vec::len),
        Some(2),
        "nothing added: {list}"
    );
    assert_eq!(sb.pid("web"), before);
}

#[test]
fn api_tail_and_follow_stream_the_output() {
    let (_t, sb, port) = start_with_token(
        "api-tail",
        "  talk:\n    cmd: \"sh -c 'echo one; echo two; echo three; while [ ! -e more ]; do sleep 0.05; done; echo four; sleep 1000'\"\n",
    );
    sb.wait_state("talk", "running");
    let mut tail = Value::Null;
    sb.wait_for("three lines to tail", || {
        tail = get_json(port, "/api/v1/tail/talk?lines=2").1;
        tail["data"] == "two\nthree\n"
    });
    assert_eq!(tail["kind"], "output");
    let (status, _) = get_json(port, "/api/v1/tail/nope");
    assert_eq!(status, 404);

    let mut events = Events::open(port, "/api/v1/tail/talk?lines=1&follow=1");
    let (name, first) = events.next_event().expect("the tail");
    assert_eq!(
        (name.as_str(), &first["data"]),
        ("output", &Value::from("three\n"))
    );
    sb.write("more", "");
    let (_, next) = events.next_event().expect("what is new");
    assert_eq!(next["data"], "four\n");
}

#[test]
fn api_events_stream_sees_a_crash() {
    let (sb, port) = start("api-events", "", TWO_JOBS);
    let pid = sb.wait_state("web", "running")["pid"]
        .as_u64()
        .expect("a pid") as u32;
    let mut events = Events::open(port, "/api/v1/events?names=web");
    let (name, snapshot) = events.next_event().expect("a snapshot");
    assert_eq!(name, "status");
    assert_eq!(snapshot["instances"][0]["name"], "web");
    kill(pid, 9);
    let mut seen = Vec::new();
    let deadline = Instant::now() + PATIENCE;
    while Instant::now() < deadline {
        let Some((name, e)) = events.next_event() else {
            break;
        };
        assert_eq!(name, "event");
        let message = e["message"].as_str().unwrap_or("").to_string();
        seen.push(message.clone());
        if message.contains("exited") && message.contains("SIGKILL") {
            assert_eq!(e["instance"]["name"], "web");
            return;
        }
    }
    panic!("no crash event for web, saw {seen:?}");
}

#[test]
fn api_refuses_what_it_cannot_take() {
    let (_t, _sb, port) = start_with_token("api-refusals", TWO_JOBS);
    let auth = AUTH;
    // Every /api endpoint needs the token.
    for (method, path) in [("GET", "/api/v1/status"), ("POST", "/api/v1/stop/web")] {
        let (status, head, body) = request(port, method, path, "", "");
        assert_eq!(status, 401, "{method} {path}: {head}");
        assert!(body.contains("\"kind\":\"error\""), "{body}");
    }
    let (status, _, _) = request(port, "GET", "/api/v1/status", "", auth);
    assert_eq!(status, 200);
    let (status, _, body) = request(port, "POST", "/api/v1/start", "{\"names\":", auth);
    assert_eq!(status, 400, "{body}");
    let (status, _, _) = request(port, "GET", "/api/v1/nothing", "", auth);
    assert_eq!(status, 404);
    // A body over 64 KiB is refused before it is read.
    let big = exchange(
        port,
        format!("POST /api/v1/start HTTP/1.1\r\n{auth}Content-Length: 100000\r\n\r\n{{").as_bytes(),
    );
    assert!(big.starts_with("HTTP/1.1 413 "), "{big}");
    let chunked = exchange(
        port,
        format!("POST /api/v1/start HTTP/1.1\r\n{auth}Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n")
            .as_bytes(),
    );
    assert!(chunked.starts_with("HTTP/1.1 411 "), "{chunked}");
    // A body that comes in pieces is read whole.
    let mut s = connect(port);
    let body = r#"{"names":["idle"],"wait":false}"#;
    let head = format!(
        "POST /api/v1/start HTTP/1.1\r\n{auth}Content-Type: application/json\r\nContent-Length: {}\r\n\r\n",
        body.len()
    );
    s.write_all(head.as_bytes()).expect("head");
    std::thread::sleep(Duration::from_millis(50));
    s.write_all(body.as_bytes()).expect("body");
    let mut answer = String::new();
    let _ = s.read_to_string(&mut answer);
    assert!(answer.starts_with("HTTP/1.1 200 "), "{answer}");
    assert!(answer.contains("(not waiting)"), "{answer}");
}

#[test]
fn a_slow_sse_reader_is_dropped_and_the_daemon_stays_responsive() {
    // 32 MiB once `go` exists: far past what the socket buffers and the 4 MiB limit hold.
    let (_t, sb, port) = start_with_token(
        "api-slow",
        "  flood:\n    cmd: \"sh -c 'while [ ! -e go ]; do sleep 0.05; done; yes aaaaaaaaaaaaaaa | head -c 33554432; sleep 1000'\"\n    stdout_maxbytes: 1GB\n",
    );
    sb.wait_state("flood", "running");
    let mut s = connect(port);
    s.write_all(
        format!("GET /api/v1/tail/flood?follow=1&lines=0 HTTP/1.1\r\n{AUTH}\r\n").as_bytes(),
    )
    .expect("send");
    let mut first = [0u8; 12];
    s.read_exact(&mut first).expect("the stream's head");
    assert_eq!(&first, b"HTTP/1.1 200");
    sb.write("go", "");
    sb.wait_for("the daemon to drop the reader", || {
        sb.log().contains("dropped the stream")
    });
    // The daemon answers both ways meanwhile.
    assert_eq!(sb.state("flood"), "running");
    assert_eq!(get(port, "/healthz", None).0, 200);
    // What the reader gets ends: the daemon closed its side.
    s.set_read_timeout(Some(PATIENCE)).expect("timeout");
    let mut sink = vec![0u8; 1 << 20];
    let ended = loop {
        match s.read(&mut sink) {
            Ok(0) => break true,
            Ok(_) => {}
            // A reset is a close too; a timeout means the stream was still open.
            Err(e) => break e.kind() == std::io::ErrorKind::ConnectionReset,
        }
    };
    assert!(ended, "the stream was not closed");
}

#[test]
fn remote_cli_reads_and_exits_as_the_socket_cli() {
    let (t, sb, port) = start_with_token(
        "api-remote",
        "  web:\n    cmd: \"sh -c 'echo line 1; echo line 2; echo line 3; while [ ! -e more ]; do sleep 0.05; done; echo line 4; sleep 1000'\"\n  idle:\n    cmd: \"sleep 1000\"\n    autostart: false\n",
    );
    sb.wait_state("web", "running");
    let url = format!("http://127.0.0.1:{port}");
    let token = t.path("token").display().to_string();
    let remote = |sb: &Sandbox, url: &str, args: &[&str], env: &[(&str, &str)]| {
        let mut env = env.to_vec();
        env.push(("SUP_TOKEN_FILE", &token));
        remote(sb, url, args, &env)
    };
    sb.wait_for("the job's three lines", || {
        sb.sup_ok(&["tail", "web"]) == "line 1\nline 2\nline 3\n"
    });

    // Answers that do not move between two looks read the same either way.
    for args in [
        &["status", "idle"][..],
        &["status", "nope"],
        &["pid", "nope"],
        &["tail", "-n", "2", "web"],
        &["signal", "NOPE", "web"],
        &["reload", "--dry-run"],
        &["stop", "idle"],
        &["start", "--no-wait", "nope"],
    ] {
        let by_socket = text(&sb.sup(args));
        let by_http = text(&remote(&sb, &url, args, &[]));
        assert_eq!(by_http, by_socket, "sup {args:?}");
    }
    let status: Value =
        serde_json::from_slice(&remote(&sb, &url, &["status", "--json"], &[]).stdout)
            .expect("JSON");
    let cli: Value = serde_json::from_str(&sb.sup_ok(&["status", "--json"])).expect("JSON");
    assert_eq!(steady(&status), steady(&cli));

    // A stop over HTTP, then the same stop over the socket (after a start): same words.
    let pid = sb.pid("web").expect("running");
    let by_http = text(&remote(&sb, &url, &["stop", "web"], &[]));
    assert!(!alive(pid));
    sb.sup_ok(&["start", "web"]);
    sb.wait_for("the restarted job's lines", || {
        sb.sup_ok(&["tail", "web"]).ends_with("line 3\n")
    });
    let by_socket = text(&sb.sup(&["stop", "web"]));
    assert_eq!(by_http, by_socket);
    assert_eq!(by_http, (Some(0), "web: stopped\n".into(), String::new()));

    // `tail -f` both ways: the same lines, and the same exit on SIGTERM.
    sb.sup_ok(&["start", "web"]);
    let follow = |remote_url: Option<&str>, out: &str| {
        let mut cmd = Command::new(sup_bin());
        if let Some(u) = remote_url {
            cmd.arg("--url").arg(u).arg("--token-file").arg(&token);
        } else {
            cmd.arg("--socket").arg(sb.socket());
        }
        cmd.args(["-c", "nonexistent.yaml", "tail", "-f", "web"])
            .current_dir(&sb.dir)
            .env_remove("SUP_URL")
            .stdout(std::fs::File::create(sb.path(out)).expect("out"))
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn")
    };
    let mut a = follow(Some(&url), "remote.out");
    let mut b = follow(None, "local.out");
    sb.wait_for("both followers to show the lines", || {
        sb.read("remote.out").contains("line 3") && sb.read("local.out").contains("line 3")
    });
    sb.write("more", "");
    sb.wait_for("both followers to show the new line", || {
        sb.read("remote.out").contains("line 4") && sb.read("local.out").contains("line 4")
    });
    for child in [&a, &b] {
        kill(child.id(), 15);
    }
    let (ra, rb) = (a.wait().expect("wait"), b.wait().expect("wait"));
    assert_eq!(ra.code(), rb.code());
    assert_eq!(ra.code(), Some(0));
    assert_eq!(sb.read("remote.out"), sb.read("local.out"));
}

#[test]
fn remote_cli_sends_the_token_file() {
    let sb0 = Sandbox::new("api-remote-token-file");
    sb0.write("token", "s3cret\n");
    sb0.write("wrong", "nope\n");
    let token = sb0.path("token");
    let (sb, port) = start(
        "api-remote-token",
        &format!("    token_file: {}\n", token.display()),
        TWO_JOBS,
    );
    sb.wait_state("web", "running");
    let url = format!("http://127.0.0.1:{port}");
    let without = text(&remote(&sb, &url, &["status", "idle"], &[]));
    assert_eq!(without.0, Some(1));
    assert!(
        without.2.contains("a valid bearer token is required"),
        "{}",
        without.2
    );
    assert!(without.2.contains("--token-file"), "{}", without.2);
    let wrong = sb0.path("wrong");
    let wrong = text(&remote(
        &sb,
        &url,
        &[
            "--token-file",
            &wrong.display().to_string(),
            "status",
            "idle",
        ],
        &[],
    ));
    assert_eq!(wrong.0, Some(1));
    let expected = text(&sb.sup(&["status", "idle"]));
    let flag = text(&remote(
        &sb,
        &url,
        &[
            "--token-file",
            &token.display().to_string(),
            "status",
            "idle",
        ],
        &[],
    ));
    assert_eq!(flag, expected);
    let env = text(&remote(
        &sb,
        &url,
        &["status", "idle"],
        &[("SUP_TOKEN_FILE", &token.display().to_string())],
    ));
    assert_eq!(env, expected);
    // $SUP_URL does what --url does.
    let out = Command::new(sup_bin())
        .args(["status", "idle"])
        .current_dir(&sb.dir)
        .env("SUP_URL", &url)
        .env("SUP_TOKEN_FILE", &token)
        .env("SUP_CONFIG", sb.path("nonexistent.yaml"))
        .output()
        .expect("run sup");
    assert_eq!(text(&out), expected);
}

#[test]
fn without_a_token_changes_are_the_daemons_own_users_only() {
    let (sb, port) = start("api-no-token", "", TWO_JOBS);
    let pid = sb.wait_state("web", "running")["pid"].as_u64();
    let url = format!("http://127.0.0.1:{port}");
    // Another local user (when the test may become one) reads state, and nothing else.
    let nobody = |args: &[&str]| {
        Command::new("setpriv")
            .args([
                "--reuid=65534",
                "--regid=65534",
                "--clear-groups",
                sup_bin(),
                "--url",
            ])
            .arg(&url)
            .args(args)
            .current_dir("/")
            .env_remove("SUP_URL")
            .env_remove("SUP_TOKEN_FILE")
            .env("SUP_CONFIG", "/nonexistent/sup.yaml")
            .output()
    };
    match nobody(&["status", "web"]) {
        Ok(out) if out.status.success() => {
            for args in [&["stop", "web"][..], &["tail", "web"], &["shutdown"]] {
                let (code, _, err) = text(&nobody(args).expect("setpriv ran before"));
                assert_eq!(code, Some(1), "sup {args:?}: {err}");
                assert!(err.contains("refused to uid 65534"), "sup {args:?}: {err}");
            }
            assert_eq!(
                sb.instance("web")["pid"].as_u64(),
                pid,
                "nothing was stopped"
            );
        }
        other => eprintln!("skipped the other user's part: setpriv: {other:?}"),
    }
    // The daemon's own user may, as on the control socket.
    assert_eq!(get(port, "/api/v1/tail/web", None).0, 200);
    let (code, out, err) = text(&remote(&sb, &url, &["stop", "web"], &[]));
    assert_eq!((code, out.as_str()), (Some(0), "web: stopped\n"), "{err}");
}

#[test]
fn api_tail_events_and_clear() {
    let (_t, sb, port) = start_with_token(
        "api-events-clear",
        "  talk:\n    cmd: \"sh -c 'echo one; echo two; sleep 1000'\"\n    starttime: 0.1\n",
    );
    sb.wait_state("talk", "running");
    let (status, tail) = get_json(port, "/api/v1/tail?events=1&lines=50");
    assert_eq!(status, 200, "{tail}");
    let data = tail["data"].as_str().expect("data").to_string();
    assert!(data.contains("talk spawned"), "{data}");
    let (_, none) = get_json(port, "/api/v1/tail?events=1&lines=0");
    assert_eq!(none["data"], "");
    // Without a token the event log is not shown, as a job's output is not.
    let (refused, _) = get(port, "/api/v1/tail?events=1", None);
    assert_eq!(refused, 401);

    let mut events = Events::open(port, "/api/v1/tail?events=1&lines=0&follow=1");
    let (name, first) = events.next_event().expect("the (empty) tail");
    assert_eq!(
        (name.as_str(), &first["data"]),
        ("output", &Value::from(""))
    );

    sb.wait_for("its output", || sb.read("logs/talk.out") == "one\ntwo\n");
    let (status, cleared) = post(port, "/api/v1/clear/talk", "");
    assert_eq!(status, 200, "{cleared}");
    assert_eq!(cleared["outcomes"][0]["ok"], true, "{cleared}");
    assert_eq!(sb.read("logs/talk.out"), "");
    // The clear is an event, and the follower sees it.
    let mut seen = String::new();
    while !seen.contains("talk cleared") {
        let (_, next) = events.next_event().expect("the followed log");
        seen.push_str(next["data"].as_str().unwrap_or_default());
    }
    // The remote CLI's tail --events goes through the same endpoint.
    let token = _t.path("token");
    let out = remote(
        &sb,
        &format!("http://127.0.0.1:{port}"),
        &["tail", "--events", "-n", "100"],
        &[("SUP_TOKEN_FILE", &token.display().to_string())],
    );
    let (code, stdout, stderr) = text(&out);
    assert_eq!(code, Some(0), "{stderr}");
    assert!(stdout.contains("talk cleared"), "{stdout}");
}

#[test]
fn a_client_that_closes_after_its_request_is_not_taken_for_root() {
    // Sent whole and closed at once, a request is read when the client's socket is already
    // the kernel's (time-wait or orphaned, owned by uid 0): that must not pass for root.
    let (sb, port) = start("api-closed-client", "", TWO_JOBS);
    let pid = sb.wait_state("web", "running")["pid"].as_u64();
    let script = format!(
        "body='{{\"wait\":false}}'
         for i in $(seq 100); do
           exec 3<>/dev/tcp/127.0.0.1/{port} || exit 1
           printf 'POST /api/v1/stop/web HTTP/1.1\\r\\nContent-Length: %d\\r\\n\\r\\n%s' \
             ${{#body}} \"$body\" >&3
           exec 3>&-
           sleep 0.02
         done
         echo sent"
    );
    let out = Command::new("setpriv")
        .args(["--reuid=65534", "--regid=65534", "--clear-groups"])
        .args(["bash", "-c", &script])
        .current_dir("/")
        .output();
    match out {
        Ok(out) if out.status.success() => {
            assert_eq!(String::from_utf8_lossy(&out.stdout), "sent\n");
            // Answered after all of them: they were accepted, and served, before it.
            assert_eq!(get(port, "/healthz", None).0, 200);
            let web = sb.instance("web");
            assert_eq!(web["state"], "running", "{web}");
            assert_eq!(web["pid"].as_u64(), pid, "nothing was stopped");
            assert!(alive(pid.unwrap_or(0) as u32), "the job still runs");
        }
        other => eprintln!("skipped: setpriv: {other:?}"),
    }
}

#[test]
fn a_flood_of_event_streams_cannot_keep_a_health_probe_out() {
    let (sb, port) = start("api-stream-flood", "", TWO_JOBS);
    // Ready before the flood, so that /readyz's 200 below is the slot's, not web's start.
    sb.wait_state("web", "running");
    let mut streams = Vec::new();
    for _ in 0..300 {
        let mut s = connect(port);
        s.write_all(b"GET /api/v1/events HTTP/1.1\r\nHost: localhost\r\n\r\n")
            .expect("send");
        streams.push(s);
    }
    // Each learns its fate: a stream (200 and a snapshot) or refused at once (503).
    let (mut open, mut refused) = (0, 0);
    for s in &mut streams {
        let mut got = Vec::new();
        let mut buf = [0u8; 4096];
        let deadline = Instant::now() + PATIENCE;
        while !got.windows(4).any(|w| w == b"\r\n\r\n") && Instant::now() < deadline {
            match s.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => got.extend_from_slice(&buf[..n]),
            }
        }
        let head = String::from_utf8_lossy(&got);
        if head.starts_with("HTTP/1.1 200") {
            open += 1;
        } else if head.starts_with("HTTP/1.1 503") {
            refused += 1;
        }
    }
    assert!(open > 0 && refused > 0, "{open} streams, {refused} refused");
    assert!(open <= 128, "{open} streams: more than half the slots");
    // With every stream still open, a probe is answered.
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut last = 0;
    while Instant::now() < deadline {
        last = get(port, "/healthz", None).0;
        if last == 200 {
            break;
        }
    }
    assert_eq!(last, 200, "/healthz under {open} streams");
    assert_eq!(get(port, "/readyz", None).0, 200);
    drop(streams);
}
