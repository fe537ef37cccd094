//! # smpx-relay-client — a connection to one relay, as an app embeds it
//!
//! This crate owns the client's side of a relay connection: connecting over the pinned TLS
//! transport, the version handshake, typed commands matched to responses by correlation id,
//! decrypted deliveries as a stream of [`Event`]s, paying for capacity, channels, and sending
//! through a proxy relay ([`ProxiedRelay`]). It is built on `smpx-relay-protocol` (the bytes)
//! and `smpx-relay-transport` (TLS, without the identity feature), so an app links no server,
//! store, certificate generator or HTTP server.
//!
//! [`Client::connect`] takes any stream whose transport handshake is done plus the session
//! id that transport derived (TLS exporter), checks the relay echoes the same id, and picks
//! the protocol version. Then a reader task matches responses to commands by correlation id
//! and turns pushed messages into [`Event`]s (decrypted with the subscribed queue's key); a
//! writer task packs commands into blocks. Dropping every clone of the [`Client`] closes the
//! connection.
//!
//! Time (certificate checks in private routing) and randomness (keys, correlation ids) come
//! from the [`ClientConfig`]'s `clock` and `entropy`, the system's by default; tests inject a
//! `ManualClock` and a `SeededEntropy`.
//!
//! The event channel is unbounded on purpose: the relay pushes at most one unacknowledged
//! message per subscribed queue, so what it can hold is bounded by the subscriptions.

mod capacity;
mod channel;
pub use channel::OwnedChannel;
mod forward;
pub use forward::ProxiedRelay;
pub mod probe;
pub mod session;
pub use session::{ReconnectPolicy, Session, SessionEvent, SessionEvents};

use ed25519_dalek::{SigningKey, VerifyingKey};
use smpx_os::{Clock, Entropy, OsEntropy, SystemClock};
use smpx_relay_protocol::command::{Command, Response};
use smpx_relay_protocol::crypto::{self, Delivered, DeliveryKey, SealError};
use smpx_relay_protocol::handshake::{ClientHello, ServerHello};
use smpx_relay_protocol::transmission::{encode_transmission, parse_transmission, signed_part};
use smpx_relay_protocol::{
    decode_block, CorrId, DecodeError, EntityId, ErrorCode, MsgId, SessionId, MAX_BODY,
};
use smpx_relay_transport::framing::{self, FrameError};
use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::time::Duration;
use subtle::ConstantTimeEq;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::{mpsc, oneshot, watch};
use zeroize::Zeroizing;

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Timings of a client connection, and the clock and randomness it uses.
#[derive(Clone, Debug)]
pub struct ClientConfig {
    pub handshake_timeout: Duration,
    /// A block, once begun, must arrive whole within this.
    pub block_deadline: Duration,
    pub write_deadline: Duration,
    /// How long a command waits for its response.
    pub request_timeout: Duration,
    /// PING this often (keeps the relay's idle timeout away); `None` never.
    pub ping_interval: Option<Duration>,
    /// Give up on a relay silent for this long (longer than the ping interval).
    pub idle_timeout: Duration,
    /// The time proxied destinations' certificates are checked at.
    pub clock: Arc<dyn Clock>,
    /// Where queue and channel keys, correlation ids and sealing keys come from.
    pub entropy: Arc<dyn Entropy>,
}

impl ClientConfig {
    pub fn with_clock(self, clock: Arc<dyn Clock>) -> Self {
        Self { clock, ..self }
    }

    pub fn with_entropy(self, entropy: Arc<dyn Entropy>) -> Self {
        Self { entropy, ..self }
    }
}

