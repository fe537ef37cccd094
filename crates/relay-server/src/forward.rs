//! Private routing on the relay: the proxy side (PRXY, PFWD) and the destination side
//! (RKEY, RFWD). Wire format, encryption and what each side learns: [`smpx_relay_protocol::forward`].
//!
//! **As a proxy** ([`ForwardingConfig::proxy`]) the relay keeps at most one connection per
//! destination address ([`ProxyLinks`]), opened with the ordinary client
//! ([`smpx_relay_client::connect_tls`], TLS pinned to the address's fingerprint) within
//! [`ForwardingConfig::connect_timeout`], and asks the destination once for its forwarding
//! key (RKEY). A closed connection is replaced at the next PRXY. Every PRXY gives the
//! client connection a new random proxy session id naming that link (at most
//! [`ForwardingConfig::max_sessions`] per client connection, gone with it); a PFWD on a
//! session sends its payload as RFWD and returns the destination's sealed answer. The proxy
//! never sees plaintext: it relays fixed-size ciphertext both ways. The TLS pin means it
//! only ever talks the relay protocol to a relay holding that fingerprint's CA.
//!
//! **Where a proxy dials**: it resolves the destination's host itself and connects only to
//! an address [`crate::destination::is_public`] allows (loopback, private, link-local, CGNAT,
//! documentation, multicast and the like are refused, IPv4-mapped forms too), and to the
//! very address it checked — there is no second resolution. A destination that resolves to
//! refused addresses only is answered `ERR PROXY UNREACHABLE`, the answer of an unreachable
//! relay, before any connection is attempted, so PRXY tells nothing about the relay's own
//! network (metric `destinations_refused`). [`ForwardingConfig::allow_private_destinations`]
//! lifts this for a devnet or tests on loopback. PRXY is also rate-limited per connection
//! ([`crate::limits::Limits::proxy_sessions_per_minute`], `ERR LIMIT`).
//!
//! **As a destination** ([`ForwardingConfig::signer`], the relay's certificate chain and
//! online key) the relay answers RKEY on a connection with a per-connection X25519 key
//! signed by its online key, then opens each RFWD with it and runs the inner transmission
//! through the same code as a direct command: SEND (authorisation against the queue's
//! sender key with the signature bound to *this* connection's session id, quota, stats,
//! waking the subscriber) and PING; anything else is answered `ERR PROXY NOT_ALLOWED`,
//! sealed. An ephemeral key seen before on the connection is refused (`ERR PROXY REPLAY`);
//! when [`ForwardingConfig::replay_window`] keys have been seen, the connection's key is
//! dropped and the next RFWD is answered `ERR PROXY NO_SESSION`, which makes the proxy
//! retire the link and its clients ask again (PRXY, then a fresh RKEY on a new connection).

use super::conn::Ctx;
use super::stats::{inc, RelayStats};
use super::ServerConfig;
use smpx_os::Entropy;
use smpx_relay_client::{Client, ClientConfig, ClientError};
use smpx_relay_protocol::command::{Command, Response};
use smpx_relay_protocol::forward::{self, ForwardKey, Sealed};
use smpx_relay_protocol::transmission::{encode_transmission, parse_transmission, signed_part};
use smpx_relay_protocol::{CorrId, EntityId, ErrorCode, ProxyError, SessionId, SIGNATURE_LEN};
use smpx_relay_transport::{RelayAddress, RelayHost, RelayIdentity, TransportError};
use std::collections::{HashMap, HashSet};
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;
use zeroize::Zeroizing;

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

fn proxy_err(e: ProxyError) -> ErrorCode {
    ErrorCode::Proxy(e)
}

