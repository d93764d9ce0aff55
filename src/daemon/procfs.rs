//! The daemon's reads of `/proc/PID/stat`; the parsing is `core::usage::parse_stat`.

use std::sync::OnceLock;

use crate::core::usage::{parse_stat, ProcStat};

pub fn stat(pid: u32) -> Option<ProcStat> {
    parse_stat(&std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?)
}

/// Clock ticks per second (`CLK_TCK`), the unit of the CPU and start times in `stat`.
pub fn ticks_per_s() -> u64 {
    static HZ: OnceLock<u64> = OnceLock::new();
    *HZ.get_or_init(|| sysconf(nix::unistd::SysconfVar::CLK_TCK, 100))
}

/// Bytes per page, the unit of the RSS in `stat`.
pub fn page_size() -> u64 {
    static PAGE: OnceLock<u64> = OnceLock::new();
    *PAGE.get_or_init(|| sysconf(nix::unistd::SysconfVar::PAGE_SIZE, 4096))
}

fn sysconf(var: nix::unistd::SysconfVar, fallback: u64) -> u64 {
    nix::unistd::sysconf(var)
        .ok()
        .flatten()
        .filter(|&v| v > 0)
        .map_or(fallback, |v| v as u64)
}

/// CPU ticks and resident bytes of a process, from one read.
pub fn usage(pid: u32) -> Option<(u64, u64)> {
    stat(pid).map(|s| (s.cpu_ticks, s.rss_pages * page_size()))
}
