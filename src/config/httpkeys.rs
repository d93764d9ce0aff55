//! `daemon.http`: where the HTTP interface listens and the token that guards it. Absent means
//! no HTTP at all. An address that is not loopback needs `token_file`: the check is here, so it
//! is a config error with a place like every other; reading the token is the daemon's (at
//! start, naming the file).

use std::net::SocketAddr;
use std::path::Path;

use super::resolve::{entries, keep, key_text, unknown_key, Sink};
use super::spec::{HttpSpec, TlsSpec};
use super::values::{self, Bad, Read};
use super::yaml::{Kind, Node};

pub const HTTP_KEYS: &[&str] = &["listen", "token_file", "tls"];
pub const TLS_KEYS: &[&str] = &["cert", "key"];

const AT: &str = "daemon.http";

/// `daemon.http`, or `None` with its errors in `sink`.
pub fn http(node: &Node, file: &str, base_dir: &Path, sink: &mut Sink) -> Option<HttpSpec> {
    let found = entries(node, "a map of HTTP settings", file, AT, sink)?;
    let before = sink.len();
    let mut listen: Option<Vec<(SocketAddr, (usize, usize))>> = None;
    let mut token_file = None;
    let mut tls = None;
    for (k, v) in found {
        let Some(key) = key_text(k, file, AT, sink) else {
            continue;
        };
        let path = format!("{AT}.{key}");
        let p = path.as_str();
        match key {
            "listen" => listen = keep(addresses(v), v, file, p, sink),
            "token_file" => {
                token_file = keep(values::path(v, base_dir), v, file, p, sink);
                if let Some(bad) = token_file.as_deref().and_then(|p| unready(p, "the token")) {
                    sink.warn(file, (v.line, v.col), p, bad);
                }
            }
            "tls" => tls = tls_keys(v, file, base_dir, sink),
            _ => unknown_key(k, key, HTTP_KEYS, file, p, sink),
        }
    }
    if sink.len() != before {
        return None;
    }
    let Some(listen) = listen else {
        let bad = Bad::new("`listen` is required: the address (or list of addresses) to serve on")
            .with_hint("listen: \"127.0.0.1:9273\"");
        sink.push(file, (node.line, node.col), AT, bad);
        return None;
    };
    if token_file.is_none() {
        if let Some((addr, at)) = listen.iter().find(|(a, _)| !a.ip().is_loopback()) {
            let bad = Bad::new(format!(
                "{addr} is not a loopback address: a `token_file` is required to listen on it"
            ))
            .with_hint("set daemon.http.token_file, or listen on 127.0.0.1 or [::1]");
            sink.push(file, *at, &format!("{AT}.listen"), bad);
            return None;
        }
    }
    Some(HttpSpec {
        listen: listen.into_iter().map(|(a, _)| a).collect(),
        token_file,
        tls,
    })
}

/// `daemon.http.tls`: `cert` and `key`, both PEM files, both required. Their contents are
/// read at start (`daemon::http::tls`), where a bad file stops the daemon naming it.
fn tls_keys(node: &Node, file: &str, base_dir: &Path, sink: &mut Sink) -> Option<TlsSpec> {
    const TLS: &str = "daemon.http.tls";
    let found = entries(node, "a map with `cert` and `key`", file, TLS, sink)?;
    let (mut cert, mut key) = (None, None);
    for (k, v) in found {
        let Some(name) = key_text(k, file, TLS, sink) else {
            continue;
        };
        let path = format!("{TLS}.{name}");
        match name {
            "cert" | "key" => {
                let read = keep(values::path(v, base_dir), v, file, &path, sink);
                if let Some(bad) = read.as_deref().and_then(|p| unready(p, "the PEM")) {
                    sink.warn(file, (v.line, v.col), &path, bad);
                }
                if name == "cert" {
                    cert = read;
                } else {
                    key = read;
                }
            }
            _ => unknown_key(k, name, TLS_KEYS, file, &path, sink),
        }
    }
    match (cert, key) {
        (Some(cert), Some(key)) => Some(TlsSpec { cert, key }),
        (cert, _) => {
            let missing = if cert.is_none() { "cert" } else { "key" };
            let bad = Bad::new(format!(
                "`{missing}` is required: the PEM file of the certificate (chain) and of its private key"
            ))
            .with_hint("tls: {cert: /etc/sup/cert.pem, key: /etc/sup/key.pem}");
            sink.push(file, (node.line, node.col), TLS, bad);
            None
        }
    }
}

/// Why a file read at start (the token, a TLS PEM: `holding` says which) will stop the
/// daemon's start, as far as its metadata tells: a warning, like a `workingdir` that does not
/// exist yet.
fn unready(path: &Path, holding: &str) -> Option<Bad> {
    let why = match std::fs::metadata(path) {
        Ok(m) if m.is_file() && m.len() > 0 => return None,
        Ok(m) if m.is_file() => "is empty".to_string(),
        Ok(_) => "is not a regular file".to_string(),
        Err(e) => format!("cannot be read: {e}"),
    };
    Some(Bad::new(format!(
        "{} {why}: the daemon will not start until it holds {holding}",
        path.display()
    )))
}

/// One address or a non-empty list of them, each with where it was written.
fn addresses(node: &Node) -> Read<Vec<(SocketAddr, (usize, usize))>> {
    let items: Vec<&Node> = match &node.kind {
        Kind::Seq(items) => items.iter().collect(),
        _ => vec![node],
    };
    if items.is_empty() {
        return Err(Bad::new(
            "expected an address or a list of addresses, found an empty list",
        ));
    }
    let mut out = Vec::with_capacity(items.len());
    for item in items {
        let at = (item.line, item.col);
        let text = item.text().unwrap_or_default();
        match text.parse::<SocketAddr>() {
            Ok(addr) => {
                if !out.iter().any(|(a, _)| *a == addr) {
                    out.push((addr, at));
                }
            }
            Err(_) => {
                let mut bad = Bad::new(format!(
                    "expected an IP address and port such as 127.0.0.1:9273 or [::1]:9273, found {}",
                    item.describe()
                ))
                .with_hint("host names are not resolved: write the address");
                bad.at = Some(at);
                return Err(bad);
            }
        }
    }
    Ok(out)
}
