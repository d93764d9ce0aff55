//! supervisord's INI dialect, read the way its parser (Python's `configparser`, as supervisor
//! 4 sets it up) reads it, and its `%(name)s` expansions. Pure: text in, sections out; which
//! files are read is `mod.rs`'s business.
//!
//! Hand-written rather than an INI crate: the rules that matter here are configparser's own and
//! no crate keeps all of them (`;` and `#` start an inline comment only after whitespace, so
//! `command=cmd;arg` keeps its `;`; `=` and `:` both separate a key; an indented line continues
//! the value above it, blank lines in between included; keys are case-insensitive; a section
//! written twice is merged, a key written twice keeps its last value). It is a loop over lines,
//! with no recursion, so any input is linear.

/// One `key = value` line, continuation lines joined with `\n`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// Lowercased, as configparser's `optionxform` makes it.
    pub key: String,
    pub value: String,
    /// The line the key is on (1-based).
    pub line: usize,
}

/// One `[name]` section of one file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Section {
    pub name: String,
    pub line: usize,
    pub entries: Vec<Entry>,
}

impl Section {
    pub fn get(&self, key: &str) -> Option<&Entry> {
        self.entries.iter().rev().find(|e| e.key == key)
    }
}

/// What makes a file unreadable as INI: the line and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IniError {
    pub line: usize,
    pub message: String,
}

/// Leading whitespace as configparser measures indentation.
fn indent(line: &str) -> usize {
    line.len() - line.trim_start().len()
}

/// The line without a comment: a whole line starting with `;` or `#` (after indentation), or
/// the rest from a `;` or `#` that follows whitespace.
fn strip_comment(line: &str) -> &str {
    let trimmed = line.trim_start();
    if trimmed.starts_with(';') || trimmed.starts_with('#') {
        return "";
    }
    let bytes = line.as_bytes();
    for (i, &b) in bytes.iter().enumerate() {
        if (b == b';' || b == b'#') && i > 0 && bytes[i - 1].is_ascii_whitespace() {
            return &line[..i];
        }
    }
    line
}

/// Every section of one file, in order (a name written twice gives two sections; the caller
/// merges them).
pub fn parse(text: &str) -> Result<Vec<Section>, IniError> {
    let mut sections: Vec<Section> = Vec::new();
    // The indentation of the key whose value a deeper line continues.
    let mut open_key: Option<usize> = None;
    for (n, raw) in text.lines().enumerate() {
        let line_no = n + 1;
        let raw = raw.strip_suffix('\r').unwrap_or(raw);
        let line = strip_comment(raw);
        if line.trim().is_empty() {
            // configparser keeps an open value across blank lines (`empty_lines_in_values`).
            continue;
        }
        let ind = indent(line);
        if let (Some(key_indent), Some(section)) = (open_key, sections.last_mut()) {
            if ind > key_indent {
                if let Some(entry) = section.entries.last_mut() {
                    if !entry.value.is_empty() {
                        entry.value.push('\n');
                    }
                    entry.value.push_str(line.trim());
                    continue;
                }
            }
        }
        let body = line.trim();
        if let Some(rest) = body.strip_prefix('[') {
            // configparser's `\[(?P<header>.+)\]`: up to the last `]`, anything after ignored.
            let Some(close) = rest.rfind(']') else {
                return Err(IniError {
                    line: line_no,
                    message: format!("section header without a closing `]`: {body}"),
                });
            };
            let name = &rest[..close];
            if name.is_empty() {
                return Err(IniError {
                    line: line_no,
                    message: "empty section name `[]`".into(),
                });
            }
            sections.push(Section {
                name: name.to_string(),
                line: line_no,
                entries: Vec::new(),
            });
            open_key = None;
            continue;
        }
        let Some(section) = sections.last_mut() else {
            return Err(IniError {
                line: line_no,
                message: format!("a line before any [section] header: {body}"),
            });
        };
        let Some(at) = body.find(['=', ':']) else {
            return Err(IniError {
                line: line_no,
                message: format!("expected `key = value`, found {body:?}"),
            });
        };
        let key = body[..at].trim().to_lowercase();
        if key.is_empty() {
            return Err(IniError {
                line: line_no,
                message: format!("a value without a key: {body:?}"),
            });
        }
        section.entries.push(Entry {
            key,
            value: body[at + 1..].trim().to_string(),
            line: line_no,
        });
        open_key = Some(ind);
    }
    Ok(sections)
}

/// A value an expansion gives: text, or a number (for `%(process_num)02d`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Expansion {
    Text(String),
    Number(i64),
}

