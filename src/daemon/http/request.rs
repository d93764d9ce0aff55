//! One HTTP/1.1 request head, from bytes to what the loop needs: the method, the path, the
//! query, the `Authorization` header and the length of the body that follows. No sockets and
//! no clocks, so the fuzz target drives it directly.
//!
//! Bytes are pushed as they arrive; the head is parsed (by `httparse`, which is iterative)
//! only once its blank line is in, found by scanning each new byte once, so a client that
//! drips a byte at a time costs O(n), not O(n²). The head may be at most `MAX_HEAD` bytes.

/// The largest request head read; past it the answer is 431.
pub const MAX_HEAD: usize = 8 * 1024;
/// Header lines beyond this are a 431 too.
const MAX_HEADERS: usize = 32;
/// The largest request body read (the API's JSON bodies are a few hundred bytes); a longer
/// `Content-Length` is answered 413 before any of the body is read.
pub const MAX_BODY: usize = 64 * 1024;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    Get,
    Head,
    Post,
    Other,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    pub method: Method,
    /// The path without its query string, as sent (still percent-encoded).
    pub path: String,
    /// What followed `?`, without a fragment; empty when there was none.
    pub query: String,
    /// The `Authorization` header's value as sent.
    pub authorization: Option<Vec<u8>>,
    /// `Content-Length`: the body to read after the head (at most `MAX_BODY`).
    pub body_len: usize,
    /// `Host` and `Content-Type` as sent, and whether an `Origin` came (browsers send one
    /// with every POST), for `guard`'s checks.
    pub host: Option<String>,
    pub content_type: Option<String>,
    pub origin: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Parsed {
    Request(Request),
    /// Answer with this status (400, 411, 413 or 431) and close.
    Bad(u16),
}

/// A request head being read.
#[derive(Debug, Default)]
pub struct Head {
    buf: Vec<u8>,
    /// Bytes of `buf` already searched for the blank line.
    scanned: usize,
    /// Where the head ended in `buf`, once it has: what follows is the body's start.
    end: Option<usize>,
}

impl Head {
    /// Room left before the limit.
    pub fn room(&self) -> usize {
        MAX_HEAD - self.buf.len()
    }

    /// Add bytes (at most `room()` of them are kept) and say whether the head is complete:
    /// `None` while it is not and there is room for more.
    pub fn push(&mut self, bytes: &[u8]) -> Option<Parsed> {
        let take = bytes.len().min(self.room());
        self.buf.extend_from_slice(&bytes[..take]);
        if self.ended() {
            let (parsed, end) = parse_with_end(&self.buf);
            self.end = end;
            return Some(parsed);
        }
        if self.buf.len() >= MAX_HEAD || take < bytes.len() {
            return Some(Parsed::Bad(431));
        }
        None
    }

    /// The end of the head (`\r\n\r\n`, or `\n\n` which httparse also takes) is in `buf`.
    fn ended(&mut self) -> bool {
        // Back up three bytes: the blank line may straddle two pushes.
        let from = self.scanned.saturating_sub(3);
        let found = ends_head(&self.buf[from..]);
        self.scanned = self.buf.len();
        found
    }

    /// The bytes that came after the head in the same reads: the start of the body (or a
    /// pipelined request, which is dropped with the rest of the input).
    pub fn rest(&self) -> &[u8] {
        self.end
            .map_or(&[][..], |at| &self.buf[at.min(self.buf.len())..])
    }
}

/// A blank line, as CRLF or bare LF (httparse accepts both, and a mix: `\n\r\n` too).
fn ends_head(bytes: &[u8]) -> bool {
    bytes.windows(3).any(|w| w == b"\n\r\n") || bytes.windows(2).any(|w| w == b"\n\n")
}

/// Parse a complete head.
pub fn parse(bytes: &[u8]) -> Parsed {
    parse_with_end(bytes).0
}

/// Parse a complete head, and say where it ended.
fn parse_with_end(bytes: &[u8]) -> (Parsed, Option<usize>) {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut req = httparse::Request::new(&mut headers);
    let end = match req.parse(bytes) {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) => {
            return (
                Parsed::Bad(if bytes.len() >= MAX_HEAD { 431 } else { 400 }),
                None,
            )
        }
        Err(httparse::Error::TooManyHeaders) => return (Parsed::Bad(431), None),
        Err(_) => return (Parsed::Bad(400), None),
    };
    (parse_request(&req), Some(end))
}