/// What private routing a relay takes part in. The default does none (unit tests); a node
/// turns both roles on ([`ForwardingConfig::for_identity`]).
#[derive(Clone, Debug)]
pub struct ForwardingConfig {
    /// Act as a proxy for this relay's clients (PRXY, PFWD).
    pub proxy: bool,
    /// Act as a destination (RKEY, RFWD): what signs the forwarding keys. `None`: refused.
    pub signer: Option<ForwardSigner>,
    /// Dialing a destination (TCP, TLS, version handshake and RKEY) must finish within this.
    pub connect_timeout: Duration,
    /// How long a forwarded command waits for the destination's answer.
    pub request_timeout: Duration,
    /// Proxy sessions one client connection may hold.
    pub max_sessions: usize,
    /// Destinations a proxy keeps connections to at once.
    pub max_destinations: usize,
    /// Ephemeral keys a destination remembers per proxy connection before it rotates.
    pub replay_window: usize,
    /// As a proxy, also dial destinations on loopback, private and other non-public
    /// addresses ([`crate::destination`]). Off for a real relay (PRXY could otherwise reach
    /// the relay's own network); on for a devnet and tests on one machine.
    pub allow_private_destinations: bool,
}

impl Default for ForwardingConfig {
    fn default() -> Self {
        Self {
            proxy: false,
            signer: None,
            connect_timeout: Duration::from_secs(10),
            request_timeout: Duration::from_secs(30),
            max_sessions: 64,
            max_destinations: 1024,
            replay_window: 100_000,
            allow_private_destinations: false,
        }
    }
}

impl ForwardingConfig {
    /// Both roles on: proxy for this relay's clients, destination signing with `identity`.
    pub fn for_identity(identity: &RelayIdentity) -> Result<Self, TransportError> {
        Ok(Self {
            proxy: true,
            signer: Some(ForwardSigner::from_identity(identity)?),
            ..Self::default()
        })
    }
}

/// The destination's certificate chain and online key, to sign forwarding keys.
#[derive(Clone)]
pub struct ForwardSigner {
    ca_cert: Vec<u8>,
    online_cert: Vec<u8>,
    key: Arc<dyn rustls::sign::SigningKey>,
}

impl std::fmt::Debug for ForwardSigner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ForwardSigner")
            .field("key", &"[elided]")
            .finish_non_exhaustive()
    }
}

impl ForwardSigner {
    /// The relay's CA certificate, online certificate and online (Ed25519) key.
    pub fn from_identity(identity: &RelayIdentity) -> Result<Self, TransportError> {
        let key = rustls::crypto::ring::sign::any_supported_type(&identity.online_key())
            .map_err(TransportError::Config)?;
        Ok(Self {
            ca_cert: identity.ca_certificate().to_vec(),
            online_cert: identity.online_certificate().to_vec(),
            key,
        })
    }

    fn sign(&self, message: &[u8]) -> Option<[u8; SIGNATURE_LEN]> {
        let signer = self
            .key
            .choose_scheme(&[rustls::SignatureScheme::ED25519])?;
        signer.sign(message).ok()?.try_into().ok()
    }

    /// A fresh forwarding key for the connection with `session_id`, and its secret.
    fn fresh_key(&self, session_id: &SessionId, entropy: &dyn Entropy) -> Option<DestKey> {
        let secret = Zeroizing::new(smpx_relay_protocol::crypto::x25519_secret(
            &mut entropy.rng(),
        ));
        let dh = smpx_relay_protocol::crypto::x25519_public(&secret);
        let signature = self.sign(&ForwardKey::signing_input(session_id, &dh))?;
        Some(DestKey {
            secret,
            key: ForwardKey {
                session_id: *session_id,
                dh,
                ca_cert: self.ca_cert.clone(),
                online_cert: self.online_cert.clone(),
                signature,
            },
            seen: HashSet::new(),
        })
    }
}

/// A destination's forwarding state on one (proxy) connection.
struct DestKey {
    secret: Zeroizing<[u8; 32]>,
    key: ForwardKey,
    /// Ephemeral keys already used on this connection.
    seen: HashSet<[u8; 32]>,
}

/// One connection's forwarding state: its proxy sessions (as a proxy's client connection)
/// and its forwarding key (as a proxy's connection to this destination).
#[derive(Default)]
pub(crate) struct ConnForwarding {
    dest: Mutex<Option<DestKey>>,
    sessions: Mutex<HashMap<EntityId, Arc<Link>>>,
}

