//! Shared helpers for the server tests: a relay on loopback, clients, and a raw connection
//! that speaks blocks directly (to send what a well-behaved client never would).
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use ed25519_dalek::SigningKey;
use smpx_relay_client::{
    connect_insecure_plain, connect_tls, Client, ClientConfig, ClientError, Event, Events,
};
use smpx_relay_protocol::command::{Command, Response};
use smpx_relay_protocol::crypto::Content;
use smpx_relay_protocol::handshake::{ClientHello, ServerHello};
use smpx_relay_protocol::transmission::{encode_transmission, parse_transmission, signed_part};
use smpx_relay_protocol::ErrorCode;
use smpx_relay_protocol::{crypto, decode_block, BlockBuilder, CorrId, EntityId, SessionId};
use smpx_relay_server::forward::ForwardingConfig;
use smpx_relay_server::{InsecurePlainAcceptor, Relay, ServerConfig};
use smpx_relay_store::memory::MemoryStore;
use smpx_relay_transport::{self as transport, RelayAddress, RelayHost, RelayIdentity};
use std::net::Ipv4Addr;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// The next event, within 10 s.
pub async fn next_event(events: &mut Events) -> Event {
    tokio::time::timeout(Duration::from_secs(10), events.next())
        .await
        .expect("no event within 10 s")
        .expect("events closed")
}

/// A delivered body (not the quota marker).
pub fn body(c: &Content) -> &[u8] {
    match c {
        Content::Body(b) => b,
        Content::QuotaExceeded => panic!("quota marker where a body was expected"),
    }
}

/// The relay's error code of a refused request.
pub fn relay_err(r: Result<impl std::fmt::Debug, ClientError>) -> ErrorCode {
    match r {
        Err(ClientError::Relay(code)) => code,
        r => panic!("expected ERR, got {r:?}"),
    }
}

pub fn test_config() -> ServerConfig {
    ServerConfig {
        handshake_timeout: Duration::from_secs(5),
        block_deadline: Duration::from_secs(5),
        idle_timeout: Duration::from_secs(30),
        write_deadline: Duration::from_secs(5),
        ..ServerConfig::default()
    }
}

pub async fn start(config: ServerConfig) -> (Relay, SocketAddr) {
    start_with(Arc::new(MemoryStore::new()), config).await
}

/// A relay over a store the test can also reach directly.
pub async fn start_with(store: Arc<MemoryStore>, config: ServerConfig) -> (Relay, SocketAddr) {
    let relay = Relay::new(store, config);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let r = relay.clone();
    tokio::spawn(async move { r.serve(listener, Arc::new(InsecurePlainAcceptor)).await });
    (relay, addr)
}

/// A relay on loopback behind real TLS (its own identity in a temporary directory).
pub struct TestRelay {
    pub relay: Relay,
    pub address: RelayAddress,
    _dir: tempfile::TempDir,
}

/// Both private-routing roles on, and loopback destinations allowed (every relay of the
/// tests is on 127.0.0.1).
pub fn forwarding_on(identity: &RelayIdentity) -> ServerConfig {
    ServerConfig {
        forwarding: ForwardingConfig {
            connect_timeout: Duration::from_secs(3),
            request_timeout: Duration::from_secs(5),
            allow_private_destinations: true,
            ..ForwardingConfig::for_identity(identity).unwrap()
        },
        ..test_config()
    }
}

/// A TLS relay configured by `config` from its identity.
pub async fn tls_relay(config: impl FnOnce(&RelayIdentity) -> ServerConfig) -> TestRelay {
    let dir = tempfile::tempdir().unwrap();
    let identity = RelayIdentity::create(&dir.path().join("relay")).unwrap();
    let relay = Relay::new(Arc::new(MemoryStore::new()), config(&identity));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let acceptor = Arc::new(transport::acceptor(&identity).unwrap());
    let r = relay.clone();
    tokio::spawn(async move { r.serve(listener, acceptor).await });
    TestRelay {
        relay,
        address: identity.address(RelayHost::Ipv4(Ipv4Addr::LOCALHOST), port),
        _dir: dir,
    }
}

/// A client of `r` over TLS, pinned to its fingerprint.
pub async fn connect(r: &TestRelay) -> (Client, Events) {
    connect_tls(&r.address, client_config()).await.unwrap()
}

pub fn client_config() -> ClientConfig {
    ClientConfig {
        handshake_timeout: Duration::from_secs(5),
        block_deadline: Duration::from_secs(5),
        write_deadline: Duration::from_secs(5),
        request_timeout: Duration::from_secs(10),
        ping_interval: None,
        idle_timeout: Duration::from_secs(60),
        ..ClientConfig::default()
    }
}

pub async fn client(addr: SocketAddr) -> (Client, Events) {
    connect_insecure_plain(addr, client_config()).await.unwrap()
}

pub fn signing_key() -> SigningKey {
    SigningKey::generate(&mut rand::rngs::OsRng)
}

