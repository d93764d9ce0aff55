//! The bundled `sup.d/` demo, as `make run` supervises it, left alone for a minute: every job
//! reaches the state its comment promises and stays there, and the event log holds no warning
//! or error except the crashes of `flaky`, the one job that fails on purpose.

use std::fs;
use std::io::Read;
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::time::{Duration, Instant};

use crate::sandbox::{wait_until, Sandbox, PATIENCE};

/// A port nobody listens on now, so that the demo's fixed ports cannot meet a demo that a
/// person (or another test run) has going on this machine.
fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

/// `sup.d/` copied into the sandbox, its two TCP ports moved to free ones; returns db's.
fn copy_demo(sb: &Sandbox) -> u16 {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("sup.d");
    let db_port = free_port();
    let (db, api) = (db_port.to_string(), free_port().to_string());
    let mut files = 0;
    for entry in fs::read_dir(&src).expect("sup.d").flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let text = fs::read_to_string(entry.path()).expect("read a demo file");
        assert!(
            name == "sup.yaml" || text.contains("15432") == (name == "db.job" || name == "api.job"),
            "{name}: the demo's ports moved; update this test"
        );
        sb.write(
            &format!("sup.d/{name}"),
            &text.replace("15432", &db).replace("18080", &api),
        );
        files += 1;
    }
    assert!(files >= 6, "the demo has {files} files");
    db_port
}

/// db accepts every connection and closes it: a client reads EOF. A listener that never
/// accepts would leave the client waiting, and its backlog full within minutes.
fn db_accepts(port: u16, times: usize) {
    for i in 0..times {
        let addr = std::net::SocketAddr::from(([127, 0, 0, 1], port));
        let mut c = TcpStream::connect_timeout(&addr, PATIENCE)
            .unwrap_or_else(|e| panic!("connection {i} to db: {e}"));
        c.set_read_timeout(Some(PATIENCE)).expect("read timeout");
        let mut buf = [0u8; 16];
        assert!(
            matches!(c.read(&mut buf), Ok(0)),
            "connection {i}: db did not accept and close it"
        );
    }
}

#[test]
fn the_bundled_demo_stays_green_for_a_minute() {
    let mut sb = Sandbox::new("demo");
    let db_port = copy_demo(&sb);
    sb.config = "sup.d".to_string();
    let started = Instant::now();
    sb.start();

    let steady = ["db", "api", "web", "worker:0", "worker:1"];
    for name in steady.iter().chain(&["flaky"]) {
        sb.wait_state(name, "running");
    }
    let pids: Vec<_> = steady.iter().map(|n| sb.pid(n)).collect();

    // A minute: flaky crashes every 20 s, tick runs once a minute, and db's backlog would have
    // filled long before (api's health check connects to it every 5 s).
    let minute = Duration::from_secs(60) + PATIENCE;
    wait_until(
        "a minute of the demo: tick's first run and flaky's second crash",
        minute,
        &mut || {
            let log = sb.log();
            started.elapsed() >= Duration::from_secs(60)
                && log.contains("tick run finished")
                && log.matches("flaky exited code=3").count() >= 2
        },
        || sb.log(),
    );

    for (name, pid) in steady.iter().zip(&pids) {
        let st = sb.instance(name);
        assert_eq!(st["state"], "running", "{name}: {st}\n{}", sb.log());
        assert_eq!(sb.pid(name), *pid, "{name} was restarted:\n{}", sb.log());
        assert_eq!(st["restarts"], 0, "{name}: {st}");
    }
    assert_eq!(sb.instance("api")["health"], "healthy");
    // Between two runs (or inside its few milliseconds of one).
    sb.wait_state("tick", "scheduled");
    let flaky = sb.instance("flaky");
    assert!(
        flaky["restarts"].as_u64().unwrap_or(0) >= 2,
        "flaky: {flaky}"
    );
    assert!(sb.log().contains("tick run finished in"), "{}", sb.log());
    // More connections than db's listen backlog (16).
    db_accepts(db_port, 40);

    sb.sup_ok(&["shutdown"]);
    assert_eq!(sb.wait_daemon_exit(), Some(0), "{}", sb.log());
    let log = sb.log();
    let bad: Vec<&str> = log
        .lines()
        .filter(|l| {
            let mut words = l.split_whitespace().skip(1);
            let level = words.next().unwrap_or("");
            let crash =
                words.next() == Some("flaky") && l.ends_with("flaky exited code=3 (unexpected)");
            (level == "WARN" || level == "ERROR") && !crash
        })
        .collect();
    assert!(bad.is_empty(), "unexpected warnings:\n{}", bad.join("\n"));
}