/// A proxy's connection to one destination.
pub(crate) struct Link {
    address: String,
    client: Client,
    key: ForwardKey,
    retired: AtomicBool,
}

impl Link {
    fn is_dead(&self) -> bool {
        self.retired.load(Ordering::Relaxed) || self.client.is_closed()
    }
}

type Slot = Arc<tokio::sync::Mutex<Option<Arc<Link>>>>;

/// A proxy's connections to destinations: one per address, shared by all its clients.
#[derive(Default)]
pub(crate) struct ProxyLinks {
    links: Mutex<HashMap<String, Slot>>,
}

impl ProxyLinks {
    /// The open link to `address`, dialing it if there is none.
    async fn link(
        &self,
        address: &RelayAddress,
        server: &ServerConfig,
        stats: &RelayStats,
    ) -> Result<Arc<Link>, ErrorCode> {
        let cfg = &server.forwarding;
        let name = address.to_string();
        let slot = {
            let mut links = lock(&self.links);
            if !links.contains_key(&name) && links.len() >= cfg.max_destinations {
                // Forget slots that hold no live link (and are not being dialed).
                links.retain(|_, s| match s.try_lock() {
                    Ok(g) => g.as_ref().is_some_and(|l| !l.is_dead()),
                    Err(_) => true,
                });
                if links.len() >= cfg.max_destinations {
                    return Err(proxy_err(ProxyError::NotAllowed));
                }
            }
            links.entry(name.clone()).or_default().clone()
        };
        let mut guard = slot.lock().await;
        if let Some(l) = guard.as_ref().filter(|l| !l.is_dead()) {
            return Ok(l.clone());
        }
        *guard = None;
        let link = tokio::time::timeout(cfg.connect_timeout, dial(address, name, server, stats))
            .await
            .map_err(|_| proxy_err(ProxyError::Unreachable))??;
        *guard = Some(link.clone());
        Ok(link)
    }

    /// The destination dropped this link's key: the next PRXY dials again.
    async fn retire(&self, link: &Arc<Link>) {
        link.retired.store(true, Ordering::Relaxed);
        let slot = lock(&self.links).get(&link.address).cloned();
        if let Some(slot) = slot {
            let mut guard = slot.lock().await;
            if guard.as_ref().is_some_and(|l| Arc::ptr_eq(l, link)) {
                *guard = None;
            }
        }
    }
}

/// The addresses `address`'s host resolves to that a proxy may dial (all of them with
/// [`ForwardingConfig::allow_private_destinations`]), in resolution order, and whether any
/// was refused.
async fn dialable(address: &RelayAddress, allow_private: bool) -> (Vec<SocketAddr>, bool) {
    let port = address.port;
    let resolved: Vec<SocketAddr> = match &address.host {
        RelayHost::Ipv4(ip) => vec![SocketAddr::new(IpAddr::V4(*ip), port)],
        RelayHost::Ipv6(ip) => vec![SocketAddr::new(IpAddr::V6(*ip), port)],
        RelayHost::Dns(name) => match tokio::net::lookup_host((name.as_str(), port)).await {
            Ok(addrs) => addrs.collect(),
            Err(_) => Vec::new(),
        },
    };
    let total = resolved.len();
    let allowed: Vec<SocketAddr> = resolved
        .into_iter()
        .filter(|a| allow_private || crate::destination::is_public(a.ip()))
        .collect();
    let refused = allowed.len() < total;
    (allowed, refused)
}

/// TCP to the first of `targets` that accepts (the addresses checked, not the name again).
async fn connect_first(targets: &[SocketAddr]) -> Option<tokio::net::TcpStream> {
    for t in targets {
        if let Ok(tcp) = tokio::net::TcpStream::connect(t).await {
            return Some(tcp);
        }
    }
    None
}

