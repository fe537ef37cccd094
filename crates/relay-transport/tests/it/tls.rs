//! TLS: pinning, refusal of every wrong chain, TLS 1.3 only, session ids, handshake limits.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose,
};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, ServerName};
use smpx_relay_transport::identity::CA_KEY_FILE;
use smpx_relay_transport::tls::{server_config_from_chain, ConnectOptions};
use smpx_relay_transport::{
    self as transport, CaFingerprint, CertRejection, RelayAddress, RelayHost, RelayIdentity,
    SessionId, TransportError,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio_rustls::TlsAcceptor;

type ServerResult = Result<SessionId, TransportError>;

/// A relay-like server: accepts TLS connections, reports each handshake's result, echoes
/// 4 bytes on each established connection.
async fn spawn_server(
    acceptor: TlsAcceptor,
    handshake_timeout: Duration,
) -> (SocketAddr, mpsc::UnboundedReceiver<ServerResult>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (tx, rx) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        loop {
            let Ok((tcp, _)) = listener.accept().await else {
                return;
            };
            let acceptor = acceptor.clone();
            let tx = tx.clone();
            tokio::spawn(async move {
                match transport::accept_with_timeout(&acceptor, tcp, handshake_timeout).await {
                    Ok((mut tls, id)) => {
                        let _ = tx.send(Ok(id));
                        let mut buf = [0u8; 4];
                        if tls.read_exact(&mut buf).await.is_ok() {
                            let _ = tls.write_all(&buf).await;
                            let _ = tls.flush().await;
                        }
                    }
                    Err(e) => {
                        let _ = tx.send(Err(e));
                    }
                }
            });
        }
    });
    (addr, rx)
}

fn address(fp: CaFingerprint, addr: SocketAddr) -> RelayAddress {
    let SocketAddr::V4(v4) = addr else {
        panic!("test listens on IPv4")
    };
    RelayAddress::new(fp, RelayHost::Ipv4(*v4.ip()), addr.port())
}

fn identity() -> (tempfile::TempDir, RelayIdentity) {
    let dir = tempfile::tempdir().unwrap();
    let id = RelayIdentity::create(&dir.path().join("relay")).unwrap();
    (dir, id)
}

async fn echo(tls: &mut (impl AsyncReadExt + AsyncWriteExt + Unpin)) {
    tls.write_all(b"ping").await.unwrap();
    tls.flush().await.unwrap();
    let mut buf = [0u8; 4];
    tls.read_exact(&mut buf).await.unwrap();
    assert_eq!(&buf, b"ping");
}

#[tokio::test]
async fn right_fingerprint_connects_with_the_same_session_id_on_both_sides() {
    let (_dir, id) = identity();
    let (addr, mut results) =
        spawn_server(transport::acceptor(&id).unwrap(), Duration::from_secs(5)).await;
    let relay = address(id.fingerprint(), addr);

    let (mut tls, client_id) = transport::connect(&relay).await.unwrap();
    let server_id = results.recv().await.unwrap().unwrap();
    assert_eq!(client_id, server_id);
    assert_ne!(client_id, [0u8; 32]);
    echo(&mut tls).await;
    let (_, conn) = tls.get_ref();
    assert_eq!(conn.alpn_protocol(), Some(transport::ALPN));
    assert_eq!(
        conn.protocol_version(),
        Some(rustls::ProtocolVersion::TLSv1_3)
    );

    // Another connection: another session id, on both sides.
    let (mut tls2, client_id2) = transport::connect(&relay).await.unwrap();
    let server_id2 = results.recv().await.unwrap().unwrap();
    assert_eq!(client_id2, server_id2);
    assert_ne!(client_id2, client_id);
    echo(&mut tls2).await;

    // A DNS host name works too (the name is not checked; the pin is).
    let by_name = RelayAddress::new(
        id.fingerprint(),
        RelayHost::Dns("localhost".into()),
        addr.port(),
    );
    let connected = transport::connect(&by_name).await;
    // `localhost` may resolve to ::1 first where nothing listens; either it connects or
    // fails to connect, never a certificate error.
    match connected {
        Ok((mut tls3, sid)) => {
            assert_eq!(results.recv().await.unwrap().unwrap(), sid);
            echo(&mut tls3).await;
        }
        Err(TransportError::Connect { .. }) => {}
        Err(e) => panic!("unexpected {e:?}"),
    }
}

