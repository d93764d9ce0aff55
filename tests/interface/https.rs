//! `daemon.http.tls`: HTTPS on the daemon's listeners (curl and `sup --url https://…` with a
//! self-signed certificate made here by openssl), what a client that does not speak TLS or
//! stalls the handshake gets, and the start-time errors for bad PEM files.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::sandbox::{alive, sup_bin, Sandbox, PATIENCE};

const JOBS: &str = "  web:\n    cmd: sleep 1000\n    starttime: 0.1\n    stoptime: 2\n";

/// A self-signed P-256 certificate for 127.0.0.1 and localhost, as `cert.pem` and `key.pem`
/// in `sb` (`prefix` prepended). False when openssl is missing.
fn make_cert(sb: &Sandbox, prefix: &str) -> bool {
    let out = Command::new("openssl")
        .args([
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-days",
            "2",
            "-subj",
            "/CN=localhost",
            "-addext",
            "subjectAltName=IP:127.0.0.1,DNS:localhost",
            "-keyout",
        ])
        .arg(sb.path(&format!("{prefix}key.pem")))
        .arg("-out")
        .arg(sb.path(&format!("{prefix}cert.pem")))
        .output();
    match out {
        Ok(o) if o.status.success() => true,
        Ok(o) => panic!("openssl: {}", String::from_utf8_lossy(&o.stderr)),
        Err(_) => false,
    }
}

fn tls_config(sb: &Sandbox) -> String {
    format!(
        "daemon:\n  http:\n    listen: \"127.0.0.1:0\"\n    tls:\n      cert: {}\n      key: {}\nprograms:\n{JOBS}",
        sb.path("cert.pem").display(),
        sb.path("key.pem").display()
    )
}

/// The port of a daemon serving HTTPS, from its event log.
fn https_port(sb: &Sandbox) -> u16 {
    let mut port = None;
    sb.wait_for("the HTTPS port in the event log", || {
        port = sb
            .log()
            .lines()
            .find_map(|l| l.split("serving HTTPS on 127.0.0.1:").nth(1))
            .and_then(|p| p.trim().parse().ok());
        port.is_some()
    });
    port.unwrap_or(0)
}

/// `curl --cacert` over HTTPS: status code and body.
fn curl(sb: &Sandbox, url: &str, extra: &[&str]) -> (u16, String) {
    let out = Command::new("curl")
        .args(["-s", "-m", "20", "-w", "\n%{http_code}", "--cacert"])
        .arg(sb.path("cert.pem"))
        .args(extra)
        .arg(url)
        .output()
        .expect("run curl");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let (body, code) = text.rsplit_once('\n').unwrap_or(("", ""));
    (code.trim().parse().unwrap_or(0), body.to_string())
}

