//! The one error type that reaches `main`: a message in `sup: error: subject: cause` form,
//! an optional hint, and nothing else. `main` alone turns it into an exit status.

use std::fmt;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fail {
    pub message: String,
    pub hint: Option<String>,
}

impl Fail {
    pub fn new(message: impl Into<String>) -> Fail {
        Fail {
            message: message.into(),
            hint: None,
        }
    }

    pub fn hint(mut self, hint: impl Into<String>) -> Fail {
        self.hint = Some(hint.into());
        self
    }
}

impl fmt::Display for Fail {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // A message may carry a server's or a job's text: no control characters reach the
        // terminal (`client::output::clean_lines`).
        use crate::client::output::clean_lines;
        write!(f, "{}", clean_lines(&self.message))?;
        if let Some(h) = &self.hint {
            write!(f, "\n  hint: {}", clean_lines(h))?;
        }
        Ok(())
    }
}

/// What a command ends with when it did not fail outright: 0, or 1 when some part of the
/// request did not reach the wanted state (already printed), or the status the daemon chose
/// (a critical job's code, 137 after a shutdown that had to kill).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Ok,
    Partial,
    Status(u8),
}
