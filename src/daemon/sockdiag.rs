//! Who owns the client end of a local TCP connection, asked of the kernel by its exact
//! 4-tuple over `NETLINK_SOCK_DIAG` (`inet_diag`): how the HTTP interface tells who is asking
//! on a loopback listener without a token, as `SO_PEERCRED` does on the control socket.
//!
//! Only a full socket counts: state ESTABLISHED with an inode. A client that sent its request
//! and closed at once leaves an orphaned or time-wait socket the kernel owns (uid 0, inode 0);
//! that is nobody's word, and is refused. One request, one answer: the kernel answers in the
//! `send` itself, so the `recv` after it never waits (`MSG_DONTWAIT` all the same).
//!
//! When the kernel has no sock_diag for TCP (module absent), `/proc/net/tcp{,6}` is read
//! instead, with the same rule (`procfs::tcp_owner`).

use std::net::{IpAddr, SocketAddr};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

use nix::libc;

use super::procfs;

/// `linux/sock_diag.h`.
const SOCK_DIAG_BY_FAMILY: u16 = 20;
/// `NLMSG_ERROR` (`linux/netlink.h`).
const NLMSG_ERROR: u16 = 2;
/// `TCP_ESTABLISHED` (`net/tcp_states.h`).
const TCP_ESTABLISHED: u8 = 1;
/// No cookie: the kernel looks the socket up by its addresses alone.
const NO_COOKIE: u32 = !0;

const NLMSG_HDR_LEN: usize = 16;
/// `struct inet_diag_sockid`: ports, two 16-byte addresses, interface, cookie.
const SOCKID_LEN: usize = 48;
/// `struct inet_diag_req_v2`: family, protocol, ext, pad, states, id.
const REQ_LEN: usize = 8 + SOCKID_LEN;
/// `struct inet_diag_msg`: family, state, timer, retrans, id, expires, rqueue, wqueue, uid,
/// inode.
const MSG_LEN: usize = 4 + SOCKID_LEN + 20;
/// The answer to one exact lookup is one message (attributes only when asked for); the
/// buffer is bounded all the same.
const RECV_BUF: usize = 8192;

/// What the kernel says of a socket.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Found {
    pub state: u8,
    pub uid: u32,
    pub inode: u32,
}

impl Found {
    /// A socket a process holds, connected: the only kind whose uid is someone's word.
    pub fn is_full(&self) -> bool {
        self.state == TCP_ESTABLISHED && self.inode != 0
    }
}

/// One answer decoded.
#[derive(Debug, PartialEq, Eq)]
pub enum Answer {
    Found(Found),
    /// `NLMSG_ERROR` with this errno (positive); 0 is an acknowledgement.
    Error(i32),
}

/// The netlink socket, opened at the first lookup and kept.
#[derive(Default)]
pub struct SockDiag {
    fd: Option<OwnedFd>,
    seq: u32,
}

/// Where the lookup's word came from, for the refusal's text.
#[derive(Debug, PartialEq, Eq)]
pub enum Lookup {
    /// A full socket with this owner.
    Owner(u32),
    /// The socket is there but not a full connected one (closed, time-wait).
    NotFull(u8),
    NotFound,
    Failed(String),
}

/// A lookup's address family and the two addresses as the kernel wants them: a v4-mapped
/// pair is the IPv4 connection it is (the kernel keeps it in the IPv4 table).
fn canonical(addr: SocketAddr) -> SocketAddr {
    SocketAddr::new(addr.ip().to_canonical(), addr.port())
}

fn addr_words(ip: IpAddr) -> [u8; 16] {
    let mut out = [0u8; 16];
    match ip {
        IpAddr::V4(v4) => out[..4].copy_from_slice(&v4.octets()),
        IpAddr::V6(v6) => out.copy_from_slice(&v6.octets()),
    }
    out
}

