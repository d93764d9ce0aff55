//! One HTTP/1.1 request head, from bytes to what the loop needs: the method, the path and the
//! `Authorization` header. No sockets and no clocks, so the fuzz target drives it directly.
//!
//! Bytes are pushed as they arrive; the head is parsed (by `httparse`, which is iterative)
//! only once its blank line is in, found by scanning each new byte once, so a client that
//! drips a byte at a time costs O(n), not O(n²). The head may be at most `MAX_HEAD` bytes.

/// The largest request head read; past it the answer is 431.
pub const MAX_HEAD: usize = 8 * 1024;
/// Header lines beyond this are a 431 too.
const MAX_HEADERS: usize = 32;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    Get,
    Head,
    Other,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    pub method: Method,
    /// The path without its query string.
    pub path: String,
    /// The `Authorization` header's value as sent.
    pub authorization: Option<Vec<u8>>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Parsed {
    Request(Request),
    /// Answer with this status (400 or 431) and close.
    Bad(u16),
}

/// A request head being read.
#[derive(Debug, Default)]
pub struct Head {
    buf: Vec<u8>,
    /// Bytes of `buf` already searched for the blank line.
    scanned: usize,
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
            return Some(parse(&self.buf));
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
}

/// A blank line, as CRLF or bare LF (httparse accepts both, and a mix: `\n\r\n` too).
fn ends_head(bytes: &[u8]) -> bool {
    bytes.windows(3).any(|w| w == b"\n\r\n") || bytes.windows(2).any(|w| w == b"\n\n")
}

/// Parse a complete head.
pub fn parse(bytes: &[u8]) -> Parsed {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut req = httparse::Request::new(&mut headers);
    match req.parse(bytes) {
        Ok(httparse::Status::Complete(_)) => {}
        Ok(httparse::Status::Partial) => {
            return Parsed::Bad(if bytes.len() >= MAX_HEAD { 431 } else { 400 })
        }
        Err(httparse::Error::TooManyHeaders) => return Parsed::Bad(431),
        Err(_) => return Parsed::Bad(400),
    }
    let (Some(method), Some(target)) = (req.method, req.path) else {
        return Parsed::Bad(400);
    };
    let method = match method {
        "GET" => Method::Get,
        "HEAD" => Method::Head,
        _ => Method::Other,
    };
    let path = target.split(['?', '#']).next().unwrap_or_default();
    // Origin form only: `/metrics`, not `http://host/metrics` or `*`.
    if !path.starts_with('/') {
        return Parsed::Bad(400);
    }
    let mut authorization = None;
    for h in req.headers.iter() {
        if h.name.eq_ignore_ascii_case("authorization") {
            if authorization.is_some() {
                return Parsed::Bad(400);
            }
            authorization = Some(h.value.to_vec());
        }
    }
    Parsed::Request(Request {
        method,
        path: path.to_string(),
        authorization,
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
         Cache-Control: no-store\r\n{extra}Connection: close\r\n\r\n",
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
        404 => "Not Found",
        405 => "Method Not Allowed",
        408 => "Request Timeout",
        431 => "Request Header Fields Too Large",
        503 => "Service Unavailable",
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
            authorization: None,
        })
    }

    #[test]
    fn whole_and_dripped_heads_parse_the_same() {
        let raw = b"GET /metrics?x=1 HTTP/1.1\r\nHost: a\r\n\r\n";
        assert_eq!(parse(raw), get("/metrics"));
        let mut head = Head::default();
        let mut last = None;
        for b in raw.iter() {
            assert!(last.is_none());
            last = head.push(std::slice::from_ref(b));
        }
        assert_eq!(last, Some(get("/metrics")));
        let mut head = Head::default();
        assert_eq!(head.push(b"GET / HTTP/1.0\n\n"), Some(get("/")));
        // Bare LF lines ended by a CRLF blank line, whole and byte by byte.
        let mixed = b"GET /healthz HTTP/1.1\nHost: x\n\r\n";
        assert_eq!(Head::default().push(mixed), Some(get("/healthz")));
        let mut head = Head::default();
        let mut last = None;
        for b in mixed.iter() {
            last = head.push(std::slice::from_ref(b));
        }
        assert_eq!(last, Some(get("/healthz")));
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
                method: Method::Other,
                path: "/x".into(),
                authorization: Some(b"Bearer t".to_vec()),
            })
        );
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
