//! # smpx-relay-server — the relay: connections, commands, queues' rules, paid capacity
//!
//! This crate owns what a relay does with a connection: authorising and running every
//! command, subscriptions and delivery, the free tier, paid capacity ([`capacity`]),
//! channels ([`channel`]), private routing as proxy and destination ([`forward`]), counters
//! and shutdown. Queues and messages are kept behind the [`store::QueueStore`] contract,
//! defined here and implemented in `smpx-relay-store`, so the server links no database.
//! Running a relay from a config file (TLS identity, ops endpoint) is `smpx-relay`.
//!
//! The server runs over any `AsyncRead + AsyncWrite + Unpin + Send` stream plus the 32-byte
//! session id the transport derived for it; the transport (TLS) plugs in through
//! [`Acceptor`], or calls [`Relay::serve_connection`] itself.
//!
//! Per connection:
//! * a **reader** task reads blocks (idle timeout before a block, one deadline for the whole
//!   block), runs each transmission's command in order and queues the response;
//! * a **writer** task packs queued responses into blocks (several per block when they
//!   fit) and writes them with a write deadline — a client that stops reading is dropped;
//! * a **deliverer** task pushes the next message of a subscribed queue when a SEND from
//!   another connection wakes it.
//!
//! Subscriptions: at most one connection per queue; a SUB from another connection moves it
//! there and the old connection gets END. A subscribed queue has at most one message in
//! flight: the oldest, until the recipient ACKs it (SMP's flow control). Every MSG is
//! re-encrypted under the queue's delivery key (see `smpx_relay_protocol::crypto`).
//!
//! Authorisation: a recipient command is verified against the queue's recipient key, a SEND
//! against the sender key once the queue is secured; an unknown queue id is verified
//! against a dummy key and answered AUTH, the same answer as a wrong signature.
//!
//! Time and randomness: every timestamp comes from [`ServerConfig::clock`] and every id and
//! key from [`ServerConfig::entropy`] (the system's by default), so tests can move time and
//! replay ids.
//!
//! Free tier: queues are created with [`ServerConfig::quota`] ([`FREE_QUOTA`]); a SEND to a
//! full queue gets QUOTA and the recipient later receives the quota marker. A background
//! task ([`Relay::spawn_expiry`]) removes messages older than the retention.
//!
//! Private routing ([`forward`]): with [`ServerConfig::forwarding`] the relay proxies its
//! clients' SENDs to other relays (PRXY, PFWD) over one pinned TLS connection per
//! destination, and runs SENDs other relays forward to it (RKEY, RFWD) without learning
//! which client sent them.
//! As a proxy it dials only public addresses ([`destination`]) unless
//! [`forward::ForwardingConfig::allow_private_destinations`].
//!
//! Limits ([`limits`], [`ServerConfig::limits`]): queues created per connection and per
//! source address, undelivered bytes per source address, PRXY per minute; over one a command
//! gets `ERR LIMIT` and the connection stays. The source address comes from
//! [`Relay::serve`] (or [`Relay::serve_connection`]'s `peer`) and is kept in memory only.
//!
//! Shutdown: [`Relay::shutdown`] stops the accept loop; connections finish the block they
//! are running, flush their responses and close; [`Relay::drained`] waits for that.

pub mod capacity;
pub mod channel;
mod conn;
pub mod destination;
pub mod forward;
pub mod limits;
pub mod stats;
pub mod store;

pub use stats::{RelayStats, StatsSnapshot};

use crate::store::{QueueStore, StoreError, FREE_QUOTA, FREE_RETENTION_SECS};
use conn::ConnHandle;
use smpx_core::UnixTime;
use smpx_os::{Clock, Entropy, OsEntropy, SystemClock};
use smpx_relay_protocol::{crypto, SessionId};
use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{watch, OwnedSemaphorePermit, Semaphore};