#[tokio::test]
async fn wrong_fingerprint_is_refused_and_the_server_goes_on() {
    let (_dir, id) = identity();
    let (_dir2, other) = identity();
    let (addr, mut results) =
        spawn_server(transport::acceptor(&id).unwrap(), Duration::from_secs(5)).await;

    let wrong = address(other.fingerprint(), addr);
    match transport::connect(&wrong).await {
        Err(TransportError::CertificateRejected(CertRejection::FingerprintMismatch {
            expected,
            presented,
        })) => {
            assert_eq!(expected, other.fingerprint());
            assert_eq!(presented, id.fingerprint());
        }
        other => panic!("expected a fingerprint mismatch, got {other:?}"),
    }
    // The server saw the client's alert, and goes on serving.
    assert!(matches!(
        results.recv().await.unwrap(),
        Err(TransportError::Tls(_))
    ));
    connected(id.fingerprint(), addr, &mut results).await;
}

/// A connection pinned to `pin` is established (the server reports the same session id) and
/// echoes.
async fn connected(
    pin: CaFingerprint,
    addr: SocketAddr,
    results: &mut mpsc::UnboundedReceiver<ServerResult>,
) {
    let (mut tls, sid) = transport::connect(&address(pin, addr)).await.unwrap();
    assert_eq!(results.recv().await.unwrap().unwrap(), sid);
    echo(&mut tls).await;
}

fn dn(cn: &str) -> DistinguishedName {
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, cn);
    dn
}

fn online_params(not_before: SystemTime, not_after: SystemTime) -> CertificateParams {
    let mut params = CertificateParams::default();
    params.distinguished_name = dn("smpx relay");
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    params.use_authority_key_identifier_extension = true;
    params.not_before = odt(not_before);
    params.not_after = odt(not_after);
    params
}

fn odt(t: SystemTime) -> time::OffsetDateTime {
    let secs = t.duration_since(std::time::UNIX_EPOCH).unwrap().as_secs();
    time::OffsetDateTime::from_unix_timestamp(secs as i64).unwrap()
}

fn ca_params(cn: &str) -> CertificateParams {
    let mut params = CertificateParams::default();
    params.distinguished_name = dn(cn);
    params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    params
}

fn key_der(key: &KeyPair) -> PrivateKeyDer<'static> {
    PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der()))
}

fn ed25519_key() -> KeyPair {
    KeyPair::generate_for(&rcgen::PKCS_ED25519).unwrap()
}

/// A server presenting `chain` (and `key`'s private key), pinned by the client to `pin`:
/// how the client refuses it (the server's handshake fails too).
async fn refused_with(
    chain: &[&CertificateDer<'static>],
    key: &KeyPair,
    pin: CaFingerprint,
) -> CertRejection {
    let chain = chain.iter().map(|c| (*c).clone()).collect();
    let acceptor = TlsAcceptor::from(server_config_from_chain(chain, key_der(key)).unwrap());
    let (addr, mut results) = spawn_server(acceptor, Duration::from_secs(5)).await;
    let outcome = transport::connect(&address(pin, addr)).await;
    assert!(results.recv().await.unwrap().is_err());
    match outcome {
        Err(TransportError::CertificateRejected(r)) => r,
        other => panic!("expected a certificate rejection, got {other:?}"),
    }
}

#[tokio::test]
async fn copied_ca_certificate_with_an_attackers_online_certificate_is_refused() {
    let (_dir, victim) = identity();
    let (ca, pin) = (victim.ca_certificate(), victim.fingerprint());
    let now = SystemTime::now();
    let day = Duration::from_secs(86_400);

    // The attacker's own CA, with the victim's CA name, signs the attacker's online key;
    // the attacker presents it with the victim's (public) CA certificate.
    let attacker_issuer = Issuer::new(ca_params("smpx relay CA"), ed25519_key());
    let online_key = ed25519_key();
    let online = online_params(now - day, now + day)
        .signed_by(&online_key, &attacker_issuer)
        .unwrap();
    let rejection = refused_with(&[online.der(), ca], &online_key, pin).await;
    assert!(
        matches!(rejection, CertRejection::NotSignedByCa(_)),
        "{rejection:?}"
    );

    // A self-signed online certificate next to the copied CA certificate.
    let self_key = ed25519_key();
    let self_signed = online_params(now - day, now + day)
        .self_signed(&self_key)
        .unwrap();
    let rejection = refused_with(&[self_signed.der(), ca], &self_key, pin).await;
    assert!(
        matches!(rejection, CertRejection::NotSignedByCa(_)),
        "{rejection:?}"
    );

    // Only the online certificate (no CA certificate): wrong chain length.
    let rejection = refused_with(&[online.der()], &online_key, pin).await;
    assert_eq!(rejection, CertRejection::ChainLength(1));

    // The CA certificate with extra certificates after it.
    let rejection = refused_with(&[online.der(), ca, ca], &online_key, pin).await;
    assert_eq!(rejection, CertRejection::ChainLength(3));
}

#[tokio::test]
async fn expired_and_not_yet_valid_online_certificates_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let id = RelayIdentity::create(dir.path()).unwrap();
    let ca_key =
        KeyPair::from_pem(&std::fs::read_to_string(dir.path().join(CA_KEY_FILE)).unwrap()).unwrap();
    let issuer = Issuer::new(ca_params("smpx relay CA"), ca_key);
    let now = SystemTime::now();
    let day = Duration::from_secs(86_400);
    let online = |not_before, not_after| {
        let key = ed25519_key();
        let cert = online_params(not_before, not_after)
            .signed_by(&key, &issuer)
            .unwrap();
        (cert, key)
    };

    for (not_before, not_after, expected) in [
        (now - 3 * day, now - day, CertRejection::OnlineCertExpired),
        (
            now + day,
            now + 3 * day,
            CertRejection::OnlineCertNotYetValid,
        ),
    ] {
        let (cert, key) = online(not_before, not_after);
        let rejection =
            refused_with(&[cert.der(), id.ca_certificate()], &key, id.fingerprint()).await;
        assert_eq!(rejection, expected);
    }

    // The same CA issuing a currently valid certificate is accepted (the test CA name is right).
    let (cert, key) = online(now - day, now + day);
    let acceptor = TlsAcceptor::from(
        server_config_from_chain(
            vec![cert.der().clone(), id.ca_certificate().clone()],
            key_der(&key),
        )
        .unwrap(),
    );
    let (addr, mut results) = spawn_server(acceptor, Duration::from_secs(5)).await;
    connected(id.fingerprint(), addr, &mut results).await;
}

