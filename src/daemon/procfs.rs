//! The daemon's reads of `/proc/PID/stat`; the parsing is `core::usage::parse_stat`.

use std::sync::OnceLock;

use crate::core::usage::{parse_stat, ProcStat};

pub fn stat(pid: u32) -> Option<ProcStat> {
    let mut buf = [0u8; 2048];
    let text = read_small(&format!("/proc/{pid}/stat"), &mut buf)?;
    parse_stat(text)
}

/// A small `/proc` file in three syscalls: open, one read, close. procfs hands a file over
/// whole to a read whose buffer holds it, so a short read is the end (`read_to_string` would
/// add a `statx` and two more reads, which a `/metrics` scrape pays per process). A file that
/// fills the buffer is not one of those and gives `None`.
fn read_small<'b>(path: &str, buf: &'b mut [u8]) -> Option<&'b str> {
    use std::io::Read;
    let mut file = std::fs::File::open(path).ok()?;
    let n = loop {
        match file.read(buf) {
            Ok(n) => break n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(_) => return None,
        }
    };
    if n == buf.len() {
        return None;
    }
    std::str::from_utf8(&buf[..n]).ok()
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
