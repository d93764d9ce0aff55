//! Who each child of the daemon is: one map, looked up once per reaped pid.

use std::collections::HashMap;

/// What a pid the daemon started is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PidOwner {
    /// The leader of an instance's process group (by instance id).
    Leader(usize),
    /// A `cmd` health check of an instance, running or killed at its timeout.
    Check(usize),
    /// A notification sender or hook.
    Sender,
    /// An event listener (`listen.rs` knows which).
    Listener,
}

#[derive(Debug, Default)]
pub struct Pids(HashMap<u32, PidOwner>);

impl Pids {
    pub fn insert(&mut self, pid: u32, owner: PidOwner) {
        self.0.insert(pid, owner);
    }

    pub fn get(&self, pid: u32) -> Option<PidOwner> {
        self.0.get(&pid).copied()
    }

    /// How many children there are to reap.
    pub fn count(&self) -> usize {
        self.0.len()
    }

    /// The pid was reaped (or is no longer followed): its owner, once.
    pub fn remove(&mut self, pid: u32) -> Option<PidOwner> {
        self.0.remove(&pid)
    }
}
