//! `sup --url https://…`: the remote CLI's connection, plain TCP or TLS (rustls, blocking,
//! in the client only). The server's certificate is checked against the Mozilla roots built
//! in (webpki-roots, the same set the notification mail trusts), or, with `--ca-file`
//! (`$SUP_CA_FILE`), against the certificates of that PEM file only: as CAs, or as the very
//! certificate the daemon shows (a self-signed one, pinned). The name checked is the URL's host (an IP address is
//! checked against the certificate's IP entries).

use std::io::{self, Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use rustls::{ClientConfig, ClientConnection, RootCertStore, StreamOwned};

use crate::fail::Fail;

/// One connection to the daemon.
#[derive(Debug)]
pub enum Wire {
    Plain(TcpStream),
    Tls(Box<StreamOwned<ClientConnection, TcpStream>>),
}

impl Wire {
    /// The TCP socket underneath, for timeouts and for closing from another thread.
    pub fn tcp(&self) -> &TcpStream {
        match self {
            Wire::Plain(s) => s,
            Wire::Tls(t) => &t.sock,
        }
    }
}

impl Read for Wire {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Wire::Plain(s) => s.read(buf),
            Wire::Tls(t) => match t.read(buf) {
                // A daemon that closes without close_notify after a complete answer: the
                // answer's own length or the end of its stream says whether it was whole.
                Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => Ok(0),
                other => other,
            },
        }
    }
}

impl Write for Wire {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Wire::Plain(s) => s.write(buf),
            Wire::Tls(t) => t.write(buf),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        match self {
            Wire::Plain(s) => s.flush(),
            Wire::Tls(t) => t.flush(),
        }
    }
}

/// The client's TLS settings: the roots built in, or the CA file's certificates.
pub fn client_config(ca_file: Option<&Path>) -> Result<Arc<ClientConfig>, Fail> {
    let mut roots = RootCertStore::empty();
    let mut pinned = Vec::new();
    match ca_file {
        None => roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned()),
        Some(path) => {
            let shown = path.display();
            let bytes = std::fs::read(path).map_err(|e| {
                Fail::new(format!(
                    "cannot read the CA file {shown}: {}",
                    super::client::cause(&e)
                ))
            })?;
            let mut found = 0;
            for cert in CertificateDer::pem_slice_iter(&bytes) {
                let cert = cert
                    .map_err(|e| Fail::new(format!("the CA file {shown} is not valid PEM: {e}")))?;
                // A certificate webpki cannot use as an anchor may still be pinned.
                let _ = roots.add(cert.clone());
                pinned.push(cert);
                found += 1;
            }
            if found == 0 {
                return Err(Fail::new(format!(
                    "the CA file {shown} holds no PEM certificate"
                ))
                .hint("--ca-file takes the PEM certificate (or CA) the daemon's daemon.http.tls.cert was issued by"));
            }
        }
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = ClientConfig::builder_with_provider(Arc::clone(&provider))
        .with_safe_default_protocol_versions()
        .map_err(|e| Fail::new(format!("TLS: {e}")))?;
    let config = if pinned.is_empty() {
        builder.with_root_certificates(roots).with_no_client_auth()
    } else {
        let webpki = rustls::client::WebPkiServerVerifier::builder_with_provider(
            Arc::new(roots),
            Arc::clone(&provider),
        )
        .build()
        .map_err(|e| Fail::new(format!("TLS: {e}")))?;
        builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(Pinned {
                pinned,
                webpki,
                provider,
            }))
            .with_no_client_auth()
    };
    Ok(Arc::new(config))
}

/// `--ca-file` trusts its certificates as CAs, and also as themselves: a server whose
/// certificate is byte for byte one of them is accepted without a chain (what `openssl req
/// -x509` makes is marked as a CA, which path building refuses as a server's certificate).
/// The handshake's signatures are still checked against that certificate's key, so the
/// server must hold the private key.
#[derive(Debug)]
struct Pinned {
    pinned: Vec<CertificateDer<'static>>,
    webpki: Arc<rustls::client::WebPkiServerVerifier>,
    provider: Arc<rustls::crypto::CryptoProvider>,
}

impl rustls::client::danger::ServerCertVerifier for Pinned {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp: &[u8],
        now: rustls::pki_types::UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        if self
            .pinned
            .iter()
            .any(|p| p.as_ref() == end_entity.as_ref())
        {
            return Ok(rustls::client::danger::ServerCertVerified::assertion());
        }
        self.webpki
            .verify_server_cert(end_entity, intermediates, server_name, ocsp, now)
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

/// Speak TLS over `sock` to `host` and finish the handshake within `within`.
pub fn handshake(
    sock: TcpStream,
    host: &str,
    config: Arc<ClientConfig>,
    within: Duration,
    shown: &str,
) -> Result<Wire, Fail> {
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    let name = ServerName::try_from(bare.to_string())
        .map_err(|e| Fail::new(format!("{shown}: {bare} is not a host name for TLS: {e}")))?;
    let mut conn = ClientConnection::new(config, name)
        .map_err(|e| Fail::new(format!("{shown}: cannot start TLS: {e}")))?;
    let mut sock = sock;
    let within = Some(within.max(Duration::from_millis(1)));
    let _ = sock.set_read_timeout(within);
    let _ = sock.set_write_timeout(within);
    while conn.is_handshaking() {
        if let Err(e) = conn.complete_io(&mut sock) {
            let hint = if e.to_string().contains("certificate") {
                "a self-signed daemon certificate needs --ca-file PATH (or $SUP_CA_FILE): the PEM of daemon.http.tls.cert"
            } else {
                "is this the URL of a sup daemon's HTTPS listener (daemon.http.tls)?"
            };
            return Err(Fail::new(format!(
                "{shown}: the TLS handshake failed: {}",
                super::client::cause(&e)
            ))
            .hint(hint));
        }
    }
    let _ = sock.set_read_timeout(None);
    let _ = sock.set_write_timeout(None);
    Ok(Wire::Tls(Box::new(StreamOwned::new(conn, sock))))
}
