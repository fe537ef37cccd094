//! TLS 1.3 configurations, the pinned-CA verifier, the session id, and `accept` / `connect`.
//!
//! # What the client checks
//!
//! There is no web PKI and the host name is not the identity: the pin is. A client refuses
//! the relay unless
//! 1. the chain is exactly `[online certificate, CA certificate]`;
//! 2. SHA-256 of the CA certificate (DER) equals the address's [`CaFingerprint`];
//! 3. the online certificate is signed by that CA certificate's key, is within its validity
//!    dates, and (if it has an extended key usage) allows server authentication — checked by
//!    webpki with the CA certificate as the only trust anchor;
//! 4. the TLS 1.3 `CertificateVerify` signature verifies under the online certificate's key,
//!    with the ring provider's algorithms;
//! 5. TLS 1.3 and the ALPN protocol [`ALPN`] were negotiated.
//!
//! The CA certificate is the trust anchor: as in webpki, its own validity dates are not
//! checked (its fingerprint is what the client trusts).
//!
//! Failures of 1–3 surface as [`TransportError::CertificateRejected`] with a [`CertRejection`].
//! Session resumption, early data and SNI are off: every connection is verified in full and
//! the client does not name the host in clear.
//!
//! # Session id
//!
//! Both sides derive the same 32 bytes with the TLS keying-material exporter (RFC 8446 §7.5),
//! label [`SESSION_ID_LABEL`], no context. The protocol binds signatures to it, so a signed
//! command cannot be replayed on another connection.

use std::fmt;
use std::io;
use std::sync::Arc;
use std::time::Duration;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::Resumption;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, IpAddr, ServerName, UnixTime};
use rustls::server::{NoServerSessionStorage, ParsedCertificate};
use rustls::{
    CertificateError, ClientConfig, DigitallySignedStruct, OtherError, ProtocolVersion,
    RootCertStore, ServerConfig, SignatureScheme,
};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tokio_rustls::{TlsAcceptor, TlsConnector};

pub use tokio_rustls::client::TlsStream as ClientTlsStream;
pub use tokio_rustls::server::TlsStream as ServerTlsStream;

#[cfg(feature = "identity")]
use crate::identity::RelayIdentity;
use smpx_relay_protocol::forward::{CertRejection, ChainVerifier, ForwardError};
use smpx_relay_protocol::{CaFingerprint, RelayAddress, RelayHost};

/// The ALPN protocol both sides require.
pub const ALPN: &[u8] = b"smpx/1";

/// The exporter label of the session id (RFC 8446 §7.5).
pub const SESSION_ID_LABEL: &[u8] = b"EXPORTER-smpx-session";

/// Default limit for a TLS handshake, on both sides.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Default limit for opening the TCP connection.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// The 32 bytes both ends of one TLS connection share and no other connection has.
pub type SessionId = [u8; 32];

/// The crypto provider of the transport: rustls with ring.
pub fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// Transport failures.
#[derive(Debug, thiserror::Error)]
pub enum TransportError {
    /// A TLS configuration could not be built (e.g. the identity's key is unusable).
    #[error("TLS configuration: {0}")]
    Config(rustls::Error),
    /// The TCP connection could not be opened.
    #[error("cannot connect to {addr}: {source}")]
    Connect {
        /// `host:port`.
        addr: String,
        /// The IO error.
        #[source]
        source: io::Error,
    },
    /// The TCP connection was not open within the limit.
    #[error("timed out connecting to {0}")]
    ConnectTimeout(String),
    /// The TLS handshake did not finish within the limit (e.g. a stalling peer).
    #[error("TLS handshake timed out")]
    HandshakeTimeout,
    /// The client refused the relay's certificate chain.
    #[error("relay certificate refused: {0}")]
    CertificateRejected(CertRejection),
    /// Another TLS failure: an alert from the peer, an incompatible peer (e.g. TLS 1.2 only),
    /// a bad handshake signature, a protocol error.
    #[error("TLS: {0}")]
    Tls(rustls::Error),
    /// The handshake finished without the ALPN protocol [`ALPN`] (or a version other than
    /// TLS 1.3 was negotiated).
    #[error(
        "peer did not negotiate {} over TLS 1.3",
        String::from_utf8_lossy(ALPN)
    )]
    Protocol,
    /// The connection failed below TLS during the handshake.
    #[error("IO during TLS handshake: {0}")]
    Io(io::Error),
    /// The keying-material exporter failed.
    #[error("session id export failed: {0}")]
    Exporter(rustls::Error),
}