/// Python's `%` formatting of `text` with named values, as supervisord expands its values:
/// `%(name)s`, `%(name)d`, `%(name)02d`, and `%%` for a `%`. `lookup` gives a name's value,
/// or `None` when there is none. Each name used is passed to `used`. The error says what
/// supervisord would refuse.
pub fn expand(
    text: &str,
    lookup: &dyn Fn(&str) -> Option<Expansion>,
    used: &mut dyn FnMut(&str),
) -> Result<String, String> {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find('%') {
        out.push_str(&rest[..at]);
        let after = &rest[at + 1..];
        if let Some(tail) = after.strip_prefix('%') {
            out.push('%');
            rest = tail;
            continue;
        }
        let Some(named) = after.strip_prefix('(') else {
            return Err(format!(
                "a `%` that is not `%(name)s` or `%%`: {}",
                excerpt(&rest[at..])
            ));
        };
        let Some(close) = named.find(')') else {
            return Err(format!("an unclosed `%(`: {}", excerpt(&rest[at..])));
        };
        let name = &named[..close];
        let spec = &named[close + 1..];
        // Flags, width, precision, then one conversion letter.
        let flags_len = spec
            .bytes()
            .take_while(|b| matches!(b, b'-' | b'0' | b' ' | b'+' | b'#'))
            .count();
        let zero = spec[..flags_len].contains('0') && !spec[..flags_len].contains('-');
        let left = spec[..flags_len].contains('-');
        let after_flags = &spec[flags_len..];
        let width_len = after_flags.bytes().take_while(u8::is_ascii_digit).count();
        let width: usize = after_flags[..width_len].parse().unwrap_or(0).min(64);
        let mut conv_at = width_len;
        if after_flags[conv_at..].starts_with('.') {
            conv_at += 1 + after_flags[conv_at + 1..]
                .bytes()
                .take_while(u8::is_ascii_digit)
                .count();
        }
        let Some(conv) = after_flags[conv_at..].chars().next() else {
            return Err(format!(
                "`%({name})` without a conversion such as `s` or `d`"
            ));
        };
        let Some(value) = lookup(name) else {
            return Err(match name.strip_prefix("ENV_") {
                Some(var) => format!("`%({name})`: ${var} is not set in this environment"),
                None => format!("`%({name})` names nothing supervisord knows here"),
            });
        };
        used(name);
        let body = match (conv, value) {
            ('s' | 'r', Expansion::Text(t)) => t,
            ('s' | 'r' | 'd' | 'i' | 'u', Expansion::Number(n)) => n.to_string(),
            ('d' | 'i' | 'u', Expansion::Text(t)) => match t.trim().parse::<i64>() {
                Ok(n) => n.to_string(),
                Err(_) => return Err(format!("`%({name}){conv}` needs a number, {name} is {t:?}")),
            },
            (other, _) => {
                return Err(format!(
                    "`%({name}){other}`: only the `s` and `d` conversions are translated"
                ))
            }
        };
        let numeric = matches!(conv, 'd' | 'i' | 'u');
        let pad = width.saturating_sub(body.chars().count());
        if left {
            out.push_str(&body);
            out.extend(std::iter::repeat_n(' ', pad));
        } else if zero && numeric {
            let (sign, digits) = match body.strip_prefix('-') {
                Some(d) => ("-", d),
                None => ("", body.as_str()),
            };
            out.push_str(sign);
            out.extend(std::iter::repeat_n('0', pad));
            out.push_str(digits);
        } else {
            out.extend(std::iter::repeat_n(' ', pad));
            out.push_str(&body);
        }
        rest = &after_flags[conv_at + conv.len_utf8()..];
    }
    out.push_str(rest);
    Ok(out)
}

fn excerpt(s: &str) -> String {
    let cut: String = s.chars().take(20).collect();
    format!("{cut:?}")
}

/// `environment=`'s pairs in order, and the separators that were not commas.
pub type EnvPairs = (Vec<(String, String)>, Vec<String>);

/// supervisord's `environment=` value: `KEY="val",KEY2=val2`, read as its
/// `dict_of_key_value_pairs` reads it (a non-POSIX `shlex` with `/.+-():` as word characters,
/// quotes kept then stripped, `#` a comment, every fourth token a separator). Returns the
/// pairs and, for the notes, each separator that was not a comma (supervisord skips it
/// silently, which usually means a value lost its tail).
pub fn environment(text: &str) -> Result<EnvPairs, String> {
    let tokens = shlex_tokens(text)?;
    let mut pairs = Vec::new();
    let mut odd = Vec::new();
    let mut i = 0;
    while i < tokens.len() {
        let Some(triple) = tokens.get(i..i + 3) else {
            return Err(format!(
                "unexpected end of key/value pairs after {:?}",
                tokens[i..].join(" ")
            ));
        };
        if triple[1] != "=" {
            return Err(format!("expected KEY=value, found {:?}", triple.join(" ")));
        }
        let value = triple[2].trim_matches(|c| c == '\'' || c == '"');
        pairs.push((triple[0].clone(), value.to_string()));
        if let Some(sep) = tokens.get(i + 3) {
            if sep != "," {
                odd.push(sep.clone());
            }
        }
        i += 4;
    }
    Ok((pairs, odd))
}

