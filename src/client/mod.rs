//! The client commands: one implementation for the CLI and (later) the shell.

use crate::cli::{Command, Global};
use crate::fail::{Fail, Outcome};

pub fn run(_global: &Global, _command: Command) -> Result<Outcome, Fail> {
    Err(Fail::new("client commands are not built yet"))
}