/// One response as it came off the wire.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Got {
    pub corr: CorrId,
    pub entity: Option<EntityId>,
    pub response: Response,
    /// The raw transmission bytes.
    pub raw: Vec<u8>,
}

/// A connection that writes and reads raw blocks.
pub struct RawConn {
    pub tcp: TcpStream,
    pub session_id: SessionId,
}

impl RawConn {
    /// Connects and completes the handshake.
    pub async fn connect(addr: SocketAddr) -> RawConn {
        let mut c = Self::connect_no_hello(addr).await;
        let mut block = vec![0u8; smpx_relay_protocol::BLOCK_SIZE];
        c.tcp.read_exact(&mut block).await.unwrap();
        let hello = ServerHello::decode(&block).unwrap();
        assert_eq!(hello.session_id, c.session_id);
        c.tcp
            .write_all(&ClientHello { version: 1 }.encode())
            .await
            .unwrap();
        c
    }

    /// Connects and sends the session id only (the plain acceptor's part).
    pub async fn connect_no_hello(addr: SocketAddr) -> RawConn {
        let mut tcp = TcpStream::connect(addr).await.unwrap();
        let session_id: SessionId = rand::random();
        tcp.write_all(&session_id).await.unwrap();
        RawConn { tcp, session_id }
    }

    /// A transmission, signed for this connection's session if `key` is given.
    pub fn transmission(
        &self,
        corr: CorrId,
        entity: Option<&EntityId>,
        key: Option<&SigningKey>,
        cmd: &Command,
    ) -> Vec<u8> {
        sign_for(&self.session_id, corr, entity, key, &cmd.encode())
    }

    pub async fn send_block(&mut self, block: &[u8]) {
        self.tcp.write_all(block).await.unwrap();
    }

    pub async fn send(&mut self, transmissions: &[Vec<u8>]) {
        let mut b = BlockBuilder::new();
        for t in transmissions {
            assert!(b.push(t));
        }
        self.send_block(&b.finish()).await;
    }

    /// Reads one block and returns its responses; `None` when the relay closed.
    pub async fn recv(&mut self) -> Option<Vec<Got>> {
        let mut block = vec![0u8; smpx_relay_protocol::BLOCK_SIZE];
        let r = tokio::time::timeout(Duration::from_secs(10), self.tcp.read_exact(&mut block))
            .await
            .expect("no block from the relay within 10 s");
        if r.is_err() {
            return None;
        }
        let ts = decode_block(&block).unwrap();
        Some(
            ts.into_iter()
                .map(|raw| {
                    let t = parse_transmission(raw).unwrap();
                    Got {
                        corr: t.corr_id,
                        entity: t.entity,
                        response: Response::decode(t.command).unwrap(),
                        raw: raw.to_vec(),
                    }
                })
                .collect(),
        )
    }

    /// Sends one command and returns the single response to it.
    pub async fn call(
        &mut self,
        entity: Option<&EntityId>,
        key: Option<&SigningKey>,
        cmd: &Command,
    ) -> Response {
        let corr = CorrId(rand::random());
        let t = self.transmission(corr, entity, key, cmd);
        self.send(&[t]).await;
        loop {
            let got = self.recv().await.expect("connection closed");
            if let Some(g) = got.into_iter().find(|g| g.corr == corr) {
                return g.response;
            }
        }
    }

    /// Waits until the relay closes the connection (EOF or reset).
    pub async fn closed_within(&mut self, within: Duration) -> bool {
        let mut buf = vec![0u8; 65536];
        let deadline = tokio::time::Instant::now() + within;
        loop {
            match tokio::time::timeout_at(deadline, self.tcp.read(&mut buf)).await {
                Err(_) => return false,
                Ok(Ok(0)) | Ok(Err(_)) => return true,
                Ok(Ok(_)) => continue,
            }
        }
    }
}

pub fn sign_for(
    session_id: &SessionId,
    corr: CorrId,
    entity: Option<&EntityId>,
    key: Option<&SigningKey>,
    command: &[u8],
) -> Vec<u8> {
    let signed = signed_part(&corr, entity, command);
    let auth = key.map(|k| crypto::sign(k, session_id, &signed));
    encode_transmission(auth.as_ref(), &signed)
}

/// NEW over a raw connection: (recipient id, sender id, server dh, recipient key, dh secret).
pub async fn raw_new_queue(
    c: &mut RawConn,
) -> (EntityId, EntityId, [u8; 32], SigningKey, [u8; 32]) {
    let key = signing_key();
    let dh = crypto::x25519_secret(&mut rand::rngs::OsRng);
    let cmd = Command::New {
        recipient_key: key.verifying_key().to_bytes(),
        recipient_dh: crypto::x25519_public(&dh),
    };
    match c.call(None, Some(&key), &cmd).await {
        Response::Ids {
            recipient_id,
            sender_id,
            server_dh,
        } => (recipient_id, sender_id, server_dh, key, dh),
        r => panic!("NEW answered {r:?}"),
    }
}
