//! What a browser could be made to send, refused before a request means anything.
//!
//! - **DNS rebinding.** A page from `evil.example` whose name is made to resolve to
//!   127.0.0.1 reaches a loopback listener as a same-origin site and can read the answers.
//!   Its requests carry `Host: evil.example`, so on a loopback listener a `Host` that is not
//!   an IP literal or `localhost` is refused (403). A request without `Host` (HTTP/1.0 tools)
//!   passes: a browser always sends one.
//! - **Cross-site requests (CSRF).** Any page the user visits may POST to 127.0.0.1 (a form,
//!   or `fetch` with `mode: "no-cors"`). Such requests can only carry a CORS-safelisted
//!   `Content-Type` (`text/plain`, form encodings) and headers, and always an `Origin`. So a
//!   `POST` to `/api/v1/` needs `Content-Type: application/json` (else 415): a cross-origin
//!   request with it is preflighted with `OPTIONS`, which the daemon never approves (a 405
//!   without any `Access-Control-Allow-*` header), so the browser never sends the POST. Two
//!   kinds of POST no page can make pass too: one with the daemon's bearer token (a secret
//!   no browser attaches by itself), and one with no body, no `Content-Type` and no `Origin`
//!   (`curl -X POST`; every browser POST has an `Origin`).
//!
//! Pure functions of the request, so unit tests cover every case.

use std::net::{IpAddr, SocketAddr};

use super::request::{Method, Request};

/// Why a request is refused, and with what status.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refused {
    pub status: u16,
    pub message: String,
}

/// The `Host` check, for a connection accepted on `local`.
pub fn check_host(req: &Request, local: Option<SocketAddr>) -> Result<(), Refused> {
    let loopback = local.is_none_or(|a| a.ip().is_loopback());
    let Some(host) = req.host.as_deref() else {
        return Ok(());
    };
    if !loopback || host_is_local(host) {
        return Ok(());
    }
    Err(Refused {
        status: 403,
        message: format!(
            "the Host header {host:?} is not an IP address or localhost: a loopback listener \
             answers only requests for itself (DNS rebinding)"
        ),
    })
}

/// `127.0.0.1`, `127.0.0.1:9273`, `[::1]:9273`, `localhost`, `localhost:9273` (and any IP
/// literal: the listener may be bound to every address).
pub fn host_is_local(host: &str) -> bool {
    let host = host.trim();
    let name = if let Some(rest) = host.strip_prefix('[') {
        // `[v6]` or `[v6]:port`
        let Some((addr, after)) = rest.split_once(']') else {
            return false;
        };
        if !(after.is_empty() || after.strip_prefix(':').is_some_and(is_port)) {
            return false;
        }
        return addr.parse::<std::net::Ipv6Addr>().is_ok();
    } else {
        match host.rsplit_once(':') {
            Some((name, port)) if is_port(port) => name,
            Some(_) => return false,
            None => host,
        }
    };
    let name = name.strip_suffix('.').unwrap_or(name);
    name.eq_ignore_ascii_case("localhost") || name.parse::<IpAddr>().is_ok()
}

fn is_port(s: &str) -> bool {
    !s.is_empty() && s.len() <= 5 && s.bytes().all(|b| b.is_ascii_digit())
}

/// The CSRF check for `/api/v1/`: a `POST` must say its body is JSON, unless it carried the
/// token (`token_ok`) or is plainly no browser's (no body, no type, no `Origin`).
pub fn check_json(req: &Request, token_ok: bool) -> Result<(), Refused> {
    if req.method != Method::Post || token_ok {
        return Ok(());
    }
    if req.content_type.is_none() && !req.origin && req.body_len == 0 {
        return Ok(());
    }
    let media = req
        .content_type
        .as_deref()
        .and_then(|t| t.split(';').next())
        .map(str::trim);
    if media.is_some_and(|m| m.eq_ignore_ascii_case("application/json")) {
        return Ok(());
    }
    Err(Refused {
        status: 415,
        message: "a request that changes something needs Content-Type: application/json \
                  (so that no other web site can send it from a browser)"
            .into(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(method: Method, host: Option<&str>, content_type: Option<&str>) -> Request {
        Request {
            method,
            path: "/api/v1/stop/web".into(),
            query: String::new(),
            authorization: None,
            body_len: 0,
            host: host.map(str::to_string),
            content_type: content_type.map(str::to_string),
            origin: true,
        }
    }

    #[test]
    fn loopback_listeners_answer_only_local_hosts() {
        let lo: SocketAddr = "127.0.0.1:9273".parse().expect("addr");
        let lo6: SocketAddr = "[::1]:9273".parse().expect("addr");
        let any: SocketAddr = "10.0.0.5:9273".parse().expect("addr");
        for ok in [
            "127.0.0.1",
            "127.0.0.1:9273",
            "localhost",
            "LOCALHOST:9273",
            "localhost.:1",
            "[::1]",
            "[::1]:9273",
            "10.0.0.5:80",
        ] {
            assert!(host_is_local(ok), "{ok}");
            let r = req(Method::Get, Some(ok), None);
            assert_eq!(check_host(&r, Some(lo)), Ok(()), "{ok}");
            assert_eq!(check_host(&r, Some(lo6)), Ok(()), "{ok}");
        }
        for bad in [
            "evil.example",
            "evil.example:9273",
            "localhost.evil.example",
            "127.0.0.1.nip.io",
            "[::1",
            "[::1]x",
            "127.0.0.1:",
            "127.0.0.1:99999999",
            "",
        ] {
            assert!(!host_is_local(bad), "{bad}");
            let r = req(Method::Get, Some(bad), None);
            assert_eq!(check_host(&r, Some(lo)).map_err(|e| e.status), Err(403));
            // Off loopback the token guards the listener, and names are the operator's.
            assert_eq!(check_host(&r, Some(any)), Ok(()));
        }
        assert_eq!(check_host(&req(Method::Get, None, None), Some(lo)), Ok(()));
    }

    #[test]
    fn posts_must_be_json() {
        for ok in [
            "application/json",
            "Application/JSON; charset=utf-8",
            " application/json ",
        ] {
            assert_eq!(
                check_json(&req(Method::Post, None, Some(ok)), false),
                Ok(()),
                "{ok}"
            );
        }
        for bad in [
            None,
            Some("text/plain"),
            Some("application/x-www-form-urlencoded"),
            Some("multipart/form-data; boundary=x"),
            Some("application/jsonx"),
        ] {
            let r = req(Method::Post, None, bad);
            assert_eq!(
                check_json(&r, false).map_err(|e| e.status),
                Err(415),
                "{bad:?}"
            );
            // With the daemon's token it is no other site's request.
            assert_eq!(check_json(&r, true), Ok(()), "{bad:?}");
        }
        assert_eq!(check_json(&req(Method::Get, None, None), false), Ok(()));
        // `curl -X POST`: no body, no type, no Origin. A browser's always has an Origin.
        let bare = Request {
            origin: false,
            ..req(Method::Post, None, None)
        };
        assert_eq!(check_json(&bare, false), Ok(()));
        let with_body = Request {
            body_len: 2,
            ..bare.clone()
        };
        assert_eq!(
            check_json(&with_body, false).map_err(|e| e.status),
            Err(415)
        );
        let typed = Request {
            content_type: Some("text/plain".into()),
            ..bare
        };
        assert_eq!(check_json(&typed, false).map_err(|e| e.status), Err(415));
    }
}