impl TransportError {
    /// Maps an error from a tokio-rustls handshake: rustls errors (and the client's
    /// certificate rejection inside them) become typed variants.
    fn from_handshake(e: io::Error) -> Self {
        let Some(tls) = e
            .get_ref()
            .and_then(|inner| inner.downcast_ref::<rustls::Error>())
        else {
            return TransportError::Io(e);
        };
        if let rustls::Error::InvalidCertificate(CertificateError::Other(other)) = tls {
            if let Some(rejection) = other.0.downcast_ref::<CertRejection>() {
                return TransportError::CertificateRejected(rejection.clone());
            }
        }
        TransportError::Tls(tls.clone())
    }
}

/// Checks `online` against `ca` as the only trust anchor at `now`: signature, validity dates,
/// extended key usage. Shared by the client verifier and identity loading.
pub(crate) fn verify_online_cert(
    ca: &CertificateDer<'_>,
    online: &CertificateDer<'_>,
    now: UnixTime,
) -> Result<(), rustls::Error> {
    let mut roots = RootCertStore::empty();
    roots.add(ca.clone().into_owned())?;
    let parsed = ParsedCertificate::try_from(online)?;
    let algorithms = rustls::crypto::ring::default_provider().signature_verification_algorithms;
    rustls::client::verify_server_cert_signed_by_trust_anchor(
        &parsed,
        &roots,
        &[],
        now,
        algorithms.all,
    )
}

/// Checks a presented chain against a pin (steps 1–3 of the module docs).
pub fn verify_chain(
    pin: &CaFingerprint,
    end_entity: &CertificateDer<'_>,
    intermediates: &[CertificateDer<'_>],
    now: UnixTime,
) -> Result<(), CertRejection> {
    let [ca] = intermediates else {
        return Err(CertRejection::ChainLength(1 + intermediates.len()));
    };
    let presented = CaFingerprint::of_certificate(ca);
    if presented != *pin {
        return Err(CertRejection::FingerprintMismatch {
            expected: *pin,
            presented,
        });
    }
    let mut roots = RootCertStore::empty();
    roots
        .add(ca.clone().into_owned())
        .map_err(|e| CertRejection::BadCaCertificate(e.to_string()))?;
    match verify_online_cert(ca, end_entity, now) {
        Ok(()) => Ok(()),
        Err(rustls::Error::InvalidCertificate(
            CertificateError::Expired | CertificateError::ExpiredContext { .. },
        )) => Err(CertRejection::OnlineCertExpired),
        Err(rustls::Error::InvalidCertificate(
            CertificateError::NotValidYet | CertificateError::NotValidYetContext { .. },
        )) => Err(CertRejection::OnlineCertNotYetValid),
        Err(rustls::Error::InvalidCertificate(e)) => {
            Err(CertRejection::NotSignedByCa(e.to_string()))
        }
        Err(e) => Err(CertRejection::NotSignedByCa(e.to_string())),
    }
}

/// The DER prefix of an Ed25519 SubjectPublicKeyInfo (RFC 8410), before the 32 key bytes.
const ED25519_SPKI_PREFIX: [u8; 12] = [
    0x30, 0x2a, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x03, 0x21, 0x00,
];

/// Verifies a relay's certificate pair against the pinned fingerprint at `now` (seconds
/// since the epoch) exactly as the TLS client does ([`verify_chain`]), and returns the
/// online certificate's Ed25519 public key.
pub fn verify_online_key(
    pin: &CaFingerprint,
    ca_der: &[u8],
    cert_der: &[u8],
    now: u64,
) -> Result<[u8; 32], ForwardError> {
    let ca = CertificateDer::from(ca_der);
    let online = CertificateDer::from(cert_der);
    let time = UnixTime::since_unix_epoch(Duration::from_secs(now));
    verify_chain(pin, &online, std::slice::from_ref(&ca), time).map_err(ForwardError::Chain)?;
    let parsed = ParsedCertificate::try_from(&online).map_err(|_| ForwardError::CertKey)?;
    let spki = parsed.subject_public_key_info();
    let spki: &[u8] = spki.as_ref();
    match spki.strip_prefix(&ED25519_SPKI_PREFIX[..]) {
        Some(key) => key.try_into().map_err(|_| ForwardError::CertKey),
        None => Err(ForwardError::CertKey),
    }
}

/// The certificate check of forwarding keys ([`smpx_relay_protocol::forward::ForwardKey::verify`]):
/// [`verify_online_key`], the same rules as the TLS client's pinned verifier.
#[derive(Clone, Copy, Debug, Default)]
pub struct PinnedChain;

impl ChainVerifier for PinnedChain {
    fn online_key(
        &self,
        pin: &CaFingerprint,
        ca_der: &[u8],
        online_der: &[u8],
        now: u64,
    ) -> Result<[u8; 32], ForwardError> {
        verify_online_key(pin, ca_der, online_der, now)
    }
}

/// The client's certificate verifier: the pin, not web PKI or the host name.
struct PinnedCaVerifier {
    pin: CaFingerprint,
    provider: Arc<CryptoProvider>,
}

impl fmt::Debug for PinnedCaVerifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PinnedCaVerifier")
            .field("pin", &self.pin.to_string())
            .finish()
    }
}