/// Accepts any certificate (the TLS 1.2 and no-ALPN clients below are refused before it matters).
#[derive(Debug)]
struct AcceptAnything;

impl rustls::client::danger::ServerCertVerifier for AcceptAnything {
    fn verify_server_cert(
        &self,
        _: &CertificateDer<'_>,
        _: &[CertificateDer<'_>],
        _: &ServerName<'_>,
        _: &[u8],
        _: rustls::pki_types::UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        Ok(rustls::client::danger::ServerCertVerified::assertion())
    }
    fn verify_tls12_signature(
        &self,
        _: &[u8],
        _: &CertificateDer<'_>,
        _: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        Ok(rustls::client::danger::HandshakeSignatureValid::assertion())
    }
    fn verify_tls13_signature(
        &self,
        _: &[u8],
        _: &CertificateDer<'_>,
        _: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        Ok(rustls::client::danger::HandshakeSignatureValid::assertion())
    }
    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        rustls::crypto::ring::default_provider()
            .signature_verification_algorithms
            .supported_schemes()
    }
}

fn raw_client(
    versions: &[&'static rustls::SupportedProtocolVersion],
    alpn: Option<&[u8]>,
) -> tokio_rustls::TlsConnector {
    let mut config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_protocol_versions(versions)
    .unwrap()
    .dangerous()
    .with_custom_certificate_verifier(Arc::new(AcceptAnything))
    .with_no_client_auth();
    if let Some(alpn) = alpn {
        config.alpn_protocols = vec![alpn.to_vec()];
    }
    tokio_rustls::TlsConnector::from(Arc::new(config))
}

#[tokio::test]
async fn tls12_only_client_and_client_without_alpn_are_refused() {
    let (_dir, id) = identity();
    let (addr, mut results) =
        spawn_server(transport::acceptor(&id).unwrap(), Duration::from_secs(5)).await;
    let name = ServerName::try_from("relay.test").unwrap();

    let tls12 = raw_client(&[&rustls::version::TLS12], Some(transport::ALPN));
    let tcp = TcpStream::connect(addr).await.unwrap();
    assert!(tls12.connect(name.clone(), tcp).await.is_err());
    match results.recv().await.unwrap() {
        Err(TransportError::Tls(rustls::Error::PeerIncompatible(_))) => {}
        other => panic!("expected an incompatible peer, got {other:?}"),
    }

    // TLS 1.3 but without the smpx ALPN: the handshake completes, `accept` refuses.
    let no_alpn = raw_client(&[&rustls::version::TLS13], None);
    let tcp = TcpStream::connect(addr).await.unwrap();
    let _ = no_alpn.connect(name.clone(), tcp).await;
    assert!(matches!(
        results.recv().await.unwrap(),
        Err(TransportError::Protocol)
    ));

    // Another ALPN: the server refuses it during the handshake.
    let other_alpn = raw_client(&[&rustls::version::TLS13], Some(b"http/1.1"));
    let tcp = TcpStream::connect(addr).await.unwrap();
    assert!(other_alpn.connect(name, tcp).await.is_err());
    assert!(matches!(
        results.recv().await.unwrap(),
        Err(TransportError::Tls(_))
    ));

    // And the server still serves a proper client.
    connected(id.fingerprint(), addr, &mut results).await;
}

#[tokio::test]
async fn stalled_handshakes_time_out_on_both_sides() {
    let (_dir, id) = identity();
    let limit = Duration::from_millis(300);
    let (addr, mut results) = spawn_server(transport::acceptor(&id).unwrap(), limit).await;

    // A client that connects and says nothing.
    let started = Instant::now();
    let mut silent = TcpStream::connect(addr).await.unwrap();
    assert!(matches!(
        results.recv().await.unwrap(),
        Err(TransportError::HandshakeTimeout)
    ));
    assert!(started.elapsed() < Duration::from_secs(3));
    // The server dropped it: the client reads end of file (or a reset).
    let mut buf = [0u8; 16];
    let read = tokio::time::timeout(Duration::from_secs(2), silent.read(&mut buf))
        .await
        .unwrap();
    assert!(matches!(read, Ok(0) | Err(_)), "{read:?}");

    // A client that sends a few bytes of a ClientHello, then stalls.
    let mut slow = TcpStream::connect(addr).await.unwrap();
    slow.write_all(&[0x16, 0x03, 0x01]).await.unwrap();
    assert!(matches!(
        results.recv().await.unwrap(),
        Err(TransportError::HandshakeTimeout)
    ));

    // A "relay" that accepts TCP and never answers: the client gives up.
    let mute = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let mute_addr = mute.local_addr().unwrap();
    let holder = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((tcp, _)) = mute.accept().await {
            held.push(tcp);
        }
    });
    let options = ConnectOptions {
        connect_timeout: Duration::from_secs(2),
        handshake_timeout: limit,
    };
    let started = Instant::now();
    let outcome = transport::connect_with(&address(id.fingerprint(), mute_addr), &options).await;
    assert!(
        matches!(outcome, Err(TransportError::HandshakeTimeout)),
        "{outcome:?}"
    );
    assert!(started.elapsed() < Duration::from_secs(3));
    holder.abort();
}

