//! `sup __notify`: the short-lived child that delivers one notification, so the daemon's loop
//! never waits on a network. It reads one `Delivery` as JSON on stdin, sends it (an email
//! through lettre's blocking SMTP transport, or one JSON line to the report address), and
//! exits 0 on success or 1 with the reason on stderr's first line.
//!
//! Every network step has a timeout, and the daemon kills the whole process group of a sender
//! that outlives `notify::SENDER_TIMEOUT` anyway. `Delivery` is the contract between the daemon
//! and this child (same binary, same version), not part of the control protocol.

use std::io::{Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// One step of SMTP or TCP may take this long.
const NET_TIMEOUT: Duration = Duration::from_secs(10);

/// The internal subcommand's name; not listed in `--help`.
pub const SUBCOMMAND: &str = "__notify";

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "via", rename_all = "snake_case")]
pub enum Delivery {
    Email {
        host: String,
        port: u16,
        starttls: bool,
        /// Names of environment variables holding the credentials: secrets never travel.
        username_env: Option<String>,
        password_env: Option<String>,
        from: String,
        to: Vec<String>,
        subject: String,
        body: String,
    },
    Report {
        address: String,
        /// One line of JSON, without the newline.
        line: String,
    },
}

/// The entry point of `sup __notify`: returns the process's exit status.
pub fn main() -> std::process::ExitCode {
    let mut input = String::new();
    let result = std::io::stdin()
        .take(1 << 20)
        .read_to_string(&mut input)
        .map_err(|e| format!("reading the notification: {e}"))
        .and_then(|_| {
            serde_json::from_str::<Delivery>(&input)
                .map_err(|e| format!("malformed notification: {e}"))
        })
        .and_then(|d| send(&d));
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("{}", e.replace('\n', " "));
            std::process::ExitCode::from(1)
        }
    }
}

pub fn send(d: &Delivery) -> Result<(), String> {
    match d {
        Delivery::Report { address, line } => report(address, line),
        Delivery::Email {
            host,
            port,
            starttls,
            username_env,
            password_env,
            from,
            to,
            subject,
            body,
        } => {
            use lettre::message::Mailbox;
            use lettre::transport::smtp::authentication::Credentials;
            use lettre::{Message, SmtpTransport, Transport};

            let from: Mailbox = from
                .parse()
                .map_err(|e| format!("bad from address {from:?}: {e}"))?;
            let mut message = Message::builder().from(from).subject(subject.clone());
            for t in to {
                let mb: Mailbox = t
                    .parse()
                    .map_err(|e| format!("bad to address {t:?}: {e}"))?;
                message = message.to(mb);
            }
            let message = message
                .body(body.clone())
                .map_err(|e| format!("unable to build the mail: {e}"))?;
            let mut builder = if *starttls {
                SmtpTransport::starttls_relay(host).map_err(|e| format!("smtp {host}: {e}"))?
            } else {
                SmtpTransport::builder_dangerous(host)
            };
            builder = builder.port(*port).timeout(Some(NET_TIMEOUT));
            if let (Some(u), Some(p)) = (username_env, password_env) {
                let user = std::env::var(u).map_err(|_| format!("${u} is not set"))?;
                let pass = std::env::var(p).map_err(|_| format!("${p} is not set"))?;
                builder = builder.credentials(Credentials::new(user, pass));
            }
            builder
                .build()
                .send(&message)
                .map(drop)
                .map_err(|e| format!("smtp {host}:{port}: {e}"))
        }
    }
}

fn report(address: &str, line: &str) -> Result<(), String> {
    let addrs = address
        .to_socket_addrs()
        .map_err(|e| format!("{address}: {e}"))?;
    let mut last = format!("{address}: no address");
    for a in addrs {
        match TcpStream::connect_timeout(&a, NET_TIMEOUT) {
            Ok(mut s) => {
                let _ = s.set_write_timeout(Some(NET_TIMEOUT));
                return s
                    .write_all(format!("{line}\n").as_bytes())
                    .and_then(|()| s.flush())
                    .map_err(|e| format!("{address}: {e}"));
            }
            Err(e) => last = format!("{address}: {e}"),
        }
    }
    Err(last)
}
