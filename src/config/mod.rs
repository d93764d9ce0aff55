//! Loading a configuration: find it, parse YAML with positions, validate every key, resolve
//! defaults and paths. The result is a `spec::Config` or every error found.

pub mod dotenv;
pub mod duration;
pub mod error;
pub mod glob;
#[cfg(test)]
mod golden;
mod groups;
mod health;
mod httpkeys;
mod keys;
mod load;
pub mod logkeys;
#[cfg(test)]
mod readme;
pub mod resolve;
pub mod signal;
pub mod spec;
pub mod values;
pub mod yaml;

pub use error::{ConfigError, Rejected};
pub use spec::{
    AutoRestart, Catchup, Condition, Config, Dependency, FirstRun, Limits, NotifySpec, OnUnhealthy,
    Output, Overlap, Probe, ProgramSpec, Ready, Rotation, Schedule, Signal, SignalTarget,
};

use std::path::Path;

/// `load`, but a config with errors keeps its warnings too: what `sup check` prints.
pub fn check(path: &Path) -> Result<Config, Rejected> {
    let cwd = std::env::current_dir().unwrap_or_else(|_| std::path::PathBuf::from("/"));
    load::check_in(path, &cwd)
}

/// Load and validate the config at `path` (a YAML file or a directory of `*.job` files).
/// Returns every error found, not only the first, sorted by file and line. Files in errors are
/// shown relative to the current directory when they are under it.
pub fn load(path: &Path) -> Result<Config, Vec<ConfigError>> {
    let cwd = std::env::current_dir().unwrap_or_else(|_| std::path::PathBuf::from("/"));
    load_in(path, &cwd)
}

/// `load` as if run from `cwd`: relative paths start there and files under it are shown
/// relative to it. Tests use it to get the same messages wherever they run.
pub fn load_in(path: &Path, cwd: &Path) -> Result<Config, Vec<ConfigError>> {
    load::load_in(path, cwd)
}

/// `load` of a main file given as text (see `load::load_text`): no disk, no includes.
pub fn load_text(text: &str, cwd: &Path) -> Result<Config, Vec<ConfigError>> {
    load::load_text(text, cwd)
}
