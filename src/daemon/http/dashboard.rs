//! `GET /`: the dashboard, one HTML page compiled into the binary (`dashboard.html`, inline
//! CSS and JS, nothing fetched from elsewhere). It reads the API like any client: a status
//! snapshot and events from `/api/v1/events`, outputs from `/api/v1/tail/NAME`, actions as
//! JSON POSTs, the token (when the daemon has one) in an `Authorization` header that the page
//! asks for and keeps in `sessionStorage`.
//!
//! The page is served with a Content-Security-Policy that allows its own inline `<script>`
//! and `<style>` by their SHA-256 (computed here from the very bytes served, once), requests
//! to this origin only, and nothing else: no other script, no frames, no form targets.

use std::sync::OnceLock;

use super::request;

/// The page, as served.
pub const PAGE: &str = include_str!("dashboard.html");

/// The `Content-Security-Policy` of the page: its inline blocks by hash.
pub fn csp() -> &'static str {
    static CSP: OnceLock<String> = OnceLock::new();
    CSP.get_or_init(|| {
        let hashes = |tag: &str| -> String {
            inline_blocks(PAGE, tag)
                .iter()
                .map(|b| format!(" 'sha256-{}'", sha256_base64(b.as_bytes())))
                .collect()
        };
        format!(
            "default-src 'self'; script-src{}; style-src{}; connect-src 'self'; img-src 'self'; \
             base-uri 'none'; form-action 'none'; frame-ancestors 'none'; object-src 'none'",
            hashes("script"),
            hashes("style")
        )
    })
}

/// The whole response to `GET /` (or `HEAD /`).
pub fn response(head: bool) -> Vec<u8> {
    let extra = format!(
        "Content-Security-Policy: {}\r\nX-Frame-Options: DENY\r\nReferrer-Policy: no-referrer\r\n",
        csp()
    );
    request::response(
        200,
        "text/html; charset=utf-8",
        &extra,
        PAGE.as_bytes(),
        head,
    )
}

/// The text of every `<tag>…</tag>` block of `page` (tags without attributes), in order.
pub fn inline_blocks<'a>(page: &'a str, tag: &str) -> Vec<&'a str> {
    let (open, close) = (format!("<{tag}>"), format!("</{tag}>"));
    let mut out = Vec::new();
    let mut rest = page;
    while let Some(at) = rest.find(&open) {
        let body = &rest[at + open.len()..];
        let Some(end) = body.find(&close) else {
            break;
        };
        out.push(&body[..end]);
        rest = &body[end + close.len()..];
    }
    out
}

fn sha256_base64(bytes: &[u8]) -> String {
    base64(ring::digest::digest(&ring::digest::SHA256, bytes).as_ref())
}

/// Standard base64 with padding, as CSP hash sources are written.
fn base64(bytes: &[u8]) -> String {
    const ABC: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let b = [
            chunk[0],
            chunk.get(1).copied().unwrap_or(0),
            chunk.get(2).copied().unwrap_or(0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(char::from(ABC[(n >> (18 - 6 * i)) as usize & 63]));
            } else {
                out.push('=');
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_and_sha256_match_known_values() {
        assert_eq!(base64(b""), "");
        assert_eq!(base64(b"f"), "Zg==");
        assert_eq!(base64(b"fo"), "Zm8=");
        assert_eq!(base64(b"foo"), "Zm9v");
        assert_eq!(base64(b"foobar"), "Zm9vYmFy");
        // `printf abc | openssl dgst -sha256 -binary | base64`
        assert_eq!(
            sha256_base64(b"abc"),
            "ungWv48Bz+pBQUDeXa4iI7ADYaOWF3qctBD/YfIAFa0="
        );
    }

    #[test]
    fn the_policy_allows_exactly_the_inline_blocks_served() {
        let scripts = inline_blocks(PAGE, "script");
        let styles = inline_blocks(PAGE, "style");
        assert_eq!((scripts.len(), styles.len()), (1, 1));
        // No other way in: no script or style element with attributes (a src, a nonce), no
        // inline handlers or style attributes, which a hash does not allow.
        for banned in [
            "<script ",
            "<style ",
            " onclick=",
            " onload=",
            " style=",
            "http://",
            "https://",
        ] {
            assert!(!PAGE.contains(banned), "{banned}");
        }
        let csp = csp();
        assert!(csp.starts_with("default-src 'self'; "), "{csp}");
        assert!(!csp.contains("unsafe"), "{csp}");
        let script_src = csp
            .split("; ")
            .find_map(|d| d.strip_prefix("script-src "))
            .expect("script-src");
        assert_eq!(
            script_src,
            format!("'sha256-{}'", sha256_base64(scripts[0].as_bytes()))
        );
        let resp = String::from_utf8(response(false)).expect("utf-8");
        assert!(resp.contains(&format!("Content-Security-Policy: {csp}\r\n")));
        assert!(resp.contains("X-Content-Type-Options: nosniff\r\n"));
        assert!(resp.contains("Content-Type: text/html; charset=utf-8\r\n"));
        assert!(resp.ends_with("</html>\n"));
    }
}