/// Limits and timings of a relay.
#[derive(Clone, Debug)]
pub struct ServerConfig {
    /// Connections served at once; further ones are closed as soon as they are accepted.
    pub max_connections: usize,
    /// Transport handshake plus version handshake must complete within this.
    pub handshake_timeout: Duration,
    /// A block, once its first byte arrived, must be complete within this.
    pub block_deadline: Duration,
    /// A connection with no block for this long is closed (clients PING more often).
    pub idle_timeout: Duration,
    /// Writing one block to the client must complete within this.
    pub write_deadline: Duration,
    /// Responses queued per connection before its reader waits for the writer.
    pub outbound_queue: usize,
    /// Undelivered messages per new queue.
    pub quota: u32,
    /// Queues per connection and per source address, bytes held per source address, proxy
    /// sessions per minute ([`limits`]).
    pub limits: limits::Limits,
    /// How long undelivered messages are kept, in seconds.
    pub retention_secs: u64,
    /// How often the expiry task runs.
    pub expire_interval: Duration,
    /// What paid capacity costs and buys.
    pub pricing: capacity::Pricing,
    /// The operator's spent registry; `None`: PAY is refused (ERR PAYMENT).
    pub redeemer: Option<Arc<dyn capacity::Redeemer>>,
    /// Private routing: proxy for this relay's clients and/or destination for proxies
    /// ([`forward`]); off by default, on for a node.
    pub forwarding: forward::ForwardingConfig,
    /// The time messages are stamped with and expire by, and paid capacity runs out at.
    pub clock: Arc<dyn Clock>,
    /// Where queue, message and session ids, the relay's queue keys and forwarding keys come
    /// from.
    pub entropy: Arc<dyn Entropy>,
}

impl ServerConfig {
    pub fn with_clock(self, clock: Arc<dyn Clock>) -> Self {
        Self { clock, ..self }
    }

    pub fn with_entropy(self, entropy: Arc<dyn Entropy>) -> Self {
        Self { entropy, ..self }
    }
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            max_connections: 10_000,
            handshake_timeout: Duration::from_secs(30),
            block_deadline: Duration::from_secs(30),
            idle_timeout: Duration::from_secs(300),
            write_deadline: Duration::from_secs(30),
            outbound_queue: 64,
            quota: FREE_QUOTA,
            limits: limits::Limits::default(),
            retention_secs: FREE_RETENTION_SECS,
            expire_interval: Duration::from_secs(3600),
            pricing: capacity::Pricing::default(),
            redeemer: None,
            forwarding: forward::ForwardingConfig::default(),
            clock: Arc::new(SystemClock),
            entropy: Arc::new(OsEntropy),
        }
    }
}

/// Gives the relay its connections: completes the transport handshake on an accepted TCP
/// stream and returns the secured stream and its session id (the TLS exporter's output).
#[async_trait::async_trait]
pub trait Acceptor: Send + Sync + 'static {
    type Stream: AsyncRead + AsyncWrite + Unpin + Send + 'static;
    async fn accept(&self, tcp: TcpStream) -> std::io::Result<(Self::Stream, SessionId)>;
}

/// **No encryption, no authentication of the relay** — for tests only (feature
/// `test-util`). The client opens with 32 random bytes that become the session id (see
/// `smpx_relay_client::connect_insecure_plain`).
#[cfg(feature = "test-util")]
#[derive(Clone, Copy, Debug, Default)]
pub struct InsecurePlainAcceptor;

#[cfg(feature = "test-util")]
#[async_trait::async_trait]
impl Acceptor for InsecurePlainAcceptor {
    type Stream = TcpStream;
    async fn accept(&self, mut tcp: TcpStream) -> std::io::Result<(TcpStream, SessionId)> {
        use tokio::io::AsyncReadExt as _;
        let mut sid = [0u8; 32];
        tcp.read_exact(&mut sid).await?;
        tcp.set_nodelay(true)?;
        Ok((tcp, sid))
    }
}

/// TLS 1.3 from `smpx_relay_transport`: the relay's certificate chain, the session id from
/// the TLS exporter. Build the acceptor with [`smpx_relay_transport::acceptor`].
#[async_trait::async_trait]
impl Acceptor for smpx_relay_transport::TlsAcceptor {
    type Stream = smpx_relay_transport::ServerTlsStream<TcpStream>;
    async fn accept(&self, tcp: TcpStream) -> std::io::Result<(Self::Stream, SessionId)> {
        // Blocks are latency-sensitive; failing to set it is harmless.
        let _ = tcp.set_nodelay(true);
        // No limit of its own: the relay's `handshake_timeout` (relay.toml's
        // `handshake_timeout_secs`) bounds the whole accept, TLS included.
        smpx_relay_transport::accept_with_timeout(self, tcp, Duration::MAX)
            .await
            .map_err(|e| std::io::Error::other(e.to_string()))
    }
}

