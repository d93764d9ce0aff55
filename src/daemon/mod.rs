//! The daemon: the only part of sup that makes syscalls while running. `event_loop` owns the
//! mio loop; the other modules are its hands (spawning, reaping, output, pidfile, state file).

pub mod output;
pub mod pidfile;
pub mod reap;
pub mod spawn;
pub mod state;
#[cfg(test)]
mod testutil;

use crate::cli::{DaemonArgs, Global};
use crate::fail::Fail;

pub fn run(_global: &Global, _args: &DaemonArgs) -> Result<(), Fail> {
    Err(Fail::new("`sup daemon` is not built yet"))
}