impl Default for ClientConfig {
    fn default() -> Self {
        Self {
            handshake_timeout: Duration::from_secs(30),
            block_deadline: Duration::from_secs(30),
            write_deadline: Duration::from_secs(30),
            request_timeout: Duration::from_secs(30),
            ping_interval: Some(Duration::from_secs(60)),
            idle_timeout: Duration::from_secs(180),
            clock: Arc::new(SystemClock),
            entropy: Arc::new(OsEntropy),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("connection: {0}")]
    Frame(#[from] FrameError),
    #[error("transport: {0}")]
    Transport(#[from] smpx_relay_transport::TransportError),
    #[error("handshake: {0}")]
    Handshake(#[from] DecodeError),
    #[error("the relay's session id differs from our transport's")]
    SessionMismatch,
    #[error("no protocol version in common (relay speaks {min}..={max})")]
    Version { min: u16, max: u16 },
    #[error("connection closed")]
    Closed,
    #[error("no response in time")]
    Timeout,
    /// The relay answered ERR.
    #[error("relay: {0}")]
    Relay(ErrorCode),
    #[error("unexpected response {0:?}")]
    Unexpected(Box<Response>),
    #[error("delivery: {0}")]
    Seal(#[from] SealError),
    #[error("message body of {0} bytes is over the limit")]
    TooLarge(usize),
    #[error("the relay gave a key we cannot use")]
    BadRelayKey,
    /// A command's content could not be encoded (a PAY request that is not JSON-able).
    #[error("encoding the command: {0}")]
    Encode(String),
    /// Private routing: the destination's key material did not verify (a proxy that lies
    /// about it), or a forwarded answer did not open or did not match.
    #[error("private routing: {0}")]
    Forward(smpx_relay_protocol::forward::ForwardError),
}

/// A SEND of `body`; refused here when the relay would refuse it for its size.
pub(crate) fn send_command(body: &[u8]) -> Result<Command, ClientError> {
    if body.len() > MAX_BODY {
        return Err(ClientError::TooLarge(body.len()));
    }
    Ok(Command::Send {
        body: body.to_vec(),
    })
}

/// OK, or the response that came instead as an error.
pub(crate) fn expect_ok(r: Response) -> Result<(), ClientError> {
    match r {
        Response::Ok => Ok(()),
        r => Err(ClientError::Unexpected(Box::new(r))),
    }
}

/// Something the relay pushed, not in answer to a command.
#[derive(Debug)]
pub enum Event {
    /// The next message of a subscribed queue (ACK it to get the one after).
    Message { queue: EntityId, message: Delivered },
    /// The subscription moved to another connection; nothing more comes for this queue here.
    End { queue: EntityId },
    /// A pushed message that did not open with the queue's key (or for a queue not
    /// subscribed through this client).
    Undecryptable { queue: EntityId, msg_id: MsgId },
    /// An error the relay could not attribute to a command (a malformed block).
    Error(ErrorCode),
    /// The connection is gone; no more events.
    Closed,
}

/// Pushed events, in the order the relay sent them.
#[derive(Debug)]
pub struct Events(mpsc::UnboundedReceiver<Event>);

impl Events {
    /// The next event; `None` after [`Event::Closed`].
    pub async fn next(&mut self) -> Option<Event> {
        self.0.recv().await
    }
}

/// A queue as its recipient holds it: ids and secret keys (keep them; they are the queue).
#[derive(Clone)]
pub struct RecipientQueue {
    pub recipient_id: EntityId,
    /// Give this to the sender (with the relay address and `server_dh` nothing else).
    pub sender_id: EntityId,
    /// Authorises every recipient command.
    pub recipient_key: SigningKey,
    /// With `server_dh`, the key deliveries are sealed under.
    pub dh_secret: Zeroizing<[u8; 32]>,
    /// The relay's X25519 key for this queue (from IDS).
    pub server_dh: [u8; 32],
}

impl std::fmt::Debug for RecipientQueue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RecipientQueue")
            .field("recipient_id", &self.recipient_id)
            .field("sender_id", &self.sender_id)
            .finish_non_exhaustive()
    }
}

impl RecipientQueue {
    pub fn delivery_key(&self) -> Result<DeliveryKey, ClientError> {
        DeliveryKey::for_recipient(&self.dh_secret, &self.server_dh).ok_or(ClientError::BadRelayKey)
    }
}

struct Reply {
    entity: Option<EntityId>,
    response: Response,
}

/// What the reader task shares with the client handle.
struct Shared {
    pending: Mutex<HashMap<CorrId, oneshot::Sender<Reply>>>,
    /// Subscribed queues' delivery keys, to open pushed messages.
    keys: Mutex<HashMap<EntityId, DeliveryKey>>,
    closed: watch::Sender<bool>,
}

struct Inner {
    session_id: SessionId,
    version: u16,
    out: mpsc::Sender<Vec<u8>>,
    shared: Arc<Shared>,
    config: ClientConfig,
}

/// A connection to one relay. Clones share the connection.
#[derive(Clone)]
pub struct Client {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("version", &self.inner.version)
            .finish_non_exhaustive()
    }
}

/// Connects to a relay over TLS 1.3, pinning the CA fingerprint in its `smpx://` address
/// ([`smpx_relay_transport::connect_with`]), and runs the handshake over it.
pub async fn connect_tls(
    address: &smpx_relay_transport::RelayAddress,
    config: ClientConfig,
) -> Result<(Client, Events), ClientError> {
    let options = smpx_relay_transport::ConnectOptions {
        handshake_timeout: config.handshake_timeout,
        ..Default::default()
    };
    let (tls, sid) = smpx_relay_transport::connect_with(address, &options).await?;
    Client::connect(tls, sid, config).await
}

/// Connects over plain TCP with the test-only `smpx_relay_server::InsecurePlainAcceptor`:
/// sends a random session id first. **No encryption, no relay authentication.** Only with
/// the `test-util` feature.
#[cfg(feature = "test-util")]
pub async fn connect_insecure_plain(
    addr: std::net::SocketAddr,
    config: ClientConfig,
) -> Result<(Client, Events), ClientError> {
    use tokio::io::AsyncWriteExt as _;
    let mut tcp = tokio::net::TcpStream::connect(addr)
        .await
        .map_err(FrameError::from)?;
    tcp.set_nodelay(true).map_err(FrameError::from)?;
    let sid: SessionId = config.entropy.bytes();
    tcp.write_all(&sid).await.map_err(FrameError::from)?;
    Client::connect(tcp, sid, config).await
}

impl Client {
    /// Runs the version handshake over `stream` and starts the connection's tasks.
    pub async fn connect<S>(
        stream: S,
        session_id: SessionId,
        config: ClientConfig,
    ) -> Result<(Client, Events), ClientError>
    where
        S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let (mut rd, mut wr) = tokio::io::split(stream);
        let block =
            framing::read_block(&mut rd, config.handshake_timeout, config.block_deadline).await?;
        let hello = ServerHello::decode(&block)?;
        if !bool::from(hello.session_id.ct_eq(&session_id)) {
            return Err(ClientError::SessionMismatch);
        }
        let version = hello.pick_version().ok_or(ClientError::Version {
            min: hello.min_version,
            max: hello.max_version,
        })?;
        framing::write_block(
            &mut wr,
            &ClientHello { version }.encode(),
            config.write_deadline,
        )
        .await?;

        let (out, out_rx) = mpsc::channel(64);
        let (events_tx, events_rx) = mpsc::unbounded_channel();
        let (closed, _) = watch::channel(false);
        let shared = Arc::new(Shared {
            pending: Mutex::new(HashMap::new()),
            keys: Mutex::new(HashMap::new()),
            closed,
        });
        let (dead_tx, dead_rx) = watch::channel(false);
        tokio::spawn(framing::write_loop(
            wr,
            out_rx,
            config.write_deadline,
            dead_tx,
        ));
        tokio::spawn(read_loop(
            rd,
            shared.clone(),
            events_tx,
            config.clone(),
            dead_rx,
        ));
        let client = Client {
            inner: Arc::new(Inner {
                session_id,
                version,
                out,
                shared,
                config,
            }),
        };
        if let Some(every) = client.inner.config.ping_interval {
            tokio::spawn(ping_loop(Arc::downgrade(&client.inner), every));
        }
        Ok((client, Events(events_rx)))
    }

    /// The connection's source of randomness ([`ClientConfig::entropy`]).
    pub(crate) fn entropy(&self) -> &dyn Entropy {
        &*self.inner.config.entropy
    }

    pub fn session_id(&self) -> &SessionId {
        &self.inner.session_id
    }

    /// The protocol version agreed in the handshake.
    pub fn version(&self) -> u16 {
        self.inner.version
    }

    pub fn is_closed(&self) -> bool {
        *self.inner.shared.closed.borrow()
    }

    /// Sends one command and waits for its response (ERR becomes [`ClientError::Relay`]).
    /// `key` signs the transmission; `entity` is the queue id it names.
    pub async fn request(
        &self,
        entity: Option<&EntityId>,
        key: Option<&SigningKey>,
        command: &Command,
    ) -> Result<Response, ClientError> {
        let corr = loop {
            let c = CorrId(self.entropy().bytes());
            if !c.is_push() {
                break c;
            }
        };
        let signed = signed_part(&corr, entity, &command.encode());
        let auth = key.map(|k| crypto::sign(k, &self.inner.session_id, &signed));
        let t = encode_transmission(auth.as_ref(), &signed);
        let (tx, rx) = oneshot::channel();
        lock(&self.inner.shared.pending).insert(corr, tx);
        if self.is_closed() || self.inner.out.send(t).await.is_err() {
            lock(&self.inner.shared.pending).remove(&corr);
            return Err(ClientError::Closed);
        }
        let reply = match tokio::time::timeout(self.inner.config.request_timeout, rx).await {
            Err(_) => {
                lock(&self.inner.shared.pending).remove(&corr);
                return Err(ClientError::Timeout);
            }
            Ok(Err(_)) => return Err(ClientError::Closed),
            Ok(Ok(r)) => r,
        };
        if reply.entity.as_ref() != entity {
            return Err(ClientError::Unexpected(Box::new(reply.response)));
        }
        match reply.response {
            Response::Err(code) => Err(ClientError::Relay(code)),
            r => Ok(r),
        }
    }

    /// NEW: creates a queue with fresh keys.
    pub async fn create_queue(&self) -> Result<RecipientQueue, ClientError> {
        let recipient_key = SigningKey::generate(&mut self.entropy().rng());
        let dh_secret = Zeroizing::new(crypto::x25519_secret(&mut self.entropy().rng()));
        let cmd = Command::New {
            recipient_key: recipient_key.verifying_key().to_bytes(),
            recipient_dh: crypto::x25519_public(&dh_secret),
        };
        match self.request(None, Some(&recipient_key), &cmd).await? {
            Response::Ids {
                recipient_id,
                sender_id,
                server_dh,
            } => {
                let q = RecipientQueue {
                    recipient_id,
                    sender_id,
                    recipient_key,
                    dh_secret,
                    server_dh,
                };
                q.delivery_key()?;
                Ok(q)
            }
            r => Err(ClientError::Unexpected(Box::new(r))),
        }
    }

    /// KEY: from now on only SENDs signed with `sender_key` are accepted.
    pub async fn secure(
        &self,
        q: &RecipientQueue,
        sender_key: &VerifyingKey,
    ) -> Result<(), ClientError> {
        let cmd = Command::Key {
            sender_key: sender_key.to_bytes(),
        };
        self.expect_ok(q, &cmd).await
    }

    /// SEND, signed with the sender key once the queue is secured (unsigned before).
    pub async fn send(
        &self,
        sender_id: &EntityId,
        sender_key: Option<&SigningKey>,
        body: &[u8],
    ) -> Result<(), ClientError> {
        let cmd = send_command(body)?;
        expect_ok(self.request(Some(sender_id), sender_key, &cmd).await?)
    }

    /// SUB: returns the oldest message, if any; later ones arrive as [`Event::Message`],
    /// each after the previous one is acknowledged.
    pub async fn subscribe(&self, q: &RecipientQueue) -> Result<Option<Delivered>, ClientError> {
        let key = q.delivery_key()?;
        lock(&self.inner.shared.keys).insert(q.recipient_id, key.clone());
        let r = self
            .request(Some(&q.recipient_id), Some(&q.recipient_key), &Command::Sub)
            .await;
        if r.is_err() {
            lock(&self.inner.shared.keys).remove(&q.recipient_id);
        }
        self.delivery(&key, r?)
    }

    /// GET: the oldest message without subscribing.
    pub async fn get(&self, q: &RecipientQueue) -> Result<Option<Delivered>, ClientError> {
        let r = self
            .request(Some(&q.recipient_id), Some(&q.recipient_key), &Command::Get)
            .await?;
        self.delivery(&q.delivery_key()?, r)
    }

    /// ACK: removes the delivered message; on a subscribed queue returns the next one.
    pub async fn ack(
        &self,
        q: &RecipientQueue,
        msg_id: &MsgId,
    ) -> Result<Option<Delivered>, ClientError> {
        let cmd = Command::Ack { msg_id: *msg_id };
        let r = self
            .request(Some(&q.recipient_id), Some(&q.recipient_key), &cmd)
            .await?;
        self.delivery(&q.delivery_key()?, r)
    }

    /// OFF: senders are refused from now on; the queue can still be drained.
    pub async fn suspend(&self, q: &RecipientQueue) -> Result<(), ClientError> {
        self.expect_ok(q, &Command::Off).await
    }

    /// DEL: the queue and its messages are gone.
    pub async fn delete(&self, q: &RecipientQueue) -> Result<(), ClientError> {
        self.expect_ok(q, &Command::Del).await?;
        lock(&self.inner.shared.keys).remove(&q.recipient_id);
        Ok(())
    }

    pub async fn ping(&self) -> Result<(), ClientError> {
        match self.request(None, None, &Command::Ping).await? {
            Response::Pong => Ok(()),
            r => Err(ClientError::Unexpected(Box::new(r))),
        }
    }

    async fn expect_ok(&self, q: &RecipientQueue, cmd: &Command) -> Result<(), ClientError> {
        match self
            .request(Some(&q.recipient_id), Some(&q.recipient_key), cmd)
            .await?
        {
            Response::Ok => Ok(()),
            r => Err(ClientError::Unexpected(Box::new(r))),
        }
    }

    fn delivery(&self, key: &DeliveryKey, r: Response) -> Result<Option<Delivered>, ClientError> {
        match r {
            Response::Ok => Ok(None),
            Response::Msg { msg_id, sealed } => Ok(Some(crypto::open(key, &msg_id, &sealed)?)),
            r => Err(ClientError::Unexpected(Box::new(r))),
        }
    }
}

async fn read_loop<R: AsyncRead + Unpin>(
    mut rd: R,
    shared: Arc<Shared>,
    events: mpsc::UnboundedSender<Event>,
    config: ClientConfig,
    mut dead: watch::Receiver<bool>,
) {
    loop {
        let block = tokio::select! {
            _ = dead.wait_for(|d| *d) => break,
            b = framing::read_block(&mut rd, config.idle_timeout, config.block_deadline) => b,
        };
        let Ok(block) = block else {
            break;
        };
        // A block we cannot parse is the relay's bug; skip it rather than guess.
        let Ok(ts) = decode_block(&block) else {
            continue;
        };
        for raw in ts {
            let Ok(t) = parse_transmission(raw) else {
                continue;
            };
            let Ok(response) = Response::decode(t.command) else {
                continue;
            };
            if !t.corr_id.is_push() {
                if let Some(tx) = lock(&shared.pending).remove(&t.corr_id) {
                    let _ = tx.send(Reply {
                        entity: t.entity,
                        response,
                    });
                }
                continue;
            }
            let event = match (response, t.entity) {
                (Response::Msg { msg_id, sealed }, Some(queue)) => {
                    let key = lock(&shared.keys).get(&queue).cloned();
                    match key.map(|k| crypto::open(&k, &msg_id, &sealed)) {
                        Some(Ok(message)) => Event::Message { queue, message },
                        _ => Event::Undecryptable { queue, msg_id },
                    }
                }
                (Response::End, Some(queue)) => {
                    lock(&shared.keys).remove(&queue);
                    Event::End { queue }
                }
                (Response::Err(code), _) => Event::Error(code),
                _ => continue,
            };
            let _ = events.send(event);
        }
    }
    shared.closed.send_replace(true);
    // Dropping the senders fails every waiting request with `Closed`.
    lock(&shared.pending).clear();
    let _ = events.send(Event::Closed);
}

async fn ping_loop(inner: Weak<Inner>, every: Duration) {
    loop {
        tokio::time::sleep(every).await;
        let Some(inner) = inner.upgrade() else {
            return;
        };
        let client = Client { inner };
        if client.is_closed() || client.ping().await.is_err() {
            return;
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use smpx_os::SeededEntropy;

    /// The block a client sends for NEW over an in-memory stream, the relay side played by
    /// hand (hello, then read one block and hang up).
    async fn new_queue_block(entropy: Arc<dyn Entropy>) -> Vec<u8> {
        let (client_side, mut relay_side) = tokio::io::duplex(64 * 1024);
        let sid = [5u8; 32];
        let d = Duration::from_secs(5);
        let relay = tokio::spawn(async move {
            framing::write_block(&mut relay_side, &ServerHello::new(sid).encode(), d)
                .await
                .unwrap();
            framing::read_block(&mut relay_side, d, d).await.unwrap();
            framing::read_block(&mut relay_side, d, d).await.unwrap()
        });
        let config = ClientConfig {
            ping_interval: None,
            ..ClientConfig::default()
        }
        .with_entropy(entropy);
        let (client, _events) = Client::connect(client_side, sid, config).await.unwrap();
        let pending = tokio::spawn(async move { client.create_queue().await });
        let block = relay.await.unwrap();
        pending.abort();
        block
    }

    #[tokio::test]
    async fn keys_and_correlation_ids_come_from_the_injected_entropy() {
        let a = new_queue_block(Arc::new(SeededEntropy::new(42))).await;
        let b = new_queue_block(Arc::new(SeededEntropy::new(42))).await;
        let c = new_queue_block(Arc::new(SeededEntropy::new(43))).await;
        assert_eq!(a, b, "the same seed must give the same NEW transmission");
        assert_ne!(a, c);
        // And the default is the OS: two clients never agree.
        assert_ne!(
            new_queue_block(Arc::new(OsEntropy)).await,
            new_queue_block(Arc::new(OsEntropy)).await
        );
    }
}