fn remote(sb: &Sandbox, url: &str, args: &[&str], ca: Option<&str>) -> (bool, String, String) {
    let mut cmd = Command::new(sup_bin());
    cmd.arg("--url")
        .arg(url)
        .args(args)
        .current_dir(&sb.dir)
        .env_remove("SUP_URL")
        .env_remove("SUP_TOKEN_FILE")
        .env_remove("SUP_CA_FILE")
        .env("SUP_CONFIG", sb.path("nonexistent.yaml"));
    if let Some(ca) = ca {
        cmd.env("SUP_CA_FILE", sb.path(ca));
    }
    let out = cmd.output().expect("run sup");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// A daemon serving HTTPS with a fresh self-signed certificate, its job running; `None`
/// without openssl.
fn tls_daemon(name: &str) -> Option<(Sandbox, u16)> {
    let mut sb = Sandbox::new(name);
    if !make_cert(&sb, "") {
        return None;
    }
    sb.write("sup.yaml", &tls_config(&sb));
    sb.start();
    let port = https_port(&sb);
    sb.wait_state("web", "running");
    Some((sb, port))
}

fn skip() {
    println!("skipping the HTTPS test: openssl is not on PATH (make test-deps)");
}

#[test]
fn https_serves_curl_and_the_remote_cli_with_a_self_signed_certificate() {
    let Some((sb, port)) = tls_daemon("https-basic") else {
        return skip();
    };
    let base = format!("https://127.0.0.1:{port}");

    let (code, metrics) = curl(&sb, &format!("{base}/metrics"), &[]);
    assert_eq!(code, 200, "{metrics}");
    assert!(
        metrics
            .contains("sup_instance_state{program=\"web\",instance=\"web\",state=\"running\"} 1"),
        "{metrics}"
    );
    let (code, status) = curl(&sb, &format!("{base}/api/v1/status"), &[]);
    assert_eq!(code, 200, "{status}");
    let status: Value = serde_json::from_str(&status).expect("JSON");
    assert_eq!(status[0]["pid"].as_u64(), sb.pid("web").map(u64::from));
    // The name in the certificate, too; and the dashboard.
    let (code, page) = curl(&sb, &format!("https://localhost:{port}/"), &[]);
    assert_eq!(code, 200);
    assert!(page.contains("<title>sup</title>"));

    // The remote CLI trusts the certificate with --ca-file ($SUP_CA_FILE here) ...
    let (ok, out, err) = remote(&sb, &base, &["status"], Some("cert.pem"));
    assert!(ok, "{err}");
    assert!(out.contains("web") && out.contains("running"), "{out}");
    // ... and not without it: the built-in roots do not know a self-signed certificate.
    let (ok, _, err) = remote(&sb, &base, &["status"], None);
    assert!(!ok);
    assert!(
        err.contains("TLS handshake failed") && err.contains("--ca-file"),
        "{err}"
    );
    // Plain HTTP to it says what to use instead.
    let (ok, _, err) = remote(&sb, &format!("http://127.0.0.1:{port}"), &["status"], None);
    assert!(!ok);
    assert!(err.contains("use an https:// URL"), "{err}");
    // A certificate that is not the daemon's is refused as well.
    assert!(make_cert(&sb, "other-"));
    let (ok, _, err) = remote(&sb, &base, &["status"], Some("other-cert.pem"));
    assert!(!ok, "trusted a certificate that is not the daemon's");
    assert!(err.contains("certificate"), "{err}");

    // A stop over HTTPS ends the process.
    let web = sb.pid("web").expect("web's pid");
    let (ok, out, err) = remote(&sb, &base, &["stop", "web"], Some("cert.pem"));
    assert!(ok, "{err}");
    assert!(out.contains("web: stopped"), "{out}");
    assert!(!alive(web));
    assert_eq!(sb.state("web"), "stopped");
    // A POST from curl, JSON as every POST must be.
    let (code, body) = curl(
        &sb,
        &format!("{base}/api/v1/start/web"),
        &["-X", "POST", "-H", "Content-Type: application/json"],
    );
    assert_eq!(code, 200, "{body}");
    sb.wait_state("web", "running");
}

#[test]
fn https_refuses_plain_http_and_cuts_off_a_stalled_handshake() {
    let Some((sb, port)) = tls_daemon("https-hostile") else {
        return skip();
    };

    // Plain HTTP to the TLS port: no HTTP answer, and the connection is closed promptly.
    let mut s = TcpStream::connect(("127.0.0.1", port)).expect("connect");
    s.set_read_timeout(Some(PATIENCE)).expect("timeout");
    s.write_all(b"GET /api/v1/status HTTP/1.1\r\nHost: localhost\r\n\r\n")
        .expect("send");
    let t0 = Instant::now();
    let mut answer = Vec::new();
    let read = s.read_to_end(&mut answer);
    assert!(
        read.is_ok() || t0.elapsed() < Duration::from_secs(5),
        "{read:?}"
    );
    assert!(t0.elapsed() < Duration::from_secs(5), "not closed promptly");
    assert!(!String::from_utf8_lossy(&answer).contains("HTTP/1.1"));

    // A client that starts a handshake (a record header) and says no more is cut off at
    // the head deadline (5 s from its first byte); meanwhile the daemon serves others.
    let mut stalled = TcpStream::connect(("127.0.0.1", port)).expect("connect");
    stalled.set_read_timeout(Some(PATIENCE)).expect("timeout");
    stalled
        .write_all(&[0x16, 0x03, 0x01, 0x02, 0x00])
        .expect("send");
    let t0 = Instant::now();
    let base = format!("https://127.0.0.1:{port}");
    let (code, _) = curl(&sb, &format!("{base}/healthz"), &[]);
    assert_eq!(
        code, 200,
        "the daemon stopped serving during a stalled handshake"
    );
    let (ok, _, err) = remote(&sb, &base, &["status"], Some("cert.pem"));
    assert!(ok, "{err}");
    let mut rest = Vec::new();
    let _ = stalled.read_to_end(&mut rest);
    let waited = t0.elapsed();
    assert!(
        waited >= Duration::from_secs(4) && waited < Duration::from_secs(9),
        "a stalled handshake was closed after {waited:?}"
    );
    // Still serving.
    let (code, _) = curl(&sb, &format!("{base}/healthz"), &[]);
    assert_eq!(code, 200);
}

#[test]
fn bad_certificate_or_key_files_stop_the_start_naming_the_file() {
    let sb = Sandbox::new("https-bad");
    if !make_cert(&sb, "") || !make_cert(&sb, "other-") {
        return skip();
    }
    sb.write("garbage.pem", "not a certificate\n");
    let cases = [
        (
            "missing.pem",
            "key.pem",
            "unable to read the TLS certificate file",
            "missing.pem",
        ),
        (
            "garbage.pem",
            "key.pem",
            "holds no PEM certificate",
            "garbage.pem",
        ),
        (
            "cert.pem",
            "garbage.pem",
            "holds no PEM private key",
            "garbage.pem",
        ),
        (
            "cert.pem",
            "cert.pem",
            "holds no PEM private key",
            "cert.pem",
        ),
        (
            "cert.pem",
            "other-key.pem",
            "does not match the certificate",
            "other-key.pem",
        ),
    ];
    for (cert, key, says, names) in cases {
        sb.write(
            "sup.yaml",
            &format!(
                "daemon:\n  http:\n    listen: \"127.0.0.1:0\"\n    tls: {{cert: {}, key: {}}}\nprograms:\n{JOBS}",
                sb.path(cert).display(),
                sb.path(key).display()
            ),
        );
        let out = sb.run_second_daemon();
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{cert} {key}: started");
        assert!(err.contains(says), "{cert} {key}: {err}");
        assert!(err.contains(&sb.path(names).display().to_string()), "{err}");
    }
    // A tls map without its key is a config error with a place.
    sb.write(
        "sup.yaml",
        &format!("daemon:\n  http:\n    listen: \"127.0.0.1:0\"\n    tls: {{cert: c.pem}}\nprograms:\n{JOBS}"),
    );
    let out = sb.run_second_daemon();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        err.contains("daemon.http.tls") && err.contains("`key` is required"),
        "{err}"
    );
}