/// A slot under the connection cap; the connection counts as open while it is held.
#[derive(Debug)]
pub struct ConnectionPermit {
    _permit: OwnedSemaphorePermit,
    shared: Arc<Shared>,
}

impl Drop for ConnectionPermit {
    fn drop(&mut self) {
        self.shared
            .stats
            .connections_open
            .fetch_sub(1, Ordering::Relaxed);
    }
}

/// Why a connection ended (for logs; every case is already handled).
#[derive(Debug, thiserror::Error)]
pub enum ConnectionError {
    #[error("framing: {0}")]
    Frame(#[from] smpx_relay_transport::framing::FrameError),
    #[error("handshake: {0}")]
    Handshake(String),
}

pub(crate) struct Shared {
    pub(crate) store: Arc<dyn QueueStore>,
    pub(crate) config: ServerConfig,
    pub(crate) stats: Arc<RelayStats>,
    /// recipient id → the connection subscribed to it.
    pub(crate) subscriptions: Mutex<HashMap<smpx_relay_protocol::EntityId, Arc<ConnHandle>>>,
    /// Verified against when a queue is unknown.
    pub(crate) dummy_key: [u8; 32],
    /// As a proxy: the connections to destinations ([`forward`]).
    pub(crate) proxy_links: forward::ProxyLinks,
    /// Serialises PAYs per queue or channel ([`capacity`]).
    pub(crate) pay_locks:
        Mutex<HashMap<smpx_relay_protocol::EntityId, Arc<tokio::sync::Mutex<()>>>>,
    /// The usage measured last per channel ([`channel`] billing).
    pub(crate) channel_usage: channel::UsageCache,
    /// Per-address accounting of the limits (memory only, [`limits`]).
    pub(crate) ledger: limits::Ledger,
    limit: Arc<Semaphore>,
    shutdown: watch::Sender<bool>,
    next_conn: AtomicU64,
}

impl std::fmt::Debug for Shared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Shared")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

/// A relay: cheap to clone, every clone is the same relay.
#[derive(Clone, Debug)]
pub struct Relay {
    shared: Arc<Shared>,
}

impl Shared {
    /// Now, by [`ServerConfig::clock`].
    pub(crate) fn now(&self) -> UnixTime {
        self.config.clock.now()
    }

    /// [`ServerConfig::entropy`].
    pub(crate) fn entropy(&self) -> &dyn Entropy {
        &*self.config.entropy
    }
}

impl Relay {
    pub fn new(store: Arc<dyn QueueStore>, config: ServerConfig) -> Self {
        let (shutdown, _) = watch::channel(false);
        let dummy_key = crypto::dummy_verifying_key(&mut config.entropy.rng());
        Self {
            shared: Arc::new(Shared {
                store,
                limit: Arc::new(Semaphore::new(config.max_connections)),
                config,
                stats: Arc::new(RelayStats::default()),
                subscriptions: Mutex::new(HashMap::new()),
                dummy_key,
                proxy_links: forward::ProxyLinks::default(),
                pay_locks: Mutex::new(HashMap::new()),
                channel_usage: channel::UsageCache::default(),
                ledger: limits::Ledger::default(),
                shutdown,
                next_conn: AtomicU64::new(1),
            }),
        }
    }

    pub fn stats(&self) -> Arc<RelayStats> {
        self.shared.stats.clone()
    }

    pub fn config(&self) -> &ServerConfig {
        &self.shared.config
    }

    /// A slot under the connection cap, or `None` when the relay is full (close the socket).
    pub fn try_admit(&self) -> Option<ConnectionPermit> {
        if self.is_shutting_down() {
            stats::inc(&self.shared.stats.connections_refused);
            return None;
        }
        match self.shared.limit.clone().try_acquire_owned() {
            Ok(p) => {
                stats::inc(&self.shared.stats.connections_total);
                stats::inc(&self.shared.stats.connections_open);
                Some(ConnectionPermit {
                    _permit: p,
                    shared: self.shared.clone(),
                })
            }
            Err(_) => {
                stats::inc(&self.shared.stats.connections_refused);
                None
            }
        }
    }