#[tokio::test]
async fn connection_refused_is_a_typed_error() {
    let (_dir, id) = identity();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    drop(listener);
    match transport::connect(&address(id.fingerprint(), addr)).await {
        Err(TransportError::Connect { addr: text, .. }) => assert_eq!(text, addr.to_string()),
        other => panic!("expected a connect error, got {other:?}"),
    }
}

#[tokio::test]
async fn rotated_online_certificate_keeps_the_address() {
    let dir = tempfile::tempdir().unwrap();
    let before = RelayIdentity::create(dir.path()).unwrap();
    let after = RelayIdentity::rotate_online(dir.path()).unwrap();
    assert_ne!(before.online_certificate(), after.online_certificate());
    let (addr, mut results) =
        spawn_server(transport::acceptor(&after).unwrap(), Duration::from_secs(5)).await;
    connected(before.fingerprint(), addr, &mut results).await;
}

/// Serves a fixed chain with a fixed key, without checking that they belong together.
#[derive(Debug)]
struct FixedCert(Arc<rustls::sign::CertifiedKey>);

impl rustls::server::ResolvesServerCert for FixedCert {
    fn resolve(
        &self,
        _: rustls::server::ClientHello<'_>,
    ) -> Option<Arc<rustls::sign::CertifiedKey>> {
        Some(self.0.clone())
    }
}

#[tokio::test]
async fn the_real_chain_without_the_online_key_is_refused() {
    // The attacker replays the relay's public chain but signs the handshake with its own key:
    // the TLS 1.3 CertificateVerify signature does not verify under the online certificate.
    let (_dir, victim) = identity();
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let attacker_key = ed25519_key();
    let signing_key = provider
        .key_provider
        .load_private_key(key_der(&attacker_key))
        .unwrap();
    let certified = rustls::sign::CertifiedKey::new(victim.chain(), signing_key);
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])
        .unwrap()
        .with_no_client_auth()
        .with_cert_resolver(Arc::new(FixedCert(Arc::new(certified))));
    config.alpn_protocols = vec![transport::ALPN.to_vec()];
    let (addr, mut results) =
        spawn_server(TlsAcceptor::from(Arc::new(config)), Duration::from_secs(5)).await;
    match transport::connect(&address(victim.fingerprint(), addr)).await {
        Err(TransportError::Tls(rustls::Error::InvalidCertificate(
            rustls::CertificateError::BadSignature,
        ))) => {}
        other => panic!("expected a bad handshake signature, got {other:?}"),
    }
    assert!(results.recv().await.unwrap().is_err());
}