fn parse_request(req: &httparse::Request) -> Parsed {
    let (Some(method), Some(target)) = (req.method, req.path) else {
        return Parsed::Bad(400);
    };
    let method = match method {
        "GET" => Method::Get,
        "HEAD" => Method::Head,
        "POST" => Method::Post,
        _ => Method::Other,
    };
    let target = target.split('#').next().unwrap_or_default();
    let (path, query) = target.split_once('?').unwrap_or((target, ""));
    // Origin form only: `/metrics`, not `http://host/metrics` or `*`.
    if !path.starts_with('/') {
        return Parsed::Bad(400);
    }
    let mut authorization = None;
    let mut length = None;
    let (mut host, mut content_type, mut origin) = (None, None, false);
    for h in req.headers.iter() {
        if h.name.eq_ignore_ascii_case("authorization") {
            if authorization.is_some() {
                return Parsed::Bad(400);
            }
            authorization = Some(h.value.to_vec());
        } else if h.name.eq_ignore_ascii_case("content-length") {
            // Two lengths (even equal ones) are how requests are smuggled: refused.
            let parsed = std::str::from_utf8(h.value)
                .ok()
                .filter(|v| !v.is_empty() && v.bytes().all(|b| b.is_ascii_digit()))
                .and_then(|v| v.parse::<u64>().ok());
            match (length, parsed) {
                (None, Some(n)) => length = Some(n),
                _ => return Parsed::Bad(400),
            }
        } else if h.name.eq_ignore_ascii_case("host") {
            // Two hosts are as ambiguous as two lengths.
            if host.is_some() {
                return Parsed::Bad(400);
            }
            host = Some(String::from_utf8_lossy(h.value).into_owned());
        } else if h.name.eq_ignore_ascii_case("origin") {
            origin = true;
        } else if h.name.eq_ignore_ascii_case("content-type") {
            content_type = Some(String::from_utf8_lossy(h.value).into_owned());
        } else if h.name.eq_ignore_ascii_case("transfer-encoding") {
            // A chunked (or otherwise encoded) body: the API reads only counted bodies.
            return Parsed::Bad(411);
        }
    }
    let body_len = match length {
        None => 0,
        Some(n) if n > MAX_BODY as u64 => return Parsed::Bad(413),
        Some(n) => n as usize,
    };
    Parsed::Request(Request {
        method,
        path: path.to_string(),
        query: query.to_string(),
        authorization,
        body_len,
        host,
        content_type,
        origin,
    })
}

/// Whether `authorization` is `Bearer <token>`. The comparison takes the same time wherever
/// the first difference is (it depends only on the lengths).
pub fn authorized(authorization: Option<&[u8]>, token: &[u8]) -> bool {
    let Some(value) = authorization else {
        return false;
    };
    let Some(given) = strip_bearer(value) else {
        return false;
    };
    constant_time_eq(given, token)
}

fn strip_bearer(value: &[u8]) -> Option<&[u8]> {
    const SCHEME: &[u8] = b"bearer ";
    if value.len() < SCHEME.len() || !value[..SCHEME.len()].eq_ignore_ascii_case(SCHEME) {
        return None;
    }
    let rest = &value[SCHEME.len()..];
    let start = rest.iter().position(|b| *b != b' ')?;
    let end = rest.iter().rposition(|b| *b != b' ' && *b != b'\t')? + 1;
    Some(&rest[start..end])
}

/// Equal bytes, in time that depends on the lengths only.
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    let mut diff = (a.len() ^ b.len()) as u64;
    for i in 0..a.len().max(b.len()) {
        let x = a.get(i).copied().unwrap_or(0);
        let y = b.get(i).copied().unwrap_or(0);
        diff |= u64::from(x ^ y);
    }
    std::hint::black_box(diff) == 0
}

/// A whole response: status line, headers, body (left out for HEAD). Every response closes
/// the connection.
pub fn response(status: u16, content_type: &str, extra: &str, body: &[u8], head: bool) -> Vec<u8> {
    let mut out = format!(
        "HTTP/1.1 {status} {}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\n\
         Cache-Control: no-store\r\nX-Content-Type-Options: nosniff\r\n{extra}Connection: close\r\n\r\n",
        reason(status),
        body.len()
    )
    .into_bytes();
    if !head {
        out.extend_from_slice(body);
    }
    out
}

/// A plain-text response, for the errors and `/healthz`.
pub fn text(status: u16, body: &str, extra: &str, head: bool) -> Vec<u8> {
    response(
        status,
        "text/plain; charset=utf-8",
        extra,
        body.as_bytes(),
        head,
    )
}