impl ServerCertVerifier for PinnedCaVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        verify_chain(&self.pin, end_entity, intermediates, now).map_err(|rejection| {
            rustls::Error::InvalidCertificate(CertificateError::Other(OtherError(Arc::new(
                rejection,
            ))))
        })?;
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        _message: &[u8],
        _cert: &CertificateDer<'_>,
        _dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        // The client configuration allows TLS 1.3 only; this is never reached.
        Err(rustls::Error::General("TLS 1.2 is not supported".into()))
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

/// The relay's TLS server configuration: TLS 1.3 only, ALPN [`ALPN`], the chain
/// `[online, CA]`, no client certificates, no resumption or early data.
#[cfg(feature = "identity")]
pub fn server_config(identity: &RelayIdentity) -> Result<Arc<ServerConfig>, TransportError> {
    server_config_from_chain(identity.chain(), identity.online_key())
}

/// Like [`server_config`] from an explicit chain and key (tests, tools).
pub fn server_config_from_chain(
    chain: Vec<CertificateDer<'static>>,
    key: rustls::pki_types::PrivateKeyDer<'static>,
) -> Result<Arc<ServerConfig>, TransportError> {
    let mut config = ServerConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(TransportError::Config)?
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .map_err(TransportError::Config)?;
    config.alpn_protocols = vec![ALPN.to_vec()];
    config.session_storage = Arc::new(NoServerSessionStorage {});
    config.send_tls13_tickets = 0;
    config.max_early_data_size = 0;
    Ok(Arc::new(config))
}

/// A [`TlsAcceptor`] for the relay's identity.
#[cfg(feature = "identity")]
pub fn acceptor(identity: &RelayIdentity) -> Result<TlsAcceptor, TransportError> {
    Ok(TlsAcceptor::from(server_config(identity)?))
}

/// The client configuration that pins `fingerprint`: TLS 1.3 only, ALPN [`ALPN`], no SNI,
/// no resumption or early data.
pub fn client_config(fingerprint: CaFingerprint) -> Result<Arc<ClientConfig>, TransportError> {
    let provider = provider();
    let verifier = Arc::new(PinnedCaVerifier {
        pin: fingerprint,
        provider: provider.clone(),
    });
    let mut config = ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(TransportError::Config)?
        .dangerous()
        .with_custom_certificate_verifier(verifier)
        .with_no_client_auth();
    config.alpn_protocols = vec![ALPN.to_vec()];
    config.resumption = Resumption::disabled();
    config.enable_sni = false;
    config.enable_early_data = false;
    Ok(Arc::new(config))
}

fn session_id(
    conn: &rustls::CommonState,
    export: impl FnOnce() -> Result<SessionId, rustls::Error>,
) -> Result<SessionId, TransportError> {
    if conn.protocol_version() != Some(ProtocolVersion::TLSv1_3)
        || conn.alpn_protocol() != Some(ALPN)
    {
        return Err(TransportError::Protocol);
    }
    export().map_err(TransportError::Exporter)
}

/// Completes the server side of a TLS handshake on `stream` within [`HANDSHAKE_TIMEOUT`] and
/// returns the TLS stream and the session id.
pub async fn accept<S>(
    acceptor: &TlsAcceptor,
    stream: S,
) -> Result<(ServerTlsStream<S>, SessionId), TransportError>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    accept_with_timeout(acceptor, stream, HANDSHAKE_TIMEOUT).await
}