/// The request for the socket whose local end is `local` and remote end `remote`: an exact
/// lookup (no `NLM_F_DUMP`), TCP, ESTABLISHED asked for.
pub fn encode_request(local: SocketAddr, remote: SocketAddr, seq: u32) -> Option<Vec<u8>> {
    let (local, remote) = (canonical(local), canonical(remote));
    let family = match (local.ip(), remote.ip()) {
        (IpAddr::V4(_), IpAddr::V4(_)) => libc::AF_INET,
        (IpAddr::V6(_), IpAddr::V6(_)) => libc::AF_INET6,
        _ => return None,
    };
    let total = NLMSG_HDR_LEN + REQ_LEN;
    let mut m = Vec::with_capacity(total);
    // struct nlmsghdr
    m.extend_from_slice(&(total as u32).to_ne_bytes());
    m.extend_from_slice(&SOCK_DIAG_BY_FAMILY.to_ne_bytes());
    m.extend_from_slice(&(libc::NLM_F_REQUEST as u16).to_ne_bytes());
    m.extend_from_slice(&seq.to_ne_bytes());
    m.extend_from_slice(&0u32.to_ne_bytes());
    // struct inet_diag_req_v2
    m.push(family as u8);
    m.push(libc::IPPROTO_TCP as u8);
    m.push(0); // idiag_ext: no attributes
    m.push(0); // pad
    m.extend_from_slice(&(1u32 << TCP_ESTABLISHED).to_ne_bytes());
    // struct inet_diag_sockid: ports and addresses in network order
    m.extend_from_slice(&local.port().to_be_bytes());
    m.extend_from_slice(&remote.port().to_be_bytes());
    m.extend_from_slice(&addr_words(local.ip()));
    m.extend_from_slice(&addr_words(remote.ip()));
    m.extend_from_slice(&0u32.to_ne_bytes()); // idiag_if: any
    m.extend_from_slice(&NO_COOKIE.to_ne_bytes());
    m.extend_from_slice(&NO_COOKIE.to_ne_bytes());
    debug_assert_eq!(m.len(), total);
    Some(m)
}

fn u16_at(b: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_ne_bytes(b.get(at..at + 2)?.try_into().ok()?))
}
fn u32_at(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_ne_bytes(b.get(at..at + 4)?.try_into().ok()?))
}

/// The answer to request `seq` in one datagram from the kernel, if it holds one; messages of
/// other requests are passed over. Lengths are checked against what was received.
pub fn decode_answer(buf: &[u8], seq: u32) -> Option<Answer> {
    let mut at = 0usize;
    while buf.len().saturating_sub(at) >= NLMSG_HDR_LEN {
        let len = u32_at(buf, at)? as usize;
        let kind = u16_at(buf, at + 4)?;
        let msg_seq = u32_at(buf, at + 8)?;
        if len < NLMSG_HDR_LEN || len > buf.len() - at {
            return None;
        }
        let payload = &buf[at + NLMSG_HDR_LEN..at + len];
        if msg_seq == seq {
            match kind {
                NLMSG_ERROR => {
                    let err = i32::from_ne_bytes(payload.get(0..4)?.try_into().ok()?);
                    return Some(Answer::Error(err.saturating_neg()));
                }
                SOCK_DIAG_BY_FAMILY if payload.len() >= MSG_LEN => {
                    let tail = 4 + SOCKID_LEN;
                    return Some(Answer::Found(Found {
                        state: payload[1],
                        uid: u32_at(payload, tail + 12)?,
                        inode: u32_at(payload, tail + 16)?,
                    }));
                }
                _ => return None,
            }
        }
        // NLMSG_ALIGN
        at = at.checked_add((len + 3) & !3)?;
    }
    None
}

impl SockDiag {
    fn socket(&mut self) -> Result<&OwnedFd, i32> {
        if self.fd.is_none() {
            // SAFETY: plain socket(2); the descriptor is owned at once.
            let fd = unsafe {
                libc::socket(
                    libc::AF_NETLINK,
                    libc::SOCK_DGRAM | libc::SOCK_CLOEXEC,
                    libc::NETLINK_SOCK_DIAG,
                )
            };
            if fd < 0 {
                return Err(nix::errno::Errno::last_raw());
            }
            // SAFETY: fd is a fresh descriptor nothing else owns.
            self.fd = Some(unsafe { OwnedFd::from_raw_fd(fd) });
        }
        self.fd.as_ref().ok_or(libc::EBADF)
    }