pub fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        408 => "Request Timeout",
        409 => "Conflict",
        411 => "Length Required",
        413 => "Content Too Large",
        415 => "Unsupported Media Type",
        431 => "Request Header Fields Too Large",
        500 => "Internal Server Error",
        503 => "Service Unavailable",
        504 => "Gateway Timeout",
        _ => "Error",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn get(path: &str) -> Parsed {
        Parsed::Request(Request {
            method: Method::Get,
            path: path.into(),
            query: String::new(),
            authorization: None,
            body_len: 0,
            host: None,
            content_type: None,
            origin: false,
        })
    }

    #[test]
    fn whole_and_dripped_heads_parse_the_same() {
        let raw = b"GET /metrics HTTP/1.1\r\nHost: a\r\n\r\n";
        let with_host = |path: &str| match get(path) {
            Parsed::Request(r) => Parsed::Request(Request {
                host: Some("a".into()),
                ..r
            }),
            bad => bad,
        };
        assert_eq!(parse(raw), with_host("/metrics"));
        let mut head = Head::default();
        let mut last = None;
        for b in raw.iter() {
            assert!(last.is_none());
            last = head.push(std::slice::from_ref(b));
        }
        assert_eq!(last, Some(with_host("/metrics")));
        let mut head = Head::default();
        assert_eq!(head.push(b"GET / HTTP/1.0\n\n"), Some(get("/")));
        // Bare LF lines ended by a CRLF blank line, whole and byte by byte.
        let mixed = b"GET /healthz HTTP/1.1\nHost: a\n\r\n";
        assert_eq!(Head::default().push(mixed), Some(with_host("/healthz")));
        let mut head = Head::default();
        let mut last = None;
        for b in mixed.iter() {
            last = head.push(std::slice::from_ref(b));
        }
        assert_eq!(last, Some(with_host("/healthz")));
    }

    #[test]
    fn bad_heads() {
        assert_eq!(parse(b"GARBAGE\r\n\r\n"), Parsed::Bad(400));
        assert_eq!(parse(b"GET http://x/ HTTP/1.1\r\n\r\n"), Parsed::Bad(400));
        assert_eq!(
            parse(b"GET / HTTP/1.1\r\nBad Header\r\n\r\n"),
            Parsed::Bad(400)
        );
        let many = format!("GET / HTTP/1.1\r\n{}\r\n", "a: b\r\n".repeat(40));
        assert_eq!(parse(many.as_bytes()), Parsed::Bad(431));
        let mut head = Head::default();
        assert_eq!(head.push(&[b'a'; 100]), None);
        assert_eq!(head.push(&vec![b'a'; MAX_HEAD]), Some(Parsed::Bad(431)));
        let two = b"GET / HTTP/1.1\r\nAuthorization: a\r\nauthorization: b\r\n\r\n";
        assert_eq!(parse(two), Parsed::Bad(400));
        let post = b"POST /x HTTP/1.1\r\nAuthorization: Bearer t\r\n\r\n";
        assert_eq!(
            parse(post),
            Parsed::Request(Request {
                method: Method::Post,
                path: "/x".into(),
                query: String::new(),
                authorization: Some(b"Bearer t".to_vec()),
                body_len: 0,
                host: None,
                content_type: None,
                origin: false,
            })
        );
    }

    #[test]
    fn bodies_are_counted_and_bounded() {
        let raw = b"POST /api/v1/stop?x=1#f HTTP/1.1\r\nContent-Length: 4\r\n\r\n{}\r\n";
        let mut head = Head::default();
        let Some(Parsed::Request(r)) = head.push(raw) else {
            panic!("a request");
        };
        assert_eq!(
            (r.path.as_str(), r.query.as_str(), r.body_len),
            ("/api/v1/stop", "x=1", 4)
        );
        assert_eq!(head.rest(), b"{}\r\n");
        let big = format!(
            "POST / HTTP/1.1\r\nContent-Length: {}\r\n\r\n",
            MAX_BODY + 1
        );
        assert_eq!(parse(big.as_bytes()), Parsed::Bad(413));
        let chunked = b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n";
        assert_eq!(parse(chunked), Parsed::Bad(411));
        let two = b"POST / HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 1\r\n\r\n";
        assert_eq!(parse(two), Parsed::Bad(400));
        let signed = b"POST / HTTP/1.1\r\nContent-Length: +1\r\n\r\n";
        assert_eq!(parse(signed), Parsed::Bad(400));
    }

    #[test]
    fn bearer_tokens() {
        assert!(authorized(Some(b"Bearer s3cret"), b"s3cret"));
        assert!(authorized(Some(b"bearer  s3cret "), b"s3cret"));
        assert!(!authorized(Some(b"Bearer s3cre"), b"s3cret"));
        assert!(!authorized(Some(b"Bearer s3cretx"), b"s3cret"));
        assert!(!authorized(Some(b"Basic s3cret"), b"s3cret"));
        assert!(!authorized(Some(b"Bearer "), b"s3cret"));
        assert!(!authorized(None, b"s3cret"));
        assert!(constant_time_eq(b"", b""));
        assert!(!constant_time_eq(b"a", b""));
    }

    #[test]
    fn responses_close_and_head_has_no_body() {
        let r = text(200, "ok", "", false);
        let r = String::from_utf8(r).expect("utf-8");
        assert!(r.starts_with("HTTP/1.1 200 OK\r\n"));
        assert!(r.contains("Content-Length: 2\r\n"));
        assert!(r.contains("Connection: close\r\n"));
        assert!(r.ends_with("\r\n\r\nok"));
        let h = text(200, "ok", "", true);
        assert!(h.ends_with(b"\r\n\r\n"));
    }
}
