//! The README's job-key tables against `resolve::JOB_KEYS`: every key the config accepts is
//! documented, and a table is not broken by a paragraph in its middle (Markdown then renders
//! the rows after it as text).

use super::resolve::JOB_KEYS;

const README: &str = include_str!("../../README.md");

/// The tables with the job-key header (`| key | value | default |`), each as its lines from
/// the header up to the first blank line.
fn job_key_tables() -> Vec<Vec<&'static str>> {
    let lines: Vec<&str> = README.lines().collect();
    let mut tables = Vec::new();
    for (i, line) in lines.iter().enumerate() {
        if line.trim() == "| key | value | default |" {
            let rows = lines[i..]
                .iter()
                .take_while(|l| !l.trim().is_empty())
                .copied()
                .collect();
            tables.push(rows);
        }
    }
    tables
}

/// The backquoted names in a row's first cell (`| `stdout`, `stderr` | …`).
fn keys_of(row: &str) -> Vec<&str> {
    let first = row.trim_start_matches('|').split('|').next().unwrap_or("");
    first.split('`').skip(1).step_by(2).collect()
}

#[test]
fn every_job_key_has_a_row_in_the_readme() {
    let tables = job_key_tables();
    assert!(tables.len() >= 2, "Job keys and Readiness tables not found");
    let mut documented = Vec::new();
    for table in &tables {
        for row in table {
            assert!(
                row.starts_with('|') && row.trim_end().ends_with('|'),
                "a job-key table is broken by a line that is not a row: {row:?}"
            );
        }
        documented.extend(table.iter().skip(2).flat_map(|r| keys_of(r)));
    }
    for key in JOB_KEYS {
        assert!(
            documented.contains(key),
            "job key {key:?} has no row in README's job-key tables"
        );
    }
    for key in &documented {
        assert!(
            JOB_KEYS.contains(key),
            "README documents {key:?}, not a job key"
        );
    }
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