    /// One exact lookup: the socket whose local end is `local`, remote end `remote`.
    fn ask(&mut self, local: SocketAddr, remote: SocketAddr) -> Result<Option<Found>, i32> {
        self.seq = self.seq.wrapping_add(1);
        let seq = self.seq;
        let req = encode_request(local, remote, seq).ok_or(libc::EAFNOSUPPORT)?;
        let fd = self.socket()?.as_raw_fd();
        // SAFETY: an all-zero sockaddr_nl with the family set is the kernel's address.
        let mut kernel: libc::sockaddr_nl = unsafe { std::mem::zeroed() };
        kernel.nl_family = libc::AF_NETLINK as libc::sa_family_t;
        // SAFETY: req and kernel outlive the call; the lengths are theirs.
        let sent = unsafe {
            libc::sendto(
                fd,
                req.as_ptr().cast(),
                req.len(),
                libc::MSG_DONTWAIT,
                std::ptr::addr_of!(kernel).cast(),
                std::mem::size_of::<libc::sockaddr_nl>() as libc::socklen_t,
            )
        };
        if sent < 0 {
            return Err(nix::errno::Errno::last_raw());
        }
        let mut buf = vec![0u8; RECV_BUF];
        // Answers to earlier requests (none are expected) are passed over; a few at most.
        for _ in 0..8 {
            // SAFETY: buf is RECV_BUF bytes long and outlives the call.
            let got = unsafe {
                libc::recv(
                    fd,
                    buf.as_mut_ptr().cast(),
                    buf.len(),
                    libc::MSG_DONTWAIT | libc::MSG_TRUNC,
                )
            };
            if got < 0 {
                return Err(nix::errno::Errno::last_raw());
            }
            let got = usize::try_from(got).unwrap_or(0).min(buf.len());
            match decode_answer(&buf[..got], seq) {
                Some(Answer::Found(f)) => return Ok(Some(f)),
                Some(Answer::Error(0)) => return Ok(None),
                Some(Answer::Error(e)) if e == libc::ENOENT => return Ok(None),
                Some(Answer::Error(e)) => return Err(e),
                None => continue,
            }
        }
        Err(libc::EPROTO)
    }

    /// The owner of the client end of a connection the daemon accepted (`client` →
    /// `server`).
    pub fn peer(&mut self, client: SocketAddr, server: SocketAddr) -> Lookup {
        let unavailable = |e: i32| e == libc::EPROTONOSUPPORT || e == libc::EAFNOSUPPORT;
        match self.ask(client, server) {
            Ok(Some(f)) if f.is_full() => Lookup::Owner(f.uid),
            Ok(Some(f)) => Lookup::NotFull(f.state),
            // Not found, or no TCP diag in this kernel (it says ENOENT for both): the
            // daemon's own end is there for sure, so when that is not found either, the
            // kernel cannot tell and the table is read.
            Ok(None) => match self.ask(server, client) {
                Ok(Some(_)) => Lookup::NotFound,
                Ok(None) => from_table(client, server),
                Err(e) => Lookup::Failed(format!("sock_diag: {}", errno_text(e))),
            },
            Err(e) if unavailable(e) => from_table(client, server),
            Err(e) => Lookup::Failed(format!("sock_diag: {}", errno_text(e))),
        }
    }
}

fn errno_text(e: i32) -> String {
    nix::errno::Errno::from_raw(e).desc().to_string()
}

