//! Completion for `sup shell`: what may come next at the cursor, as a pure function of the
//! line and of the names the daemon knows. Command names and flags come from the clap
//! definitions, signal names from the config's table, program and instance names from a
//! `names` callback (the shell fetches them live with a `status` request, only when asked).
//!
//! rustyline's glue is in `shell`; this module knows nothing about terminals or sockets.

use clap::CommandFactory;

use crate::cli::Cli;
use crate::config::signal;

/// The words the shell understands besides the one-shot subcommands.
pub const SHELL_ONLY: &[(&str, &str)] = &[
    (
        "help",
        "List the commands, or show one command's usage: help stop",
    ),
    ("quit", "Leave the shell (also exit, or Ctrl-D)"),
    ("exit", "Leave the shell"),
];

/// Subcommands that make no sense inside the shell: they do not talk to a running daemon.
const NOT_IN_SHELL: &[&str] = &["daemon", "check", "shell", "top", "import", "completions"];

/// Every command the shell accepts with its one-line description, in clap's order, then the
/// shell's own words. The descriptions are clap's, so `help` and `sup --help` never disagree.
pub fn commands() -> Vec<(String, String)> {
    let cli = Cli::command();
    let mut all: Vec<(String, String)> = cli
        .get_subcommands()
        .filter(|c| !NOT_IN_SHELL.contains(&c.get_name()))
        .map(|c| {
            let about = c.get_about().map(|a| a.to_string()).unwrap_or_default();
            (c.get_name().to_string(), about)
        })
        .collect();
    all.extend(
        SHELL_ONLY
            .iter()
            .map(|(n, a)| (n.to_string(), a.to_string())),
    );
    all
}

/// Where the word under the cursor starts, and its candidates, sorted. `names` is called only
/// when a program or instance name may come next, so completing a command name costs no
/// round trip to the daemon. A single candidate gets a trailing space, as in bash.
pub fn complete(line: &str, pos: usize, names: &dyn Fn() -> Vec<String>) -> (usize, Vec<String>) {
    let pos = floor_char_boundary(line, pos);
    let head = &line[..pos];
    let start = head
        .rfind(char::is_whitespace)
        .map(|i| i + head[i..].chars().next().map_or(1, char::len_utf8))
        .unwrap_or(0);
    let word = &head[start..];
    let before: Vec<&str> = head[..start].split_whitespace().collect();

    let mut found: Vec<String> = match before.first() {
        None => commands()
            .into_iter()
            .map(|(n, _)| n)
            .filter(|n| n.starts_with(word))
            .collect(),
        Some(&"help") if before.len() == 1 => commands()
            .into_iter()
            .map(|(n, _)| n)
            .filter(|n| n.starts_with(word))
            .collect(),
        Some(&cmd) if word.starts_with('-') => flags(cmd)
            .into_iter()
            .filter(|f| f.starts_with(word))
            .collect(),
        Some(&"signal") if positionals(&before) == 0 => signals(word),
        Some(&cmd) => match takes_names(cmd) {
            Takes::Nothing => Vec::new(),
            Takes::Names { all } => {
                let mut known = names();
                if all {
                    known.push("all".to_string());
                }
                known.sort();
                known.dedup();
                known.retain(|n| n.starts_with(word));
                known
            }
        },
    };
    found.sort();
    found.dedup();
    if let [only] = found.as_mut_slice() {
        only.push(' ');
    }
    (start, found)
}

enum Takes {
    Nothing,
    Names { all: bool },
}

fn takes_names(cmd: &str) -> Takes {
    match cmd {
        "start" | "stop" | "restart" => Takes::Names { all: true },
        "status" | "signal" | "tail" | "pid" => Takes::Names { all: false },
        _ => Takes::Nothing,
    }
}

/// Words after the command that are not flags.
fn positionals(before: &[&str]) -> usize {
    before
        .iter()
        .skip(1)
        .filter(|w| !w.starts_with('-'))
        .count()
}

/// Signal names as the table spells them (`TERM`); typed in lower case or with `SIG`, the
/// candidates follow what was typed so that the completed word still reads as one.
fn signals(word: &str) -> Vec<String> {
    let upper = word.to_ascii_uppercase();
    let (prefix, bare) = match upper.strip_prefix("SIG") {
        Some(rest) => (&word[..3], rest.to_string()),
        None => ("", upper.clone()),
    };
    let lower = word.chars().any(|c| c.is_ascii_lowercase());
    signal::names()
        .filter(|n| n.starts_with(&bare))
        .map(|n| {
            let n = if lower {
                n.to_ascii_lowercase()
            } else {
                n.to_string()
            };
            format!("{prefix}{n}")
        })
        .collect()
}

