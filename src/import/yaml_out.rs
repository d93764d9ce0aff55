//! The little YAML writing the import needs: every string double-quoted with YAML's escapes
//! (so no value can turn into a number, a bool, `null`, an anchor or a comment), keys plain
//! only when they are plainly safe, and comment text kept on one line. Hand-written: the
//! output is a fixed shape, and serde_yaml is deprecated upstream.

/// `s` as a double-quoted YAML scalar.
pub fn quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            '\r' => out.push_str("\\r"),
            // YAML's other line breaks and every control character, escaped.
            '\u{85}' | '\u{2028}' | '\u{2029}' | '\u{feff}' => {
                out.push_str(&format!("\\u{:04x}", c as u32));
            }
            c if (c as u32) < 0x20 || c as u32 == 0x7f || (0x80..0xa0).contains(&(c as u32)) => {
                out.push_str(&format!("\\x{:02x}", c as u32));
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// A map key: plain when it is a name that YAML reads as that same string, else quoted.
pub fn key(s: &str) -> String {
    let plain = s
        .chars()
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || "_.-".contains(c))
        && !matches!(
            s.to_ascii_lowercase().as_str(),
            "true" | "false" | "yes" | "no" | "on" | "off" | "y" | "n" | "null" | "nan" | "inf"
        );
    if plain {
        s.to_string()
    } else {
        quote(s)
    }
}

/// Text for a `#` comment: one line, control characters shown escaped.
pub fn comment(s: &str) -> String {
    let q = quote(s);
    q[1..q.len() - 1].to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strings_are_always_double_quoted_and_escaped() {
        assert_eq!(quote("a b"), "\"a b\"");
        assert_eq!(quote("say \"hi\"\\"), "\"say \\\"hi\\\"\\\\\"");
        assert_eq!(quote("a\nb\u{7}"), "\"a\\nb\\x07\"");
        assert_eq!(quote("\u{2028}"), "\"\\u2028\"");
    }

    #[test]
    fn keys_are_plain_only_when_safe() {
        assert_eq!(key("web"), "web");
        assert_eq!(key("web_01.x-y"), "web_01.x-y");
        assert_eq!(key("yes"), "\"yes\"");
        assert_eq!(key("1"), "\"1\"");
        assert_eq!(key("a b"), "\"a b\"");
        assert_eq!(key(""), "\"\"");
    }
}
