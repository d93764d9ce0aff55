//! Config errors: each names a place (file:line:col), the key path, what was wrong and what is
//! accepted. A load collects all of them rather than stopping at the first.

use std::fmt;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    /// `file:line:col`, or just `file` when no position applies (a missing file). Empty when
    /// the message names its places itself (a program defined twice names both).
    pub place: String,
    /// `programs.web.numprocs`; empty for whole-file errors.
    pub key: String,
    /// What was wrong and what would be accepted.
    pub message: String,
    /// A suggestion, printed on its own `hint:` line.
    pub hint: Option<String>,
}

impl ConfigError {
    /// For `sup check --json`: the place split into file, line and column (null when the
    /// error has no single position).
    pub fn to_json(&self) -> serde_json::Value {
        let mut parts = self.place.rsplitn(3, ':');
        let (col, line, file) = (parts.next(), parts.next(), parts.next());
        let (file, line, col) = match (file, line.and_then(|l| l.parse::<u64>().ok()), col) {
            (Some(f), Some(l), Some(c)) if c.parse::<u64>().is_ok() => {
                (Some(f), Some(l), c.parse::<u64>().ok())
            }
            _ => (
                (!self.place.is_empty()).then_some(self.place.as_str()),
                None,
                None,
            ),
        };
        serde_json::json!({
            "file": file,
            "line": line,
            "column": col,
            "key": (!self.key.is_empty()).then_some(self.key.as_str()),
            "message": self.message,
            "hint": self.hint,
        })
    }
}

/// A config that does not load: every error, and the warnings found on the way (a
/// `workingdir` that does not exist yet), so that `sup check` can show both at once.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Rejected {
    pub errors: Vec<ConfigError>,
    pub warnings: Vec<ConfigError>,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if !self.place.is_empty() {
            write!(f, "{}: ", self.place)?;
        }
        if !self.key.is_empty() {
            write!(f, "{}: ", self.key)?;
        }
        write!(f, "{}", self.message)?;
        if let Some(h) = &self.hint {
            write!(f, "\n  hint: {h}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn e(place: &str, key: &str, hint: Option<&str>) -> String {
        ConfigError {
            place: place.into(),
            key: key.into(),
            message: "what went wrong".into(),
            hint: hint.map(Into::into),
        }
        .to_string()
    }

    #[test]
    fn json_splits_the_place() {
        let err = ConfigError {
            place: "sup.d/web.job:4:14".into(),
            key: "programs.web.cmd".into(),
            message: "m".into(),
            hint: None,
        };
        assert_eq!(
            err.to_json(),
            serde_json::json!({"file": "sup.d/web.job", "line": 4, "column": 14,
                "key": "programs.web.cmd", "message": "m", "hint": null})
        );
        let whole = ConfigError {
            place: "a.yaml".into(),
            key: String::new(),
            message: "m".into(),
            hint: Some("h".into()),
        };
        assert_eq!(
            whole.to_json(),
            serde_json::json!({"file": "a.yaml", "line": null, "column": null,
                "key": null, "message": "m", "hint": "h"})
        );
    }

    #[test]
    fn one_line_with_what_is_known_and_an_optional_hint() {
        assert_eq!(e("a.yaml:1:2", "k", None), "a.yaml:1:2: k: what went wrong");
        assert_eq!(e("a.yaml", "", None), "a.yaml: what went wrong");
        assert_eq!(e("", "", None), "what went wrong");
        assert_eq!(
            e("a.yaml:1:2", "k", Some("try this")),
            "a.yaml:1:2: k: what went wrong\n  hint: try this"
        );
    }
}