/// The long flags of a subcommand, from clap, with the global ones.
fn flags(cmd: &str) -> Vec<String> {
    let cli = Cli::command();
    let mut out: Vec<String> = cli
        .get_arguments()
        .filter_map(|a| a.get_long().map(|l| format!("--{l}")))
        .collect();
    if let Some(sub) = cli.find_subcommand(cmd) {
        out.extend(
            sub.get_arguments()
                .filter_map(|a| a.get_long().map(|l| format!("--{l}"))),
        );
    }
    out.push("--help".to_string());
    out
}

fn floor_char_boundary(s: &str, mut i: usize) -> usize {
    i = i.min(s.len());
    while !s.is_char_boundary(i) {
        i -= 1;
    }
    i
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::Cell;

    fn daemon_names() -> Vec<String> {
        ["web", "web:0", "web:1", "worker", "db"]
            .iter()
            .map(|s| s.to_string())
            .collect()
    }

    /// Complete at the end of `line` against `daemon_names`.
    fn check(line: &str) -> Vec<String> {
        complete(line, line.len(), &daemon_names).1
    }

    #[test]
    fn a_partial_command_completes_to_the_commands_it_starts() {
        assert_eq!(check("st"), ["start", "status", "stop"]);
        assert_eq!(check("rel"), ["reload "]);
        assert_eq!(check("q"), ["quit "]);
        assert_eq!(check("help sh"), ["shutdown "]);
    }

    #[test]
    fn an_empty_line_lists_every_shell_command_and_no_others() {
        let all = check("");
        for c in [
            "status",
            "start",
            "stop",
            "restart",
            "signal",
            "reload",
            "tail",
            "pid",
            "shutdown",
            "logreopen",
            "help",
            "quit",
            "exit",
        ] {
            assert!(all.iter().any(|a| a == c), "{c} missing from {all:?}");
        }
        for c in ["daemon", "check", "shell", "top"] {
            assert!(!all.iter().any(|a| a == c), "{c} offered in the shell");
        }
    }

    #[test]
    fn a_partial_name_completes_to_programs_and_instances() {
        assert_eq!(check("stop w"), ["web", "web:0", "web:1", "worker"]);
        assert_eq!(check("stop wo"), ["worker "]);
        assert_eq!(check("status web:"), ["web:0", "web:1"]);
        assert_eq!(check("restart web:1 d"), ["db "]);
        assert_eq!(check("start a"), ["all "]);
        // `all` is for transitions only.
        assert_eq!(check("status a"), Vec::<String>::new());
        let (start, _) = complete("stop web wo", 11, &daemon_names);
        assert_eq!(start, 9);
    }

    #[test]
    fn signal_completes_signal_names_then_instance_names() {
        let all = check("signal ");
        assert!(all.contains(&"TERM".to_string()), "{all:?}");
        assert!(all.contains(&"USR1".to_string()), "{all:?}");
        assert_eq!(all.len(), signal::names().count());
        assert_eq!(check("signal US"), ["USR1", "USR2"]);
        assert_eq!(check("signal SIGHU"), ["SIGHUP "]);
        assert_eq!(check("signal te"), ["term "]);
        assert_eq!(check("signal HUP we"), ["web", "web:0", "web:1"]);
    }

    #[test]
    fn names_are_fetched_only_when_a_name_may_come_next() {
        let calls = Cell::new(0);
        let counting = || {
            calls.set(calls.get() + 1);
            daemon_names()
        };
        complete("sta", 3, &counting);
        complete("signal T", 8, &counting);
        complete("reload ", 7, &counting);
        assert_eq!(calls.get(), 0);
        complete("stop ", 5, &counting);
        assert_eq!(calls.get(), 1);
    }

    #[test]
    fn flags_come_from_the_clap_definitions() {
        assert_eq!(check("stop --n"), ["--no-wait "]);
        assert_eq!(check("status --j"), ["--json "]);
        assert_eq!(check("tail --st"), ["--stderr "]);
        assert_eq!(check("signal --m"), ["--main "]);
        assert_eq!(check("signal HUP web --g"), ["--group "]);
    }

    #[test]
    fn the_cursor_in_the_middle_completes_the_word_before_it() {
        let (start, found) = complete("stop wo web", 7, &daemon_names);
        assert_eq!(start, 5);
        assert_eq!(found, ["worker "]);
    }

    #[test]
    fn descriptions_are_clap_s() {
        let all = commands();
        let stop = all.iter().find(|(n, _)| n == "stop").expect("stop");
        assert_eq!(
            stop.1,
            "Stop programs or instances and wait until nothing is left"
        );
        assert!(all.iter().all(|(_, about)| !about.is_empty()));
    }
}