    /// Serves one connection whose transport handshake is done: version handshake, then
    /// commands until the client leaves, times out, or the relay shuts down. `peer`, the
    /// source address, is what the per-address [`limits`] count by (in memory only); `None`
    /// leaves only the per-connection limits.
    pub async fn serve_connection<S>(
        &self,
        stream: S,
        session_id: SessionId,
        peer: Option<IpAddr>,
        permit: ConnectionPermit,
    ) -> Result<(), ConnectionError>
    where
        S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let id = self.shared.next_conn.fetch_add(1, Ordering::Relaxed);
        let res = conn::run(
            self.shared.clone(),
            id,
            stream,
            session_id,
            peer,
            self.shared.shutdown.subscribe(),
        )
        .await;
        drop(permit);
        res
    }

    /// Accepts connections until [`Relay::shutdown`]: each gets a slot under the cap (or is
    /// closed), its transport handshake through `acceptor` within the handshake timeout, and
    /// its own tasks.
    pub async fn serve<A: Acceptor>(
        &self,
        listener: TcpListener,
        acceptor: Arc<A>,
    ) -> std::io::Result<()> {
        let mut stop = self.shared.shutdown.subscribe();
        loop {
            let accepted = tokio::select! {
                _ = stop.wait_for(|s| *s) => return Ok(()),
                a = listener.accept() => a,
            };
            let (tcp, peer) = match accepted {
                Ok(a) => a,
                // Out of file descriptors and the like: back off, keep serving the others.
                Err(_) => {
                    tokio::time::sleep(Duration::from_millis(20)).await;
                    continue;
                }
            };
            let Some(permit) = self.try_admit() else {
                drop(tcp);
                continue;
            };
            let relay = self.clone();
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                let hs = relay.shared.config.handshake_timeout;
                match tokio::time::timeout(hs, acceptor.accept(tcp)).await {
                    Ok(Ok((stream, sid))) => {
                        let _ = relay
                            .serve_connection(stream, sid, Some(peer.ip()), permit)
                            .await;
                    }
                    _ => stats::inc(&relay.shared.stats.connections_timed_out),
                }
            });
        }
    }

    /// Stops accepting; open connections finish their current block and close.
    pub fn shutdown(&self) {
        self.shared.shutdown.send_replace(true);
    }

    pub fn is_shutting_down(&self) -> bool {
        *self.shared.shutdown.borrow()
    }

    /// Waits until every connection has closed; `false` if `within` passed first.
    pub async fn drained(&self, within: Duration) -> bool {
        let all = u32::try_from(self.shared.config.max_connections).unwrap_or(u32::MAX);
        tokio::time::timeout(within, self.shared.limit.acquire_many(all))
            .await
            .is_ok()
    }

    /// Removes messages accepted before `now − retention` and ends paid quotas whose time is
    /// up (back to the free quota); returns how many messages were removed.
    pub async fn expire_once(&self, now: UnixTime) -> Result<u64, StoreError> {
        let before = now.saturating_sub(self.shared.config.retention_secs);
        self.shared
            .store
            .expire_capacity(now, self.shared.config.quota)
            .await?;
        let n = self.shared.store.expire(before).await?;
        self.shared
            .ledger
            .expired(before, &self.shared.config.limits, now);
        self.shared
            .stats
            .messages_expired
            .fetch_add(n, Ordering::Relaxed);
        Ok(n)
    }

    /// Runs [`Relay::expire_once`] every [`ServerConfig::expire_interval`] until shutdown.
    pub fn spawn_expiry(&self) -> tokio::task::JoinHandle<()> {
        let relay = self.clone();
        tokio::spawn(async move {
            let mut stop = relay.shared.shutdown.subscribe();
            loop {
                // A failed run is retried at the next interval; the store reports its errors.
                let _ = relay.expire_once(relay.shared.now()).await;
                tokio::select! {
                    _ = stop.wait_for(|s| *s) => return,
                    _ = tokio::time::sleep(relay.shared.config.expire_interval) => {}
                }
            }
        })
    }
}
