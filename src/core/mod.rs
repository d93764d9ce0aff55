//! The supervisor without side effects: state machines, delays, deadlines, name resolution.
//!
//! Invariant: nothing here uses `nix`, `mio`, files or processes, or reads the clock. The loop
//! in `daemon/` passes `now` in and carries out the actions that come back.

pub mod backoff;
pub mod deps;
pub mod event;
pub mod health;
pub mod instance;
pub mod names;
pub mod reload;
pub mod schedule;
pub mod timers;
pub mod usage;

pub use instance::{Action, ExitStatus, Input, Instance, State};
