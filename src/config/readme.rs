//! The README's key tables against the code's (`keys::JOB` with `keys::CGROUP`, the `healthcheck:` and `limits:`
//! keys): each table in the README is exactly the one the descriptors give, names, value text
//! and defaults alike, and no table is broken by a paragraph in its middle (Markdown then
//! renders the rows after it as text). Set `SUP_BLESS=1` to rewrite the README's tables from
//! the code after a deliberate change, then read the diff.

use std::collections::BTreeMap;

use super::health;
use super::keys::{self, Key};
use super::logkeys;

const README: &str = include_str!("../../README.md");

const HEADER: &str = "| key | value | default |\n|---|---|---|\n";

/// A table as the README writes it: one row per key, in the table's order.
fn render<D>(groups: &[&'static [Key<D>]]) -> String {
    let mut out = String::from(HEADER);
    for key in groups.iter().flat_map(|g| g.iter()) {
        out.push_str(&format!(
            "| `{}` | {} | {} |\n",
            key.name,
            key.doc,
            key.default.text()
        ));
    }
    out
}

/// Each key table of the README: the line it comes after (a heading or the paragraph that
/// introduces it), the keys it lists, and the table the code gives.
fn tables() -> Vec<(&'static str, Vec<&'static str>, String)> {
    let job_keys = [keys::GENERAL, keys::SCHEDULED, logkeys::KEYS];
    vec![
        ("### Job keys", keys::names(&job_keys), render(&job_keys)),
        (
            "## Readiness, health and order",
            keys::names(&[health::KEYS]),
            render(&[health::KEYS]),
        ),
        (
            "### cgroup limit keys",
            keys::names(&[keys::CGROUP]),
            render(&[keys::CGROUP]),
        ),
        (
            "`healthcheck:` keys",
            keys::names(health::HEALTHCHECK_KEYS),
            render(health::HEALTHCHECK_KEYS),
        ),
        (
            "`limits:` keys",
            keys::names(health::LIMIT_KEYS),
            render(health::LIMIT_KEYS),
        ),
    ]
}

/// Where the table after `anchor` is in `text` (byte range, from its header to the blank line
/// after it), or why it is not found.
fn find_table(text: &str, anchor: &str) -> Result<std::ops::Range<usize>, String> {
    let at = text
        .match_indices('\n')
        .map(|(i, _)| i + 1)
        .chain([0])
        .find(|&i| text[i..].starts_with(anchor))
        .ok_or_else(|| format!("no line starting with {anchor:?}"))?;
    let after = &text[at..];
    let start = after
        .find("\n| key |")
        .map(|i| at + i + 1)
        .ok_or_else(|| format!("no table after {anchor:?}"))?;
    // The table follows its anchor with only blank lines (or the paragraph) between.
    if text[at..start].matches("\n\n").count() > 1 {
        return Err(format!("the table after {anchor:?} is not the next block"));
    }
    let end = text[start..]
        .find("\n\n")
        .map_or(text.len(), |i| start + i + 1);
    Ok(start..end)
}

#[test]
fn the_readme_tables_are_the_code_tables() {
    let bless = std::env::var_os("SUP_BLESS").is_some();
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/README.md");
    let mut text = README.to_string();
    let mut failures = Vec::new();
    for (anchor, _, want) in tables() {
        let range = match find_table(&text, anchor) {
            Ok(r) => r,
            Err(why) => {
                failures.push(why);
                continue;
            }
        };
        if text[range.clone()] != want {
            failures.push(format!(
                "README's table after {anchor:?} is not the code's:\n--- README\n{}--- code\n{want}",
                &text[range.clone()]
            ));
            text.replace_range(range, &want);
        }
    }
    if bless && text != README {
        std::fs::write(path, &text).expect("write README.md");
        return;
    }
    assert!(failures.is_empty(), "\n{}", failures.join("\n"));
}

#[test]
fn the_readme_job_tables_list_every_job_key_once() {
    let mut documented: BTreeMap<&str, usize> = BTreeMap::new();
    for (_, names, _) in tables().into_iter().take(3) {
        for name in names {
            *documented.entry(name).or_default() += 1;
        }
    }
    let mut job: BTreeMap<&str, usize> = BTreeMap::new();
    for name in keys::names(keys::JOB) {
        *job.entry(name).or_default() += 1;
    }
    assert_eq!(documented, job);
}

#[test]
fn a_table_is_found_after_its_anchor_and_ends_at_a_blank_line() {
    let table = render(health::LIMIT_KEYS);
    let text = format!("intro\n\n`limits:` keys:\n\n{table}\nafter\n");
    let range = find_table(&text, "`limits:` keys").expect("found");
    assert_eq!(&text[range], table);
    // A changed row is a different table.
    assert_ne!(table.replace("| inherited |\n", "| none |\n"), table);
    // A table further down belongs to another paragraph.
    let text = format!("`limits:` keys:\n\ntext\n\n{table}");
    assert!(find_table(&text, "`limits:` keys").is_err());
    assert!(find_table(&text, "`nothing:` keys").is_err());
}

#[test]
fn every_row_of_the_readme_is_in_a_table() {
    // A block of `|` lines is a table only when its second line is the delimiter row; rows
    // that follow a paragraph line (no blank line, no header) render as its text.
    let mut in_code = false;
    let mut block: Vec<&str> = Vec::new();
    for line in README.lines().chain([""]) {
        if line.starts_with("```") {
            in_code = !in_code;
        }
        if !in_code && line.starts_with('|') {
            block.push(line);
            continue;
        }
        if let Some(first) = block.first() {
            let delimiter = block.get(1).is_some_and(|l| l.starts_with("|---"));
            assert!(delimiter, "rows outside a table, from {first:?}");
        }
        block.clear();
    }
}
