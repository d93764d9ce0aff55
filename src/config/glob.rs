//! The small glob `include:` needs: `*`, `?` and `[a-z]` within one path component
//! (`sup.d/*.job`, `conf/*/web.job`).
//!
//! Hand-written on purpose; the `glob` and `globset` crates were weighed and do not keep the
//! behaviour `include:` has (and the tests below pin):
//!
//! - **A bounded walk.** One pattern reads at most `MAX_ENTRIES` (20,000) directory entries,
//!   then it is an error naming the pattern: `/*/*/*/*` would otherwise walk the machine while
//!   `sup check` or a reload waits (the daemon's loop among them). `glob::glob` walks as far as
//!   the pattern reaches with no budget, and `globset` only matches strings, it does not walk.
//! - **No recursion, no `**`.** `**` is two `*` in one component, never "any depth": a
//!   hostile or mistaken pattern cannot descend a tree. `glob` treats `**` as recursive, and its
//!   matcher recurses on every `*` (this file must not recurse on outside input; `match_from` is
//!   a loop with one backtrack point, linear in practice, see `no_exponential_backtracking`).
//! - **The shell's leading-dot rule.** `*` and `?` do not match a leading `.`, so editor and
//!   backup files such as `.web.job.swp` are not loaded by accident. (`glob` can do this with
//!   `require_literal_leading_dot`; `globset` has no such option.)
//! - **Regular files only** (or links to them): a directory named `x.job` is not a job file.
//!   `glob` yields directories too.
//! - **Nothing a shell user would not expect is an error.** An unclosed `[` is a literal
//!   (`a[b`), `[!x]` and `[^x]` both negate, and `{a,b}` is literal text; `glob` rejects an
//!   unclosed `[` and knows only `[!x]`, `globset` rejects it too and expands `{a,b}`.
//!
//! Switching would change which files an existing config loads, and add a dependency (globset
//! pulls in regex) for about 130 lines.

use std::path::{Component, Path, PathBuf};

/// How many directory entries one pattern may read: `/*/*/*/*/*/*` would otherwise walk the
/// whole machine while `sup check` or a reload waits (the daemon's loop among them).
pub const MAX_ENTRIES: usize = 20_000;

/// Every file matching `pattern` (relative to `root` unless absolute), sorted. A folder that
/// cannot be read matches nothing: a missing include is not an error. `Err` when the walk would
/// read more than `MAX_ENTRIES` entries.
pub fn files(root: &Path, pattern: &str) -> Result<Vec<PathBuf>, String> {
    let mut budget = MAX_ENTRIES;
    let mut over = false;
    let pattern_path = Path::new(pattern);
    let mut current = vec![if pattern_path.is_absolute() {
        PathBuf::from("/")
    } else {
        root.to_path_buf()
    }];
    for comp in pattern_path.components() {
        let part = match comp {
            Component::Normal(p) => p.to_string_lossy(),
            Component::ParentDir => "..".into(),
            Component::RootDir | Component::CurDir | Component::Prefix(_) => continue,
        };
        if !has_wildcard(&part) {
            current.iter_mut().for_each(|dir| dir.push(part.as_ref()));
            continue;
        }
        let mut next = Vec::new();
        for dir in &current {
            let Ok(read) = std::fs::read_dir(dir) else {
                continue;
            };
            let mut names: Vec<String> = read
                .take(budget + 1)
                .inspect(|_| match budget.checked_sub(1) {
                    Some(left) => budget = left,
                    None => over = true,
                })
                .filter_map(Result::ok)
                .filter_map(|e| e.file_name().into_string().ok())
                .filter(|name| matches(&part, name))
                .collect();
            if over {
                return Err(format!(
                    "the pattern {pattern:?} reads more than {MAX_ENTRIES} directory entries; \
                     name the folders it should look in"
                ));
            }
            names.sort();
            next.extend(names.into_iter().map(|n| dir.join(n)));
        }
        current = next;
    }
    current.retain(|p| p.is_file());
    Ok(current)
}

fn has_wildcard(s: &str) -> bool {
    s.contains(['*', '?', '['])
}

/// Does `name` match the one-component `pattern`?
pub fn matches(pattern: &str, name: &str) -> bool {
    let p: Vec<char> = pattern.chars().collect();
    let n: Vec<char> = name.chars().collect();
    if n.first() == Some(&'.') && p.first() != Some(&'.') {
        return false;
    }
    match_from(&p, &n)
}