/// The fallback: `/proc/net/tcp{,6}`, with the same rule.
fn from_table(client: SocketAddr, server: SocketAddr) -> Lookup {
    match procfs::tcp_peer(client, server) {
        Some(f) if f.is_full() => Lookup::Owner(f.uid),
        Some(f) => Lookup::NotFull(f.state),
        None => Lookup::NotFound,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(s: &str) -> SocketAddr {
        s.parse().expect("addr")
    }

    #[test]
    fn the_request_is_an_exact_lookup_of_the_four_tuple() {
        let m = encode_request(addr("127.0.0.1:50000"), addr("127.0.0.2:8080"), 7).expect("v4");
        assert_eq!(m.len(), 72);
        assert_eq!(u32_at(&m, 0), Some(72));
        assert_eq!(u16_at(&m, 4), Some(SOCK_DIAG_BY_FAMILY));
        // NLM_F_REQUEST alone: no dump.
        assert_eq!(u16_at(&m, 6), Some(libc::NLM_F_REQUEST as u16));
        assert_eq!(u32_at(&m, 8), Some(7));
        assert_eq!(m[16], libc::AF_INET as u8);
        assert_eq!(m[17], libc::IPPROTO_TCP as u8);
        assert_eq!(u32_at(&m, 20), Some(1 << 1), "ESTABLISHED only");
        assert_eq!(
            &m[24..28],
            &[0xc3, 0x50, 0x1f, 0x90],
            "ports in network order"
        );
        assert_eq!(&m[28..32], &[127, 0, 0, 1]);
        assert_eq!(&m[44..48], &[127, 0, 0, 2]);
        assert_eq!(&m[64..72], &[0xff; 8], "no cookie");
    }

    #[test]
    fn a_v4_mapped_pair_is_looked_up_as_ipv4_and_v6_as_v6() {
        let m = encode_request(
            addr("[::ffff:127.0.0.1]:5"),
            addr("[::ffff:127.0.0.1]:6"),
            1,
        )
        .expect("mapped");
        assert_eq!(m[16], libc::AF_INET as u8);
        assert_eq!(&m[28..32], &[127, 0, 0, 1]);
        assert!(m[32..44].iter().all(|&b| b == 0));
        let m = encode_request(addr("[::1]:5"), addr("[::1]:6"), 1).expect("v6");
        assert_eq!(m[16], libc::AF_INET6 as u8);
        assert_eq!(m[43], 1);
        assert!(encode_request(addr("[::1]:5"), addr("127.0.0.1:6"), 1).is_none());
    }

    fn answer(kind: u16, seq: u32, payload: &[u8]) -> Vec<u8> {
        let mut m = Vec::new();
        m.extend_from_slice(&((NLMSG_HDR_LEN + payload.len()) as u32).to_ne_bytes());
        m.extend_from_slice(&kind.to_ne_bytes());
        m.extend_from_slice(&0u16.to_ne_bytes());
        m.extend_from_slice(&seq.to_ne_bytes());
        m.extend_from_slice(&0u32.to_ne_bytes());
        m.extend_from_slice(payload);
        m
    }

    fn diag_msg(state: u8, uid: u32, inode: u32) -> Vec<u8> {
        let mut p = vec![libc::AF_INET as u8, state, 0, 0];
        p.extend_from_slice(&[0; SOCKID_LEN]);
        p.extend_from_slice(&[0; 12]); // expires, rqueue, wqueue
        p.extend_from_slice(&uid.to_ne_bytes());
        p.extend_from_slice(&inode.to_ne_bytes());
        p
    }

    #[test]
    fn answers_are_decoded_with_their_lengths_checked() {
        let ok = answer(SOCK_DIAG_BY_FAMILY, 3, &diag_msg(1, 1000, 42));
        let found = Found {
            state: 1,
            uid: 1000,
            inode: 42,
        };
        assert_eq!(decode_answer(&ok, 3), Some(Answer::Found(found)));
        assert!(found.is_full());
        // A time-wait mini-socket: uid 0, no inode. Not a full socket.
        let tw = answer(SOCK_DIAG_BY_FAMILY, 3, &diag_msg(6, 0, 0));
        match decode_answer(&tw, 3) {
            Some(Answer::Found(f)) => assert!(!f.is_full()),
            other => panic!("{other:?}"),
        }
        // An orphan still ESTABLISHED-looking but without an inode is not one either.
        assert!(!Found {
            state: 1,
            uid: 0,
            inode: 0
        }
        .is_full());
        let mut err = (-libc::ENOENT).to_ne_bytes().to_vec();
        err.extend_from_slice(&[0; 16]);
        assert_eq!(
            decode_answer(&answer(NLMSG_ERROR, 3, &err), 3),
            Some(Answer::Error(libc::ENOENT))
        );
        // Another request's answer first, then ours, in one datagram.
        let mut both = answer(SOCK_DIAG_BY_FAMILY, 2, &diag_msg(1, 0, 9));
        both.extend_from_slice(&ok);
        assert_eq!(decode_answer(&both, 3), Some(Answer::Found(found)));
        // Truncated, lying about its length, or short: nothing.
        assert_eq!(decode_answer(&ok[..ok.len() - 1], 3), None);
        let mut liar = ok.clone();
        liar[0..4].copy_from_slice(&1000u32.to_ne_bytes());
        assert_eq!(decode_answer(&liar, 3), None);
        let mut tiny = ok.clone();
        tiny[0..4].copy_from_slice(&4u32.to_ne_bytes());
        assert_eq!(decode_answer(&tiny, 3), None);
        let short = answer(SOCK_DIAG_BY_FAMILY, 3, &diag_msg(1, 5, 5)[..40]);
        assert_eq!(decode_answer(&short, 3), None);
        assert_eq!(decode_answer(&[], 3), None);
    }

    #[test]
    fn a_real_connection_is_ours_and_a_closed_one_is_nobodys() {
        let mut diag = SockDiag::default();
        for host in ["127.0.0.1:0", "[::1]:0"] {
            let Ok(listener) = std::net::TcpListener::bind(host) else {
                continue;
            };
            let server = listener.local_addr().expect("addr");
            let stream = std::net::TcpStream::connect(server).expect("connect");
            let client = stream.local_addr().expect("addr");
            let (_accepted, _) = listener.accept().expect("accept");
            assert_eq!(
                diag.peer(client, server),
                Lookup::Owner(nix::unistd::geteuid().as_raw()),
                "{host}"
            );
            drop(stream);
            assert!(
                !matches!(diag.peer(client, server), Lookup::Owner(_)),
                "{host}: a closed client is nobody's"
            );
        }
    }
}