/// [`accept`] with an explicit handshake limit. A peer that does not finish the handshake in
/// time is dropped (the stream is closed) with [`TransportError::HandshakeTimeout`].
pub async fn accept_with_timeout<S>(
    acceptor: &TlsAcceptor,
    stream: S,
    timeout: Duration,
) -> Result<(ServerTlsStream<S>, SessionId), TransportError>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let tls = tokio::time::timeout(timeout, acceptor.accept(stream))
        .await
        .map_err(|_| TransportError::HandshakeTimeout)?
        .map_err(TransportError::from_handshake)?;
    let (_, conn) = tls.get_ref();
    let id = session_id(conn, || {
        conn.export_keying_material([0u8; 32], SESSION_ID_LABEL, None)
    })?;
    Ok((tls, id))
}

/// Client options: the limits for opening TCP and for the TLS handshake.
#[derive(Clone, Copy, Debug)]
pub struct ConnectOptions {
    /// Limit for the TCP connection (including name resolution).
    pub connect_timeout: Duration,
    /// Limit for the TLS handshake.
    pub handshake_timeout: Duration,
}

impl Default for ConnectOptions {
    fn default() -> Self {
        Self {
            connect_timeout: CONNECT_TIMEOUT,
            handshake_timeout: HANDSHAKE_TIMEOUT,
        }
    }
}

/// Connects to the relay at `address` over TCP and TLS, pinning its fingerprint, with the
/// default limits; returns the TLS stream and the session id.
pub async fn connect(
    address: &RelayAddress,
) -> Result<(ClientTlsStream<TcpStream>, SessionId), TransportError> {
    connect_with(address, &ConnectOptions::default()).await
}

/// [`connect`] with explicit limits.
pub async fn connect_with(
    address: &RelayAddress,
    options: &ConnectOptions,
) -> Result<(ClientTlsStream<TcpStream>, SessionId), TransportError> {
    let tcp = connect_tcp(address, options.connect_timeout).await?;
    connect_over(tcp, address, options.handshake_timeout).await
}

/// The TCP part of [`connect_with`] alone (name resolution included), within `timeout`:
/// for callers that time or judge the TCP and TLS stages apart (the directory's prober),
/// then finish with [`connect_over`] exactly as [`connect_with`] does.
pub async fn connect_tcp(
    address: &RelayAddress,
    timeout: Duration,
) -> Result<TcpStream, TransportError> {
    let target = address.socket_addr_text();
    let tcp = tokio::time::timeout(timeout, tcp_connect(&address.host, address.port))
        .await
        .map_err(|_| TransportError::ConnectTimeout(target.clone()))?
        .map_err(|source| TransportError::Connect {
            addr: target,
            source,
        })?;
    // Small blocks are latency-sensitive; a failure here is harmless.
    let _ = tcp.set_nodelay(true);
    Ok(tcp)
}

async fn tcp_connect(host: &RelayHost, port: u16) -> io::Result<TcpStream> {
    match host {
        RelayHost::Dns(name) => TcpStream::connect((name.as_str(), port)).await,
        RelayHost::Ipv4(ip) => TcpStream::connect((*ip, port)).await,
        RelayHost::Ipv6(ip) => TcpStream::connect((*ip, port)).await,
    }
}

/// The client side of the TLS handshake over an existing stream (a tunnel, a proxy
/// connection, a test pipe), pinning `address`'s fingerprint.
pub async fn connect_over<S>(
    stream: S,
    address: &RelayAddress,
    handshake_timeout: Duration,
) -> Result<(ClientTlsStream<S>, SessionId), TransportError>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let connector = TlsConnector::from(client_config(address.fingerprint)?);
    // SNI is off and the verifier ignores the name; it only has to be well formed.
    let name = match &address.host {
        RelayHost::Dns(dns) => ServerName::try_from(dns.clone())
            .unwrap_or_else(|_| ServerName::IpAddress(IpAddr::from(std::net::Ipv4Addr::LOCALHOST))),
        RelayHost::Ipv4(ip) => ServerName::IpAddress(IpAddr::from(*ip)),
        RelayHost::Ipv6(ip) => ServerName::IpAddress(IpAddr::from(*ip)),
    };
    let tls = tokio::time::timeout(handshake_timeout, connector.connect(name, stream))
        .await
        .map_err(|_| TransportError::HandshakeTimeout)?
        .map_err(TransportError::from_handshake)?;
    let (_, conn) = tls.get_ref();
    let id = session_id(conn, || {
        conn.export_keying_material([0u8; 32], SESSION_ID_LABEL, None)
    })?;
    Ok((tls, id))
}
