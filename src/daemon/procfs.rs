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

/// Resident bytes of a process alone, from `/proc/PID/statm` (its second field, the figure
/// `stat` gives too): the kernel writes it from the memory counters alone, where `stat`
/// gathers every thread's times and the wait channel, so a sum over many processes costs
/// far less.
pub fn rss(pid: u32) -> Option<u64> {
    let mut buf = [0u8; 256];
    let text = read_small(&format!("/proc/{pid}/statm"), &mut buf)?;
    statm_rss_pages(text).map(|pages| pages * page_size())
}

/// The resident pages of a `statm` line (`size resident shared text lib data dt`).
fn statm_rss_pages(text: &str) -> Option<u64> {
    text.split_ascii_whitespace().nth(1)?.parse().ok()
}

/// The client end of a local TCP connection (`client` → `server`, as the daemon accepted it),
/// from `/proc/net/tcp` or `tcp6`: the fallback of `sockdiag` when the kernel has no TCP
/// sock_diag. `None` when the socket is not found. A v4-mapped pair is looked for in the
/// IPv4 table (an IPv4 client of a dual-stack listener), then in the IPv6 one.
pub fn tcp_peer(
    client: std::net::SocketAddr,
    server: std::net::SocketAddr,
) -> Option<super::sockdiag::Found> {
    use std::net::SocketAddr;
    let v4 = |a: SocketAddr| SocketAddr::new(a.ip().to_canonical(), a.port());
    let mut tries = Vec::new();
    if v4(client).is_ipv4() && v4(server).is_ipv4() {
        tries.push(("/proc/net/tcp", v4(client), v4(server)));
    }
    if client.is_ipv6() {
        tries.push(("/proc/net/tcp6", client, server));
    }
    tries.into_iter().find_map(|(table, c, s)| {
        // One line per socket of the namespace: read only when the kernel cannot be asked.
        let text = std::fs::read_to_string(table).ok()?;
        tcp_owner(&text, c, s)
    })
}

/// In a `/proc/net/tcp{,6}` table, the socket whose local address is `local` and whose
/// remote one is `remote`: its state, uid and inode. Addresses are printed as the kernel
/// holds them: each 32-bit word of the address in host byte order as 8 hex digits, then the
/// port as 4.
pub fn tcp_owner(
    table: &str,
    local: std::net::SocketAddr,
    remote: std::net::SocketAddr,
) -> Option<super::sockdiag::Found> {
    let (want_local, want_remote) = (proc_addr(local), proc_addr(remote));
    table.lines().skip(1).find_map(|line| {
        let mut fields = line.split_whitespace();
        let (_sl, l, r) = (fields.next()?, fields.next()?, fields.next()?);
        if !l.eq_ignore_ascii_case(&want_local) || !r.eq_ignore_ascii_case(&want_remote) {
            return None;
        }
        let state = u8::from_str_radix(fields.next()?, 16).ok()?;
        // tx_queue:rx_queue, tr:tm->when, retrnsmt, then uid, timeout, inode.
        let uid = fields.nth(3)?.parse().ok()?;
        let inode = fields.nth(1)?.parse().ok()?;
        Some(super::sockdiag::Found { state, uid, inode })
    })
}

fn proc_addr(addr: std::net::SocketAddr) -> String {
    let words: Vec<[u8; 4]> = match addr.ip() {
        std::net::IpAddr::V4(ip) => vec![ip.octets()],
        std::net::IpAddr::V6(ip) => {
            let o = ip.octets();
            (0..4)
                .map(|i| [o[4 * i], o[4 * i + 1], o[4 * i + 2], o[4 * i + 3]])
                .collect()
        }
    };
    let mut out: String = words
        .iter()
        .map(|w| format!("{:08X}", u32::from_ne_bytes(*w)))
        .collect();
    out.push_str(&format!(":{:04X}", addr.port()));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statm_gives_the_resident_pages() {
        assert_eq!(statm_rss_pages("2263 384 330 6 0 112 0\n"), Some(384));
        assert_eq!(statm_rss_pages("2263\n"), None);
        assert_eq!(statm_rss_pages(""), None);
    }

    #[test]
    fn statm_and_stat_agree_on_the_resident_set() {
        let me = std::process::id();
        let from_stat = usage(me).expect("stat").1;
        let from_statm = rss(me).expect("statm");
        // Read one after the other: a page or a few may come or go between them.
        let diff = from_stat.abs_diff(from_statm);
        assert!(
            from_statm > 0 && diff < 1 << 20,
            "{from_stat} vs {from_statm}"
        );
    }

    #[test]
    fn the_owner_of_a_loopback_connection_is_found_in_the_table() {
        // As the kernel prints them on a little-endian host.
        let table = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode\n\
            0: 0100007F:1F90 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 1 1\n\
            1: 0100007F:C350 0100007F:1F90 01 00000000:00000000 00:00000000 00000000  1000        0 2 1\n\
            2: 0100007F:1F90 0100007F:C350 01 00000000:00000000 00:00000000 00000000     0        0 3 1\n\
            3: 0100007F:C351 0100007F:1F90 06 00000000:00000000 03:00001000 00000000     0        0 0 3\n";
        let tw_client: std::net::SocketAddr = "127.0.0.1:50001".parse().expect("addr");
        let client: std::net::SocketAddr = "127.0.0.1:50000".parse().expect("addr");
        let server: std::net::SocketAddr = "127.0.0.1:8080".parse().expect("addr");
        if cfg!(target_endian = "little") {
            let found = tcp_owner(table, client, server).expect("client");
            assert_eq!((found.state, found.uid, found.inode), (1, 1000, 2));
            assert!(found.is_full());
            assert_eq!(tcp_owner(table, server, client).map(|f| f.uid), Some(0));
            // A time-wait entry: uid 0, inode 0, state 06. Not a full socket.
            let tw = tcp_owner(table, tw_client, server).expect("time-wait");
            assert_eq!((tw.state, tw.uid, tw.inode), (6, 0, 0));
            assert!(!tw.is_full());
        }
        let other: std::net::SocketAddr = "127.0.0.1:50002".parse().expect("addr");
        assert_eq!(tcp_owner(table, other, server), None);
    }

    #[test]
    fn a_real_connection_is_ours() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let server = listener.local_addr().expect("addr");
        let stream = std::net::TcpStream::connect(server).expect("connect");
        let client = stream.local_addr().expect("addr");
        let (_accepted, _) = listener.accept().expect("accept");
        let found = tcp_peer(client, server).expect("in the table");
        assert_eq!(found.uid, nix::unistd::geteuid().as_raw());
        assert!(found.is_full());
    }
}
