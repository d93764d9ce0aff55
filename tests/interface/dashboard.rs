//! The dashboard (`GET /`) in a real browser: headless Chromium driven over the DevTools
//! protocol loads the page from a live daemon, reads its table, clicks its buttons; the
//! effects are checked in `/proc`. And the rules that keep other web sites out: the `Host`
//! check (DNS rebinding) and JSON-only POSTs (cross-site forms).

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::http::{exchange, start};
use crate::sandbox::{alive, kill, Sandbox, PATIENCE};

const JOBS: &str = "  web:\n    cmd: sleep 1000\n    starttime: 0.1\n    stoptime: 2\n  \
                    worker:\n    cmd: \"sh -c 'echo hello-from-worker; \
                    exec sleep 1000'\"\n    starttime: 0.1\n";

/// The first of these on PATH.
fn chromium() -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    for name in ["chromium", "chromium-browser", "google-chrome"] {
        for dir in std::env::split_paths(&path) {
            let p = dir.join(name);
            if p.is_file() {
                return Some(p);
            }
        }
    }
    None
}

/// A headless Chromium with one page, and a DevTools session on that page.
pub(crate) struct Browser {
    ws: tungstenite::WebSocket<TcpStream>,
    next_id: u64,
    /// Last, so the socket closes before the browser is killed.
    _child: Killed,
}