async fn dial(
    address: &RelayAddress,
    name: String,
    server: &ServerConfig,
    stats: &RelayStats,
) -> Result<Arc<Link>, ErrorCode> {
    let cfg = &server.forwarding;
    let unreachable = || proxy_err(ProxyError::Unreachable);
    let (targets, refused) = dialable(address, cfg.allow_private_destinations).await;
    if targets.is_empty() {
        // Refused (or unresolvable) before any connection attempt: the answer of an
        // unreachable relay, with nothing learnt about what listens there.
        if refused {
            inc(&stats.destinations_refused);
        }
        return Err(unreachable());
    }
    let config = ClientConfig {
        handshake_timeout: cfg.connect_timeout,
        request_timeout: cfg.request_timeout,
        clock: server.clock.clone(),
        entropy: server.entropy.clone(),
        ..ClientConfig::default()
    };
    let tcp = connect_first(&targets).await.ok_or_else(unreachable)?;
    // Blocks are latency-sensitive; failing to set it is harmless.
    let _ = tcp.set_nodelay(true);
    let (tls, sid) = smpx_relay_transport::connect_over(tcp, address, cfg.connect_timeout)
        .await
        .map_err(|_| unreachable())?;
    // Deliveries never come on this connection (it subscribes to nothing): drop the events.
    let (client, _events) = Client::connect(tls, sid, config)
        .await
        .map_err(|_| unreachable())?;
    match client.request(None, None, &Command::RelayKey).await {
        Ok(Response::RelayKey { key }) if key.session_id == *client.session_id() => {
            Ok(Arc::new(Link {
                address: name,
                client,
                key,
                retired: AtomicBool::new(false),
            }))
        }
        Err(ClientError::Relay(ErrorCode::Proxy(ProxyError::NotAllowed))) => {
            Err(proxy_err(ProxyError::NotAllowed))
        }
        _ => Err(proxy_err(ProxyError::Unreachable)),
    }
}

impl Ctx {
    fn forwarding_config(&self) -> &ForwardingConfig {
        &self.shared.config.forwarding
    }

    fn forward_failed(&self, e: ErrorCode) -> ErrorCode {
        inc(&self.shared.stats.forward_failures);
        e
    }

    /// PRXY: a proxy session towards `destination`.
    pub(super) async fn proxy_open(&self, destination: &[u8]) -> Result<Response, ErrorCode> {
        let cfg = self.forwarding_config();
        if !cfg.proxy {
            return Err(proxy_err(ProxyError::NotAllowed));
        }
        let address: RelayAddress = std::str::from_utf8(destination)
            .ok()
            .and_then(|s| s.parse().ok())
            .ok_or(proxy_err(ProxyError::BadAddress))?;
        self.admit_proxy()?;
        {
            let mut sessions = lock(&self.forwarding.sessions);
            sessions.retain(|_, l| !l.is_dead());
            if sessions.len() >= cfg.max_sessions {
                return Err(proxy_err(ProxyError::NotAllowed));
            }
        }
        let link = self
            .shared
            .proxy_links
            .link(&address, &self.shared.config, &self.shared.stats)
            .await
            .map_err(|e| self.forward_failed(e))?;
        let session = EntityId(self.shared.entropy().bytes());
        lock(&self.forwarding.sessions).insert(session, link.clone());
        Ok(Response::ProxyKey {
            session,
            key: link.key.clone(),
        })
    }

    /// PFWD: relay the sealed payload to the session's destination and its answer back.
    pub(super) async fn proxy_forward(
        &self,
        session: EntityId,
        payload: Sealed,
    ) -> Result<Response, ErrorCode> {
        if !self.forwarding_config().proxy {
            return Err(proxy_err(ProxyError::NotAllowed));
        }
        let link = lock(&self.forwarding.sessions).get(&session).cloned();
        let Some(link) = link.filter(|l| !l.is_dead()) else {
            lock(&self.forwarding.sessions).remove(&session);
            return Err(proxy_err(ProxyError::NoSession));
        };
        let answer = link
            .client
            .request(None, None, &Command::RelayForward(payload))
            .await;
        match answer {
            Ok(Response::Forwarded { sealed }) => {
                inc(&self.shared.stats.forwarded_out);
                Ok(Response::Forwarded { sealed })
            }
            Err(ClientError::Relay(ErrorCode::Proxy(ProxyError::NoSession))) => {
                self.shared.proxy_links.retire(&link).await;
                lock(&self.forwarding.sessions).remove(&session);
                Err(proxy_err(ProxyError::NoSession))
            }
            Err(ClientError::Relay(code)) => Err(self.forward_failed(code)),
            Ok(_) | Err(_) => Err(self.forward_failed(proxy_err(ProxyError::Unreachable))),
        }
    }

