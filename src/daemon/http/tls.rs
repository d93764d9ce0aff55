//! HTTPS for `daemon.http.tls`: the certificate and key read at start, and a rustls
//! `ServerConnection` driven by a connection's non-blocking socket.
//!
//! Nothing here blocks. `read` moves TLS records from the socket into rustls
//! (`read_tls`), decrypts them (`process_new_packets`), answers the handshake (`flush`,
//! `write_tls`) and hands back plaintext; `write` queues plaintext in rustls (at most its
//! buffer limit) and sends what the socket takes; every `WouldBlock` ends the attempt and
//! the loop comes back at the next readiness event. So the handshake is part of reading the
//! request: it counts toward the head deadline like the head's own bytes do.

use std::io::{self, Read, Write};
use std::path::Path;
use std::sync::Arc;

use mio::net::TcpStream;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::{ServerConfig, ServerConnection};

use crate::config::spec::TlsSpec;

/// A PEM file larger than this is not a certificate chain or a key.
const MAX_PEM: u64 = 1 << 20;

/// The server's TLS settings, from the PEM files `spec` names. An error names the file.
pub fn server_config(spec: &TlsSpec) -> Result<Arc<ServerConfig>, String> {
    let cert_pem = read_pem(&spec.cert, "certificate")?;
    let key_pem = read_pem(&spec.key, "key")?;
    let cert_shown = spec.cert.display();
    let key_shown = spec.key.display();
    let mut chain = Vec::new();
    for item in CertificateDer::pem_slice_iter(&cert_pem) {
        match item {
            Ok(c) => chain.push(c),
            Err(e) => {
                return Err(format!(
                    "the TLS certificate file {cert_shown} is not valid PEM: {e}"
                ))
            }
        }
    }
    if chain.is_empty() {
        return Err(format!(
            "the TLS certificate file {cert_shown} holds no PEM certificate \
             (-----BEGIN CERTIFICATE-----)"
        ));
    }
    let key = PrivateKeyDer::from_pem_slice(&key_pem).map_err(|e| match e {
        rustls::pki_types::pem::Error::NoItemsFound => format!(
            "the TLS key file {key_shown} holds no PEM private key (-----BEGIN PRIVATE KEY-----)"
        ),
        e => format!("the TLS key file {key_shown} is not a valid PEM private key: {e}"),
    })?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("TLS: {e}"))?
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .map(Arc::new)
        .map_err(|e| match e {
            rustls::Error::InconsistentKeys(_) => {
                format!("the TLS key in {key_shown} does not match the certificate in {cert_shown}")
            }
            e => format!("the TLS certificate {cert_shown} or key {key_shown} is unusable: {e}"),
        })
}

fn read_pem(path: &Path, what: &str) -> Result<Vec<u8>, String> {
    use std::os::unix::fs::OpenOptionsExt;
    let shown = path.display();
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(nix::libc::O_CLOEXEC | nix::libc::O_NONBLOCK)
        .open(path)
        .map_err(|e| format!("unable to read the TLS {what} file {shown}: {e}"))?;
    match file.metadata() {
        Ok(m) if m.is_file() => {}
        Ok(_) => return Err(format!("the TLS {what} file {shown} is not a regular file")),
        Err(e) => return Err(format!("unable to read the TLS {what} file {shown}: {e}")),
    }
    let mut bytes = Vec::new();
    file.take(MAX_PEM + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| format!("unable to read the TLS {what} file {shown}: {e}"))?;
    if bytes.len() as u64 > MAX_PEM {
        return Err(format!(
            "the TLS {what} file {shown} is larger than {} KiB",
            MAX_PEM >> 10
        ));
    }
    Ok(bytes)
}

/// One connection's TLS state.
pub struct Tls {
    conn: ServerConnection,
    /// Bytes came from the peer (the handshake's or a request's): the head deadline runs.
    pub heard: bool,
    /// The answer is out of rustls' hands once this is flushed: then shut the socket.
    shut_pending: bool,
}

impl Tls {
    pub fn new(config: &Arc<ServerConfig>) -> Result<Tls, rustls::Error> {
        Ok(Tls {
            conn: ServerConnection::new(Arc::clone(config))?,
            heard: false,
            shut_pending: false,
        })
    }