/// Iterative matching with one backtrack point for the last `*`: linear in practice and never
/// exponential, unlike the naive recursive version.
fn match_from(p: &[char], n: &[char]) -> bool {
    let (mut pi, mut ni) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while ni < n.len() {
        if pi < p.len() {
            match p[pi] {
                '*' => {
                    star = Some((pi, ni));
                    pi += 1;
                    continue;
                }
                '?' => {
                    pi += 1;
                    ni += 1;
                    continue;
                }
                '[' => {
                    if let Some((hit, len)) = class(&p[pi..], n[ni]) {
                        if hit {
                            pi += len;
                            ni += 1;
                            continue;
                        }
                    } else if n[ni] == '[' {
                        // An unclosed `[` is a literal.
                        pi += 1;
                        ni += 1;
                        continue;
                    }
                }
                c if c == n[ni] => {
                    pi += 1;
                    ni += 1;
                    continue;
                }
                _ => {}
            }
        }
        match star {
            Some((sp, sn)) => {
                pi = sp + 1;
                ni = sn + 1;
                star = Some((sp, sn + 1));
            }
            None => return false,
        }
    }
    p[pi..].iter().all(|&c| c == '*')
}

/// `[abc]`, `[a-z]`, `[!x]` / `[^x]` at the start of `p`: whether `c` is in it, and the class's
/// length in the pattern. `None` when the class is not closed.
fn class(p: &[char], c: char) -> Option<(bool, usize)> {
    let mut i = 1;
    let negate = matches!(p.get(i), Some('!') | Some('^'));
    if negate {
        i += 1;
    }
    let mut hit = false;
    let mut first = true;
    loop {
        let &ch = p.get(i)?;
        if ch == ']' && !first {
            return Some((hit != negate, i + 1));
        }
        first = false;
        if p.get(i + 1) == Some(&'-') && p.get(i + 2).is_some_and(|&e| e != ']') {
            let end = p[i + 2];
            hit |= (ch..=end).contains(&c);
            i += 3;
        } else {
            hit |= ch == c;
            i += 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn single_component_patterns() {
        assert!(matches("*.job", "web.job"));
        assert!(!matches("*.job", ".job"));
        assert!(!matches("*.job", ".web.job"));
        assert!(matches(".*.job", ".web.job"));
        assert!(!matches("*.job", "web.job.swp"));
        assert!(matches("w?b.job", "web.job"));
        assert!(!matches("w?b.job", "wb.job"));
        assert!(matches("[a-c]*", "beta"));
        assert!(!matches("[!a-c]*", "beta"));
        assert!(matches("[]x]", "]"));
        assert!(matches("a[b", "a[b"));
        assert!(matches("*", "anything"));
        assert!(matches("a*b*c", "aXbYbZc"));
        assert!(!matches("a*b*c", "aXbYbZ"));
        // `[^x]` negates like `[!x]`; braces are plain text; `**` is `*` twice.
        assert!(!matches("[^a-c]*", "beta"));
        assert!(matches("[^a-c]*", "delta"));
        assert!(matches("{a,b}.job", "{a,b}.job"));
        assert!(!matches("{a,b}.job", "a.job"));
        assert!(matches("**.job", "web.job"));
        assert!(!matches("**.job", ".web.job"));
    }

    #[test]
    fn no_exponential_backtracking() {
        let name = "a".repeat(200);
        assert!(!matches("*a*a*a*a*a*a*a*a*a*b", &name));
    }

    #[test]
    fn walks_folders_and_sorts() {
        let dir = std::env::temp_dir().join(format!("sup-glob-test-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        for f in [
            "sup.d/b.job",
            "sup.d/a.job",
            "sup.d/.hidden.job",
            "sup.d/c.txt",
            "conf/x/w.job",
            "conf/y/w.job",
        ] {
            let p = dir.join(f);
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(&p, "cmd: x\n").unwrap();
        }
        std::fs::create_dir_all(dir.join("sup.d/dir.job")).unwrap();
        let rel = |v: Vec<PathBuf>| -> Vec<String> {
            v.iter()
                .map(|p| p.strip_prefix(&dir).unwrap().display().to_string())
                .collect()
        };
        assert_eq!(
            rel(files(&dir, "sup.d/*.job").unwrap()),
            ["sup.d/a.job", "sup.d/b.job"]
        );
        assert_eq!(
            rel(files(&dir, "conf/*/w.job").unwrap()),
            ["conf/x/w.job", "conf/y/w.job"]
        );
        assert_eq!(rel(files(&dir, "./sup.d/a.job").unwrap()), ["sup.d/a.job"]);
        // `**` is not "any depth": it stays within one component.
        assert_eq!(
            rel(files(&dir, "conf/**/w.job").unwrap()),
            ["conf/x/w.job", "conf/y/w.job"]
        );
        assert!(files(&dir, "**/w.job").unwrap().is_empty());
        assert!(files(&dir, "missing/*.job").unwrap().is_empty());
        assert!(files(&dir, "sup.d/none.job").unwrap().is_empty());
        let abs = format!("{}/sup.d/?.job", dir.display());
        assert_eq!(
            rel(files(Path::new("/elsewhere"), &abs).unwrap()),
            ["sup.d/a.job", "sup.d/b.job"]
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_pattern_that_would_walk_the_machine_is_refused() {
        let err = files(Path::new("/"), "/*/*/*/*/*/*/*").unwrap_err();
        assert!(err.contains("more than 20000 directory entries"), "{err}");
    }
}
