//! TLS 1.3 transport with pinned CA fingerprints.
//!
//! # Layout
//!
//! * [`fingerprint`] — [`CaFingerprint`]: `base64url_nopad(SHA-256(CA certificate DER))`,
//!   43 characters, as SMP. It names the relay's *offline* CA, so online keys can rotate.
//! * [`address`] — [`RelayAddress`]: `smpx://<fingerprint>@host:port` (IPv6 in brackets,
//!   default port [`DEFAULT_PORT`] = 5223), typed parse errors.
//! * [`identity`] — [`RelayIdentity`]: `create` / `load` / `rotate_online` of the key and
//!   certificate files (`ca.key` goes offline; `ca.crt`, `server.key`, `server.crt` run the
//!   relay), all 0600.
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
//! use smpx_relay::transport::{self, RelayIdentity, RelayHost};
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

pub mod address;
pub mod fingerprint;
pub mod identity;
pub mod tls;

pub use address::{AddressError, RelayAddress, RelayHost, DEFAULT_PORT, SCHEME};
pub use fingerprint::{CaFingerprint, FingerprintError};
pub use identity::{IdentityError, RelayIdentity};
pub use tls::{
    accept, accept_with_timeout, acceptor, client_config, connect, connect_over, connect_with,
    server_config, CertRejection, ClientTlsStream, ConnectOptions, ServerTlsStream, SessionId,
    TransportError, ALPN, HANDSHAKE_TIMEOUT, SESSION_ID_LABEL,
};
pub use tokio_rustls::TlsAcceptor;