    /// Plaintext into `buf`: `Ok(0)` when the peer closed, `WouldBlock` when nothing more
    /// can be had now. A peer that does not speak TLS (a plain HTTP request) is an error,
    /// after its alert is sent as far as the socket takes it.
    pub fn read(&mut self, sock: &mut TcpStream, buf: &mut [u8]) -> io::Result<usize> {
        loop {
            match self.conn.reader().read(buf) {
                Ok(n) => return Ok(n),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(e) => return Err(e),
            }
            match self.conn.read_tls(sock) {
                Ok(0) => return Ok(0),
                Ok(_) => self.heard = true,
                Err(e) => return Err(e),
            }
            if let Err(e) = self.conn.process_new_packets() {
                let _ = self.flush(sock);
                return Err(io::Error::new(io::ErrorKind::InvalidData, e));
            }
            // The handshake's answers; what the socket does not take now goes on the next
            // writable event.
            match self.flush(sock) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(e) => return Err(e),
            }
        }
    }

    /// Queue plaintext and send what the socket takes: how much rustls took, or
    /// `WouldBlock` when it holds all it may and the socket takes no more.
    pub fn write(&mut self, sock: &mut TcpStream, buf: &[u8]) -> io::Result<usize> {
        for _ in 0..2 {
            let n = self.conn.writer().write(buf)?;
            match self.flush(sock) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    return if n == 0 { Err(e) } else { Ok(n) };
                }
                Err(e) => return Err(e),
            }
            if n > 0 || buf.is_empty() {
                return Ok(n);
            }
        }
        Err(io::ErrorKind::WouldBlock.into())
    }

    /// Send the records rustls holds, until the socket would block.
    pub fn flush(&mut self, sock: &mut TcpStream) -> io::Result<()> {
        while self.conn.wants_write() {
            if self.conn.write_tls(sock)? == 0 {
                return Err(io::ErrorKind::WriteZero.into());
            }
        }
        Ok(())
    }

    /// The answer is all queued: say close_notify, and shut the socket's writing side once
    /// everything is sent (now, or at a later `pending`).
    pub fn shutdown(&mut self, sock: &mut TcpStream) -> io::Result<()> {
        self.conn.send_close_notify();
        match self.flush(sock) {
            Ok(()) => sock.shutdown(std::net::Shutdown::Write),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                self.shut_pending = true;
                Ok(())
            }
            Err(e) => Err(e),
        }
    }

    /// At every readiness event: send what is queued, and shut the socket when the end of
    /// the answer is out.
    pub fn pending(&mut self, sock: &mut TcpStream) -> io::Result<()> {
        match self.flush(sock) {
            Ok(()) if self.shut_pending => {
                self.shut_pending = false;
                sock.shutdown(std::net::Shutdown::Write)
            }
            Ok(()) => Ok(()),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => Ok(()),
            Err(e) => Err(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::io::{Read, Write};
    use std::path::PathBuf;
    use std::time::{Duration, Instant};

    use super::super::request::Parsed;
    use super::super::{HttpConn, Progress};
    use super::*;

    fn fixture(name: &str) -> PathBuf {
        PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("fixtures/tls")
            .join(name)
    }

    fn spec(cert: &str, key: &str) -> TlsSpec {
        TlsSpec {
            cert: fixture(cert),
            key: fixture(key),
        }
    }

    #[test]
    fn bad_files_are_named() {
        assert!(server_config(&spec("test-cert.pem", "test-key.pem")).is_ok());
        let err = |c: &str, k: &str| server_config(&spec(c, k)).err().unwrap_or_default();
        let e = err("none.pem", "test-key.pem");
        assert!(
            e.starts_with("unable to read the TLS certificate file "),
            "{e}"
        );
        assert!(e.contains("none.pem"), "{e}");
        let e = err("test-key.pem", "test-key.pem");
        assert!(e.contains("holds no PEM certificate"), "{e}");
        let e = err("test-cert.pem", "test-cert.pem");
        assert!(e.contains("test-cert.pem holds no PEM private key"), "{e}");
    }

    /// A TLS client on another thread, the server's connection driven here as the loop
    /// drives it: the handshake, a request, and an answer far larger than rustls' buffer
    /// and the socket's, all without blocking.
    #[test]
    fn an_https_connection_is_driven_without_blocking() {
        let config = server_config(&spec("test-cert.pem", "test-key.pem")).expect("config");
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let addr = listener.local_addr().expect("addr");
        let client = std::thread::spawn(move || {
            let sock = std::net::TcpStream::connect(addr).expect("connect");
            let ca = fixture("test-cert.pem");
            let tls = crate::control::tls_client::client_config(Some(&ca)).expect("client");
            let mut wire = crate::control::tls_client::handshake(
                sock,
                "127.0.0.1",
                tls,
                Duration::from_secs(10),
                "test",
            )
            .expect("handshake");
            wire.write_all(b"GET /big HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
                .expect("request");
            wire.flush().expect("flush");
            // Read slowly at first, so the server meets a full socket.
            std::thread::sleep(Duration::from_millis(200));
            let mut answer = Vec::new();
            wire.read_to_end(&mut answer).expect("answer");
            answer
        });
        let (server, peer) = listener.accept().expect("accept");
        server.set_nonblocking(true).expect("nonblocking");
        let mut conn = HttpConn::new(mio::net::TcpStream::from_std(server), peer, Instant::now());
        assert!(conn.start_tls(&config));
        let until = Instant::now() + Duration::from_secs(10);
        let settle = |conn: &mut HttpConn| loop {
            let t0 = Instant::now();
            let p = conn.io(Instant::now());
            assert!(t0.elapsed() < Duration::from_millis(500), "io blocked");
            match p {
                Progress::Idle if Instant::now() < until => {
                    std::thread::sleep(Duration::from_millis(2))
                }
                other => return other,
            }
        };
        let Progress::Request(Parsed::Request(r), _) = settle(&mut conn) else {
            panic!("no request over TLS");
        };
        assert_eq!(r.path, "/big");
        let body = vec![b'x'; 3 << 20];
        let mut progress = conn.respond(
            super::super::request::response(200, "text/plain", "", &body, false),
            Instant::now(),
        );
        if matches!(progress, Progress::Idle) {
            progress = settle(&mut conn);
        }
        assert!(
            matches!(progress, Progress::Close),
            "the peer's close ends it"
        );
        let answer = client.join().expect("client thread");
        assert!(answer.starts_with(b"HTTP/1.1 200 OK\r\n"));
        assert!(answer.ends_with(&body[..1024]));
        assert_eq!(
            answer.len()
                - answer
                    .windows(4)
                    .position(|w| w == b"\r\n\r\n")
                    .unwrap_or(0)
                - 4,
            body.len()
        );
    }
}
