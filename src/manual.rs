//! What packaging installs beside the binary, generated from the clap definitions so that it
//! says what `--help` says: `sup completions SHELL` and the man page (`sup __man`, which
//! `make man` runs).

use std::io::{self, Write};

use clap::CommandFactory;

use crate::cli::Cli;
use crate::fail::{Fail, Outcome};

/// The completion script for `shell`, on stdout.
pub fn completions(shell: clap_complete::Shell) -> Result<Outcome, Fail> {
    let mut out = Vec::new();
    clap_complete::generate(shell, &mut Cli::command(), "sup", &mut out);
    print(&out)
}

/// The word after `sup` that prints the man page.
pub const MAN: &str = "__man";

/// sup(1) in roff, on stdout.
pub fn man() -> Result<Outcome, Fail> {
    let mut out = Vec::new();
    clap_mangen::Man::new(Cli::command())
        .render(&mut out)
        .map_err(|e| Fail::new(format!("unable to render the man page: {e}")))?;
    print(&out)
}

fn print(bytes: &[u8]) -> Result<Outcome, Fail> {
    let mut stdout = io::stdout().lock();
    match stdout.write_all(bytes).and_then(|()| stdout.flush()) {
        Ok(()) => Ok(Outcome::Ok),
        // `sup completions bash | head` is not a failure.
        Err(e) if e.kind() == io::ErrorKind::BrokenPipe => Ok(Outcome::Ok),
        Err(e) => Err(Fail::new(format!("unable to write to stdout: {e}"))),
    }
}
