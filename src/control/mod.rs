//! The control socket: wire types (`proto`), the daemon's side (`server`), the client's side
//! (`client`).

pub mod client;
pub mod http_client;
pub mod proto;
pub mod server;
pub mod tls_client;
