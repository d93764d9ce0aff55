//! `env_file:` contents, the dotenv format: `KEY=value` lines, `export KEY=value`, values in
//! `'…'` (taken as written) or `"…"` (with `\n`, `\t`, `\r`, `\"`, `\\` and `\$` escapes),
//! `#` comments (a whole line, or after a value and a blank), blank lines. Nothing is
//! expanded or run: `$HOME` and `$(cmd)` are text. Every bad line is reported, by number.
//!
//! Pure: `keys.rs` reads the file (bounded, a regular file only) and places the errors.

/// A variable: name and value.
pub type Var = (String, String);

/// A bad line: its number (from 1) and what is wrong.
pub type LineError = (usize, String);

/// The variables in order (a later line for the same name wins, as a shell would have it),
/// and the errors.
pub fn parse(text: &str) -> (Vec<Var>, Vec<LineError>) {
    let mut vars = Vec::new();
    let mut errors = Vec::new();
    for (i, line) in text.lines().enumerate() {
        match parse_line(line) {
            Ok(Some(var)) => vars.push(var),
            Ok(None) => {}
            Err(e) => errors.push((i + 1, e)),
        }
    }
    (vars, errors)
}

fn parse_line(line: &str) -> Result<Option<Var>, String> {
    let line = line.trim_start();
    if line.is_empty() || line.starts_with('#') {
        return Ok(None);
    }
    let line = match line.strip_prefix("export") {
        Some(rest) if rest.starts_with([' ', '\t']) => rest.trim_start(),
        _ => line,
    };
    let Some((name, rest)) = line.split_once('=') else {
        return Err("expected KEY=value".into());
    };
    let name = name.trim_end();
    let mut chars = name.chars();
    let name_ok = chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_');
    if !name_ok {
        return Err(format!(
            "{name:?} is not a variable name (letters, digits and _, not starting with a digit)"
        ));
    }
    let rest = rest.trim_start();
    let (value, after) = match rest.chars().next() {
        Some('\'') => {
            let body = &rest[1..];
            let Some(end) = body.find('\'') else {
                return Err(format!("{name}: the ' quote is not closed on this line"));
            };
            (body[..end].to_string(), &body[end + 1..])
        }
        Some('"') => double_quoted(name, &rest[1..])?,
        _ => {
            // Unquoted: up to a comment (a `#` after a blank), trailing blanks dropped.
            let mut end = rest.len();
            let bytes = rest.as_bytes();
            for (i, &b) in bytes.iter().enumerate() {
                if b == b'#' && i > 0 && (bytes[i - 1] == b' ' || bytes[i - 1] == b'\t') {
                    end = i;
                    break;
                }
            }
            (rest[..end].trim_end().to_string(), "")
        }
    };
    let after = after.trim_start();
    if !after.is_empty() && !after.starts_with('#') {
        return Err(format!(
            "{name}: unexpected {after:?} after the closing quote"
        ));
    }
    Ok(Some((name.to_string(), value)))
}

/// The inside of `"…"` and what follows the closing quote.
fn double_quoted<'a>(name: &str, body: &'a str) -> Result<(String, &'a str), String> {
    let mut value = String::new();
    let mut chars = body.char_indices();
    while let Some((i, c)) = chars.next() {
        match c {
            '"' => return Ok((value, &body[i + 1..])),
            '\\' => match chars.next() {
                Some((_, 'n')) => value.push('\n'),
                Some((_, 't')) => value.push('\t'),
                Some((_, 'r')) => value.push('\r'),
                Some((_, e @ ('"' | '\\' | '$' | '\''))) => value.push(e),
                // Any other escape is kept as written.
                Some((_, other)) => {
                    value.push('\\');
                    value.push(other);
                }
                None => break,
            },
            c => value.push(c),
        }
    }
    Err(format!("{name}: the \" quote is not closed on this line"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vars(text: &str) -> Vec<(String, String)> {
        let (v, e) = parse(text);
        assert!(e.is_empty(), "{e:?}");
        v
    }

    fn pair(k: &str, v: &str) -> (String, String) {
        (k.to_string(), v.to_string())
    }

    #[test]
    fn reads_the_dotenv_forms() {
        let text = "# a comment\n\nA=1\nexport B = two words \nC='$HOME \\n'\nD=\"x\\ty\\\"z\\\\ $(id)\" # note\nE=\nF=a#b # c\n  G=\"\"\nexported=3\n";
        assert_eq!(
            vars(text),
            [
                pair("A", "1"),
                pair("B", "two words"),
                pair("C", "$HOME \\n"),
                pair("D", "x\ty\"z\\ $(id)"),
                pair("E", ""),
                pair("F", "a#b"),
                pair("G", ""),
                pair("exported", "3"),
            ]
        );
    }

    #[test]
    fn bad_lines_are_reported_by_number() {
        let (v, e) = parse("A=1\njust words\n1X=2\nB='open\nC=\"x\" y\nD=\"\\\nE=ok\n");
        assert_eq!(v, [pair("A", "1"), pair("E", "ok")]);
        let lines: Vec<usize> = e.iter().map(|(l, _)| *l).collect();
        assert_eq!(lines, [2, 3, 4, 5, 6], "{e:?}");
        assert!(e[0].1.contains("KEY=value"), "{e:?}");
    }
}