/// A child killed and reaped when dropped (also when the test panics).
struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl Browser {
    /// Chromium showing `url`, its profile and its stderr under `sb`. `None` (the caller
    /// says why it skips) when no Chromium is installed.
    pub(crate) fn open(sb: &Sandbox, url: &str, size: (u32, u32)) -> Option<Browser> {
        let program = chromium()?;
        let profile = sb.path("chromium-profile");
        let _ = std::fs::remove_dir_all(&profile);
        std::fs::create_dir_all(&profile).expect("profile dir");
        let stderr = std::fs::File::create(sb.path("chromium.err")).expect("stderr file");
        let child = Killed(
            Command::new(program)
                .args(chromium_flags(&profile))
                .arg(format!("--window-size={},{}", size.0, size.1))
                .arg("--remote-debugging-port=0")
                .arg(url)
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(stderr)
                .spawn()
                .expect("start chromium"),
        );
        let mut browser = Browser {
            ws: Browser::connect_page(sb, &profile),
            next_id: 0,
            _child: child,
        };
        browser.call("Runtime.enable", json!({}));
        browser.wait(
            "the dashboard loaded",
            &format!(
                "location.href === {} && document.readyState === 'complete'",
                json!(url)
            ),
            "location.href + ' ' + document.readyState",
        );
        Some(browser)
    }

    /// Chromium writes the DevTools port into `DevToolsActivePort` in its profile; the page
    /// target's websocket is listed by `/json/list`.
    fn connect_page(sb: &Sandbox, profile: &Path) -> tungstenite::WebSocket<TcpStream> {
        let mut port = None;
        sb.wait_for("chromium's DevTools port", || {
            port = std::fs::read_to_string(profile.join("DevToolsActivePort"))
                .ok()
                .and_then(|s| s.lines().next().and_then(|l| l.trim().parse::<u16>().ok()));
            port.is_some()
        });
        let port = port.unwrap_or(0);
        let mut ws_url = None;
        sb.wait_for("chromium's page target", || {
            let Ok(mut s) = TcpStream::connect(("127.0.0.1", port)) else {
                return false;
            };
            let _ = s.set_read_timeout(Some(PATIENCE));
            let _ = s.write_all(
                b"GET /json/list HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n",
            );
            // Read up to the body's length: DevTools keeps the connection open.
            let mut out = Vec::new();
            let mut buf = [0u8; 4096];
            let body = loop {
                let text = String::from_utf8_lossy(&out).into_owned();
                if let Some((head, body)) = text.split_once("\r\n\r\n") {
                    let len = head.lines().find_map(|l| {
                        let (k, v) = l.split_once(':')?;
                        k.eq_ignore_ascii_case("content-length")
                            .then(|| v.trim().parse::<usize>().ok())?
                    });
                    if len.is_some_and(|n| body.len() >= n) {
                        break body.to_string();
                    }
                }
                match s.read(&mut buf) {
                    Ok(0) | Err(_) => break String::new(),
                    Ok(n) => out.extend_from_slice(&buf[..n]),
                }
            };
            let body = body.as_str();
            let targets: Value = serde_json::from_str(body).unwrap_or(Value::Null);
            ws_url = targets.as_array().and_then(|list| {
                list.iter()
                    .find(|t| t["type"] == "page")
                    .and_then(|t| t["webSocketDebuggerUrl"].as_str().map(str::to_string))
            });
            ws_url.is_some()
        });
        let ws_url = ws_url.unwrap_or_default();
        let stream = TcpStream::connect(("127.0.0.1", port)).expect("connect to DevTools");
        stream
            .set_read_timeout(Some(PATIENCE))
            .expect("read timeout");
        let (ws, _) = tungstenite::client(ws_url.as_str(), stream).expect("DevTools websocket");
        ws
    }

    /// One DevTools command and its result (events that come first are skipped).
    fn call(&mut self, method: &str, params: Value) -> Value {
        self.next_id += 1;
        let id = self.next_id;
        let msg = json!({ "id": id, "method": method, "params": params });
        self.ws
            .send(tungstenite::Message::text(msg.to_string()))
            .expect("send to DevTools");
        let deadline = Instant::now() + PATIENCE;
        while Instant::now() < deadline {
            let Ok(tungstenite::Message::Text(text)) = self.ws.read() else {
                continue;
            };
            let v: Value = serde_json::from_str(text.as_str()).unwrap_or(Value::Null);
            if v["id"] == id {
                assert!(v.get("error").is_none(), "{method}: {v}");
                return v["result"].clone();
            }
        }
        panic!("no answer from DevTools to {method}");
    }

    /// The value of a JS expression in the page (promises awaited).
    pub(crate) fn eval(&mut self, expr: &str) -> Value {
        let r = self.call(
            "Runtime.evaluate",
            json!({ "expression": expr, "returnByValue": true, "awaitPromise": true }),
        );
        if let Some(e) = r.get("exceptionDetails") {
            panic!("{expr}: {e}");
        }
        r["result"]["value"].clone()
    }

    /// Evaluate `expr` until it is `true`, within PATIENCE; the last value of `show` if not.
    pub(crate) fn wait(&mut self, what: &str, expr: &str, show: &str) {
        let deadline = Instant::now() + PATIENCE;
        // Not there yet (the page still loading, a row not made) is not an error.
        let guarded =
            format!("(() => {{ try {{ return ({expr}); }} catch (e) {{ return false; }} }})()");
        loop {
            if self.eval(&guarded) == Value::Bool(true) {
                return;
            }
            if Instant::now() > deadline {
                panic!("the page never showed {what}: {}", self.eval(show));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// A PNG of the page as it is now.
    pub(crate) fn screenshot(&mut self) -> Vec<u8> {
        let r = self.call("Page.captureScreenshot", json!({ "format": "png" }));
        decode_base64(r["data"].as_str().unwrap_or_default())
    }
}

/// Headless, no sandbox (tests run as root), and nothing that talks to the network.
fn chromium_flags(profile: &Path) -> Vec<String> {
    [
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--no-default-browser-check",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--disable-extensions",
        "--disable-dev-shm-usage",
        "--hide-scrollbars",
    ]
    .iter()
    .map(|s| s.to_string())
    .chain([format!("--user-data-dir={}", profile.display())])
    .collect()
}

fn decode_base64(text: &str) -> Vec<u8> {
    let value = |c: u8| -> Option<u32> {
        Some(match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            _ => return None,
        } as u32)
    };
    let digits: Vec<u32> = text.bytes().filter_map(value).collect();
    let mut out = Vec::with_capacity(digits.len() * 3 / 4);
    for chunk in digits.chunks(4) {
        let n = chunk
            .iter()
            .enumerate()
            .fold(0u32, |n, (i, d)| n | d << (18 - 6 * i));
        for i in 0..chunk.len().saturating_sub(1) {
            out.push((n >> (16 - 8 * i)) as u8);
        }
    }
    out
}

/// JS: the text of `cell` in the row of instance `name` (null without that row).
fn cell(name: &str, cell: &str) -> String {
    format!(
        "((document.querySelector('tr[data-name=\"{name}\"] .{cell}') || {{}}).textContent || null)"
    )
}

const SHOW: &str = "JSON.stringify({conn: document.getElementById('conn').textContent, \
                    flash: document.getElementById('flash').textContent, \
                    rows: [...document.querySelectorAll('#rows tr')].map(r => r.innerText)})";

fn skip() {
    println!("skipping the browser test: chromium is not on PATH (make test-deps installs it)");
}

#[test]
fn the_dashboard_follows_crashes_and_stops_jobs_live() {
    let (sb, port) = start("dash-live", "", JOBS);
    sb.wait_state("web", "running");
    sb.wait_state("worker", "running");
    let web = sb.pid("web").expect("web's pid");
    let Some(mut b) = Browser::open(&sb, &format!("http://127.0.0.1:{port}/"), (1200, 800)) else {
        return skip();
    };
    b.wait(
        "both jobs running",
        &format!(
            "{} === 'running' && {} === 'running' && {} === '{web}'",
            cell("web", "state"),
            cell("worker", "state"),
            cell("web", "pid")
        ),
        SHOW,
    );
    b.wait(
        "the live stream",
        "document.getElementById('conn').textContent === 'live'",
        SHOW,
    );
    // The policy holds: a script the page did not ship does not run.
    let injected = b.eval(
        "(() => { const s = document.createElement('script'); s.textContent = 'window.injected = 1'; \
         document.body.appendChild(s); return window.injected === undefined; })()",
    );
    assert_eq!(injected, Value::Bool(true), "an injected inline script ran");

    // A crash reaches the row through the events stream: no reload (the mark stays).
    b.eval("window.mark = 'same page'");
    kill(web, 9);
    b.wait(
        "web restarted with a new pid",
        &format!(
            "{} === 'running' && {} !== '{web}' && {} === '1' && window.mark === 'same page'",
            cell("web", "state"),
            cell("web", "pid"),
            cell("web", "restarts")
        ),
        SHOW,
    );
    let web2 = sb.pid("web").expect("web's new pid");
    assert_ne!(web2, web);
    assert_eq!(b.eval(&cell("web", "pid")), Value::String(web2.to_string()));
    let events = b.eval("document.getElementById('event-list').textContent");
    assert!(
        events.as_str().is_some_and(|e| e.contains("web: exited")),
        "{events}"
    );

    // A row's click shows its output.
    b.eval("document.querySelector('tr[data-name=\"worker\"] .name').click()");
    b.wait(
        "the worker's output",
        "document.getElementById('log').textContent.includes('hello-from-worker')",
        "document.getElementById('log').textContent",
    );

    // Stop, from the button: the process is gone and the row says so.
    b.eval("document.querySelector('tr[data-name=\"web\"] button[data-act=\"stop\"]').click()");
    b.wait(
        "web stopped",
        &format!(
            "{} === 'stopped' && {} === '—' && document.getElementById('flash').textContent.startsWith('web: ')",
            cell("web", "state"),
            cell("web", "pid")
        ),
        SHOW,
    );
    assert!(!alive(web2), "web's process {web2} is still in /proc");
    assert!(!Path::new(&format!("/proc/{web2}")).exists() || !alive(web2));
    assert_eq!(sb.state("web"), "stopped");
    let flash = b.eval("document.getElementById('flash').className");
    assert_eq!(flash, Value::String("ok".into()));
    // And start again.
    b.eval("document.querySelector('tr[data-name=\"web\"] button[data-act=\"start\"]').click()");
    b.wait(
        "web running again",
        &format!("{} === 'running'", cell("web", "state")),
        SHOW,
    );
    assert_eq!(sb.state("web"), "running");
    // It renders: a PNG of the page (kept in the sandbox to look at when this fails).
    let png = b.screenshot();
    assert!(png.starts_with(b"\x89PNG\r\n"), "not a PNG");
    std::fs::write(sb.path("dashboard.png"), png).expect("write the screenshot");
}

#[test]
fn the_dashboard_reconnects_when_the_daemon_comes_back() {
    let (mut sb, port) = start("dash-reconnect", "", JOBS);
    sb.wait_state("web", "running");
    let Some(mut b) = Browser::open(&sb, &format!("http://127.0.0.1:{port}/"), (1200, 800)) else {
        return skip();
    };
    b.wait(
        "the live stream",
        &format!(
            "document.getElementById('conn').textContent === 'live' && {} === 'running'",
            cell("web", "state")
        ),
        SHOW,
    );
    let old = sb.pid("web").expect("web's pid");
    b.eval("window.mark = 'same page'");
    // The daemon goes away: the page says so and keeps trying.
    sb.sup_ok(&["shutdown"]);
    sb.wait_daemon_exit();
    b.wait(
        "the lost stream",
        "document.getElementById('conn').textContent.startsWith('disconnected: retrying in')",
        SHOW,
    );
    // A new daemon on the same port: the page finds it by itself, new pids and all.
    sb.write(
        "sup.yaml",
        &format!("daemon:\n  http:\n    listen: \"127.0.0.1:{port}\"\nprograms:\n{JOBS}"),
    );
    sb.start();
    sb.wait_state("web", "running");
    let new = sb.pid("web").expect("web's new pid");
    assert_ne!(new, old);
    b.wait(
        "the stream back, with the new daemon's jobs",
        &format!(
            "document.getElementById('conn').textContent === 'live' && {} === '{new}' && \
             window.mark === 'same page'",
            cell("web", "pid")
        ),
        SHOW,
    );
}

#[test]
fn with_a_token_the_dashboard_asks_for_it_and_keeps_it_out_of_urls() {
    let sb0 = Sandbox::new("dash-token-file");
    sb0.write("token", "s3cret-dash\n");
    let (sb, port) = start(
        "dash-token",
        &format!("    token_file: {}\n", sb0.path("token").display()),
        JOBS,
    );
    sb.wait_state("web", "running");
    let Some(mut b) = Browser::open(&sb, &format!("http://localhost:{port}/"), (1200, 800)) else {
        return skip();
    };
    b.wait(
        "the token prompt",
        "!document.getElementById('auth').hidden && \
         document.getElementById('auth-msg').textContent.includes('needs an access token') && \
         document.querySelectorAll('#rows tr').length === 0",
        SHOW,
    );
    let submit = |b: &mut Browser, token: &str| {
        b.eval(&format!(
            "document.getElementById('token').value = '{token}'; \
             document.getElementById('auth-form').requestSubmit()"
        ));
    };
    submit(&mut b, "wrong");
    b.wait(
        "the refusal",
        "!document.getElementById('auth').hidden && \
         document.getElementById('auth-msg').textContent.includes('refused this token')",
        SHOW,
    );
    submit(&mut b, "s3cret-dash");
    b.wait(
        "the jobs, once the token is in",
        &format!(
            "{} === 'running' && document.getElementById('conn').textContent === 'live' && \
             document.getElementById('auth').hidden",
            cell("web", "state")
        ),
        SHOW,
    );
    assert_eq!(
        b.eval("sessionStorage.getItem('sup-token')"),
        Value::String("s3cret-dash".into())
    );
    // Actions carry the token too.
    let web = sb.pid("web").expect("web's pid");
    b.eval("document.querySelector('tr[data-name=\"web\"] button[data-act=\"stop\"]').click()");
    b.wait(
        "web stopped",
        &format!("{} === 'stopped'", cell("web", "state")),
        SHOW,
    );
    assert!(!alive(web));
    // The token went in headers only: no URL the daemon saw holds it (refusals are logged
    // with their path).
    assert!(!sb.log().contains("s3cret-dash"), "{}", sb.log());
}

/// A raw request's status and head.
fn status_of(answer: &str) -> u16 {
    answer
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0)
}

#[test]
fn other_sites_cannot_reach_or_drive_the_api_from_a_browser() {
    let (sb, port) = start("dash-csrf", "", JOBS);
    sb.wait_state("web", "running");
    let web = sb.pid("web").expect("web's pid");

    // The page and its headers.
    let page = exchange(port, b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n");
    assert_eq!(status_of(&page), 200, "{page}");
    for header in [
        "Content-Type: text/html; charset=utf-8\r\n",
        "Content-Security-Policy: default-src 'self'; script-src 'sha256-",
        "X-Content-Type-Options: nosniff\r\n",
        "X-Frame-Options: DENY\r\n",
    ] {
        assert!(page.contains(header), "{header} missing: {page}");
    }
    assert!(!page.contains("http://") && !page.contains("https://"));

    // What a cross-site form or a no-cors fetch can send: a form encoding, text/plain, or
    // nothing. None of them stops anything.
    for ct in [
        "Content-Type: application/x-www-form-urlencoded\r\n",
        "Content-Type: text/plain\r\n",
        "Content-Type: multipart/form-data; boundary=x\r\n",
        "",
    ] {
        let raw = format!(
            "POST /api/v1/stop/web HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nOrigin: http://evil.example\r\n{ct}Content-Length: 0\r\n\r\n"
        );
        let answer = exchange(port, raw.as_bytes());
        assert_eq!(status_of(&answer), 415, "{ct}: {answer}");
        assert!(
            answer.contains("Content-Type: application/json"),
            "{answer}"
        );
    }
    // A JSON POST from another origin is preflighted first; the preflight is never approved.
    let preflight = exchange(
        port,
        b"OPTIONS /api/v1/stop/web HTTP/1.1\r\nHost: 127.0.0.1\r\nOrigin: http://evil.example\r\n\
          Access-Control-Request-Method: POST\r\nAccess-Control-Request-Headers: content-type\r\n\r\n",
    );
    assert_eq!(status_of(&preflight), 405, "{preflight}");
    assert!(!preflight
        .to_ascii_lowercase()
        .contains("access-control-allow"));
    assert_eq!(sb.pid("web"), Some(web), "web was stopped");
    assert!(alive(web));

    // DNS rebinding: a name that resolved to 127.0.0.1 is not this daemon's name.
    for host in [
        "evil.example",
        "evil.example:9273",
        "127.0.0.1.evil.example",
    ] {
        for path in ["/", "/api/v1/status", "/metrics"] {
            let raw = format!("GET {path} HTTP/1.1\r\nHost: {host}\r\n\r\n");
            let answer = exchange(port, raw.as_bytes());
            assert_eq!(status_of(&answer), 403, "{host} {path}: {answer}");
            assert!(answer.contains("DNS rebinding"), "{answer}");
        }
    }
    for host in [
        "localhost",
        &format!("localhost:{port}"),
        &format!("127.0.0.1:{port}"),
    ] {
        let raw = format!("GET /api/v1/status HTTP/1.1\r\nHost: {host}\r\n\r\n");
        assert_eq!(status_of(&exchange(port, raw.as_bytes())), 200, "{host}");
    }
    // The JSON POST itself works (it is what the page and sup --url send).
    let raw = "POST /api/v1/stop/web HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\r\n{}";
    let answer = exchange(port, raw.as_bytes());
    assert_eq!(status_of(&answer), 200, "{answer}");
    assert!(!alive(web));
    // So does what `curl -X POST` sends: no body, no type, no Origin (no browser's POST).
    let bare = exchange(
        port,
        b"POST /api/v1/start/web HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n",
    );
    assert_eq!(status_of(&bare), 200, "{bare}");
    assert_eq!(sb.state("web"), "running");
}

#[test]
fn screenshot_decoding_round_trips() {
    // The helper that turns DevTools' base64 into PNG bytes.
    assert_eq!(decode_base64("Zm9vYmFy"), b"foobar");
    assert_eq!(decode_base64("Zm8="), b"fo");
    assert_eq!(decode_base64("Zg=="), b"f");
}
