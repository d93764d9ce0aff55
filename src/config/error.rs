//! Config errors: each names a place (file:line:col), the key path, what was wrong and what is
//! accepted. A load collects all of them rather than stopping at the first.

use std::fmt;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    /// `file:line:col`, or just `file` when no position applies (a missing file).
    pub place: String,
    /// `programs.web.numprocs`; empty for whole-file errors.
    pub key: String,
    /// What was wrong and what would be accepted.
    pub message: String,
    /// A suggestion, printed on its own `hint:` line.
    pub hint: Option<String>,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.key.is_empty() {
            write!(f, "{}: {}", self.place, self.message)?;
        } else {
            write!(f, "{}: {}: {}", self.place, self.key, self.message)?;
        }
        if let Some(h) = &self.hint {
            write!(f, "\n  hint: {h}")?;
        }
        Ok(())
    }
}