/// Python's `shlex.shlex(text)` tokens (non-POSIX mode) with supervisord's extra word
/// characters.
fn shlex_tokens(text: &str) -> Result<Vec<String>, String> {
    let word = |c: char| c.is_ascii_alphanumeric() || "_/.+-():".contains(c);
    let mut tokens = Vec::new();
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        if c.is_whitespace() {
            continue;
        }
        if c == '#' {
            // A comment to the end of the line.
            for c in chars.by_ref() {
                if c == '\n' {
                    break;
                }
            }
            continue;
        }
        if c == '"' || c == '\'' {
            let mut tok = String::from(c);
            let mut closed = false;
            for d in chars.by_ref() {
                tok.push(d);
                if d == c {
                    closed = true;
                    break;
                }
            }
            if !closed {
                return Err("no closing quotation".into());
            }
            tokens.push(tok);
            continue;
        }
        if word(c) {
            let mut tok = String::from(c);
            while let Some(&d) = chars.peek() {
                if !word(d) {
                    break;
                }
                tok.push(d);
                chars.next();
            }
            tokens.push(tok);
            continue;
        }
        tokens.push(c.to_string());
    }
    Ok(tokens)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn one(text: &str) -> Section {
        let mut s = parse(text).expect("parses");
        assert_eq!(s.len(), 1, "{s:?}");
        s.remove(0)
    }

    #[test]
    fn keys_values_and_both_separators() {
        let s = one("[program:a]\ncommand = /bin/cat\nUser: www\n");
        assert_eq!(s.name, "program:a");
        assert_eq!(s.get("command").map(|e| e.value.as_str()), Some("/bin/cat"));
        assert_eq!(
            s.get("user").map(|e| (e.value.as_str(), e.line)),
            Some(("www", 3))
        );
    }

    #[test]
    fn an_inline_comment_needs_whitespace_before_it() {
        let s = one("[p]\na=x;y ; comment\nb=u#v # too\n; whole\n  # whole too\n");
        assert_eq!(s.get("a").map(|e| e.value.as_str()), Some("x;y"));
        assert_eq!(s.get("b").map(|e| e.value.as_str()), Some("u#v"));
        assert_eq!(s.entries.len(), 2);
    }

    #[test]
    fn indented_lines_continue_the_value_across_blank_lines() {
        let s = one("[p]\nenvironment=\n    A=\"1\",\n\n    B=2\nnext=3\n");
        assert_eq!(
            s.get("environment").map(|e| e.value.as_str()),
            Some("A=\"1\",\nB=2")
        );
        assert_eq!(s.get("next").map(|e| e.value.as_str()), Some("3"));
    }

    #[test]
    fn the_last_of_a_repeated_key_wins() {
        let s = one("[p]\na=1\na=2\n");
        assert_eq!(s.get("a").map(|e| e.value.as_str()), Some("2"));
    }

    #[test]
    fn errors_name_the_line() {
        assert_eq!(parse("a=1\n").map_err(|e| e.line), Err(1));
        assert_eq!(parse("[p]\n\njunk\n").map_err(|e| e.line), Err(3));
        assert_eq!(parse("[p]\n[q\n").map_err(|e| e.line), Err(2));
        assert_eq!(parse("[p]\n=v\n").map_err(|e| e.line), Err(2));
    }

    fn vars(name: &str) -> Option<Expansion> {
        match name {
            "program_name" => Some(Expansion::Text("web".into())),
            "process_num" => Some(Expansion::Number(3)),
            _ => None,
        }
    }

    fn ex(text: &str) -> Result<String, String> {
        expand(text, &vars, &mut |_| {})
    }

    #[test]
    fn python_percent_expansion() {
        assert_eq!(
            ex("%(program_name)s_%(process_num)02d").as_deref(),
            Ok("web_03")
        );
        assert_eq!(ex("%(process_num)d%%").as_deref(), Ok("3%"));
        assert_eq!(ex("[%(program_name)5s]").as_deref(), Ok("[  web]"));
        assert_eq!(ex("[%(program_name)-5s]").as_deref(), Ok("[web  ]"));
        assert!(ex("date +%s").is_err());
        assert!(ex("%(nothing)s").is_err());
        assert_eq!(
            ex("%(ENV_NOPE)s"),
            Err("`%(ENV_NOPE)`: $NOPE is not set in this environment".to_string())
        );
        assert!(ex("%(program_name)").is_err());
        assert!(ex("%(program_name").is_err());
        assert!(ex("%(program_name)d").is_err());
    }

    #[test]
    fn environment_pairs_as_supervisord_reads_them() {
        let (pairs, odd) = environment("A=\"x, y\",B=/usr/bin:/bin, C='1'").expect("reads");
        assert_eq!(
            pairs,
            vec![
                ("A".to_string(), "x, y".to_string()),
                ("B".to_string(), "/usr/bin:/bin".to_string()),
                ("C".to_string(), "1".to_string()),
            ]
        );
        assert!(odd.is_empty());
        // An unquoted space: supervisord takes `hello` and skips `world` as a separator.
        let (pairs, odd) = environment("A=hello world").expect("reads");
        assert_eq!(pairs, vec![("A".to_string(), "hello".to_string())]);
        assert_eq!(odd, vec!["world".to_string()]);
        assert!(environment("A=").is_err());
        assert!(environment("A=\"open").is_err());
        assert!(environment("A:1").is_err());
    }
}
