//! Signal names ↔ numbers (Linux numbering), with or without the `SIG` prefix.
//!
//! A plain table rather than `nix::sys::signal` so that the pure core can name signals without
//! depending on the system layer.

use super::spec::Signal;

const TABLE: &[(&str, i32)] = &[
    ("HUP", 1),
    ("INT", 2),
    ("QUIT", 3),
    ("ILL", 4),
    ("TRAP", 5),
    ("ABRT", 6),
    ("BUS", 7),
    ("FPE", 8),
    ("KILL", 9),
    ("USR1", 10),
    ("SEGV", 11),
    ("USR2", 12),
    ("PIPE", 13),
    ("ALRM", 14),
    ("TERM", 15),
    ("STKFLT", 16),
    ("CHLD", 17),
    ("CONT", 18),
    ("STOP", 19),
    ("TSTP", 20),
    ("TTIN", 21),
    ("TTOU", 22),
    ("URG", 23),
    ("XCPU", 24),
    ("XFSZ", 25),
    ("VTALRM", 26),
    ("PROF", 27),
    ("WINCH", 28),
    ("IO", 29),
    ("PWR", 30),
    ("SYS", 31),
];

/// `TERM`, `SIGTERM`, `term` and `15` all name SIGTERM.
pub fn parse(text: &str) -> Option<Signal> {
    let t = text.trim();
    if let Ok(n) = t.parse::<i32>() {
        return TABLE.iter().any(|&(_, num)| num == n).then_some(Signal(n));
    }
    let upper = t.to_ascii_uppercase();
    let bare = upper.strip_prefix("SIG").unwrap_or(&upper);
    TABLE
        .iter()
        .find(|&&(name, _)| name == bare)
        .map(|&(_, n)| Signal(n))
}

/// `SIGTERM` for 15; `SIG42` for a number outside the table.
pub fn name(s: Signal) -> String {
    TABLE
        .iter()
        .find(|&&(_, n)| n == s.0)
        .map(|&(name, _)| format!("SIG{name}"))
        .unwrap_or_else(|| format!("SIG{}", s.0))
}

/// Every name without the prefix, for messages and shell completion.
pub fn names() -> impl Iterator<Item = &'static str> {
    TABLE.iter().map(|&(name, _)| name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_with_and_without_prefix() {
        assert_eq!(parse("TERM"), Some(Signal(15)));
        assert_eq!(parse("SIGUSR1"), Some(Signal(10)));
        assert_eq!(parse("int"), Some(Signal(2)));
        assert_eq!(parse("9"), Some(Signal(9)));
        assert_eq!(parse("SIGFOO"), None);
        assert_eq!(parse("99"), None);
        assert_eq!(name(Signal(15)), "SIGTERM");
    }
}
