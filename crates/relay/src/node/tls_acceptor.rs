//! The relay's [`Acceptor`] over the transport's TLS 1.3: each accepted TCP connection gets
//! the TLS handshake (within the handshake limit) and the session id from the TLS exporter.

use std::io;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpStream;

use crate::protocol::SessionId;
use crate::server::Acceptor;
use crate::transport::{self, RelayIdentity, ServerTlsStream, TlsAcceptor, TransportError};

/// Accepts TLS connections with the relay's identity.
#[derive(Clone)]
pub struct TlsRelayAcceptor {
    acceptor: TlsAcceptor,
    handshake_timeout: Duration,
}

impl std::fmt::Debug for TlsRelayAcceptor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsRelayAcceptor")
            .field("handshake_timeout", &self.handshake_timeout)
            .finish_non_exhaustive()
    }
}

impl TlsRelayAcceptor {
    /// An acceptor presenting `identity`'s chain; a TLS handshake must finish within
    /// `handshake_timeout`.
    pub fn new(
        identity: &RelayIdentity,
        handshake_timeout: Duration,
    ) -> Result<Arc<Self>, TransportError> {
        Ok(Arc::new(Self {
            acceptor: transport::acceptor(identity)?,
            handshake_timeout,
        }))
    }
}

#[async_trait::async_trait]
impl Acceptor for TlsRelayAcceptor {
    type Stream = ServerTlsStream<TcpStream>;

    async fn accept(&self, tcp: TcpStream) -> io::Result<(Self::Stream, SessionId)> {
        // Blocks are small and latency-sensitive; failing to set it is harmless.
        let _ = tcp.set_nodelay(true);
        transport::accept_with_timeout(&self.acceptor, tcp, self.handshake_timeout)
            .await
            .map_err(|e| match e {
                TransportError::HandshakeTimeout => io::Error::new(io::ErrorKind::TimedOut, e),
                e => io::Error::other(e),
            })
    }
}