    /// RKEY: this connection's forwarding key (made at the first RKEY, then the same).
    pub(super) fn relay_key(&self) -> Result<Response, ErrorCode> {
        let Some(signer) = &self.forwarding_config().signer else {
            return Err(proxy_err(ProxyError::NotAllowed));
        };
        let mut dest = lock(&self.forwarding.dest);
        if let Some(d) = dest.as_ref() {
            return Ok(Response::RelayKey { key: d.key.clone() });
        }
        let d = signer
            .fresh_key(&self.session_id, self.shared.entropy())
            .ok_or(ErrorCode::Internal)?;
        let key = d.key.clone();
        *dest = Some(d);
        Ok(Response::RelayKey { key })
    }

    /// RFWD: open, refuse replays, run the inner transmission, seal its answer.
    pub(super) async fn relay_forward(&self, payload: Sealed) -> Result<Response, ErrorCode> {
        let cfg = self.forwarding_config();
        if cfg.signer.is_none() {
            return Err(proxy_err(ProxyError::NotAllowed));
        }
        let (inner, response_key) = {
            let mut guard = lock(&self.forwarding.dest);
            let Some(d) = guard.as_mut() else {
                return Err(self.forward_failed(proxy_err(ProxyError::NoSession)));
            };
            if d.seen.contains(&payload.eph) {
                return Err(self.forward_failed(proxy_err(ProxyError::Replay)));
            }
            if d.seen.len() >= cfg.replay_window {
                // Rotate: the proxy re-dials and fetches a fresh key.
                *guard = None;
                return Err(self.forward_failed(proxy_err(ProxyError::NoSession)));
            }
            match forward::open_request(&d.secret, &self.session_id, &payload) {
                Ok(opened) => {
                    d.seen.insert(payload.eph);
                    opened
                }
                Err(_) => return Err(self.forward_failed(proxy_err(ProxyError::Crypto))),
            }
        };
        let (corr, entity, response) = match parse_transmission(&inner) {
            Err(e) => (CorrId::PUSH, None, Response::Err(e.wire_code())),
            Ok(t) => {
                let r = self
                    .forwarded_command(&t)
                    .await
                    .unwrap_or_else(Response::Err);
                (t.corr_id, t.entity, r)
            }
        };
        let t = encode_transmission(
            None,
            &signed_part(&corr, entity.as_ref(), &response.encode()),
        );
        let sealed = forward::seal_response(&response_key, &self.session_id, &t)
            .map_err(|_| ErrorCode::Internal)?;
        Ok(Response::Forwarded { sealed })
    }

    /// The inner command of an RFWD: SEND and PING only.
    async fn forwarded_command(
        &self,
        t: &smpx_relay_protocol::Transmission<'_>,
    ) -> Result<Response, ErrorCode> {
        inc(&self.shared.stats.forwarded_in);
        let cmd = Command::decode(t.command).map_err(|e| e.wire_code())?;
        cmd.check_shape(t.auth.is_some(), t.entity.is_some())?;
        let r = match cmd {
            Command::Send { body } => {
                let sid = t.entity.unwrap_or(EntityId([0; 24]));
                self.send(t, sid, body).await
            }
            Command::Ping => Ok(Response::Pong),
            _ => Err(proxy_err(ProxyError::NotAllowed)),
        };
        if r == Err(ErrorCode::Auth) {
            inc(&self.shared.stats.auth_failures);
        }
        r
    }
}
