//! # smpx-relay-transport — blocks over TLS 1.3, pinned to a relay's CA fingerprint
//!
//! This crate owns the connection under the protocol: rustls configurations for both ends,
//! the pinned-CA certificate check (also offered to the protocol as [`PinnedChain`], for
//! forwarding keys), the session id from the TLS exporter, reading and writing whole blocks
//! under deadlines ([`framing`]), and — behind the `identity` feature, which only relays
//! need — the relay's key and certificate files made with rcgen. A client links rustls and
//! tokio but no certificate generator.
//!
//! # Layout
//!
//! * [`CaFingerprint`] and [`RelayAddress`] (`smpx://<fingerprint>@host:port`) are values of
//!   the protocol (PRXY carries an address) and are re-exported from `smpx-relay-protocol`.
//! * `identity` (feature `identity`) — `RelayIdentity`: `create` / `load` / `rotate_online` of
//!   the key and certificate files (`ca.key` goes offline; `ca.crt`, `server.key`, `server.crt`
//!   run the relay), all 0600.
//! * [`tls`] — rustls (ring provider) configurations: the server presents
//!   `[online certificate, CA certificate]` over TLS 1.3 with ALPN `smpx/1`; the client
//!   accepts only a chain whose CA certificate has the pinned fingerprint and whose online
//!   certificate that CA signed and is in its validity dates, and checks the TLS 1.3
//!   handshake signature (see [`tls`] for the full list). Host names are not checked: the
//!   pin is the identity. [`accept`] and [`connect`] run the handshake under a time limit and
//!   return the TLS stream with the [`SessionId`]: 32 bytes from the TLS exporter
//!   (label `EXPORTER-smpx-session`), the same on both ends and different on every connection,
//!   which the protocol binds signatures to.
//!
//! # Use
//!
//! ```no_run
//! # async fn demo(dir: &std::path::Path) -> Result<(), Box<dyn std::error::Error>> {
//! use smpx_relay_transport::{self as transport, RelayIdentity, RelayHost};
//! // relay
//! let identity = RelayIdentity::load(dir)?;
//! let acceptor = transport::acceptor(&identity)?;
//! let listener = tokio::net::TcpListener::bind("0.0.0.0:5223").await?;
//! let (tcp, _) = listener.accept().await?;
//! let (tls, session_id) = transport::accept(&acceptor, tcp).await?;
//! // client
//! let address = identity.address(RelayHost::Dns("relay.example.org".into()), 5223);
//! let (tls, session_id) = transport::connect(&address).await?;
//! # Ok(()) }
//! ```

pub mod framing;
#[cfg(feature = "identity")]
pub mod identity;
pub mod tls;

#[cfg(feature = "identity")]
pub use identity::{IdentityError, RelayIdentity};
pub use smpx_relay_protocol::forward::CertRejection;
pub use smpx_relay_protocol::{
    address, fingerprint, AddressError, CaFingerprint, FingerprintError, RelayAddress, RelayHost,
    DEFAULT_PORT, SCHEME,
};
pub use tls::{
    accept, accept_with_timeout, client_config, connect, connect_over, connect_tcp, connect_with,
    server_config_from_chain, verify_online_key, ClientTlsStream, ConnectOptions, PinnedChain,
    ServerTlsStream, SessionId, TransportError, ALPN, HANDSHAKE_TIMEOUT, SESSION_ID_LABEL,
};
#[cfg(feature = "identity")]
pub use tls::{acceptor, server_config};
pub use tokio_rustls::TlsAcceptor;
